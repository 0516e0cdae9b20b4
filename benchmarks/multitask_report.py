"""Tables, intervals and figures of ``benchmarks/multitask_gain.py`` from its cached runs.

Separate from the training so that the report can be (re)built, and tested, from the
``runs/RUN/result.json`` records alone: nothing here imports torch or trains.

A record (one trained run, keyed by variant, fold and seed)::

    {"record_version": 2, "variant": str, "fold": str, "seed": int,
     "setup": {...},            # budget, augmentation, data, overrides: must match to reuse
     "metrics": {key: float or null},  # keys of ALL_METRICS and, in newer records,
                                       #   dice_<label> per label (NaN stored as null)
     "curves": {key: [one value per epoch or null]},  # keys of CURVE_KEYS (training_log.json)
     "deletion": {"fractions": [...], "evidence": [...], "random": [...]} or null,
     "seconds": float}          # training epochs (summed over resumed processes) + scoring
                                #   (the final validation inside training is not counted)

Differences between variants are paired by (fold, seed): both runs saw the same training
cases, validation cases and initial random streams, so the difference of a pair removes
what the split and the seed contribute alike.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib import colormaps
from matplotlib.ticker import MaxNLocator

from autojoint.io.files import atomic_write, read_json, write_json
from autojoint.reporting.figures import new_figure, save_png
from benchmarks.stats import (
    BOOTSTRAP_RESAMPLES,
    BOOTSTRAP_SEED,
    Interval,
    last_quarter_change,
    paired_bootstrap_interval,
)

RECORD_VERSION = 2
RESULT_FILE = "result.json"
REFERENCE = "joint (default)"


@dataclass(frozen=True)
class Metric:
    """One column: its key in a record and its table label."""

    key: str
    label: str


# The main table (and its paired differences to the joint default).
METRICS = (
    Metric("dice", "lesion Dice"),
    Metric("precision", "lesion precision"),
    Metric("recall", "lesion recall"),
    Metric("volume_error_ml", "lesion volume abs. error (ml)"),
    Metric("nsd", "lesion NSD"),
    Metric("accuracy", "accuracy"),
    Metric("macro_auc", "macro-AUC"),
    Metric("cam_peak_in_lesion", "CAM peak in lesion"),
    Metric("deletion_gain", "deletion gain"),
)
# What the task-aware loss optimises for the variants trained with it: kept apart, for the
# record only. The label's "eq. 10" is that loss's equation number in the DeepSC-COVID paper.
OPTIMISED_METRICS = (
    Metric("cam_contrast", "CAM contrast (eq. 10 target)"),
    Metric("gradcam_contrast", "Grad-CAM contrast"),
)
ALL_METRICS = METRICS + OPTIMISED_METRICS
LABEL_DICE_PREFIX = "dice_"

# The single-task comparisons the benchmark exists for: (joint, baseline, metric key).
HEADLINES = (
    (REFERENCE, "segmentation only", "dice"),
    (REFERENCE, "classification only", "accuracy"),
    (REFERENCE, "classification only, image input", "accuracy"),
    (REFERENCE, "classification only", "macro_auc"),
    (REFERENCE, "classification only, image input", "macro_auc"),
)

# Per-epoch values copied from training_log.json (the terms are unweighted: a term whose
# weight is 0 is still computed, so e.g. classification-only's L_seg shows its untrained map).
CURVE_KEYS = (
    "loss_total",
    "loss_seg",
    "loss_cls",
    "loss_task_aware",
    "val_loss_seg",
    "val_loss_cls",
    "val_view_dice",
    "val_accuracy",
)
CURVE_PANELS = (
    ("loss_seg", "training L_seg (unweighted)"),
    ("loss_cls", "training L_cls (unweighted)"),
    ("val_loss_cls", "validation-patch L_cls"),
    ("val_view_dice", "validation view lesion Dice"),
    ("val_accuracy", "validation view accuracy"),
)


def run_name(variant: str, fold: str, seed: int) -> str:
    """The run folder of one (variant, fold, seed): ``runs/<name>/``."""
    safe = variant.replace(" ", "_").replace(",", "").replace("+", "plus").replace("=", "")
    return f"{safe}-fold{fold}-seed{seed}"


class SetupMismatchError(ValueError):
    """A cached record was made with another setup (budget, augmentation, data, variant)."""


def read_record(path: Path, setup: Mapping[str, Any]) -> dict:
    """A cached record, refused unless it has this version and exactly ``setup``.

    Raises:
        SetupMismatchError: another record version or setup; the message names the file
            and the fix.
    """
    record = read_json(path)
    version = record.get("record_version")
    if version != RECORD_VERSION:
        raise SetupMismatchError(
            f"{path} is a record of version {version}, not {RECORD_VERSION} (made by an "
            "older benchmark); use another --out or delete that run folder."
        )
    stored = record.get("setup")
    if stored != dict(setup):
        raise SetupMismatchError(
            f"{path} holds a run with {stored}, not {dict(setup)}; use another --out or "
            "delete that run folder."
        )
    return record


def record_paths(out: Path, name: str, store: Path | None = None) -> list[Path]:
    """Where the record of run ``name`` may be, first found first: the ``store`` folder
    (``store/NAME.json``, small files meant to be committed, so that finished runs outlive
    the machine their ``--out`` was on), then the run folder ``out/runs/NAME/result.json``."""
    run_file = out / "runs" / name / RESULT_FILE
    return [run_file] if store is None else [store / f"{name}.json", run_file]


def find_record(out: Path, name: str, store: Path | None = None) -> Path | None:
    """The first existing record of run ``name`` (``record_paths``), or None."""
    return next((p for p in record_paths(out, name, store) if p.is_file()), None)


def read_records(
    out: Path,
    variants: Sequence[str],
    folds: Sequence[str],
    seeds: Sequence[int],
    setup_of: Mapping[str, Mapping[str, Any]],
    store: Path | None = None,
) -> tuple[list[dict], list[str]]:
    """The cached records of every (variant, fold, seed) that has one (in ``store`` or
    under ``out``), and the run names that have none yet. ``setup_of[variant]`` is the
    setup each record must carry."""
    records, missing = [], []
    for variant in variants:
        for fold in folds:
            for seed in seeds:
                name = run_name(variant, fold, seed)
                path = find_record(out, name, store)
                if path is not None:
                    records.append(read_record(path, setup_of[variant]))
                else:
                    missing.append(name)
    return records, missing


def _value(record: Mapping, key: str) -> float:
    v = record["metrics"].get(key)
    return math.nan if v is None else float(v)


def _by_variant(records: Sequence[Mapping]) -> dict[str, list[Mapping]]:
    groups: dict[str, list[Mapping]] = {}
    for r in records:
        groups.setdefault(r["variant"], []).append(r)
    return groups


def label_dice_metrics(records: Sequence[Mapping]) -> tuple[Metric, ...]:
    """One column per ``dice_<label>`` key found in any record, in order of appearance (the
    labels are the dataset's; records made before these keys existed have none)."""
    keys: dict[str, None] = {}
    for r in records:
        keys.update((k, None) for k in r["metrics"] if k.startswith(LABEL_DICE_PREFIX))
    return tuple(Metric(k, f"Dice {k[len(LABEL_DICE_PREFIX) :]}") for k in keys)


def summarise(records: Sequence[Mapping]) -> dict[str, dict[str, dict[str, float | int]]]:
    """Per variant and metric (``ALL_METRICS`` and the per-label Dice): mean, sd (ddof 1;
    NaN with one run) and n over the runs with a defined value. Variants keep the order of
    their first record."""
    out: dict[str, dict[str, dict[str, float | int]]] = {}
    metrics = ALL_METRICS + label_dice_metrics(records)
    for variant, runs in _by_variant(records).items():
        out[variant] = {}
        for m in metrics:
            v = np.array([_value(r, m.key) for r in runs])
            v = v[np.isfinite(v)]
            out[variant][m.key] = {
                "mean": float(v.mean()) if len(v) else math.nan,
                "sd": float(v.std(ddof=1)) if len(v) > 1 else math.nan,
                "n": len(v),
            }
    return out


def paired_difference(
    records: Sequence[Mapping], variant: str, reference: str, key: str
) -> Interval:
    """``variant - reference`` of metric ``key``, paired by (fold, seed)."""
    ref = {(r["fold"], r["seed"]): _value(r, key) for r in records if r["variant"] == reference}
    pairs = [
        (_value(r, key), ref[(r["fold"], r["seed"])])
        for r in records
        if r["variant"] == variant and (r["fold"], r["seed"]) in ref
    ]
    return paired_bootstrap_interval([p[0] for p in pairs], [p[1] for p in pairs])


def differences(
    records: Sequence[Mapping], reference: str = REFERENCE
) -> dict[str, dict[str, Interval]]:
    """Every other variant minus ``reference``, per main metric and per-label Dice (paired
    by fold and seed)."""
    variants = [v for v in _by_variant(records) if v != reference]
    metrics = METRICS + label_dice_metrics(records)
    return {
        v: {m.key: paired_difference(records, v, reference, m.key) for m in metrics}
        for v in variants
    }


def headlines(records: Sequence[Mapping]) -> list[tuple[str, str, str, Interval]]:
    """The joint-minus-single-task differences of ``HEADLINES`` whose variants were run."""
    present = {r["variant"] for r in records}
    return [
        (joint, single, key, paired_difference(records, joint, single, key))
        for joint, single, key in HEADLINES
        if joint in present and single in present
    ]


def summed_confusions(records: Sequence[Mapping]) -> dict[str, dict[str, Any]]:
    """Per variant, the diagnosis confusion matrices summed over the runs that recorded one
    (rows reference, columns predicted): ``{"classes", "matrix", "runs"}``. Runs whose class
    order differs from the variant's first are refused rather than summed wrongly.

    Raises:
        ValueError: two runs of one variant list their classes in different orders.
    """
    out: dict[str, dict[str, Any]] = {}
    for variant, runs in _by_variant(records).items():
        for r in runs:
            c = r.get("confusion")
            if not c:
                continue
            entry = out.setdefault(
                variant, {"classes": list(c["classes"]), "matrix": None, "runs": 0}
            )
            if list(c["classes"]) != entry["classes"]:
                raise ValueError(
                    f"{variant}: runs list the classes as {entry['classes']} and "
                    f"{list(c['classes'])}; their confusions cannot be summed"
                )
            m = np.asarray(c["matrix"], dtype=np.int64)
            entry["matrix"] = m if entry["matrix"] is None else entry["matrix"] + m
            entry["runs"] += 1
    return {v: {**e, "matrix": e["matrix"].tolist()} for v, e in out.items()}


def mean_curves(records: Sequence[Mapping]) -> dict[str, dict[str, list[float]]]:
    """Per variant and curve key, the mean over its runs at every epoch (NaN where no run
    has a value; runs of different lengths are averaged where they exist)."""
    out: dict[str, dict[str, list[float]]] = {}
    for variant, runs in _by_variant(records).items():
        out[variant] = {}
        for key in CURVE_KEYS:
            series = [r.get("curves", {}).get(key) or [] for r in runs]
            length = max((len(s) for s in series), default=0)
            table = np.full((len(series), length), np.nan)
            for i, s in enumerate(series):
                table[i, : len(s)] = [math.nan if v is None else float(v) for v in s]
            counts = np.isfinite(table).sum(axis=0)
            sums = np.where(np.isfinite(table), table, 0.0).sum(axis=0)
            out[variant][key] = [
                float(t / c) if c else math.nan for t, c in zip(sums, counts, strict=True)
            ]
    return out


def curve_ends(records: Sequence[Mapping]) -> dict[str, dict[str, dict[str, float]]]:
    """Per variant and ``CURVE_PANELS`` key, mean and sample sd over runs of each run's
    :func:`last_quarter_change` (how much the curve still moved at the end of training)."""
    out: dict[str, dict[str, dict[str, float]]] = {}
    for variant, runs in _by_variant(records).items():
        out[variant] = {}
        for key, _ in CURVE_PANELS:
            changes = [last_quarter_change(r.get("curves", {}).get(key) or []) for r in runs]
            finite = [c for c in changes if math.isfinite(c)]
            out[variant][key] = {
                "mean": float(np.mean(finite)) if finite else math.nan,
                "sd": float(np.std(finite, ddof=1)) if len(finite) > 1 else math.nan,
            }
    return out


def _cell(stats: Mapping[str, float | int]) -> str:
    mean, sd = float(stats["mean"]), float(stats["sd"])
    if not math.isfinite(mean):
        return "–"
    return f"{mean:.3f} ± {sd:.3f}" if math.isfinite(sd) else f"{mean:.3f}"


def _interval_cell(iv: Interval) -> str:
    if not math.isfinite(iv.mean):
        return "–"
    return f"{iv.mean:+.3f} [{iv.low:+.3f}, {iv.high:+.3f}]"


def _table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return lines


def markdown(records: Sequence[Mapping], description: str) -> str:
    """The report: headline differences, the main table (mean ± sd over runs), the paired
    differences to the joint default, and the optimised evidence contrast apart."""
    summary = summarise(records)
    runs = {v: len(rs) for v, rs in _by_variant(records).items()}
    lines = [description, ""]
    heads = headlines(records)
    if heads:
        lines += ["Joint minus single-task, mean [95 % paired bootstrap interval]:", ""]
        rows = [
            [f"{joint} − {single}", _label(key), _interval_cell(iv), str(iv.num_pairs)]
            for joint, single, key, iv in heads
        ]
        lines += [*_table(("difference", "metric", "mean [95 % CI]", "pairs"), rows), ""]
    lines += ["Mean ± sd over runs (folds x seeds):", ""]
    rows = [[v, str(runs[v])] + [_cell(summary[v][m.key]) for m in METRICS] for v in summary]
    lines += [*_table(("variant", "runs", *(m.label for m in METRICS)), rows), ""]
    labels = label_dice_metrics(records)
    if labels:
        lines += [
            "Dice per label, mean ± sd over the runs that recorded it (each run's Dice is the "
            "mean over the validation cases where that label is in the reference or the "
            "prediction):",
            "",
        ]
        rows = [
            [v, str(max(int(summary[v][m.key]["n"]) for m in labels))]
            + [_cell(summary[v][m.key]) for m in labels]
            for v in summary
        ]
        lines += [*_table(("variant", "runs", *(m.label for m in labels)), rows), ""]
    diffs = differences(records)
    if diffs and labels:
        lines += [f"Per-label Dice minus {REFERENCE!r}, paired by (fold, seed):", ""]
        rows = [[v] + [_interval_cell(d[m.key]) for m in labels] for v, d in diffs.items()]
        lines += [*_table(("variant", *(m.label for m in labels)), rows), ""]
    if diffs:
        lines += [
            f"Each variant minus {REFERENCE!r}, paired by (fold, seed): mean [95 % paired "
            "bootstrap interval]:",
            "",
        ]
        rows = [[v] + [_interval_cell(d[m.key]) for m in METRICS] for v, d in diffs.items()]
        lines += [*_table(("variant", *(m.label for m in METRICS)), rows), ""]
    ends = curve_ends(records)
    if ends:
        lines += [
            "Learning curves at the end: mean of the last quarter of epochs minus the quarter "
            "before, mean ± sd over runs (near 0: flattened; '–': the variant has no such "
            "curve or fewer than 8 epochs):",
            "",
        ]
        rows = [[v] + [_cell(ends[v][key]) for key, _ in CURVE_PANELS] for v in ends]
        lines += [*_table(("variant", *(label for _, label in CURVE_PANELS)), rows), ""]
    confusions = summed_confusions(records)
    if confusions:
        classes = next(iter(confusions.values()))["classes"]
        lines += [
            "Diagnosis confusion summed over the runs that recorded it (rows reference, "
            f"columns predicted, order {', '.join(classes)}):",
            "",
        ]
        lines += [
            f"- {v} ({c['runs']} runs): {c['matrix']}"
            + ("" if c["classes"] == classes else f" (order {', '.join(c['classes'])})")
            for v, c in confusions.items()
        ]
        lines.append("")
    lines += [
        "The quantity eq. 10 optimises (the task-aware loss pulls the CAM towards the lesion "
        "maps): not a fair evidence comparison between variants trained with and without "
        "it; mean ± sd over runs:",
        "",
    ]
    rows = [[v] + [_cell(summary[v][m.key]) for m in OPTIMISED_METRICS] for v in summary]
    lines += _table(("variant", *(m.label for m in OPTIMISED_METRICS)), rows)
    return "\n".join(lines) + "\n"


def _label(key: str) -> str:
    return next(m.label for m in ALL_METRICS if m.key == key)


def report_json(records: Sequence[Mapping], setup: Mapping[str, Any]) -> dict:
    """Everything the markdown shows, machine-readable, plus every run's metrics."""
    return {
        "record_version": RECORD_VERSION,
        "setup": dict(setup),
        "reference": REFERENCE,
        "bootstrap": {
            "confidence": 0.95,
            "num_resamples": BOOTSTRAP_RESAMPLES,
            "seed": BOOTSTRAP_SEED,
            "paired_by": ["fold", "seed"],
        },
        "metrics": {m.key: m.label for m in ALL_METRICS + label_dice_metrics(records)},
        "summary": summarise(records),
        "differences": {
            v: {k: iv.as_dict() for k, iv in d.items()} for v, d in differences(records).items()
        },
        "confusion": summed_confusions(records),
        "headlines": [
            {"joint": j, "single_task": s, "metric": k, **iv.as_dict()}
            for j, s, k, iv in headlines(records)
        ],
        "runs": [
            {k: r[k] for k in ("variant", "fold", "seed", "metrics", "seconds") if k in r}
            for r in records
        ],
    }


def plot_curves(records: Sequence[Mapping], path: Path) -> Path:
    """Learning curves: per variant, the mean over its runs of each ``CURVE_PANELS`` key
    against the epoch, so a reader can see which baselines have plateaued."""
    curves = mean_curves(records)
    legend_rows = math.ceil(len(curves) / 4)
    height = 3.6 + 0.25 * legend_rows
    fig = new_figure(4.0 * len(CURVE_PANELS), height)
    axes = fig.subplots(1, len(CURVE_PANELS))
    palette = colormaps["tab20"]  # 20 distinct colours; the default cycle repeats after 10
    for ax, (key, title) in zip(axes, CURVE_PANELS, strict=True):
        for i, (variant, series) in enumerate(curves.items()):
            y = np.array(series[key])
            if np.isfinite(y).any():
                ax.plot(
                    np.arange(1, len(y) + 1),
                    y,
                    marker=".",
                    color=palette(i % 20),
                    linewidth=2.0 if variant == REFERENCE else 1.0,
                    label=variant,
                )
        ax.set_title(title, fontsize=9)
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
    handles, labels = axes[0].get_legend_handles_labels()
    if handles:
        fig.legend(handles, labels, loc="lower center", ncol=4, fontsize="small")
    fig.tight_layout(rect=(0, (0.3 + 0.25 * legend_rows) / height, 1, 1))
    return save_png(fig, path)


def plot_bars(records: Sequence[Mapping], path: Path) -> Path:
    """Mean (bar) and every run (dots) of each main metric per variant."""
    groups = _by_variant(records)
    names = list(groups)
    fig = new_figure(2.2 * len(METRICS), 1.2 + 0.4 * len(names))
    for i, m in enumerate(METRICS):
        ax = fig.add_subplot(1, len(METRICS), i + 1)
        values = [np.array([_value(r, m.key) for r in groups[n]]) for n in names]
        means = [float(np.nanmean(v)) if np.isfinite(v).any() else 0.0 for v in values]
        ax.barh(names, means, color="0.75")
        for y, v in enumerate(values):
            ax.plot(v, [y] * len(v), "k.", markersize=3)
        ax.set_title(m.label, fontsize=8)
        ax.axvline(0.0, color="k", linewidth=0.6)
        ax.invert_yaxis()  # the variants top to bottom, as in the table
        if i:
            ax.set_yticklabels([])
    fig.tight_layout()
    return save_png(fig, path)


def write_report(
    out: Path, records: Sequence[Mapping], setup: Mapping[str, Any], description: str
) -> str:
    """``multitask_gain.md`` and ``multitask_gain.json`` (atomic writes), the bar and curve
    figures; returns the markdown."""
    text = markdown(records, description)
    atomic_write(out / "multitask_gain.md", lambda fh: fh.write(text))
    write_json(report_json(records, setup), out / "multitask_gain.json")
    if records:
        plot_bars(records, out / "multitask_gain.png")
        plot_curves(records, out / "multitask_gain_curves.png")
    return text
