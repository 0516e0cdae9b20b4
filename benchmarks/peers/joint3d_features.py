"""The two-step diagnosis a user would build on nnU-Net: mask features, then a classifier.

nnU-Net segments but does not diagnose. The usual way to get a scan-level diagnosis from it
is radiomics-style: a handful of features of each predicted lesion mask, then a small
classifier. The features follow the findings the demo's diagnoses are built from
(``dataset_conversion.demo_lesions``: DeepSC-COVID's lesion count, lesion/lung volume,
density and location):

* ``lesion_lung_ratio``: lesion volume / lung volume, the lung being autojoint's
  threshold-and-morphology lung mask of the CT (:func:`autojoint.inference.lung.estimate_lung_mask`,
  the one its predictor reports lung involvement with) united with the lesions, since a
  consolidation is soft-tissue dense and would otherwise fall out of its own lung. The demo
  generator writes no lung masks; on its scans this estimate matches the generator's own
  lung at Dice 0.999 (5 cases checked by hand).
* ``num_components``: connected lesion components (26-connectivity) of at least
  ``min_component_voxels`` voxels; a speck of a few voxels is not a lesion a reader counts.
* ``consolidation_fraction``: consolidation voxels / lesion voxels.
* ``peripheral_ratio``: share of lesion voxels within ``peripheral_mm`` of the lung boundary,
  measured in the axial slice (subpleural, as a reader judges it on axial images and as the
  generator places lesions by their in-slice radius).

A case without lesions has ratio, consolidation and peripheral features 0.

Classifier: scikit-learn ``LogisticRegression`` (``class_weight='balanced'``) on
standardised features. scikit-learn is a benchmark-only dependency (``pip install
-e .[benchmark]``) and is imported inside :func:`fit_predict_proba` only.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
from scipy import ndimage

from autojoint.inference.lung import anatomical_order, estimate_lung_mask
from autojoint.io.image_io import read_image

FEATURES = ("lesion_lung_ratio", "num_components", "consolidation_fraction", "peripheral_ratio")
CONSOLIDATION = 2
MIN_COMPONENT_VOXELS = 10


def lesion_features(
    label: np.ndarray,
    lung: np.ndarray,
    spacing: Sequence[float],
    *,
    peripheral_mm: float,
    min_component_voxels: int = MIN_COMPONENT_VOXELS,
    consolidation_value: int = CONSOLIDATION,
) -> dict[str, float]:
    """The four features of one lesion mask (names in ``FEATURES``).

    Args:
        label: label map, 0 background, any other value a lesion.
        lung: lung mask on the same grid (the lesions are added to it).
        spacing: voxel size in mm, same axis order as the arrays.
        peripheral_mm: a lesion voxel this close to the lung boundary (in its axial slice)
            is peripheral. The border of the field of view counts as boundary.
        min_component_voxels: smaller connected components are not counted.
        consolidation_value: the label value of consolidation.

    Returns:
        ``{feature: value}``, plain floats.

    Raises:
        ValueError: shapes differ, or ``spacing`` has not three positive entries.

    Shape:
        label, lung: ``(Z, Y, X)``, axis 0 the head-feet (axial slice) axis.
    """
    if label.shape != lung.shape or label.ndim != 3:
        raise ValueError(f"label {label.shape} and lung {lung.shape} must be one 3D grid")
    if len(spacing) != 3 or min(spacing) <= 0:
        raise ValueError(f"spacing must be three positive sizes in mm, got {spacing}")
    lesion = label > 0
    num_lesion = int(np.count_nonzero(lesion))
    region = np.asarray(lung, dtype=bool) | lesion
    num_lung = int(np.count_nonzero(region))
    if num_lesion == 0:
        return dict.fromkeys(FEATURES, 0.0)
    components, num = ndimage.label(lesion, structure=np.ones((3, 3, 3), dtype=bool))
    sizes = np.bincount(components.ravel(), minlength=num + 1)[1:]
    peripheral = 0
    for z in np.flatnonzero(lesion.any(axis=(1, 2))):
        # pad: the field of view's edge is a boundary too (a slice all lung has one)
        inside = np.pad(region[z], 1)
        depth = ndimage.distance_transform_edt(inside, sampling=spacing[1:])[1:-1, 1:-1]
        peripheral += int(np.count_nonzero(lesion[z] & (depth <= peripheral_mm)))
    return {
        "lesion_lung_ratio": num_lesion / num_lung,
        "num_components": float(np.count_nonzero(sizes >= min_component_voxels)),
        "consolidation_fraction": int(np.count_nonzero(label == consolidation_value)) / num_lesion,
        "peripheral_ratio": peripheral / num_lesion,
    }


def case_features(
    image_path: Path,
    mask_path: Path,
    *,
    peripheral_mm: float,
    min_component_voxels: int = MIN_COMPONENT_VOXELS,
) -> dict[str, float]:
    """:func:`lesion_features` of a CT file and a mask file on its grid, in any stored
    orientation (arrays reordered to head-feet first by the direction matrix).

    Raises:
        ValueError: the mask is not on the image's grid (names both files).
    """
    ct, geometry = read_image(image_path)
    label, mask_geometry = read_image(mask_path, dtype=np.int16)
    if label.shape != ct.shape or not geometry.matches(mask_geometry):
        raise ValueError(f"{mask_path} is not on the grid of {image_path}")
    lung = estimate_lung_mask(ct, geometry)
    order = anatomical_order(geometry)
    return lesion_features(
        np.transpose(label, order),
        np.transpose(lung, order),
        [float(geometry.spacing[a]) for a in order],
        peripheral_mm=peripheral_mm,
        min_component_voxels=min_component_voxels,
    )


def feature_matrix(features: Sequence[Mapping[str, float]]) -> np.ndarray:
    """``(N, len(FEATURES))`` float64 matrix, columns in ``FEATURES`` order."""
    return np.array([[float(f[name]) for name in FEATURES] for f in features], dtype=np.float64)


def fit_predict_proba(
    train_features: Sequence[Mapping[str, float]],
    train_diagnoses: Sequence[str],
    test_features: Sequence[Mapping[str, float]],
    classes: Sequence[str],
) -> np.ndarray:
    """Fit standardised features -> balanced logistic regression; class probabilities of
    the test cases.

    Returns:
        ``(N_test, len(classes))`` probabilities, columns in ``classes`` order (0 for a
        class absent from the training cases).

    Raises:
        ValueError: a training diagnosis is not among ``classes``, or fewer than two
            classes occur in training.
    """
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    classes = list(classes)
    unknown = sorted(set(train_diagnoses) - set(classes))
    if unknown:
        raise ValueError(f"training diagnoses {unknown} are not among the classes {classes}")
    if len(set(train_diagnoses)) < 2:
        raise ValueError("the classifier needs training cases of at least two diagnoses")
    model = make_pipeline(
        StandardScaler(), LogisticRegression(class_weight="balanced", max_iter=1000)
    )
    model.fit(feature_matrix(train_features), list(train_diagnoses))
    proba = model.predict_proba(feature_matrix(test_features))
    out = np.zeros((len(test_features), len(classes)), dtype=np.float64)
    for j, name in enumerate(model.classes_):
        out[:, classes.index(str(name))] = proba[:, j]
    return out
