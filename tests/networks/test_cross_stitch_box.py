"""The cross-stitch stem mixes the view's features in at the patch's own place (issue 16,
defect 6): known answers for ``crop_box`` and the stem with a box."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from autojoint.data.loader import patch_box
from autojoint.networks.cross_stitch import CrossStitch, crop_box

VIEW = (8, 8, 8)


def _ramp(size: tuple[int, ...]) -> torch.Tensor:
    """Channel ``a`` holds each voxel centre's normalised coordinate along axis ``a``:
    ``(j + 1/2) / M``. Linear interpolation reproduces it exactly between centres."""
    axes = [(torch.arange(m, dtype=torch.float64) + 0.5) / m for m in size]
    return torch.stack(torch.meshgrid(*axes, indexing="ij"))[None]


def _box(lo: float, hi: float, ndim: int = 3) -> torch.Tensor:
    return torch.tensor([[lo] * ndim, [hi] * ndim], dtype=torch.float64)[None]


def test_crop_of_the_upper_half_is_the_upper_half_of_the_view() -> None:
    view = _ramp(VIEW)
    upper = view[:, :, 4:, 4:, 4:]
    # Same voxel count as the half: exactly its voxels.
    torch.testing.assert_close(crop_box(view, _box(0.5, 1.0), (4, 4, 4)), upper)
    # Fewer voxels: the half resampled (half-voxel centres), here the ramp at
    # 0.5 + 0.5 (k + 1/2) / 2 = 0.625, 0.875 along every axis.
    small = crop_box(view, _box(0.5, 1.0), (2, 2, 2))
    torch.testing.assert_close(small, F.interpolate(upper, size=(2, 2, 2), mode="trilinear"))
    torch.testing.assert_close(small, _ramp((2, 2, 2)) * 0.5 + 0.5)
    # Not the whole view squeezed into the patch (what the stem did before).
    whole = F.interpolate(view, size=(4, 4, 4), mode="trilinear")
    assert not torch.allclose(crop_box(view, _box(0.5, 1.0), (4, 4, 4)), whole)


def test_stem_mixes_the_view_at_the_patch_box() -> None:
    stitch = CrossStitch()
    with torch.no_grad():
        stitch.weight.copy_(torch.tensor([[0.0, 1.0], [0.0, 1.0]]))
    view = _ramp(VIEW).float()
    patch = torch.zeros(1, 3, 4, 4, 4)
    f_seg, f_cls = stitch(patch, view, _box(0.5, 1.0).float())
    assert f_seg is not None and f_cls is not None
    torch.testing.assert_close(f_seg, view[:, :, 4:, 4:, 4:])
    torch.testing.assert_close(f_cls, view)  # the view takes no patch features
    # A patch at the lower corner gets the lower corner.
    f_seg, _ = stitch(patch, view, _box(0.0, 0.5).float())
    torch.testing.assert_close(f_seg, view[:, :, :4, :4, :4])


def test_crop_box_mirrors_with_reversed_faces_and_is_zero_outside_the_case() -> None:
    view = torch.randn(2, 3, 6, 7, 5, dtype=torch.float64)
    box = torch.tensor([[[0.1, 0.2, 0.0], [0.7, 0.9, 0.6]], [[0.3, 0.0, 0.4], [0.8, 0.5, 1.0]]])
    box = box.double()
    size = (4, 6, 5)
    plain = crop_box(view, box, size)
    for axis in range(3):
        flipped = box.clone()
        flipped[:, :, axis] = box[:, :, axis].flip(1)
        torch.testing.assert_close(crop_box(view, flipped, size), plain.flip(2 + axis))
    # A patch overhanging the case's lower face along axis 0 by half its length: zero
    # features there, the case's first half (resampled) in the rest.
    over = torch.tensor([[[-0.5, 0.0, 0.0], [0.5, 1.0, 1.0]]], dtype=torch.float64)
    crop = crop_box(view[:1], over, (6, 7, 5))
    torch.testing.assert_close(crop[:, :, :3], torch.zeros_like(crop[:, :, :3]))
    torch.testing.assert_close(crop[:, :, 3:], view[:1, :, :3])


@pytest.mark.parametrize("patch", [(4, 6, 5), (3, 14, 9), (12, 5, 2)])
def test_tiled_boxes_reassemble_the_view_resampled_to_the_case(patch: tuple[int, ...]) -> None:
    """Boxes of patches of a case of N voxels (the loader's ``patch_box``) crop exactly the
    voxels of the view resampled to N, zero where a patch overhangs the case."""
    view = torch.randn(1, 2, 5, 7, 6, dtype=torch.float64)
    case = (10, 14, 9)
    resampled = F.interpolate(view, size=case, mode="trilinear")
    for start in [(0, 0, 0), (3, 5, 4), (-2, 9, 7), (8, -3, 1)]:
        box = torch.from_numpy(patch_box(start, patch, case)).double()[None]
        crop = crop_box(view, box, patch)
        expected = torch.zeros(1, 2, *patch, dtype=torch.float64)
        src = [slice(max(s, 0), min(s + p, n)) for s, p, n in zip(start, patch, case, strict=True)]
        dst = [slice(a.start - s, a.stop - s) for a, s in zip(src, start, strict=True)]
        expected[(slice(None), slice(None), *dst)] = resampled[(slice(None), slice(None), *src)]
        # float32 boxes: coordinates are exact to ~1e-7, values to ~1e-6.
        torch.testing.assert_close(crop, expected, rtol=0, atol=1e-5)


def test_crop_box_2d_and_bad_boxes() -> None:
    view = _ramp((6, 10))
    box = torch.tensor([[[0.5, 0.0], [1.0, 0.5]]], dtype=torch.float64)
    torch.testing.assert_close(crop_box(view, box, (3, 5)), view[:, :, 3:, :5])
    with pytest.raises(ValueError, match="box must have shape"):
        crop_box(view, box[:, :, :1], (3, 5))
    with pytest.raises(ValueError, match="box must have shape"):
        crop_box(view, box, (3, 5, 1))


def test_gradient_reaches_the_view_inside_the_box_only() -> None:
    view = torch.randn(1, 2, *VIEW, requires_grad=True)
    crop_box(view, _box(0.5, 1.0).float(), (4, 4, 4)).sum().backward()
    assert view.grad is not None
    assert torch.count_nonzero(view.grad[:, :, :4]) == 0
    assert torch.count_nonzero(view.grad[:, :, 4:, 4:, 4:]) == view.grad[:, :, 4:, 4:, 4:].numel()
