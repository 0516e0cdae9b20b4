"""The plan file (``plans.json``): the single source of truth every later stage reads.

The dataclasses below are the schema: :meth:`Plan.from_dict` checks and builds a plan from
their field types (``autojoint.io.typed_json``), bounds and allowed values are field
metadata (:func:`constraint`), and tests/test_schemas.py checks that
``plans/plans.schema.json`` states the same fields, types and bounds.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from autojoint import __version__
from autojoint.io.files import read_json, write_json
from autojoint.io.typed_json import constraint, constraint_problems, field_problems, from_json
from autojoint.io.workdir import PLANS_FILE

PLAN_SCHEMA_VERSION = 1

# Ways to fuse the deep-supervision scales into one map (NetworkOptions.fusion): "softmax"
# of sum_i eta_i * UP(S_i) or MultiR-Net's sum of sigmoids, see
# autojoint.networks.fusion.fused_logits and docs/methods.md.
FUSIONS = ("softmax", "sigmoid_sum")
# What the classifier reads besides the image (NetworkOptions.classifier_input;
# lesion_map_channels, autojoint.networks.joint_net.JointNet._diagnose).
CLASSIFIER_INPUTS = ("concat", "labels", "multiply", "image")
# Training schedules (TrainingOptions.schedule; autojoint.training.schedule).
SCHEDULES = ("joint", "two-stage")
# Intensity normalisation schemes (ChannelNormalization.scheme).
NORMALIZATION_SCHEMES = ("ct", "zscore")
# What the top level of a plan is, and what Plan.for_configuration accepts.
CONFIGURATIONS = ("fullres", "lowres", "2d")
# Lung-field use in preprocessing (autojoint.preprocessing.lung_mask): "off" crops to the
# body as before; "crop" crops to the lungs plus a margin; "mask" also sets every voxel
# outside the lungs to the channel minimum after normalisation (DeepSC-COVID masks the CT).
LUNG_MASK_MODES = ("off", "crop", "mask")
# The smallest batch a plan may hold. The planner never fits fewer than 2 samples (as
# nnU-Net), and foreground oversampling forces round(batch / 3) samples onto a lesion: at
# batch 1 that is none, so a patch would never be centred on a lesion.
MIN_BATCH_SIZE = 2

Triple = tuple[int, int, int]


@dataclass(frozen=True)
class Topology:
    """U-Net topology, one entry per resolution stage (stage 0 = full resolution).

    ``strides[0]`` is always ``(1, 1, 1)``; ``strides[s]`` downsamples into stage ``s``.
    """

    features_per_stage: tuple[int, ...]
    kernel_sizes: tuple[Triple, ...]
    strides: tuple[Triple, ...]

    @property
    def num_stages(self) -> int:
        return len(self.features_per_stage)

    @property
    def total_stride(self) -> Triple:
        out = [1, 1, 1]
        for s in self.strides:
            out = [o * v for o, v in zip(out, s, strict=True)]
        return (out[0], out[1], out[2])


@dataclass(frozen=True)
class ChannelNormalization:
    """Intensity normalisation of one channel.

    ``scheme`` is ``"ct"`` (clip to ``[clip_low, clip_high]`` then ``(x - mean) / std`` with
    dataset statistics) or ``"zscore"`` (per-image mean/std; clip fields unused).
    """

    scheme: str = field(metadata=constraint(choices=NORMALIZATION_SCHEMES))
    clip_low: float
    clip_high: float
    mean: float
    std: float


@dataclass(frozen=True)
class LossWeights:
    """Weights of the total loss L = seg * L_seg + cls * L_cls + task_aware * L_ta
    (docs/methods.md, "The total loss")."""

    seg: float = field(metadata=constraint(minimum=0))
    cls: float = field(metadata=constraint(minimum=0))
    task_aware: float = field(metadata=constraint(minimum=0))


def lesion_map_channels(classifier_input: str, num_labels: int) -> int:
    """Channels the lesion map adds to the classifier's input: the union's probability
    (``concat``), one probability per foreground label of ``num_labels`` (``labels``), none
    for ``multiply`` and ``image``."""
    return {"concat": 1, "labels": num_labels - 1}.get(classifier_input, 0)


@dataclass(frozen=True, kw_only=True)
class NetworkOptions:
    """Ablation switches of the joint network (DeepSC-COVID, MultiR-Net and MSD-Net;
    docs/architecture.md, "Network switches").

    Attributes:
        reverse_attention: MultiR-Net reverse attention on every skip connection.
        cross_stitch: DeepSC-COVID inception stems + cross-stitch unit for the two views.
        classifier_input: ``"concat"`` (DeepSC: image and lesion map as channels),
            ``"labels"`` (image and one probability channel per lesion label),
            ``"multiply"`` (MultiR-Net: image x lesion map) or ``"image"`` (the image alone:
            no segmentation output reaches the diagnosis; a single-task baseline).
        detach_lesion_input: the classifier reads the lesion map without passing its
            gradient back, so neither the diagnosis loss nor the task-aware loss (whose
            evidence maps come from the classifier reading that map) reaches the U-Net
            through it, and (with the default ``loss.task_aware_gradient=evidence``) the
            U-Net learns from the segmentation losses alone. On by
            default: end-to-end training let the diagnosis reshape the masks and cost
            lesion Dice at longer budgets (docs/benchmarks.md, "64 epochs"); the published
            presets, trained end to end, turn it off. With the cross-stitch stem the
            diagnosis still trains the shared stem. No effect with ``image`` (no lesion
            map reaches the classifier).
        refinement_passes: MultiR-Net iterative refinement passes (0 = off).
        pyramid_conv: MSD-Net pyramid convolution block after every encoder stage.
        channel_attention: MSD-Net channel attention fusing each skip into the decoder.
        residual_refinement: MSD-Net residual refinement block on every decoder stage.
        fusion: how the scales S_i become the final map: ``"softmax"`` of
            sum_i eta_i * UP(S_i) (DeepSC-COVID) or ``"sigmoid_sum"``, MultiR-Net's
            sum_i sigmoid(eta_i * UP(S_i)) read per class and normalised
            (``autojoint.networks.fusion.fused_logits``).
    """

    reverse_attention: bool = False
    cross_stitch: bool = False
    classifier_input: str = field(default="concat", metadata=constraint(choices=CLASSIFIER_INPUTS))
    detach_lesion_input: bool = True
    refinement_passes: int = field(default=0, metadata=constraint(minimum=0))
    pyramid_conv: bool = False
    channel_attention: bool = False
    residual_refinement: bool = False
    fusion: str = field(default="softmax", metadata=constraint(choices=FUSIONS))


@dataclass(frozen=True)
class TrainingOptions:
    """How the plan asks to be trained; the trainer's own options (epochs, optimiser, device)
    stay in ``TrainerConfig``.

    Attributes:
        schedule: ``"joint"`` (nnU-Net: every parameter and loss term from the start) or
            ``"two-stage"`` (DeepSC-COVID: pre-train each path, then fine-tune jointly).
            ``autojoint_train`` follows it unless given ``--schedule``.
    """

    schedule: str = field(default="joint", metadata=constraint(choices=SCHEDULES))


TASK_AWARE_GRADIENTS = ("evidence", "segmentation", "both")
"""Which side of the task-aware loss learns from it (``LossOptions.task_aware_gradient``;
docs/methods.md, "The task-aware loss"): ``evidence``
(the classifier's maps move towards the lesion maps, S detached), ``segmentation`` (S moves
towards the evidence, V detached) or ``both``."""


@dataclass(frozen=True)
class LossOptions:
    """Which segmentation loss and its parameters (names from ``autojoint.losses`` registry).

    Attributes:
        segmentation: ``"dice_ce"`` (nnU-Net), ``"dice_focal"`` (DeepSC-COVID),
            ``"focal_tversky"`` (MultiR-Net) or ``"focal"`` (MSD-Net: class-weighted
            multi-class focal loss).
        focal_alpha, focal_gamma: focal loss lesion/background balance and hardness.
        voxel_class_weights: one weight per segmentation class (background first) for the
            ``"focal"`` loss, planned from the training set's voxel frequencies; empty means
            uniform.
        tversky_alpha, tversky_beta, tversky_gamma: focal Tversky weights of false
            negatives, false positives, and the exponent 1/gamma.
        batch_dice: ``dice_ce``'s Dice pooled over the batch (nnU-Net's batch Dice) instead of
            per sample.
        weighted_ce: ``dice_ce``'s cross-entropy weighted per voxel by
            ``ce_class_weights``.
        ce_class_weights: one weight per segmentation label (background first) for
            ``dice_ce``'s cross-entropy, planned from how rare each lesion label is among
            the lesion voxels; empty means uniform.
        task_aware_gradient: which side of the task-aware loss learns from it:
            ``"evidence"`` (the classifier's evidence maps, lesion maps detached),
            ``"segmentation"`` or ``"both"`` (docs/methods.md, "The task-aware loss").
    """

    segmentation: str = "dice_ce"
    focal_alpha: float = 0.25
    focal_gamma: float = 2.0
    tversky_alpha: float = 0.7
    tversky_beta: float = 0.3
    tversky_gamma: float = 4.0 / 3.0
    voxel_class_weights: tuple[float, ...] = field(
        default=(), metadata=constraint(exclusive_minimum=0)
    )
    batch_dice: bool = False
    weighted_ce: bool = False
    ce_class_weights: tuple[float, ...] = field(
        default=(), metadata=constraint(exclusive_minimum=0)
    )
    task_aware_gradient: str = field(
        default="evidence", metadata=constraint(choices=TASK_AWARE_GRADIENTS)
    )


@dataclass(frozen=True)
class SubConfiguration:
    """A configuration stored inside a plan beside its top-level one: the fields in which it
    differs from the top level (:meth:`Plan.for_configuration` puts them there).

    ``Plan.lowres``: planned when the full-resolution patch covers less than a quarter of
    the median scan, so a second network can see more context (nnU-Net's 3d_lowres).
    ``Plan.two_d``: the 2d configuration of a 3D dataset (patch ``(1, py, px)``, a topology
    that never pools or convolves along axis 0), as nnU-Net's 2d.
    """

    target_spacing: tuple[float, float, float]
    median_shape: Triple
    patch_size: Triple
    batch_size: int = field(metadata=constraint(minimum=MIN_BATCH_SIZE))
    classification_shape: Triple | None
    topology: Topology
    eta: tuple[float, ...] = field(metadata=constraint(minimum=0))
    estimated_memory_gb: float = field(metadata=constraint(minimum=0))
    view_eta: tuple[float, ...] = field(default=(), metadata=constraint(minimum=0))


def is_slice_topology(patch_size: Triple, topology: Topology) -> bool:
    """True if a 2d configuration's patch and topology stay within one slice: patch
    ``(1, py, px)``, kernel and stride 1 along axis 0 in every stage."""
    return patch_size[0] == 1 and all(
        k[0] == 1 and s[0] == 1
        for k, s in zip(topology.kernel_sizes, topology.strides, strict=True)
    )


@dataclass(frozen=True)
class Plan:
    """Everything the preprocessor, trainer and predictor need; spacings/shapes ``(z, y, x)``.

    Attributes:
        classification_shape: shape of the whole-scan classification view; None when the
            dataset has no diagnosis classes (no view).
        configuration: what the top level is: ``fullres`` (3D data), ``2d`` (2D data), or
            the configuration a checkpoint was trained with (:meth:`for_configuration`).
        is_2d: the dataset holds 2D images (each one slice); its top level is the ``2d``
            configuration, and the model also predicts volumes slice by slice. False for a
            3D dataset, also in its ``2d`` configuration.
        lowres, two_d: the other configurations of a 3D dataset, or None.
    """

    channel_names: dict[str, str]
    labels: dict[str, int] = field(metadata=constraint(minimum=0))
    classes: tuple[str, ...]
    target_spacing: tuple[float, float, float]
    median_shape: Triple
    patch_size: Triple
    batch_size: int = field(metadata=constraint(minimum=MIN_BATCH_SIZE))
    classification_shape: Triple | None
    topology: Topology
    eta: tuple[float, ...] = field(metadata=constraint(minimum=0))
    normalization: tuple[ChannelNormalization, ...]
    loss_weights: LossWeights
    class_weights: tuple[float, ...] = field(metadata=constraint(minimum=0))
    device_profile: str
    memory_budget_gb: float = field(metadata=constraint(exclusive_minimum=0))
    estimated_memory_gb: float = field(metadata=constraint(minimum=0))
    transpose_forward: Triple = (0, 1, 2)
    configuration: str = field(default="fullres", metadata=constraint(choices=CONFIGURATIONS))
    is_2d: bool = False
    lowres: SubConfiguration | None = None
    two_d: SubConfiguration | None = None
    network: NetworkOptions = field(default_factory=NetworkOptions)
    loss: LossOptions = field(default_factory=LossOptions)
    training: TrainingOptions = field(default_factory=TrainingOptions)
    reasons: dict[str, str] = field(default_factory=dict)
    case_counts: dict[str, int] = field(default_factory=dict, metadata=constraint(minimum=0))
    lung_mask: str = field(default="off", metadata=constraint(choices=LUNG_MASK_MODES))
    view_eta: tuple[float, ...] = field(default=(), metadata=constraint(minimum=0))
    schema_version: int = PLAN_SCHEMA_VERSION
    autojoint_version: str = __version__

    @property
    def classification_eta(self) -> tuple[float, ...]:
        """eta of the whole-scan view: ``view_eta``, or ``eta`` for plans without one."""
        return self.view_eta or self.eta

    @property
    def num_labels(self) -> int:
        """Segmentation output channels: background plus every lesion label."""
        return len(self.labels)

    def for_configuration(self, name: str) -> Plan:
        """This plan as seen by configuration ``name`` (``fullres``, ``lowres`` or ``2d``).

        A 3D dataset's plan is ``fullres`` at the top level, with ``lowres`` and ``2d``
        inside; a 2D dataset's plan is ``2d`` at the top level and has no other.

        Raises:
            ValueError: unknown name, or the plan has no such configuration.
        """
        if name not in CONFIGURATIONS:
            raise ValueError(f"unknown configuration '{name}'; available: {CONFIGURATIONS}.")
        if name == self.configuration:
            return self
        if self.configuration == "2d" and self.two_d is None:
            raise ValueError(
                f"this plan has no '{name}' configuration: the dataset holds 2D images, whose "
                "only configuration is 2d. Pass -c 2d."
            )
        sub = {"lowres": self.lowres, "2d": self.two_d}.get(name)
        if self.configuration != "fullres" or sub is None:
            why = (
                "the full-resolution patch already covers at least a quarter of the median "
                "scan. Use -c fullres."
                if name == "lowres"
                else f"it is the '{self.configuration}' configuration of a plan."
            )
            raise ValueError(f"this plan has no '{name}' configuration: {why}")
        return replace(
            self,
            target_spacing=sub.target_spacing,
            median_shape=sub.median_shape,
            patch_size=sub.patch_size,
            batch_size=sub.batch_size,
            classification_shape=sub.classification_shape,
            topology=sub.topology,
            eta=sub.eta,
            view_eta=sub.view_eta,
            estimated_memory_gb=sub.estimated_memory_gb,
            configuration=name,
            lowres=None,
            two_d=None,
        )

    @property
    def transpose_backward(self) -> Triple:
        """Inverse of ``transpose_forward`` (network order back to array order)."""
        inv = [0, 0, 0]
        for i, a in enumerate(self.transpose_forward):
            inv[a] = i
        return (inv[0], inv[1], inv[2])

    @property
    def has_diagnosis(self) -> bool:
        return len(self.classes) > 0

    def save(self, path: Path) -> None:
        write_json(asdict(self), path)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any], source: str = "plan") -> Plan:
        """Check and build a plan from the dict :meth:`save` writes (or a checkpoint holds);
        plans of older autojoint versions are read as :func:`_upgrade` says.

        Raises:
            ValueError: not an object, another schema_version, a key missing or of the
                wrong type, or an inconsistent plan (:meth:`validate`); naming ``source``.
        """
        if not isinstance(d, Mapping):
            raise ValueError(
                f"{source}: must hold a JSON object (a plan), found {type(d).__name__}; "
                "rerun autojoint_plan."
            )
        version = d.get("schema_version")
        if version != PLAN_SCHEMA_VERSION:
            raise ValueError(
                f"{source}: plan schema_version {version} is not supported (expected "
                f"{PLAN_SCHEMA_VERSION}); rerun autojoint_plan with this autojoint version."
            )
        d = _upgrade(d)
        mismatches = field_problems(cls, d)
        if mismatches:
            raise ValueError(
                f"{source}: malformed plan ({'; '.join(mismatches[:8])}"
                f"{' ...' if len(mismatches) > 8 else ''}): it does not match the plan schema. "
                "Rerun autojoint_plan instead of editing plans.json by hand."
            )
        plan = from_json(cls, d)
        problems = plan.validate()
        if problems:
            raise ValueError(f"{source}: invalid plan: {'; '.join(problems)}.")
        return plan

    def validate(self) -> list[str]:
        """Problems of this plan (empty when valid): values outside their field's bounds or
        choices, and the consistency a schema can't say."""
        out = constraint_problems(self)
        for name in ("target_spacing", "median_shape", "patch_size"):
            v = getattr(self, name)
            if len(v) != 3 or any(x <= 0 for x in v):
                out.append(f"{name} must be 3 positive numbers, got {list(v)}")
        topo = self.topology
        if not (len(topo.features_per_stage) == len(topo.kernel_sizes) == len(topo.strides) > 0):
            out.append("topology lists must have one entry per stage")
        elif any(len(s) != 3 or min(s) < 1 for s in topo.strides + topo.kernel_sizes):
            out.append("topology strides and kernel sizes must be 3 positive ints each")
        elif any(p % s for p, s in zip(self.patch_size, topo.total_stride, strict=True)):
            out.append(f"patch_size {self.patch_size} not divisible by {topo.total_stride}")
        if len(self.eta) != len(topo.strides) or abs(sum(self.eta) - 1) > 1e-6:
            out.append("eta needs one weight per stage, summing to 1")
        if self.view_eta and (
            len(self.view_eta) != len(topo.strides) or abs(sum(self.view_eta) - 1) > 1e-6
        ):
            out.append("view_eta needs one weight per stage, summing to 1 (or none)")
        if len(self.normalization) != len(self.channel_names):
            out.append("normalization needs one entry per channel")
        if len(self.class_weights) != len(self.classes):
            out.append("class_weights needs one weight per class")
        out += _view_problems("", self.classification_shape, self.has_diagnosis)
        if self.is_2d and (
            self.configuration != "2d"
            or self.median_shape[0] != 1
            or self.lowres is not None
            or self.two_d is not None
        ):
            out.append(
                "is_2d (a dataset of 2D images) needs the 2d configuration at the top level, "
                "median_shape (1, y, x) and no lowres or two_d"
            )
        for key, sub in (("lowres", self.lowres), ("two_d", self.two_d)):
            if sub is None:
                continue
            out += _view_problems(f"{key} ", sub.classification_shape, self.has_diagnosis)
            lr_patch, lr_stride = sub.patch_size, sub.topology.total_stride
            if any(p % s for p, s in zip(lr_patch, lr_stride, strict=True)):
                out.append(f"{key} patch_size {lr_patch} not divisible by {lr_stride}")
            if len(sub.eta) != sub.topology.num_stages:
                out.append(f"{key} eta needs one weight per stage")
        if self.two_d is not None and not is_slice_topology(
            self.two_d.patch_size, self.two_d.topology
        ):
            out.append("two_d must have patch (1, py, px) and kernel/stride 1 along axis 0")
        if self.configuration == "2d" and not is_slice_topology(self.patch_size, self.topology):
            out.append("a 2d configuration needs patch (1, py, px), kernel/stride 1 along axis 0")
        if sorted(self.transpose_forward) != [0, 1, 2]:
            out.append(f"transpose_forward {list(self.transpose_forward)} is not a permutation")
        weights = self.loss.voxel_class_weights
        if weights and len(weights) != len(self.labels):
            out.append("loss.voxel_class_weights needs one positive weight per label (or none)")
        ce_weights = self.loss.ce_class_weights
        if ce_weights and len(ce_weights) != len(self.labels):
            out.append("loss.ce_class_weights needs one positive weight per label (or none)")
        if sorted(self.labels.values()) != list(range(len(self.labels))):
            out.append("labels must map names to 0..K")
        return out

    @classmethod
    def load(cls, path: Path) -> Plan:
        return cls.from_dict(read_json(path), source=str(path))

    @classmethod
    def load_configuration(cls, work_dir: Path, configuration: str) -> Plan:
        """``WORK/plans.json`` as configuration ``configuration`` sees it: what training
        starts from and what prediction compares a checkpoint's plan with."""
        return cls.load(Path(work_dir) / PLANS_FILE).for_configuration(configuration)


def _view_problems(prefix: str, shape: Triple | None, has_diagnosis: bool) -> list[str]:
    """A classification view of 3 positive sizes exactly when there are diagnosis classes."""
    if shape is None:
        return (
            [f"{prefix}classification_shape is null but the plan has classes"]
            if has_diagnosis
            else []
        )
    if not has_diagnosis:
        return [f"{prefix}classification_shape must be null: the plan has no classes"]
    if len(shape) != 3 or min(shape) < 1:
        return [f"{prefix}classification_shape must be 3 positive numbers, got {list(shape)}"]
    return []


def _upgrade(d: Mapping[str, Any]) -> dict[str, Any]:
    """A plan dict of an older autojoint version (same schema_version) in today's form.

    Keys added since default to their dataclass values, except:

    * ``is_2d`` (added later): a plan without it is of 2D images when its top level is
      the ``2d`` configuration with a median of one slice (how it used to be inferred);
    * ``classification_shape`` ``[0, 0, 0]`` (no diagnosis classes) becomes ``null``, also
      in ``lowres`` and ``two_d``;
    * ``autojoint_version`` absent reads as ``"unknown"``;
    * ``network.detach_lesion_input`` absent (also with no ``network`` section at all)
      reads as ``false``: such a plan was trained end to end, and resuming it must go on
      that way (the default is now ``true``).

    Malformed values are left for :func:`field_problems` to report.
    """
    out = dict(d)
    if "is_2d" not in out:
        median = out.get("median_shape")
        out["is_2d"] = (
            out.get("configuration") == "2d"
            and isinstance(median, list | tuple)
            and len(median) == 3
            and median[0] == 1
        )
    for key in ("lowres", "two_d"):
        if isinstance(out.get(key), Mapping):
            out[key] = _without_empty_view(out[key])
    out.setdefault("autojoint_version", "unknown")
    network = out.get("network", {})
    if isinstance(network, Mapping) and "detach_lesion_input" not in network:
        out["network"] = {**network, "detach_lesion_input": False}
    return _without_empty_view(out)


def _without_empty_view(d: Mapping[str, Any]) -> dict[str, Any]:
    shape = d.get("classification_shape")
    empty = isinstance(shape, list | tuple) and len(shape) == 3 and not any(shape)
    return {**d, "classification_shape": None} if empty else dict(d)
