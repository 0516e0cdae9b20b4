"""Peer workload 3: speed of autojoint vs nnU-Net v2, measured in one run on one machine.

    python -m benchmarks.peers.speed --out OUT [--nnunet-python PY] [--threads 2]
        [--num-cases 6] [--iterations 6] [--repeats 2]

What is timed (every figure a wall time of the tool's own command or API, both tools with
the same torch/BLAS thread count, runs interleaved tool by tool so that a drift of the
machine hits both):

1. **Preprocessing** per case: fingerprint + plan + preprocess of a synthetic chest-CT
   dataset at full size (the demo generator at its default 340 mm field of view,
   ``--num-cases`` cases), divided by the case count; ``--repeats`` fresh runs each.
2. **Training seconds per iteration** (data loading, augmentation, forward, loss,
   backward, optimiser), 3D (``fullres`` / ``3d_fullres``) and 2D (the Inf-Net slices):
   at each tool's own 8 GB plan, and at an equal patch and batch (nnU-Net's plan's,
   rounded to a size both networks' strides divide; each tool keeps its own network). Two
   epochs of ``--iterations``; the second epoch's time over its iterations (the first
   holds the start-up). nnU-Net's epoch also holds one validation batch (its loop needs
   one); ours trains fold ``all`` without validation batches.
3. **Prediction wall per case** on a real chest CT (``covid_ct_md/nifti_ds2/P001``,
   256 x 256 x 148 voxels) with the 3D models of step 2 (weights do not change the
   time): the whole command / API call per case including loading the model, at each
   tool's own plan with and without mirroring, and at the equal patch without.

Writes ``OUT/speed.json`` and ``OUT/speed_table.md`` (ratios autojoint / nnU-Net: below 1
autojoint is faster). Timings are cached per measurement in ``OUT/timings.json``; a killed
run resumes.
"""

from __future__ import annotations

import argparse
import math
import shutil
import time
from pathlib import Path
from typing import Any

from autojoint.io.files import atomic_write, read_json, write_json
from autojoint.runtime.devices import cpu_supports_bfloat16
from benchmarks.peers.common import (
    Tools,
    find_nnunet_python,
    run_logged,
    tool_env,
)
from benchmarks.peers.infnet import SHARED_SLICES
from benchmarks.peers.layout import dataset_name, nnunet_folders, to_nnunet_raw
from benchmarks.peers.tables import markdown_table, ratio

P001 = SHARED_SLICES.parents[1] / "covid_ct_md/nifti_ds2/P001.nii.gz"
GPU_MEMORY_GB = 8.0
DATASETS = {"3d": 511, "2d": 512}
NN_CONF = {"3d": "3d_fullres", "2d": "2d"}
AJ_CONF = {"3d": "fullres", "2d": "2d"}
AJ_FOLD_DIR = {"3d": "fold_all", "2d": "2d/fold_all"}  # 2d runs live under WORK/2d/
PREDICTIONS = (("own", False), ("equal", False), ("own", True))
"""(plans, mirroring) of the timed predictions: mirroring's cost is a property of each
tool's own setup; at the equal patch one pass per tile says enough about the networks."""


