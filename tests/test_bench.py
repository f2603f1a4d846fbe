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
import brax_ppo  # noqa: E402
import compile_time  # noqa: E402
import machine  # noqa: E402
import networks  # noqa: E402  (bench/networks.py, not jaxppo.networks)
import peer_common  # noqa: E402
import peer_jaxppo  # noqa: E402
import peers  # noqa: E402
import roofline  # noqa: E402
import scaling  # noqa: E402
import zoo  # noqa: E402
import zoo_search  # noqa: E402


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
    assert machine.jaxppo_source(source.parent) == "jaxppo"  # no machine's path in results


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


def _network_case(name):
    return next(c for c in networks.cases() if c.name == name)


def test_networks_hand_count_of_the_breakout_cnn_and_the_memory_chain_gru():
    cnn = networks.hand_count(_network_case("breakout-cnn").config)
    # One shared torso: conv 3x3x4 -> 16 on 10x10, 8*8 windows x 2*36*16 = 73,728; hidden
    # 2*1024*128 = 262,144; heads 2*128*3 = 768 and 2*128 = 256: F = 336,896.
    assert cnn["tower"]["parts"] == {"encoder": 73_728, "hidden": 262_144, "core": 0}
    assert cnn["forward"] == 336_896
    # Rollout F + F_c: the torso twice, the policy head once, the value head twice.
    assert cnn["rollout"] == {"encoder": 147_456, "hidden": 524_288, "core": 0, "heads": 1_280}
    # Update 4 epochs x (3 F - the conv's input gradient) = 4 * (1,010,688 - 73,728).
    assert sum(cnn["update"].values()) == 4 * 936_960 == 3_747_840
    assert cnn["update"]["encoder"] == 4 * (3 * 73_728 - 73_728) == 589_824
    # Adam: 32 gradient steps x 132,308 params (592 + 131,200 + 387 + 129) x 17 / 8,192.
    assert cnn["params"] == 132_308 and cnn["adam"] == 8_786
    assert cnn["per_env_step"] == 673_024 + 3_747_840 + 8_786
    gru = networks.hand_count(_network_case("memorychain-gru").config)
    # Two towers: hidden 2*3*32 = 192, GRU 2*3*32*(32 + 32) = 12,288; heads 2*32*2 = 128, 64.
    assert gru["tower"]["parts"] == {"encoder": 0, "hidden": 192, "core": 12_288}
    assert gru["forward"] == 2 * (192 + 12_288) + 128 + 64 == 25_152
    assert gru["rollout"]["core"] == 3 * 12_288  # two towers acting, the critic's next value
    assert gru["update"]["core"] == 4 * 3 * 2 * 12_288 == 294_912
    assert gru["forward_backward_per_sample"] == 3 * 25_152 - 2 * 192 == 75_072


def test_networks_hand_count_of_an_mlp_is_roofline_s():
    # Both count CartPole's classic MLP the same way: 240,896 FLOPs per env step.
    config = jaxppo.preset("CartPole-v1")
    hand = networks.hand_count(config)
    assert hand["per_env_step"] == roofline.hand_count(config)["per_env_step"] == 240_896
    assert hand["rollout"]["encoder"] == hand["rollout"]["core"] == 0


def test_networks_ratio_is_the_median_of_within_round_ratios():
    # Both: rounds of rate / baseline rate 0.5, 0.6 and 0.9, whose median is 0.6. In the
    # second the ratio of the medians would be 100 / 200 = 0.5: the rounds are kept paired.
    assert networks.within_round_ratios([100.0, 120.0, 180.0], [200.0, 200.0, 200.0]) == 0.6
    assert networks.within_round_ratios([100.0, 60.0, 180.0], [200.0, 100.0, 200.0]) == 0.6


