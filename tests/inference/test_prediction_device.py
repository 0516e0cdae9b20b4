"""Where and how prediction runs: ``--device auto`` as in training, the device it chose in the
log; ``--precision``: float16 autocast on CUDA, bfloat16 on CPUs with native bfloat16,
``float32`` exactly the results of plain float32."""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pytest
import torch

from autojoint.cli import predict as cli_predict
from autojoint.inference import engine, predict_options, predictor
from autojoint.inference.engine import run_networks
from autojoint.inference.predict_options import PredictionReport, PredictOptions
from autojoint.inference.predictor import run_prediction
from autojoint.inference.sliding_window import network_probabilities
from autojoint.io.image_io import ImageGeometry
from autojoint.networks.joint_net import JointNet
from autojoint.preprocessing.preprocess import PreprocessedCase
from autojoint.runtime import devices
from autojoint.runtime.devices import AUTOCAST_DTYPE, autocast_dtype, mixed_precision
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
    monkeypatch.setattr(predict_options, "available_folds", lambda *_: [])
    with caplog.at_level("INFO", logger=predictor.__name__), pytest.raises(FileNotFoundError):
        run_prediction(tmp_path, tmp_path / "out", tmp_path, PredictOptions())
    assert f"predicting on {expected} (--device auto)" in caplog.text


class _FakeAutocast:
    entered: ClassVar[list[tuple[str, Any]]] = []

    def __init__(self, device_type: str, dtype: torch.dtype) -> None:
        self.entered.append((device_type, dtype))

    def __enter__(self) -> None:
        return None

    def __exit__(self, *_: object) -> None:
        return None


@pytest.mark.parametrize("native_bf16", [True, False])
def test_auto_precision_per_device(monkeypatch: pytest.MonkeyPatch, native_bf16: bool) -> None:
    monkeypatch.setattr(torch, "autocast", _FakeAutocast)
    monkeypatch.setattr(_FakeAutocast, "entered", [])
    monkeypatch.setattr(devices, "cpu_supports_bfloat16", lambda: native_bf16)
    with mixed_precision(torch.device("cuda", 0)):
        pass
    with mixed_precision(torch.device("cpu")):
        pass
    with mixed_precision(torch.device("mps")):
        pass
    cpu = [("cpu", torch.bfloat16)] if native_bf16 else []
    assert _FakeAutocast.entered == [("cuda", AUTOCAST_DTYPE), *cpu]
    assert torch.float16 == AUTOCAST_DTYPE


def test_explicit_precisions(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(devices, "cpu_supports_bfloat16", lambda: False)
    cpu, cuda, mps = torch.device("cpu"), torch.device("cuda"), torch.device("mps")
    assert [autocast_dtype(d, "float32") for d in (cpu, cuda, mps)] == [None, None, None]
    assert autocast_dtype(cpu, "bfloat16") == torch.bfloat16  # forced, even if emulated
    assert autocast_dtype(cuda, "bfloat16") == torch.bfloat16
    with pytest.raises(ValueError, match="not offered on mps"):
        autocast_dtype(mps, "bfloat16")
    with pytest.raises(ValueError, match="unknown precision 'half'"):
        autocast_dtype(cpu, "half")


def test_cpu_bfloat16_probe_reads_torch(monkeypatch: pytest.MonkeyPatch) -> None:
    for avx512, amx in [(False, False), (True, False), (False, True)]:
        monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda a=avx512: a)
        monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda a=amx: a)
        assert devices.cpu_supports_bfloat16() is (avx512 or amx)


def test_precision_flag_reaches_the_options(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    assert _parsed_options(monkeypatch, tmp_path).precision == "auto"
    assert _parsed_options(monkeypatch, tmp_path, "--precision", "float32").precision == "float32"
    with pytest.raises(SystemExit):
        _parsed_options(monkeypatch, tmp_path, "--precision", "half")


def test_bfloat16_probabilities_stay_close_to_float32() -> None:
    """bfloat16 autocast (forced, so the test runs on any CPU) changes the fused
    probabilities by little: a tolerance, not equality."""
    torch.manual_seed(0)
    plan = tiny_plan()
    net = JointNet(plan).eval()
    data = np.random.default_rng(0).standard_normal((1, 20, 40, 36)).astype(np.float32)
    assert plan.classification_shape is not None
    view = np.zeros((1, *plan.classification_shape), np.float32)
    geo = ImageGeometry((20, 40, 36), (1.0, 1.0, 1.0), (0.0,) * 3, (1, 0, 0, 0, 1, 0, 0, 0, 1))
    pre = PreprocessedCase("c", data, None, view, None, geo, ((0, 20), (0, 40), (0, 36)), None)
    cpu = torch.device("cpu")
    exact = run_networks([net], pre, plan, cpu, precision="float32")
    low = run_networks([net], pre, plan, cpu, precision="bfloat16")
    assert exact.segmentation is not None and low.segmentation is not None
    assert not np.array_equal(exact.segmentation, low.segmentation)  # it did run in bfloat16
    assert np.abs(exact.segmentation - low.segmentation).max() < 0.05
    np.testing.assert_allclose(low.segmentation.sum(axis=0), 1.0, atol=1e-3)


def test_float32_precision_gives_exactly_plain_float32(monkeypatch: pytest.MonkeyPatch) -> None:
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

    def spy(device: torch.device, precision: str) -> Any:
        devices_seen.append(device)
        return mixed_precision(device, precision)

    monkeypatch.setattr(engine, "mixed_precision", spy)
    cpu = torch.device("cpu")
    out = run_networks(
        [net], pre, plan, cpu, mirror_axes=[(0, 1, 2)], tile_batch=2, precision="float32"
    )
    assert devices_seen == [cpu]
    with torch.no_grad():
        seg = network_probabilities(
            net, data, plan.patch_size, plan.num_labels, mirror_axes=(0, 1, 2), tile_batch=2
        )
        _, logits, _ = net.classify(torch.from_numpy(view[None]))
    assert out.segmentation is not None and out.diagnosis is not None
    np.testing.assert_array_equal(out.segmentation, seg)
    np.testing.assert_array_equal(out.diagnosis[0], torch.softmax(logits, dim=1)[0].numpy())
