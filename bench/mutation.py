"""Mutation testing of the core modules: one small change at a time, then the module's tests.

    nice -n 19 python bench/mutation.py                  # every module; bench/results/mutation.*
    python bench/mutation.py --module gae --list         # the numbered mutants, nothing run
    nice -n 19 python bench/mutation.py --module update  # one module, merged into the results
    python bench/mutation.py --mutant update:012         # one mutant, printed, nothing written
    python bench/mutation.py --render                    # survivors judged again, md redrawn

Each mutant is one operator applied at one site of ``jaxppo/<module>.py``: a comparison moved
across its boundary or negated, + and - or * and / swapped, ** made *, a unary - ~ or not
dropped, a number made 0 or 1 (1 also 2), True and False swapped, mean and sum (max and min,
...) swapped, a call dropped to its operand (.astype, stop_gradient, asarray, clip, ...), the
branches of where / cond swapped, an if's test negated, and / or swapped. Mutants are the
AST's sites in source order, so a listing and a run are reproducible; one whose code equals
the original's or another mutant's is left out.

The library is never touched: every module runs in a copy of jaxppo/ and the module's test
files (with tests/conftest.py and pyproject.toml) in a temporary directory, imported through
PYTHONPATH. A mutant is killed when its tests fail (pytest -x: the first failure stops it),
fail to import, or run past the timeout (default 5 x the unmutated run, at least 120 s).
Compiled XLA programs are kept in a persistent JAX cache shared by the mutants (keyed by the
program, so a mutant that changes what is traced compiles afresh). A survivor is listed with
whether it is judged equivalent (`EQUIVALENT`, with the reason) or a hole in the tests.
"""

from __future__ import annotations

import argparse
import ast
import dataclasses
import json
import os
import pathlib
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time

ROOT = pathlib.Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"

# Each core module and its own test files.
MODULES = {
    "gae": ("tests/test_gae.py",),
    "losses": ("tests/test_losses.py",),
    "distributions": ("tests/test_distributions.py",),
    "normalize": ("tests/test_normalize.py",),
    "update": ("tests/test_update.py", "tests/test_optimizer.py"),
}

COMPARE_SWAPS = {
    ast.Gt: (ast.GtE, ast.LtE), ast.GtE: (ast.Gt, ast.Lt), ast.Lt: (ast.LtE, ast.GtE),
    ast.LtE: (ast.Lt, ast.Gt), ast.Eq: (ast.NotEq,), ast.NotEq: (ast.Eq,),
    ast.Is: (ast.IsNot,), ast.IsNot: (ast.Is,), ast.In: (ast.NotIn,), ast.NotIn: (ast.In,),
}
BINOP_SWAPS = {
    ast.Add: ast.Sub, ast.Sub: ast.Add, ast.Mult: ast.Div, ast.Div: ast.Mult,
    ast.FloorDiv: ast.Div, ast.Pow: ast.Mult, ast.BitOr: ast.BitAnd, ast.BitAnd: ast.BitOr,
}
SYMBOLS = {
    ast.Gt: ">", ast.GtE: ">=", ast.Lt: "<", ast.LtE: "<=", ast.Eq: "==", ast.NotEq: "!=",
    ast.Is: "is", ast.IsNot: "is not", ast.In: "in", ast.NotIn: "not in", ast.Add: "+",
    ast.Sub: "-", ast.Mult: "*", ast.Div: "/", ast.FloorDiv: "//", ast.Pow: "**",
    ast.BitOr: "|", ast.BitAnd: "&", ast.USub: "-", ast.Invert: "~", ast.Not: "not",
    ast.And: "and", ast.Or: "or",
}
# Reductions and elementwise pairs: the called name swapped for its partner.
RENAMES = {
    "mean": "sum", "sum": "mean", "max": "min", "min": "max", "maximum": "minimum",
    "minimum": "maximum", "var": "std", "std": "var", "argmax": "argmin", "zeros": "ones",
    "ones": "zeros", "any": "all", "all": "any",
}
BUILTINS = {"max", "min", "sum", "any", "all"}
# Calls replaced by their operand: the receiver of a method, else the first argument.
DROPPED_CALLS = {"astype", "stop_gradient", "asarray", "broadcast_to", "clip", "sqrt", "exp"}
# Calls whose second and third arguments are the two branches of a select.
BRANCH_CALLS = {"where", "cond"}

