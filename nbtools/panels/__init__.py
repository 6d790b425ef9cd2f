"""Interactive ipywidgets panels over the stages' parameters.

Each panel starts from a stage's parameters, shows the data behind a decision, previews the
choice with the same :mod:`nbtools.ml` function the batch stage calls, and writes the choice back
into ``pipeline.yaml`` ("Save to pipeline"), so that ``nbtools run`` reproduces the session
exactly.
"""

from __future__ import annotations

from nbtools.panels._base import Panel, show
from nbtools.panels.cleaning import CleaningPanel, cleaning_panel
from nbtools.panels.form import ParameterForm, parameter_form
from nbtools.panels.save import save_parameters
from nbtools.panels.selection import FeatureSelectionPanel, feature_selection_panel
from nbtools.panels.tuning import TuningPanel, tuning_panel

__all__ = [
    "CleaningPanel",
    "FeatureSelectionPanel",
    "Panel",
    "ParameterForm",
    "TuningPanel",
    "cleaning_panel",
    "feature_selection_panel",
    "parameter_form",
    "save_parameters",
    "show",
    "tuning_panel",
]
