"""The built-in templates, each with the Python declaration its parameters cell is generated from.

Each entry names a template of ``templates/`` (all eight stages) and the
:class:`~nbtools.params.StageParams` classes whose fields declare its parameters, in cell order.
``nbtools check`` compares each template's cell with
:func:`~nbtools.params.render_parameters_cell` of its declaration, and ``nbtools check
--write-parameters`` rewrites the cells after a declaration changed. Every stage a user writes,
and a project's copy of a template, declares its parameters in the cell alone.
"""

from __future__ import annotations

from pathlib import Path

from nbtools.ml.cleaning import CleaningParams
from nbtools.ml.features import FeatureParams
from nbtools.ml.modeling import TrainParams
from nbtools.ml.splitting import SplitParams
from nbtools.ml.stage_params import EvaluateParams, IngestParams
from nbtools.ops.deploying import DeployParams
from nbtools.ops.monitoring.check import MonitorInputs, MonitorPolicy
from nbtools.params import StageParams, render_parameters_cell
from nbtools.pipeline.project import templates_dir

#: Template notebook name to the classes that declare its parameters cell, in cell order.
DECLARATIONS: dict[str, tuple[type[StageParams], ...]] = {
    "01_ingest.ipynb": (IngestParams,),
    "02_clean.ipynb": (CleaningParams,),
    "03_split.ipynb": (SplitParams,),
    "04_features.ipynb": (FeatureParams,),
    "05_train.ipynb": (TrainParams,),
    "06_evaluate.ipynb": (EvaluateParams,),
    "07_deploy.ipynb": (DeployParams,),
    "08_monitor.ipynb": (MonitorInputs, MonitorPolicy),
}


def declared_cells(folder: Path | None = None) -> dict[Path, tuple[str, str]]:
    """Return each built-in template's path, its declaring classes' names and its expected cell.

    Parameters
    ----------
    folder : Path, optional
        The templates folder; by default the one ``nbtools new`` copies from.
    """
    root = (folder or templates_dir()).resolve()
    return {
        root / name: (
            " and ".join(f"{c.__module__}.{c.__qualname__}" for c in classes),
            render_parameters_cell(*classes),
        )
        for name, classes in DECLARATIONS.items()
    }


def write_declared_cells(folder: Path | None = None) -> list[Path]:
    """Rewrite each built-in template's parameters cell from its declaration.

    The cell keeps its id and metadata; nothing else in the notebook changes.

    Returns
    -------
    list of Path
        The templates whose cell changed.
    """
    import nbformat

    changed = []
    for path, (_declaration, expected) in declared_cells(folder).items():
        nb = nbformat.read(path, as_version=4)
        cell = next(c for c in nb.cells if "parameters" in c.get("metadata", {}).get("tags", []))
        if cell.source != expected:
            cell.source = expected
            nbformat.write(nb, path)
            changed.append(path)
    return changed
