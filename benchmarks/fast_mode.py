"""What ``autojoint_predict --fast`` saves and what it costs, on a trained work dir.

    python -m benchmarks.fast_mode --demo DEMO_DIR [--out OUT] [--threads N]

DEMO_DIR is what ``scripts/demo.sh`` leaves (``raw/`` and a trained ``work/``). Predicts the
held-out cases (``raw/imagesTs``) with the default settings and with ``--fast``, one after
the other in this process, evaluates both against ``raw/labelsTs`` and prints wall seconds,
the speed-up, lesion Dice, per-class Dice and the diagnosis accuracy of each. Timings on a
shared machine are inflated by contention; both runs see the same machine.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from autojoint.cli import evaluate as cli_evaluate
from autojoint.cli import predict as cli_predict

MODES = {"default": [], "--fast": ["--fast"]}


def predict_and_score(demo: Path, out: Path, flags: list[str]) -> dict[str, float]:
    raw = demo / "raw"
    pred = out / "pred"
    start = time.perf_counter()
    code = cli_predict.main(
        ["-i", str(raw / "imagesTs"), "-o", str(pred), "-w", str(demo / "work"), *flags]
    )
    seconds = time.perf_counter() - start
    if code != 0:
        raise SystemExit(f"autojoint_predict {' '.join(flags)} failed with exit code {code}")
    summary = out / "summary.json"
    args = ["-p", str(pred), "-r", str(raw / "labelsTs"), "-o", str(summary)]
    args += ["--dataset-json", str(raw / "dataset.json")]
    if (raw / "diagnosesTs.csv").is_file():
        args += ["--diagnoses", str(raw / "diagnosesTs.csv")]
    if cli_evaluate.main(args) != 0:
        raise SystemExit(f"autojoint_evaluate on {pred} failed")
    result = json.loads(summary.read_text(encoding="utf-8"))
    row = {"seconds": seconds}
    for label, scores in result["mean"].items():
        row[f"Dice {label}"] = scores["dice"]
    if result.get("diagnosis"):
        row["accuracy"] = result["diagnosis"]["accuracy"]
    return row


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--demo", type=Path, required=True, help="scripts/demo.sh's output dir")
    parser.add_argument("--out", type=Path, default=None, help="default: DEMO/fast_mode")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args(argv)
    demo: Path = args.demo
    if not (demo / "work" / "plans.json").is_file() or not (demo / "raw").is_dir():
        raise SystemExit(f"{demo}: not a demo run (needs raw/ and a trained work/)")
    torch.set_num_threads(args.threads)
    out = args.out or demo / "fast_mode"
    rows = {
        name: predict_and_score(demo, out / name.strip("-"), flags) for name, flags in MODES.items()
    }
    keys = list(rows["default"])
    print("| mode | " + " | ".join(keys) + " |")
    print("|---|" + "---|" * len(keys))
    for name, row in rows.items():
        print(f"| {name} | " + " | ".join(f"{row.get(k, float('nan')):.3f}" for k in keys) + " |")
    print(f"\nspeed-up: {rows['default']['seconds'] / rows['--fast']['seconds']:.2f}x")
    (out / "fast_mode.json").write_text(json.dumps(rows, indent=1), encoding="utf-8")


if __name__ == "__main__":
    main()
