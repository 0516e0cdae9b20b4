"""The Python API: load a trained or installed model once, then predict images in memory.

::

    from autojoint.api import Predictor

    predictor = Predictor.from_work_dir("WORK")          # or an installed model's folder
    result = predictor.predict(sitk.ReadImage("scan.nii.gz"))
    result.mask                # numpy uint8 (Z, Y, X) on the input grid
    result.mask_image          # the same as a SimpleITK image with the input's geometry
    result.diagnosis, result.class_probabilities

Each image goes through the per-case core of ``autojoint_predict``
(``autojoint.inference.predictor.predict_image``: preprocessing, the inference engine,
resampling back, evidence), so a prediction here equals the command's for the same image
and options; nothing is written to disk. The facade sits above the library's pipeline
(tests/test_import_layers.py) and below the CLI; docs/prediction.md, "Python API".
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import SimpleITK as sitk
import torch

from autojoint.evaluation.calibration import apply_temperature
from autojoint.inference.ensemble import DEFAULT_CHECKPOINT, Ensemble, load_ensemble
from autojoint.inference.evidence import DEFAULT_EVIDENCE, get_evidence_method
from autojoint.inference.predict_options import PredictOptions, model_folds
from autojoint.inference.predictor import predict_image
from autojoint.io.calibration import read_calibration
from autojoint.io.image_io import ImageGeometry, image_array, sitk_image
from autojoint.io.variants import resolve_variant
from autojoint.io.workdir import PLANS_FILE
from autojoint.planning.schema import Plan
from autojoint.runtime.devices import autocast_dtype, resolve_device
from autojoint.sharing.package import read_manifest

__all__ = ["Prediction", "Predictor"]

_IDENTITY = (1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0)


@dataclass(frozen=True)
class Prediction:
    """What the model says about one image, on the image's own grid.

    Attributes:
        mask: uint8 lesion labels (values as in ``Predictor.labels``).
        geometry: the input's grid (spacing ``(z, y, x)`` mm; origin and direction in ITK
            order).
        diagnosis: the predicted class (None for a segmentation-only model).
        class_probabilities: class -> probability, the folds' mean (empty without classes).
        fold_class_probabilities: ``(F, num_classes)``, each fold's (None without classes).
        probabilities: ``(K, Z, Y, X)`` float32 per-label probabilities (background first;
            1 for background outside the body crop), None when not asked for.
        evidence: float32 evidence map of the predicted class in [0, 1], None when not
            asked for or without classes.
        calibrated_probabilities: class -> ``softmax(log p / T)`` with the model's
            ``calibration.json`` temperature T (empty without one; as ``pcal_`` columns).

    Shape:
        mask, evidence ``geometry.shape``; probabilities ``(K, *geometry.shape)``.
    """

    mask: np.ndarray
    geometry: ImageGeometry
    diagnosis: str | None
    class_probabilities: dict[str, float] = field(default_factory=dict)
    fold_class_probabilities: np.ndarray | None = None
    probabilities: np.ndarray | None = None
    evidence: np.ndarray | None = None
    calibrated_probabilities: dict[str, float] = field(default_factory=dict)

    @property
    def mask_image(self) -> sitk.Image:
        """The mask as a SimpleITK image with the input's geometry (uint8)."""
        return sitk_image(self.mask, self.geometry)

    @property
    def evidence_image(self) -> sitk.Image | None:
        """The evidence map as a SimpleITK image with the input's geometry, or None."""
        return None if self.evidence is None else sitk_image(self.evidence, self.geometry)