def test_networks_tables_give_a_row_per_case_and_seed_count():
    case = _network_case("breakout-cnn")
    row = networks.speed_row(case, 8, 2, 131_072, 21.5, [(0.1, 2.0), (0.2, 1.0), (0.1, 4.0)],
                             0.875)
    # Median of the training calls: 2.0 s, so 131,072 / 2.0 = 65,536 env steps/s.
    assert row["env_steps_per_s"] == 65_536 and row["init_s_median"] == 0.1
    row["fraction_of_peak"] = 0.25
    hand = networks.hand_count(case.config)
    result = {"machine": {"cpu": "cpu", "cores": 2, "device": "cpu:0", "jax": jax.__version__},
              "loadavg_before": ["1.0"] * 3, "loadavg_after": ["1.0"] * 3,
              "command": "python bench/networks.py", "repeats": 3, "rows": [row],
              "costs": {case.name: {"hand": hand, "xla": {"forward_backward_per_sample":
                                                          hand["forward_backward_per_sample"],
                                                          "rollout_per_env_step": 700_000}}},
              "pieces_ms": {case.name: {"rollout": 10.0, "advantages": 20.0, "epochs": 70.0,
                                        "whole update": 95.0}},
              "peak": {"n": 2048, "flops_per_s": 2e11}}
    lines = networks.markdown(result)
    memory = row["memory_estimate_bytes"] / 2**20
    assert (f"| breakout-cnn | {case.network} | 8 | 65,536 | 0.88 (breakout-mlp) | 21.5 | 0.1 "
            f"| 25.0% | {memory:,.1f} MiB |") in lines
    assert "| breakout-cnn | **per env step** | 737,280 | 3,670,016 | 0 | 13,568 | 8,786 | " \
           "4,429,650 |" in lines
    assert "| breakout-cnn | 936,960 | 936,960 | 1.000 | 673,024 | 700,000 |" in lines
    assert "| breakout-cnn | 10.0 (10%) | 20.0 (20%) | 70.0 (70%) | 100.0 | 95.0 |" in lines


def _zoo_row(env_id, low, value, high, env_steps=1_000_000):
    return {"env_id": env_id, "published": zoo.PUBLISHED.get(env_id), "env_steps": env_steps,
            "eval_aggregate": {"iqm": {"ci_low": low, "value": value, "ci_high": high}}}


def test_zoo_header_names_each_machine_with_its_rows():
    amd = {"cpu": "AMD EPYC", "cores": 2, "device": "cpu:0", "jax": "0.10.2"}
    intel = {**amd, "cpu": "Intel Xeon"}
    result = {"machine": intel, "envs": {"A": {"env_id": "A", "machine": amd},
                                          "B": {"env_id": "B", "machine": intel},
                                          "C": {"env_id": "C"}}}  # before rows kept theirs
    assert zoo.machines(result) == (
        "Machines: AMD EPYC, 2 cores, cpu:0; jax 0.10.2 (A); "
        "Intel Xeon, 2 cores, cpu:0; jax 0.10.2 (B, C).")
    del result["envs"]["A"]
    assert zoo.machines(result) == "Machine: Intel Xeon, 2 cores, cpu:0; jax 0.10.2."


def test_zoo_verdict_meets_when_the_interval_reaches_the_published_value():
    assert zoo.PUBLISHED["Acrobot-v1"]["value"] == -73.5
    assert zoo.PUBLISHED["Acrobot-v1"]["env_steps"] == 1_000_000
    assert zoo.verdict(_zoo_row("Acrobot-v1", -80.0, -76.0, -73.5)) == "meets"
    # IQM -83.9 against -73.5: short by 10.4.
    assert zoo.verdict(_zoo_row("Acrobot-v1", -89.6, -83.9, -82.1)) == "short by 10.4"
    assert zoo.verdict(_zoo_row("Catch-bsuite", 1.0, 1.0, 1.0)) == ""  # nothing published


def test_zoo_verdict_names_the_budget_ratio_where_the_budgets_differ():
    # Pendulum-v1's published -172.2 is at 100k steps: 999,424 / 100,000 = 10x.
    assert zoo.verdict(_zoo_row("Pendulum-v1", -177.2, -156.5, -148.2, 999_424)) == (
        "meets, with 10x the published steps")
    # Breakout's 28 is at 10M: 1,998,848 / 10M = 1/5; 28 - 6.5 = 21.5.
    assert zoo.verdict(_zoo_row("Breakout-MinAtar", 6.0, 6.5, 7.0, 1_998_848)) == (
        "short by 21.5, with 1/5 of the published steps")
    # Within a quarter of each other, no ratio: 1,048,576 against navix's 1,048,640.
    assert zoo.verdict(_zoo_row("navix/Navix-Empty-Random-8x8-v0", 0.9, 1.0, 1.0,
                                1_048_576)) == "meets"


