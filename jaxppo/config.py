"""The one frozen, typed configuration of a PPO run.

A `Config` is a pytree. Its *static* fields (``pytree_node=False``) change shapes or the
compiled program: the environment, counts, network sizes and boolean switches. They live in
the tree structure, so two configs that differ in one of them are two programs. Its *dynamic*
fields are float leaves (learning rate, discount, clip range, ...): they reach the jitted
program as traced values, so changing one never recompiles, and a config whose dynamic leaves
are stacked along a leading axis (`stack_configs`) is how one vmaps over hyperparameters.
``env_params`` is dynamic too: a mapping (`EnvParams`) whose parameter names are structure
(static) and whose values are float leaves, so an environment's parameters are vmapped and swept
like the other dynamic fields.

Validation is the explicit function `validate`, called in Python before tracing; it is never
run from ``__post_init__`` because JAX rebuilds pytrees through ``__init__`` (with traced
leaves). ``__post_init__`` only turns a list of hidden sizes into the tuple a static field must
be (hashable), and a dict of env params into an `EnvParams`; it checks nothing.
"""

from __future__ import annotations

import dataclasses
import numbers
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import jax
import numpy as np
from flax import struct

ACTIVATIONS = ("tanh", "relu")
ACTION_DISTS = ("auto", "categorical", "multi_discrete", "gaussian")
ENCODERS = ("mlp", "cnn", "nature_cnn")
CORES = ("none", "gru", "lstm")
SHUFFLE_MODES = ("transitions", "trajectories")
ENT_SCHEDULES = ("constant", "linear", "exponential")
GRAD_NORM_TYPES = ("l2", "max")
MATMUL_DTYPES = ("float32", "bfloat16")
FLOAT32_MAX = float(np.finfo(np.float32).max)
MAX_BATCH = 2**31  # prng.bijective_permutation's limit
# A sweep's column for one env parameter: "env_params.gravity" (`with_values`).
ENV_PARAM_PREFIX = "env_params."


def _static(default):
    return struct.field(pytree_node=False, default=default)


class EnvParams(Mapping):
    """An environment's parameters by name (name -> number): the type of `Config.env_params`.

    Immutable and hashable (as a Config must be), and a pytree: the names, sorted, are its
    static structure and the values its leaves. Configs that set the same names are one
    program, their values traced (vmapped, swept); another set of names is another program.
    Values are kept as given (Python numbers, a stacked config's numpy arrays, tracers); the
    env receives them as float32 (`jaxppo.envs.make_for`). Nothing is checked here:
    `validate` checks the values, `jaxppo.envs.check_params` the names against the env.

        EnvParams({"gravity": 12.0, "masspole": 0.2})
    """

    __slots__ = ("_items",)

    def __init__(self, values: Mapping[str, Any] | Sequence[tuple[str, Any]] = (), /,
                 **named: Any) -> None:
        items = dict(values, **named)
        object.__setattr__(self, "_items", {name: items[name] for name in sorted(items)})

    @classmethod
    def _of(cls, names: tuple[str, ...], values) -> EnvParams:
        # JAX rebuilds pytrees with any leaves (tracers, None, sentinels): no conversion.
        params = object.__new__(cls)
        object.__setattr__(params, "_items", dict(zip(names, values, strict=True)))
        return params

    def __getitem__(self, name: str):
        return self._items[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._items)

    def __len__(self) -> int:
        return len(self._items)

    def __hash__(self) -> int:
        return hash(tuple(self._items.items()))

    def __eq__(self, other) -> bool:
        return isinstance(other, Mapping) and dict(self._items) == dict(other.items())

    def __setattr__(self, name: str, value) -> None:
        raise AttributeError(f"EnvParams is immutable; build a new one, e.g. "
                             f"EnvParams({{**params, {name!r}: ...}})")

    def __repr__(self) -> str:
        return f"EnvParams({self._items!r})"

    def __reduce__(self):  # copy and pickle through __init__ (attributes are not settable)
        return EnvParams, (self._items,)


def _flatten_with_keys(params: EnvParams):
    return tuple((jax.tree_util.DictKey(k), v) for k, v in params.items()), tuple(params)


