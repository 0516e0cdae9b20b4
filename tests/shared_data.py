"""Where the real test data lives: ``../shared/data`` beside the checkout.

``AUTOJOINT_SHARED_DATA`` overrides it (e.g. for a checkout elsewhere). Real-data tests call
``shared_data_or_skip`` so they skip with a clear reason when the folder is absent.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

SHARED_DATA = Path(
    os.environ.get(
        "AUTOJOINT_SHARED_DATA",
        Path(__file__).resolve().parents[1].parent / "shared" / "data",
    )
)


def shared_data_or_skip(*parts: str) -> Path:
    """``SHARED_DATA/parts...``, or skip the test naming what is missing."""
    path = SHARED_DATA.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"../shared/data absent: {path} not found (set AUTOJOINT_SHARED_DATA)")
    return path