# Survivors judged equivalent (no test can tell them from the original), keyed by
# `Mutant.key`, which names the function, the mutation and the marked code, not the line.
EQUIVALENT: dict[str, str] = {
    "losses.policy_loss: `<` -> `<=` at `«advantages < 0», jnp.maximum(objective, dual_clip_c "
    "* advantages), objective`":
        "at A = 0 both branches are 0 (L_clip = min(r * 0, clip(r) * 0) = max(0, c * 0)), and "
        "so is the gradient, which carries a factor A",
    "losses.policy_loss: drop `.astype(...)` at `clip_fraction=jnp.mean(«(jnp.abs(ratio - "
    "1.0) > clip_eps).astype(jnp.float32)»),`":
        "jnp.mean of a bool array is already float32 (jax_enable_x64 off), the same value",
    "normalize.merge: drop `asarray(...)` at `n_b = «jnp.asarray(samples.size // "
    "max(stats.mean.size, 1), jnp.float32)»`":
        "n_b as a Python int meets only the float32 count and statistics, which it joins as "
        "the same float32 value",
    "normalize.merge: `//` -> `/` at `n_b = jnp.asarray(«samples.size // max(stats.mean.size, "
    "1)», jnp.float32)`":
        "samples [..., *shape] hold a whole number of feature vectors, so the division is "
        "exact either way",
    "normalize.merge: `1` -> `0` at `n_b = jnp.asarray(samples.size // max(stats.mean.size, "
    "«1»), jnp.float32)`":
        "max(size, 0) = max(size, 1) for every feature shape with an entry; only a zero-size "
        "shape (no features to normalize) differs, with 0 // 0",
    "distributions.Categorical.log_prob: drop `.astype(...)` at `return "
    "jnp.take_along_axis(log_p, «action[..., None].astype(jnp.int32)», axis=-1)[..., 0]`":
        "actions are integers (the docstring's contract; sample and mode return int32), and "
        "take_along_axis indexes alike with any integer dtype",
    "distributions.Categorical.log_prob: `0` -> `1` at `return jnp.take_along_axis(log_p, "
    "action[..., None].astype(jnp.int32), axis=-1)[..., «0»]`":
        "the axis has size 1 and JAX clamps an out-of-bounds index on reads, so [..., 1] is "
        "[..., 0]",
    "distributions.MultiCategorical.components: `True` -> `False` at `for start, n in "
    "zip(starts, self.nvec, strict=«True»)`":
        "starts is accumulate(nvec[:-1], initial=0): always len(nvec) items, so strict never "
        "binds",
    "distributions.MultiCategorical.sample: `True` -> `False` at `samples = [dist.sample(k) "
    "for dist, k in zip(self.components(), keys, strict=«True»)]`":
        "keys is split(key, len(nvec)): as many as the components, so strict never binds",
    "distributions.MultiCategorical.sample: drop `.astype(...)` at `return "
    "«jnp.stack(samples, axis=-1).astype(jnp.int32)»`":
        "jax.random.categorical already returns int32 (jax_enable_x64 off)",
    "distributions.MultiCategorical.mode: drop `.astype(...)` at `return «jnp.stack(modes, "
    "axis=-1).astype(jnp.int32)»`":
        "jnp.argmax already returns int32 (jax_enable_x64 off)",
    "update.learning_rate_at: drop `asarray(...)` at `fraction = «jnp.asarray(update_step, "
    "jnp.float32)» / config.num_updates`":
        "the train loop's step is an int32 array, which / divides in float32 just the same; "
        "a Python int step gives k / U in float64, the same rate to float32 rounding",
    "update.entropy_coefficient: drop `asarray(...)` at `fraction = «jnp.asarray(update_step, "
    "jnp.float32)» / config.num_updates`":
        "as in learning_rate_at: an int32 step divides in float32 just the same, a Python int "
        "step gives the same coefficient to float32 rounding",
    "update.clip_by_global_max_norm.update_fn: `1e-12` -> `0.0` at `scale = jnp.minimum(1.0, "
    "max_norm / jnp.maximum(norm, «1e-12»))`":
        "max_grad_norm > 0 (Config refuses others): at norm 0, max_norm / 0 = inf and "
        "min(1, inf) = 1, as with the guard; above 1e-12 nothing changes",
    "update.shuffle_minibatches: `or` -> `and` at `if «batch.core is not None or batch.start "
    "is not None»:`":
        "start and core are set together (a recurrent policy's batch) or both None "
        "(`Batch`), so `or` and `and` agree",
    "update.shuffle_minibatches.split: `1` -> `2` at `return jnp.swapaxes(x, 0, «1»).reshape(m, "
    "steps * (envs_ // m), *x.shape[3:])`":
        "it regroups the shuffled envs in another fixed order, still N / M whole trajectories "
        "in time order per minibatch; after a uniform random permutation the minibatches "
        "have the same law (per key they differ)",
    "update.update: `1` -> `0` at `weights = taken / jnp.maximum(count, «1»)`":
        "taken is bool, and XLA simplifies convert(taken) / y to select(taken, 1 / y, 0): "
        "with no step taken the weights are 0, not 0 / 0 (test_update_info_is_zero_not_nan_"
        "when_no_step_is_taken pins them)",
    "distributions.DiagGaussian.sample: `+` -> `-` at `return «self.mean + "
    "jnp.exp(self._log_std()) * noise»`":
        "N(0, I) noise is symmetric: mean - std * eps has the same law as mean + std * eps "
        "(samples differ per key, their distribution does not)",
}


