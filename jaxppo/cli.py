"""The ``jaxppo`` command line (also ``python -m jaxppo``).

    jaxppo train --env CartPole-v1 --seeds 8 --out runs/cartpole
    jaxppo eval runs/cartpole --episodes 100
    jaxppo resume runs/cartpole
    jaxppo sweep --env CartPole-v1 --learning-rate 1e-3,3e-4 --clip-eps 0.1,0.2 --seeds 4
    jaxppo train --env CartPole-v1 --env-param gravity=12.0 --env-param masspole=0.2
    jaxppo envs
    jaxppo --version

Every Config field is a flag (``--learning-rate``, ``--num-envs``, ``--normalize-obs`` /
``--no-normalize-obs``, ...) with the field's documentation as help; ``env_params`` is
``--env-param NAME=X``, once per parameter (``NAME=X,X...`` in a sweep). A run starts from
`jaxppo.preset` of its env. Mistakes (an unknown flag, a bad value, a missing run directory, a
checkpoint of another program) print one clear line, naming the flag or the value, and exit
with status 2; a Ctrl-C saves a checkpoint and the metrics so far and exits with status 130.

On a CPU the command splits the host into one JAX device per core (`jaxppo.use_cpu_cores`;
``--cpu-devices N`` chooses the count) and spreads the runs over them. Run as a program, it
keeps compiled programs in JAX's persistent cache (`jaxppo.use_compile_cache`:
``$XDG_CACHE_HOME/jaxppo/xla``, by default ``~/.cache/jaxppo/xla``; a
``JAX_COMPILATION_CACHE_DIR`` of the user's wins), so running the same command again, or
resuming, skips most of the compile; ``--no-compile-cache`` turns it off.
"""

from __future__ import annotations

import argparse
import dataclasses
import difflib
import functools
import inspect
import math
import re
import sys
import time
from collections.abc import Sequence

import numpy as np

EXIT_USAGE = 2
EXIT_INTERRUPTED = 130


# A negative number is a flag's value, scientific notation and inf included (argparse's own
# pattern misses -1e-3 and takes it for a flag).
_NEGATIVE_NUMBER = re.compile(
    r"^-(\d[\d_]*\.?[\d_]*|\.\d[\d_]*)(e[-+]?\d+)?$|^-(inf|infinity|nan)$", re.IGNORECASE)


def _one_line(text: str) -> str:
    """``text`` with its line breaks and other unprintable characters escaped: an error is
    one line, whatever a user's value holds."""
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