def test_zoo_scores_over_enough_updates_for_an_episode_to_end():
    config = jaxppo.preset("MountainCar-v0")  # 200-step episodes in 16-step rollouts
    ended = np.full((2, 40), np.nan)
    ended[:, -3] = -200.0  # both seeds ended an episode in the last 10 updates
    assert zoo.score_window(config, ended) == 10
    ended[1, -3] = np.nan
    ended[1, -12] = -200.0  # seed 1 only 12 updates ago: widen to ceil(200 / 16) = 13
    assert zoo.score_window(config, ended) == 13
    np.testing.assert_array_equal(stats.final_returns(ended, 13), [-200.0, -200.0])


def test_zoo_row_from_a_checkpointed_run_equals_one_call_and_is_kept(tmp_path, monkeypatch):
    """--runs: the row's numbers are those of one `jaxppo.sweep` call; measured again, the
    finished run is read back, not retrained; a run of other seeds is refused in one line."""
    monkeypatch.setitem(jaxppo.PRESETS, "ProbeTruncation-v0", jaxppo.Config(
        env_id="ProbeTruncation-v0", num_envs=2, num_steps=8, total_timesteps=3 * 16,
        num_minibatches=2, update_epochs=1, hidden_sizes=(8,)))
    one_call = zoo.measure("ProbeTruncation-v0", 1.0, 2, 2)
    kept = zoo.measure("ProbeTruncation-v0", 1.0, 2, 2, runs=tmp_path)
    assert (tmp_path / "ProbeTruncation-v0" / "metrics.csv").exists()
    again = zoo.measure("ProbeTruncation-v0", 1.0, 2, 2, runs=tmp_path)
    for row in (kept, again):
        assert {k: v for k, v in row.items() if k != "train_s"} == {
            k: v for k, v in one_call.items() if k != "train_s"}
    with pytest.raises(SystemExit, match="holds another run than ProbeTruncation-v0's preset "
                                         "with 3 seeds"):
        zoo.measure("ProbeTruncation-v0", 1.0, 3, 2, runs=tmp_path)


def test_zoo_search_reads_a_grid_and_a_random_space():
    table, written = zoo_search.parse_space(["ent_coef=0,0.01", "gae_lambda=0.95,0.98"], [],
                                            16, seed=0)
    assert written == {"ent_coef": [0.0, 0.01], "gae_lambda": [0.95, 0.98]}
    # 2 x 2 combinations, the first field varying slowest.
    np.testing.assert_allclose(table["ent_coef"], [0, 0, 0.01, 0.01])
    np.testing.assert_allclose(table["gae_lambda"], [0.95, 0.98, 0.95, 0.98])
    table, written = zoo_search.parse_space([], ["learning_rate=log:1e-4:1e-3"], 5, seed=0)
    assert written == {"learning_rate": ("log", 1e-4, 1e-3)} and len(table["learning_rate"]) == 5
    assert np.all((table["learning_rate"] >= 1e-4) & (table["learning_rate"] <= 1e-3))


@pytest.mark.parametrize("grid, random, message", [
    ([], [], "exactly one of --grid and --random"),
    (["ent_coef"], [], "'ent_coef': expected FIELD=VALUES"),
    (["ent_coef=a,b"], [], "expected numbers"),
    ([], ["learning_rate=log:1e-4"], "expected numbers"),
    (["num_envs=4,8"], [], "num_envs"),
])
def test_zoo_search_refuses_a_bad_space_in_one_line(grid, random, message):
    with pytest.raises(SystemExit, match=re.escape(message)):
        zoo_search.parse_space(grid, random, 4, seed=0)


@pytest.mark.parametrize("argv, message", [
    (["CartPole-v1", "--seeds", "0", "--grid", "ent_coef=0"], "--seeds 0"),
    (["CartPole-v2", "--grid", "ent_coef=0"], "unknown env id 'CartPole-v2'"),
    (["CartPole-v1", "--static", "{\"num_envs\": -1}", "--grid", "ent_coef=0"], "--static"),
    (["CartPole-v1", "--name", "a/b", "--grid", "ent_coef=0"], "--name 'a/b'"),
])
def test_zoo_search_refuses_bad_arguments_before_training(argv, message, monkeypatch):
    monkeypatch.setattr(sys, "argv", ["zoo_search.py", *argv])
    monkeypatch.setattr(jaxppo, "use_cpu_cores", lambda *a: 1)  # leave this process alone
    with pytest.raises(SystemExit, match=re.escape(message)):
        zoo_search.main()


def test_zoo_search_names_a_suites_results_file_without_its_slash():
    assert zoo_search.output_name("navix/Navix-Empty-5x5-v0", None) == "navix_Navix-Empty-5x5-v0"
    assert zoo_search.output_name("CartPole-v1", None) == "CartPole-v1"
    assert zoo_search.output_name("CartPole-v1", "lr") == "lr"


