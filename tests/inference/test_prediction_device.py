"""Where prediction runs: ``--device auto`` as in training, the device it chose in the log,
and float16 autocast on CUDA only (CPU results are those of plain float32)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from autojoint.cli import predict as cli_predict
from autojoint.inference import engine, predictor
from autojoint.inference.engine import run_networks
from autojoint.inference.predictor import PredictionReport, PredictOptions, run_prediction
from autojoint.inference.sliding_window import network_probabilities
from autojoint.io.image_io import ImageGeometry
from autojoint.networks.joint_net import JointNet
from autojoint.preprocessing.preprocess import PreprocessedCase
from autojoint.runtime import devices
from autojoint.runtime.devices import AUTOCAST_DTYPE, mixed_precision
from autojoint.training.config import TrainerConfig
from tests.fingerprints import tiny_plan


def _parsed_options(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, *extra: str) -> PredictOptions:
    """The options ``autojoint_predict`` hands to the library (which is not run)."""
    seen: list[PredictOptions] = []

    def fake(_in: Path, _out: Path, _work: Path, options: PredictOptions) -> PredictionReport:
        seen.append(options)
        return PredictionReport()

    monkeypatch.setattr(cli_predict, "run_prediction", fake)
    (tmp_path / "in").mkdir(exist_ok=True)
    args = ["-i", str(tmp_path / "in"), "-o", str(tmp_path / "out"), "-w", str(tmp_path)]
    assert cli_predict.main([*args, *extra]) == 0
    return seen[0]


def test_predict_defaults_to_auto_like_training(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    assert _parsed_options(monkeypatch, tmp_path).device == "auto" == TrainerConfig().device
    assert PredictOptions().device == "auto"


@pytest.mark.parametrize("name", ["auto", "cpu", "cuda", "cuda:1", "mps"])
def test_every_device_name_is_accepted(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, name: str
) -> None:
    assert _parsed_options(monkeypatch, tmp_path, "--device", name).device == name


@pytest.mark.parametrize(
    ("cuda", "mps", "expected"),
    [(True, True, "cuda"), (False, True, "mps"), (False, False, "cpu")],
)
def test_auto_resolves_and_logs_the_device(
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    tmp_path: Path,
    cuda: bool,
    mps: bool,
    expected: str,
) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: cuda)
    monkeypatch.setattr(devices, "_mps_available", lambda: mps)
    # Stop right after the device is chosen: no trained fold to load.
    monkeypatch.setattr(predictor, "available_folds", lambda *_: [])
    with caplog.at_level("INFO", logger=predictor.__name__), pytest.raises(FileNotFoundError):
        run_prediction(tmp_path, tmp_path / "out", tmp_path, PredictOptions())
    assert f"predicting on {expected} (--device auto)" in caplog.text


def test_mixed_precision_is_float16_autocast_on_cuda_only(monkeypatch: pytest.MonkeyPatch) -> None:
    entered: list[tuple[str, Any]] = []

    class FakeAutocast:
        def __init__(self, device_type: str, dtype: torch.dtype) -> None:
            entered.append((device_type, dtype))

        def __enter__(self) -> None:
            return None

        def __exit__(self, *_: object) -> None:
            return None

    monkeypatch.setattr(torch, "autocast", FakeAutocast)
    with mixed_precision(torch.device("cuda", 0)):
        pass
    assert entered == [("cuda", torch.float16)] == [("cuda", AUTOCAST_DTYPE)]
    for name in ("cpu", "mps"):
        with mixed_precision(torch.device(name)):
            assert not torch.is_autocast_enabled("cpu")
    assert len(entered) == 1


def test_cpu_probabilities_are_exactly_those_of_float32(monkeypatch: pytest.MonkeyPatch) -> None:
    torch.manual_seed(0)
    plan = tiny_plan()
    assert plan.classification_shape is not None
    net = JointNet(plan).eval()
    rng = np.random.default_rng(0)
    data = rng.standard_normal((1, 20, 40, 36)).astype(np.float32)
    view = rng.standard_normal((1, *plan.classification_shape)).astype(np.float32)
    geo = ImageGeometry((20, 40, 36), (1.0, 1.0, 1.0), (0.0,) * 3, (1, 0, 0, 0, 1, 0, 0, 0, 1))
    pre = PreprocessedCase("c", data, None, view, None, geo, ((0, 20), (0, 40), (0, 36)), None)
    devices_seen: list[torch.device] = []

    def spy(device: torch.device) -> Any:
        devices_seen.append(device)
        return mixed_precision(device)

    monkeypatch.setattr(engine, "mixed_precision", spy)
    cpu = torch.device("cpu")
    out = run_networks([net], pre, plan, cpu, mirror_axes=[(0, 1, 2)], tile_batch=2)
    assert devices_seen == [cpu]
    with torch.no_grad():
        seg = network_probabilities(
            net, data, plan.patch_size, plan.num_labels, mirror_axes=(0, 1, 2), tile_batch=2
        )
        _, logits, _ = net.classify(torch.from_numpy(view[None]))
    assert out.segmentation is not None and out.diagnosis is not None
    np.testing.assert_array_equal(out.segmentation, seg)
    np.testing.assert_array_equal(out.diagnosis[0], torch.softmax(logits, dim=1)[0].numpy())
