"""Plots of a run (matplotlib, Agg backend, PNG files).

- `learning_curves`: per setting, the IQM over seeds of each seed's smoothed training return
  (trailing mean over 10 updates) with a 95% bootstrap band over seeds, against env steps.
- `sweep_plot`: final IQM per setting; a heat map when exactly two fields are swept on a full
  grid, else a ranked bar chart with 95% bootstrap intervals.
"""

from __future__ import annotations

import pathlib
from collections.abc import Sequence

import numpy as np

from jaxppo import stats


def smoothed(returns: np.ndarray, window: int = 10) -> np.ndarray:
    """Trailing nan-mean over ``window`` updates, [..., U] -> [..., U] (NaN where the window
    has no finished episode)."""
    r = np.asarray(returns, np.float64)
    seen = ~np.isnan(r)
    total = np.cumsum(np.where(seen, r, 0.0), axis=-1)
    count = np.cumsum(seen, axis=-1)
    total[..., window:] = total[..., window:] - total[..., :-window]
    count[..., window:] = count[..., window:] - count[..., :-window]
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(count > 0, total / np.maximum(count, 1), np.nan)


def iqm_band(values: np.ndarray, reps: int = 1000, confidence: float = 0.95, seed: int = 0
             ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """IQM over runs at each point, with a percentile bootstrap band over runs.

    Args:
        values: [runs, points]; a NaN point of a run is left out of that point.

    Returns:
        (iqm, low, high), each [points]; NaN where no run has a value.
    """
    values = np.asarray(values, np.float64)
    points = values.shape[1]
    rng = np.random.default_rng(seed)
    alpha = (1.0 - confidence) / 2.0
    center = np.full(points, np.nan)
    low = np.full(points, np.nan)
    high = np.full(points, np.nan)
    for p in range(points):
        column = values[:, p][~np.isnan(values[:, p])]
        n = column.size
        if n == 0:
            continue
        center[p] = stats.iqm(column)
        samples = np.sort(column[rng.integers(0, n, size=(reps, n))], axis=1)
        cut = int(0.25 * n)
        estimates = samples[:, cut : n - cut].mean(axis=1)
        low[p], high[p] = np.quantile(estimates, [alpha, 1.0 - alpha])
    return center, low, high


def _figure(width: float, height: float):
    """A matplotlib Figure drawn off-screen, without pyplot: the session's backend (inline
    plots in a notebook) is never touched and nothing needs closing."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=120)
    return fig, fig.subplots()


def _colormap(name: str):
    import matplotlib

    return matplotlib.colormaps[name]


def learning_curves(env_steps: np.ndarray, returns: np.ndarray, labels: Sequence[str],
                    title: str, path, max_points: int = 200) -> pathlib.Path:
    """Write a PNG of IQM training-return curves with bootstrap bands.

    Args:
        env_steps: env steps per run at each update [U].
        returns: `Metrics.episode_return` [H, S, U] (or [S, U] for one setting).
        labels: H setting labels for the legend.
        title: the plot title.
        path: the PNG path (parent folders are created).
        max_points: points per curve (updates are subsampled evenly beyond this).
    """
    returns = np.asarray(returns, np.float64)
    if returns.ndim == 2:
        returns = returns[None]
    smooth = smoothed(returns)
    points = np.unique(np.linspace(0, smooth.shape[-1] - 1,
                                   min(max_points, smooth.shape[-1])).astype(int))
    fig, ax = _figure(7.5, 4.5)
    colors = _colormap("tab10" if len(labels) <= 10 else "viridis")
    for h, label in enumerate(labels):
        color = colors(h % 10) if len(labels) <= 10 else colors(h / max(len(labels) - 1, 1))
        center, low, high = iqm_band(smooth[h][:, points], seed=h)
        x = np.asarray(env_steps)[points]
        text = (f"IQM over {returns.shape[1]} seeds" if len(labels) == 1
                else f"{label} (IQM of {returns.shape[1]} seeds)")
        ax.plot(x, center, color=color, linewidth=1.8, label=text + ", 95% bootstrap band")
        ax.fill_between(x, low, high, color=color, alpha=0.2, linewidth=0)
    ax.set_xlabel("environment steps per run")
    ax.set_ylabel("training episode return")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    if len(labels) <= 12:
        ax.legend(loc="best", fontsize=8)
    fig.tight_layout()
    path = pathlib.Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    return path


def sweep_plot(settings: dict[str, Sequence[float]], final: np.ndarray, title: str,
               path) -> pathlib.Path:
    """Write a PNG of the final IQM per setting: a heat map for a full 2-field grid, else a
    ranked bar chart with 95% bootstrap intervals over seeds.

    Args:
        settings: swept field -> H values.
        final: final returns [H, S] (NaN for runs without a finished episode).
    """
    centers, lows, highs = _final_iqms(np.asarray(final, np.float64))
    names = list(settings)
    path = pathlib.Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    grid_axes = [sorted(set(settings[n])) for n in names]
    if len(names) == 2 and len(grid_axes[0]) * len(grid_axes[1]) == len(centers):
        fig, ax = _heat_map(settings, centers, grid_axes)
    else:
        fig, ax = _ranked_bars(settings, centers, lows, highs)
    ax.set_title(title)
    fig.tight_layout()
    fig.savefig(path)
    return path


def _final_iqms(final: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(IQM, CI low, CI high) over seeds of each setting's final returns [H, S]; NaN for a
    setting without a finished episode."""
    out = np.full((3, len(final)), np.nan)
    for h, row in enumerate(final):
        finite = row[~np.isnan(row)]
        if finite.size:
            entry = stats.aggregate(finite, reps=1000)["iqm"]
            out[:, h] = entry["value"], entry["ci_low"], entry["ci_high"]
    return out[0], out[1], out[2]


def _heat_map(settings: dict[str, Sequence[float]], centers: np.ndarray,
              grid_axes: list[list[float]]):
    """The IQMs of a full 2-field grid as a heat map, each cell labelled."""
    names = list(settings)
    table = np.full((len(grid_axes[0]), len(grid_axes[1])), np.nan)
    for h in range(len(centers)):
        table[grid_axes[0].index(settings[names[0]][h]),
              grid_axes[1].index(settings[names[1]][h])] = centers[h]
    fig, ax = _figure(1.2 * len(grid_axes[1]) + 3, 0.8 * len(grid_axes[0]) + 2)
    image = ax.imshow(table, cmap="viridis", aspect="auto")
    ax.set_xticks(range(len(grid_axes[1])), [f"{v:.3g}" for v in grid_axes[1]])
    ax.set_yticks(range(len(grid_axes[0])), [f"{v:.3g}" for v in grid_axes[0]])
    ax.set_xlabel(names[1])
    ax.set_ylabel(names[0])
    finite = table[~np.isnan(table)]
    middle = (finite.max() + finite.min()) / 2 if finite.size else 0.0
    for i, j in zip(*np.nonzero(~np.isnan(table)), strict=True):
        ax.text(j, i, f"{table[i, j]:.1f}", ha="center", va="center",
                color="black" if table[i, j] > middle else "white", fontsize=9)
    fig.colorbar(image, ax=ax, label="final return (IQM over seeds)")
    return fig, ax


def _ranked_bars(settings: dict[str, Sequence[float]], centers: np.ndarray, lows: np.ndarray,
                 highs: np.ndarray):
    """The IQMs as horizontal bars, best first, with their intervals."""
    names = list(settings)
    order = np.argsort(-np.nan_to_num(centers, nan=-np.inf))
    labels = [" ".join(f"{n}={settings[n][h]:.3g}" for n in names) for h in order]
    fig, ax = _figure(7.5, 0.35 * len(order) + 1.5)
    y = np.arange(len(order))
    err = np.array([centers[order] - lows[order], highs[order] - centers[order]])
    ax.barh(y, centers[order], xerr=np.nan_to_num(err), color="tab:blue", alpha=0.8, capsize=3)
    ax.set_yticks(y, labels, fontsize=8)
    ax.invert_yaxis()
    ax.set_xlabel("final return (IQM over seeds, 95% bootstrap CI)")
    ax.grid(alpha=0.3, axis="x")
    return fig, ax


def plot_run(result) -> dict[str, pathlib.Path]:
    """The plots of an `experiment.Result`, under ``run_dir/plots``; name -> path."""
    from jaxppo import rundir

    plots_dir = pathlib.Path(result.run_dir) / rundir.PLOTS
    config = result.spec.config
    diverged = len(result.divergences())
    # A diverged run's curve stops where it diverged; the title counts them.
    note = f" ({diverged} of {result.spec.num_runs} runs diverged)" if diverged else ""
    out = {"learning curve": learning_curves(
        result.env_steps(), rundir.healthy_returns(result.metrics), result.setting_labels(),
        f"PPO on {config.env_id}{note}", plots_dir / rundir.LEARNING_CURVE)}
    if result.spec.settings:
        out["sweep plot"] = sweep_plot(
            {k: list(v) for k, v in result.spec.settings.items()}, result.final_returns(),
            f"PPO on {config.env_id}: final return per setting", plots_dir / rundir.SWEEP_PLOT)
    return out
