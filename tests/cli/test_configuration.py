"""``-c/--configuration`` defaults to the plan's own configuration."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from autojoint.cli import predict as cli_predict
from autojoint.cli import train as cli_train
from autojoint.cli.common import resolve_configuration


@pytest.mark.parametrize(("in_plan", "expected"), [("2d", "2d"), ("fullres", "fullres")])
def test_default_is_the_plans_top_level_configuration(
    tmp_path: Path, in_plan: str, expected: str
) -> None:
    (tmp_path / "plans.json").write_text(json.dumps({"configuration": in_plan}), encoding="utf-8")
    assert resolve_configuration(tmp_path, None) == expected
    assert resolve_configuration(tmp_path, "lowres") == "lowres"  # a given name wins


@pytest.mark.parametrize("content", [None, "{not json", '["a list"]', '{"configuration": "3d"}'])
def test_without_a_readable_plan_the_default_is_fullres(tmp_path: Path, content) -> None:
    if content is not None:
        (tmp_path / "plans.json").write_text(content, encoding="utf-8")
    assert resolve_configuration(tmp_path, None) == "fullres"
    assert resolve_configuration(None, None) == "fullres"


@pytest.mark.parametrize("module", [cli_train, cli_predict])
def test_help_names_every_configuration(module, capsys: pytest.CaptureFixture) -> None:
    with pytest.raises(SystemExit):
        module.main(["--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "fullres, lowres or 2d" in text and "the plan's own" in text