class _Parser(argparse.ArgumentParser):
    """argparse with "did you mean" for unknown flags, negative numbers as values and one line
    per mistake (no usage block)."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self._negative_number_matcher = _NEGATIVE_NUMBER

    def _get_values(self, action, arg_strings):
        # Python 3.11 drops a value "--" (--seeds=--) and hands the flag an empty list.
        if action.nargs is None and action.option_strings and arg_strings == ["--"]:
            raise argparse.ArgumentError(action, "expected one argument, got '--'")
        return super()._get_values(action, arg_strings)

    def error(self, message: str):
        unknown = re.findall(r"(--[\w-]+)", message) if "unrecognized" in message else []
        hints = []
        for flag in unknown:
            known = [o for a in self._actions for o in a.option_strings if o.startswith("--")]
            close = difflib.get_close_matches(flag, known, n=1)
            if close:
                hints.append(f"{flag}: did you mean {close[0]}?")
        if hints:
            message += " (" + "; ".join(hints) + ")"
        line = _one_line(f"{self.prog}: error: {message}; see `{self.prog} --help`")
        self.exit(EXIT_USAGE, line + "\n")


def _field_docs() -> dict[str, str]:
    """Config field -> its line(s) in the Attributes section of Config's docstring."""
    from jaxppo.config import Config

    docs: dict[str, str] = {}
    current = None
    in_attributes = False
    # cleandoc: Python 3.13 strips the docstring's common indentation when compiling, earlier
    # versions keep it; cleaned, a field sits 4 spaces in and its continuation lines 8.
    for line in inspect.cleandoc(Config.__doc__ or "").splitlines():
        if line.strip() == "Attributes:":
            in_attributes = True
            continue
        if not in_attributes:
            continue
        match = re.match(r"^\s{4}(\w+): (.*)$", line)
        if match:
            current = match.group(1)
            docs[current] = match.group(2).strip()
        elif current and line.startswith(" " * 8):
            docs[current] += " " + line.strip()
    return docs


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def _add_config_flags(parser: argparse.ArgumentParser, sweep: bool,
                      env_id: str | None = None) -> None:
    """One flag per Config field (values parsed later, so errors name the field); the
    defaults shown are ``jaxppo.preset(env_id)``'s where an env is given, else Config's."""
    import jaxppo
    from jaxppo import config as config_lib
    from jaxppo.config import Config

    docs = _field_docs()
    try:
        defaults = jaxppo.preset(env_id) if env_id else Config()
    except ValueError:  # not an id Config takes: the mistake is reported when parsing
        env_id, defaults = None, Config()
    source = (f"jaxppo.preset({env_id!r})" + ("" if env_id in jaxppo.PRESETS else
                                              ", Config's defaults for this env")
              if env_id else "jaxppo.preset(env) (Config's defaults for most envs; "
              "`--env ID --help` shows that env's)")
    group = parser.add_argument_group(
        "Config fields", f"default: {source}"
        + ("; a dynamic field takes a comma-separated list of values to sweep" if sweep else ""))
    dynamic = set(config_lib.dynamic_fields())
    for field in dataclasses.fields(Config):
        name = field.name
        if name == "env_params":
            _add_env_param_flag(group, docs, sweep)
            continue
        default = getattr(defaults, name)
        help_text = docs.get(name, "").replace("%", "%%")
        flags = [_flag(name)] + (["--env"] if name == "env_id" else [])
        if isinstance(default, bool):
            group.add_argument(*flags, dest=name, action=argparse.BooleanOptionalAction,
                               default=None, help=f"{help_text} (default: {default})")
            continue
        if name in dynamic:
            metavar = "X[,X...]" if sweep else "X"
        elif isinstance(default, tuple):
            metavar = "N[,N...]"
        else:
            metavar = type(default).__name__.upper()
        shown = ",".join(map(str, default)) if isinstance(default, tuple) else default
        group.add_argument(*flags, dest=name, default=None, metavar=metavar,
                           help=f"{help_text} (default: {shown})")


ENV_PARAM_FLAG = "--env-param"


def _add_env_param_flag(group, docs: dict[str, str], sweep: bool) -> None:
    group.add_argument(ENV_PARAM_FLAG, dest="env_param", action="append", default=None,
                       metavar="NAME=X[,X...]" if sweep else "NAME=X",
                       help=docs.get("env_params", "").replace("%", "%%") + "; once per "
                       "parameter, e.g. --env-param gravity=12.0" + (
                           " (a comma-separated list sweeps it)" if sweep else ""))


def _env_params_from_args(texts: Sequence[str], sweep: bool
                          ) -> tuple[dict[str, float], dict[str, list[float]]]:
    """(env params set, env params swept as "env_params.NAME" -> values) from the
    ``--env-param NAME=X[,X...]`` flags; a ValueError naming the flag and its text."""
    from jaxppo import config as config_lib

    single: dict[str, float] = {}
    swept: dict[str, list[float]] = {}
    for text in texts:
        name, equals, values = (part.strip() for part in text.partition("="))
        where = f"{ENV_PARAM_FLAG} {text!r}"
        if not equals or not name or not values:
            raise ValueError(f"{where}: expected NAME=VALUE, e.g. gravity=12.0")
        if name in single or name in swept:
            raise ValueError(f"{where}: {name} is given twice")
        parts = [p.strip() for p in values.split(",")]
        if len(parts) > 1 and not sweep:
            raise ValueError(f"{where}: one value expected; use `jaxppo sweep` to train a list "
                             "of values")
        if any(not p for p in parts):
            raise ValueError(f"{where}: a malformed list (an empty item)")
        try:
            numbers = [float(p) for p in parts]
        except ValueError:
            raise ValueError(f"{where}: expected a number after '='") from None
        if len(numbers) > 1:
            swept[config_lib.ENV_PARAM_PREFIX + name] = numbers
        else:
            single[name] = numbers[0]
    return single, swept


