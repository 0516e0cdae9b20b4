"""Peer workload 1: real 2D lesions (Inf-Net's COVID-SemiSeg split), autojoint vs nnU-Net.

    python -m benchmarks.peers.infnet --out OUT [--nnunet-python PY] [--epochs 40]
        [--iterations 50] [--seeds 0] [--threads 1] [--only autojoint|nnunet]

The 50 training / 48 test MedSeg slices of ``../shared/data/infnet_semiseg`` (masks
ground-glass / consolidation; no diagnoses, so this is segmentation only) are converted once
(``autojoint_convert_medseg_slices``) and linked into nnU-Net's layout. Each tool plans for
its own 8 GB default (autojoint ``--gpu-memory-gb 8``, nnU-Net's default planner; on this
data both plan batch 2 at about the median slice size), trains on all 50 slices for the
same number of iterations with the same thread count, the two trainings running side by
side, one core each, and predicts the 48 test slices with mirroring and probabilities.

Scores, both tools through the same code: autojoint_evaluate's Dice per class and for the
union (all lesions), NSD at 1 mm (one pixel) counted over boundary pixels and, as the COVID
segmentation benchmarks do, over area-weighted surface elements (``--surfel-nsd``); and
Inf-Net's toolbox convention on the probability maps (``infnet_metrics``) so the published
rows (``published.py``) stand in the same table; autojoint - nnU-Net per slice with a
paired bootstrap interval over (seed, test slice) pairs. Rows are cached per (tool, seed)
under ``OUT/rows``; a killed run resumes.
Writes ``OUT/infnet_table.md``, ``OUT/infnet.json`` and ``OUT/infnet_curves.png``.
``--only`` runs one tool through the same steps (no paired rows): a convergence check of
one tool at a longer budget than the pair can afford.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import numpy as np
import SimpleITK as sitk

from autojoint.evaluation.evaluate import evaluate_folder
from autojoint.io.files import atomic_write, read_json, write_json
from benchmarks.peers.common import (
    Tools,
    cached_row,
    find_nnunet_python,
    run_logged,
    start_logged,
    store_row,
    tool_env,
    wait_all,
)
from benchmarks.peers.infnet_metrics import toolbox_scores
from benchmarks.peers.layout import dataset_name, nnunet_folders, to_nnunet_raw
from benchmarks.peers.published import INFNET_BINARY, INFNET_MULTICLASS, INFNET_SOURCE
from benchmarks.peers.tables import curves_figure, markdown_table, mean_sd
from benchmarks.stats import last_quarter_change, paired_bootstrap_ci

SHARED_SLICES = Path(__file__).resolve().parents[2].parent / "shared/data/infnet_semiseg/Dataset"
DATASET_ID = 501
DATASET_NAME = "InfNet"
GPU_MEMORY_GB = 8.0
CLASSES = {"ground_glass": 1, "consolidation": 2}
COLUMNS = (
    "Dice union",
    "Dice GGO",
    "Dice consolidation",
    "NSD union (1 mm)",
    "surfel NSD union (1 mm)",
    "toolbox Dice union",
    "toolbox Sen. union",
    "toolbox Spec. union",
    "toolbox Dice GGO",
    "toolbox Dice consolidation",
)
PAIRED_COLUMNS = {
    "Dice union": ("lesion", "dice"),
    "Dice GGO": ("ground_glass", "dice"),
    "Dice consolidation": ("consolidation", "dice"),
    "NSD union (1 mm)": ("lesion", "nsd"),
}
"""Columns whose autojoint - nnU-Net difference gets a paired interval over test slices
(column -> evaluator label and metric)."""
TOOLS = ("autojoint", "nnunet")
"""Both tools, in table order; ``--only`` picks one."""
NAMES = {"autojoint": "autojoint", "nnunet": "nnU-Net"}


def prepare(
    out: Path, source: Path, tools: Tools, threads: int, which: tuple[str, ...] = TOOLS
) -> dict[str, float]:
    """Convert once, then link and plan/preprocess each tool of ``which`` once; returns each
    tool's wall seconds for planning + preprocessing (cached per tool in
    ``OUT/prepare.json``, so a one-tool run can later be completed by the other)."""
    done = out / "prepare.json"
    seconds: dict[str, float] = read_json(done) if done.is_file() else {}
    if all(tool in seconds for tool in which):
        return seconds
    raw = out / "raw"
    if not (raw / "dataset.json").is_file():
        from dataset_conversion.convert_medseg import main_slices

        if main_slices(["-i", str(source), "-o", str(raw)]) != 0:
            raise SystemExit(f"converting {source} failed")
    if "nnunet" in which and "nnunet" not in seconds:
        folders = nnunet_folders(out / "nnunet", 0)
        to_nnunet_raw(raw, folders.raw, DATASET_ID, DATASET_NAME)
        env = tool_env(threads, folders.env())
        env.pop("nnUNet_n_proc_DA")  # its planner sets torch threads from it: 0 is refused
        seconds["nnunet"] = run_logged(
            tools.nnunet_plan(DATASET_ID, "2d", threads=threads),
            out / "logs" / "nnunet_plan.log",
            env,
        )
    if "autojoint" in which and "autojoint" not in seconds:
        seconds["autojoint"] = run_logged(
            tools.autojoint_plan(
                raw, out / "autojoint" / "work", gpu_memory_gb=GPU_MEMORY_GB, threads=threads
            ),
            out / "logs" / "autojoint_plan.log",
            tool_env(threads),
        )
    write_json(seconds, done)
    return seconds


def _nnunet_model(out: Path, seed: int) -> Path:
    return nnunet_folders(out / "nnunet", seed).model(dataset_name(DATASET_ID, DATASET_NAME), "2d")


def _autojoint_work(out: Path, seed: int) -> Path:
    """Seed 0 trains in the planned work dir; other seeds in a copy sharing its plan."""
    work = out / "autojoint" / "work"
    if seed == 0:
        return work
    other = out / "autojoint" / f"work_seed{seed}"
    other.mkdir(parents=True, exist_ok=True)
    for name in ("plans.json", "fingerprint.json", "preprocessed_2d"):
        link = other / name
        if not link.exists():
            link.symlink_to((work / name).resolve())
    return other


def train_both(
    out: Path, tools: Tools, seed: int, args: argparse.Namespace, which: tuple[str, ...] = TOOLS
) -> None:
    """Train the tools of ``which`` side by side (one process each, ``--threads`` each)."""
    folders = nnunet_folders(out / "nnunet", seed)
    nn_log = out / "runs" / f"nnunet-seed{seed}" / "train.json"
    work = _autojoint_work(out, seed)
    procs, logs = {}, {}
    if "nnunet" in which and not nn_log.is_file():
        logs["nnunet"] = out / "logs" / f"nnunet_train_seed{seed}.log"
        procs["nnunet"] = start_logged(
            tools.nnunet_train(
                DATASET_ID,
                "2d",
                "all",
                epochs=args.epochs,
                iterations=args.iterations,
                val_iterations=args.val_iterations,
                threads=args.threads,
                log=nn_log,
                resume=True,  # from checkpoint_latest.pth when a killed run left one
            ),
            logs["nnunet"],
            tool_env(args.threads, folders.env()),
        )
    if "autojoint" in which and not (work / "2d" / "fold_all" / "checkpoint_final.pt").is_file():
        logs["autojoint"] = out / "logs" / f"autojoint_train_seed{seed}.log"
        procs["autojoint"] = start_logged(
            [
                tools.autojoint_command("autojoint_train"),
                "all",
                "-c",
                "2d",
                "-w",
                str(work),
                "--epochs",
                str(args.epochs),
                "--iterations-per-epoch",
                str(args.iterations),
                "--num-workers",
                "0",
                "--seed",
                str(seed),
                "--skip-validation",
                "--checkpoint-every",
                "1",
                "--continue",  # from checkpoint_latest.pt when a killed run left one
            ],
            logs["autojoint"],
            tool_env(args.threads),
        )
    wait_all(procs, logs)


def prediction_dir(out: Path, tool: str, seed: int) -> Path:
    """Where ``tool`` (``TOOLS``) writes its test predictions of ``seed``."""
    return out / "predictions" / f"{tool}-seed{seed}"


def predict_both(
    out: Path, tools: Tools, seed: int, threads: int, which: tuple[str, ...] = TOOLS
) -> dict[str, Path]:
    """Predict the 48 test slices with each tool of ``which`` (mirroring on, probabilities
    saved)."""
    test_images = out / "raw" / "imagesTs"
    preds = {tool: prediction_dir(out, tool, seed) for tool in TOOLS}
    if "nnunet" in which and not (preds["nnunet"] / "timing.json").is_file():
        run_logged(
            tools.nnunet_predict(
                _nnunet_model(out, seed),
                test_images,
                preds["nnunet"],
                threads=threads,
                probabilities=True,
            ),
            out / "logs" / f"nnunet_predict_seed{seed}.log",
            tool_env(threads, nnunet_folders(out / "nnunet", seed).env()),
        )
    # segmentation only: no diagnoses.json; done when every test slice has its mask and
    # probabilities (the predictor writes each case's files atomically)
    cases = [p.name[: -len("_0000.nii.gz")] for p in sorted(test_images.glob("*_0000.nii.gz"))]
    if "autojoint" in which and (
        not cases
        or not all((preds["autojoint"] / f"{c}_probabilities.npz").is_file() for c in cases)
    ):
        run_logged(
            [
                tools.autojoint_command("autojoint_predict"),
                "-i",
                str(test_images),
                "-o",
                str(preds["autojoint"]),
                "-w",
                str(_autojoint_work(out, seed)),
                "-f",
                "all",
                "-c",
                "2d",
                "--save-probabilities",
            ],
            out / "logs" / f"autojoint_predict_seed{seed}.log",
            tool_env(threads),
        )
    return preds


def _probabilities(pred_dir: Path, case: str, tool: str) -> np.ndarray:
    """``(labels, Y, X)`` probabilities, background first, on the reference grid."""
    if tool == "nnunet":
        probs = np.load(pred_dir / f"{case}.npz")["probabilities"]
    else:
        probs = np.load(pred_dir / f"{case}_probabilities.npz")["probabilities"]
    return np.asarray(probs, dtype=np.float32).reshape(probs.shape[0], *probs.shape[-2:])


def score(out: Path, pred_dir: Path, tool: str) -> dict[str, Any]:
    """One tool's row for its predictions of the test slices: ``scores`` (every column of
    the table) and ``per_slice`` (``PAIRED_COLUMNS`` per test slice, which the paired
    interval between the tools needs)."""
    ref_dir = out / "raw" / "labelsTs"
    summary = evaluate_folder(pred_dir, ref_dir, label_values=dict(CLASSES), use_surfel_nsd=True)
    mean = summary["mean"]
    per_slice = {
        case["case"]: {
            column: case["metrics"][label][metric]
            for column, (label, metric) in PAIRED_COLUMNS.items()
        }
        for case in summary["metric_per_case"]
    }
    union: list[tuple[np.ndarray, np.ndarray]] = []
    per_class: dict[str, list[tuple[np.ndarray, np.ndarray]]] = {k: [] for k in CLASSES}
    for ref_path in sorted(ref_dir.glob("*.nii.gz")):
        case = ref_path.name[: -len(".nii.gz")]
        ref = sitk.GetArrayFromImage(sitk.ReadImage(str(ref_path)))
        probs = _probabilities(pred_dir, case, tool)
        if probs.shape[1:] != ref.shape:
            raise SystemExit(f"{pred_dir}: {case} probabilities {probs.shape} vs mask {ref.shape}")
        union.append((1.0 - probs[0], ref > 0))
        for name, value in CLASSES.items():
            per_class[name].append((probs[value], ref == value))
    toolbox_union = toolbox_scores(union)
    scores = {
        "Dice union": mean["lesion"]["dice"],
        "Dice GGO": mean["ground_glass"]["dice"],
        "Dice consolidation": mean["consolidation"]["dice"],
        "NSD union (1 mm)": mean["lesion"]["nsd"],
        "surfel NSD union (1 mm)": mean["lesion"]["nsd_surfel"],
        "toolbox Dice union": toolbox_union["dice"],
        "toolbox Sen. union": toolbox_union["sensitivity"],
        "toolbox Spec. union": toolbox_union["specificity"],
        "toolbox Dice GGO": toolbox_scores(per_class["ground_glass"])["dice"],
        "toolbox Dice consolidation": toolbox_scores(per_class["consolidation"])["dice"],
    }
    return {"scores": scores, "per_slice": per_slice}


def learning_curves(
    out: Path, seed: int, which: tuple[str, ...] = TOOLS
) -> dict[str, dict[str, list[float]]]:
    """Per-epoch training loss of each tool of ``which`` (and nnU-Net's pseudo Dice on its
    own training slices: fold 'all' has no held-out case in either tool)."""
    curves = {}
    if "nnunet" in which:
        nn = read_json(out / "runs" / f"nnunet-seed{seed}" / "train.json")["log"]
        curves["nnU-Net"] = {
            "train loss": [float(v) for v in nn["train_losses"]],
            "pseudo Dice (training slices)": [float(v) for v in nn["mean_fg_dice"]],
        }
    if "autojoint" in which:
        log = _autojoint_work(out, seed) / "2d" / "fold_all" / "training_log.json"
        epochs = read_json(log)["epochs"]
        curves["autojoint"] = {"train loss": [float(e["loss_seg"]) for e in epochs]}
    return curves


def run(args: argparse.Namespace) -> dict[str, Any]:
    """Every stage, resuming from whatever ``OUT`` already holds."""
    out: Path = args.out.resolve()
    which = (args.only,) if args.only else TOOLS
    nnunet = find_nnunet_python(args.nnunet_python) if "nnunet" in which else None
    tools = Tools(nnunet)
    prep_seconds = prepare(out, args.source, tools, args.threads, which)
    setup = {
        "epochs": args.epochs,
        "iterations": args.iterations,
        "val_iterations": args.val_iterations,
        "threads": args.threads,
        "gpu_memory_gb": GPU_MEMORY_GB,
    }
    rows: dict[str, list[dict[str, float]]] = {NAMES[t]: [] for t in which}
    per_slice: dict[str, list[dict[str, dict[str, float]]]] = {NAMES[t]: [] for t in which}
    curves = {}
    for seed in args.seeds:
        cache = {t: out / "rows" / f"{t}-seed{seed}.json" for t in which}
        records = {t: cached_row(p, setup) for t, p in cache.items()}
        # a row cached before per-slice scores were kept is re-scored from its predictions
        # (no training: train_both and predict_both skip finished work)
        stale = [t for t, r in records.items() if r is None or "per_slice" not in r]
        if stale:
            train_both(out, tools, seed, args, which)
            preds = predict_both(out, tools, seed, args.threads, which)
            for tool in stale:
                records[tool] = store_row(cache[tool], setup, score(out, preds[tool], tool))
        for tool in which:
            rows[NAMES[tool]].append(records[tool]["scores"])  # type: ignore[index]
            per_slice[NAMES[tool]].append(records[tool]["per_slice"])  # type: ignore[index]
        curves[seed] = learning_curves(out, seed, which)
    result = {
        "setup": setup,
        "prepare_seconds": prep_seconds,
        "rows": rows,
        "paired": (
            paired_differences(per_slice["autojoint"], per_slice["nnU-Net"])
            if len(which) == 2
            else {}
        ),
        "curves": curves,
    }
    write_json(result, out / "infnet.json")
    table = render(result)
    atomic_write(out / "infnet_table.md", lambda fh: fh.write(table))
    curves_figure(curves, out / "infnet_curves.png", iterations_per_epoch=args.iterations)
    print(table)
    return result


def paired_differences(
    ours: list[dict[str, dict[str, float]]], theirs: list[dict[str, dict[str, float]]]
) -> dict[str, dict[str, float]]:
    """autojoint - nnU-Net per column of ``PAIRED_COLUMNS``: mean and 95 % paired bootstrap
    interval over (seed, test slice) pairs, and on how many pairs autojoint scores higher.

    Slices are the units because with one or two seeds the seeds alone cannot give an
    interval; it says how consistent the difference is over images, not how much a
    retraining would move it (the sd over seeds in the table does). Pairs where either
    value is not finite (a metric undefined on that slice) are left out and counted.
    """
    out = {}
    for column in PAIRED_COLUMNS:
        a, b = [], []
        for seed_ours, seed_theirs in zip(ours, theirs, strict=True):
            for case, values in seed_ours.items():
                x, y = values[column], seed_theirs[case][column]
                if x is not None and y is not None and np.isfinite(x) and np.isfinite(y):
                    a.append(float(x))
                    b.append(float(y))
        if not a:
            continue
        mean, low, high = paired_bootstrap_ci(a, b)
        out[column] = {
            "mean": mean,
            "low": low,
            "high": high,
            "pairs": len(a),
            "autojoint_higher": int(sum(x > y for x, y in zip(a, b, strict=True))),
        }
    return out


def render(result: dict[str, Any]) -> str:
    """Our two rows (mean ± sd over seeds; one with ``--only``) and the published rows in
    one markdown table."""
    s = result["setup"]
    n_seeds = len(next(iter(result["rows"].values())))
    # one tool (``--only``): name it, since "each" would suggest a peer row that is absent
    who = "each" if len(result["rows"]) > 1 else f"{', '.join(result['rows'])} alone"
    head = (
        f"48 test slices; trained on the 50 training slices for {s['epochs']} x "
        f"{s['iterations']} iterations, {s['threads']} thread(s) {who}, {n_seeds} seed(s); "
        "mean ± sample sd over seeds. 'toolbox' columns: Inf-Net's evaluation convention "
        "(mean over 256 thresholds of the min-max normalised probability map).\n\n"
    )
    ours = markdown_table(
        COLUMNS,
        {
            tool: [mean_sd([r[c] for r in rs]) for c in COLUMNS]
            for tool, rs in result["rows"].items()
        },
    )
    paired = result.get("paired") or {}
    if paired:
        ours += (
            "\nautojoint - nnU-Net, mean and 95 % paired bootstrap interval over (seed, test "
            "slice) pairs (10,000 resamples; the spread over images, not over retrainings):"
            "\n\n"
            + "".join(
                f"- {column}: {d['mean']:+.3f} [{d['low']:+.3f}, {d['high']:+.3f}], "
                f"autojoint higher on {d['autojoint_higher']} of {d['pairs']}\n"
                for column, d in paired.items()
            )
        )
    moves = [
        f"- {tool}, seed {seed}, {name}: {last_quarter_change(values):+.3f} "
        f"(range {min(values):.3f} to {max(values):.3f})\n"
        for seed, per_tool in (result.get("curves") or {}).items()
        for tool, curves in per_tool.items()
        for name, values in curves.items()
        if values
    ]
    if moves:
        ours += (
            "\nLearning curves at the end: mean of the last quarter of epochs minus the "
            "quarter before (near 0 against the range: flattened):\n\n" + "".join(moves)
        )
    published = (
        "\nPublished rows, Inf-Net toolbox convention ("
        + INFNET_SOURCE
        + "):\n\n"
        + markdown_table(
            ("toolbox Dice union", "toolbox Sen. union", "toolbox Spec. union"),
            {name: [f"{v:.3f}" for v in vals] for name, vals in INFNET_BINARY.items()},
        )
        + "\n"
        + markdown_table(
            ("toolbox Dice GGO", "toolbox Dice consolidation"),
            {name: [f"{v:.3f}" for v in vals] for name, vals in INFNET_MULTICLASS.items()},
        )
    )
    return head + ours + published


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--source", type=Path, default=SHARED_SLICES, help="Inf-Net Dataset/")
    parser.add_argument("--nnunet-python", type=Path, default=None)
    parser.add_argument("--epochs", type=int, default=40)
    parser.add_argument("--iterations", type=int, default=50)
    parser.add_argument("--val-iterations", type=int, default=10)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument(
        "--only",
        choices=TOOLS,
        default=None,
        help="run one tool alone (e.g. autojoint at a longer budget: a convergence check)",
    )
    args = parser.parse_args(argv)
    if not args.source.is_dir():
        parser.error(f"{args.source} not found: pass --source (Inf-Net's Dataset folder)")
    run(args)


if __name__ == "__main__":
    main()
