"""The peer harness's conversion, metric and table code (no training, no nnU-Net install)."""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

import numpy as np
import pytest

from benchmarks.peers.common import cached_row, store_row
from benchmarks.peers.infnet_metrics import THRESHOLDS, toolbox_curves, toolbox_scores
from benchmarks.peers.layout import dataset_name, nnunet_folders, to_nnunet_raw
from benchmarks.peers.tables import markdown_table, mean_sd, ratio
from benchmarks.stats import last_quarter_change
from tests.synthetic import make_raw_dataset


def _brute_force(prob: np.ndarray, gt: np.ndarray) -> dict[str, np.ndarray]:
    """The toolbox's loop written out plainly: one binarisation per threshold."""
    p = prob.astype(np.float64)
    p = (p - p.min()) / (p.max() - p.min()) if p.max() > p.min() else np.zeros_like(p)
    g = gt.astype(bool)
    out: dict[str, list[float]] = {"dice": [], "sensitivity": [], "specificity": []}
    for t in 1.0 - np.arange(256) / 255:
        pred = p >= t
        tp = np.sum(pred & g)
        fp = np.sum(pred & ~g)
        tn = np.sum(~pred & ~g)
        if tp == 0:
            d = s = sp = 0.0
        else:
            d, s, sp = 2 * tp / (g.sum() + pred.sum()), tp / g.sum(), tn / (tn + fp)
        out["dice"].append(d)
        out["sensitivity"].append(s)
        out["specificity"].append(sp)
    return {k: np.array(v) for k, v in out.items()}


def test_thresholds_are_the_toolbox_grid() -> None:
    assert THRESHOLDS.shape == (256,)
    assert THRESHOLDS[0] == 1.0 and THRESHOLDS[-1] == 0.0
    assert np.allclose(np.diff(THRESHOLDS), -1 / 255)


def test_hard_mask_scores_255_perfect_thresholds_and_one_all_foreground() -> None:
    gt = np.zeros((10, 10), bool)
    gt[2:5, 3:7] = True  # 12 of 100 pixels
    curves = toolbox_curves(gt.astype(float), gt)
    assert np.all(curves["dice"][:255] == 1.0)
    assert curves["dice"][255] == pytest.approx(2 * 12 / (12 + 100))
    assert curves["specificity"][255] == 0.0
    mean = toolbox_scores([(gt.astype(float), gt)])
    assert mean["dice"] == pytest.approx((255 + 24 / 112) / 256)


def test_graded_map_known_answer() -> None:
    prob = np.array([0.0, 0.5, 1.0])
    gt = np.array([0, 1, 1])
    # t in {1, ..., 128/255}: only the 1.0 pixel -> Dice 2/3 (128 thresholds);
    # t in {127/255, ..., 1/255}: both lesion pixels -> Dice 1 (127 thresholds);
    # t = 0: everything -> Dice 4/5.
    expected = (128 * 2 / 3 + 127 * 1.0 + 0.8) / 256
    assert toolbox_scores([(prob, gt)])["dice"] == pytest.approx(expected)


def test_empty_ground_truth_scores_zero_as_in_the_toolbox() -> None:
    prob = np.random.default_rng(0).random((8, 8))
    scores = toolbox_scores([(prob, np.zeros((8, 8), bool))])
    assert scores == {"dice": 0.0, "sensitivity": 0.0, "specificity": 0.0}


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_matches_a_plain_loop_over_thresholds(seed: int) -> None:
    rng = np.random.default_rng(seed)
    gt = rng.random((20, 24)) < 0.3
    prob = np.clip(gt * 0.6 + rng.normal(0.2, 0.25, gt.shape), 0, 1)
    prob[0, 0] = 0.7 + 0.1 * seed  # ties with thresholds are not special
    fast, slow = toolbox_curves(prob, gt), _brute_force(prob, gt)
    for key in fast:
        np.testing.assert_allclose(fast[key], slow[key], rtol=0, atol=1e-12)


def test_invariant_to_affine_rescaling_of_the_map() -> None:
    rng = np.random.default_rng(3)
    gt = rng.random((16, 16)) < 0.4
    prob = rng.random((16, 16))
    assert toolbox_scores([(prob, gt)]) == pytest.approx(toolbox_scores([(3 * prob + 7, gt)]))


def test_shape_mismatch_and_no_image_are_refused() -> None:
    with pytest.raises(ValueError, match="shape"):
        toolbox_curves(np.zeros((3, 3)), np.zeros((3, 4)))
    with pytest.raises(ValueError, match="no image"):
        toolbox_scores([])