def _parse_field(name: str, text: str, default):
    """A flag's text as the type of the field's default; ValueError naming the flag."""
    if isinstance(default, tuple):
        items = text.split(",")
        kind = "a comma-separated list of integers, e.g. 64,64"
        if not all(item.strip() for item in items):
            raise ValueError(f"{_flag(name)} {text!r}: expected {kind} (an empty item)")
    else:
        items, kind = [text], type(default).__name__
    try:
        if isinstance(default, tuple):
            return tuple(int(x) for x in items)
        if isinstance(default, int):
            return int(text)
        if isinstance(default, float):
            return float(text)
    except ValueError:
        raise ValueError(f"{_flag(name)} {text!r}: expected {kind}") from None
    return text


def _config_from_args(args, sweep: bool):
    """(base config, sweep space) from the parsed flags."""
    import jaxppo
    from jaxppo import config as config_lib
    from jaxppo.config import Config

    env_id = "CartPole-v1" if args.env_id is None else args.env_id
    if not jaxppo.envs.is_known(env_id):
        suite = env_id.partition("/")[0]
        if "/" in env_id and suite in jaxppo.envs.SUITES:
            jaxppo.envs.make(env_id)  # its own line: the extra to install, or suite's ids
        close = jaxppo.envs.closest_ids(env_id)
        hint = f"; did you mean {', '.join(close)}?" if close else "; `jaxppo envs` lists them"
        raise ValueError(f"--env {env_id!r}: unknown environment{hint}")
    config = jaxppo.preset(env_id)
    defaults = Config()
    dynamic = set(config_lib.dynamic_fields())
    overrides, space = {}, {}
    for field in dataclasses.fields(Config):
        name = field.name
        value = getattr(args, name, None)
        if value is None or name == "env_id":
            continue
        default = getattr(defaults, name)
        if isinstance(default, bool):
            overrides[name] = bool(value)
            continue
        if "," in value and not isinstance(default, tuple):
            if not sweep:
                raise ValueError(f"{_flag(name)} {value!r}: one value expected; use "
                                 "`jaxppo sweep` to train a list of values")
            if name not in dynamic:
                raise ValueError(
                    f"cannot sweep {_flag(name)}: {name} is a static field, and each value "
                    "would compile a different program; run one sweep per value of it instead")
            parts = [p.strip() for p in value.split(",")]
            if any(not p for p in parts):
                raise ValueError(f"{_flag(name)} {value!r}: a malformed list (an empty item)")
            space[name] = [_parse_field(name, p, default) for p in parts]
        else:
            overrides[name] = _parse_field(name, value, default)
    params, swept = _env_params_from_args(getattr(args, "env_param", None) or [], sweep)
    if params:
        overrides["env_params"] = {**config.env_params, **params}
    return config.replace(**overrides), {**space, **swept}


def _common_run_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--seeds", type=int, default=None,
                        help="seeds per setting, trained in one call (default: 8 for train, 4 "
                        "for sweep)")
    parser.add_argument("--seed", type=int, default=0, help="base PRNG seed (default: 0)")
    parser.add_argument("--out", default=None,
                        help="run directory (default: runs/ENV_ID-DATE-TIME)")
    parser.add_argument("--chunk-updates", type=int, default=None,
                        help="updates per compiled chunk (default: about 50 chunks per run)")
    parser.add_argument("--checkpoint-every", type=int, default=10,
                        help="chunks between checkpoints (default: 10; one is always saved at "
                        "the end and on Ctrl-C)")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace what the run directory holds")
    _output_flags(parser)


def _output_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--tensorboard", action="store_true",
                        help="also write TensorBoard event files (needs tensorboardX)")
    parser.add_argument("--no-progress", action="store_true",
                        help="no progress display (a bar on a terminal, a line per chunk "
                        "elsewhere)")
    _jax_flags(parser)


def _jax_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--cpu-devices", type=int, default=None, metavar="N",
                        help="on a CPU, JAX devices to split the host into; the runs spread "
                        "over them (default: one per core, or JAX_NUM_CPU_DEVICES; 1: one "
                        "device)")
    parser.add_argument("--no-compile-cache", action="store_true",
                        help="do not keep compiled programs on disk (default: kept in "
                        "~/.cache/jaxppo/xla: a repeated command or a resume skips most of "
                        "the compile)")


