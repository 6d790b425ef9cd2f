"""The ``torch_mlp`` family and its TensorBoard curves, in an environment with ``nbtools[torch]``.

The main test environment has no PyTorch. This test builds one that has the extra installed
(:func:`conftest.torch_venv`) and runs there the tests under ``tests/with_torch`` (the family
through the real pipeline, its event files, serving, ``nbtools tensorboard``) and the compiled
serving check of every family, which then includes ``torch_mlp``. Models are served from this
environment, which has no PyTorch (``NBTOOLS_BASE_BIN``). A failure to install the extra fails
this test.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

pytestmark = pytest.mark.torch

TESTS = Path(__file__).parent


def test_the_torch_family_passes_its_tests_where_the_extra_is_installed(torch_venv) -> None:
    command = [
        str(torch_venv.bin / "python"),
        "-m",
        "pytest",
        "-p",
        "no:cacheprovider",
        "-q",
        "-rfE",
        "-k",
        "torch",  # tests/with_torch, and each family check's torch_mlp cases
        str(TESTS / "with_torch"),
        str(TESTS / "serving" / "test_compiled.py"),
    ]
    done = subprocess.run(
        command,
        cwd=TESTS.parent,
        env=torch_venv.env,
        capture_output=True,
        text=True,
    )
    summary = done.stdout.strip().splitlines()[-1] if done.stdout.strip() else ""
    assert done.returncode == 0, f"{summary}\n{done.stdout[-12000:]}\n{done.stderr[-3000:]}"
    assert " passed" in summary and "skipped" not in summary, summary
