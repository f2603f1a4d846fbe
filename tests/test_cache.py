"""`jaxppo.use_compile_cache`: which folder it picks, and that a new process reads it back."""

import math
import os
import pathlib

import jax
import pytest
from conftest import run_python

import jaxppo
from jaxppo import cache


def _run(script: str, *args: str) -> str:
    """``python -c script args`` without a cache folder from the environment; its stdout."""
    env = {k: v for k, v in os.environ.items() if k != "JAX_COMPILATION_CACHE_DIR"}
    done = run_python(script, *args, env=env, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout


@pytest.fixture
def no_cache_dir():
    """The process's cache setting, cleared for the test and restored after it (nothing is
    compiled in between, so JAX never opens the folders the tests name)."""
    before = jax.config.jax_compilation_cache_dir
    jax.config.update("jax_compilation_cache_dir", None)
    yield
    jax.config.update("jax_compilation_cache_dir", before)


def test_default_folder_is_under_xdg_cache_home(no_cache_dir, monkeypatch, tmp_path):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert jaxppo.use_compile_cache() == tmp_path / "jaxppo" / "xla"
    assert jax.config.jax_compilation_cache_dir == str(tmp_path / "jaxppo" / "xla")
    monkeypatch.delenv("XDG_CACHE_HOME")
    assert cache.compile_cache_dir() == pathlib.Path.home() / ".cache" / "jaxppo" / "xla"


def test_a_folder_the_user_chose_is_kept_unless_a_path_is_given(no_cache_dir, tmp_path):
    jax.config.update("jax_compilation_cache_dir", str(tmp_path / "mine"))
    assert jaxppo.use_compile_cache() == tmp_path / "mine"
    assert jax.config.jax_compilation_cache_dir == str(tmp_path / "mine")
    assert jaxppo.use_compile_cache(tmp_path / "other") == tmp_path / "other"
    assert jax.config.jax_compilation_cache_dir == str(tmp_path / "other")


def test_a_path_of_another_type_is_refused_by_name(no_cache_dir):
    with pytest.raises(TypeError, match=r"use_compile_cache\(path=3\): expected a folder"):
        jaxppo.use_compile_cache(3)
    assert not jax.config.jax_compilation_cache_dir


def test_a_second_process_loads_the_program_the_first_compiled(tmp_path):
    # JAX keeps only programs that took over a second to compile, unless told otherwise; each
    # process prints its folder, its result and how many programs it loaded from the cache.
    script = (
        "import sys, jax, jax.numpy as jnp, jaxppo\n"
        "hits = []\n"
        "jax.monitoring.register_event_listener(\n"
        "    lambda event, **kw: hits.append(event) if event.endswith('/cache_hits') else None)\n"
        "jax.config.update('jax_persistent_cache_min_compile_time_secs', 0)\n"
        "print(jaxppo.use_compile_cache(sys.argv[1]))\n"
        "print(float(jax.jit(lambda x: jnp.tanh(x) * 3.0)(jnp.ones(5)).sum()))\n"
        "print(len(hits))\n"
    )
    folder = tmp_path / "xla"
    lines = [_run(script, str(folder)).split() for _ in range(2)]
    (first_folder, first_sum, first_hits), (second_folder, second_sum, second_hits) = lines
    assert first_folder == second_folder == str(folder)
    assert float(first_sum) == float(second_sum) == pytest.approx(15 * math.tanh(1.0))
    assert int(first_hits) == 0 and any(folder.iterdir())  # compiled, then written
    assert int(second_hits) >= 1  # read back


def test_a_new_folder_takes_over_after_compiles(tmp_path):
    # JAX opens its cache folder at the first compile that uses it; a later folder is used
    # from the next compile on.
    script = (
        "import sys, jax, jax.numpy as jnp, jaxppo\n"
        "jax.config.update('jax_persistent_cache_min_compile_time_secs', 0)\n"
        "jaxppo.use_compile_cache(sys.argv[1])\n"
        "jax.jit(lambda x: x + 1)(jnp.ones(3)).block_until_ready()\n"
        "jaxppo.use_compile_cache(sys.argv[2])\n"
        "jax.jit(lambda x: jnp.sin(x) * 2)(jnp.ones(3)).block_until_ready()\n"
    )
    first, second = tmp_path / "first", tmp_path / "second"
    _run(script, str(first), str(second))
    assert any(first.iterdir()) and any(second.iterdir())


def test_a_folder_under_home_is_expanded(no_cache_dir, monkeypatch, tmp_path):
    # "~/c" is the user's folder, not a folder named "~" in the working directory.
    monkeypatch.setenv("HOME", str(tmp_path))
    assert jaxppo.use_compile_cache("~/c") == tmp_path / "c"
    assert jax.config.jax_compilation_cache_dir == str(tmp_path / "c")
    assert jaxppo.use_compile_cache(pathlib.Path("~") / "d") == tmp_path / "d"
    assert jax.config.jax_compilation_cache_dir == str(tmp_path / "d")
