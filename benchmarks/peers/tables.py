"""Markdown tables and learning-curve figures shared by the peer workloads."""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from autojoint.reporting.figures import new_figure, save_png


def mean_sd(values: Sequence[float | None]) -> str:
    """``0.712 ± 0.013`` over the finite values (``± `` omitted for one value); ``n/a``
    when none is finite (e.g. a metric undefined on every case). The sd is the sample sd
    (n - 1), as in the multitask report: the folds or seeds are a sample of the runs one
    could have made, and with 2-5 of them the population sd understates the spread."""
    finite = [float(v) for v in values if v is not None and math.isfinite(float(v))]
    if not finite:
        return "n/a"
    if len(finite) == 1:
        return f"{finite[0]:.3f}"
    return f"{np.mean(finite):.3f} ± {np.std(finite, ddof=1):.3f}"


def ratio(numerator: float, denominator: float) -> str:
    """``0.52x``: how many times ``denominator``'s figure ``numerator`` is."""
    if not (math.isfinite(numerator) and math.isfinite(denominator)) or denominator <= 0:
        return "n/a"
    return f"{numerator / denominator:.2f}x"


def markdown_table(columns: Sequence[str], rows: dict[str, Sequence[str]]) -> str:
    """A GitHub markdown table: one row per ``rows`` key, cells already formatted.

    Raises:
        ValueError: a row has another number of cells than there are columns.
    """
    for name, cells in rows.items():
        if len(cells) != len(columns):
            raise ValueError(f"row {name!r} has {len(cells)} cells for {len(columns)} columns")
    lines = [
        "| | " + " | ".join(columns) + " |",
        "|---|" + "---|" * len(columns),
    ]
    lines += [f"| {name} | " + " | ".join(cells) + " |" for name, cells in rows.items()]
    return "\n".join(lines) + "\n"


def curves_figure(
    curves: dict, path: Path, *, iterations_per_epoch: int, run_name: str = "seed"
) -> None:
    """One panel per curve name (e.g. ``train loss``), one line per tool and run (seed or
    fold, ``run_name``), x in training iterations so that both tools share the axis."""
    names: list[str] = []
    for per_tool in curves.values():
        for series in per_tool.values():
            names += [n for n in series if n not in names]
    if not names:
        return
    fig = new_figure(5 * len(names), 3.6)
    for i, name in enumerate(names):
        ax = fig.add_subplot(1, len(names), i + 1)
        for seed, per_tool in curves.items():
            for tool, series in per_tool.items():
                if name in series:
                    y = series[name]
                    x = [(k + 1) * iterations_per_epoch for k in range(len(y))]
                    ax.plot(x, y, label=f"{tool} {run_name} {seed}")
        ax.set_xlabel("training iterations")
        ax.set_title(name)
        ax.legend(fontsize=7)
    fig.tight_layout()
    save_png(fig, path)
