"""kill -9 at an arbitrary moment, then rerun: the result equals an uninterrupted run, and no
partial file is ever taken for a complete one."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch

from autojoint.cli import plan as cli_plan
from autojoint.io.files import atomic_write
from autojoint.io.image_io import ImageGeometry
from autojoint.pipeline import plan_and_preprocess
from autojoint.preprocessing.preprocess import PreprocessedCase, save_preprocessed
from autojoint.runtime.checkpoint import load_checkpoint
from autojoint.training.splits import fold_cases
from tests.synthetic import make_raw_dataset

REPO = Path(__file__).resolve().parents[2]


def _command(module: str, *args: str) -> list[str]:
    code = f"import sys; from autojoint.cli.{module} import main; sys.exit(main(sys.argv[1:]))"
    return [sys.executable, "-c", code, *args]


def _run(module: str, *args: str) -> None:
    result = subprocess.run(
        _command(module, *args),
        check=False,
        cwd=REPO,
        capture_output=True,
        text=True,
        encoding="utf-8",
        errors="replace",
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]


def _kill_when(
    module: str, args: list[str], ready: Callable[[], bool], delay_s: float
) -> subprocess.Popen:
    """Start the command, wait until ``ready()``, sleep ``delay_s``, then SIGKILL it."""
    proc = subprocess.Popen(
        _command(module, *args), cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    deadline = time.monotonic() + 300
    while not ready():
        if proc.poll() is not None:
            tail = proc.stderr.read().decode("utf-8", "replace")[-2000:]
            pytest.fail(f"finished before the kill point: {tail}")
        assert time.monotonic() < deadline, "kill point never reached"
        time.sleep(0.002)
    time.sleep(delay_s)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    proc.stderr.close()
    return proc


# enough cases that a kill 50 ms into preprocessing still interrupts it: a case of this
# size preprocesses in a few ms since resampling runs as matrix products
PLAN_CASES = 32


def _tree(folder: Path) -> dict[str, Path]:
    return {str(p.relative_to(folder)): p for p in sorted(folder.rglob("*")) if p.is_file()}


def _assert_same_work_dir(a: Path, b: Path) -> None:
    files_a, files_b = _tree(a), _tree(b)
    assert files_a.keys() == files_b.keys()
    assert not [k for k in files_b if ".tmp_" in k or k.endswith(".part")], "temp files left"
    for name, pa in files_a.items():
        pb = files_b[name]
        if name.endswith(".npy"):
            np.testing.assert_array_equal(np.load(pa), np.load(pb), err_msg=name)
        elif name.endswith(".npz"):
            with np.load(pa) as fa, np.load(pb) as fb:
                assert fa.files == fb.files
                for key in fa.files:
                    np.testing.assert_array_equal(fa[key], fb[key], err_msg=f"{name}:{key}")
        else:
            assert json.loads(pa.read_text(encoding="utf-8")) == json.loads(
                pb.read_text(encoding="utf-8")
            ), name


@pytest.fixture(scope="module")
def raw_and_reference(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("kill_plan")
    raw = make_raw_dataset(root / "raw", num_cases=PLAN_CASES, shape=(12, 48, 48))
    assert cli_plan.main(["-d", str(raw), "-w", str(root / "reference")]) == 0
    return raw, root / "reference"


@pytest.mark.parametrize(
    ("trigger", "delay_s"),
    [("fingerprint.json", 0.0), ("preprocessed/case_000.json", 0.0), ("preprocessed", 0.05)],
    ids=["after-fingerprint", "after-first-case", "during-preprocessing"],
)
def test_plan_killed_and_rerun_equals_uninterrupted(
    raw_and_reference: tuple[Path, Path], tmp_path: Path, trigger: str, delay_s: float
) -> None:
    raw, reference = raw_and_reference
    work = tmp_path / "work"
    proc = _kill_when("plan", ["-d", str(raw), "-w", str(work)], (work / trigger).exists, delay_s)
    assert proc.returncode == -signal.SIGKILL
    done = len(list((work / "preprocessed").glob("case_*.json")))
    assert done < PLAN_CASES, "the kill came too late to interrupt anything"
    assert cli_plan.main(["-d", str(raw), "-w", str(work)]) == 0
    _assert_same_work_dir(reference, work)


@pytest.mark.slow
def test_train_killed_and_continued_equals_uninterrupted(tmp_path: Path) -> None:
    raw = make_raw_dataset(tmp_path / "raw", num_cases=4, shape=(10, 32, 32))
    straight, killed = tmp_path / "straight", tmp_path / "killed"
    plan_and_preprocess(raw, straight)
    shutil.copytree(straight, killed)
    args = ["all", "--epochs", "3", "--iterations-per-epoch", "1", "--seed", "3"]
    args += ["--checkpoint-every", "1"]  # a latest checkpoint after every epoch
    _run("train", *args, "-w", str(straight))

    latest = killed / "fold_all" / "checkpoint_latest.pt"
    # After the first checkpoint, at some point inside epoch 2 (or while it saves).
    proc = _kill_when("train", [*args, "-w", str(killed)], latest.exists, 0.2)
    assert proc.returncode == -signal.SIGKILL
    assert not (killed / "fold_all" / "checkpoint_final.pt").exists(), "kill came too late"
    epoch_at_kill = load_checkpoint(latest)["epoch"]
    assert 1 <= epoch_at_kill < 3
    _run("train", *args, "-w", str(killed), "--continue")

    a = load_checkpoint(straight / "fold_all" / "checkpoint_final.pt")["network"]
    b = load_checkpoint(killed / "fold_all" / "checkpoint_final.pt")["network"]
    assert a.keys() == b.keys()
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=0, atol=0, msg=key)
    log = json.loads((killed / "fold_all" / "training_log.json").read_text(encoding="utf-8"))
    assert [e["epoch"] for e in log["epochs"]] == [1, 2, 3]
    assert not [p for p in (killed / "fold_all").iterdir() if p.name.startswith(".tmp_")]


_SLOW_WRITER = """
import sys, time
from pathlib import Path
from autojoint.io.files import atomic_write
def write(fh):
    for _ in range(1000):
        fh.write(b"x" * 65536)
        fh.flush()
        time.sleep(0.01)