@dataclasses.dataclass(frozen=True)
class Mutant:
    module: str
    index: int
    line: int
    function: str
    code: str  # the site's line(s) in one, the site marked «...»
    mutation: str
    source: str  # the whole mutated module
    key: str  # module, function, mutation and marked code (numbered if repeated): no line

    @property
    def id(self) -> str:
        return f"{self.module}:{self.index:03d}"


def _called_name(call: ast.Call) -> str | None:
    """A method's or module function's name, or a builtin's; None for a local callable."""
    func = call.func
    if isinstance(func, ast.Attribute):
        return func.attr
    return func.id if isinstance(func, ast.Name) and func.id in BUILTINS else None


def _with_name(call: ast.Call, name: str) -> ast.Call:
    func = call.func
    if isinstance(func, ast.Attribute):
        func = ast.Attribute(func.value, name, ast.Load())
    else:
        func = ast.Name(name, ast.Load())
    return ast.Call(func, call.args, call.keywords)


def _negated(test: ast.expr) -> ast.expr:
    return ast.UnaryOp(ast.Not(), test)


def _is_number(node: ast.AST) -> bool:
    return (isinstance(node, ast.Constant) and isinstance(node.value, int | float)
            and not isinstance(node.value, bool))


def _number_changes(value) -> list:
    if value == 0:
        return [1]
    if value == 1:
        return [0, 2]
    return [0, 1]


def _site_mutations(node: ast.AST) -> list[tuple[ast.expr, str]]:
    """(mutated node, description) for each operator that applies at ``node``."""
    out = []
    if isinstance(node, ast.Compare) and len(node.ops) == 1:
        for new in COMPARE_SWAPS.get(type(node.ops[0]), ()):
            out.append((ast.Compare(node.left, [new()], node.comparators),
                        f"`{SYMBOLS[type(node.ops[0])]}` -> `{SYMBOLS[new]}`"))
    elif isinstance(node, ast.BinOp) and type(node.op) in BINOP_SWAPS:
        new = BINOP_SWAPS[type(node.op)]
        out.append((ast.BinOp(node.left, new(), node.right),
                    f"`{SYMBOLS[type(node.op)]}` -> `{SYMBOLS[new]}`"))
    elif isinstance(node, ast.UnaryOp) and type(node.op) in (ast.USub, ast.Invert, ast.Not):
        out.append((node.operand, f"drop unary `{SYMBOLS[type(node.op)]}`"))
    elif isinstance(node, ast.BoolOp):
        new = ast.Or if isinstance(node.op, ast.And) else ast.And
        out.append((ast.BoolOp(new(), node.values),
                    f"`{SYMBOLS[type(node.op)]}` -> `{SYMBOLS[new]}`"))
    elif isinstance(node, ast.Constant) and isinstance(node.value, bool):
        out.append((ast.Constant(not node.value), f"`{node.value}` -> `{not node.value}`"))
    elif _is_number(node):
        for new in _number_changes(node.value):
            new = type(node.value)(new)
            out.append((ast.Constant(new), f"`{node.value!r}` -> `{new!r}`"))
    elif isinstance(node, ast.Call):
        out += _call_mutations(node)
    return out


