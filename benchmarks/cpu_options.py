"""Which CPU settings make prediction faster, measured in one run (issue 20).

    python -m benchmarks.cpu_options [--plans WORK/plans.json] [--threads 1]
        [--repeats 5] [--ct ../shared/data/covid_ct_md/nifti_ds2/P001.nii.gz]
        [--out cpu_options.json]

Each line is a ratio against the baseline measured in the same process: the plan's network
(random weights: speed does not depend on them) on one batch of tiles of the plan's patch,
float32, ``torch.no_grad``, contiguous memory, the plan's batch size as tile batch, the
given thread count. Timed: the median of ``--repeats`` passes after one warm-up pass.

- ``torch.inference_mode`` instead of ``torch.no_grad``;
- channels-last 3D memory format (network and tiles);
- bfloat16 autocast (only where the CPU has native bfloat16 instructions; also the largest
  difference of the fused probabilities against float32);
- tile batch 1, 2 and 4 (seconds per tile);
- threads: 1 against ``--threads`` (meaningful on an otherwise idle machine only);
- the way back to the input grid: ``resize_linear`` (torch) against skimage's resize, both
  linear with anti-aliasing, K maps from the plan's grid to a 512 x 512 x 300 CT's grid;
- the lung mask that the volume and involvement columns need, on that CT (``--ct``
  resampled to 512 x 512 x 300; without it a demo chest of that size), against the
  network's seconds for the same case (tiles x seconds per tile, no mirroring).

Without ``--plans`` the CPU profile's plan of a small synthetic demo dataset is made first.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import statistics
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import SimpleITK as sitk
import torch

from autojoint.inference.lung import estimate_lung_mask
from autojoint.inference.resample_back import resize_linear
from autojoint.inference.sliding_window import tile_probabilities, tile_starts
from autojoint.io.image_io import geometry_of
from autojoint.networks.blocks import init_weights
from autojoint.networks.joint_net import JointNet
from autojoint.planning.schema import Plan
from autojoint.preprocessing.resample import resample_image
from autojoint.runtime.devices import cpu_supports_bfloat16, mixed_precision

REPO = Path(__file__).resolve().parents[1]
DEFAULT_CT = REPO.parent / "shared" / "data" / "covid_ct_md" / "nifti_ds2" / "P001.nii.gz"
BIG_SIZE_XYZ = (512, 512, 300)


def median_seconds(fn: Callable[[], object], repeats: int) -> float:
    """Median wall seconds of ``fn`` over ``repeats`` calls after one warm-up call."""
    fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


@contextlib.contextmanager
def _bf16() -> Iterator[None]:
    with torch.no_grad(), mixed_precision(torch.device("cpu"), "bfloat16"):
        yield


def network_options(plan: Plan, threads: int, repeats: int) -> dict[str, Any]:
    """Seconds per tile under each option, and the bfloat16 probabilities' largest error."""
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    net = JointNet(plan)
    init_weights(net)
    net.eval()
    channels = len(plan.channel_names)
    batch = max(int(plan.batch_size), 1)
    predict = tile_probabilities(net)  # the predictor's per-tile path

    def per_tile(ctx: Callable[[], Any], tiles: int = batch, channels_last: bool = False) -> float:
        x = torch.randn(tiles, channels, *plan.patch_size)
        if channels_last:
            x = x.contiguous(memory_format=torch.channels_last_3d)

        def once() -> None:
            with ctx():
                predict(x)

        return median_seconds(once, repeats) / tiles

    rows: dict[str, Any] = {"threads": threads, "tile_batch": batch}
    rows["baseline (no_grad, float32)"] = per_tile(torch.no_grad)
    rows["torch.inference_mode"] = per_tile(torch.inference_mode)
    net.to(memory_format=torch.channels_last_3d)  # type: ignore[call-overload]
    rows["channels-last 3D"] = per_tile(torch.no_grad, channels_last=True)
    net.to(memory_format=torch.contiguous_format)  # type: ignore[call-overload]
    rows["bfloat16 supported"] = cpu_supports_bfloat16()
    if rows["bfloat16 supported"]:
        rows["bfloat16 autocast"] = per_tile(_bf16)
        x = torch.randn(batch, channels, *plan.patch_size)
        with torch.no_grad():
            ref = predict(x)
        with _bf16():
            low = predict(x)
        rows["bfloat16 largest probability difference"] = float((low - ref).abs().max())
    for tiles in (1, 2, 4):
        rows[f"tile batch {tiles}"] = per_tile(torch.no_grad, tiles=tiles)
    if threads != 1:
        torch.set_num_threads(1)
        rows["1 thread"] = per_tile(torch.no_grad)
        torch.set_num_threads(threads)
    return rows


def big_ct(path: Path | None) -> sitk.Image:
    """A chest CT of 512 x 512 x 300 voxels: ``path`` resampled, or a demo chest."""
    from benchmarks.gpu_check import resample_to_size

    if path is not None and path.is_file():
        return resample_to_size(sitk.ReadImage(str(path)), BIG_SIZE_XYZ)
    from dataset_conversion.generate_demo import generate_dataset

    with tempfile.TemporaryDirectory() as tmp:
        generate_dataset(Path(tmp), num_train=1, seed=0, fov_mm=340.0, z_extent_mm=300.0)
        first = sorted((Path(tmp) / "imagesTr").glob("*.nii.gz"))[0]
        return resample_to_size(sitk.ReadImage(str(first)), BIG_SIZE_XYZ)


