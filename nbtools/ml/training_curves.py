"""The training curves of a neural network (``family="torch_mlp"``): TensorBoard event files and
the same curves as a plot.

A network records each epoch's training loss, validation loss and validation metric in
``history_`` (:mod:`nbtools.ml.neural`). The train stage writes them as TensorBoard event files
into its output folder, logs them to its MLflow run, and shows them as a matplotlib plot, so the
executed notebook holds the curves without TensorBoard. ``nbtools tensorboard`` opens the event
files of one run or of all runs.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from nbtools.ml.neural import TorchMLPClassifier, TorchMLPRegressor, require_torch

if TYPE_CHECKING:
    from matplotlib.figure import Figure

__all__ = ["EVENTS_FOLDER", "TAGS", "plot_curves", "trained_network", "write_event_files"]

#: The folder, in the train stage's outputs and its MLflow run's artifacts, of the event files.
EVENTS_FOLDER = "tensorboard"

#: The TensorBoard tag of each history entry (``{metric}`` is ``accuracy`` or ``r2``).
TAGS = {
    "train_loss": "loss/train",
    "validation_loss": "loss/validation",
    "validation_{metric}": "validation/{metric}",
}


def trained_network(pipeline: Any) -> TorchMLPClassifier | TorchMLPRegressor | None:
    """The fitted network of a model pipeline's ``model`` step; None for any other family."""
    steps = getattr(pipeline, "named_steps", {})
    model = steps.get("model", pipeline)
    if isinstance(model, TorchMLPClassifier | TorchMLPRegressor) and hasattr(model, "history_"):
        return model
    return None


def _series(network: TorchMLPClassifier | TorchMLPRegressor) -> dict[str, list[tuple[int, float]]]:
    """Each tag's (epoch, value) points."""
    metric = network.metric_name
    series: dict[str, list[tuple[int, float]]] = {}
    for entry in network.history_:
        for key, tag in TAGS.items():
            name = key.format(metric=metric)
            if name in entry:
                series.setdefault(tag.format(metric=metric), []).append(
                    (int(entry["epoch"]), float(entry[name]))
                )
    return series


def write_event_files(network: TorchMLPClassifier | TorchMLPRegressor, folder: Path) -> Path:
    """Write the network's curves as TensorBoard event files into ``folder``; return it.

    One scalar per tag (:data:`TAGS`) and epoch, and the kept epoch and the device as text.
    """
    require_torch()
    from torch.utils.tensorboard import SummaryWriter

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    writer = SummaryWriter(log_dir=str(folder))
    try:
        for tag, points in _series(network).items():
            for epoch, value in points:
                writer.add_scalar(tag, value, global_step=epoch)
        writer.add_text(
            "training",
            f"weights of epoch {network.best_epoch_} of {len(network.history_)} kept; trained "
            f"on {network.device_}",
        )
    finally:
        writer.close()
    return folder


def plot_curves(network: TorchMLPClassifier | TorchMLPRegressor) -> Figure:
    """Plot the losses and the validation metric per epoch, marking the epoch kept.

    "Held-out rows" are those the network holds out for early stopping (``validation_fraction``
    of the rows it is fitted on), not the split stage's validation rows.
    """
    import matplotlib.pyplot as plt

    series = _series(network)
    metric_tags = [tag for tag in series if not tag.startswith("loss/")]
    figure, axes = plt.subplots(1, 1 + len(metric_tags), figsize=(5 + 4 * len(metric_tags), 3.5))
    axes = [axes] if not metric_tags else list(axes)
    for tag, label in (("loss/train", "training rows"), ("loss/validation", "held-out rows")):
        if tag in series:
            epochs, values = zip(*series[tag], strict=True)
            axes[0].plot(epochs, values, label=label)
    axes[0].set(title="loss", xlabel="epoch")
    for axis, tag in zip(axes[1:], metric_tags, strict=True):
        epochs, values = zip(*series[tag], strict=True)
        axis.plot(epochs, values)
        axis.set(title=f"{tag.removeprefix('validation/')} on the held-out rows", xlabel="epoch")
    for axis in axes:
        axis.axvline(network.best_epoch_, color="grey", linestyle=":", label="epoch kept")
    axes[0].legend()
    figure.tight_layout()
    plt.close(figure)
    return figure
