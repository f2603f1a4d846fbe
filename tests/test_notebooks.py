"""The notebooks run end to end (tiny budgets) and print what their prose promises.

Each test swaps the notebook's cell tagged "parameters" for a small budget, executes the
notebook with nbclient in a fresh working directory under pytest's tmp_path, and checks the
outputs of named cells.
"""

import pathlib
import re

import nbformat
import pytest

nbclient = pytest.importorskip("nbclient")

NOTEBOOKS = pathlib.Path(__file__).resolve().parent.parent / "notebooks"
CELL_TIMEOUT_S = 600


def _execute(name: str, parameters: str, workdir: pathlib.Path, monkeypatch
             ) -> nbformat.NotebookNode:
    """The notebook ``name`` with its parameters cell replaced, executed in ``workdir``; the
    kernel keeps its compile cache (`jaxppo.use_compile_cache`) under ``workdir``."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(workdir / "xdg"))
    monkeypatch.delenv("JAX_COMPILATION_CACHE_DIR", raising=False)
    notebook = nbformat.read(NOTEBOOKS / name, as_version=4)
    tagged = [c for c in notebook.cells if "parameters" in c.metadata.get("tags", [])]
    assert len(tagged) == 1, f"{name} needs exactly one cell tagged 'parameters'"
    assert tagged[0].cell_type == "code"
    tagged[0].source = parameters
    workdir.mkdir(parents=True, exist_ok=True)
    client = nbclient.NotebookClient(notebook, timeout=CELL_TIMEOUT_S, kernel_name="python3",
                                     resources={"metadata": {"path": str(workdir)}})
    # Raises CellExecutionError (with the cell's traceback) if any cell fails.
    client.execute()
    return notebook


def _errors(notebook: nbformat.NotebookNode) -> list[str]:
    return [f"{o.get('ename')}: {o.get('evalue')}" for c in notebook.cells
            if c.cell_type == "code" for o in c.get("outputs", []) if o.output_type == "error"]


def _cell(notebook: nbformat.NotebookNode, snippet: str) -> nbformat.NotebookNode:
    """The one code cell whose source contains ``snippet``."""
    cells = [c for c in notebook.cells if c.cell_type == "code" and snippet in c.source]
    assert len(cells) == 1, f"expected one code cell containing {snippet!r}, got {len(cells)}"
    return cells[0]


def _stdout(cell: nbformat.NotebookNode) -> str:
    return "".join(o.get("text", "") for o in cell.outputs if o.output_type == "stream")


def _images(cell: nbformat.NotebookNode) -> int:
    return sum("image/png" in o.get("data", {}) for o in cell.outputs
               if o.output_type in ("display_data", "execute_result"))


def _cached(workdir: pathlib.Path) -> int:
    """How many compiled programs the notebook's kernel left in its compile cache."""
    folder = workdir / "xdg" / "jaxppo" / "xla"
    return sum(1 for _ in folder.iterdir()) if folder.exists() else 0


def test_quickstart(tmp_path, monkeypatch):
    run_dir = tmp_path / "run"
    # 2 seeds x 16 updates of 4 envs x 32 steps; 3 evaluation episodes per seed.
    parameters = (f"TOTAL_TIMESTEPS = 2048\nSEEDS = 2\nNUM_ENVS = 4\nNUM_STEPS = 32\n"
                  f"EVAL_EPISODES = 3\nRUN_DIR = {str(run_dir)!r}\n")
    notebook = _execute("quickstart.ipynb", parameters, tmp_path / "work", monkeypatch)
    assert _errors(notebook) == []
    assert _cached(tmp_path / "work") > 0

    trained = _stdout(_cell(notebook, "jaxppo.experiment.run("))
    assert "episode_return metrics [settings, seeds, updates]: (1, 2, 16)" in trained
    for name in ("config.json", "metrics.csv", "summary.json", "checkpoints"):
        assert (run_dir / name).exists(), name
    assert (run_dir / "plots" / "learning_curve.png").stat().st_size > 0
    assert _images(_cell(notebook, 'result.paths["learning curve"]')) == 1
    assert _images(_cell(notebook, "plots.iqm_band(curves)")) == 1

    assert "returns shape: (2, 3)" in _stdout(_cell(notebook, "jaxppo.evaluate("))
    summary = _stdout(_cell(notebook, "jaxppo.stats.aggregate(per_seed)"))
    for name in ("iqm", "median", "mean", "training IQM"):
        assert re.search(rf"^{name} +[\d.]+ \[[\d.]+, [\d.]+\]$", summary, re.M), summary

    episode = _stdout(_cell(notebook, "jaxppo.load("))
    match = re.search(r"one episode: return (\d+) over (\d+) steps", episode)
    assert match, episode
    # CartPole pays 1 per step, so the return is the episode length.
    assert match.group(1) == match.group(2)

    pure = _stdout(_cell(notebook, "jax.vmap(jaxppo.train"))
    assert "metrics.episode_return [seeds, updates]: (2, 16)" in pure