def test_dataset_name_follows_nnunet_rules() -> None:
    assert dataset_name(7, "Inf-Net slices") == "Dataset007_InfNetslices"
    with pytest.raises(ValueError, match="1..999"):
        dataset_name(1000, "x")


def test_to_nnunet_raw_links_labelled_cases_and_keeps_nnunet_keys(tmp_path) -> None:
    raw = make_raw_dataset(tmp_path / "raw", num_cases=4, shape=(6, 16, 16))
    os.remove(raw / "labelsTr" / "case_002.nii.gz")  # diagnosis-only case: not for nnU-Net
    folders = nnunet_folders(tmp_path / "nnunet", 1)
    assert folders.results.name == "results_seed1"
    out = to_nnunet_raw(raw, folders.raw, 12, "Demo")
    assert out == folders.raw / "Dataset012_Demo"
    images = sorted(p.name for p in (out / "imagesTr").iterdir())
    labels = sorted(p.name for p in (out / "labelsTr").iterdir())
    assert images == ["case_000_0000.nii.gz", "case_001_0000.nii.gz", "case_003_0000.nii.gz"]
    assert labels == ["case_000.nii.gz", "case_001.nii.gz", "case_003.nii.gz"]
    for link in (out / "imagesTr").iterdir():
        assert link.is_symlink() and not os.path.isabs(os.readlink(link))
        assert link.read_bytes() == (raw / "imagesTr" / link.name).read_bytes()
    meta = json.loads((out / "dataset.json").read_text(encoding="utf-8"))
    assert meta["numTraining"] == 3
    assert "classes" not in meta
    assert (
        meta["labels"] == json.loads((raw / "dataset.json").read_text(encoding="utf-8"))["labels"]
    )
    # Rerunning after a case disappears removes its stale links.
    os.remove(raw / "labelsTr" / "case_003.nii.gz")
    to_nnunet_raw(raw, folders.raw, 12, "Demo")
    assert sorted(p.name for p in (out / "labelsTr").iterdir()) == labels[:2]
    assert not (out / "imagesTr" / "case_003_0000.nii.gz").exists()


def test_to_nnunet_raw_refuses_a_dataset_without_masks(tmp_path) -> None:
    raw = make_raw_dataset(tmp_path / "raw", num_cases=3, shape=(6, 16, 16))
    for p in (raw / "labelsTr").iterdir():
        p.unlink()
    with pytest.raises(ValueError, match="no case has a mask"):
        to_nnunet_raw(raw, tmp_path / "nn", 1, "X")


def test_tables() -> None:
    assert mean_sd([0.5]) == "0.500"
    assert mean_sd([0.5, 0.7]) == "0.600 ± 0.141"  # sample sd: sqrt(0.02 / 1)
    assert mean_sd([1.0, 2.0, 3.0, None]) == "2.000 ± 1.000"
    assert mean_sd([float("nan"), None]) == "n/a"
    assert ratio(1.0, 4.0) == "0.25x"
    assert ratio(1.0, 0.0) == "n/a"
    table = markdown_table(("a", "b"), {"x": ["1", "2"]})
    assert table.splitlines() == ["| | a | b |", "|---|---|---|", "| x | 1 | 2 |"]
    with pytest.raises(ValueError, match="cells"):
        markdown_table(("a",), {"x": ["1", "2"]})


def test_last_quarter_change_of_known_curves() -> None:
    # 12 epochs: last quarter 9, 10, 11 (mean 10) minus the quarter before 6, 7, 8 (mean 7)
    assert last_quarter_change(list(range(12))) == pytest.approx(3.0)
    assert last_quarter_change([0.5] * 10) == 0.0  # flat
    # missing epochs are skipped: 8 finite values 0..7, quarters (6, 7) and (4, 5)
    assert last_quarter_change([0, None, 1, 2, float("nan"), 3, 4, 5, 6, 7]) == pytest.approx(2.0)
    assert math.isnan(last_quarter_change([1.0] * 7))  # too short to tell


def _slices(values: dict[str, float]) -> dict[str, dict[str, float]]:
    """Per-slice records with every paired column set to the slice's value."""
    from benchmarks.peers.infnet import PAIRED_COLUMNS

    return {case: dict.fromkeys(PAIRED_COLUMNS, v) for case, v in values.items()}


