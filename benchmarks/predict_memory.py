"""Does prediction memory grow from case to case? Peak RSS of the first vs the last 10 cases.

Trains a tiny model on synthetic data (1 iteration: the weights do not matter for memory),
writes NUM_CASES synthetic scans of varying sizes (every block of 10 holds the same mix of
sizes, so blocks are comparable), then runs ``run_prediction`` once over all of them. A
sampling thread reads the resident set size every 10 ms and attributes it to the case being
predicted; a leak shows as later blocks peaking higher than the first.

    python -m benchmarks.predict_memory [--num-cases 50] [--sizes 12x40x40 16x64x64 ...]

Run it as a module from the repository root: its scans come from ``tests/synthetic.py``,
and ``tests`` is importable from there, not installed.
"""

from __future__ import annotations

import argparse
import logging
import os
import resource
import shutil
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

from autojoint.inference import outputs, predictor
from autojoint.pipeline import plan_and_preprocess
from autojoint.training.config import TrainerConfig
from autojoint.training.launch import train_fold
from tests.synthetic import CLASSES, make_case, make_raw_dataset, write_volume

PAGE = os.sysconf("SC_PAGE_SIZE")


def rss_mb() -> float:
    """Current resident set size of this process in MB (Linux /proc)."""
    with open("/proc/self/statm", encoding="utf-8") as fh:
        return int(fh.read().split()[1]) * PAGE / 1e6


def write_inputs(folder: Path, num_cases: int, sizes: list[tuple[int, int, int]]) -> None:
    rng = np.random.default_rng(0)
    order: list[tuple[int, int, int]] = []
    while len(order) < num_cases:
        block = [sizes[i % len(sizes)] for i in range(10)]
        order += [block[i] for i in rng.permutation(10)]
    for i, shape in enumerate(order[:num_cases]):
        img, _ = make_case(rng, CLASSES[i % 3], shape)
        write_volume(img, folder / f"case_{i:03d}_0000.nii.gz", spacing_zyx=(2.5, 0.8, 0.8))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--num-cases", type=int, default=50)
    parser.add_argument(
        "--sizes",
        nargs="+",
        default=["12x40x40", "16x56x56", "20x72x72", "24x88x88", "28x104x104"],
        help="case shapes ZxYxX, cycled",
    )
    parser.add_argument("--keep", action="store_true", help="keep the temp folder")
    args = parser.parse_args()
    sizes = [tuple(int(v) for v in s.split("x")) for s in args.sizes]
    logging.basicConfig(level=logging.WARNING)
    root = Path(tempfile.mkdtemp(prefix="predict_memory_"))
    raw = make_raw_dataset(root / "raw", num_cases=4, shape=(12, 40, 40))
    work = root / "work"
    plan_and_preprocess(raw, work)
    train_fold(work, "all", TrainerConfig(epochs=1, iterations_per_epoch=1, final_validation=False))
    write_inputs(root / "inputs", args.num_cases, sizes)  # type: ignore[arg-type]

    current = {"case": 0}
    peaks = np.zeros(args.num_cases)
    after = np.zeros(args.num_cases)
    maxrss = np.zeros(args.num_cases)
    seconds = np.zeros(args.num_cases)
    stop = threading.Event()

    def sample() -> None:
        while not stop.is_set():
            i = current["case"]
            if i < args.num_cases:
                peaks[i] = max(peaks[i], rss_mb())
            time.sleep(0.01)

    real_write = outputs.write_image
    t_last = [time.perf_counter()]

    def write_and_measure(array: np.ndarray, geometry: object, path: Path) -> None:
        real_write(array, geometry, path)  # type: ignore[arg-type]
        i = current["case"]
        after[i] = rss_mb()
        peaks[i] = max(peaks[i], after[i])
        maxrss[i] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / 1e6  # KiB
        now = time.perf_counter()
        seconds[i], t_last[0] = now - t_last[0], now
        current["case"] = i + 1

    outputs.write_image = write_and_measure  # type: ignore[assignment]
    thread = threading.Thread(target=sample, daemon=True)
    thread.start()
    t_last[0] = time.perf_counter()
    try:
        # Resident memory of this process: the CPU holds every buffer (auto could pick CUDA).
        options = predictor.PredictOptions(folds=["all"], device="cpu")
        predictor.run_prediction(root / "inputs", root / "pred", work, options)
    finally:
        stop.set()
        thread.join()
        outputs.write_image = real_write
        if not args.keep:
            shutil.rmtree(root, ignore_errors=True)

    n = args.num_cases
    first, last = slice(0, min(10, n)), slice(max(n - 10, 0), n)
    print(f"{n} cases, sizes {args.sizes} (each block of 10 holds the same mix)")
    header = ("block", "peak RSS MB", "RSS after MB", "ru_maxrss MB", "s/case")
    print(" ".join(f"{h:>13}" for h in header))
    for b in range(0, n, 10):
        s = slice(b, min(b + 10, n))
        print(
            f"{f'{b + 1}-{s.stop}':>13} {peaks[s].max():13.1f} {after[s].mean():13.1f} "
            f"{maxrss[s].max():13.1f} {seconds[s].mean():13.2f}"
        )
    growth = peaks[last].max() - peaks[first].max()
    print(
        f"peak RSS first 10: {peaks[first].max():.1f} MB, last 10: {peaks[last].max():.1f} MB "
        f"(growth {growth:+.1f} MB); mean RSS after a case: first 10 "
        f"{after[first].mean():.1f} MB, last 10 {after[last].mean():.1f} MB"
    )


if __name__ == "__main__":
    main()
