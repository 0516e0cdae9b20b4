"""``autojoint_predict --fast``: no mirroring; the step stays unless told otherwise."""

from __future__ import annotations

from pathlib import Path

import pytest

from autojoint.cli import predict as cli_predict


def _options(monkeypatch, tmp_path: Path, *flags: str):
    seen = []

    def fake_run(input_dir, output_dir, work_dir, options):
        seen.append(options)
        return cli_predict.PredictionReport.__new__(cli_predict.PredictionReport)

    monkeypatch.setattr(cli_predict, "run_prediction", fake_run)
    monkeypatch.setattr(cli_predict.PredictionReport, "ok", True, raising=False)
    (tmp_path / "in").mkdir()
    argv = ["-i", str(tmp_path / "in"), "-o", str(tmp_path / "out"), "-w", str(tmp_path)]
    assert cli_predict.main([*argv, *flags]) == 0
    return seen[0]


def test_default_mirrors_with_half_overlap(monkeypatch, tmp_path: Path) -> None:
    options = _options(monkeypatch, tmp_path)
    assert options.use_tta and options.step_fraction == 0.5


def test_fast_drops_mirroring_and_keeps_the_step(monkeypatch, tmp_path: Path) -> None:
    options = _options(monkeypatch, tmp_path, "--fast")
    assert not options.use_tta and options.step_fraction == 0.5


def test_an_explicit_step_wins_over_fast(monkeypatch, tmp_path: Path) -> None:
    options = _options(monkeypatch, tmp_path, "--fast", "--step-size", "0.6")
    assert not options.use_tta and options.step_fraction == 0.6


@pytest.mark.parametrize("step", ["0", "1.5"])
def test_step_outside_the_unit_interval_is_refused(monkeypatch, tmp_path: Path, step) -> None:
    with pytest.raises(SystemExit) as stop:
        _options(monkeypatch, tmp_path, "--step-size", step)
    assert stop.value.code == 2
