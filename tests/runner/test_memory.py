"""Tests of nbtools.runner.memory: the memory limit and how many kernels are started ahead."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from nbtools.errors import InvalidParameterError
from nbtools.runner import memory
from nbtools.runner.scheduler import LocalStagePool, default_jobs

GB = 2**30


@pytest.mark.parametrize(
    ("text", "size"),
    [("2G", 2 * GB), ("1536M", 1536 * 2**20), ("512MiB", 512 * 2**20), ("1073741824", GB)],
)
def test_parse_size(text: str, size: int) -> None:
    assert memory.parse_size(text) == size


def test_a_bad_size_names_the_variable() -> None:
    with pytest.raises(InvalidParameterError, match="NBTOOLS_MEMORY_LIMIT must be a size"):
        memory.parse_size("two gigs")


def test_cgroup_v2_limit(tmp_path: Path) -> None:
    (tmp_path / "memory.max").write_text(f"{2 * GB}\n")
    assert memory.cgroup_limit(tmp_path) == 2 * GB
    (tmp_path / "memory.max").write_text("max\n")
    assert memory.cgroup_limit(tmp_path) is None


def test_cgroup_v1_limit(tmp_path: Path) -> None:
    (tmp_path / "memory").mkdir()
    limit = tmp_path / "memory" / "memory.limit_in_bytes"
    limit.write_text(f"{GB}\n")
    assert memory.cgroup_limit(tmp_path) == GB
    limit.write_text("9223372036854771712\n")  # v1's "no limit"
    assert memory.cgroup_limit(tmp_path) is None
    assert memory.cgroup_limit(tmp_path / "none") is None


def test_the_limit_comes_from_the_variable_then_the_cgroup_then_the_machine(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(memory.MEMORY_VARIABLE, raising=False)
    machine = memory.physical_memory()
    assert machine is not None and machine > 0
    assert memory.memory_limit(tmp_path) == machine  # no cgroup file: all RAM
    (tmp_path / "memory.max").write_text(f"{GB}\n")
    assert memory.memory_limit(tmp_path) == min(GB, machine)
    monkeypatch.setenv(memory.MEMORY_VARIABLE, "2G")
    assert memory.memory_limit(tmp_path) == 2 * GB


def test_fewer_kernels_start_ahead_and_fewer_stages_run_when_memory_is_short() -> None:
    assert memory.kernels_ahead(2, None) == 3 and memory.default_jobs(2, None) == 2
    assert memory.kernels_ahead(2, 24 * GB) == 3 and memory.default_jobs(2, 24 * GB) == 2
    assert memory.kernels_ahead(2, 4 * GB) == 2 and memory.default_jobs(2, 4 * GB) == 2
    assert memory.kernels_ahead(2, 2 * GB) == 0
    assert memory.default_jobs(2, 2 * GB) == 1 and memory.kernels_ahead(1, 2 * GB) == 1
    assert memory.default_jobs(8, GB) == 1 and memory.kernels_ahead(1, GB) == 0
    ahead = [memory.kernels_ahead(2, n * GB // 4) for n in range(4, 40)]
    assert ahead == sorted(ahead) and ahead[0] == 0 and ahead[-1] == 3


def test_default_jobs_follow_the_limit(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(memory.MEMORY_VARIABLE, "2G")
    assert default_jobs() == 1
    monkeypatch.setenv(memory.MEMORY_VARIABLE, "64G")
    assert default_jobs() == (os.cpu_count() or 1)


def test_the_stage_pool_follows_the_limit(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(memory.MEMORY_VARIABLE, "2G")
    pool = LocalStagePool(2)
    try:
        assert pool.kernels.ahead == 0
    finally:
        pool.shutdown()
    monkeypatch.setenv(memory.MEMORY_VARIABLE, "64G")
    pool = LocalStagePool(2)
    try:
        assert pool.kernels.ahead == 3
    finally:
        pool.shutdown()
