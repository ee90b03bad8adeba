"""What the figures were measured on: the machine, the versions, the load around the run, the commit."""

from __future__ import annotations

import contextlib
import os
import platform
import subprocess
from importlib import metadata
from typing import Any

import psutil

from devtools.stack import ROOT


def _cpu_model() -> str | None:
    with contextlib.suppress(OSError), open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or None


def _git(*args: str) -> str | None:
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        out = subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True, timeout=10)
        if out.returncode == 0:
            return out.stdout.strip()
    return None


def _version(package: str) -> str | None:
    with contextlib.suppress(metadata.PackageNotFoundError):
        return metadata.version(package)
    return None


def describe() -> dict[str, Any]:
    """Cores, memory, OS, Python and library versions, the git commit and whether the tree was clean."""
    status = _git("status", "--porcelain", "--untracked-files=no")
    return {
        "cpu_count": os.cpu_count(),
        "cpu_model": _cpu_model(),
        "memory_gb": round(psutil.virtual_memory().total / 1024**3, 1),
        "os": platform.platform(),
        "python": platform.python_version(),
        "libraries": {
            p: _version(p) for p in ("aiohttp", "aio-pika", "pymongo", "secantusdb", "cryptography")
        },
        "commit": _git("rev-parse", "--short", "HEAD"),
        "tree_clean": status == "" if status is not None else None,
        "load_average_at_start": [round(x, 2) for x in os.getloadavg()],
    }
