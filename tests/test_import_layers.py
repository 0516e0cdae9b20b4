"""Imports only point down the pipeline: a module may import its own package and the
packages before it in ``LAYERS``, never one after it.

The order is written here once (docs/architecture.md points to it). Every ``import`` and
``from ... import`` of an ``autojoint`` module counts, those inside functions too, since a
lazy upward import is still a cycle between packages.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "autojoint"

LAYERS = (
    "io",  # files, images, dataset.json, work-dir names
    "arrays",  # numpy helpers shared by fingerprint, preprocessing and inference (the crop)
    "reporting",  # figure writing without pyplot, the report's HTML
    "fingerprint",
    "planning",
    "preprocessing",
    "data",
    "networks",
    "losses",
    "evaluation",
    "runtime",  # devices and the checkpoint format: shared by inference and training
    "inference",
    "sharing",  # model zips (export, install, model card) and ONNX: read trained folds
    "training",  # validates with the inference engine and the metrics
    "pipeline",  # plan + preprocess orchestration, called by the CLI
    "api",  # the Python facade (autojoint/api.py: Predictor) over inference and sharing
    "cli",
)


def _layer(module: str) -> str | None:
    """``autojoint.x.y`` -> ``x``; the package root (``autojoint``, its version) -> None."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else None


def _imported_modules(path: Path) -> list[tuple[int, str]]:
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    found: list[tuple[int, str]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.append((node.lineno, node.module))
        elif isinstance(node, ast.ImportFrom) and node.level > 0:
            raise AssertionError(f"{path}:{node.lineno}: use absolute autojoint imports")
        elif isinstance(node, ast.Import):
            found.extend((node.lineno, alias.name) for alias in node.names)
    return [(line, m) for line, m in found if m == "autojoint" or m.startswith("autojoint.")]


def upward_imports() -> list[str]:
    """Every import edge that points up (or into a package missing from ``LAYERS``)."""
    problems: list[str] = []
    for path in sorted(PACKAGE.rglob("*.py")):
        own = _layer(".".join(("autojoint", *path.relative_to(PACKAGE).with_suffix("").parts)))
        if own == "__init__":
            continue
        for line, module in _imported_modules(path):
            target = _layer(module)
            if target is None or target == own:
                continue
            where = f"{path.relative_to(PACKAGE.parent)}:{line} imports {module}"
            if own not in LAYERS or target not in LAYERS:
                problems.append(f"{where} (a package missing from LAYERS)")
            elif LAYERS.index(target) > LAYERS.index(own):
                problems.append(f"{where}: {target} comes after {own}")
    return problems


def test_every_package_has_a_layer() -> None:
    modules = {p.stem for p in PACKAGE.glob("*.py")} - {"__init__"}
    packages = {p.parent.name for p in PACKAGE.glob("*/__init__.py")}
    assert modules | packages
    assert (modules | packages) <= set(LAYERS), sorted((modules | packages) - set(LAYERS))


def test_imports_only_point_down_the_pipeline() -> None:
    assert upward_imports() == []


def test_the_check_finds_an_upward_import(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The walker itself: a planning module importing training is reported."""
    (tmp_path / "planning").mkdir()
    (tmp_path / "training").mkdir()
    (tmp_path / "planning" / "bad.py").write_text(
        "def f():\n    from autojoint.training.trainer import train_fold\n", encoding="utf-8"
    )
    (tmp_path / "training" / "ok.py").write_text(
        "import autojoint.planning.bad\n", encoding="utf-8"
    )
    monkeypatch.setattr(__import__(__name__, fromlist=["PACKAGE"]), "PACKAGE", tmp_path)
    problems = upward_imports()
    assert len(problems) == 1
    assert "planning/bad.py:2 imports autojoint.training.trainer" in problems[0]
