"""Per-epoch bookkeeping: the best-checkpoint criterion, the log line and ``progress.png``."""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

from autojoint.reporting.figures import new_figure, save_png

EMA_MOMENTUM = 0.9  # weight of the history; 0.1 goes to the new epoch (as nnU-Net)


def epoch_score(record: dict) -> float | None:
    """The validation score of one epoch: the mean of the available validation lesion Dice
    (``val_view_dice``) and diagnosis accuracy (``val_accuracy``); None without either."""
    values = [
        float(record[k])
        for k in ("val_view_dice", "val_accuracy")
        if isinstance(record.get(k), int | float) and math.isfinite(record[k])
    ]
    return sum(values) / len(values) if values else None


def update_ema(previous: float | None, score: float | None) -> float | None:
    """``ema_e = 0.9 * ema_{e-1} + 0.1 * score_e``, starting at ``ema_1 = score_1``; an
    epoch without a score keeps the previous value. Smoothing keeps one lucky epoch on a
    small validation set from choosing the best checkpoint."""
    if score is None:
        return previous
    if previous is None:
        return score
    return EMA_MOMENTUM * previous + (1.0 - EMA_MOMENTUM) * score


def format_epoch(record: dict, epochs: int) -> str:
    """One log line: ``epoch 3/100 [joint]: loss_total=0.81, ..., lr=0.0098, seconds=41.2``."""
    fields = ", ".join(
        f"{k}={v:.4g}"
        for k, v in record.items()
        if k not in ("epoch", "stage") and isinstance(v, int | float)
    )
    return f"epoch {record['epoch']}/{epochs} [{record.get('stage', 'joint')}]: {fields}"


def _series(records: Sequence[dict], key: str) -> tuple[list[int], list[float]]:
    xs, ys = [], []
    for r in records:
        v = r.get(key)
        if isinstance(v, int | float) and math.isfinite(v):
            xs.append(int(r["epoch"]))
            ys.append(float(v))
    return xs, ys


def plot_progress(records: Sequence[dict], path: Path) -> Path:
    """``progress.png``: losses, validation Dice / accuracy (and their EMA), learning rate
    and seconds per epoch, one panel each, against the epoch."""
    fig = new_figure(8.0, 9.0)
    panels = [
        ("loss", ["loss_total", "val_loss_total"]),
        ("validation", ["val_view_dice", "val_accuracy", "val_ema"]),
        ("learning rate", ["lr"]),
        ("seconds per epoch", ["seconds"]),
    ]
    axes = fig.subplots(len(panels), 1, sharex=True)
    for ax, (title, keys) in zip(axes, panels, strict=True):
        for key in keys:
            xs, ys = _series(records, key)
            if xs:
                ax.plot(xs, ys, marker=".", label=key)
        ax.set_ylabel(title)
        ax.grid(alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize="small", loc="best")
    axes[-1].set_xlabel("epoch")
    fig.tight_layout()
    return save_png(fig, path)
