"""What reusing freed memory in the sliding window (autojoint/runtime/allocator.py, on by
default) saves, and what the same setting would do to training: each phase in a fresh
process with autojoint's setting and with ``AUTOJOINT_SYSTEM_MALLOC=1`` (glibc's
defaults), alternated, so both see the same machine.

    python -m benchmarks.allocator WORK_DIR/plans.json [--steps 3] [--threads 2] [--repeats 2]
        [--phases predict train]

predict: the sliding window (``network_probabilities``, the predictor's path, under the
predictor's autocast) over a random volume of 2 x 2 x 2 patches (27 tiles at step 0.5),
``--steps`` times after one warm-up; train: training steps on random tensors of the plan's
shapes (benchmarks/train_step.py), each step inside ``reusing_freed_memory`` when the
setting is on (what training does NOT do by default: see docs/benchmarks.md "Memory
allocator"). Prints seconds per repetition, kernel (system) CPU seconds, minor page
faults and the process's peak resident memory.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

CHILD = """
import json, resource, sys, time, torch
from pathlib import Path
from autojoint.cli.common import configure_malloc
from autojoint.planning.schema import Plan
from autojoint.runtime.allocator import reusing_freed_memory
configure_malloc()
phase, plans, steps, threads = sys.argv[1], Path(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
torch.set_num_threads(threads)
plan = Plan.load(plans)
r0 = resource.getrusage(resource.RUSAGE_SELF)
if phase == "train":
    from benchmarks.train_step import seconds_per_step
    with reusing_freed_memory():
        seconds = seconds_per_step(plan, steps, torch.device("cpu"))
else:
    import numpy as np
    from autojoint.inference.sliding_window import network_probabilities
    from autojoint.networks.joint_net import JointNet
    from autojoint.runtime.devices import mixed_precision
    net = JointNet(plan).eval()
    shape = [2 * p for p in plan.patch_size]
    data = np.random.default_rng(0).normal(size=(len(plan.channel_names), *shape))
    data = data.astype(np.float32)
    times = []
    with torch.no_grad(), mixed_precision(torch.device("cpu"), sys.argv[5]):
        for _ in range(steps + 1):
            t = time.perf_counter()
            network_probabilities(net, data, plan.patch_size, plan.num_labels,
                                  tile_batch=plan.batch_size)
            times.append(time.perf_counter() - t)
    seconds = sum(times[1:]) / steps
r1 = resource.getrusage(resource.RUSAGE_SELF)
print(json.dumps({
    "seconds": seconds, "system_s": r1.ru_stime - r0.ru_stime,
    "minor_faults": r1.ru_minflt - r0.ru_minflt, "peak_rss_mb": r1.ru_maxrss / 1024,
}))
"""

MODES = {"autojoint (reuse)": {}, "glibc defaults": {"AUTOJOINT_SYSTEM_MALLOC": "1"}}


def measure(phase: str, args: argparse.Namespace, extra_env: dict[str, str]) -> dict[str, float]:
    """One fresh process running ``phase`` (train: training steps; predict: tile batches)."""
    env = {k: v for k, v in os.environ.items() if k != "AUTOJOINT_SYSTEM_MALLOC"}
    env.update({"OMP_NUM_THREADS": str(args.threads), **extra_env})
    env["PYTHONPATH"] = str(Path(__file__).resolve().parents[1])
    command = [sys.executable, "-c", CHILD, phase, str(args.plans), str(args.steps)]
    command += [str(args.threads), args.precision]
    out = subprocess.run(command, check=False, env=env, capture_output=True, text=True)
    if out.returncode != 0:  # e.g. killed for memory: say so, keep the other rows
        return {"failed": float(out.returncode)}
    return dict(json.loads(out.stdout.strip().splitlines()[-1]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("plans", type=Path)
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument(
        "--phases", nargs="+", choices=("predict", "train"), default=["predict", "train"]
    )
    parser.add_argument("--precision", default="auto", help="prediction autocast (runtime.devices)")
    parser.add_argument(
        "--preload",
        nargs="*",
        default=[],
        help="also run with each of these allocator libraries in LD_PRELOAD (e.g. "
        "/usr/lib/x86_64-linux-gnu/libtcmalloc_minimal.so.4); autojoint then leaves malloc alone",
    )
    args = parser.parse_args()
    print(f"{args.plans}: {args.steps} steps, {args.threads} thread(s), {args.repeats} repeat(s)")
    for phase in args.phases:
        modes = dict(MODES)
        for lib in args.preload:
            modes[f"LD_PRELOAD {Path(lib).name}"] = {"LD_PRELOAD": lib}
        runs: dict[str, list[dict[str, float]]] = {m: [] for m in modes}
        for _ in range(args.repeats):
            for mode, env in modes.items():
                runs[mode].append(measure(phase, args, env))
                print(phase, mode, json.dumps(runs[mode][-1]), flush=True)
        print(f"\n{phase}: mean over repeats")
        print("| malloc | s per step | system s | minor faults | peak RSS MB |")
        print("|---|---|---|---|---|")
        means = {}
        for mode, rows in runs.items():
            ok = [r for r in rows if "failed" not in r]
            if not ok:
                print(f"| {mode} | failed (exit {rows[0]['failed']:.0f}) | | | |")
                continue
            means[mode] = {k: sum(r[k] for r in ok) / len(ok) for k in ok[0]}
            m = means[mode]
            print(
                f"| {mode} | {m['seconds']:.3g} | {m['system_s']:.3g} | "
                f"{m['minor_faults']:.3g} | {m['peak_rss_mb']:.0f} |"
            )
        base = means.get("glibc defaults")
        for mode, m in means.items():
            if base is not None and mode != "glibc defaults":
                print(
                    f"{phase}, {mode}: time {m['seconds'] / base['seconds']:.3f}x, peak memory "
                    f"{m['peak_rss_mb'] / base['peak_rss_mb']:.3f}x of glibc defaults"
                )


if __name__ == "__main__":
    main()
