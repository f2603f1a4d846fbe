"""Compiled programs kept on disk, so that a new process skips most of the compile.

    import jaxppo
    jaxppo.use_compile_cache()    # ~/.cache/jaxppo/xla

XLA compiles a whole PPO run in about 4 to 5 s on a 2-core CPU. JAX can keep what it compiled
on disk (its persistent compilation cache) and load it back in any later process that builds
the same program: a notebook run again after a kernel restart, a script run twice, a resumed
run. The ``jaxppo`` command does this unless told not to (``--no-compile-cache``); scripts and
notebooks call `use_compile_cache`. A new value of a static config field (a size, a switch)
is a new program and compiles; hyperparameters are traced, so changing them compiles nothing
either way.

Like `jaxppo.use_cpu_cores`, it changes a process-wide setting, which is why importing jaxppo
does not do it.
"""

from __future__ import annotations

import os
import pathlib

import jax
from jax.experimental.compilation_cache import compilation_cache


def compile_cache_dir() -> pathlib.Path:
    """jaxppo's default cache folder: ``$XDG_CACHE_HOME/jaxppo/xla`` (``~/.cache/jaxppo/xla``)."""
    base = os.environ.get("XDG_CACHE_HOME") or pathlib.Path.home() / ".cache"
    return pathlib.Path(base) / "jaxppo" / "xla"


def use_compile_cache(path: str | os.PathLike | None = None) -> pathlib.Path:
    """Keep compiled programs in JAX's persistent cache, from the next compile on.

    JAX opens its cache folder at the first compile that uses it and keeps it open, so a
    change of folder also resets JAX's cache state: a new folder takes over even after
    compiles.

    Args:
        path: the cache folder (created when needed). None: a folder the user chose already
            (``JAX_COMPILATION_CACHE_DIR`` or ``jax.config.jax_compilation_cache_dir``) is kept,
            else `compile_cache_dir`.

    Returns:
        The folder in use.

    Raises:
        TypeError: ``path`` is neither None, a str nor an ``os.PathLike``.
    """
    if path is None:
        chosen = jax.config.jax_compilation_cache_dir
        if chosen:
            return pathlib.Path(chosen)
        path = compile_cache_dir()
    elif not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"use_compile_cache(path={path!r}): expected a folder (a str or "
                        f"os.PathLike), or None for {compile_cache_dir()}")
    path = pathlib.Path(path).expanduser()
    if jax.config.jax_compilation_cache_dir != str(path):
        jax.config.update("jax_compilation_cache_dir", str(path))
        compilation_cache.reset_cache()
    return path
