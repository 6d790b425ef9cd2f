"""Exports of a pipeline to the orchestrators teams already run: Airflow and Kubeflow Pipelines.

An exported pipeline runs the ``nbtools`` command line in each task (see
:mod:`~nbtools.ops.exports.commands`), so the orchestrator never imports nbtools, and every task
goes through the same cache, run record and MLflow runs as ``nbtools run``.
"""