jax.tree_util.register_pytree_with_keys(
    EnvParams, _flatten_with_keys, lambda names, values: EnvParams._of(names, values),
    lambda params: (tuple(params.values()), tuple(params)))


class Config(struct.PyTreeNode):
    """Hyperparameters of one PPO run (defaults: the classic-control settings of CleanRL).

    Static fields (change the program): ``env_id``, ``num_envs``, ``num_steps``,
    ``total_timesteps``, ``update_epochs``, ``num_minibatches``, ``hidden_sizes``,
    ``activation``, ``action_dist``, ``shuffle``, ``ent_schedule``, ``grad_norm_type``,
    ``fourier_features``, ``matmul_dtype``, ``encoder``, ``core``, ``core_size`` and the
    switches ``shared_encoder``, ``anneal_lr``,
    ``normalize_advantages``, ``clip_value_loss``, ``dual_clip``, ``normalize_obs``,
    ``scale_rewards``, ``normalize_values``, ``recompute_advantages``, ``kl_early_stop``,
    ``action_masking``, ``squash_mean``, ``gsde``, ``gsde_sample_freq`` (`static_fields`).

    Dynamic fields (float leaves, traced, vmappable): ``learning_rate``, ``gamma``,
    ``gae_lambda``, ``clip_eps``, ``dual_clip_c``, ``vf_coef``, ``vf_clip``, ``ent_coef``,
    ``max_grad_norm``, ``adam_eps``, ``init_log_std``, ``obs_clip``, ``ent_coef_end``,
    ``target_kl``, ``temperature``, ``fourier_scale`` (`float_fields`), and ``env_params``
    (one leaf per parameter set; its names are structure) (`dynamic_fields`).

    Attributes:
        env_id: a gymnax environment id or a jaxppo probe id (`jaxppo.envs.registered`).
        num_envs: parallel environments N in one rollout.
        num_steps: steps T per environment in one rollout; one update sees T x N transitions.
        total_timesteps: environment steps of the whole run; rounded down to whole updates.
        update_epochs: passes over the rollout batch per update.
        num_minibatches: minibatches per epoch; must divide T x N.
        hidden_sizes: widths of the hidden layers of the actor and of the critic MLPs.
        activation: "tanh" or "relu".
        encoder: what reads the observation before the hidden layers: "mlp" (the observation
            flattened), "cnn" (MinAtar's: one 3x3 conv of 16 channels, for small grids
            [H, W, C]) or "nature_cnn" (the Nature-DQN torso, for 84x84 frames); relu after
            each conv.
        core: "none" (a feed-forward policy), or a recurrent "gru" or "lstm" after the hidden
            layers: its carry is kept through the rollout, zeroed at episode starts, and
            replayed along whole env sequences by the update (needs
            shuffle="trajectories").
        core_size: width H of the recurrent core's carry.
        shared_encoder: actor and critic share encoder, hidden layers and core under two
            linear heads (False: two separate towers).
        action_dist: "auto" picks from the env's action space; "categorical" (discrete
            actions), "multi_discrete" (several discrete choices at once) or "gaussian"
            (continuous actions) asserts it.
        anneal_lr: decay the learning rate linearly to 0 over the run's updates (one rate per
            update, `update.learning_rate_at`).
        normalize_advantages: standardize advantages per minibatch.
        clip_value_loss: clip the value prediction around the rollout value by ``vf_clip``.
        dual_clip: floor the clipped objective at ``dual_clip_c * A`` where A < 0.
        normalize_obs: normalize observations by running mean / variance (clipped to
            +-obs_clip); statistics frozen within an update, merged after it.
        scale_rewards: divide rewards by the running std of the per-env discounted return.
        normalize_values: the critic predicts value targets normalized by their running
            mean / std (statistics merged after each update).
        recompute_advantages: recompute values and GAE with the latest critic every epoch.
        shuffle: "transitions" (minibatches of single transitions) or "trajectories"
            (minibatches of whole env trajectories, time order kept; num_minibatches must
            divide num_envs).
        ent_schedule: "constant", "linear" or "exponential" decay of the entropy coefficient
            from ent_coef to ent_coef_end over the run.
        kl_early_stop: skip the rest of an update's minibatch steps once a minibatch's
            approx_kl (before its step) exceeds target_kl.
        action_masking: take valid-action masks from the env (it must provide them); masked
            actions get zero probability.
        squash_mean: Gaussian mean = tanh-squashed actor output scaled to the action bounds.
        gsde: generalized state-dependent exploration (Raffin et al. 2022; Stable-Baselines3's
            ``use_sde``): a Gaussian policy's noise is z(s) E, linear in the actor's last
            features z(s) (the last hidden layer's, or the core's) through a matrix
            E ~ N(0, exp(log_std)^2) of [L, D] scales, and each env keeps its E for
            ``gsde_sample_freq`` steps, so that exploration is smooth in time. Continuous
            actions only; needs hidden layers or a core. Outside the rollout (`evaluate`
            with deterministic=False, a loaded policy given a key) each step's action is an
            independent draw of the same per-state Gaussian.
        gsde_sample_freq: steps between fresh noise matrices within a rollout; 0 draws one per
            env per rollout (Stable-Baselines3's ``sde_sample_freq=-1``).
        grad_norm_type: "l2" clips the global L2 norm of the gradient to max_grad_norm; "max"
            clips its global max-norm (largest absolute entry), scaling the whole gradient.
        fourier_features: F > 0 encodes observations as [cos(2 pi x B), sin(2 pi x B)] with
            B ~ N(0, fourier_scale^2) of shape [O, F], fixed at init (Tancik et al. 2020).
        matmul_dtype: "float32" (default), or "bfloat16": the MLPs' matmuls (forward and
            backward) take bfloat16 operands and accumulate in float32; params, activations,
            losses and Adam stay float32. Other numbers than float32's; an option for
            accelerators (slower on a CPU, bench/README.md).
        learning_rate: Adam step size (initial value when annealed).
        gamma: discount factor in [0, 1].
        gae_lambda: GAE lambda in [0, 1].
        clip_eps: PPO ratio clip range, > 0.
        dual_clip_c: dual-clip constant c > 1 (used only when ``dual_clip``).
        vf_coef: weight of the value loss.
        vf_clip: value clip range (used only when ``clip_value_loss``).
        ent_coef: weight of the entropy bonus.
        max_grad_norm: global L2 norm the gradient is clipped to.
        adam_eps: Adam's epsilon (1e-5, not optax's 1e-8).
        init_log_std: initial log standard deviation of Gaussian policies (with ``gsde``,
            of every entry of the [L, D] noise scales: the action's std starts near
            exp(init_log_std) times the norm of z(s)).
        obs_clip: normalized observations are clipped to [-obs_clip, obs_clip], > 0.
        ent_coef_end: final entropy coefficient of a linear or exponential schedule.
        target_kl: the approx_kl threshold of kl_early_stop, > 0.
        temperature: discrete policies are softmax(logits / temperature), > 0.
        fourier_scale: standard deviation of the Fourier feature frequencies, > 0.
        env_params: environment parameters by name (`EnvParams`; a dict is accepted), e.g.
            {"gravity": 12.0} for CartPole-v1: gymnax's env params replaced for this run. Only
            the env's float parameters that neither its spaces nor its program's structure
            read (`jaxppo.envs.make(env_id).tunable_params()`); time limits, integer and
            bool params are refused. Empty (the default): the env's defaults. Swept as
            "env_params.NAME" (`jaxppo.sweep`).
    """

    env_id: str = _static("CartPole-v1")
    num_envs: int = _static(4)
    num_steps: int = _static(128)
    total_timesteps: int = _static(500_000)
    update_epochs: int = _static(4)
    num_minibatches: int = _static(4)
    hidden_sizes: tuple[int, ...] = _static((64, 64))
    activation: str = _static("tanh")
    encoder: str = _static("mlp")
    core: str = _static("none")
    core_size: int = _static(128)
    shared_encoder: bool = _static(False)
    action_dist: str = _static("auto")
    anneal_lr: bool = _static(True)
    normalize_advantages: bool = _static(True)
    clip_value_loss: bool = _static(True)
    dual_clip: bool = _static(False)
    normalize_obs: bool = _static(False)
    scale_rewards: bool = _static(False)
    normalize_values: bool = _static(False)
    recompute_advantages: bool = _static(False)
    shuffle: str = _static("transitions")
    ent_schedule: str = _static("constant")
    kl_early_stop: bool = _static(False)
    action_masking: bool = _static(False)
    squash_mean: bool = _static(False)
    gsde: bool = _static(False)
    gsde_sample_freq: int = _static(0)
    grad_norm_type: str = _static("l2")
    fourier_features: int = _static(0)
    matmul_dtype: str = _static("float32")

    learning_rate: float = 2.5e-4
    gamma: float = 0.99
    gae_lambda: float = 0.95
    clip_eps: float = 0.2
    dual_clip_c: float = 3.0
    vf_coef: float = 0.5
    vf_clip: float = 0.2
    ent_coef: float = 0.01
    max_grad_norm: float = 0.5
    adam_eps: float = 1e-5
    init_log_std: float = 0.0
    obs_clip: float = 10.0
    ent_coef_end: float = 0.0
    target_kl: float = 0.02
    temperature: float = 1.0
    fourier_scale: float = 1.0
    env_params: EnvParams = EnvParams()

    def __post_init__(self) -> None:
        # config.json and users give a list; a static field is hashed into the treedef.
        sizes = self.hidden_sizes
        if isinstance(sizes, np.ndarray) and sizes.ndim == 1:
            sizes = sizes.tolist()
        if isinstance(sizes, Sequence) and not isinstance(sizes, str | bytes | tuple):
            object.__setattr__(self, "hidden_sizes", tuple(sizes))
        # config.json and users give a dict, which neither hashes nor names its leaves' order.
        params = self.env_params
        if isinstance(params, Mapping) and not isinstance(params, EnvParams) and all(
                isinstance(name, str) for name in params):
            object.__setattr__(self, "env_params", EnvParams(params))

    @property
    def batch_size(self) -> int:
        """Transitions per update: num_steps x num_envs."""
        return self.num_envs * self.num_steps

    @property
    def minibatch_size(self) -> int:
        """Transitions per gradient step."""
        return self.batch_size // self.num_minibatches

    @property
    def num_updates(self) -> int:
        """Updates in the run: total_timesteps // batch_size (the remainder is not run)."""
        return self.total_timesteps // self.batch_size

    @property
    def num_gradient_steps(self) -> int:
        """Optimizer steps in the run: num_updates x update_epochs x num_minibatches."""
        return self.num_updates * self.update_epochs * self.num_minibatches


