"""Inference tests run torch on one thread: on a shared 2-core machine two spinning
threads make a tiny forward pass ~10x slower, and results do not depend on it. And one
prediction with ``--report``, which the report's tests and its browser tests share."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

from tests.inference.tiny_workdir import predict_with_report


@pytest.fixture(autouse=True)
def _one_torch_thread() -> Iterator[None]:
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def predicted_with_report(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """:func:`predict_with_report` once for the report's tests and its browser tests."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return predict_with_report(tmp_path_factory.mktemp("report"))
    finally:
        torch.set_num_threads(before)
