"""The model service face: a FastAPI + uvicorn REST API for a registered model.

- :mod:`~nbtools.serving.app`: the endpoints (MLflow's scoring protocol, health, metadata);
- :mod:`~nbtools.serving.payload`: request bodies (JSON, CSV, Parquet) into columns;
- :mod:`~nbtools.serving.schema`: checking and converting columns against the model signature;
- :mod:`~nbtools.serving.model`: the loaded model, following its registry alias;
- :mod:`~nbtools.serving.batching`: micro-batching in a worker thread, the bounded queue, timeouts;
- :mod:`~nbtools.serving.threads`: compute threads that fit the batch and never spin-wait;
- :mod:`~nbtools.serving.timings`: per-phase timings (``Server-Timing``, ``/metrics``);
- :mod:`~nbtools.serving.predlog`: the prediction log, written off the request path;
- :mod:`~nbtools.serving.launcher`: uvicorn with TCP_NODELAY for every worker.

``nbtools serve`` (:mod:`nbtools.cli.serve`) is the command line over it.
"""

from __future__ import annotations
