"""Grad-CAM (issue 10) against known answers and a manual autograd computation."""

from __future__ import annotations

import dataclasses
import functools

import pytest
import torch
import torch.nn.functional as F

from autojoint.inference.gradcam import grad_cam
from autojoint.networks.joint_net import JointNet
from autojoint.planning.schema import NetworkOptions, Plan
from tests.fingerprints import tiny_plan
from tests.helpers import seeded_net


@functools.cache
def _plan() -> Plan:
    return tiny_plan(shape=(8, 32, 32))


def _net(seed: int = 0) -> JointNet:
    return seeded_net(_plan(), seed).eval()


def _view(seed: int = 1) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(2, 1, *_plan().classification_shape, generator=g)


def test_last_classifier_unit_gradcam_is_relu_of_the_eq5_cam_over_voxel_count() -> None:
    net, view = _net(), _view()
    result = grad_cam(net, view, target="classifier", stage=-1)
    with torch.no_grad():
        _, logits, feats = net.classify(view)
        assert net.cls is not None
        cam = net.cls.evidence_maps(feats, logits.argmax(1))[-1]
    voxels = feats[-1][0, 0].numel()
    expected = F.interpolate(
        F.relu(cam) / voxels, size=view.shape[2:], mode="trilinear", align_corners=False
    )
    torch.testing.assert_close(result.maps, expected.clamp_min(0), rtol=1e-4, atol=1e-7)
    torch.testing.assert_close(result.class_index, logits.argmax(1))
    assert result.maps.shape == (2, 1, *view.shape[2:])


def test_encoder_gradcam_matches_a_manual_autograd_computation() -> None:
    net, view = _net(), _view()
    target_class = torch.tensor([1, 2])
    result = grad_cam(net, view, target="encoder", stage=2, class_index=target_class)

    # Manual: make the stage's output a leaf by substituting it in a forward hook, then
    # read .grad after a plain backward of the chosen logits.
    leaf: dict[str, torch.Tensor] = {}

    def swap(_m: torch.nn.Module, _i: object, out: torch.Tensor) -> torch.Tensor:
        leaf["a"] = out.detach().requires_grad_(True)
        return leaf["a"]

    handle = net.seg.encoder[2].register_forward_hook(swap)
    try:
        # the plan detaches the lesion input in training; the dependency is still there
        _, logits, _ = net.classify(view, detach_lesion_input=False)
        logits[torch.arange(2), target_class].sum().backward()
    finally:
        handle.remove()
    a, grad = leaf["a"], leaf["a"].grad
    assert grad is not None
    alpha = grad.mean(dim=(2, 3, 4), keepdim=True)
    manual = F.relu((alpha * a.detach()).sum(1, keepdim=True))
    manual = F.interpolate(manual, size=view.shape[2:], mode="trilinear", align_corners=False)
    torch.testing.assert_close(result.maps, manual.clamp_min(0), rtol=1e-4, atol=1e-8)
    torch.testing.assert_close(result.class_index, target_class)


def test_gradcam_works_under_no_grad_and_leaves_no_hooks() -> None:
    net, view = _net(), _view()
    with torch.no_grad():
        result = grad_cam(net, view)
    assert bool((result.maps >= 0).all()) and float(result.maps.sum()) > 0
    assert all(not m._forward_hooks for m in net.modules())


def test_gradcam_refuses_unknown_targets_and_stages() -> None:
    net, view = _net(), _view()
    with pytest.raises(ValueError, match="must be one of"):
        grad_cam(net, view, target="decoder")
    with pytest.raises(ValueError, match="stage 9 does not exist"):
        grad_cam(net, view, target="encoder", stage=9)


def test_gradcam_of_the_encoder_is_refused_when_the_classifier_reads_the_image_only() -> None:
    plan = dataclasses.replace(_plan(), network=NetworkOptions(classifier_input="image"))
    net, view = seeded_net(plan).eval(), _view()
    assert grad_cam(net, view).maps.shape[2:] == view.shape[2:]
    with pytest.raises(ValueError, match="classifier_input is 'image'"):
        grad_cam(net, view, target="encoder")


def test_gradcam_of_the_encoder_ignores_the_training_time_detach() -> None:
    """Detaching the lesion input changes gradients in training, not what the diagnosis
    depends on: the encoder's Grad-CAM is the same with the switch on or off."""
    maps = []
    for detach in (False, True):
        plan = dataclasses.replace(_plan(), network=NetworkOptions(detach_lesion_input=detach))
        net, view = seeded_net(plan).eval(), _view()
        maps.append(grad_cam(net, view, target="encoder").maps)
    assert float(maps[0].sum()) > 0
    torch.testing.assert_close(maps[1], maps[0])
