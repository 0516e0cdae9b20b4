"""Subnormal floats are treated as zero while the network computes (a training step, the
validation passes, the inference engine) and only then: the calling thread gets its own
state back, so scipy code later in the same thread runs as before (left on for a whole
process, the flag made scipy's KD-tree crash)."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pytest
import torch

from autojoint.inference.engine import run_networks
from autojoint.io.image_io import ImageGeometry
from autojoint.networks.joint_net import JointNet
from autojoint.preprocessing.preprocess import PreprocessedCase
from autojoint.runtime.devices import denormals_flushed, subnormals_flushed
from autojoint.training.step import make_grad_scaler, train_step
from tests.fingerprints import tiny_plan
from tests.helpers import random_batch, seeded_net, train_step_options


@pytest.fixture(autouse=True)
def flush_off() -> Iterator[None]:
    """Each test starts with the flag off and leaves this thread as it found it."""
    was = denormals_flushed()
    if not torch.set_flush_denormal(False):
        pytest.skip("this CPU cannot flush subnormal floats to zero")
    yield
    torch.set_flush_denormal(was)


def test_the_scope_restores_the_calling_threads_state() -> None:
    with subnormals_flushed() as supported:
        assert supported and denormals_flushed()
        with subnormals_flushed():
            assert denormals_flushed()
        assert denormals_flushed()  # an inner scope leaves the outer one's flag on
    assert not denormals_flushed()
    with pytest.raises(KeyError), subnormals_flushed():
        raise KeyError("x")
    assert not denormals_flushed()  # also when the body raises
    torch.set_flush_denormal(True)
    with subnormals_flushed():
        pass
    assert denormals_flushed()  # a caller that set it for itself keeps it


def _record_flag(net: torch.nn.Module, seen: list[tuple[str, bool]]) -> None:
    """Record the flag in the first convolution's forward and in its weight's backward."""
    conv = next(m for m in net.modules() if isinstance(m, torch.nn.Conv3d))
    conv.register_forward_pre_hook(lambda *_: seen.append(("forward", denormals_flushed())))
    conv.weight.register_hook(lambda g: seen.append(("backward", denormals_flushed())) or g)


def test_a_training_step_flushes_in_forward_and_backward_then_restores() -> None:
    plan = tiny_plan()
    assert plan.classification_shape is not None
    net = seeded_net(plan)
    params = [p for p in net.parameters() if p.requires_grad]
    seen: list[tuple[str, bool]] = []
    _record_flag(net, seen)
    batch = random_batch(plan)
    optimizer = torch.optim.SGD(params, 1e-3)
    cpu = torch.device("cpu")
    train_step(
        net, net, batch, optimizer, make_grad_scaler(cpu), **train_step_options(plan, params)
    )
    assert {kind for kind, _ in seen} == {"forward", "backward"}
    assert all(flushed for _, flushed in seen), seen
    assert not denormals_flushed()


def test_the_inference_engine_flushes_while_the_networks_run() -> None:
    torch.manual_seed(0)
    plan = tiny_plan()
    assert plan.classification_shape is not None
    net = JointNet(plan).eval()
    seen: list[tuple[str, bool]] = []
    _record_flag(net, seen)
    data = np.zeros((1, 20, 40, 36), np.float32)
    view = np.zeros((1, *plan.classification_shape), np.float32)
    geo = ImageGeometry((20, 40, 36), (1.0, 1.0, 1.0), (0.0,) * 3, (1, 0, 0, 0, 1, 0, 0, 0, 1))
    pre = PreprocessedCase("c", data, None, view, None, geo, ((0, 20), (0, 40), (0, 36)), None)
    out = run_networks([net], pre, plan, torch.device("cpu"), precision="float32")
    assert out.segmentation is not None and out.diagnosis is not None
    assert seen and all(flushed for _, flushed in seen), seen
    assert not denormals_flushed()