def _env_in(argv: Sequence[str]) -> str | None:
    """The value of --env / --env-id in ``argv``, if any (for the defaults --help shows)."""
    for i, arg in enumerate(argv):
        for flag in ("--env", "--env-id"):
            if arg == flag and i + 1 < len(argv):
                return argv[i + 1]
            if arg.startswith(flag + "="):
                return arg.split("=", 1)[1]
    return None


def build_parser(env_id: str | None = None) -> argparse.ArgumentParser:
    """The command line's parser; ``env_id``: the env whose preset the Config flags' help
    shows as defaults."""
    import jaxppo

    parser = _Parser(prog="jaxppo", allow_abbrev=False,
                     description="PPO in JAX: many seeds and settings in one compiled call.",
                     epilog="`jaxppo COMMAND --help` describes each command.")
    parser.add_argument("--version", action="version", version=f"jaxppo {jaxppo.__version__}")
    # No prefix matching of flags: --learning-rat is a typo, not --learning-rate.
    commands = parser.add_subparsers(dest="command", metavar="COMMAND",
                                     parser_class=functools.partial(_Parser, allow_abbrev=False))
    train = commands.add_parser("train", help="train seeds of one config",
                                description="Train S seeds of one Config in one compiled, "
                                "chunked, checkpointed call.")
    _common_run_flags(train)
    _add_config_flags(train, sweep=False, env_id=env_id)
    sweep = commands.add_parser("sweep", help="train a grid of settings x seeds",
                                description="Train every combination of the listed values of "
                                "dynamic fields, x seeds, in one compiled call; rank them.")
    _common_run_flags(sweep)
    _add_config_flags(sweep, sweep=True, env_id=env_id)
    evaluate = commands.add_parser("eval", help="evaluate the policies of a run",
                                   description="Run the trained policies of a run directory "
                                   "for E episodes per run.")
    evaluate.add_argument("run_dir", help="a run directory written by train or sweep")
    evaluate.add_argument("--episodes", type=int, default=100,
                          help="episodes per run (default: 100)")
    evaluate.add_argument("--stochastic", action="store_true",
                          help="sample actions (default: the policy's mode)")
    evaluate.add_argument("--seed", type=int, default=1, help="PRNG seed (default: 1)")
    resume = commands.add_parser("resume", help="continue a stopped run",
                                 description="Continue a run from its newest checkpoint.")
    resume.add_argument("run_dir", help="a run directory written by train or sweep")
    _output_flags(resume)
    commands.add_parser("envs", help="list the environments", description="List every "
                        "environment id jaxppo accepts.")
    return parser


# ---------------------------------------------------------------------------------------------
# Output.


def _fmt(x: float, digits: int = 1) -> str:
    return "nan" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.{digits}f}"


def _print_run_table(result) -> None:
    from jaxppo import rundir, stats

    final = result.final_returns()
    episodes = result.metrics["episode_count"].sum(axis=-1)
    labels = result.setting_labels()
    diverged = result.divergences()
    if diverged:
        print(f"\n{len(diverged)} of {result.spec.num_runs} runs diverged (frozen at their last "
              "finite state, left out of the aggregates):")
        for entry in diverged:
            print("  " + rundir.divergence_line(result.spec, entry))
    frozen = {(d["setting"], d["seed"]) for d in diverged}
    if result.spec.num_settings == 1:
        print(f"\n{'seed':>4}  {'final return':>12}  {'episodes':>8}")
        for s in range(result.spec.seeds):
            text = "diverged" if (0, s) in frozen else _fmt(final[0, s])
            print(f"{s:>4}  {text:>12}  {int(episodes[0, s]):>8d}")
        finite = final[0][~np.isnan(final[0])]
        if finite.size:
            agg = stats.aggregate(finite)
            print(f"\nIQM {stats.format_ci(agg['iqm'])} (95% stratified bootstrap CI) over "
                  f"{_seeds_counted(finite.size, result.spec.seeds, len(frozen))}; median "
                  f"{_fmt(agg['median']['value'])}, mean {_fmt(agg['mean']['value'])}, min "
                  f"{_fmt(float(finite.min()))}, max {_fmt(float(finite.max()))}")
        rel = rundir.reliability(result.metrics["episode_return"][0], final[0])
        if rel:
            print("reliability (Chan et al. 2020): dispersion across runs "
                  f"{_fmt(rel['dispersion_across_runs'])}, within runs "
                  f"{_fmt(rel['dispersion_within_runs'])} (IQR, lower is better); CVaR of the "
                  f"worst run {_fmt(rel['risk_across_runs'])}, of drawdowns "
                  f"{_fmt(rel['risk_within_runs'])}")
    else:
        counts = [sum(d["setting"] == h for d in diverged) for h in range(len(labels))]
        _print_ranking(labels, final, counts)
    print("final return = mean training-episode return over each run's last 10 updates")