def _call_mutations(node: ast.Call) -> list[tuple[ast.expr, str]]:
    name = _called_name(node)
    out = []
    if name in RENAMES:
        out.append((_with_name(node, RENAMES[name]), f"`{name}` -> `{RENAMES[name]}`"))
    if name in DROPPED_CALLS:
        if isinstance(node.func, ast.Attribute) and name == "astype":
            out.append((node.func.value, f"drop `.{name}(...)`"))
        elif node.args:
            out.append((node.args[0], f"drop `{name}(...)`"))
    if name in BRANCH_CALLS and len(node.args) == 3:
        cond, a, b = node.args
        out.append((ast.Call(node.func, [cond, b, a], node.keywords),
                    f"swap the branches of `{name}`"))
    return out


class _Sites(ast.NodeVisitor):
    """Every (node, mutated node, description, enclosing function) in behaviour code:
    annotations, docstrings, imports, decorators and f-strings (messages) are left alone."""

    def __init__(self):
        self.scope: list[str] = []
        self.sites: list[tuple[ast.AST, ast.expr, str, str]] = []

    def _add(self, node, replacements):
        function = ".".join(self.scope) or "<module>"
        self.sites += [(node, new, text, function) for new, text in replacements]

    def _body(self, body):
        start = 1 if body and isinstance(body[0], ast.Expr) and isinstance(
            body[0].value, ast.Constant) and isinstance(body[0].value.value, str) else 0
        for stmt in body[start:]:
            self.visit(stmt)

    def visit_FunctionDef(self, node):
        for default in [*node.args.defaults, *node.args.kw_defaults]:
            if default is not None:
                self.visit(default)
        self.scope.append(node.name)
        self._body(node.body)
        self.scope.pop()

    visit_AsyncFunctionDef = visit_FunctionDef

    def visit_ClassDef(self, node):
        self.scope.append(node.name)
        self._body(node.body)
        self.scope.pop()

    def visit_AnnAssign(self, node):
        if node.value is not None:
            self.visit(node.value)

    def visit_Import(self, node):
        pass

    visit_ImportFrom = visit_Import
    visit_JoinedStr = visit_Import

    def _negate(self, test, text):
        # A single comparison's own negation (`is` -> `is not`, `>` -> `<=`) is the same
        # program as `not (...)`: one of the two is enough.
        if not (isinstance(test, ast.Compare) and len(test.ops) == 1):
            self._add(test, [(_negated(test), text)])

    def visit_If(self, node):
        self._negate(node.test, "negate the `if` test")
        self.generic_visit(node)

    def visit_IfExp(self, node):
        self._negate(node.test, "negate the conditional's test")
        self.generic_visit(node)

    def visit_UnaryOp(self, node):
        # A negative number is one literal: it becomes 0 or loses its sign.
        if isinstance(node.op, ast.USub) and _is_number(node.operand):
            value = node.operand.value
            self._add(node, [(ast.Constant(type(value)(0)), f"`-{value!r}` -> `0`"),
                             (node.operand, f"`-{value!r}` -> `{value!r}`")])
            return
        self.generic_visit(node)

    def generic_visit(self, node):
        if isinstance(node, ast.expr):
            self._add(node, _site_mutations(node))
        super().generic_visit(node)


def _offsets(source: bytes) -> list[int]:
    """The byte offset at which each line (1-based, index 0 unused) starts."""
    starts = [0, 0]
    for line in source.splitlines(keepends=True):
        starts.append(starts[-1] + len(line))
    return starts