class Predictor:
    """A model loaded once (its folds' networks on one device) that predicts images.

    Args:
        ensemble: the loaded folds (``autojoint.inference.ensemble.load_ensemble``).
        device: where the networks are.
        use_tta: mirror tiles over the axes each fold's training mirrored (as
            ``autojoint_predict`` without ``--no-tta``/``--fast``).
        step_fraction: sliding-window step as a fraction of the patch (``--step-size``).
        tile_batch: tiles per forward pass (None: the plan's batch size).
        temperature: calibrates the diagnosis probabilities (``from_work_dir``: the
            model's ``calibration.json``, as ``autojoint_predict`` does); None: none.
        precision: ``auto``, ``float32`` or ``bfloat16`` (``--precision``;
            ``runtime.devices.autocast_dtype``).
    """

    def __init__(
        self,
        ensemble: Ensemble,
        device: torch.device,
        *,
        use_tta: bool = True,
        step_fraction: float = PredictOptions.step_fraction,
        tile_batch: int | None = None,
        temperature: float | None = None,
        precision: str = PredictOptions.precision,
    ) -> None:
        if not 0 < step_fraction <= 1:
            raise ValueError(f"step_fraction must be in (0, 1], got {step_fraction}.")
        autocast_dtype(device, precision)  # refuses an unknown precision now, not per image
        self.precision = precision
        self.ensemble = ensemble
        self.device = device
        self.use_tta = use_tta
        self.step_fraction = step_fraction
        self.tile_batch = tile_batch or ensemble.plan.batch_size
        self.temperature = temperature

    @classmethod
    def from_work_dir(
        cls,
        work_dir: str | Path,
        *,
        variant: str | None = None,
        configuration: str | None = None,
        folds: Sequence[str] | None = None,
        checkpoint: str | None = None,
        device: str = "auto",
        use_tta: bool = True,
        step_fraction: float = PredictOptions.step_fraction,
        tile_batch: int | None = None,
        precision: str = PredictOptions.precision,
    ) -> Predictor:
        """Load a model from a work dir that trained it, or from an installed model's folder
        (``autojoint_install_model``): the same layout.

        Args:
            variant, configuration, checkpoint: as ``autojoint_predict``'s ``--variant``,
                ``-c``, ``-chk``. None: an installed model's own (its manifest); else the
                default variant, the plan's top-level configuration and
                ``checkpoint_final.pt``.
            folds: folds to ensemble (None: every fold holding the checkpoint).
            device: ``auto`` (CUDA, then MPS, then CPU), ``cpu``, ``cuda[:N]`` or ``mps``.

        Raises:
            FileNotFoundError: no trained fold (or no such variant).
            ValueError: a bad name, or checkpoints that do not load or differ in plan.
        """
        work_dir = Path(work_dir)
        installed = read_manifest(work_dir)
        if installed is not None:
            variant = variant or installed.variant
            configuration = configuration or installed.configuration
            checkpoint = checkpoint or installed.checkpoint
        if configuration is None:
            plans = work_dir / PLANS_FILE
            configuration = Plan.load(plans).configuration if plans.is_file() else "fullres"
        options = PredictOptions(
            folds=list(folds) if folds else None,
            configuration=configuration,
            checkpoint=checkpoint or DEFAULT_CHECKPOINT,
            variant=variant,
        )
        fold_names, variant_name = model_folds(work_dir, options)
        dev = resolve_device(device)
        ensemble = load_ensemble(
            work_dir, fold_names, dev, configuration, options.checkpoint, variant_name
        )
        calibration = read_calibration(resolve_variant(work_dir, variant, configuration))
        if calibration is not None and tuple(calibration.classes) != tuple(ensemble.plan.classes):
            raise ValueError(
                f"calibration.json of {work_dir}: fitted for classes "
                f"{list(calibration.classes)}, the model has {list(ensemble.plan.classes)}; "
                "run autojoint_calibrate again."
            )
        return cls(
            ensemble,
            dev,
            use_tta=use_tta,
            step_fraction=step_fraction,
            tile_batch=tile_batch,
            temperature=None if calibration is None else calibration.temperature,
            precision=precision,
        )

    @property
    def plan(self) -> Plan:
        """The plan the folds were trained with."""
        return self.ensemble.plan

    @property
    def labels(self) -> dict[str, int]:
        """Lesion label names -> mask values (background 0)."""
        return dict(self.plan.labels)

    @property
    def classes(self) -> tuple[str, ...]:
        """Diagnosis classes (empty for a segmentation-only model)."""
        return self.plan.classes

    def predict(
        self,
        image: sitk.Image | Sequence[sitk.Image] | np.ndarray,
        *,
        spacing: Sequence[float] | None = None,
        origin: Sequence[float] = (0.0, 0.0, 0.0),
        direction: Sequence[float] = _IDENTITY,
        evidence: str | None = DEFAULT_EVIDENCE,
        probabilities: bool = True,
    ) -> Prediction:
        """Predict one image held in memory (nothing is written).

        Args:
            image: a SimpleITK image (2D or 3D; one per channel for a multi-channel model,
                in the plan's channel order), or a numpy array ``(Z, Y, X)`` or
                ``(C, Z, Y, X)`` with ``spacing``; voxel values are read as float32 (CT in
                HU), and the input is not modified.
            spacing: mm per voxel ``(z, y, x)``, required with a numpy array (ignored for
                a SimpleITK image, which carries its own).
            origin, direction: of a numpy array, in ITK order (origin ``(x, y, z)`` mm,
                direction 9 cosines row-major); default: origin 0, identity.
            evidence: evidence method (``cam`` or ``gradcam``) or None for no map.
            probabilities: also return the per-label probabilities.

        Raises:
            ValueError: no spacing for an array, a wrong number of channels or
                dimensions, channels on different grids, an implausible spacing,
                non-finite voxels, an unknown evidence method, or an image the model
                cannot predict (a 2D image for a model of volumes, a too small scan).
        """
        if evidence is not None:
            get_evidence_method(evidence)
        data, geo = self._channels(image, spacing, origin, direction)
        plan = self.plan
        with_evidence: bool | str = evidence if evidence and plan.has_diagnosis else False
        result = predict_image(
            data,
            geo,
            plan,
            self.ensemble.nets,
            self.device,
            case_id="image",
            source="the image",
            step_fraction=self.step_fraction,
            with_evidence=with_evidence,
            tile_batch=self.tile_batch,
            mirror_axes=list(self.ensemble.mirror_axes) if self.use_tta else None,
            keep_probabilities=probabilities,
            precision=self.precision,
        )
        class_probs = {}
        diagnosis = None
        if result.diagnosis_probs is not None:
            class_probs = {
                c: float(p) for c, p in zip(plan.classes, result.diagnosis_probs, strict=True)
            }
            diagnosis = plan.classes[int(np.argmax(result.diagnosis_probs))]
        calibrated = {}
        if self.temperature is not None and result.diagnosis_probs is not None:
            scaled = apply_temperature(np.asarray(result.diagnosis_probs), self.temperature)
            calibrated = {c: float(p) for c, p in zip(plan.classes, scaled, strict=True)}
        return Prediction(
            mask=result.mask,
            geometry=geo,
            diagnosis=diagnosis,
            class_probabilities=class_probs,
            fold_class_probabilities=result.fold_diagnosis_probs,
            probabilities=result.lesion_probs,
            evidence=result.evidence,
            calibrated_probabilities=calibrated,
        )

    def _channels(
        self,
        image: sitk.Image | Sequence[sitk.Image] | np.ndarray,
        spacing: Sequence[float] | None,
        origin: Sequence[float],
        direction: Sequence[float],
    ) -> tuple[np.ndarray, ImageGeometry]:
        """The input as ``(C, Z, Y, X)`` float32 channels and their grid, checked as
        ``autojoint_predict`` checks a file."""
        if isinstance(image, np.ndarray):
            images = self._images_of_array(image, spacing, origin, direction)
        elif isinstance(image, sitk.Image):
            images = [image]
        else:
            images = list(image)
        expected = len(self.plan.channel_names)
        if len(images) != expected:
            names = ", ".join(self.plan.channel_names.values())
            raise ValueError(
                f"the model takes {expected} channel(s) ({names}), got {len(images)}; pass "
                "one image per channel in this order."
            )
        arrays, geo = [], None
        for i, img in enumerate(images):
            arr, g = image_array(img, source=f"the image (channel {i})")
            if geo is not None and not geo.matches(g):
                raise ValueError(
                    f"channel {i} lies on another grid ({g.shape} @ {g.spacing}) than channel "
                    f"0 ({geo.shape} @ {geo.spacing}); resample the channels to one grid."
                )
            geo = geo or g
            arrays.append(arr)
        assert geo is not None  # at least one channel
        return np.stack(arrays), geo

    @staticmethod
    def _images_of_array(
        array: np.ndarray,
        spacing: Sequence[float] | None,
        origin: Sequence[float],
        direction: Sequence[float],
    ) -> list[sitk.Image]:
        """A numpy volume (or channels of one) as SimpleITK images on one grid."""
        if spacing is None or len(spacing) != 3:
            raise ValueError(
                "a numpy image needs spacing=(z, y, x) in mm (the voxel size, axis order of "
                "the array); pass a SimpleITK image to use its own header."
            )
        if array.ndim not in (3, 4):
            raise ValueError(
                f"a numpy image must be (Z, Y, X) or (C, Z, Y, X), got shape {array.shape}."
            )
        if len(origin) != 3 or len(direction) != 9:
            raise ValueError("origin needs 3 values (x, y, z) and direction 9 (ITK order).")
        channels = array if array.ndim == 4 else array[None]
        geo = ImageGeometry(
            shape=(int(channels.shape[1]), int(channels.shape[2]), int(channels.shape[3])),
            spacing=(float(spacing[0]), float(spacing[1]), float(spacing[2])),
            origin=(float(origin[0]), float(origin[1]), float(origin[2])),
            direction=tuple(float(v) for v in direction),
        )
        return [sitk_image(np.asarray(c, np.float32), geo) for c in channels]
