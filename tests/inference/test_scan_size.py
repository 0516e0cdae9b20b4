"""The rule that refuses images too small to be scans, on plans of each kind."""

from __future__ import annotations

from dataclasses import replace

import pytest

from autojoint.inference.scan_size import MIN_IN_PLANE_VOXELS, MIN_SLICES_3D, scan_size_problem
from autojoint.io.image_io import ImageGeometry
from autojoint.planning.schema import Plan
from tests.fingerprints import tiny_plan

IDENTITY = (1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0)


@pytest.fixture(scope="module")
def plan() -> Plan:
    return replace(tiny_plan(), target_spacing=(2.5, 0.8, 0.8))


def _geo(shape: tuple[int, int, int], spacing=(2.5, 0.8, 0.8)) -> ImageGeometry:
    return ImageGeometry(shape, spacing, (0.0, 0.0, 0.0), IDENTITY)


@pytest.mark.parametrize(
    "shape",
    [(MIN_SLICES_3D, MIN_IN_PLANE_VOXELS, MIN_IN_PLANE_VOXELS), (40, 512, 512), (3, 20, 9)],
)
def test_small_but_real_images_pass(plan: Plan, shape: tuple[int, int, int]) -> None:
    # Smaller than the patch: the sliding window pads them, as nnU-Net does.
    assert scan_size_problem(_geo(shape), plan) is None


@pytest.mark.parametrize(
    ("shape", "spacing", "words"),
    [
        ((1, 1, 1), (2.5, 0.8, 0.8), "slice axis (z) has 1 voxel(s)"),
        ((2, 64, 64), (2.5, 0.8, 0.8), "slice axis (z) has 2 voxel(s)"),
        ((20, 64, 7), (2.5, 0.8, 0.8), "in-plane axis (x) has 7 voxel(s)"),
        # Enough voxels in the file, but a 5 mm field of view: 6 pixels at 0.8 mm.
        ((20, 64, 100), (2.5, 0.8, 0.05), "in-plane axis (x) has 100 voxel(s) in the file and 6"),
        # Three 0.5 mm slices are one slice at the model's 2.5 mm.
        ((3, 64, 64), (0.5, 0.8, 0.8), "and 1 at the model's spacing of 2.5 mm"),
    ],
)
def test_what_cannot_be_a_scan_is_refused(
    plan: Plan, shape: tuple[int, int, int], spacing: tuple[float, float, float], words: str
) -> None:
    problem = scan_size_problem(_geo(shape, spacing), plan)
    assert problem is not None and words in problem, problem
    assert "too small to be a scan" in problem and "fullres model" in problem


def test_axes_follow_the_plans_transposition(plan: Plan) -> None:
    # The plan puts array axis 2 (x) first: x is the slice axis, z and y are in-plane.
    transposed = replace(plan, transpose_forward=(2, 0, 1))
    geo = _geo((64, 64, 2), spacing=(0.8, 0.8, 2.5))
    problem = scan_size_problem(geo, transposed)
    assert problem is not None and "slice axis (x) has 2" in problem
    assert scan_size_problem(_geo((2, 64, 64), (2.5, 0.8, 0.8)), transposed) is not None


def test_a_2d_model_takes_any_number_of_slices(plan: Plan) -> None:
    two_d = replace(plan, configuration="2d")
    assert scan_size_problem(_geo((1, 40, 40)), two_d) is None
    problem = scan_size_problem(_geo((1, 40, 4)), two_d)
    assert problem is not None and "in-plane axis (x) has 4" in problem and "2d model" in problem
