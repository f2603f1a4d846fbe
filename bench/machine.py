"""Describe the machine a benchmark ran on (recorded with every result)."""

from __future__ import annotations

import json
import os
import pathlib
import platform

import jax

ROOT = pathlib.Path(__file__).resolve().parent.parent


def cpu_model() -> str:
    try:
        for line in pathlib.Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def jaxppo_source(root: pathlib.Path = ROOT) -> str:
    """The folder the imported jaxppo comes from, which must be this checkout's: returned
    relative to the checkout ("jaxppo"), so that results name no machine's paths.

    ``pip install .`` (the README's first command) copies jaxppo into site-packages; a bench
    run after an edit would then time that copy, not the code beside it. Refused by name.
    """
    import jaxppo

    source = pathlib.Path(jaxppo.__file__).resolve().parent
    if source != root / "jaxppo":
        raise SystemExit(
            f"bench: jaxppo is imported from {source}, not from this checkout "
            f"({root / 'jaxppo'}), so the bench would time other code. Install the checkout "
            f"with `pip install -e {root}` or run with PYTHONPATH={root}."
        )
    return str(source.relative_to(root))


def device_name() -> str:
    """The first JAX device, with its model where it is an accelerator ("cuda:0 (NVIDIA H200)")."""
    device = jax.devices()[0]
    return str(device) if device.platform == "cpu" else f"{device} ({device.device_kind})"


def describe() -> dict:
    return {
        "jaxppo": jaxppo_source(),
        "cpu": cpu_model(),
        "cores": os.cpu_count(),
        "device": device_name(),
        "backend": jax.default_backend(),
        "jax": jax.__version__,
        "python": platform.python_version(),
        "xla_flags": os.environ.get("XLA_FLAGS", ""),
    }


def loadavg() -> list[str]:
    """The 1, 5 and 15 minute load averages, as /proc/loadavg writes them."""
    return pathlib.Path("/proc/loadavg").read_text().split()[:3]


def header(machine: dict, before: list[str], after: list[str]) -> str:
    """The line that opens a result table: the machine and the load around the measurement."""
    return (f"Machine: {machine['cpu']}, {machine['cores']} cores, {machine['device']}, jax "
            f"{machine['jax']}; load average {' '.join(before)} before, {' '.join(after)} "
            "after.")


def write(out: str | pathlib.Path, name: str, result: dict, lines: list[str]) -> None:
    """``result`` as out/name.json and the markdown ``lines`` as out/name.md."""
    out = pathlib.Path(out)
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{name}.json").write_text(json.dumps(result, indent=2) + "\n")
    (out / f"{name}.md").write_text("\n".join(lines) + "\n")
