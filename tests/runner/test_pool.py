"""The stage-pool protocol: both pools implement it, so the run loop never asks which it has."""

from __future__ import annotations

import inspect
from collections.abc import Iterator
from pathlib import Path

import pytest

from nbtools.errors import StageFailedError
from nbtools.runner.claims import Claims
from nbtools.runner.dask_executor import DaskStagePool
from nbtools.runner.pool import StagePool
from nbtools.runner.scheduler import LocalStagePool, stage_pool

METHODS = ("prepare", "open_store", "run_stage", "shutdown")


@pytest.mark.parametrize("pool_class", [LocalStagePool, DaskStagePool])
def test_both_pools_have_the_protocol_methods_with_its_signatures(pool_class: type) -> None:
    for name in METHODS:
        expected = inspect.signature(getattr(StagePool, name))
        assert inspect.signature(getattr(pool_class, name)).parameters == expected.parameters


def test_the_local_pool_is_a_stage_pool() -> None:
    pool = stage_pool(1, "local")
    try:
        assert isinstance(pool, StagePool) and isinstance(pool, LocalStagePool)
    finally:
        pool.shutdown()


@pytest.fixture
def dask_pool() -> Iterator[DaskStagePool]:
    distributed = pytest.importorskip("distributed")
    with distributed.LocalCluster(
        n_workers=1, threads_per_worker=1, processes=False, dashboard_address=None
    ) as cluster:
        pool = DaskStagePool(str(cluster.scheduler_address), 1)
        try:
            yield pool
        finally:
            pool.shutdown()


def test_the_dask_pool_runs_a_stage_as_a_task_with_the_checks_of_a_worker(
    dask_pool: DaskStagePool, tmp_path: Path
) -> None:
    assert isinstance(dask_pool, StagePool)
    dask_pool.prepare(tmp_path, 3)  # nothing to start ahead on a cluster
    dask_pool.open_store("sqlite:///mlflow.db")
    missing = tmp_path / "gone.ipynb"
    future = dask_pool.run_stage(
        "train", missing, tmp_path / "out" / "output.ipynb", {}, tmp_path, 5
    )
    error = future.exception(timeout=60)
    assert isinstance(error, StageFailedError)
    assert "cannot reach the project folder" in str(error) and str(missing) in str(error)


def test_a_claim_makes_a_second_run_wait_instead_of_executing_again(tmp_path: Path) -> None:
    first, second = Claims(tmp_path), Claims(tmp_path)
    assert not first.claim("train", "k", can_run=False) and not first.borrowed
    assert first.claim("train", "k", can_run=True)
    assert not second.claim("train", "k", can_run=True)
    (waiting,) = second.borrowed
    assert second.shared == {"k"} and not waiting.done()
    first.release_all()
    assert waiting.done() and not first.held
    assert second.claim("train", "k", can_run=True)
    elsewhere = Claims(tmp_path / "elsewhere")  # claims are per project
    assert elsewhere.claim("train", "k", can_run=True)
    elsewhere.release_all()
    second.release_all()