def test_brax_ppo_budget_is_whole_updates_that_split_into_brax_epochs():
    assert brax_ppo.STEPS_PER_UPDATE == 128 * 30
    # 1,536,000 / 3,840 = 400 updates, 100 per epoch: kept as it is.
    assert brax_ppo.budget(1_536_000, 4) == 1_536_000
    # 1,000,000 / 3,840 = 260.4 -> 260 updates, 65 per epoch: 998,400 steps.
    assert brax_ppo.budget(1_000_000, 4) == 260 * 3_840
    # Fewer steps than one update per epoch still runs one per epoch.
    assert brax_ppo.budget(10, 3) == 3 * 3_840


def test_brax_ppo_table_gives_the_speed_ratio_and_each_trainers_iqm():
    peer = {"env_steps": 1_536_000, "compile_s": 30.0, "final_returns": [900.0]}
    result = {
        "machine": {"cpu": "cpu", "cores": 2, "device": "cpu:0", "jax": "0"},
        "load_average": {"before": ["1"] * 3, "after": ["1"] * 3}, "command": "c",
        "config": brax_ppo.CONFIG, "differences": ["one"],
        "speed": {"jaxppo": {**peer, "run_s_median": 12.8, "env_steps_per_s": 120_000},
                  "brax": {**peer, "run_s": 19.2, "env_steps_per_s": 80_000}},
        "learning": {"env_steps_per_seed": 3_840, "seeds": 4, "eval_episodes": 8,
                     "jaxppo": {"scores": [1.0, 2.0, 3.0, 4.0], "wall_s": 60.0},
                     "brax": {"scores": [5.0, 5.0, 5.0, 5.0], "wall_s": 300.0}},
    }
    table = brax_ppo.render(result)
    assert "jaxppo / Brax env steps/s: **1.50x**" in table  # 120,000 / 80,000
    # IQM of [1, 2, 3, 4]: the middle half, 2 and 3, averages 2.5; seeds that differ give
    # an interval around it (the scores are one task's seeds, not four tasks).
    match = re.search(r"^\| jaxppo \(seeds in one call\) \| 2\.5 \[([\d.]+), ([\d.]+)\]",
                      table, re.M)
    assert match and float(match[1]) < 2.5 < float(match[2]), table
    assert re.search(r"^\| Brax PPO \(one call per seed\) \| 5\.0 \[5\.0, 5\.0\]", table,
                     re.M), table


def test_brax_ppo_table_splits_each_run_into_the_env_and_the_rest():
    peer = {"env_steps": 1_536_000, "compile_s": 30.0, "final_returns": [900.0]}
    speed = {"jaxppo": {**peer, "run_s_median": 12.8, "env_steps_per_s": 120_000},
             "brax": {**peer, "run_s": 19.2, "env_steps_per_s": 80_000},
             "env_alone": {"env_steps": 768_000, "run_s_median": 1.4,
                           "env_steps_per_s": 548_571}}
    # The env's 1.4 s for half the steps is 2.8 s for the runs' 1,536,000: the rest is
    # 12.8 - 2.8 = 10.0 s for jaxppo and 19.2 - 2.8 = 16.4 s for Brax, 16.4 / 10.0 = 1.64.
    line = brax_ppo._beyond_env(speed)[0]
    assert "jaxppo's run takes 10.00 s and Brax's 16.40 s (1.64x)" in line, line
    del speed["env_alone"]  # results measured before the env was timed alone
    assert brax_ppo._beyond_env(speed) == []


@pytest.mark.parametrize("argv, message", [
    (["--seeds", "0"], "--seeds must be >= 1, got 0"),
    (["--epochs", "2"], "--epochs must be >= 3"),
])
def test_brax_ppo_refuses_bad_arguments_in_one_line(argv, message, monkeypatch, capsys):
    monkeypatch.setattr(sys, "argv", ["brax_ppo.py", *argv])
    with pytest.raises(SystemExit):
        brax_ppo.main()
    assert message in capsys.readouterr().err


def test_scaling_refuses_an_unknown_env_in_one_line(monkeypatch, capsys):
    monkeypatch.setattr(sys, "argv", ["scaling.py", "--env", "CartPole-v2"])
    with pytest.raises(SystemExit):
        scaling.main()
    assert "--env 'CartPole-v2': not a known env id" in capsys.readouterr().err