def mutants(module: str) -> list[Mutant]:
    """The module's mutants in source order (line, column, operator), numbered from 0."""
    text = (ROOT / "jaxppo" / f"{module}.py").read_text()
    raw = text.encode()
    tree = ast.parse(text)
    finder = _Sites()
    finder.visit(tree)
    starts = _offsets(raw)
    seen = {ast.dump(tree)}
    out = []
    keys: dict[str, int] = {}
    sites = sorted(enumerate(finder.sites),
                   key=lambda s: (s[1][0].lineno, s[1][0].col_offset, s[0]))
    for _, (node, new, text_, function) in sites:
        begin = starts[node.lineno] + node.col_offset
        end = starts[node.end_lineno] + node.end_col_offset
        # Parenthesized, the new expression keeps its place whatever the precedence around it.
        source = (raw[:begin] + f"({ast.unparse(new)})".encode() + raw[end:]).decode()
        try:
            dump = ast.dump(ast.parse(source))
        except SyntaxError:
            continue
        if dump in seen:
            continue
        seen.add(dump)
        # The site's line(s), the site marked: «x > 0» (a literal alone says too little).
        marked = raw[starts[node.lineno]:begin] + "«".encode() + raw[begin:end] + \
            "»".encode() + raw[end:starts[node.end_lineno + 1]]
        code = " ".join(marked.decode().split())
        key = f"{module}.{function}: {text_} at `{code}`"
        keys[key] = keys.get(key, 0) + 1
        if keys[key] > 1:
            key += f" #{keys[key]}"
        out.append(Mutant(module, len(out), node.lineno, function, code, text_, source, key))
    return out


def _copy(workdir: pathlib.Path, tests: tuple[str, ...]) -> None:
    shutil.copytree(ROOT / "jaxppo", workdir / "jaxppo",
                    ignore=shutil.ignore_patterns("__pycache__"))
    (workdir / "tests").mkdir()
    for name in ("tests/conftest.py", *tests):
        shutil.copy(ROOT / name, workdir / name)
    shutil.copy(ROOT / "pyproject.toml", workdir / "pyproject.toml")


def run_tests(workdir: pathlib.Path, tests: tuple[str, ...], timeout: float,
              cache: pathlib.Path) -> dict:
    """pytest -x on the copy; returns the status (passed, failed, timeout), seconds and the
    first failing test."""
    env = dict(os.environ)
    env.update(PYTHONPATH=str(workdir), PYTHONDONTWRITEBYTECODE="1",
               JAX_COMPILATION_CACHE_DIR=str(cache),
               JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS="0",
               JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES="0")
    # One process (-n 0), as the recorded scores and timeouts were measured.
    cmd = [sys.executable, "-m", "pytest", "-x", "-q", "-n", "0", "-p", "no:cacheprovider",
           *tests]
    start = time.perf_counter()
    # Its own session, so that a timeout ends pytest and anything it started.
    proc = subprocess.Popen(cmd, cwd=workdir, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, start_new_session=True)
    try:
        output, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        return {"status": "timeout", "seconds": round(time.perf_counter() - start, 1),
                "failed": None}
    seconds = round(time.perf_counter() - start, 1)
    if proc.returncode == 0:
        return {"status": "passed", "seconds": seconds, "failed": None}
    first = re.search(r"^(?:FAILED|ERROR) (\S+)", output, re.MULTILINE)
    return {"status": "failed", "seconds": seconds,
            "failed": first.group(1) if first else output.strip().splitlines()[-1][:200]}


def run_module(module: str, selected: list[Mutant], timeout: float | None,
               cache: pathlib.Path, log) -> dict:
    """The unmutated tests, then each mutant in turn, on one copy of the code."""
    tests = MODULES[module]
    path = pathlib.Path("jaxppo") / f"{module}.py"
    started = time.perf_counter()
    load_before = _loadavg_text()
    with tempfile.TemporaryDirectory(prefix=f"mutation-{module}-") as tmp:
        workdir = pathlib.Path(tmp)
        _copy(workdir, tests)
        original = (workdir / path).read_text()
        baseline = run_tests(workdir, tests, 1800, cache)
        if baseline["status"] != "passed":
            raise SystemExit(f"mutation: {module}'s tests fail without a mutant: {baseline}")
        limit = timeout or max(120.0, 5 * baseline["seconds"])
        log(f"{module}: unmutated tests pass in {baseline['seconds']} s; "
            f"{len(selected)} mutants, {limit:.0f} s each at most")
        rows = []
        for m in selected:
            (workdir / path).write_text(m.source)
            outcome = run_tests(workdir, tests, limit, cache)
            (workdir / path).write_text(original)
            killed = outcome["status"] != "passed"
            row = {"id": m.id, "line": m.line, "function": m.function, "code": m.code,
                   "mutation": m.mutation, "key": m.key, "killed": killed, **outcome}
            rows.append(row)
            log(f"  {m.id} line {m.line} {m.mutation} at `{_around_site(m.code)}`: "
                f"{'killed by ' + str(outcome['failed']) if killed else 'SURVIVED'} "
                f"({outcome['seconds']} s)")
    summary = _summary(module, tests, baseline, limit, rows, time.perf_counter() - started)
    summary["loadavg"] = [load_before, _loadavg_text()]
    return summary