def test_infnet_paired_differences_pool_seeds_and_slices_and_skip_undefined_pairs() -> None:
    from benchmarks.peers.infnet import COLUMNS, paired_differences, render

    ours = [_slices({"a": 0.9, "b": 0.5, "c": float("nan")}), _slices({"a": 0.7, "b": 0.6})]
    theirs = [_slices({"a": 0.8, "b": 0.6, "c": 0.4}), _slices({"a": 0.7, "b": 0.3})]
    paired = paired_differences(ours, theirs)
    d = paired["Dice union"]
    # pairs (seed, slice): +0.1, -0.1, 0.0, +0.3; slice c of seed 0 is undefined for ours
    assert d["pairs"] == 4 and d["autojoint_higher"] == 2
    assert d["mean"] == pytest.approx(0.075)
    assert d["low"] <= d["mean"] <= d["high"]
    assert d["low"] >= -0.1 - 1e-12 and d["high"] <= 0.3 + 1e-12
    # a slice missing from nnU-Net's predictions is an error, not a silent drop
    with pytest.raises(KeyError):
        paired_differences([_slices({"z": 0.5})], theirs[:1])
    row = dict.fromkeys(COLUMNS, 0.5)
    result = {
        "setup": {"epochs": 2, "iterations": 3, "threads": 1},
        "rows": {"autojoint": [row], "nnU-Net": [row]},
        "paired": paired,
    }
    text = render(result)
    assert "- Dice union: +0.075 [" in text and "autojoint higher on 2 of 4" in text
    assert "1 thread(s) each, 1 seed(s)" in text


def test_infnet_one_tool_run_reads_only_that_tool_and_never_needs_nnunet(tmp_path) -> None:
    """``--only autojoint`` (a convergence check at a longer budget): curves, cached
    preparation and the table use our files alone; an nnU-Net command is refused by name."""
    from benchmarks.peers.common import Tools
    from benchmarks.peers.infnet import COLUMNS, learning_curves, prepare, render

    log = tmp_path / "autojoint" / "work" / "2d" / "fold_all" / "training_log.json"
    log.parent.mkdir(parents=True)
    log.write_text(json.dumps({"epochs": [{"loss_seg": 1.5}, {"loss_seg": 1.25}]}))
    # no OUT/runs/nnunet-seed0/train.json exists: reading it would raise
    assert learning_curves(tmp_path, 0, ("autojoint",)) == {
        "autojoint": {"train loss": [1.5, 1.25]}
    }
    (tmp_path / "prepare.json").write_text(json.dumps({"autojoint": 5.0}))
    tools = Tools(None)
    assert prepare(tmp_path, tmp_path / "absent", tools, 1, ("autojoint",)) == {"autojoint": 5.0}
    with pytest.raises(SystemExit, match="without nnU-Net"):
        tools.nnunet_command("nnUNetv2_plan_and_preprocess")
    row = dict.fromkeys(COLUMNS, 0.5)
    text = render(
        {
            "setup": {"epochs": 2, "iterations": 3, "threads": 1},
            "rows": {"autojoint": [row]},
            "paired": {},
        }
    )
    assert "| autojoint | 0.500" in text and "| nnU-Net |" not in text
    assert "paired bootstrap" not in text
    assert "1 thread(s) autojoint alone" in text and "each" not in text.split("\n")[0]


def test_to_nnunet_raw_replaces_a_linked_folder_without_touching_its_target(tmp_path) -> None:
    raw = make_raw_dataset(tmp_path / "raw", num_cases=2, shape=(6, 16, 16))
    before = sorted(p.name for p in (raw / "imagesTr").iterdir())
    out = tmp_path / "nn" / "Dataset001_X"
    out.mkdir(parents=True)
    (out / "imagesTr").symlink_to(raw / "imagesTr", target_is_directory=True)
    to_nnunet_raw(raw, tmp_path / "nn", 1, "X")
    assert not (out / "imagesTr").is_symlink()
    assert sorted(p.name for p in (raw / "imagesTr").iterdir()) == before
    assert all(not p.is_symlink() for p in (raw / "imagesTr").iterdir())


