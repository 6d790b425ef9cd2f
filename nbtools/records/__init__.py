"""What a run leaves behind: run records, MLflow runs and the environment they ran in.

- :mod:`~nbtools.records.runs`: one folder per run with an atomic ``manifest.json``;
- :mod:`~nbtools.records.manifest`: the manifest as a typed run record that writes itself;
- :mod:`~nbtools.records.history`: runs summarised and compared, for the views;
- :mod:`~nbtools.records.run_diff`: two runs compared stage by stage and cell by cell, as a report;
- :mod:`~nbtools.records.tracking`: the MLflow tracking store (SQLite by default);
- :mod:`~nbtools.records.environment`: Python, package versions and git state of a run;
- :mod:`~nbtools.records.notify`: messages to a webhook about failed runs, drift and the gate.
"""