def test_sweep(tmp_path, monkeypatch):
    # A 2 x 2 grid x 2 seeds: one program of 8 runs, 16 updates each.
    parameters = ("TOTAL_TIMESTEPS = 2048\nSEEDS = 2\nNUM_ENVS = 4\nNUM_STEPS = 32\n"
                  "LEARNING_RATES = [3e-4, 1e-3]\nCLIP_EPS = [0.1, 0.2]\n"
                  f"OUT_DIR = {str(tmp_path / 'plots')!r}\n")
    notebook = _execute("sweep.ipynb", parameters, tmp_path / "work", monkeypatch)
    assert _errors(notebook) == []
    assert _cached(tmp_path / "work") > 0

    trained = _stdout(_cell(notebook, "jaxppo.sweep("))
    assert "episode_return [settings, seeds, updates]: (4, 2, 16)" in trained

    ranking = _stdout(_cell(notebook, "rows.sort("))
    rows = re.findall(r"^ +(\d) +(\S+) +(\S+) +([\d.]+) \[([\d.]+), ([\d.]+)\] +[\d.]+$",
                      ranking, re.M)
    assert [int(r[0]) for r in rows] == [1, 2, 3, 4], ranking
    settings = {(float(r[1]), float(r[2])) for r in rows}
    assert settings == {(3e-4, 0.1), (3e-4, 0.2), (1e-3, 0.1), (1e-3, 0.2)}
    iqms = [float(r[3]) for r in rows]
    assert iqms == sorted(iqms, reverse=True)
    for _, _, _, value, low, high in rows:
        assert float(low) <= float(value) <= float(high)

    assert _images(_cell(notebook, "plots.sweep_plot(")) == 1
    assert (tmp_path / "plots" / "sweep.png").stat().st_size > 0
    assert _images(_cell(notebook, "plots.learning_curves(")) == 1