def test_equal_patch_is_divisible_by_both_networks(tmp_path) -> None:
    from benchmarks.peers.layout import dataset_name
    from benchmarks.peers.speed import DATASETS, equal_patch

    root = tmp_path
    folder = root / "nnunet" / "preprocessed" / dataset_name(DATASETS["3d"], "Speed3d")
    folder.mkdir(parents=True)
    nn_conf = {
        "patch_size": [80, 160, 190],
        "batch_size": 2,
        "architecture": {"arch_kwargs": {"strides": [[1, 1, 1], [1, 2, 2], [2, 2, 2]]}},
    }
    (folder / "nnUNetPlans.json").write_text(
        json.dumps({"configurations": {"3d_fullres": nn_conf}}), encoding="utf-8"
    )
    own = root / "autojoint" / "own"
    own.mkdir(parents=True)
    aj = {"topology": {"strides": [[1, 1, 1], [2, 2, 2], [2, 2, 2], [1, 2, 2]]}}
    (own / "plans.json").write_text(json.dumps(aj), encoding="utf-8")
    patch, batch = equal_patch(root, "3d")
    # Strides: autojoint 4 x 8 x 8, nnU-Net 2 x 4 x 4 -> multiples of 4, 8, 8, rounded down.
    assert patch == [80, 160, 184] and batch == 2


def test_speed_table_shows_ratios_and_what_was_not_measured() -> None:
    from benchmarks.peers.speed import render

    result = {
        "threads": 2,
        "repeats": 1,
        "iterations": 3,
        "equal_patch": {"3d": [[56, 192, 192], 2]},
        "timings": {
            "preprocess_3d_0": {"nnunet": 8.0, "autojoint": 4.0, "cases": 6},
            "train_3d_own": {"nnunet": 68.0, "autojoint": 34.0},
            "predict_own_notta_0": {"nnunet": 100.0, "autojoint": 50.0},
        },
    }
    lines = render(result).splitlines()
    row = next(line for line in lines if line.startswith("| preprocess s/case, 3d"))
    assert row == "| preprocess s/case, 3d | 8.00 | 4.00 | 0.50x |"
    assert any("train s/iteration, 3d, own plans | 68.00 | 34.00 | 0.50x" in x for x in lines)
    missing = next(line for line in lines if "own plans, mirroring" in line)
    assert "not measured" in missing and missing.endswith("| n/a |")


def test_speed_table_sets_autojoint_only_rows_against_nnunets_figure() -> None:
    """The opt-in bfloat16 training and the float32 prediction are measured for autojoint
    alone and compared with nnU-Net's figure of the same setting."""
    from benchmarks.peers.speed import render

    result = {
        "threads": 2,
        "repeats": 1,
        "iterations": 3,
        "equal_patch": {"3d": [[56, 192, 192], 2]},
        "timings": {
            "train_3d_equal": {"nnunet": 70.0, "autojoint": 91.0},
            "train_3d_equal_bfloat16": {"autojoint": 56.0},
            "predict_own_notta_0": {"nnunet": 400.0, "autojoint": 200.0},
            "predict_own_notta_float32_0": {"autojoint": 420.0},
        },
    }
    lines = render(result).splitlines()
    assert (
        "| train s/iteration, 3d, equal patch 56 x 192 x 192, batch 2, autojoint --precision "
        "bfloat16 | 70.00 | 56.00 | 0.80x |"
    ) in lines
    assert (
        "| predict P001 s/case, own plans, no mirroring, autojoint --precision float32 | 400.00 "
        "| 420.00 | 1.05x |"
    ) in lines
    assert "| predict P001 s/case, own plans, no mirroring | 400.00 | 200.00 | 0.50x |" in lines


def test_nnunet_commands_parse_with_the_drivers_own_parser(tmp_path) -> None:
    from benchmarks.peers.common import DRIVER, Tools
    from benchmarks.peers.nnunet_driver import build_parser

    tools = Tools(Path("/venv/bin/python"))
    train = tools.nnunet_train(
        501,
        "2d",
        "all",
        epochs=3,
        iterations=5,
        val_iterations=2,
        threads=1,
        log=tmp_path / "t.json",
        plans="P",
        resume=True,
    )
    assert train[:3] == ["/venv/bin/python", str(DRIVER), "train"]
    args = build_parser().parse_args(train[2:])
    assert (args.dataset, args.configuration, args.fold, args.plans) == ("501", "2d", "all", "P")
    assert (args.epochs, args.iterations, args.val_iterations, args.threads) == (3, 5, 2, 1)
    assert args.resume and args.log == tmp_path / "t.json"
    assert (
        not build_parser()
        .parse_args(
            tools.nnunet_train(
                1,
                "3d_fullres",
                "0",
                epochs=1,
                iterations=1,
                val_iterations=1,
                threads=2,
                log=tmp_path / "u.json",
            )[2:]
        )
        .resume
    )
    predict = tools.nnunet_predict(
        tmp_path / "m",
        tmp_path / "i",
        tmp_path / "o",
        threads=2,
        folds=("0", "1"),
        mirroring=False,
        probabilities=True,
    )
    args = build_parser().parse_args(predict[2:])
    assert (args.model, args.input, args.output) == (tmp_path / "m", tmp_path / "i", tmp_path / "o")
    assert args.folds == ["0", "1"] and args.threads == 2
    assert args.no_mirroring and args.save_probabilities
    args = build_parser().parse_args(
        tools.nnunet_predict(tmp_path, tmp_path, tmp_path, threads=1)[2:]
    )
    assert args.folds == ["all"] and not args.no_mirroring and not args.save_probabilities