def _seeds_counted(counted: int, seeds: int, diverged: int) -> str:
    if counted == seeds:
        return f"{seeds} seeds"
    return f"{counted} of {seeds} seeds ({diverged} diverged)" if diverged else (
        f"{counted} of {seeds} seeds")


def _print_ranking(labels: Sequence[str], final: np.ndarray,
                   diverged: Sequence[int] | None = None) -> None:
    from jaxppo import stats

    diverged = diverged or [0] * len(labels)
    rows = []
    for label, row, lost in zip(labels, final, diverged, strict=True):
        finite = row[~np.isnan(row)]
        agg = stats.aggregate(finite)["iqm"] if finite.size else None
        rows.append((agg["value"] if agg else -math.inf, label, agg, lost))
    rows.sort(key=lambda r: -r[0])
    width = max(len(r[1]) for r in rows)
    print(f"\n{'rank':>4}  {'setting':<{width}}  {'IQM final return [95% CI]':>28}")
    for rank, (_, label, agg, lost) in enumerate(rows, start=1):
        text = stats.format_ci(agg) if agg else (
            "every run diverged" if lost == final.shape[1] else "no finished episode")
        if agg and lost:
            text += f" ({lost} diverged)"
        print(f"{rank:>4}  {label:<{width}}  {text:>28}")


def _print_paths(result) -> None:
    print("\nwritten:")
    for name, path in result.paths.items():
        print(f"  {name + ':':<16} {path}")


def _print_timing(result) -> None:
    # Only the updates this process ran: run_s timed those (a resume restored the others).
    steps = result.spec.num_runs * (result.updates_run * result.spec.config.batch_size)
    line = f"compile {result.compile_s:.1f} s, run {result.run_s:.1f} s"
    if result.run_s > 0:
        line += f", {steps / result.run_s:,.0f} env steps/s over all {result.spec.num_runs} runs"
    print(line)


def _report(result) -> int:
    if result.interrupted:
        print(f"\ninterrupted after {result.updates_done} of {result.spec.config.num_updates} "
              f"updates; checkpoint and metrics saved. Continue with: jaxppo resume "
              f"{result.run_dir}")
    _print_run_table(result)
    _print_timing(result)
    _print_paths(result)
    return EXIT_INTERRUPTED if result.interrupted else 0


# ---------------------------------------------------------------------------------------------
# Commands.


