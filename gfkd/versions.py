"""What a result depends on besides the code: the package versions, read from the installed packages' metadata (no
torch, Prefect or MLflow import; `gfkd --version` prints them, and the pipeline's and the benchmark's MLflow runs carry
them as the tag `gfkd.versions`), the CPU kernels torch dispatches to (this one imports torch), and the command that
started the run."""

from __future__ import annotations

import os
import platform
import shlex
import subprocess
import sys
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import gfkd

DEPENDENCIES = ("torch", "torch_geometric", "prefect", "mlflow", "pyarrow", "pydantic")
COMMAND_ENV = "GFKD_COMMAND"  # the gfkd command line, set by flows/cli.py for the stages (and their workers) it starts


def command_text(argv: list[str]) -> str:
    """`gfkd <argv>`, quoted as a shell reads it back."""
    return shlex.join(["gfkd", *argv])


def record_command(argv: list[str]) -> str:
    """Put `gfkd <argv>` where the stages find it (command_line); return it."""
    os.environ[COMMAND_ENV] = text = command_text(argv)
    return text


def command_line() -> str | None:
    """The gfkd command that started this process's run, or None when the stages were called from Python."""
    return os.environ.get(COMMAND_ENV) or None


def _installed(name: str) -> str:
    try:
        return version(name)
    except PackageNotFoundError:
        return "not installed"


def versions_line() -> str:
    """`gfkd 0.1.0 (torch 2.13.0+cpu, torch_geometric 2.8.1, ...; Python 3.11.7)`."""
    deps = ", ".join(f"{n} {_installed(n)}" for n in DEPENDENCIES)
    return f"gfkd {gfkd.__version__} ({deps}; Python {sys.version.split()[0]})"


def checkout_commit(repo: Path) -> str:
    """The short commit of the git checkout at `repo`, `(with uncommitted changes)` added when its tree is dirty;
    `?` outside a checkout (what a benchmark's table names as the code that made it)."""
    git = lambda *a: subprocess.run(["git", *a], cwd=repo, capture_output=True, text=True).stdout.strip()  # noqa: E731
    commit = git("rev-parse", "--short", "HEAD")
    return (commit + (" (with uncommitted changes)" if git("status", "--porcelain") else "")) if commit else "?"


def cpu_model() -> str:
    """The processor (`/proc/cpuinfo` of the first core): its model name, with family and model numbers where given
    (`AMD EPYC (family 25, model 17)`: a virtual machine's name can be that generic); else what `platform` knows."""
    fields: dict[str, str] = {}
    try:
        for line in open("/proc/cpuinfo", encoding="utf-8"):
            if not line.strip():
                break  # the first core's block ends
            key, _, value = line.partition(":")
            fields.setdefault(key.strip(), value.strip())
    except OSError:
        pass
    if not fields.get("model name"):
        return platform.processor() or platform.machine()
    numbers = ", ".join(f"{name} {fields[key]}" for name, key in (("family", "cpu family"), ("model", "model"))
                        if fields.get(key))
    return fields["model name"] + (f" ({numbers})" if numbers else "")


def device_line(device_type: str) -> str:
    """What made the floats: `cpu (x86_64, AMD EPYC (family 25, model 17), kernels AVX512), float32, torch 2.13.0+cpu,
    PyG 2.8.1` (protocol.md §7: device, dtype, torch and PyG versions). Imports torch."""
    import torch
    import torch_geometric

    cpu = f", {cpu_model()}, kernels {cpu_kernels()}" if device_type == "cpu" else ""
    return (f"{device_type} ({platform.machine()}{cpu}), float32, torch {torch.__version__}, "
            f"PyG {torch_geometric.__version__}")


def runtime_line(threads: int | str, deterministic: bool) -> str:
    """`run.deterministic=true, run.threads=1`: the run settings the floats depend on (protocol.md §7)."""
    return f"run.deterministic={str(deterministic).lower()}, run.threads={threads}"


def cpu_kernels() -> str:
    """The vector instruction set torch's CPU kernels dispatch to on this machine (`AVX2`, `AVX512`, ...): the same
    code and seeds can give other floats under another one (docs/pipeline.md, "Across machines")."""
    import torch

    return torch.backends.cpu.get_cpu_capability()
