"""Predict masks and diagnoses for a folder of scans with one or more trained folds.

Per case: preprocess exactly as in training, sliding-window segmentation at full
resolution (fold ensemble = mean of probabilities), probabilities resampled back to the
cropped input grid, argmax, pasted into the full input grid, written with the input's
geometry. The diagnosis comes from one pass over the whole-scan view.
"""

from __future__ import annotations

import csv
import io
import logging
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from autojoint.inference.sliding_window import network_probabilities
from autojoint.io.case_loading import load_channels
from autojoint.io.dataset import order_channels
from autojoint.io.files import atomic_write
from autojoint.io.image_io import ImageGeometry, write_image
from autojoint.networks.joint_net import JointNet
from autojoint.planning.schema import Plan
from autojoint.preprocessing.cropping import uncrop
from autojoint.preprocessing.preprocess import (
    PreprocessedCase,
    preprocess_arrays,
    transpose_spatial,
)
from autojoint.preprocessing.resample import resample_probabilities
from autojoint.training.checkpoint import load_checkpoint
from autojoint.training.trainer import resolve_device
from autojoint.workdir import configuration_dir, fold_dir

logger = logging.getLogger(__name__)

IMAGE_ENDINGS = (".nii.gz", ".nii", ".mha", ".mhd", ".nrrd")
DIAGNOSES_CSV = "diagnoses.csv"


@dataclass(frozen=True)
class InputCase:
    case_id: str
    paths: tuple[Path, ...]


def _split_ending(name: str) -> tuple[str, str] | None:
    for e in IMAGE_ENDINGS:
        if name.endswith(e):
            return name[: -len(e)], e
    return None


def find_input_cases(input_dir: Path, num_channels: int) -> list[InputCase]:
    """Cases in ``input_dir``: ``CASE_XXXX.ext`` channel files (nnU-Net naming), plain
    ``CASE.ext`` for single-channel plans, or sub-folders holding a DICOM series.

    Raises:
        FileNotFoundError: missing folder or no images in it.
        ValueError: a case with the wrong number of channels.
    """
    input_dir = Path(input_dir)
    if not input_dir.is_dir():
        raise FileNotFoundError(f"{input_dir}: input folder not found.")
    channels: dict[str, dict[int, Path]] = {}
    for p in sorted(input_dir.iterdir()):
        if p.name.startswith("."):
            continue
        if p.is_dir():
            channels.setdefault(p.name, {})[0] = p  # DICOM series folder
            continue
        split = _split_ending(p.name)
        if split is None:
            logger.warning("skipping %s: not an image file (%s)", p, ", ".join(IMAGE_ENDINGS))
            continue
        stem = split[0]
        m = re.match(r"^(.+)_(\d{4})$", stem)
        case, ch = (m.group(1), int(m.group(2))) if m else (stem, 0)
        channels.setdefault(case, {})[ch] = p
    if not channels:
        raise FileNotFoundError(f"{input_dir}: holds no images ({', '.join(IMAGE_ENDINGS)}).")
    return [
        InputCase(case, order_channels(files, num_channels, case, input_dir))
        for case, files in sorted(channels.items())
    ]


def load_models(
    work_dir: Path, folds: list[str], device: torch.device, configuration: str = "fullres"
) -> tuple[Plan, list[JointNet]]:
    """Load ``checkpoint_final.pt`` of each fold; all must share one plan."""
    plan: Plan | None = None
    nets = []
    for fold in folds:
        ckpt = load_checkpoint(
            fold_dir(work_dir, fold, configuration) / "checkpoint_final.pt", device
        )
        p = Plan.from_dict(ckpt["plan"], source=f"fold {fold} checkpoint")
        if plan is not None and p != plan:
            raise ValueError(
                f"fold {fold} was trained with a different plan; ensemble folds of one plan."
            )
        plan = p
        net = JointNet(p)
        net.load_state_dict(ckpt["network"])
        nets.append(net.to(device).eval())
    if plan is None:
        raise ValueError("no folds given.")
    return plan, nets


def available_folds(work_dir: Path, configuration: str = "fullres") -> list[str]:
    """Folds of ``configuration`` with a final checkpoint, used when ``-f`` is not given."""
    base = configuration_dir(work_dir, configuration)
    return sorted(
        p.parent.name.removeprefix("fold_") for p in base.glob("fold_*/checkpoint_final.pt")
    )


def to_cropped_input_order(volumes: np.ndarray, pre: PreprocessedCase, plan: Plan) -> np.ndarray:
    """Resample per-channel maps from network space (any grid covering the cropped scan,
    in the plan's axis order) to the cropped input grid in the input's array order.

    Shape:
        volumes ``(K, a, b, c)`` -> ``(K, *crop_shape)`` float32.
    """
    crop_shape = tuple(b - a for a, b in pre.bbox)
    fwd_crop_shape = tuple(crop_shape[a] for a in plan.transpose_forward)
    return transpose_spatial(
        resample_probabilities(volumes, fwd_crop_shape), plan.transpose_backward
    )


def mask_on_input_grid(probs: np.ndarray, pre: PreprocessedCase, plan: Plan) -> np.ndarray:
    """Undo preprocessing for class probabilities: resample to the cropped grid (in the
    network's axis order), transpose back to the array order, argmax, paste into the input.

    Shape:
        probs ``(K, *pre.data.shape[1:])`` -> ``pre.geometry.shape`` uint8.
    """
    mask = np.argmax(to_cropped_input_order(probs, pre, plan), axis=0).astype(np.uint8)
    return uncrop(mask, pre.bbox, pre.geometry.shape)


