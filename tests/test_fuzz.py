"""Bad input, fuzzed: every Config and every command line is either accepted as a valid config
or refused with one line that names the field or flag (hypothesis generates the inputs).

Nothing trains: Config inputs stop at `jaxppo.validate`; command lines at
`jaxppo.experiment.run`, replaced by a stub that hands back the config it was given. The
count of inputs tried is printed at the end of the module.
"""

import collections
import dataclasses

import jax
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import jaxppo
from jaxppo import cli
from jaxppo import config as config_lib

FIELDS = tuple(f.name for f in dataclasses.fields(jaxppo.Config))
DEFAULTS = jaxppo.Config()
CHOICES = (config_lib.ACTIVATIONS + config_lib.ACTION_DISTS + config_lib.ENCODERS
           + config_lib.CORES + config_lib.SHUFFLE_MODES + config_lib.ENT_SCHEDULES
           + config_lib.GRAD_NORM_TYPES + config_lib.MATMUL_DTYPES)
# Not the envs that download data on first use: the fuzz must not need a network.
ENV_IDS = tuple(e for e in jaxppo.envs.builtin_ids() if e not in jaxppo.envs.DOWNLOADS)
RUN_FLAGS = ("--seeds", "--seed", "--chunk-updates", "--checkpoint-every", "--cpu-devices")

# Moderate counts keep the module to a few seconds (a command line takes ~20 ms to parse);
# deadline=None: the first example of a test may make an env (gymnax) cold.
FUZZ = settings(max_examples=200, deadline=None, database=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture])
FUZZ_CLI = settings(FUZZ, max_examples=100)
TRIED = collections.Counter()


@pytest.fixture(scope="module", autouse=True)
def report_count(request):
    yield
    total = sum(TRIED.values())
    parts = ", ".join(f"{name} {count}" for name, count in sorted(TRIED.items()))
    plugins = request.config.pluginmanager
    reporter, capture = plugins.get_plugin("terminalreporter"), plugins.get_plugin("capturemanager")
    if reporter is not None and capture is not None:
        with capture.global_and_fixture_disabled():
            reporter.write_line(f"\ntest_fuzz: {total} fuzzed inputs tried ({parts})")


# ---------------------------------------------------------------------------------------------
# Config fields: wrong types, out-of-range numbers, nan/inf, strings, arrays, empty tuples.

def _float32_array(values) -> np.ndarray:
    with np.errstate(over="ignore"):  # 1e300 becomes inf: one more input to refuse
        return np.asarray(values, np.float32)


NUMBERS = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True), st.floats(-2.0, 2.0),
    st.integers(-3, 600), st.integers(-(2**80), 2**80),
    st.floats(width=32).map(np.float32), st.integers(-5, 5).map(np.int64),
    st.booleans().map(np.bool_),
    st.lists(st.floats(allow_nan=True, allow_infinity=True), min_size=1, max_size=3)
    .map(_float32_array),
    st.floats(-2.0, 2.0).map(jax.numpy.float32),
)
ODD = st.one_of(
    st.none(), st.booleans(), st.text(max_size=8), st.binary(max_size=3),
    st.complex_numbers(max_magnitude=10), st.just(()), st.just([]),
    st.lists(st.integers(-3, 300), max_size=3), st.lists(st.integers(-3, 300), max_size=3)
    .map(tuple), st.lists(st.floats(), max_size=2).map(tuple),
    st.lists(st.text(max_size=3), min_size=1, max_size=2).map(np.asarray),
    st.sampled_from(CHOICES + ENV_IDS), st.sampled_from(CHOICES).map(lambda c: [c]),
)
# env_params: names of CartPole-v1's (tunable or not), of no env, of another env's.
ENV_PARAM_NAMES = ("gravity", "masspole", "gravit", "max_steps_in_episode", "g", "")
ENV_PARAMS = st.dictionaries(st.sampled_from(ENV_PARAM_NAMES), st.one_of(NUMBERS, ODD),
                             max_size=2)
OVERRIDES = st.dictionaries(st.sampled_from(FIELDS), st.one_of(NUMBERS, ODD, ENV_PARAMS),
                            min_size=1, max_size=3)


@FUZZ
@given(overrides=OVERRIDES)
def test_every_config_is_valid_or_refused_naming_a_field(overrides):
    TRIED["config"] += 1
    config = jaxppo.Config(**overrides)  # construction never checks (nor fails)
    try:
        jaxppo.validate(config)
    except ValueError as error:
        message = str(error)
        # A cross-field rule may fault a field left at its default, but names the given one
        # in its reason (num_minibatches must divide num_envs x num_steps = ...).
        assert any(name in message for name in overrides), message
        assert "\n" not in message and len(message) < 1000, message  # one line
        return
    # Accepted: usable by jit (static fields hashable) and every leaf a finite float32.
    hash(jax.tree.structure(config))
    for leaf in jax.tree.leaves(config):
        assert np.all(np.isfinite(np.float32(leaf))), leaf


