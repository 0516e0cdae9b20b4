"""Regenerate docs/prediction/report_screenshot.png: one case page of ``--report``.

    python -m benchmarks.report_screenshot --demo DEMO_DIR [--case CASE] [--out OUT]
        [--png docs/prediction/report_screenshot.png] [--width 1000] [--height 1500]

DEMO_DIR is what ``scripts/demo.sh`` leaves (``raw/`` and a trained ``work/``). Predicts one
held-out case (``raw/imagesTs``, default the first) with ``--fast --report`` into OUT
(default DEMO/report_screenshot) and saves a screenshot of its page taken by headless
Chromium (the Debian package ``chromium``), the browser the tests use.
"""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path

import torch

from autojoint.cli import predict as cli_predict
from tests.browser import find_chromium, screenshot

DEFAULT_PNG = Path(__file__).resolve().parents[1] / "docs" / "prediction" / "report_screenshot.png"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--demo", type=Path, required=True, help="scripts/demo.sh's output dir")
    parser.add_argument("--case", default=None, help="held-out case (default: the first)")
    parser.add_argument("--out", type=Path, default=None, help="default: DEMO/report_screenshot")
    parser.add_argument("--png", type=Path, default=DEFAULT_PNG)
    parser.add_argument("--width", type=int, default=1000)
    parser.add_argument("--height", type=int, default=1500)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args(argv)
    chromium = find_chromium()
    if chromium is None:
        raise SystemExit("no Chromium on PATH: install it (Debian: apt-get install chromium)")
    images = args.demo / "raw" / "imagesTs"
    cases = sorted(p.name.removesuffix("_0000.nii.gz") for p in images.glob("*_0000.nii.gz"))
    if not cases or not (args.demo / "work" / "plans.json").is_file():
        raise SystemExit(
            f"{args.demo}: no raw/imagesTs cases or no trained work/; run scripts/demo.sh"
        )
    case = args.case or cases[0]
    out = args.out or args.demo / "report_screenshot"
    inputs = out / "inputs"
    shutil.rmtree(out, ignore_errors=True)
    inputs.mkdir(parents=True)
    shutil.copy(images / f"{case}_0000.nii.gz", inputs)
    torch.set_num_threads(args.threads)
    work = args.demo / "work"
    code = cli_predict.main(
        ["-i", str(inputs), "-o", str(out / "pred"), "-w", str(work), "--fast", "--report"]
    )
    if code != 0:
        raise SystemExit(f"autojoint_predict --report failed with exit code {code}")
    page = out / "pred" / "report" / "cases" / f"{case}.html"
    png = screenshot(chromium, page, args.png, width=args.width, height=args.height)
    print(f"{png} ({args.width} x {args.height}) of {page}")


if __name__ == "__main__":
    main()
