"""``autojoint_predict --num-parts N --part-id K``: the parts of a split prediction, run
in any order into one folder, leave exactly what one run leaves; ``--continue`` works per
part; the folder tables stay right when parts finish at the same time; ``--num-gpus G``
(here CPU processes) runs G parts at once."""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from autojoint.cli import predict as cli_predict
from autojoint.cli.common import EXIT_SOME_FAILED, EXIT_USAGE
from autojoint.cli.gpu_parts import merge_exit_codes, part_gpus
from autojoint.inference import folder_tables
from autojoint.inference.folder_tables import rebuild_folder_tables
from autojoint.inference.outputs import failure_path, read_record, write_record
from autojoint.inference.parts import Part, part_problem
from autojoint.planning.schema import Plan
from tests.inference.tiny_workdir import make_tiny_workdir, record_predicted_cases
from tests.synthetic import CLASSES, make_case, write_volume

FAST = ["--no-tta", "--step-size", "1", "-f", "0"]
GOOD = ("a0", "a1", "b0", "b1", "c0")


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Five small scans, an unreadable file c1 (fails when predicted) and two files naming
    one case d0 (fails when the folder is read). Sorted: a0 a1 b0 b1 c0 c1 d0."""
    root = tmp_path_factory.mktemp("parts")
    _, work, _ = make_tiny_workdir(root, num_cases=3, folds=("0",))
    inputs = root / "inputs"
    rng = np.random.default_rng(3)
    for i, case in enumerate(GOOD):
        img, _ = make_case(rng, CLASSES[i % 3], (10, 32, 32))
        write_volume(img, inputs / f"{case}_0000.nii.gz")
    (inputs / "c1.nii.gz").write_bytes(b"not an image")
    shutil.copy(inputs / "a0_0000.nii.gz", inputs / "d0.nii.gz")
    shutil.copy(inputs / "a0_0000.nii.gz", inputs / "d0_0000.nii.gz")
    return {"root": root, "work": work, "inputs": inputs}


def _predict(tiny: dict[str, Path], out: Path, *extra: str) -> int:
    args = ["-i", str(tiny["inputs"]), "-o", str(out), "-w", str(tiny["work"]), *FAST]
    return cli_predict.main([*args, *extra])


def _part(tiny: dict[str, Path], out: Path, part_id: int, num_parts: int, *extra: str) -> int:
    return _predict(tiny, out, "--num-parts", str(num_parts), "--part-id", str(part_id), *extra)


def _files(folder: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()
    }


@pytest.fixture(scope="module")
def whole(tiny: dict[str, Path]) -> dict[str, bytes]:
    """Every file one run over the whole folder writes."""
    out = tiny["root"] / "whole"
    assert _predict(tiny, out) == EXIT_SOME_FAILED
    return _files(out)


def test_split_is_disjoint_covering_and_sorted() -> None:
    ids = [f"c{i}" for i in (5, 0, 3, 1, 4, 2, 6)]
    shares = [Part(k, 3).select(ids) for k in range(3)]
    assert shares == [["c0", "c3", "c6"], ["c1", "c4"], ["c2", "c5"]]
    assert Part().select(ids) == sorted(ids) and Part().is_whole
    assert Part(1, 9).select(ids) == ["c1"] and Part(8, 9).select(ids) == []
    assert part_problem(0, 0) and "--num-parts must be >= 1" in str(part_problem(0, 0))
    assert "0..2" in str(part_problem(3, 3)) and part_problem(3, -1)
    with pytest.raises(ValueError, match="--part-id"):
        Part(2, 2)


@pytest.mark.parametrize("order", [(0, 1), (1, 0)])
def test_parts_in_either_order_leave_what_one_run_leaves(
    tiny: dict[str, Path], whole: dict[str, bytes], order: tuple[int, int]
) -> None:
    out = tiny["root"] / f"parts_{order[0]}{order[1]}"
    for k in order:  # part 0: a0 b0 c0 d0 (d0 fails), part 1: a1 b1 c1 (c1 fails)
        assert _part(tiny, out, k, 2) == EXIT_SOME_FAILED
    written = _files(out)
    assert written.keys() == whole.keys()
    for name, content in whole.items():
        assert written[name] == content, name  # masks byte for byte, tables, records
    rows = written["diagnoses.csv"].decode().splitlines()
    assert [r.split(",")[0] for r in rows[1:]] == list(GOOD)
    failures = written["failures.csv"].decode().splitlines()
    assert [r.split(",")[0] for r in failures[1:]] == ["c1", "d0"]


def test_continue_with_parts_redoes_only_what_is_missing(
    tiny: dict[str, Path], whole: dict[str, bytes], monkeypatch: pytest.MonkeyPatch
) -> None:
    out = tiny["root"] / "parts_continue"
    for k in range(3):
        _part(tiny, out, k, 3)
    # Part 0: a0 b1 d0; part 1: a1 c0; part 2: b0 c1.
    (out / "c0.json").unlink()  # as if part 1 was killed before c0's record
    (out / "diagnoses.csv").unlink()
    calls = record_predicted_cases(monkeypatch)
    assert _part(tiny, out, 0, 3, "--continue") == EXIT_SOME_FAILED  # d0 still clashes
    assert calls == []
    assert _part(tiny, out, 1, 3, "--continue") == 0
    assert calls == ["c0"]
    assert _files(out) == whole


def test_a_part_without_cases_succeeds_and_says_so(
    tiny: dict[str, Path], caplog: pytest.LogCaptureFixture
) -> None:
    out = tiny["root"] / "parts_empty"
    with caplog.at_level(logging.INFO):
        assert _part(tiny, out, 9, 10) == 0
    assert "part 9 of 10: no cases to predict (the folder holds 7" in caplog.text
    assert not list(out.glob("*.nii.gz"))
    assert (out / "diagnoses.csv").read_text(encoding="utf-8").count("\n") == 1  # the header only


def test_bad_part_arguments_are_refused(
    tiny: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    out = tiny["root"] / "parts_bad"
    for extra, message in (
        (["--num-parts", "0"], "--num-parts must be >= 1"),
        (["--num-parts", "2", "--part-id", "2"], "--part-id must be in 0..1"),
        (["--part-id", "-1"], "--part-id must be in 0..0"),
    ):
        with pytest.raises(SystemExit) as exited:
            _predict(tiny, out, *extra)
        assert exited.value.code == EXIT_USAGE
        assert message in capsys.readouterr().err
    assert not out.exists()


def _record(case: str) -> dict[str, object]:
    probs = dict.fromkeys(CLASSES, 1 / 3)
    return {"case": case, "diagnosis": CLASSES[0], "probabilities": probs, "volumes": {}}


def test_tables_include_a_record_written_while_they_were_rebuilt(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, tiny: dict[str, Path]
) -> None:
    """Part A rebuilds the tables; between its reading the records and writing the tables,
    part B writes its last record and rebuilds first. A's stale write lands last, so A must
    notice and write again."""
    plan = Plan.load(tiny["work"] / "plans.json")
    write_record(tmp_path, _record("a"))
    real_put = folder_tables._put
    interleaved: list[str] = []

    def put_after_part_b(path: Path, text: str | None) -> None:
        if not interleaved:
            interleaved.append("b")
            write_record(tmp_path, _record("b"))
            monkeypatch.setattr(folder_tables, "_put", real_put)
            rebuild_folder_tables(tmp_path, ["a", "b"], plan, ["0"], is_shared=True)
            monkeypatch.setattr(folder_tables, "_put", put_after_part_b)
        real_put(path, text)

    monkeypatch.setattr(folder_tables, "_put", put_after_part_b)
    rebuild_folder_tables(tmp_path, ["a", "b"], plan, ["0"], is_shared=True)
    rows = (tmp_path / "diagnoses.csv").read_text(encoding="utf-8").splitlines()
    assert [r.split(",")[0] for r in rows] == ["case", "a", "b"]
    assert read_record(tmp_path, "b")["case"] == "b"
    assert not failure_path(tmp_path, "a").exists()


def test_num_gpus_on_the_cpu_runs_the_parts_at_once_like_one_run(
    tiny: dict[str, Path], whole: dict[str, bytes], monkeypatch: pytest.MonkeyPatch
) -> None:
    """``--device cpu --num-gpus 2``: two part processes writing into one folder at the same
    time (how a GPU node runs, without the GPUs)."""
    monkeypatch.setenv("OMP_NUM_THREADS", "1")  # each child: one thread, as this process
    out = tiny["root"] / "parts_at_once"
    assert _predict(tiny, out, "--device", "cpu", "--num-gpus", "2") == EXIT_SOME_FAILED
    assert _files(out) == whole


def test_each_part_gets_its_own_gpu(monkeypatch: pytest.MonkeyPatch) -> None:
    assert part_gpus(3, "cpu", {}) == [None, None, None]
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 4)
    assert part_gpus(2, "auto", {}) == ["0", "1"]
    assert part_gpus(2, "cuda", {"CUDA_VISIBLE_DEVICES": "5, 7,9"}) == ["5", "7"]
    with pytest.raises(RuntimeError, match="torch sees 4 CUDA device"):
        part_gpus(5, "auto", {})
    with pytest.raises(ValueError, match="--device auto or cuda"):
        part_gpus(2, "cuda:1", {})
    assert merge_exit_codes([0, 0]) == 0
    assert merge_exit_codes([6, 0, 6]) == EXIT_SOME_FAILED
    assert merge_exit_codes([6, 1, 4]) == 1 and merge_exit_codes([0, -9]) == 137


def test_num_gpus_with_num_parts_is_refused(
    tiny: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exited:
        _predict(tiny, tiny["root"] / "gpus_bad", "--num-gpus", "2", "--num-parts", "2")
    assert exited.value.code == EXIT_USAGE
    assert "--num-gpus runs parts 0..G-1 of G itself" in capsys.readouterr().err
