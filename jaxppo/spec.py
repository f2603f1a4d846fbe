"""What a run is: a base Config, the settings swept, seeds and chunking, as a `Spec`.

    spec = jaxppo.spec.make_spec(config, {"learning_rate": [1e-3, 3e-4]}, seeds=8)
    spec.num_runs                               # 2 settings x 8 seeds = 16
    spec.to_json()                              # what a run directory's config.json holds

A `Spec` is enough to rebuild a run: `jaxppo.experiment` trains it, `jaxppo.rundir` writes it
to config.json and reads it back (`Spec.from_json` of `Spec.to_json` is the same spec).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from jaxppo import config as config_lib
from jaxppo import sweep as sweep_lib
from jaxppo import train as train_lib
from jaxppo.config import Config

FORMAT_VERSION = 1  # of config.json


class RunError(ValueError):
    """A user-facing problem with a run directory or a checkpoint (the CLI prints it)."""


def plain(value: Any) -> Any:
    """``value`` as a JSON value: numpy scalars and arrays as Python numbers and lists,
    tuples as lists, mappings (env_params) as objects."""
    if isinstance(value, np.generic | np.ndarray):
        return value.tolist()
    if isinstance(value, tuple):
        return [plain(v) for v in value]
    if isinstance(value, Mapping):
        return {k: plain(v) for k, v in value.items()}
    return value


def config_to_dict(config: Config) -> dict[str, Any]:
    """Every Config field as plain JSON values (tuples become lists)."""
    return {field.name: plain(getattr(config, field.name)) for field in dataclasses.fields(config)}


def config_from_dict(values: Mapping[str, Any]) -> Config:
    """The Config of `config_to_dict`; an unknown field is a `RunError` naming it."""
    known = {f.name for f in dataclasses.fields(Config)}
    unknown = sorted(set(values) - known)
    if unknown:
        raise RunError(f"unknown Config field(s) {', '.join(unknown)}; known fields: "
                       f"{', '.join(sorted(known))}")
    return Config(**values)


def static_values(config: Config) -> dict[str, Any]:
    """The static (program-changing) fields of ``config`` as JSON values: what a compiled
    program and a checkpoint of its train state belong to."""
    return {name: plain(getattr(config, name)) for name in config_lib.static_fields()}


@dataclasses.dataclass(frozen=True)
class Spec:
    """What a run is: a base config, H settings of dynamic fields, S seeds each.

    Attributes:
        config: the base Config; its static fields hold for every setting.
        settings: swept field (or "env_params.NAME") -> H values (an empty mapping means one
            setting: ``config``).
        seeds: S, seeds per setting; seed s of every setting uses the same PRNG key.
        seed: the base seed; the run keys are ``jax.random.split(jax.random.key(seed), S)``.
        chunk_updates: updates per compiled chunk.
        checkpoint_every: chunks between checkpoints (one is also saved at the end).
    """

    config: Config
    settings: Mapping[str, tuple[float, ...]]
    seeds: int
    seed: int
    chunk_updates: int
    checkpoint_every: int

    @property
    def num_settings(self) -> int:
        return sweep_lib.table_rows(self.settings)

    @property
    def num_runs(self) -> int:
        return self.num_settings * self.seeds

    def configs(self) -> list[Config]:
        """The H configs, setting by setting."""
        return [config_lib.with_values(self.config,
                                       {k: float(v[h]) for k, v in self.settings.items()})
                for h in range(self.num_settings)]

    def to_json(self) -> dict[str, Any]:
        """The spec as JSON values (config.json's content)."""
        return {
            "format": FORMAT_VERSION,
            "config": config_to_dict(self.config),
            "settings": {k: [float(x) for x in v] for k, v in self.settings.items()},
            "seeds": self.seeds,
            "seed": self.seed,
            "chunk_updates": self.chunk_updates,
            "checkpoint_every": self.checkpoint_every,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Spec:
        """The spec of `to_json`, checked as `make_spec` checks it.

        Raises:
            KeyError: for a missing entry; `RunError` for an unknown Config field;
            ValueError or TypeError for a bad value.
        """
        # The stored settings are a table, row by row: as numpy arrays, not lists (a grid).
        table = {k: np.asarray(v, np.float32) for k, v in data.get("settings", {}).items()}
        return make_spec(config_from_dict(data["config"]), table or None,
                         seeds=int(data["seeds"]), seed=int(data["seed"]),
                         chunk_updates=int(data["chunk_updates"]),
                         checkpoint_every=int(data["checkpoint_every"]))


def default_chunk_updates(num_updates: int) -> int:
    """About 50 chunks per run: progress and checkpoints every 2%, little host overhead."""
    return max(1, math.ceil(num_updates / 50))


def make_spec(config: Config, space: Mapping[str, Sequence[float]] | None = None, *,
              seeds: int = 8, seed: int = 0, chunk_updates: int | None = None,
              checkpoint_every: int = 10) -> Spec:
    """Check everything and build a `Spec` (errors are `ValueError`s naming the bad value).

    ``space`` is a grid (field -> list of values, every combination is run) or a table of
    settings (field -> numpy array [H], e.g. from `jaxppo.random_search`), as in
    `jaxppo.sweep`; None trains ``config`` alone.
    """
    train_lib.validate(config)
    seeds = config_lib.checked_int("seeds", seeds)
    seed = config_lib.checked_int("seed", seed, minimum=None)
    chunk = default_chunk_updates(config.num_updates) if chunk_updates is None else (
        config_lib.checked_int("chunk_updates", chunk_updates))
    checkpoint_every = config_lib.checked_int("checkpoint_every", checkpoint_every)
    settings: dict[str, tuple[float, ...]] = {}
    if space:
        table = sweep_lib.settings_table(space)
        # The shortest decimal that rounds to the float32 leaf: 0.001, not 0.0010000000474974513.
        settings = {k: tuple(float(str(np.float32(x))) for x in v) for k, v in table.items()}
    spec = Spec(config, settings, seeds, seed, min(chunk, config.num_updates), checkpoint_every)
    for c in spec.configs():
        train_lib.validate(c)
    return spec


def setting_labels(spec: Spec) -> list[str]:
    """One short label per setting, e.g. "learning_rate=0.001 clip_eps=0.2"."""
    if not spec.settings:
        return ["config"]
    return [" ".join(f"{k}={v[h]:.4g}" for k, v in spec.settings.items())
            for h in range(spec.num_settings)]