def _around_site(code: str, width: int = 80) -> str:
    """At most ``width`` characters of a marked line, the site «...» in view."""
    if len(code) <= width:
        return code
    start = max(0, min(code.index("«") - width // 4, len(code) - width))
    return ("..." if start else "") + code[start:start + width] + (
        "..." if start + width < len(code) else "")


def _revision(files: list[str]) -> str:
    """The checkout's commit, with "+ edits" when ``files`` differ from it."""
    def git(*args):
        done = subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True)
        return done.stdout.strip() if done.returncode == 0 else ""

    commit = git("rev-parse", "--short", "HEAD") or "unknown"
    return commit + (" + edits" if git("status", "--porcelain", "--", *files) else "")


def _loadavg_text() -> str:
    sys.path.insert(0, str(ROOT / "bench"))
    import machine  # bench/machine.py

    return " ".join(machine.loadavg())


def _summary(module, tests, baseline, limit, rows, seconds) -> dict:
    return tally({
        "tests": list(tests), "baseline_s": baseline["seconds"], "timeout_s": limit,
        "run_s": round(seconds, 1), "revision": _revision([f"jaxppo/{module}.py", *tests]),
        "rows": rows,
    })


def tally(summary: dict) -> dict:
    """Judge each survivor by `EQUIVALENT` and count: the score is killed / mutants."""
    rows = summary["rows"]
    for r in rows:
        if not r["killed"]:
            r["equivalent"] = r["key"] in EQUIVALENT
            r["reason"] = EQUIVALENT.get(r["key"], "")
    killed = sum(r["killed"] for r in rows)
    equivalent = sum(not r["killed"] and r["equivalent"] for r in rows)
    total = len(rows)
    summary.update(
        mutants=total, killed=killed, timeouts=sum(r["status"] == "timeout" for r in rows),
        survived=total - killed, equivalent=equivalent,
        score=round(killed / total, 4) if total else None,
        score_without_equivalent=(round(killed / (total - equivalent), 4)
                                  if total > equivalent else None))
    return summary


def markdown(result: dict) -> list[str]:
    lines = [
        "# Mutation testing of the core modules",
        "",
        "Each mutant is one small change to one site of `jaxppo/<module>.py`, run against the "
        "module's own test files (`pytest -x` on a copy; `bench/mutation.py` lists the "
        "operators). Score: killed / mutants. A survivor judged equivalent gives the "
        "original's results on every input the library can pass it (a sampler: the same "
        "law), the reason given; the others are holes in the tests.",
        "",
        "Commands: " + "; ".join(sorted({f"`{s['command']}`" for s in
                                         result["modules"].values()})) + ".",
        "",
        f"Machine: {result['machine']['cpu']}, {result['machine']['cores']} cores, jax "
        f"{result['machine']['jax']}.",
        "",
        "| module | tests | mutants | killed | of them timeouts | survived | equivalent | "
        "score | score without equivalents | run time | load average before, after | code |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---|---|",
    ]
    modules = result["modules"]
    for name in MODULES:
        if name not in modules:
            continue
        s = modules[name]
        tests = ", ".join(f"`{t.removeprefix('tests/')}`" for t in s["tests"])
        lines.append(
            f"| {name} | {tests} | {s['mutants']} | {s['killed']} | {s['timeouts']} | "
            f"{s['survived']} | {s['equivalent']} | {100 * s['score']:.1f}% | "
            f"{100 * s['score_without_equivalent']:.1f}% | {s['run_s'] / 60:.1f} min | "
            f"{', '.join(s.get('loadavg', ['-']))} | {s.get('revision', '-')} |")
    again = [r for name in MODULES for r in modules.get(name, {}).get("rows", [])
             if r.get("rechecked")]
    if again:
        lines += ["", "Survivors rerun alone once a test was added for them (`--mutant ID "
                  "--recheck`): " + "; ".join(
                      f"{r['id']} on {r['rechecked']}: "
                      + (f"killed by `{r['failed']}`" if r["killed"] else "survived")
                      for r in again) + "."]
    lines += ["", "## Survivors", "",
              "| mutant | line | function | code | mutation | equivalent | why |",
              "|---|---:|---|---|---|---|---|"]
    for name in MODULES:
        for r in modules.get(name, {}).get("rows", []):
            if not r["killed"]:
                code = _around_site(r["code"]).replace("|", "\\|")
                lines.append(
                    f"| {r['id']} | {r['line']} | `{r['function']}` | `{code}` | "
                    f"{r['mutation']} | {'yes' if r['equivalent'] else 'no'} | "
                    f"{r['reason'] or 'a hole in the tests'} |")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--module", nargs="+", choices=list(MODULES), default=list(MODULES))
    parser.add_argument("--list", action="store_true", help="list the mutants, run nothing")
    parser.add_argument("--mutant", nargs="+", default=None,
                        help="run only these ids (module:NNN); prints, writes nothing")
    parser.add_argument("--recheck", action="store_true",
                        help="with --mutant: store each rerun in place of its row, marked "
                             "with the code it ran on (a survivor a new test kills)")
    parser.add_argument("--timeout", type=float, default=None,
                        help="seconds per mutant (default 5 x the unmutated run, >= 120)")
    parser.add_argument("--cache-dir", default=str(pathlib.Path(tempfile.gettempdir())
                                                   / "jaxppo-mutation-jax-cache"),
                        help="persistent JAX compilation cache shared by the mutants")
    parser.add_argument("--out", default=str(RESULTS))
    parser.add_argument("--render", action="store_true",
                        help="judge the stored survivors again by EQUIVALENT and redraw")
    args = parser.parse_args()
    if args.render:
        write(pathlib.Path(args.out), {})
        return
    modules = sorted({m.split(":")[0] for m in args.mutant}, key=list(MODULES).index) \
        if args.mutant else args.module
    every = {name: mutants(name) for name in modules}
    if args.list:
        for name in modules:
            for m in every[name]:
                print(f"{m.id}  line {m.line:4d}  {m.function}: {m.mutation} at `{m.code}`")
        print(", ".join(f"{name}: {len(every[name])} mutants" for name in modules))
        return
    cache = pathlib.Path(args.cache_dir)
    cache.mkdir(parents=True, exist_ok=True)

    def log(text):
        print(text, flush=True)

    summaries = {}
    command = "nice -n 19 python bench/mutation.py --module " + " ".join(modules)
    for name in modules:
        selected = every[name] if args.mutant is None else [
            m for m in every[name] if m.id in args.mutant]
        summaries[name] = run_module(name, selected, args.timeout, cache, log)
        s = summaries[name]
        s["command"] = command
        log(f"{name}: {s['killed']} of {s['mutants']} killed ({100 * s['score']:.1f}%), "
            f"{s['survived']} survived ({s['equivalent']} judged equivalent), "
            f"{s['run_s'] / 60:.1f} min")
        if args.mutant is None:
            write(pathlib.Path(args.out), {name: s})  # each module as it finishes
    if args.recheck and args.mutant:
        recheck(pathlib.Path(args.out), summaries)


def recheck(out: pathlib.Path, summaries: dict) -> None:
    """Replace the stored rows of the rerun mutants by their reruns, each marked with the
    code it ran on; the module's run time and load stay those of its full run."""
    result = json.loads((out / "mutation.json").read_text())
    for name, s in summaries.items():
        stored = result["modules"][name]
        for row in s["rows"]:
            row["rechecked"] = s["revision"]
            stored["rows"] = [row if r["id"] == row["id"] else r for r in stored["rows"]]
    write(out, {name: result["modules"][name] for name in summaries})


def write(out: pathlib.Path, summaries: dict) -> None:
    """Merge ``summaries`` into out/mutation.json (modules run before are kept) and redraw
    out/mutation.md."""
    sys.path.insert(0, str(ROOT / "bench"))
    import machine  # bench/machine.py

    path = out / "mutation.json"
    result = json.loads(path.read_text()) if path.exists() else {"modules": {}}
    result["modules"].update(summaries)
    result["modules"] = {name: tally(result["modules"][name]) for name in MODULES
                         if name in result["modules"]}
    if summaries or "machine" not in result:
        result["machine"] = machine.describe()
    machine.write(out, "mutation", result, markdown(result))


if __name__ == "__main__":
    main()