# ---------------------------------------------------------------------------------------------
# The command line, in-process: argv lists from any text.


class Started(Exception):
    """Raised where the run would start, with the config the command line gave it."""

    def __init__(self, config):
        super().__init__()
        self.config = config


def _no_run(config, seeds, out, **kwargs):
    raise Started(config)


def _flag_names(field: str) -> tuple[str, ...]:
    """How an error may name the field of a flag: the flag, its alias, the field."""
    return (cli._flag(field), field) + (("--env",) if field == "env_id" else ()) + (
        (cli.ENV_PARAM_FLAG,) if field == "env_params" else ())


def _number_texts():
    floats = st.floats(allow_nan=True, allow_infinity=True)
    return st.one_of(
        floats.map(repr), floats.map(lambda x: f"{x:e}"), floats.map(lambda x: f"{x:.3g}"),
        st.integers(-(2**70), 2**70).map(str), st.integers(-3, 600).map(str),
        st.lists(st.one_of(st.integers(-3, 300).map(str), st.just(""), st.just(" 8 ")),
                 min_size=1, max_size=4).map(",".join),
        st.sampled_from(["inf", "-inf", "nan", "-1e-3", "1e-3", "-.5", "1_000", "0x10", "",
                         " ", "-", "--", "-x", "--help", "1,2", "1,,2", "64,64"]),
    )


ENV_PARAM_TEXTS = st.one_of(
    st.tuples(st.sampled_from(ENV_PARAM_NAMES), _number_texts()).map("=".join),
    st.sampled_from(["gravity=9.8,12", "=1", "gravity=", "gravity", "a=b=c", "gravity= 12 "]))
TEXTS = st.one_of(_number_texts(), st.text(max_size=12), st.sampled_from(CHOICES + ENV_IDS),
                  ENV_PARAM_TEXTS)
CONFIG_FLAGS = st.sampled_from(FIELDS)
PAIRS = st.lists(st.tuples(st.one_of(CONFIG_FLAGS, st.sampled_from(RUN_FLAGS)), TEXTS,
                           st.booleans()), min_size=1, max_size=2)


def _argv(command: str, pairs) -> tuple[list[str], list[str]]:
    """(argv, the names each error may use); a bool field's flag stands alone, or with
    ``=text`` (refused by argparse), as chosen."""
    argv, names = [command], []
    for flag_or_field, text, joined in pairs:
        if flag_or_field.startswith("--"):
            flag, field_names = flag_or_field, (flag_or_field,)
        else:
            field_names = _flag_names(flag_or_field)
            flag = (cli.ENV_PARAM_FLAG if flag_or_field == "env_params"
                    else cli._flag(flag_or_field))
        names.extend(field_names)
        if isinstance(getattr(DEFAULTS, flag_or_field, None), bool):
            argv.append(f"{flag}={text}" if joined else (flag if text else f"--no-{flag[2:]}"))
        else:
            argv.extend([f"{flag}={text}"] if joined else [flag, text])
    return argv, names


def _check_parsed(config, flag_or_field: str, text: str) -> None:
    """An accepted train flag's field holds what its text says (64,,64 is not (64, 64))."""
    default = getattr(DEFAULTS, flag_or_field, None)
    if flag_or_field not in FIELDS or isinstance(default, bool):
        return
    if flag_or_field == "env_params":  # --env-param NAME=X
        name, _, value = text.partition("=")
        assert dict(config.env_params) == {name.strip(): float(value)}
        return
    if isinstance(default, tuple):
        items = text.split(",")
        assert all(item.strip() for item in items), f"{text!r} has an empty item"
        expected = tuple(int(x) for x in items)
    else:
        expected = type(default)(text) if isinstance(default, int | float) else text
    assert getattr(config, flag_or_field) == expected


def _check_command_line(command, pairs, capsys):
    argv, names = _argv(command, pairs)
    capsys.readouterr()
    try:
        with pytest.MonkeyPatch.context() as patch:
            patch.setattr(jaxppo.experiment, "run", _no_run)
            code = cli.main(argv)
    except Started as started:
        jaxppo.validate(started.config)
        if command == "train" and len(pairs) == 1:
            _check_parsed(started.config, *pairs[0][:2])
        return
    except SystemExit as exit_info:  # argparse's own errors
        code = exit_info.code
    err = capsys.readouterr().err
    assert code == 2, (argv, err)
    assert err.count("\n") == 1 and err.endswith("\n"), (argv, err)
    assert err.startswith(f"jaxppo {command}: error: "), (argv, err)
    assert any(name in err for name in names), (argv, err)


@FUZZ_CLI
@given(pairs=PAIRS)
def test_every_train_command_line_parses_or_exits_2_with_one_line(pairs, capsys):
    TRIED["train"] += 1
    _check_command_line("train", pairs, capsys)


@FUZZ_CLI
@given(pairs=PAIRS)
def test_every_sweep_command_line_parses_or_exits_2_with_one_line(pairs, capsys):
    TRIED["sweep"] += 1
    _check_command_line("sweep", pairs, capsys)