def test_networks(tmp_path, monkeypatch):
    run_root = tmp_path / "runs"
    # ProbeMemory: 2 seeds x 3 updates of 16 envs x 20 steps; Breakout: 2 seeds x 2 updates of
    # 8 envs x 16 steps; ProbeMultiDiscrete: 2 seeds x 2 updates of 16 envs x 8 steps.
    parameters = ("MEMORY_TIMESTEPS = 960\nMEMORY_SEEDS = 2\nEVAL_EPISODES = 3\n"
                  "BREAKOUT_TIMESTEPS = 256\nBREAKOUT_SEEDS = 2\nBREAKOUT_NUM_ENVS = 8\n"
                  "BREAKOUT_NUM_STEPS = 16\nMULTI_DISCRETE_TIMESTEPS = 256\n"
                  f"RUN_DIR = {str(run_root)!r}\n")
    notebook = _execute("networks.ipynb", parameters, tmp_path / "work", monkeypatch)
    assert _errors(notebook) == []
    assert _cached(tmp_path / "work") > 0

    trained = _stdout(_cell(notebook, "memory_runs[name] = jaxppo.experiment.run("))
    for name in ("gru", "mlp"):
        assert f"{name}: compiled in" in trained
        assert re.search(rf"^{name}: .*\[settings, seeds, updates\]: \(1, 2, 3\)$", trained,
                         re.M), trained
        assert (run_root / f"memory-{name}" / "checkpoints").exists()
    assert _images(_cell(notebook, "plots.smoothed(run.metrics")) == 1

    evaluated = _stdout(_cell(notebook, "jaxppo.evaluate(memory_configs[name]"))
    for name in ("gru", "mlp"):
        assert f"{name}: greedy evaluation returns [seeds, episodes]: (2, 3)" in evaluated

    driven = _stdout(_cell(notebook, "policy.step(carry, obs, start)"))
    assert "recurrent: True" in driven
    rows = re.findall(r"^ *(\d+) +(True|False) +(-?\d+) +(\d) +([01]) +(-?\d+)$", driven, re.M)
    assert [int(r[0]) for r in rows] == list(range(10)), driven
    # Each 5-step episode: the cue +-1 and start=True at its first step, the query at its last,
    # the reward +-1 only there.
    for t, start, cue, query, _, reward in rows:
        first, last = int(t) % 5 == 0, int(t) % 5 == 4
        assert (start == "True") == first and (abs(int(cue)) == 1) == first, driven
        assert (query == "1") == last and (abs(int(reward)) == 1) == last, driven

    reset = _stdout(_cell(notebook, "policy.step(previous_carry, first_obs, True)"))
    assert "start=True from the old carry equals a zero carry: True" in reset
    assert re.search(r"start=False from the old carry differs by up to [\d.]+$", reset, re.M)
    called = _stdout(_cell(notebook, "policy.reset()"))
    assert re.search(r"mean return -?[\d.]+ over 3 episodes", called), called

    breakout = _stdout(_cell(notebook, "breakout_run = jaxppo.experiment.run("))
    assert "observation shape: (10, 10, 4)" in breakout
    assert "episode_return [settings, seeds, updates]: (1, 2, 2)" in breakout
    assert _images(_cell(notebook, 'breakout_run.paths["learning curve"]')) == 1
    assert (run_root / "breakout-cnn" / "plots" / "learning_curve.png").stat().st_size > 0

    multi = _stdout(_cell(notebook, "multi_policy = jaxppo.load("))
    assert "nvec: (3, 2) action shape: (2,)" in multi
    assert re.search(r"^one observation \(\+1\): \[\d \d\] shape \(2,\)$", multi, re.M), multi
    assert re.search(r"shape \(3, 2\)$", multi, re.M), multi


@pytest.mark.slow  # MJX physics compiled into a whole run
def test_suites(tmp_path, monkeypatch):
    pytest.importorskip("mujoco_playground")
    # 2 gravities x 2 seeds, then 2 mass scales x 2 seeds: 2 updates of 8 envs x 8 steps each
    # (8 envs: the preset's 8 minibatches of whole env trajectories).
    parameters = ("TOTAL_TIMESTEPS = 128\nSEEDS = 2\nNUM_ENVS = 8\nNUM_STEPS = 8\n"
                  "GRAVITIES = [-9.81, -19.6]\nMASS_SETTINGS = 2\nEVAL_EPISODES = 2\n")
    notebook = _execute("suites.ipynb", parameters, tmp_path / "work", monkeypatch)
    assert _errors(notebook) == []

    described = _stdout(_cell(notebook, "jaxppo.envs.make(config.env_id)"))
    assert "env params: damping_scale, friction_scale, gravity, mass_scale" in described
    assert "2 updates of 64 transitions per run" in described
    swept = _stdout(_cell(notebook, '{"env_params.gravity": GRAVITIES}'))
    assert "2 gravities x 2 seeds in one call" in swept
    assert len(re.findall(r"^gravity +-?[\d.]+: final training return per seed", swept,
                          re.M)) == 2
    assert _images(_cell(notebook, "plots.smoothed(curves)")) == 1
    table = _stdout(_cell(notebook, "table[h, j] = jaxppo.evaluate("))
    rows = re.findall(r"^ +(-[\d.]+) +(-?[\d.]+) +(-?[\d.]+)$", table, re.M)
    assert [float(r[0]) for r in rows] == [-9.81, -19.6], table
    masses = _stdout(_cell(notebook, "jaxppo.random_search("))
    assert "2 mass scales x 2 seeds in one call" in masses
    scales = [float(s) for s in re.findall(r"^mass x ([\d.]+):", masses, re.M)]
    assert len(scales) == 2 and all(0.5 <= s <= 2.0 for s in scales)