def test_nnunet_driver_counts_work_with_the_shared_counter() -> None:
    """The driver loads ``conv_work.py`` by path (nnU-Net's venv cannot import
    ``benchmarks``): the loaded counter gives the known answer, and ``work`` parses."""
    import torch

    from benchmarks.peers.nnunet_driver import _conv_macs, build_parser

    conv = torch.nn.Conv2d(2, 3, 3, padding=1)
    assert _conv_macs()(conv, torch.zeros(1, 2, 5, 5)) == 25 * 3 * 9 * 2
    args = build_parser().parse_args(["work", "--plans", "p.json", "--dataset-json", "d.json"])
    assert (args.plans, args.dataset_json, args.configuration) == (
        Path("p.json"),
        Path("d.json"),
        "3d_fullres",
    )


def test_nnunet_model_folder_follows_nnunet_naming(tmp_path) -> None:
    folders = nnunet_folders(tmp_path, 2)
    assert folders.model("Dataset501_X", "2d") == (
        tmp_path / "results_seed2" / "Dataset501_X" / "nnUNetTrainer__nnUNetPlans__2d"
    )
    assert folders.model("D", "3d_fullres", "P1").name == "nnUNetTrainer__P1__3d_fullres"


def test_cached_row_fills_what_older_records_lack_and_never_mixes_setups(tmp_path) -> None:
    """A record from before a setting was recorded matches the setup it was made with (the
    legacy value) and is refused for the new one; an absent file is None."""
    path = tmp_path / "row.json"
    assert cached_row(path, {"a": 1}) is None
    store_row(path, {"a": 1}, {"score": 0.5})
    legacy = {"detach": False}
    assert cached_row(path, {"a": 1, "detach": False}, legacy=legacy)["score"] == 0.5
    with pytest.raises(SystemExit, match="row.json holds a run with"):
        cached_row(path, {"a": 1, "detach": True}, legacy=legacy)
    with pytest.raises(SystemExit, match="row.json holds a run with"):
        cached_row(path, {"a": 1, "detach": False})  # no legacy: the key is simply missing
    store_row(path, {"a": 1, "detach": True}, {"score": 0.7})
    assert cached_row(path, {"a": 1, "detach": True}, legacy=legacy)["score"] == 0.7


def _write_mask(path: Path, mask: np.ndarray) -> None:
    import SimpleITK as sitk

    path.parent.mkdir(parents=True, exist_ok=True)
    sitk.WriteImage(sitk.GetImageFromArray(mask.astype(np.uint8)), str(path))


