"""MedSeg / COVID-19-CT-Seg volumes, and MedSeg 2D slices -> autojoint raw datasets.

Volumes (``autojoint_convert_medseg``): a folder of CT volumes and a folder of lesion masks
named alike (COVID-19-CT-Seg: ``COVID-19-CT-Seg_20cases/``, ``Infection_Mask/``,
``Lung_Mask/``; MedSeg: ``rp_im/``, ``rp_msk/``, ``rp_lung_msk/``), optional lung masks
written to ``lungsTr/``. Mask values are declared with ``--label-names`` (1..K in order)
and may be remapped first (``--remap 3:0`` drops MedSeg's pleural effusion). Intensities
are copied as they are: some COVID-19-CT-Seg cases (the Radiopaedia ones) hold 0..255,
not HU, and the dataset.json channel name (``--channel-name``) is the user's to choose.

Slices (``autojoint_convert_medseg_slices``): the 2D MedSeg slices as Inf-Net ships them
(``TrainingSet/MultiClassInfection-Train/{Imgs/*.jpg, GT/*.png}`` and the same under
``TestingSet/MultiClassInfection-Test``; masks 0 background, 1 ground-glass, 2
consolidation). Each slice becomes a 2D NIfTI image ``(Y, X)`` with spacing 1 x 1 mm:
the JPGs carry no spacing, and 8-bit values are no HU, so the channel is named
``CT_8bit`` (per-image z-scoring, not CT normalisation). Training slices go to
``imagesTr``/``labelsTr``, test slices to ``imagesTs``/``labelsTs``.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import PIL.Image
import SimpleITK as sitk

from dataset_conversion.pairing import list_images, pair_masks, safe_case_id
from dataset_conversion.raw_writer import (
    ConversionError,
    ConvertedCase,
    add_common_arguments,
    clean_image,
    read_image,
    run_converter,
    snap_to_grid,
    to_uint8_label,
    write_raw_dataset,
)

SLICE_LABELS: dict[str, int] = {"background": 0, "ground_glass": 1, "consolidation": 2}
SLICE_CHANNEL = "CT_8bit"
SLICE_SPACING_MM = 1.0
INFNET_SPLITS = (
    ("Tr", Path("TrainingSet/MultiClassInfection-Train")),
    ("Ts", Path("TestingSet/MultiClassInfection-Test")),
)


def parse_remap(items: list[str]) -> dict[int, int]:
    """``["3:0", "2:1"]`` -> ``{3: 0, 2: 1}``.

    Raises:
        ConversionError: an item is not ``OLD:NEW`` with integers.
    """
    out = {}
    for item in items:
        try:
            old, new = (int(v) for v in item.split(":"))
        except ValueError as err:
            raise ConversionError(
                f"--remap {item!r}: expected OLD:NEW integers, e.g. 3:0."
            ) from err
        out[old] = new
    return out


def remap_mask(mask: sitk.Image, remap: dict[int, int], binarize: bool) -> sitk.Image:
    """Apply ``remap`` to the mask values, then (``binarize``) every non-zero value -> 1."""
    arr = sitk.GetArrayFromImage(mask)
    if remap:
        out = arr.copy()
        for old, new in remap.items():
            out[arr == old] = new
        arr = out
    if binarize:
        arr = (arr > 0).astype(np.uint8)
    img = sitk.GetImageFromArray(arr)
    img.CopyInformation(mask)
    return img


def _volume_cases(
    images_dir: Path,
    masks_dir: Path | None,
    lungs_dir: Path | None,
    labels: dict[str, int],
    remap: dict[int, int],
    binarize: bool,
    prefix: str,
) -> tuple[int, Iterator[ConvertedCase]]:
    images = list_images(images_dir)
    if not images:
        raise ConversionError(f"{images_dir}: no image files (.nii.gz, .nii, .mha, .nrrd).")
    masks = pair_masks(images, masks_dir)
    lungs = pair_masks(images, lungs_dir) if lungs_dir is not None else {}

    def gen() -> Iterator[ConvertedCase]:
        for key, path in images.items():
            image = clean_image(read_image(path))
            label = lung = None
            mask_path = masks[key]
            if mask_path is not None:
                raw = remap_mask(read_image(mask_path), remap, binarize)
                label = snap_to_grid(to_uint8_label(raw, str(mask_path), len(labels)), image)
            lung_path = lungs.get(key)
            if lung_path is not None:
                lung = snap_to_grid(
                    to_uint8_label(remap_mask(read_image(lung_path), {}, True), str(lung_path), 2),
                    image,
                )
            yield ConvertedCase(
                safe_case_id(key, prefix),
                (image,),
                label,
                None,
                str(path),
                lung=lung,
                label_source=str(mask_path or ""),
            )

    return len(images), gen()


def convert_medseg_volumes(
    images_dir: Path,
    out_dir: Path,
    *,
    masks_dir: Path | None,
    lungs_dir: Path | None = None,
    label_names: list[str] | None = None,
    remap: dict[int, int] | None = None,
    binarize: bool = False,
    channel_name: str = "CT",
    prefix: str = "",
    overwrite: bool = False,
) -> dict[str, int]:
    """Convert paired CT volumes and lesion masks (segmentation-only dataset).

    Args:
        label_names: names of mask values 1..K (default ``["lesion"]``).
        remap: mask value changes applied before the check (e.g. ``{3: 0}``).
        binarize: merge every non-zero value into label 1 (after ``remap``).
        channel_name: ``CT`` for HU volumes; anything else gets per-image z-scoring.
        prefix: prepended to every case id (e.g. ``rp_`` to keep two sources apart).

    Raises:
        ConversionError: unpaired masks, undeclared mask values, masks off the image grid.
    """
    names = ["lesion"] if binarize or not label_names else list(label_names)
    labels = {"background": 0, **{n: i + 1 for i, n in enumerate(names)}}
    total, cases = _volume_cases(
        Path(images_dir),
        Path(masks_dir) if masks_dir else None,
        Path(lungs_dir) if lungs_dir else None,
        labels,
        remap or {},
        binarize,
        prefix,
    )
    return write_raw_dataset(
        out_dir,
        cases,
        labels=labels,
        channel_names={"0": channel_name},
        name=Path(images_dir).name,
        description=f"CT volumes from {Path(images_dir).name} with lesion masks from "
        f"{Path(masks_dir).name if masks_dir else '(none)'}"
        + (f" and lung masks from {Path(lungs_dir).name} (lungsTr/)" if lungs_dir else ""),
        num_cases=total,
        overwrite=overwrite,
    )


def read_slice(path: Path) -> np.ndarray:
    """One 8-bit slice or mask as a ``(Y, X)`` array.

    Pillow, not SimpleITK, reads them: SimpleITK expands a palette PNG (Inf-Net's masks) to
    RGB colours, Pillow keeps the palette indices, which are the label values. A grey RGB
    export is reduced to one channel.

    Raises:
        ConversionError: unreadable file, or a colour image whose channels differ.
    """
    try:
        with PIL.Image.open(path) as im:
            arr = np.asarray(im.convert("RGB") if im.mode not in ("L", "P", "RGB") else im)
    except (OSError, ValueError) as err:
        raise ConversionError(
            f"{path}: unreadable image ({err}); re-download or remove it."
        ) from err
    if arr.ndim == 3:
        if not (
            np.array_equal(arr[..., 0], arr[..., 1]) and np.array_equal(arr[..., 0], arr[..., 2])
        ):
            raise ConversionError(f"{path}: a colour image; expected a grey-scale CT slice.")
        arr = arr[..., 0]
    return arr


def _slice_image(arr: np.ndarray) -> sitk.Image:
    img = sitk.GetImageFromArray(arr)
    img.SetSpacing((SLICE_SPACING_MM, SLICE_SPACING_MM))
    return img


def _slice_cases(pairs: list[tuple[str, Path, Path]], prefix: str) -> Iterator[ConvertedCase]:
    for split, img_path, mask_path in pairs:
        image = read_slice(img_path)
        mask = read_slice(mask_path)
        if mask.shape != image.shape:
            raise ConversionError(
                f"{mask_path}: mask shape {mask.shape} differs from slice {img_path.name} "
                f"{image.shape}."
            )
        label = to_uint8_label(_slice_image(mask), str(mask_path), len(SLICE_LABELS))
        key = img_path.name.rsplit(".", 1)[0]
        yield ConvertedCase(
            safe_case_id(key, f"{prefix}{split.lower()}_"),
            (_slice_image(image.astype(np.uint8)),),
            label,
            None,
            str(img_path),
            split=split,
        )


def find_slice_pairs(root: Path) -> list[tuple[str, Path, Path]]:
    """``(split, image, mask)`` for Inf-Net's multi-class folders, or ``root/{Imgs,GT}``.

    Raises:
        ConversionError: neither layout found, or an image without its mask.
    """
    folders = [(s, root / sub) for s, sub in INFNET_SPLITS if (root / sub / "Imgs").is_dir()]
    if not folders and (root / "Imgs").is_dir():
        folders = [("Tr", root)]
    if not folders:
        raise ConversionError(
            f"{root}: neither Inf-Net's TrainingSet/MultiClassInfection-Train/Imgs nor Imgs/ "
            "found; point -i at the Dataset folder."
        )
    out = []
    for split, folder in folders:
        images = list_images(folder / "Imgs")
        masks = pair_masks(images, folder / "GT")
        for key in sorted(images, key=lambda k: (len(k), k)):
            mask = masks[key]
            if mask is None:
                raise ConversionError(f"{images[key]}: no mask with this name in {folder / 'GT'}.")
            out.append((split, images[key], mask))
    return out


def convert_medseg_slices(
    root: Path, out_dir: Path, *, prefix: str = "medseg_", overwrite: bool = False
) -> dict[str, int]:
    """Convert the 2D MedSeg slices (Inf-Net layout) into 2D NIfTI cases.

    Raises:
        ConversionError: see :func:`find_slice_pairs`; mask values outside 0..2.
    """
    pairs = find_slice_pairs(Path(root))
    return write_raw_dataset(
        out_dir,
        _slice_cases(pairs, prefix),
        labels=SLICE_LABELS,
        channel_names={"0": SLICE_CHANNEL},
        name="MedSegSlices",
        description="MedSeg COVID-19 2D CT slices (8-bit, lung-cropped, no HU) with "
        "ground-glass / consolidation masks; 2D images, spacing 1 mm assumed (unknown).",
        num_cases=len(pairs),
        overwrite=overwrite,
    )


def main(argv: list[str] | None = None) -> int:
    """``autojoint_convert_medseg``: see ``--help``."""
    parser = argparse.ArgumentParser(
        prog="autojoint_convert_medseg",
        description="Convert CT volumes + lesion masks named alike (MedSeg, COVID-19-CT-Seg) "
        "into an autojoint raw dataset; optional lung masks go to lungsTr/.",
    )
    parser.add_argument("-i", "--images", required=True, type=Path, help="folder of CT volumes")
    parser.add_argument("-m", "--masks", type=Path, default=None, help="folder of lesion masks")
    parser.add_argument("--lungs", type=Path, default=None, help="folder of lung masks")
    add_common_arguments(parser)
    parser.add_argument(
        "--label-names",
        nargs="+",
        default=None,
        help="names of mask values 1..K (default: lesion)",
    )
    parser.add_argument("--remap", nargs="+", default=[], help="OLD:NEW mask values, e.g. 3:0")
    parser.add_argument("--binarize", action="store_true", help="merge all lesion labels into 1")
    parser.add_argument("--channel-name", default="CT", help="dataset.json channel (default CT)")
    parser.add_argument("--prefix", default="", help="prefix of every case id")
    args = parser.parse_args(argv)
    return run_converter(
        parser,
        lambda: convert_medseg_volumes(
            args.images,
            args.output,
            masks_dir=args.masks,
            lungs_dir=args.lungs,
            label_names=args.label_names,
            remap=parse_remap(args.remap),
            binarize=args.binarize,
            channel_name=args.channel_name,
            prefix=args.prefix,
            overwrite=args.overwrite,
        ),
    )


def main_slices(argv: list[str] | None = None) -> int:
    """``autojoint_convert_medseg_slices``: see ``--help``."""
    parser = argparse.ArgumentParser(
        prog="autojoint_convert_medseg_slices",
        description="Convert the 2D MedSeg COVID-19 slices (Inf-Net's Dataset folder: JPG "
        "slices, PNG masks 0 background, 1 ground-glass, 2 consolidation) into 2D NIfTI "
        "cases with spacing 1 mm.",
    )
    parser.add_argument("-i", "--input", required=True, type=Path, help="Inf-Net Dataset folder")
    add_common_arguments(parser)
    parser.add_argument("--prefix", default="medseg_", help="prefix of every case id")
    args = parser.parse_args(argv)
    return run_converter(
        parser,
        lambda: convert_medseg_slices(
            args.input, args.output, prefix=args.prefix, overwrite=args.overwrite
        ),
    )


if __name__ == "__main__":
    sys.exit(main())
