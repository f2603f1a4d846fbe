"""The bench scripts' pure helpers, so that a script cannot rot unseen between its (long) runs.

No timing here: speed is measured by the scripts in bench/, never by tests.
"""

from __future__ import annotations

import pathlib
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxppo
from jaxppo import stats

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1] / "bench"))

import ablation  # noqa: E402  (bench/ is not a package: its scripts import each other by name)
import compile_time  # noqa: E402
import machine  # noqa: E402
import matmul_dtype  # noqa: E402
import peer_common  # noqa: E402
import peers  # noqa: E402
import scaling  # noqa: E402


def test_ablation_bootstrap_interval_brackets_the_iqm():
    scores = np.array([1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 100.0])
    # IQM of 8 scores: the mean of the middle 4, (3 + 4 + 5 + 6) / 4 = 4.5.
    assert stats.iqm(scores) == 4.5
    low, high = ablation._bootstrap_iqm(scores, draws=500)
    assert low <= 4.5 <= high
    assert low < high
    assert ablation._bootstrap_iqm(scores, draws=500) == (low, high)  # seeded


def test_ablation_bootstrap_of_equal_scores_is_a_point():
    assert ablation._bootstrap_iqm(np.full(8, 500.0), draws=100) == (500.0, 500.0)


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


def test_matmul_dtype_cases_are_the_peers_grid_cut_to_whole_updates():
    s64 = matmul_dtype.case_config(matmul_dtype.CASES["s64"], 1.0)
    assert s64.num_envs == 4 and s64.batch_size == 512
    assert s64.num_updates == 244  # 500k x 0.25 = 125,000 steps // 512 per update
    envs = matmul_dtype.case_config(matmul_dtype.CASES["envs256"], 1.0)
    assert envs.batch_size == 32_768 and envs.num_updates == 15  # 500,000 // 32,768
    tiny = matmul_dtype.case_config(matmul_dtype.CASES["envs256"], 0.01)
    assert tiny.num_updates == 1  # 5,000 steps: less than a batch, still one update
    assert all(c.matmul_dtype == "float32" for c in (s64, envs, tiny))


def test_matmul_dtype_table_gives_the_ratio_of_run_times_per_round():
    def side(run_s):
        return {"compile_s": 4.0, "run_s_median": run_s, "env_steps_per_s": 100_000,
                "iqm_return": 500.0}

    row = {"title": "CartPole classic, 1 seed", "seeds": 1, "devices": 1,
           "env_steps": 499_712, "float32": side(2.5), "bfloat16": side(2.0),
           "speed_bfloat16_over_float32": 1.25, "speed_per_round": [1.2, 1.25, 1.3]}
    result = {"benchmark": "b", "machine": {"cpu": "c", "cores": 2, "device": "cpu:0",
                                            "jax": "0"},
              "loadavg_before": ["1"], "loadavg_after": ["1"], "rows": [row]}
    assert matmul_dtype.markdown(result)[-1] == (
        "| CartPole classic, 1 seed (499k) | 1 | 4.0 / 2.5 | 100,000 | 500.0 | 4.0 / 2.0 | "
        "100,000 | 500.0 | **1.25** (1.2, 1.25, 1.3) |")