def static_fields() -> tuple[str, ...]:
    """Names of the static (program-changing) fields, in declaration order."""
    return tuple(
        f.name for f in dataclasses.fields(Config) if not f.metadata.get("pytree_node", True)
    )


def dynamic_fields() -> tuple[str, ...]:
    """Names of the dynamic (float leaf) fields, in declaration order: `float_fields`, then
    ``env_params``."""
    return tuple(f.name for f in dataclasses.fields(Config) if f.metadata.get("pytree_node", True))


def float_fields() -> tuple[str, ...]:
    """Names of the dynamic fields that hold one number each: all but ``env_params``."""
    return tuple(name for name in dynamic_fields() if name != "env_params")


def with_values(config: Config, values: Mapping[str, Any]) -> Config:
    """``config`` with dynamic fields replaced (a sweep's setting, one row of its table): a
    field by its name, one env parameter by ``"env_params.NAME"`` (set in ``env_params``,
    beside the names it already has)."""
    fields = {k: v for k, v in values.items() if not k.startswith(ENV_PARAM_PREFIX)}
    params = {k[len(ENV_PARAM_PREFIX):]: v for k, v in values.items()
              if k.startswith(ENV_PARAM_PREFIX)}
    base = fields.get("env_params", config.env_params)
    if params and isinstance(base, EnvParams):  # else validate refuses what is there
        fields["env_params"] = EnvParams({**base, **params})
    return config.replace(**fields)