def evidence_on_input_grid(
    maps: list[torch.Tensor], pre: PreprocessedCase, plan: Plan
) -> np.ndarray:
    """Eq. 5 evidence maps of all classifier units (and folds), upsampled to the view,
    averaged, rectified and scaled to [0, 1] (as Grad-CAM displays are), then put on the
    input grid (0 outside the body crop).

    Shape:
        maps: each ``(1, 1, ...)`` at a unit's resolution -> ``pre.geometry.shape`` float32.
    """
    size = tuple(pre.cls_data.shape[1:])
    mode = "trilinear" if maps[0].ndim == 5 else "bilinear"
    up = [F.interpolate(m, size=size, mode=mode, align_corners=False)[0, 0] for m in maps]
    view = torch.relu(torch.stack(up).mean(dim=0)).cpu().numpy().astype(np.float32)
    peak = float(view.max())
    if peak > 0:
        view /= peak
    cropped = to_cropped_input_order(view[None], pre, plan)[0]
    return uncrop(np.clip(cropped, 0.0, 1.0), pre.bbox, pre.geometry.shape)


@dataclass(frozen=True)
class CasePrediction:
    """What the predictor produces for one case, on the input grid."""

    mask: np.ndarray
    class_probs: np.ndarray | None
    geometry: ImageGeometry
    evidence: np.ndarray | None


@torch.no_grad()
def predict_case(
    case: InputCase,
    plan: Plan,
    nets: list[JointNet],
    device: torch.device,
    *,
    step_fraction: float = 0.5,
    with_evidence: bool = False,
) -> CasePrediction:
    """Mask, diagnosis probabilities (None without classes) and, if asked, evidence maps
    of the predicted diagnosis, all on the input grid."""
    data, geo = load_channels(case.paths)
    pre = preprocess_arrays(case.case_id, data, geo, None, plan)
    probs = np.zeros((plan.num_seg_classes, *pre.data.shape[1:]), np.float32)
    view = torch.from_numpy(pre.cls_data[None]).to(device) if plan.has_diagnosis else None
    # With the cross-stitch stem, each window mixes in the case's whole-scan view, as in
    # training; without it the context is ignored.
    context = view if plan.network.cross_stitch else None
    class_probs = np.zeros(len(plan.classes), np.float32)
    unit_features = []
    for net in nets:
        probs += network_probabilities(
            net,
            pre.data,
            plan.patch_size,
            plan.num_seg_classes,
            context=context,
            step_fraction=step_fraction,
            device=device,
        )
        if view is not None:
            _, logits, feats = net.classify(view)
            class_probs += torch.softmax(logits, dim=1)[0].cpu().numpy()
            unit_features.append(feats)
    mask = mask_on_input_grid(probs / len(nets), pre, plan)
    if view is None:
        return CasePrediction(mask, None, geo, None)
    class_probs = class_probs / class_probs.sum()
    evidence = None
    if with_evidence:
        predicted = torch.tensor([int(np.argmax(class_probs))], device=device)
        maps = [
            m
            for net, feats in zip(nets, unit_features, strict=True)
            if net.cls is not None
            for m in net.cls.evidence_maps(feats, predicted)
        ]
        evidence = evidence_on_input_grid(maps, pre, plan)
    return CasePrediction(mask, class_probs, geo, evidence)


def predict_folder(
    input_dir: Path,
    output_dir: Path,
    work_dir: Path,
    *,
    folds: list[str] | None = None,
    device: str = "cpu",
    step_fraction: float = 0.5,
    configuration: str = "fullres",
    evidence: bool = False,
) -> list[str]:
    """Write ``OUT/CASE.nii.gz`` per input case and ``OUT/diagnoses.csv`` (and, with
    ``evidence``, ``OUT/CASE_evidence.nii.gz``); returns case ids."""
    dev = resolve_device(device)
    folds = folds or available_folds(work_dir, configuration)
    if not folds:
        where = fold_dir(work_dir, "*", configuration)
        raise FileNotFoundError(
            f"{where}/checkpoint_final.pt: none found; run autojoint_train "
            f"(-c {configuration}) first."
        )
    plan, nets = load_models(Path(work_dir), folds, dev, configuration)
    cases = find_input_cases(input_dir, len(plan.channel_names))
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    rows = []
    for case in tqdm(cases, desc="predict", unit="case"):
        result = predict_case(
            case, plan, nets, dev, step_fraction=step_fraction, with_evidence=evidence
        )
        write_image(result.mask, result.geometry, output_dir / f"{case.case_id}.nii.gz")
        if result.evidence is not None:
            write_image(
                result.evidence, result.geometry, output_dir / f"{case.case_id}_evidence.nii.gz"
            )
        class_probs = result.class_probs
        if class_probs is not None:
            rows.append(
                [
                    case.case_id,
                    plan.classes[int(np.argmax(class_probs))],
                    *[f"{p:.6f}" for p in class_probs],
                ]
            )
    if plan.has_diagnosis:
        buf = io.StringIO()
        writer = csv.writer(buf, lineterminator="\n")
        writer.writerow(["case", "diagnosis", *[f"p_{c}" for c in plan.classes]])
        writer.writerows(rows)
        atomic_write(output_dir / DIAGNOSES_CSV, lambda fh: fh.write(buf.getvalue()))
    logger.info("predicted %d cases with folds %s into %s", len(cases), folds, output_dir)
    return [c.case_id for c in cases]