def test_infnet_by_size_groups_slices_by_reference_area_with_known_counts(tmp_path) -> None:
    """Four 10 x 10 slices with lesions of 4, 9, 16 and 36 pixels (one empty slice is left
    out); autojoint predicts each reference exactly, nnU-Net each reference plus one
    extra row of 10 pixels (label 2 counts: the union is scored)."""
    from benchmarks.peers.infnet_by_size import collect, group_cases, render

    sides = {"a": 6, "b": 2, "c": 4, "d": 3}  # area order b < d < c < a
    for case, side in [*sides.items(), ("e", 0)]:
        ref = np.zeros((10, 10), np.uint8)
        ref[:side, :side] = 1
        _write_mask(tmp_path / "raw" / "labelsTs" / f"{case}.nii.gz", ref)
        _write_mask(tmp_path / "predictions" / "autojoint-seed0" / f"{case}.nii.gz", ref)
        extra = ref.copy()
        extra[9, :] = 2
        _write_mask(tmp_path / "predictions" / "nnunet-seed0" / f"{case}.nii.gz", extra)
    counts = collect(tmp_path, 0)
    assert set(counts["autojoint"]) == set(sides)  # the empty slice e is left out
    b = counts["nnU-Net"]["b"]
    assert (b.true_positive, b.predicted, b.reference) == (4, 14, 4)
    assert b.dice == pytest.approx(8 / 18) and b.precision == pytest.approx(4 / 14)
    assert counts["autojoint"]["a"].dice == 1.0
    areas = {c: s.reference for c, s in counts["autojoint"].items()}
    assert group_cases(areas, 2) == [["b", "d"], ["c", "a"]]
    assert group_cases(areas, 3) == [["b", "d"], ["c"], ["a"]]
    table = render(counts, 2)
    row = next(line for line in table.splitlines() if line.startswith("| group 1 "))
    cells = [c.strip() for c in row.strip("|").split("|")]
    # slices, area range, autojoint Dice / sens / prec / ratio, nnU-Net Dice ...
    assert cells[1:7] == ["2", "4-9", "1.000", "1.000", "1.000", "1.00"]
    nn_dice = (8 / 18 + 18 / 28) / 2
    assert cells[7] == f"{nn_dice:.3f}" and cells[10] == f"{(14 / 4 + 19 / 9) / 2:.2f}"
    assert cells[11].startswith(f"{1 - nn_dice:+.3f} [") and cells[11].endswith("2 of 2")
    everything = next(line for line in table.splitlines() if line.startswith("| all lesion"))
    cells = [c.strip() for c in everything.strip("|").split("|")]
    assert cells[1:3] == ["4", "4-36"] and cells[11].endswith("4 of 4")
    all_nn = (8 / 18 + 18 / 28 + 32 / 42 + 72 / 82) / 4
    assert cells[7] == f"{all_nn:.3f}"
    with pytest.raises(SystemExit, match="--groups"):
        group_cases(areas, 5)


def test_infnet_by_size_against_compares_two_folders_autojoint_runs(tmp_path) -> None:
    """``--against``: the autojoint predictions of two output folders, labelled by folder
    name, paired on the first folder's references; the first run - the second."""
    from benchmarks.peers.infnet_by_size import collect, render

    deep, base = tmp_path / "deep", tmp_path / "base"
    for case, side in {"a": 4, "b": 2}.items():
        ref = np.zeros((10, 10), np.uint8)
        ref[:side, :side] = 1
        _write_mask(deep / "raw" / "labelsTs" / f"{case}.nii.gz", ref)
        _write_mask(deep / "predictions" / "autojoint-seed0" / f"{case}.nii.gz", ref)
        half = ref.copy()
        half[: side // 2] = 0  # the base run finds half of each lesion
        _write_mask(base / "predictions" / "autojoint-seed0" / f"{case}.nii.gz", half)
    _write_mask(deep / "predictions" / "nnunet-seed0" / "a.nii.gz", np.zeros((10, 10)))
    counts = collect(deep, 0, against=base)
    assert list(counts) == ["autojoint deep", "autojoint base"]  # nnU-Net is not read
    assert counts["autojoint base"]["a"].true_positive == 8
    assert counts["autojoint base"]["b"].dice == pytest.approx(2 * 2 / (2 + 4))
    table = render(counts, 2)
    assert "Dice autojoint deep - autojoint base [95 % CI], autojoint deep higher" in table
    row = next(line for line in table.splitlines() if line.startswith("| all lesion"))
    gain = 1 - (2 * 2 / 6 + 2 * 8 / 24) / 2
    assert row.strip("|").split("|")[-1].strip().startswith(f"{gain:+.3f} [")
    with pytest.raises(SystemExit, match="other than deep"):
        collect(deep, 0, against=tmp_path / "x" / "deep")
    with pytest.raises(SystemExit, match=r"elsewhere/predictions/autojoint-seed0 is missing"):
        collect(deep, 0, against=tmp_path / "elsewhere")


def test_infnet_by_size_names_a_missing_or_misshapen_prediction(tmp_path) -> None:
    from benchmarks.peers.infnet_by_size import collect

    ref = np.zeros((8, 8), np.uint8)
    ref[:2, :2] = 1
    _write_mask(tmp_path / "raw" / "labelsTs" / "x.nii.gz", ref)
    (tmp_path / "predictions" / "autojoint-seed0").mkdir(parents=True)
    with pytest.raises(SystemExit, match=r"autojoint-seed0/x\.nii\.gz is missing"):
        collect(tmp_path, 0)
    _write_mask(tmp_path / "predictions" / "autojoint-seed0" / "x.nii.gz", np.zeros((8, 9)))
    with pytest.raises(SystemExit, match="x: prediction shape"):
        collect(tmp_path, 0)
