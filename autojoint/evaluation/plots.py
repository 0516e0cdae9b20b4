"""Evaluation figures written beside ``summary.json``, drawn from the summary dict alone.

Each plot is skipped (with a log line) when its data is absent — no diagnoses, no
probabilities, no volumes, fewer than two cases — rather than drawing an empty frame.
Figures go through :mod:`autojoint.reporting.figures` (Agg canvas, atomic PNG writes).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Mapping
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

from autojoint.evaluation.metrics import LESION_KEY
from autojoint.reporting.figures import new_figure, save_png

logger = logging.getLogger(__name__)

ROC_PNG = "roc_curves.png"
CONFUSION_PNG = "confusion_matrix.png"
BLAND_ALTMAN_PNG = "bland_altman_lesion_volume.png"
BOXPLOT_PNG = "dice_nsd_boxplot.png"
RELIABILITY_PNG = "reliability_diagram.png"


def roc_figure(summary: Mapping) -> Figure | None:
    """One-vs-rest ROC curve per class with its AUC; None without probabilities."""
    diagnosis = summary.get("diagnosis") or {}
    roc = diagnosis.get("roc")
    if not roc:
        return None
    fig = new_figure(5.0, 5.0)
    ax = fig.add_subplot(1, 1, 1)
    for cls, curve in roc.items():
        auc = diagnosis["auc"][cls]
        ax.plot(curve["fpr"], curve["tpr"], drawstyle="default", label=f"{cls} (AUC {auc:.3f})")
    ax.plot([0, 1], [0, 1], color="0.6", linestyle=":", linewidth=1)
    ax.set(xlim=(0, 1), ylim=(0, 1.02), xlabel="1 - specificity", ylabel="sensitivity")
    ax.set_title(f"ROC one-vs-rest, macro-AUC {diagnosis['macro_auc']:.3f}")
    ax.legend(loc="lower right", fontsize="small")
    fig.tight_layout()
    return fig


def confusion_figure(summary: Mapping) -> Figure | None:
    """Counts of reference (rows) vs predicted (columns) diagnoses; None without diagnoses."""
    diagnosis = summary.get("diagnosis")
    if not diagnosis:
        return None
    cm = np.asarray(diagnosis["confusion_matrix"])
    classes = diagnosis["classes"]
    size = 2.0 + 0.8 * len(classes)
    fig = new_figure(size + 1.0, size)
    ax = fig.add_subplot(1, 1, 1)
    image = ax.imshow(cm, cmap="Blues", vmin=0)
    fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04)
    threshold = cm.max() / 2.0 if cm.size else 0.0
    for (i, j), count in np.ndenumerate(cm):
        color = "white" if count > threshold else "black"
        ax.text(j, i, str(count), ha="center", va="center", color=color)
    ticks = np.arange(len(classes))
    ax.set_xticks(ticks, labels=classes, rotation=45, ha="right")
    ax.set_yticks(ticks, labels=classes)
    ax.set(xlabel="predicted", ylabel="reference")
    ax.set_title(f"accuracy {diagnosis['accuracy']:.3f} ({diagnosis['num_cases']} cases)")
    fig.tight_layout()
    return fig


def bland_altman_figure(summary: Mapping, name: str = LESION_KEY) -> Figure | None:
    """Predicted minus reference volume against their mean, with bias and limits."""
    stats = (summary.get("volume_agreement") or {}).get(name)
    if not stats:
        return None
    pairs = [
        (e["metrics"][name]["volume_pred_ml"], e["metrics"][name]["volume_ref_ml"])
        for e in summary["metric_per_case"]
        if "volume_pred_ml" in e.get("metrics", {}).get(name, {})
    ]
    pred, ref = np.array(pairs, dtype=np.float64).T
    fig = new_figure(6.0, 4.0)
    ax = fig.add_subplot(1, 1, 1)
    ax.scatter((pred + ref) / 2.0, pred - ref, s=14, alpha=0.8)
    for key, style, text in (
        ("bias_ml", "-", "bias"),
        ("loa_high_ml", "--", "+1.96 SD"),
        ("loa_low_ml", "--", "-1.96 SD"),
    ):
        ax.axhline(stats[key], color="0.3", linestyle=style, linewidth=1)
        ax.annotate(
            f"{text} {stats[key]:.2f}",
            (1.0, stats[key]),
            xycoords=("axes fraction", "data"),
            ha="right",
            va="bottom",
            fontsize="small",
        )
    ax.set(xlabel=f"mean {name} volume (ml)", ylabel="predicted - reference (ml)")
    ax.set_title(f"Bland–Altman, {name} volume ({stats['num_cases']} cases)")
    fig.tight_layout()
    return fig


def boxplot_figure(summary: Mapping) -> Figure | None:
    """Per-case Dice and NSD per label (undefined cases left out); None if nothing defined."""
    labels = [*summary.get("labels", {}), LESION_KEY]
    panels = []
    for metric in ("dice", "nsd"):
        data, names = [], []
        for name in labels:
            values = [
                float(v)
                for e in summary["metric_per_case"]
                if (v := e.get("metrics", {}).get(name, {}).get(metric)) is not None
                and math.isfinite(float(v))
            ]
            if values:
                data.append(values)
                names.append(name)
        if data:
            panels.append((metric, data, names))
    if not panels:
        return None
    fig = new_figure(4.0 * len(panels), 4.0)
    for k, (metric, data, names) in enumerate(panels):
        ax = fig.add_subplot(1, len(panels), k + 1)
        ax.boxplot(data, tick_labels=names)
        ax.set_ylim(-0.02, 1.02)
        title = f"NSD at {summary['tolerance_mm']:g} mm" if metric == "nsd" else "Dice"
        ax.set_title(title)
        ax.tick_params(axis="x", labelrotation=30)
    fig.tight_layout()
    return fig


def reliability_figure(summary: Mapping) -> Figure | None:
    """Accuracy against top-label confidence per bin, before and (when calibrated
    probabilities were scored) after calibration, with each curve's ECE; None without
    probabilities."""
    calibration = summary.get("calibration")
    if not calibration:
        return None
    fig = new_figure(5.0, 5.0)
    ax = fig.add_subplot(1, 1, 1)
    ax.plot([0, 1], [0, 1], color="0.6", linestyle=":", linewidth=1, label="perfect")
    for key, marker in (("uncalibrated", "o"), ("calibrated", "s")):
        block = calibration.get(key)
        if not block:
            continue
        bins = [b for b in block["bins"] if b["num_cases"]]
        ax.plot(
            [b["confidence"] for b in bins],
            [b["accuracy"] for b in bins],
            marker=marker,
            label=f"{key} (ECE {block['ece']:.3f}, Brier {block['brier']:.3f})",
        )
    ax.set(xlim=(0, 1), ylim=(0, 1.02), xlabel="confidence (top-label probability)")
    ax.set_ylabel("accuracy")
    ax.set_title(f"reliability, {calibration['num_bins']} bins, {calibration['num_cases']} cases")
    ax.legend(loc="upper left", fontsize="small")
    fig.tight_layout()
    return fig


FIGURES: dict[str, Callable[[Mapping], Figure | None]] = {
    ROC_PNG: roc_figure,
    CONFUSION_PNG: confusion_figure,
    BLAND_ALTMAN_PNG: bland_altman_figure,
    BOXPLOT_PNG: boxplot_figure,
    RELIABILITY_PNG: reliability_figure,
}


def write_figures(summary: Mapping, out_dir: Path) -> list[str]:
    """Write every figure whose data is present into ``out_dir``; returns the file names."""
    written = []
    for filename, draw in FIGURES.items():
        fig = draw(summary)
        if fig is None:
            logger.info("%s: skipped (no data for it in this summary)", filename)
            continue
        save_png(fig, Path(out_dir) / filename)
        written.append(filename)
    return written
