"""The bench scripts' pure helpers, so that a script cannot rot unseen between its (long) runs.

No timing here: speed is measured by the scripts in bench/, never by tests.
"""

from __future__ import annotations

import pathlib
import re
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxppo
from jaxppo import stats

BENCH = pathlib.Path(__file__).resolve().parents[1] / "bench"
sys.path.insert(0, str(BENCH))

import ablation  # noqa: E402  (bench/ is not a package: its scripts import each other by name)
import compile_time  # noqa: E402
import machine  # noqa: E402
import peer_common  # noqa: E402
import peer_jaxppo  # noqa: E402
import peers  # noqa: E402
import roofline  # noqa: E402
import scaling  # noqa: E402


def test_ablation_bootstrap_interval_brackets_the_iqm():
    scores = np.array([1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 100.0])
    # IQM of 8 scores: the mean of the middle 4, (3 + 4 + 5 + 6) / 4 = 4.5.
    assert stats.iqm(scores) == 4.5
    low, high = ablation.bootstrap_iqm(scores, draws=500)
    assert low <= 4.5 <= high
    assert low < high
    assert ablation.bootstrap_iqm(scores, draws=500) == (low, high)  # seeded


def test_ablation_bootstrap_of_equal_scores_is_a_point():
    assert ablation.bootstrap_iqm(np.full(8, 500.0), draws=100) == (500.0, 500.0)


def _result(peer, round_, **stages):
    return {"peer": peer, "case": "cartpole-s1", "round": round_, **stages}


def test_compile_time_rows_take_medians_per_stage_and_the_ratio_of_medians():
    case = next(c for c in peers.grid() if c.name == "cartpole-s1")
    results = [
        _result("jaxppo", 0, trace_s=0.6, lower_s=0.3, xla_s=3.0, compile_s=3.9, start_s=0.9),
        _result("jaxppo", 1, trace_s=0.5, lower_s=0.4, xla_s=3.6, compile_s=4.5, start_s=1.1),
        _result("jaxppo", 2, trace_s=0.7, lower_s=0.2, xla_s=3.3, compile_s=4.2, start_s=1.0),
        _result("rejax", 0, trace_s=0.6, lower_s=0.3, xla_s=3.0, compile_s=3.9, start_s=4.5),
        _result("rejax", 1, trace_s=0.6, lower_s=0.3, xla_s=2.8, compile_s=3.7, start_s=4.7),
        {"peer": "rejax", "case": "cartpole-s1", "round": 2, "error": "exit 1: boom"},
    ]
    (row,) = compile_time.rows(results, [case])
    assert row["jaxppo"]["xla_s"] == 3.3 and row["jaxppo"]["compile_s"] == 4.2
    assert row["jaxppo"]["rounds"] == 3
    # The failed rejax round is left out: medians of 2 rounds, (3.0 + 2.8) / 2 = 2.9.
    assert row["rejax"]["rounds"] == 2 and row["rejax"]["xla_s"] == 2.9
    assert row["ratio"]["xla_s"] == round(3.3 / 2.9, 2)
    assert row["ratio"]["compile_s"] == round(4.2 / 3.8, 2)
    # Start + compile, each a median: jaxppo 1.0 + 4.2 = 5.2, rejax 4.6 + 3.8 = 8.4.
    assert row["ratio"]["start_and_compile"] == round(5.2 / 8.4, 2) == 0.62
    assert row["jaxppo"]["kernels"] is None


def test_compile_time_ratio_of_start_and_compile_needs_both_starts():
    case = next(c for c in peers.grid() if c.name == "cartpole-s1")
    results = [_result("jaxppo", 0, trace_s=0.6, lower_s=0.3, xla_s=3.0, compile_s=3.9,
                       start_s=None),
               _result("rejax", 0, trace_s=0.6, lower_s=0.3, xla_s=3.0, compile_s=3.9,
                       start_s=4.0)]
    (row,) = compile_time.rows(results, [case])
    assert row["jaxppo"]["start_s"] is None and row["ratio"]["start_and_compile"] is None
    assert row["ratio"]["compile_s"] == 1.0


def test_compile_time_table_shows_kernel_columns_only_when_profiled():
    case = next(c for c in peers.grid() if c.name == "cartpole-s1")
    plain = [_result(p, 0, trace_s=0.6, lower_s=0.3, xla_s=3.0, compile_s=3.9)
             for p in ("jaxppo", "rejax")]
    profiled = [dict(r, kernels=200 + i, kernel_ms=1000.0) for i, r in enumerate(plain)]
    for results, columns in ((plain, False), (profiled, True)):
        result = {"machine": {"cpu": "cpu", "cores": 2, "device": "cpu:0", "jax": jax.__version__},
                  "loadavg_before": ["1.0"] * 3, "loadavg_after": ["1.0"] * 3,
                  "command": "python bench/compile_time.py", "rounds": 1,
                  "rows": compile_time.rows(results, [case])}
        text = compile_time.markdown(result)
        assert ("jaxppo kernels (ms)" in text) == columns
        assert ("| 200 (1000.0) | 201 (1000.0) |" in text) == columns


