"""The torch way back to the input grid equals the skimage reference (linear, centres
aligned, anti-aliased where an axis shrinks)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from autojoint.inference import resample_back
from autojoint.inference.resample_back import resize_linear
from autojoint.preprocessing.resample import resample_image


@pytest.mark.parametrize(
    ("source", "target"),
    [
        ((3, 20, 30, 40), (50, 60, 70)),  # every axis grows
        ((2, 40, 30, 20), (10, 60, 7)),  # mixed: anti-aliasing on two axes
        ((2, 1, 30, 20), (1, 13, 50)),  # a 2D plan's one slice
        ((1, 9, 9, 9), (3, 3, 3)),  # strong shrink: wide kernels
        ((2, 5, 6, 7), (5, 6, 7)),  # same grid: a copy
    ],
)
def test_matches_the_skimage_reference(source, target) -> None:
    probs = np.random.default_rng(0).random(source).astype(np.float32)
    out = resize_linear(probs, target)
    assert out.shape == (source[0], *target) and out.dtype == np.float32
    np.testing.assert_allclose(out, resample_image(probs, target, order=1), atol=1e-5)


@pytest.mark.parametrize(
    ("source", "target"), [((3, 6, 7, 8), (13, 4, 17)), ((3, 5, 6, 7), (9, 4, 10))]
)
def test_probabilities_stay_probabilities(source, target) -> None:
    """Linear: no overshoot, and the classes still sum to 1."""
    logits = np.random.default_rng(1).normal(size=source)
    probs = (np.exp(logits) / np.exp(logits).sum(0)).astype(np.float32)
    out = resize_linear(probs, target)
    assert out.shape == (source[0], *target)
    assert out.min() >= 0 and out.max() <= 1
    np.testing.assert_allclose(out.sum(0), 1.0, atol=1e-5)


def test_out_of_memory_on_the_device_falls_back_to_the_cpu(monkeypatch) -> None:
    real = resample_back._resize_on
    devices = []

    def flaky(volumes, shape, device):
        devices.append(device.type)
        if device.type != "cpu":
            raise torch.OutOfMemoryError("fake")
        return real(volumes, shape, device)

    monkeypatch.setattr(resample_back, "_resize_on", flaky)
    probs = np.random.default_rng(2).random((2, 4, 5, 6)).astype(np.float32)
    out = resize_linear(probs, (8, 10, 12), "meta")
    assert devices == ["meta", "cpu"]
    np.testing.assert_allclose(out, resample_image(probs, (8, 10, 12), order=1), atol=1e-5)