atomic_write(Path(sys.argv[1]), write, binary=True)
"""


def test_killed_writer_leaves_no_file_a_reader_would_take(tmp_path: Path) -> None:
    target = tmp_path / "preprocessed" / "case_000.npz"
    proc = subprocess.Popen([sys.executable, "-c", _SLOW_WRITER, str(target)], cwd=REPO)
    deadline = time.monotonic() + 60
    while not any(p.stat().st_size > 0 for p in target.parent.glob(".tmp_*")):
        assert time.monotonic() < deadline and proc.poll() is None
        time.sleep(0.01)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not target.exists()
    leftovers = list(target.parent.iterdir())
    assert len(leftovers) == 1 and leftovers[0].name.endswith(".npz.part")
    assert list(target.parent.glob("*.npz")) == []
    # The trainer's case discovery does not see it either.
    with pytest.raises(FileNotFoundError, match="no preprocessed cases"):
        fold_cases(tmp_path, "all")


def test_failed_write_keeps_the_previous_file(tmp_path: Path) -> None:
    path = tmp_path / "plans.json"
    atomic_write(path, lambda fh: fh.write("old"))

    def broken(fh: object) -> None:
        fh.write("half")  # type: ignore[attr-defined]
        raise OSError(28, "No space left on device")

    with pytest.raises(OSError, match="No space left"):
        atomic_write(path, broken)
    assert path.read_text(encoding="utf-8") == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["plans.json"]


def test_rewriting_a_case_removes_temp_files_a_killed_run_left_in_its_folder(
    tmp_path: Path,
) -> None:
    # Seen in CI: a kill during preprocessing left CASE/.tmp_*.npy.part, which the rerun
    # (cleaning only the top-level folder) kept beside the rewritten arrays.
    out = tmp_path / "preprocessed"
    geo = ImageGeometry((2, 2, 2), (1.0, 1.0, 1.0), (0.0, 0.0, 0.0), (1, 0, 0, 0, 1, 0, 0, 0, 1))
    arr = np.zeros((1, 2, 2, 2), np.float32)
    case = PreprocessedCase("case_003", arr, None, arr, None, geo, ((0, 2),) * 3, None)
    stale = out / "case_003" / ".tmp_abc.npy.part"
    stale.parent.mkdir(parents=True)
    stale.write_bytes(b"half")
    save_preprocessed(case, out)
    assert sorted(p.name for p in (out / "case_003").iterdir()) == ["cls_data.npy", "data.npy"]
