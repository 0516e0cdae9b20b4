"""The multi-node torchrun command of docs/training.md, run as far as one CPU node allows:
``--nnodes 1``, 2 gloo processes, c10d rendezvous, the real ``autojoint_train`` script.
Both ranks train; rank 0 alone writes each checkpoint, once."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from autojoint.io.files import read_json
from autojoint.pipeline import plan_and_preprocess
from autojoint.training.distributed import free_port, split_batch
from tests.synthetic import make_raw_dataset

pytestmark = pytest.mark.slow  # three interpreters importing torch, and a training run


def _train_script() -> str:
    """The ``autojoint_train`` console script of this environment (as ``$(which ...)``)."""
    script = Path(sys.executable).parent / "autojoint_train"
    if not script.is_file():
        pytest.skip(f"{script}: console script not installed (pip install -e .)")
    return str(script)


def test_torchrun_rdzv_command_trains_on_two_ranks_and_rank_0_writes(tmp_path: Path) -> None:
    raw = make_raw_dataset(tmp_path / "raw", num_cases=4)
    work = tmp_path / "work"
    plan = plan_and_preprocess(raw, work)
    assert plan.batch_size >= 2  # one sample per rank at least
    logs = tmp_path / "logs"
    command = [
        sys.executable,
        "-m",
        "torch.distributed.run",  # = torchrun
        "--nnodes",
        "1",
        "--nproc_per_node",
        "2",
        "--rdzv_backend",
        "c10d",
        "--rdzv_endpoint",
        f"127.0.0.1:{free_port()}",
        "--rdzv_id",
        "autojoint-test",
        "--log-dir",
        str(logs),
        "--redirects",
        "3",  # each rank's stdout and stderr into its own file under logs/
        _train_script(),
        "all",
        "-w",
        str(work),
        "--device",
        "cpu",
        "--epochs",
        "1",
        "--iterations-per-epoch",
        "2",
        "--num-workers",
        "0",
        "--augmentation",
        "none",
        "-v",  # debug: each checkpoint write is logged
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(
        command,
        check=False,
        env=env,
        capture_output=True,
        encoding="utf-8",
        errors="replace",
        timeout=900,
    )
    rank_logs = {
        int(p.parent.name): p.read_text(encoding="utf-8", errors="replace")
        for p in logs.glob("*/attempt_0/*/stderr.log")
    }
    assert proc.returncode == 0, (proc.stderr[-3000:], rank_logs)
    assert sorted(rank_logs) == [0, 1]
    for rank, text in rank_logs.items():  # both ranks joined, each with its share
        share = split_batch(plan.batch_size, 2, rank)[1]
        assert f"batch {plan.batch_size} ({share} per rank x 2)" in text, (rank, text[-2000:])
    written = re.findall(r"wrote (\S+checkpoint_\w+\.pt)", rank_logs[0])
    assert sorted(Path(p).name for p in written) == ["checkpoint_final.pt", "checkpoint_latest.pt"]
    assert "wrote " not in rank_logs[1]
    fold = work / "fold_all"
    assert (fold / "checkpoint_final.pt").is_file()
    assert not list(fold.glob(".tmp_*"))
    config = read_json(fold / "trainer_config.json")
    assert config["world_size"] == 2
    assert [e["epoch"] for e in read_json(fold / "training_log.json")["epochs"]] == [1]
