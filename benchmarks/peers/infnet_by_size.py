"""Where on the Inf-Net split one tool beats the other: the test slices grouped by the
reference lesion area.

    python -m benchmarks.peers.infnet_by_size --out OUT [--seed 0] [--groups 4]
    python -m benchmarks.peers.infnet_by_size --out OUT --against OUT2

Reads a finished ``python -m benchmarks.peers.infnet`` output folder (``OUT/raw/labelsTs``
and each tool's ``OUT/predictions/TOOL-seedS`` masks; no training, no prediction), sorts
the test slices by the area of their reference lesion (both classes together), splits them
into ``--groups`` equally large groups and prints, per group and tool, the mean union Dice,
sensitivity, precision and predicted / reference area, and autojoint - nnU-Net union Dice
with a paired bootstrap interval over the group's slices. Why: a single mean hides whether
a gap comes from small lesions (missed or over-called) or from large ones (under-filled),
which points at different causes (resolution against context). The last row takes every
lesion slice together.

With ``--against OUT2`` (another output folder of the same split, e.g. autojoint trained
with a hand-edited plan through ``--only autojoint``) the two folders' autojoint
predictions are compared instead, labelled by folder name: how an autojoint change moves
each group, paired on the same slices.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from autojoint.evaluation.metrics import confusion_counts
from benchmarks.peers.infnet import NAMES, TOOLS, prediction_dir
from benchmarks.peers.tables import markdown_table
from benchmarks.stats import paired_bootstrap_ci


@dataclass(frozen=True)
class SliceCounts:
    """Union-lesion pixel counts of one slice: what every column below is computed from."""

    true_positive: int
    predicted: int
    reference: int

    @property
    def dice(self) -> float:
        return 2.0 * self.true_positive / (self.predicted + self.reference)

    @property
    def sensitivity(self) -> float:
        return self.true_positive / self.reference

    @property
    def precision(self) -> float:
        """0 for an empty prediction of a lesion slice (nothing it called was right)."""
        return self.true_positive / self.predicted if self.predicted else 0.0

    @property
    def area_ratio(self) -> float:
        return self.predicted / self.reference


def _mask(path: Path) -> np.ndarray:
    if not path.is_file():
        raise SystemExit(f"{path} is missing: run python -m benchmarks.peers.infnet to the end")
    return sitk.GetArrayFromImage(sitk.ReadImage(str(path))) > 0


def slice_counts(prediction: np.ndarray, reference: np.ndarray, name: str) -> SliceCounts:
    """Counts of the union lesion (any label > 0) of one slice."""
    try:
        tp, fp, fn, _ = confusion_counts(prediction, reference)
    except ValueError as err:  # shapes differ
        raise SystemExit(f"{name}: {err}; predict on the reference grid") from err
    return SliceCounts(tp, tp + fp, tp + fn)


def _run_folders(out: Path, seed: int, against: Path | None) -> dict[str, Path]:
    """Label -> prediction folder: each tool's of ``out``, or with ``against`` the autojoint
    predictions of both folders (both must exist), labelled by folder name."""
    if against is None:
        return {NAMES[t]: prediction_dir(out, t, seed) for t in TOOLS}
    if against.name == out.name:
        raise SystemExit(f"--against {against}: give it a folder name other than {out.name}")
    folders = {
        f"autojoint {run.name}": prediction_dir(run, "autojoint", seed) for run in (out, against)
    }
    for folder in folders.values():
        if not folder.is_dir():
            raise SystemExit(f"{folder} is missing: run the infnet harness there to the end")
    return folders


def collect(out: Path, seed: int, against: Path | None = None) -> dict[str, dict[str, SliceCounts]]:
    """Label -> case -> counts, for every tool whose predictions exist (with ``against``:
    the autojoint runs of both folders, scored on ``out``'s references); slices without a
    reference lesion are left out (sensitivity and the area ratio are undefined there)."""
    references = sorted((out / "raw" / "labelsTs").glob("*.nii.gz"))
    if not references:
        raise SystemExit(f"no reference masks under {out / 'raw' / 'labelsTs'}")
    pred_dirs = _run_folders(out, seed, against)
    result: dict[str, dict[str, SliceCounts]] = {
        name: {} for name, folder in pred_dirs.items() if folder.is_dir()
    }
    if not result:
        raise SystemExit(f"no predictions under {out / 'predictions'} for seed {seed}")
    for ref_path in references:  # each reference read once, for every tool
        ref = _mask(ref_path)
        if not ref.any():
            continue
        case = ref_path.name[: -len(".nii.gz")]
        for name, rows in result.items():
            rows[case] = slice_counts(_mask(pred_dirs[name] / ref_path.name), ref, case)
    return result


def group_cases(areas: dict[str, int], groups: int) -> list[list[str]]:
    """Cases sorted by reference area (ties by name) and split into ``groups`` runs whose
    sizes differ by at most one (the larger ones first)."""
    if not 1 <= groups <= len(areas):
        raise SystemExit(f"--groups must be between 1 and the {len(areas)} lesion slices")
    ordered = sorted(areas, key=lambda c: (areas[c], c))
    return [list(part) for part in np.array_split(np.array(ordered, dtype=object), groups)]


def render(counts: dict[str, dict[str, SliceCounts]], groups: int) -> str:
    """One row per area group and one of all slices: each run's means and, with two runs,
    the paired difference of union Dice (first run - second)."""
    first = next(iter(counts.values()))
    parts = group_cases({c: s.reference for c, s in first.items()}, groups)
    columns = ["slices", "reference area (px)"]
    for tool in counts:
        columns += [f"{tool} Dice", f"{tool} sens.", f"{tool} prec.", f"{tool} pred/ref"]
    pair = list(counts) if len(counts) == 2 else []
    if pair:
        columns.append(f"Dice {pair[0]} - {pair[1]} [95 % CI], {pair[0]} higher")
    rows: dict[str, Sequence[str]] = {}
    everything = [case for part in parts for case in part]  # the groups are in area order
    for i, cases in enumerate([*parts, everything]):
        lo, hi = first[cases[0]].reference, first[cases[-1]].reference
        cells = [str(len(cases)), f"{lo}-{hi}"]
        for rows_of_tool in counts.values():
            s = [rows_of_tool[c] for c in cases]
            cells += [
                f"{np.mean([x.dice for x in s]):.3f}",
                f"{np.mean([x.sensitivity for x in s]):.3f}",
                f"{np.mean([x.precision for x in s]):.3f}",
                f"{np.mean([x.area_ratio for x in s]):.2f}",
            ]
        if pair:
            a = [counts[pair[0]][c].dice for c in cases]
            b = [counts[pair[1]][c].dice for c in cases]
            mean, low, high = paired_bootstrap_ci(a, b)
            wins = sum(x > y for x, y in zip(a, b, strict=True))
            cells.append(f"{mean:+.3f} [{low:+.3f}, {high:+.3f}], {wins} of {len(cases)}")
        rows[f"group {i + 1}" if i < len(parts) else "all lesion slices"] = cells
    head = (
        "Test slices grouped by reference lesion area (union of both classes, pixels of "
        "1 mm); means over each group's slices; sens. = TP / reference, prec. = TP / "
        "predicted, pred/ref = predicted / reference area.\n\n"
    )
    return head + markdown_table(columns, rows)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, required=True, help="the infnet harness's OUT")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--groups", type=int, default=4)
    parser.add_argument(
        "--against",
        type=Path,
        default=None,
        help="another OUT of the same split: compare the two folders' autojoint runs instead",
    )
    args = parser.parse_args(argv)
    against = args.against.resolve() if args.against else None
    print(render(collect(args.out.resolve(), args.seed, against), args.groups))


if __name__ == "__main__":
    main()