def test_compile_split_times_the_three_stages_of_a_jitted_function():
    out = peer_common.compile_split(jax.jit(lambda x: jnp.tanh(x) * 2.0), (jnp.ones(3),))
    assert set(out) >= {"trace_s", "lower_s", "xla_s", "compile_s"}
    parts = out["trace_s"] + out["lower_s"] + out["xla_s"]
    assert out["compile_s"] == pytest.approx(parts, abs=0.003)  # each rounded to 1 ms
    assert "kernels" not in out
    # This process had imported jax and built the function before tracing began.
    assert out["start_s"] is None or 0.0 < out["start_s"] < peer_common.process_age()


def test_bench_refuses_a_jaxppo_from_outside_its_checkout(tmp_path):
    # Under `pip install .` (CI) the imported jaxppo is a copy in site-packages, under
    # `pip install -e .` the checkout's own: either way, another root is not its folder.
    with pytest.raises(SystemExit, match=r"jaxppo is imported from .*, not from this checkout"):
        machine.jaxppo_source(tmp_path)
    source = pathlib.Path(jaxppo.__file__).resolve().parent
    assert machine.jaxppo_source(source.parent) == str(source)


def test_device_name_adds_the_model_of_an_accelerator_only():
    device = jax.devices()[0]
    name = machine.device_name()
    if device.platform == "cpu":
        assert name == str(device)  # as every CPU result so far records it
    else:
        assert name == f"{device} ({device.device_kind})"


def test_scaling_table_gives_the_initial_states_share_of_the_run():
    row = {"agents": 2048, "devices": 1, "compile_s": 20.5, "run_s_median": 50.0,
           "init_s_median": 1.25, "env_steps_per_s": 20_000_000,
           "env_steps_per_s_per_agent": 9_766, "memory_per_agent_bytes": 2**20}
    old = {k: v for k, v in row.items() if k != "init_s_median"}  # results written before it
    result = {"benchmark": "b", "machine": {"cpu": "c", "cores": 16, "device": "cuda:0 (GPU)",
                                            "jax": "0"},
              "loadavg_before": "1", "loadavg_after": "1", "rows": [row, old]}
    lines = scaling.markdown(result).splitlines()
    assert lines[-2] == "| 2048 | 1 | 20.5 | 50.0 | 1.25 | 20,000,000 | 9,766 | 1.00 MiB |"
    assert lines[-1] == "| 2048 | 1 | 20.5 | 50.0 |  | 20,000,000 | 9,766 | 1.00 MiB |"


def test_roofline_hand_count_of_the_classic_cartpole_config():
    hand = roofline.hand_count(jaxppo.preset("CartPole-v1"))
    # Actor 4 -> 64 -> 64 -> 2: 2 * (4*64 + 64*64 + 64*2) = 8,960; critic ... -> 1: 8,832.
    assert (hand["forward_actor"], hand["forward_critic"]) == (8_960, 8_832)
    # Rollout: actor + critic on obs_t + critic on the next obs = 8,960 + 2 * 8,832 = 26,624.
    assert hand["rollout"] == 26_624
    # Update: 4 epochs x (3 x 17,792 forward - 2 * 2 * 4 * 64 first-layer input gradient).
    assert hand["update"] == 4 * (3 * 17_792 - 1_024) == 209_408
    # Adam: 16 gradient steps x 9,155 params x 17 FLOPs over 512 env steps = 4,863.6.
    assert hand["params"] == 9_155 and hand["adam"] == 4_864
    assert hand["per_env_step"] == 240_896  # bench/results/targets/roofline.md


def test_peer_jaxppo_config_takes_every_field_the_grid_hands_it():
    case = next(c for c in peers.grid() if c.name == "cartpole-256envs")
    fields = peers.hparams(case.config)
    fields["hidden_sizes"] = list(fields["hidden_sizes"])  # as it arrives through JSON
    assert peer_jaxppo.make_config(fields) == case.config


def test_bench_readme_names_only_scripts_and_results_that_exist():
    text = (BENCH / "README.md").read_text()
    scripts = set(re.findall(r"bench/([a-z_]+\.(?:py|sh))", text))
    assert scripts >= {"peers.py", "scaling.py", "compile_time.py", "ablation.py",
                       "roofline.py", "gpu_check.sh"}
    assert all((BENCH / name).exists() for name in scripts), scripts
    links = set(re.findall(r"\]\((results/[^)#]+)\)", text))
    assert links and all((BENCH / link).exists() for link in links), links