def _train(args, sweep: bool) -> int:
    from jaxppo import config as config_lib
    from jaxppo import experiment, memory, presets, rundir
    from jaxppo import spec as spec_lib

    config, space = _config_from_args(args, sweep)
    for flag, value in (("--seeds", args.seeds), ("--chunk-updates", args.chunk_updates),
                        ("--checkpoint-every", args.checkpoint_every)):
        if value is not None and value < 1:
            raise ValueError(f"{flag} {value}: expected an integer >= 1")
    seeds = args.seeds if args.seeds is not None else (4 if sweep else 8)
    out = args.out or f"runs/{config.env_id}-{time.strftime('%Y%m%d-%H%M%S')}"
    try:
        spec = spec_lib.make_spec(config, space or None, seeds=seeds, seed=args.seed,
                                  chunk_updates=args.chunk_updates,
                                  checkpoint_every=args.checkpoint_every)
    except config_lib.FieldError as error:  # named by its flag: what the user typed
        raise ValueError(f"{_flag_text(error)} is invalid: {error.allowed}") from None
    rundir.check_new(out, args.overwrite)  # refused before "compiling..."
    memory.check_fits(spec.config)
    plural = f"{seeds} seed{'' if seeds == 1 else 's'}"
    what = f"{spec.num_settings} settings x {plural}" if space else plural
    print(f"PPO on {config.env_id}: {what} x {config.num_updates} updates x "
          f"{config.batch_size} env steps, one compiled call per chunk of "
          f"{spec.chunk_updates} updates ({_devices_text()}); compiling...")
    if config.env_id in presets.KNOWN_FAILURES:
        print(f"note: PPO is known to fail on {config.env_id}; "
              f"jaxppo.presets.KNOWN_FAILURES[{config.env_id!r}] says why")
    output = experiment.Output(progress=not args.no_progress, tensorboard=args.tensorboard,
                               overwrite=args.overwrite)
    result = experiment.run(config, seeds, out, space=space or None, seed=args.seed,
                            chunk_updates=args.chunk_updates,
                            checkpoint_every=args.checkpoint_every, output=output)
    return _report(result)


def _flag_text(error) -> str:
    """A bad field as the flag and value that set it: ``--gamma 1.5``, ``--env-param
    gravity=nan``."""
    from jaxppo import config as config_lib

    if error.field == "env_params" and isinstance(error.value, dict) and len(error.value) == 1:
        (name, value), = error.value.items()
        return f"{ENV_PARAM_FLAG} {name}={config_lib.shown(value)}"
    return f"{_flag(error.field)} {config_lib.shown(error.value)}"


def _devices_text() -> str:
    import jax

    count = jax.device_count()
    return f"{jax.default_backend()}, {count} device{'' if count == 1 else 's'}"


def _use_cpu_devices(count: int | None) -> None:
    """One JAX CPU device per core, or ``count``; before any JAX operation of the command."""
    from jaxppo import devices

    if count is None:
        devices.set_cpu_devices()  # where JAX has started already (in-process use), keep it
        return
    if count < 1:
        raise ValueError(f"--cpu-devices {count}: expected an integer >= 1")
    current, _ = devices.set_cpu_devices(count)
    if current != count:  # only in-process: a command starts JAX itself
        raise ValueError(f"--cpu-devices {count}: JAX has already started with {current} CPU "
                         f"device(s) and cannot change to {count}")


def _resume(args) -> int:
    from jaxppo import experiment, rundir

    spec = rundir.read_spec(args.run_dir)
    print(f"resuming {args.run_dir}: PPO on {spec.config.env_id}, {spec.num_runs} runs")
    output = experiment.Output(progress=not args.no_progress, tensorboard=args.tensorboard)
    result = experiment.resume(args.run_dir, output=output)
    if result.finished and result.updates_run == 0:
        print(f"{args.run_dir} is already finished ({result.updates_done} updates): nothing "
              "to resume, nothing changed")
        _print_run_table(result)
        return 0
    return _report(result)


def _eval(args) -> int:
    import jax

    import jaxppo
    from jaxppo import placement, rundir

    if args.episodes < 1:
        raise ValueError(f"--episodes {args.episodes}: expected an integer >= 1")
    spec, state, _, done = jaxppo.experiment.restore(args.run_dir)
    configs, _ = placement.flat_runs(spec.configs(), spec.seeds, jax.random.key(spec.seed))
    start = time.perf_counter()
    result = jaxppo.evaluate(configs, state, jax.random.key(args.seed), args.episodes,
                             deterministic=not args.stochastic)
    seconds = time.perf_counter() - start
    mode = "sampled" if args.stochastic else "deterministic (mode)"
    print(f"{args.run_dir}: {args.episodes} episodes per run, {mode} actions, checkpoint "
          f"after {done} updates ({seconds:.1f} s incl. compile)")
    report = _eval_report(spec, result.returns.reshape(spec.num_settings, spec.seeds,
                                                       args.episodes))
    report = {"episodes": args.episodes, "deterministic": not args.stochastic,
              "updates_done": done, **report}
    unfinished = int((~result.finished).sum())
    if unfinished:
        print(f"{unfinished} episodes did not end within the step limit (partial returns)")
    print(f"\nwritten: {rundir.write_eval(args.run_dir, report)}")
    return 0


