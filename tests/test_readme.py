"""The README's examples run as written; the README and ARCHITECTURE.md stay navigable.

The slow test runs every example of README.md in a fresh directory: the commands of its
``bash`` blocks that call jaxppo (``jaxppo ...`` or ``python -m jaxppo ...``, each through
``sys.executable -m jaxppo``), in the README's order, then its ``python`` blocks as one program.
``pip install`` and ``pytest`` commands are skipped: the suite already runs inside an install.
"""

import ast
import pathlib
import re
import shlex
import subprocess
import sys

import pytest
from conftest import full_speed_env

ROOT = pathlib.Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
ARCHITECTURE = ROOT / "ARCHITECTURE.md"
DOCS = (README, ARCHITECTURE, ROOT / "CHANGELOG.md")

# The two set-up commands the README opens with.
INSTALL_AND_TRAIN = ("pip install . && python -m jaxppo train --env CartPole-v1 --seeds 8 "
                     "--out runs/cartpole")
INSTALL_AND_TEST = 'pip install ".[test]" && python -m pytest'

FENCE = re.compile(r"^```(\w*)[^\n]*\n(.*?)^```[ \t]*$", re.MULTILINE | re.DOTALL)
INLINE_LINK = re.compile(r"!?\[[^\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
REFERENCE_LINK = re.compile(r"^\s*\[[^\]]+\]:\s*<?(\S+?)>?(?:\s+\"[^\"]*\")?\s*$", re.MULTILINE)
CODE_SPAN = re.compile(r"`[^`\n]*`")
EXTERNAL = re.compile(r"^[a-zA-Z][a-zA-Z0-9+.-]*:")  # http:, https:, mailto:, ...


def code_blocks(text: str) -> list[tuple[str, str]]:
    """(language, body) of every fenced block, in order."""
    return [(m.group(1), m.group(2)) for m in FENCE.finditer(text)]


def shell_commands(body: str) -> list[str]:
    """The commands of a bash block: continuation lines joined, comment lines dropped, each
    ``a && b`` split into its commands."""
    joined = re.sub(r"\\\n", " ", body)
    commands = []
    for line in joined.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            commands.extend(part.strip() for part in line.split("&&"))
    return commands


def jaxppo_arguments(command: str) -> list[str] | None:
    """The arguments after ``jaxppo`` of a jaxppo command; None for a command to skip.

    Raises:
        AssertionError: a command the README should not hold untested.
    """
    words = shlex.split(command, comments=True)
    if words[:1] == ["jaxppo"]:
        return words[1:]
    if words[:3] == ["python", "-m", "jaxppo"]:
        return words[3:]
    if words[:2] == ["pip", "install"] or "pytest" in words:
        return None
    raise AssertionError(f"README command {command!r} is neither a jaxppo command, "
                         "`pip install ...` nor `pytest`: test_readme cannot run it")


def heading_anchors(text: str) -> set[str]:
    """GitHub's anchors of a Markdown file's headings."""
    anchors = set()
    for heading in re.findall(r"^#{1,6}\s+(.+?)\s*#*\s*$", FENCE.sub("", text), re.MULTILINE):
        slug = re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")
        anchors.add(slug)
    return anchors


def relative_links(text: str) -> list[str]:
    """Targets of the inline and reference links outside code, external ones left out."""
    prose = CODE_SPAN.sub("", FENCE.sub("", text))
    targets = INLINE_LINK.findall(prose) + REFERENCE_LINK.findall(prose)
    return [t for t in targets if not EXTERNAL.match(t)]


# ---------------------------------------------------------------------------------------------
# Quick checks.


def test_readme_opens_with_a_paragraph_then_the_two_commands():
    text = README.read_text()
    lines = text.splitlines()
    assert lines[0].startswith("# "), "the README starts with its title"
    body = "\n".join(lines[1:]).strip()
    first_paragraph = body.split("\n\n")[0]
    assert not re.match(r"\s*(```|#|\||[-*+] |>|\d+\. )", first_paragraph), (
        f"the README's title is followed by a paragraph of prose, not {first_paragraph[:60]!r}")
    assert len(first_paragraph.split()) >= 30, "the opening paragraph says what jaxppo is"

    before_sections = body.split("\n## ")[0]
    blocks = code_blocks(before_sections)
    assert [lang for lang, _ in blocks] == ["bash", "bash"], (
        "the opening paragraph is followed by the two set-up commands, each in a bash block, "
        "before the first section")
    assert [block.strip() for _, block in blocks] == [INSTALL_AND_TRAIN, INSTALL_AND_TEST]


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: p.name)
def test_relative_links_point_to_existing_files(doc):
    if not doc.exists():
        pytest.skip(f"{doc.name} does not exist")
    text = doc.read_text()
    broken = []
    for target in relative_links(text):
        path, _, anchor = target.partition("#")
        if not path:
            if anchor not in heading_anchors(text):
                broken.append(f"{target} (no such heading)")
        elif not (doc.parent / path).exists():
            broken.append(target)
    assert not broken, f"{doc.name} links to what does not exist: {broken}"


def test_readme_python_examples_parse():
    for index, (lang, body) in enumerate(code_blocks(README.read_text())):
        if lang == "python":
            ast.parse(body, filename=f"README.md python block {index}")


def test_readme_bash_examples_are_jaxppo_pip_or_pytest_commands():
    commands = [c for lang, body in code_blocks(README.read_text()) if lang == "bash"
                for c in shell_commands(body)]
    assert commands, "the README has bash examples"
    for command in commands:
        jaxppo_arguments(command)  # raises for anything else


def test_architecture_module_map_lists_every_module():
    text = ARCHITECTURE.read_text()
    section = text.split("## Module map", 1)[1].split("\n## ", 1)[0]
    mapped = set(re.findall(r"^\|[^|\n]*\|\s*`([\w/.]+)`\s*\|", section, re.MULTILINE))
    package = ROOT / "jaxppo"
    modules = {p.name for p in package.glob("*.py") if p.name not in ("__init__.py",
                                                                         "__main__.py")}
    modules |= {p.parent.name + "/" for p in package.glob("*/__init__.py")}
    assert mapped == modules, (f"in the map but not the package: {sorted(mapped - modules)}; "
                               f"in the package but not the map: {sorted(modules - mapped)}")


# ---------------------------------------------------------------------------------------------
# The examples, run.


def _run(argv: list[str], cwd: pathlib.Path, env: dict[str, str], timeout: int) -> None:
    done = subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=timeout)
    assert done.returncode == 0, (
        f"{shlex.join(argv)} exited with {done.returncode}\n--- stdout (tail)\n"
        f"{done.stdout[-3000:]}\n--- stderr (tail)\n{done.stderr[-3000:]}")


@pytest.mark.slow
def test_readme_examples_run_as_written(tmp_path):
    blocks = code_blocks(README.read_text())
    env = full_speed_env(XDG_CACHE_HOME=str(tmp_path / "cache"), PYTHONUNBUFFERED="1")
    work = tmp_path / "work"
    work.mkdir()

    ran = 0
    for lang, body in blocks:
        if lang != "bash":
            continue
        for command in shell_commands(body):
            arguments = jaxppo_arguments(command)
            if arguments is not None:
                _run([sys.executable, "-m", "jaxppo", *arguments], work, env, timeout=600)
                ran += 1
    assert ran, "the README has jaxppo commands"

    program = "\n\n".join(body for lang, body in blocks if lang == "python")
    assert program, "the README has Python examples"
    script = tmp_path / "readme_examples.py"
    script.write_text(program)
    _run([sys.executable, str(script)], work, env, timeout=1200)