class Timings:
    """Measurements cached by name in one JSON file, written after each one."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.data: dict[str, Any] = read_json(path) if path.is_file() else {}

    def get(self, name: str, measure) -> Any:  # type: ignore[no-untyped-def]
        if name not in self.data:
            self.data[name] = measure()
            write_json(self.data, self.path)
        return self.data[name]


def make_raw(out: Path, num_cases: int, source_2d: Path) -> dict[str, Path]:
    """The 3D synthetic chest CTs and the 2D Inf-Net training slices, autojoint layout."""
    raw3d, raw2d = out / "raw3d", out / "raw2d"
    if not (raw3d / "dataset.json").is_file():
        from dataset_conversion.generate_demo import generate_dataset

        generate_dataset(raw3d, num_train=num_cases, seed=0)
    if not (raw2d / "dataset.json").is_file():
        from dataset_conversion.convert_medseg import main_slices

        if main_slices(["-i", str(source_2d), "-o", str(raw2d)]) != 0:
            raise SystemExit(f"converting {source_2d} failed")
    return {"3d": raw3d, "2d": raw2d}


def _nn_env(root: Path, threads: int, *, planning: bool = False) -> dict[str, str]:
    env = tool_env(threads, nnunet_folders(root, 0).env())
    if planning:
        env.pop("nnUNet_n_proc_DA")  # nnU-Net's planner sets torch threads from it
    return env


def preprocess_seconds(
    out: Path, tools: Tools, kind: str, raw: Path, threads: int, repeat: int
) -> dict[str, float]:
    """One fresh plan + preprocess per tool (nnU-Net first, then autojoint)."""
    n = len(list((raw / "imagesTr").glob("*_0000.nii.gz")))
    root = out / f"prep_{kind}_{repeat}"
    shutil.rmtree(root, ignore_errors=True)
    to_nnunet_raw(raw, root / "nnunet" / "raw", DATASETS[kind], f"Speed{kind}")
    nn = run_logged(
        tools.nnunet_plan(DATASETS[kind], NN_CONF[kind], threads=threads),
        out / "logs" / f"prep_{kind}_{repeat}_nnunet.log",
        _nn_env(root / "nnunet", threads, planning=True),
    )
    aj = run_logged(
        tools.autojoint_plan(raw, root / "autojoint", gpu_memory_gb=GPU_MEMORY_GB, threads=threads),
        out / "logs" / f"prep_{kind}_{repeat}_autojoint.log",
        tool_env(threads),
    )
    shutil.rmtree(root, ignore_errors=True)
    return {"nnunet": nn / n, "autojoint": aj / n, "cases": n}


def plan_both(out: Path, tools: Tools, kind: str, raw: Path, threads: int) -> Path:
    """The plans the training and prediction timings use (kept, unlike the timed runs)."""
    root = out / f"models_{kind}"
    if (root / "planned").is_file():
        return root
    to_nnunet_raw(raw, root / "nnunet" / "raw", DATASETS[kind], f"Speed{kind}")
    run_logged(
        tools.nnunet_plan(DATASETS[kind], NN_CONF[kind], threads=threads),
        out / "logs" / f"plan_{kind}_nnunet.log",
        _nn_env(root / "nnunet", threads, planning=True),
    )
    run_logged(
        tools.autojoint_plan(
            raw,
            root / "autojoint" / "own",
            gpu_memory_gb=GPU_MEMORY_GB,
            threads=threads,
            extra=["-c", AJ_CONF[kind]],
        ),
        out / "logs" / f"plan_{kind}_autojoint.log",
        tool_env(threads),
    )
    (root / "planned").write_text("ok\n", encoding="utf-8")
    return root


def _nn_plans_path(root: Path, kind: str, name: str = "nnUNetPlans") -> Path:
    folder = root / "nnunet" / "preprocessed" / dataset_name(DATASETS[kind], f"Speed{kind}")
    return folder / f"{name}.json"


def equal_patch(root: Path, kind: str) -> tuple[list[int], int]:
    """nnU-Net's planned patch and batch, each axis rounded down to a multiple of both
    networks' total stride on it (at least one stride), so both networks take it."""
    nn_conf = read_json(_nn_plans_path(root, kind))["configurations"][NN_CONF[kind]]
    nn_strides = nn_conf["architecture"]["arch_kwargs"]["strides"]
    aj = read_json(root / "autojoint" / "own" / "plans.json")
    aj_strides = aj["topology"]["strides"]
    patch = [int(p) for p in nn_conf["patch_size"]]
    if kind == "2d":
        patch = [1, *patch]
        nn_strides = [[1, *s] for s in nn_strides]
    out = []
    for axis, size in enumerate(patch):
        a = math.prod(s[axis] for s in aj_strides)
        b = math.prod(s[axis] for s in nn_strides)
        step = a * b // math.gcd(a, b)
        out.append(max(step, size // step * step))
    return out, int(nn_conf["batch_size"])


def write_equal_plans(root: Path, kind: str) -> tuple[list[int], int]:
    """``nnUNetPlans_equal.json`` and ``autojoint/equal/plans.json`` with the equal patch
    and batch; everything else (networks, preprocessed data) stays each tool's own."""
    patch, batch = equal_patch(root, kind)
    nn = read_json(_nn_plans_path(root, kind))
    nn["plans_name"] = "nnUNetPlans_equal"
    conf = nn["configurations"][NN_CONF[kind]]
    conf["patch_size"] = patch[1:] if kind == "2d" else patch
    conf["batch_size"] = batch
    write_json(nn, _nn_plans_path(root, kind, "nnUNetPlans_equal"))
    own, equal = root / "autojoint" / "own", root / "autojoint" / "equal"
    equal.mkdir(parents=True, exist_ok=True)
    aj = read_json(own / "plans.json")
    aj["patch_size"], aj["batch_size"] = patch, batch
    write_json(aj, equal / "plans.json")
    for item in own.iterdir():
        if item.name.startswith("preprocessed") or item.name == "fingerprint.json":
            link = equal / item.name
            if not link.exists():
                link.symlink_to(item.resolve())
    return patch, batch


def train_seconds_per_iteration(
    out: Path, tools: Tools, root: Path, kind: str, variant: str, args: argparse.Namespace
) -> dict[str, float]:
    """Two epochs of ``--iterations`` for each tool; the second epoch's seconds per
    iteration."""
    plans = "nnUNetPlans" if variant == "own" else "nnUNetPlans_equal"
    log = root / "nnunet" / f"train_{variant}.json"
    run_logged(
        tools.nnunet_train(
            DATASETS[kind],
            NN_CONF[kind],
            "all",
            epochs=2,
            iterations=args.iterations,
            val_iterations=1,
            threads=args.threads,
            log=log,
            plans=plans,
        ),
        out / "logs" / f"train_{kind}_{variant}_nnunet.log",
        _nn_env(root / "nnunet", args.threads),
    )
    nn_log = read_json(log)["log"]
    nn_epoch = nn_log["epoch_end_timestamps"][1] - nn_log["epoch_start_timestamps"][1]
    return {
        "nnunet": nn_epoch / args.iterations,
        "autojoint": autojoint_train_seconds(out, tools, root, kind, variant, args),
    }


def autojoint_train_seconds(
    out: Path,
    tools: Tools,
    root: Path,
    kind: str,
    variant: str,
    args: argparse.Namespace,
    precision: str | None = None,
) -> float:
    """autojoint's seconds per iteration over the second of two epochs (``precision``:
    ``autojoint_train --precision``, None = its default)."""
    work = root / "autojoint" / variant
    shutil.rmtree(work / AJ_FOLD_DIR[kind], ignore_errors=True)
    extra = [] if precision is None else ["--precision", precision]
    suffix = "" if precision is None else f"_{precision}"
    run_logged(
        [
            tools.autojoint_command("autojoint_train"),
            "all",
            "-w",
            str(work),
            "-c",
            AJ_CONF[kind],
            "--epochs",
            "2",
            "--iterations-per-epoch",
            str(args.iterations),
            "--num-workers",
            "0",
            "--skip-validation",
            *extra,
        ],
        out / "logs" / f"train_{kind}_{variant}{suffix}_autojoint.log",
        tool_env(args.threads),
    )
    aj_log = read_json(work / AJ_FOLD_DIR[kind] / "training_log.json")["epochs"]
    return float(aj_log[1]["seconds"]) / args.iterations


def predict_seconds(
    out: Path,
    tools: Tools,
    root: Path,
    variant: str,
    mirroring: bool,
    threads: int,
    autojoint_precision: str | None = None,
) -> dict[str, float]:
    """Wall of one whole prediction command per tool on P001 (model loading included);
    with ``autojoint_precision`` (``--precision``) autojoint's alone."""
    src = out / "p001_in"
    if not (src / "P001_0000.nii.gz").exists():
        src.mkdir(parents=True, exist_ok=True)
        (src / "P001_0000.nii.gz").symlink_to(P001.resolve())
    tag = f"{variant}_{'tta' if mirroring else 'notta'}"
    if autojoint_precision is not None:
        tag += f"_{autojoint_precision}"
    plans = "nnUNetPlans" if variant == "own" else "nnUNetPlans_equal"
    model = nnunet_folders(root / "nnunet", 0).model(
        dataset_name(DATASETS["3d"], "Speed3d"), NN_CONF["3d"], plans
    )
    nn_cmd = tools.nnunet_predict(
        model, src, out / "pred" / f"nnunet_{tag}", threads=threads, mirroring=mirroring
    )
    aj_cmd = [
        tools.autojoint_command("autojoint_predict"),
        "-i",
        str(src),
        "-o",
        str(out / "pred" / f"autojoint_{tag}"),
        "-w",
        str(root / "autojoint" / variant),
        "-f",
        "all",
    ] + ([] if mirroring else ["--no-tta"])
    for d in ("nnunet", "autojoint"):
        shutil.rmtree(out / "pred" / f"{d}_{tag}", ignore_errors=True)
    if autojoint_precision is not None:
        aj_cmd += ["--precision", autojoint_precision]
        log = out / "logs" / f"predict_{tag}_autojoint.log"
        return {"autojoint": run_logged(aj_cmd, log, tool_env(threads))}
    return {
        "nnunet": run_logged(
            nn_cmd, out / "logs" / f"predict_{tag}_nnunet.log", _nn_env(root / "nnunet", threads)
        ),
        "autojoint": run_logged(
            aj_cmd, out / "logs" / f"predict_{tag}_autojoint.log", tool_env(threads)
        ),
    }


def run(args: argparse.Namespace) -> dict[str, Any]:
    out: Path = args.out.resolve()
    tools = Tools(find_nnunet_python(args.nnunet_python))
    timings = Timings(out / "timings.json")
    raws = make_raw(out, args.num_cases, args.source_2d)
    start = time.perf_counter()
    for r in range(args.repeats):
        for kind in ("3d", "2d"):
            timings.get(
                f"preprocess_{kind}_{r}",
                lambda kind=kind, r=r: preprocess_seconds(
                    out, tools, kind, raws[kind], args.threads, r
                ),
            )
    patches = {}
    for kind in ("3d", "2d"):
        root = plan_both(out, tools, kind, raws[kind], args.threads)
        patches[kind] = timings.get(
            f"equal_patch_{kind}", lambda root=root, kind=kind: write_equal_plans(root, kind)
        )
        for variant in ("own", "equal"):
            timings.get(
                f"train_{kind}_{variant}",
                lambda root=root, kind=kind, variant=variant: train_seconds_per_iteration(
                    out, tools, root, kind, variant, args
                ),
            )
    root3d = out / "models_3d"
    for r in range(args.repeats):
        for variant, mirroring in PREDICTIONS:
            timings.get(
                f"predict_{variant}_{'tta' if mirroring else 'notta'}_{r}",
                lambda variant=variant, mirroring=mirroring: predict_seconds(
                    out, tools, root3d, variant, mirroring, args.threads
                ),
            )
    # autojoint-only figures beside nnU-Net's of the same row: the opt-in bfloat16 training
    # at the equal patch, and the float32 prediction autojoint ran before --precision auto
    # chose bfloat16 on CPUs that have it.
    if cpu_supports_bfloat16():
        timings.get(
            "train_3d_equal_bfloat16",
            lambda: {
                "autojoint": autojoint_train_seconds(
                    out, tools, out / "models_3d", "3d", "equal", args, "bfloat16"
                )
            },
        )
        for r in range(args.repeats):
            timings.get(
                f"predict_own_notta_float32_{r}",
                lambda: predict_seconds(
                    out, tools, root3d, "own", False, args.threads, autojoint_precision="float32"
                ),
            )
    result = {
        "threads": args.threads,
        "num_cases": args.num_cases,
        "iterations": args.iterations,
        "repeats": args.repeats,
        "equal_patch": patches,
        "timings": timings.data,
        "wall_seconds_this_run": time.perf_counter() - start,
    }
    write_json(result, out / "speed.json")
    table = render(result)
    atomic_write(out / "speed_table.md", lambda fh: fh.write(table))
    print(table)
    return result


def _mean(timings: dict[str, Any], prefix: str, repeats: int, tool: str) -> float:
    values = [timings[f"{prefix}_{r}"][tool] for r in range(repeats) if f"{prefix}_{r}" in timings]
    return sum(values) / len(values) if values else float("nan")


def render(result: dict[str, Any]) -> str:
    """One row per measurement: nnU-Net, autojoint (seconds), ratio autojoint / nnU-Net."""
    t, reps = result["timings"], result["repeats"]
    rows: dict[str, list[str]] = {}

    def add(name: str, nn: float, aj: float) -> None:
        cells = [f"{v:.2f}" if math.isfinite(v) else "not measured" for v in (nn, aj)]
        rows[name] = [*cells, ratio(aj, nn)]

    for kind in ("3d", "2d"):
        add(
            f"preprocess s/case, {kind}",
            _mean(t, f"preprocess_{kind}", reps, "nnunet"),
            _mean(t, f"preprocess_{kind}", reps, "autojoint"),
        )
    for kind in ("3d", "2d"):
        for variant in ("own", "equal"):
            m = t.get(f"train_{kind}_{variant}")
            if m:
                label = (
                    "own plans"
                    if variant == "own"
                    else (
                        f"equal patch {' x '.join(map(str, result['equal_patch'][kind][0]))}, "
                        f"batch {result['equal_patch'][kind][1]}"
                    )
                )
                add(f"train s/iteration, {kind}, {label}", m["nnunet"], m["autojoint"])
                low = t.get(f"train_{kind}_{variant}_bfloat16")
                if low:
                    add(
                        f"train s/iteration, {kind}, {label}, autojoint --precision bfloat16",
                        m["nnunet"],
                        low["autojoint"],
                    )
    for variant, mirroring in PREDICTIONS:
        for tag in ("tta",) if mirroring else ("notta",):
            prefix = f"predict_{variant}_{tag}"
            mirror = "mirroring" if tag == "tta" else "no mirroring"
            add(
                f"predict P001 s/case, {variant} plans, {mirror}",
                _mean(t, prefix, reps, "nnunet"),
                _mean(t, prefix, reps, "autojoint"),
            )
            if any(k.startswith(f"{prefix}_float32_") for k in t):
                add(
                    f"predict P001 s/case, {variant} plans, {mirror}, autojoint --precision "
                    "float32",
                    _mean(t, prefix, reps, "nnunet"),
                    _mean(t, f"{prefix}_float32", reps, "autojoint"),
                )
    head = (
        f"{result['threads']} thread(s) per tool, {result['repeats']} repeat(s) of preprocessing "
        f"and prediction (mean), training timed over the second of two {result['iterations']}-"
        "iteration epochs. Ratio = autojoint / nnU-Net (below 1: autojoint faster). autojoint "
        "runs its defaults (prediction: --precision auto, bfloat16 autocast on a CPU with "
        "native bfloat16; training: float32) unless a row names a flag.\n\n"
    )
    return head + markdown_table(("nnU-Net (s)", "autojoint (s)", "ratio"), rows)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--nnunet-python", type=Path, default=None)
    parser.add_argument("--source-2d", type=Path, default=SHARED_SLICES)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--num-cases", type=int, default=6)
    parser.add_argument("--iterations", type=int, default=6)
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args(argv)
    for path in (args.source_2d, P001):
        if not path.exists():
            parser.error(f"{path} not found: this workload reads ../shared/data")
    run(args)


if __name__ == "__main__":
    main()
