"""Which images are too small to be scans a model can predict.

The sliding window pads an image smaller than the patch, as nnU-Net does, so a small but
real scan (a cropped region, a short slab) is still predicted. What is refused is what
cannot be a scan at all, such as a 1 x 1 x 1 image or a 5 mm field of view, because a
mask and a diagnosis for it would be output without meaning. The rule (docs/prediction.md,
"Inputs too small to be scans"), on the axes in the network's order (the plan's
``transpose_forward``: axis 0 the slice axis, axes 1 and 2 in-plane):

* each in-plane axis holds at least :data:`MIN_IN_PLANE_VOXELS` voxels, in the file and
  at the plan's spacing;
* for a 3D configuration (``fullres``, ``lowres``), the slice axis holds at least
  :data:`MIN_SLICES_3D` slices, in the file and at the plan's spacing; a ``2d`` model
  predicts slice by slice, so any number of slices is fine.
"""

from __future__ import annotations

from autojoint.io.image_io import ImageGeometry
from autojoint.planning.schema import Plan
from autojoint.preprocessing.resample import shape_for_spacing

# Fewer pixels than this across a slice is no image of a body: a 3x3 convolution then sees
# almost only padding after one pooling step.
MIN_IN_PLANE_VOXELS = 8
# A 3D model's convolutions are 3 slices deep: with fewer slices no kernel has a real
# neighbour slice on both sides, and the "volume" is padding.
MIN_SLICES_3D = 3


def scan_size_problem(geometry: ImageGeometry, plan: Plan) -> str | None:
    """Why an image on ``geometry`` is too small for ``plan``'s model, or None.

    Args:
        geometry: the input image's grid (array order, spacing in mm).
        plan: the plan of the configuration that predicts (its ``transpose_forward``,
            ``target_spacing`` and ``configuration``).

    Returns:
        A sentence naming the axis, its size in the file and at the plan's spacing, and the
        fix; None when the image is large enough.
    """
    order = plan.transpose_forward
    shape = tuple(geometry.shape[a] for a in order)
    spacing = tuple(geometry.spacing[a] for a in order)
    resampled = shape_for_spacing(shape, spacing, plan.target_spacing)
    needs = [(1, MIN_IN_PLANE_VOXELS, "in-plane axis"), (2, MIN_IN_PLANE_VOXELS, "in-plane axis")]
    if plan.configuration != "2d":
        needs.insert(0, (0, MIN_SLICES_3D, "slice axis"))
    for axis, minimum, name in needs:
        if min(shape[axis], resampled[axis]) >= minimum:
            continue
        array_axis = "zyx"[order[axis]]
        return (
            f"image of {geometry.shape[0]} x {geometry.shape[1]} x {geometry.shape[2]} voxels "
            f"(z, y, x; spacing {_mm(geometry.spacing)} mm) is too small to be a scan: its "
            f"{name} ({array_axis}) has {shape[axis]} voxel(s) in the file and "
            f"{resampled[axis]} at the model's spacing of {plan.target_spacing[axis]:g} mm, fewer "
            f"than the {minimum} the {plan.configuration} model needs. Predict the whole "
            "scan, not a crop or a thumbnail, and check that the header's spacing is in mm."
        )
    return None


def _mm(spacing: tuple[float, float, float]) -> str:
    return "(" + ", ".join(f"{v:g}" for v in spacing) + ")"