def shown(value) -> str:
    """``repr(value)`` on one line, at most 100 characters: for error messages."""
    text = repr(value)
    if "\n" in text:  # numpy's repr of a long array wraps
        text = " ".join(text.split())
    return text if len(text) <= 100 else text[:97] + "..."


def checked_int(name: str, value, minimum: int | None = 1) -> int:
    """``value`` as an int, or a `ValueError` naming it: the one check of every integer
    argument of jaxppo's functions (``minimum=None`` accepts any integer)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or (
            minimum is not None and value < minimum):
        expected = "an integer" if minimum is None else f"an integer >= {minimum}"
        raise ValueError(f"{name}={shown(value)}: expected {expected}")
    return int(value)


class FieldError(ValueError):
    """A bad Config field: ``field``, its ``value`` and what is ``allowed`` (so the command
    line can name the flag instead)."""

    def __init__(self, field: str, value, allowed: str) -> None:
        super().__init__(f"Config.{field}={shown(value)} is invalid: {allowed}.")
        self.field, self.value, self.allowed = field, value, allowed


def fail(name: str, value, allowed: str) -> None:
    """Raise the `FieldError` of a bad field: its name, the value and what is allowed."""
    raise FieldError(name, value, allowed)


def _check_int(config: Config, name: str, minimum: int = 1) -> None:
    value = getattr(config, name)
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        fail(name, value, f"must be an integer >= {minimum}")
    if value < minimum:
        fail(name, value, f"must be an integer >= {minimum}")


def _check_bool(config: Config, name: str) -> None:
    value = getattr(config, name)
    if not isinstance(value, bool | np.bool_):
        fail(name, value, "must be True or False")


def _check_choice(config: Config, name: str, allowed: tuple[str, ...]) -> None:
    value = getattr(config, name)
    if not isinstance(value, str) or value not in allowed:
        fail(name, value, f"must be one of {allowed}")


def is_real(value) -> bool:
    """A real number, or a numpy / JAX array of them (a stacked config's leaf); not a bool."""
    if isinstance(value, bool | np.bool_):
        return False
    if isinstance(value, np.ndarray | jax.Array):
        return value.dtype.kind in "fiu"
    return isinstance(value, numbers.Real)


def _concrete(name: str, value, param: str | None = None) -> np.ndarray | None:
    """A dynamic leaf as a finite float64 numpy array, or None while it is being traced;
    a `FieldError` for anything but real finite numbers (for the value of env parameter
    ``param``, the error's value is ``{param: value}``)."""
    def refuse(bad, allowed: str) -> None:
        fail(name, bad if param is None else {param: bad}, allowed)

    if isinstance(value, jax.core.Tracer):
        return None
    if not is_real(value):
        got = f"dtype {value.dtype}" if hasattr(value, "dtype") else type(value).__name__
        refuse(value, f"must be a real number (an array of them for a stacked config), "
               f"got {got}")
    fits = f"must fit a float32 (|x| <= {FLOAT32_MAX:.4g}): the jitted program computes in float32"
    try:
        array = np.asarray(value, dtype=np.float64)
    except OverflowError:  # an int beyond float64
        refuse(value, fits)
    for ok, allowed in ((np.isfinite(array), "must be finite"),
                        (np.abs(array) <= FLOAT32_MAX, fits)):
        if not np.all(ok):
            refuse(float(array if array.ndim == 0 else array[~ok][0]), allowed)
    return array


def _check_env_params(config: Config) -> None:
    """env_params is an `EnvParams` of real finite numbers (its names are the env's to
    check: `jaxppo.envs.check_params`)."""
    params = config.env_params
    if not isinstance(params, EnvParams):
        fail("env_params", params, "must be a mapping of parameter name (a string) -> number, "
             "e.g. {'gravity': 12.0}")
    for name, value in params.items():
        _concrete("env_params", value, param=name)


def check_range(config: Config, name: str, low: float, high: float, allowed: str, *,
                 open_low: bool = False) -> None:
    array = _concrete(name, getattr(config, name))
    if array is None:
        return
    ok = (array <= high) & ((array > low) if open_low else (array >= low))
    if not np.all(ok):
        bad = array if array.ndim == 0 else array[~ok][0]
        fail(name, float(bad), allowed)


def _validate_static(config: Config) -> None:
    if not isinstance(config.env_id, str):
        fail("env_id", config.env_id, "must be an environment id string")
    for name in ("num_envs", "num_steps", "update_epochs", "num_minibatches", "total_timesteps"):
        _check_int(config, name)
    for name in ("anneal_lr", "normalize_advantages", "clip_value_loss", "dual_clip",
                 "normalize_obs", "scale_rewards", "normalize_values", "recompute_advantages",
                 "kl_early_stop", "action_masking", "squash_mean", "shared_encoder", "gsde"):
        _check_bool(config, name)
    _check_int(config, "core_size")
    _check_int(config, "gsde_sample_freq", minimum=0)
    _check_int(config, "fourier_features", minimum=0)
    for name, allowed in (("shuffle", SHUFFLE_MODES), ("ent_schedule", ENT_SCHEDULES),
                          ("grad_norm_type", GRAD_NORM_TYPES),
                          ("matmul_dtype", MATMUL_DTYPES), ("encoder", ENCODERS),
                          ("core", CORES), ("activation", ACTIVATIONS),
                          ("action_dist", ACTION_DISTS)):
        _check_choice(config, name, allowed)
    if config.core != "none" and config.shuffle != "trajectories":
        fail("shuffle", config.shuffle,
             f"must be 'trajectories' with core={config.core!r}: a recurrent policy is "
             "replayed along whole env sequences, which a shuffle of single transitions "
             "breaks apart")
    if config.fourier_features and config.encoder != "mlp":
        fail("fourier_features", config.fourier_features,
             f"applies to the 'mlp' encoder only (encoder={config.encoder!r}); use 0")
    if config.shuffle == "trajectories" and config.num_envs % config.num_minibatches:
        fail("num_minibatches", config.num_minibatches,
              f"must divide num_envs={config.num_envs} when shuffle='trajectories' "
              "(each minibatch holds whole env trajectories)")
    sizes = config.hidden_sizes
    if not isinstance(sizes, tuple) or not all(
        isinstance(s, numbers.Integral) and not isinstance(s, bool) and s >= 1 for s in sizes
    ):
        fail("hidden_sizes", sizes, "must be a sequence of positive integers, e.g. (64, 64)")
    if config.gsde and not config.hidden_sizes and config.core == "none":
        fail("gsde", config.gsde,
             "needs hidden layers or a core: its noise is linear in the actor's last features "
             "(hidden_sizes is empty and core='none')")
    if config.batch_size % config.num_minibatches:
        fail(
            "num_minibatches",
            config.num_minibatches,
            f"must divide the batch num_envs x num_steps = {config.num_envs} x "
            f"{config.num_steps} = {config.batch_size}",
        )
    if config.batch_size > MAX_BATCH:
        fail("num_envs", config.num_envs,
             f"makes a batch num_envs x num_steps = {config.num_envs} x {config.num_steps} of "
             "more than 2**31 transitions, the most the shuffle's int32 indices address")
    if config.total_timesteps < config.batch_size:
        fail(
            "total_timesteps",
            config.total_timesteps,
            f"must be at least one batch, num_envs x num_steps = {config.batch_size}",
        )


def _validate_dynamic(config: Config) -> None:
    # Every leaf is a real finite number, used by this config or not (a typo stays visible).
    for name in float_fields():
        _concrete(name, getattr(config, name))
    _check_env_params(config)
    check_range(config, "learning_rate", 0.0, np.inf, "must be > 0", open_low=True)
    check_range(config, "gamma", 0.0, 1.0, "must lie in [0, 1]")
    check_range(config, "gae_lambda", 0.0, 1.0, "must lie in [0, 1]")
    check_range(config, "clip_eps", 0.0, np.inf, "must be > 0", open_low=True)
    if config.dual_clip:
        check_range(config, "dual_clip_c", 1.0, np.inf,
                     "must be > 1 when dual_clip is enabled (3 is typical)", open_low=True)
    if config.clip_value_loss:
        check_range(config, "vf_clip", 0.0, np.inf,
                     "must be > 0 when clip_value_loss is enabled", open_low=True)
    check_range(config, "vf_coef", 0.0, np.inf, "must be >= 0")
    check_range(config, "ent_coef", 0.0, np.inf, "must be >= 0")
    check_range(config, "max_grad_norm", 0.0, np.inf, "must be > 0", open_low=True)
    check_range(config, "adam_eps", 0.0, np.inf, "must be > 0", open_low=True)
    if config.normalize_obs:
        check_range(config, "obs_clip", 0.0, np.inf, "must be > 0", open_low=True)
    if config.ent_schedule != "constant":
        check_range(config, "ent_coef_end", 0.0, np.inf, "must be >= 0")
    if config.ent_schedule == "exponential":
        check_range(config, "ent_coef", 0.0, np.inf,
                     "must be > 0 for an exponential schedule (ent_schedule='exponential')",
                     open_low=True)
        check_range(config, "ent_coef_end", 0.0, np.inf,
                     "must be > 0 for an exponential schedule (ent_schedule='exponential')",
                     open_low=True)
    if config.kl_early_stop:
        check_range(config, "target_kl", 0.0, np.inf,
                     "must be > 0 when kl_early_stop is enabled", open_low=True)
    check_range(config, "temperature", 0.0, np.inf, "must be > 0", open_low=True)
    if config.fourier_features:
        check_range(config, "fourier_scale", 0.0, np.inf, "must be > 0", open_low=True)


def validate(config: Config) -> Config:
    """Check every field and raise a `ValueError` (a `FieldError`) naming the bad field, value
    and what is allowed.

    Runs in Python before tracing. Static fields are always checked, types first. Dynamic leaves
    are checked where they are concrete: each must be a real number, or a numpy / JAX array of
    them (every element of a stacked config is checked), finite and within float32, then within
    its range; traced leaves are skipped. The checks against the environment (its action space,
    its masks) are `jaxppo.envs.check`'s; `jaxppo.validate` runs both.

    Returns:
        The config, unchanged, so calls can be chained.
    """
    if not isinstance(config, Config):
        raise TypeError(f"expected a jaxppo.Config, got {type(config).__name__}")
    _validate_static(config)
    _validate_dynamic(config)
    return config


def stack_configs(configs: Sequence[Config]) -> Config:
    """Stack the dynamic leaves of configs whose static fields agree, for `jax.vmap`.

    Args:
        configs: one or more configs that differ only in dynamic fields.

    Returns:
        A config whose dynamic leaves have a leading axis of length ``len(configs)``.

    Raises:
        ValueError: if ``configs`` is empty, two configs differ in a static field (named) or
            set different env parameters (their names are structure).
    """
    configs = list(configs)
    if not configs:
        raise ValueError("stack_configs needs at least one config, got an empty sequence")
    first = configs[0]
    for index, other in enumerate(configs[1:], start=1):
        for name in static_fields():
            if getattr(other, name) != getattr(first, name):
                raise ValueError(
                    f"stack_configs: configs[{index}].{name}={getattr(other, name)!r} differs "
                    f"from configs[0].{name}={getattr(first, name)!r}; static fields change the "
                    "compiled program and must agree (only dynamic fields can be stacked: "
                    f"{', '.join(dynamic_fields())})"
                )
    for config in configs:
        _validate_dynamic(config)
    for index, other in enumerate(configs[1:], start=1):
        if tuple(other.env_params) != tuple(first.env_params):
            raise ValueError(
                f"stack_configs: configs[{index}].env_params sets {list(other.env_params)} but "
                f"configs[0].env_params sets {list(first.env_params)}; every config must set "
                "the same env parameters (their names shape the program, their values are "
                "stacked)")
    return jax.tree.map(lambda *xs: np.stack([np.asarray(x, np.float32) for x in xs]), *configs)