def _eval_report(spec, returns: np.ndarray) -> dict:
    """Print the returns [H, S, E] of an evaluation (per seed for one setting, else ranked);
    eval.json's "settings" entry."""
    from jaxppo import spec as spec_lib
    from jaxppo import stats

    per_run = returns.mean(axis=-1)
    labels = spec_lib.setting_labels(spec)
    settings = []
    for h in range(spec.num_settings):
        agg = stats.aggregate(per_run[h])
        if spec.num_settings == 1:
            _print_eval_seeds(returns[h], agg)
        settings.append({"setting": h, "label": labels[h], "returns": returns[h].tolist(),
                         "aggregate": agg})
    if spec.num_settings > 1:
        _print_ranking(labels, per_run)
    return {"settings": settings}


def _print_eval_seeds(returns: np.ndarray, agg: dict) -> None:
    """One setting's evaluation returns [S, E], seed by seed, and their aggregate."""
    from jaxppo import stats

    print(f"\n{'seed':>4}  {'mean return':>11}  {'min':>8}  {'max':>8}")
    for s, r in enumerate(returns):
        print(f"{s:>4}  {r.mean():>11.1f}  {r.min():>8.1f}  {r.max():>8.1f}")
    print(f"\nIQM over seeds {stats.format_ci(agg['iqm'])} (95% CI); median "
          f"{_fmt(agg['median']['value'])}, mean {_fmt(agg['mean']['value'])}")


def _measured(env_id: str) -> str:
    """What `jaxppo.preset(env_id)` reached in bench/zoo.py: "IQM 500 at 499,712 steps"."""
    from jaxppo import presets

    score, steps = presets.MEASURED[env_id]
    return f"IQM {score:g} at {steps:,} steps"


def _envs() -> int:
    import jaxppo
    from jaxppo import presets

    print("environments (any of them works with --env; \"preset\": jaxppo.preset has its own "
          "settings for it, `jaxppo train --env ID --help` shows them; \"IQM\": the IQM over 8 "
          "seeds of its final training return, bench/results/zoo):")
    for suite, ids, extra in jaxppo.envs.catalog():
        if ids is None:
            print(f"{suite}: not installed; pip install \"jaxppo[{extra}]\" brings it")
            continue
        print(f"{suite}:")
        for env_id in ids:
            notes = (["preset"] if env_id in jaxppo.PRESETS else []) + (
                [_measured(env_id)] if env_id in presets.MEASURED else []) + (
                ["PPO is known to fail here: `jaxppo.presets.KNOWN_FAILURES`"]
                if env_id in presets.KNOWN_FAILURES else []) + (
                [f"downloads {jaxppo.envs.DOWNLOADS[env_id]} on first use"]
                if env_id in jaxppo.envs.DOWNLOADS else [])
            print(f"  {env_id}" + (f"  ({'; '.join(notes)})" if notes else ""))
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser(_env_in(sys.argv[1:] if argv is None else list(argv)))
    args, extra = parser.parse_known_args(argv)
    if extra:  # reported by the command's own parser, which knows its flags
        command = parser._subparsers._group_actions[0].choices.get(args.command, parser)
        command.error(f"unrecognized arguments: {' '.join(extra)}")
    if args.command is None:
        parser.print_help()
        return EXIT_USAGE
    from jaxppo import spec as spec_lib

    try:
        if args.command in ("train", "sweep", "resume"):  # the commands that spread runs
            _use_cpu_devices(args.cpu_devices)
            # Only as a program (argv from the command line): an in-process call, such as a
            # test's, leaves its process's settings alone.
            if argv is None and not args.no_compile_cache:
                from jaxppo.cache import use_compile_cache

                use_compile_cache()
        if args.command in ("train", "sweep"):
            return _train(args, sweep=args.command == "sweep")
        if args.command == "resume":
            return _resume(args)
        if args.command == "eval":
            return _eval(args)
        return _envs()
    except (spec_lib.RunError, ValueError) as error:
        print(_one_line(f"jaxppo {args.command}: error: {error}"), file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print(f"\njaxppo {args.command}: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED


if __name__ == "__main__":
    sys.exit(main())
