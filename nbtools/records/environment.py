"""The environment a run executed in: Python, key package versions, git state of the project."""

from __future__ import annotations

import platform
import subprocess
import sys
from importlib import metadata
from pathlib import Path
from typing import Any

#: Packages whose versions decide what a pipeline computes.
KEY_PACKAGES = (
    "nbtools",
    "numpy",
    "pandas",
    "scikit-learn",
    "scipy",
    "mlflow",
    "papermill",
    "nbclient",
    "ipykernel",
    "pyarrow",
    "matplotlib",
)


def package_versions(names: tuple[str, ...] = KEY_PACKAGES) -> dict[str, str]:
    """Return the installed version of each named distribution (``missing`` when absent)."""
    versions = {}
    for name in names:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = "missing"
    return versions


def git_state(folder: Path) -> dict[str, Any]:
    """Return the git commit of ``folder`` and whether its work tree differs from it.

    Returns ``{"commit": None, "dirty": None}`` outside a git work tree.
    """

    def git(*args: str) -> str | None:
        try:
            done = subprocess.run(
                ["git", *args], cwd=folder, capture_output=True, text=True, timeout=10, check=False
            )
        except (OSError, subprocess.TimeoutExpired):
            return None
        return done.stdout.strip() if done.returncode == 0 else None

    commit = git("rev-parse", "HEAD")
    if commit is None:
        return {"commit": None, "dirty": None}
    status = git("status", "--porcelain", "--untracked-files=no", "--", ".")
    return {"commit": commit, "dirty": bool(status)}


def describe(project_dir: Path, seed: int) -> dict[str, Any]:
    """Return the environment section of a run manifest."""
    return {
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "packages": package_versions(),
        "git": git_state(project_dir),
        "seed": seed,
    }
