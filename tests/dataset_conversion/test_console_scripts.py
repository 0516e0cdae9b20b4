"""Every converter is an installed console command with a --help."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

COMMANDS = [
    "autojoint_convert_nnunet",
    "autojoint_convert_covid_ct_md",
    "autojoint_convert_mosmed",
    "autojoint_convert_medseg",
    "autojoint_convert_medseg_slices",
    "autojoint_convert_3dlsc",
]


@pytest.mark.parametrize("command", COMMANDS)
def test_converter_installed_with_help(command: str) -> None:
    exe = shutil.which(command, path=str(Path(sys.executable).parent))
    assert exe is not None, f"{command} not installed; rerun scripts/setup_env.sh"
    result = subprocess.run(
        [exe, "--help"], capture_output=True, text=True, encoding="utf-8", check=True
    )
    assert result.stdout.startswith(f"usage: {command}")
    assert "--output" in result.stdout and "--overwrite" in result.stdout