def grid_of(image: sitk.Image, plan: Plan) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """The input grid (z, y, x) and the plan's grid of the same field of view."""
    size = tuple(reversed(image.GetSize()))
    spacing = tuple(reversed(image.GetSpacing()))
    planned = tuple(
        max(1, round(n * s / t)) for n, s, t in zip(size, spacing, plan.target_spacing, strict=True)
    )
    return size, planned


def case_costs(
    plan: Plan, image: sitk.Image, seconds_per_tile: float, repeats: int
) -> dict[str, Any]:
    """Resampling back (torch vs skimage) and the lung mask, against the network's share."""
    size, planned = grid_of(image, plan)
    starts = [tile_starts(max(s, p), p, 0.5) for s, p in zip(planned, plan.patch_size, strict=True)]
    tiles = math.prod(len(s) for s in starts)
    maps = np.random.default_rng(0).random((plan.num_labels, *planned), dtype=np.float32)
    rows: dict[str, Any] = {
        "input grid": list(size),
        "plan grid": list(planned),
        "tiles": tiles,
        "network s (no mirroring, float32)": tiles * seconds_per_tile,
    }
    rows["resample back, torch s"] = median_seconds(lambda: resize_linear(maps, size), repeats)
    rows["resample back, skimage s"] = median_seconds(
        lambda: resample_image(maps, size, order=1), 1
    )
    ct = sitk.GetArrayFromImage(image).astype(np.float32)
    geo = geometry_of(image)
    rows["lung mask s"] = median_seconds(lambda: estimate_lung_mask(ct, geo), 1)
    return rows


def table(net_rows: dict[str, Any], case_rows: dict[str, Any]) -> str:
    """Markdown: each option's seconds and its ratio to the baseline."""
    base = net_rows["baseline (no_grad, float32)"]
    lines = [
        f"Network per tile ({net_rows['threads']} thread(s), tile batch "
        f"{net_rows['tile_batch']} unless named):",
        "",
        "| option | s per tile | ratio to baseline |",
        "|---|---|---|",
    ]
    for name, value in net_rows.items():
        if isinstance(value, float) and "difference" not in name:
            lines.append(f"| {name} | {value:.3f} | {value / base:.2f}x |")
    if "bfloat16 largest probability difference" in net_rows:
        diff = net_rows["bfloat16 largest probability difference"]
        lines.append(f"\nbfloat16: largest probability difference to float32 {diff:.4f}")
    elif not net_rows["bfloat16 supported"]:
        lines.append("\nbfloat16: this CPU has no native bfloat16 instructions (not measured)")
    torch_s, sk_s = case_rows["resample back, torch s"], case_rows["resample back, skimage s"]
    net_s = case_rows["network s (no mirroring, float32)"]
    lines += [
        "",
        f"One case of {' x '.join(map(str, case_rows['input grid']))} voxels (plan grid "
        f"{' x '.join(map(str, case_rows['plan grid']))}, {case_rows['tiles']} tiles; network "
        f"{net_s:.1f} s without mirroring in float32):",
        "",
        "| step | s | ratio |",
        "|---|---|---|",
        f"| resample back, skimage | {sk_s:.2f} | 1.00x |",
        f"| resample back, torch (used) | {torch_s:.2f} | {torch_s / sk_s:.2f}x |",
        f"| lung mask | {case_rows['lung mask s']:.2f} | "
        f"{case_rows['lung mask s'] / net_s:.2f}x the network |",
    ]
    return "\n".join(lines)


def default_plan(root: Path) -> Path:
    """The CPU profile's plan of a small synthetic demo dataset."""
    from autojoint.pipeline import plan_and_preprocess
    from dataset_conversion.generate_demo import generate_dataset

    generate_dataset(root / "raw", num_train=4, seed=0, fov_mm=200.0, z_extent_mm=120.0)
    plan_and_preprocess(root / "raw", root / "work", num_workers=1)
    return root / "work" / "plans.json"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--plans", type=Path, help="a plans.json (default: the demo's)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--ct", type=Path, default=DEFAULT_CT, help="the CT to enlarge")
    parser.add_argument("--out", type=Path, help="also write the figures as JSON here")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        plan = Plan.load(args.plans or default_plan(Path(tmp)))
    print(f"plan: patch {plan.patch_size}, batch {plan.batch_size}, spacing {plan.target_spacing}")
    net_rows = network_options(plan, args.threads, args.repeats)
    torch.set_num_threads(args.threads)
    image = big_ct(args.ct)
    case_rows = case_costs(
        plan, image, net_rows["baseline (no_grad, float32)"], min(args.repeats, 3)
    )
    print(table(net_rows, case_rows))
    if args.out is not None:
        tmp_out = args.out.with_suffix(".tmp")
        tmp_out.write_text(
            json.dumps({"network": net_rows, "case": case_rows}, indent=2), encoding="utf-8"
        )
        tmp_out.replace(args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
