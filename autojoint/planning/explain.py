"""A readable summary of a plan: every number with the rule that produced it."""

from __future__ import annotations

from autojoint.planning.schema import Plan


def _fmt(values: tuple | None) -> str:
    """``(a, b, c)`` as ``"a x b x c"``; None (e.g. no classification view) as ``"-"``."""
    if values is None:
        return "-"
    return " x ".join(f"{v:g}" if isinstance(v, float) else str(v) for v in values)


def explain_plan(plan: Plan) -> str:
    """Multi-line text for ``autojoint_plan --explain``."""
    r = plan.reasons
    topo = plan.topology
    rows = [
        (
            "target spacing (mm, z y x)",
            _fmt(tuple(round(s, 3) for s in plan.target_spacing)),
            r.get("target_spacing", ""),
        ),
        (
            "axis order (transpose)",
            _fmt(plan.transpose_forward),
            r.get("transpose_forward", ""),
        ),
        ("median shape (voxels)", _fmt(plan.median_shape), ""),
        ("patch size", _fmt(plan.patch_size), r.get("patch_size", "")),
        ("batch size", str(plan.batch_size), r.get("batch_size", "")),
        (
            "stages / strides",
            f"{topo.num_stages}: " + ", ".join(_fmt(s) for s in topo.strides),
            r.get("topology", ""),
        ),
        ("kernels", ", ".join(_fmt(k) for k in topo.kernel_sizes), ""),
        ("features", ", ".join(str(f) for f in topo.features_per_stage), ""),
        (
            "classification view",
            _fmt(plan.classification_shape),
            r.get("classification_shape", ""),
        ),
        ("eta (finest first)", ", ".join(f"{e:.3f}" for e in plan.eta), r.get("eta", "")),
        (
            "normalisation",
            "; ".join(
                f"{n.scheme} [{n.clip_low:.0f}, {n.clip_high:.0f}] "
                f"mean {n.mean:.1f} std {n.std:.1f}"
                if n.scheme == "ct"
                else n.scheme
                for n in plan.normalization
            ),
            r.get("normalization", ""),
        ),
        (
            "segmentation loss",
            f"{plan.loss.segmentation} (focal alpha {plan.loss.focal_alpha:.2f} gamma "
            f"{plan.loss.focal_gamma:g}; Tversky alpha {plan.loss.tversky_alpha:.2f} beta "
            f"{plan.loss.tversky_beta:.2f} gamma {plan.loss.tversky_gamma:.2f})",
            r.get("loss", ""),
        ),
        (
            "network switches",
            ", ".join(f"{k}={v}" for k, v in vars(plan.network).items()),
            r.get("overrides", "defaults (autojoint_plan --preset/--set to change)"),
        ),
        (
            "loss weights",
            f"seg {plan.loss_weights.seg:g}, cls {plan.loss_weights.cls:g}, "
            f"task-aware {plan.loss_weights.task_aware:g}",
            r.get("loss_weights", ""),
        ),
        (
            "class weights",
            ", ".join(f"{c} {w:.2f}" for c, w in zip(plan.classes, plan.class_weights, strict=True))
            or "-",
            r.get("class_weights", ""),
        ),
        (
            "low-res configuration",
            "-"
            if plan.lowres is None
            else f"spacing {_fmt(tuple(round(s, 3) for s in plan.lowres.target_spacing))}, "
            f"patch {_fmt(plan.lowres.patch_size)}, batch {plan.lowres.batch_size}",
            r.get("lowres", ""),
        ),
        (
            "2d configuration",
            "-"
            if plan.two_d is None
            else f"patch {_fmt(plan.two_d.patch_size)}, batch {plan.two_d.batch_size}, "
            f"view {_fmt(plan.two_d.classification_shape)}",
            r.get("two_d", ""),
        ),
        (
            "device",
            f"{plan.device_profile}, budget {plan.memory_budget_gb:.2f} GB, "
            f"estimate {plan.estimated_memory_gb:.2f} GB",
            "",
        ),
    ]
    width = max(len(name) for name, _, _ in rows)
    lines = [
        f"autojoint plan (schema {plan.schema_version}, autojoint {plan.autojoint_version}), "
        f"configuration {plan.configuration}"
    ]
    for name, value, why in rows:
        lines.append(f"  {name:<{width}}  {value}")
        if why:
            lines.append(f"  {'':<{width}}    why: {why}")
    return "\n".join(lines)
