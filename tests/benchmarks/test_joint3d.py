"""Workload 2's own code: two-step features, the shared split, the bootstrap, the table
(no training, no nnU-Net install)."""

from __future__ import annotations

import argparse

import numpy as np
import pytest
import SimpleITK as sitk

from autojoint.io.dataset import load_raw_dataset
from autojoint.io.files import read_json, write_json
from autojoint.training.splits import make_splits
from benchmarks.peers.joint3d import (
    AJ_TWO_STEP,
    CEILING,
    GATED,
    TOOLS,
    backfill_masks_two_step,
    main,
    plans_name,
    render,
    row_setup,
)
from benchmarks.peers.joint3d_features import (
    FEATURES,
    case_features,
    fit_predict_proba,
    lesion_features,
)
from benchmarks.peers.joint3d_gate import gated_row, training_lesion_free_classes
from benchmarks.peers.joint3d_scoring import write_diagnoses_csv
from benchmarks.peers.layout import SPLITS_FINAL, write_nnunet_splits
from benchmarks.stats import paired_bootstrap_ci
from dataset_conversion.generate_demo import generate_case, generate_dataset


def _known_case() -> tuple[np.ndarray, np.ndarray]:
    """Lung: rows and columns 2..17 of two 20 x 20 slices (512 voxels). Lesions: A, a
    3 x 3 ground-glass square in the lung's corner (slice 0, rows/cols 2..4) whose corner
    voxel is consolidation and lies OUTSIDE the lung mask (dense, as real consolidation);
    B, a 2 x 2 consolidation square in the middle (slice 1, rows/cols 9..10); a one-voxel
    ground-glass speck at (0, 15, 15)."""
    lung = np.zeros((2, 20, 20), bool)
    lung[:, 2:18, 2:18] = True
    label = np.zeros((2, 20, 20), np.uint8)
    label[0, 2:5, 2:5] = 1
    label[0, 2, 2] = 2
    lung[0, 2, 2] = False
    label[1, 9:11, 9:11] = 2
    label[0, 15, 15] = 1
    return label, lung


def test_features_by_hand() -> None:
    label, lung = _known_case()
    f = lesion_features(label, lung, (1.0, 1.0, 1.0), peripheral_mm=2.0, min_component_voxels=3)
    assert set(f) == set(FEATURES)
    # 14 lesion voxels; the lung is the mask plus the lesions: 512 again
    assert f["lesion_lung_ratio"] == pytest.approx(14 / 512)
    assert f["num_components"] == 2  # A and B; the speck is below 3 voxels
    assert f["consolidation_fraction"] == pytest.approx(5 / 14)
    # in-slice distance to the nearest non-lung voxel <= 2 mm: A's rows/cols 2 and 3 (8 of
    # its 9 voxels; (4, 4) is 3 mm in); the speck is 3 mm from the edge, B 7 mm
    assert f["peripheral_ratio"] == pytest.approx(8 / 14)
    every = lesion_features(label, lung, (1.0, 1.0, 1.0), peripheral_mm=2.0, min_component_voxels=1)
    assert every["num_components"] == 3


def test_peripheral_distance_uses_in_plane_spacing_only() -> None:
    label, lung = _known_case()
    # x voxels of 0.5 mm: all of A (columns 2..4: 0.5..1.5 mm) and the speck (1.5 mm from
    # the right edge) are within 2 mm; B (columns 9, 10: 4 mm) is not. z spacing is unused.
    f = lesion_features(label, lung, (7.0, 1.0, 0.5), peripheral_mm=2.0)
    assert f["peripheral_ratio"] == pytest.approx(10 / 14)


def test_empty_mask_has_zero_features_and_grids_must_match() -> None:
    lung = np.ones((2, 5, 5), bool)
    f = lesion_features(np.zeros((2, 5, 5), np.uint8), lung, (1, 1, 1), peripheral_mm=3)
    assert f == dict.fromkeys(FEATURES, 0.0)
    with pytest.raises(ValueError, match="one 3D grid"):
        lesion_features(np.zeros((2, 5, 4), np.uint8), lung, (1, 1, 1), peripheral_mm=3)


def test_case_features_on_a_demo_scan_match_the_generator_lung(tmp_path) -> None:
    """Files with a flipped axis; the CT's estimated lung stands in for the generator's."""
    case = generate_case(
        "demo", "COVID-19", np.random.default_rng(0), fov_mm=100.0, z_extent_mm=100.0
    )
    assert case.direction[0] == -1.0  # this seed flips x
    paths = []
    for name, array in (("ct", case.image), ("mask", case.label)):
        img = sitk.GetImageFromArray(array)
        img.SetSpacing(tuple(reversed(case.spacing_zyx)))
        img.SetOrigin(case.origin_xyz)
        img.SetDirection(case.direction)
        paths.append(tmp_path / f"{name}.nii.gz")
        sitk.WriteImage(img, str(paths[-1]))
    got = case_features(paths[0], paths[1], peripheral_mm=3.0)
    want = lesion_features(case.label, case.lung_mask, case.spacing_zyx, peripheral_mm=3.0)
    assert want["num_components"] >= 3  # a COVID-19 case: several lesions
    np.testing.assert_allclose(
        [got[k] for k in FEATURES], [want[k] for k in FEATURES], rtol=0.01, atol=0.01
    )


def test_classifier_columns_follow_the_given_class_order() -> None:
    pytest.importorskip("sklearn")
    rng = np.random.default_rng(0)
    centres = {"normal": 0.0, "COVID-19": 5.0}
    train = [
        (dict(zip(FEATURES, centres[d] + rng.normal(0, 0.3, 4), strict=True)), d)
        for d in ("normal", "COVID-19") * 10
    ]
    test = [dict.fromkeys(FEATURES, 5.0), dict.fromkeys(FEATURES, 0.0)]
    classes = ["COVID-19", "CAP", "normal"]
    probs = fit_predict_proba([f for f, _ in train], [d for _, d in train], test, classes)
    assert probs.shape == (2, 3)
    np.testing.assert_allclose(probs.sum(axis=1), 1.0)
    np.testing.assert_array_equal(probs[:, 1], 0.0)  # CAP: never seen in training
    assert [classes[i] for i in probs.argmax(axis=1)] == ["COVID-19", "normal"]
    with pytest.raises(ValueError, match="not among"):
        fit_predict_proba([f for f, _ in train], ["flu"] * 20, test, classes)


def test_nnunet_splits_round_trip_equals_autojoint_split(tmp_path) -> None:
    ids = [f"demo_{i:03d}" for i in range(13)]
    diagnoses = [("COVID-19", "CAP", "normal")[i % 3] for i in range(13)]
    splits = make_splits(ids, diagnoses)
    path = write_nnunet_splits(splits, tmp_path)
    assert path == tmp_path / SPLITS_FINAL
    assert read_json(path) == splits
    for fold in read_json(path):  # nnU-Net's do_split reads exactly these two keys
        assert sorted(fold) == ["train", "val"]
        assert sorted(fold["train"] + fold["val"]) == ids


def test_nnunet_splits_refuse_overlap_and_unequal_folds(tmp_path) -> None:
    with pytest.raises(ValueError, match="both training and validation"):
        write_nnunet_splits([{"train": ["a", "b"], "val": ["b"]}], tmp_path)
    with pytest.raises(ValueError, match="other cases"):
        write_nnunet_splits(
            [{"train": ["a"], "val": ["b"]}, {"train": ["b"], "val": ["c"]}], tmp_path
        )
    assert not (tmp_path / SPLITS_FINAL).exists()


def test_bootstrap_known_answers() -> None:
    assert paired_bootstrap_ci([0.7, 0.8, 0.6], [0.5, 0.6, 0.4]) == pytest.approx((0.2, 0.2, 0.2))
    # differences 0 and 1: resample means 0 (p 1/4), 1/2 (1/2), 1 (1/4)
    assert paired_bootstrap_ci([1.0, 2.0], [1.0, 1.0]) == pytest.approx((0.5, 0.0, 1.0))
    one = paired_bootstrap_ci([0.9], [0.4])
    assert one == pytest.approx((0.5, 0.5, 0.5))


def test_bootstrap_is_seeded_order_free_and_antisymmetric() -> None:
    a, b = [0.71, 0.64, 0.80, 0.55, 0.69], [0.60, 0.66, 0.70, 0.50, 0.61]
    first = paired_bootstrap_ci(a, b)
    assert paired_bootstrap_ci(a, b) == first
    order = [3, 0, 4, 1, 2]  # the pairs in another order: the same interval
    assert paired_bootstrap_ci([a[i] for i in order], [b[i] for i in order]) == first
    diff, low, high = paired_bootstrap_ci(b, a)
    assert diff == pytest.approx(-first[0])
    # swapping the tools mirrors the interval, up to the resampling noise of 10 000 draws
    assert (low, high) == pytest.approx((-first[2], -first[1]), abs=0.01)
    assert low <= diff <= high


def test_bootstrap_seed_draws_other_resamples() -> None:
    rng = np.random.default_rng(3)
    a, b = rng.normal(0.7, 0.1, 30).tolist(), rng.normal(0.6, 0.1, 30).tolist()
    first, other = paired_bootstrap_ci(a, b), paired_bootstrap_ci(a, b, seed=1)
    assert other[0] == first[0]  # the mean is the data's, not the resampling's
    assert other[1:] != first[1:]
    assert other[1:] == pytest.approx(first[1:], abs=0.01)  # but the interval barely moves


@pytest.mark.parametrize(
    ("a", "b", "match"),
    [
        ([1.0], [1.0, 2.0], "equally long"),
        ([1.0, 2.0], [1.0], "equally long"),
        ([], [], "equally long"),
        ([np.nan], [0.0], "finite"),
        ([1.0, 2.0], [0.0, np.inf], "finite"),  # one complete pair is not enough
    ],
)
def test_bootstrap_rejects_bad_input(a, b, match) -> None:
    with pytest.raises(ValueError, match=match):
        paired_bootstrap_ci(a, b)


def test_bootstrap_rejects_a_confidence_outside_0_1() -> None:
    with pytest.raises(ValueError, match="confidence must lie in"):
        paired_bootstrap_ci([1.0], [0.0], confidence=1.0)


def test_plans_name_and_table() -> None:
    assert plans_name(8.0) == "nnUNetPlans"
    assert plans_name(1.0) == "nnUNetPlans_1GB"
    row = {"Dice lesion": 0.5, "accuracy": 1.0, "macro-AUC": 1.0, "train s/iteration": 3.0}
    result = {
        "setup": {
            "num_cases": 10,
            "epochs": 1,
            "iterations": 2,
            "val_iterations": 10,
            "threads": 1,
            "gpu_memory_gb": 1.0,
            "autojoint_optimizer": "adam",
            "autojoint_augmentation": "default",
            "peripheral_mm": 3.0,
        },
        "folds": [0],
        "classes": ["COVID-19", "CAP", "normal"],
        "prepare": {
            "plans": {
                "nnunet": {"patch": [40, 80, 80], "batch": 2},
                "autojoint": {"patch": [24, 48, 80], "batch": 2},
            }
        },
        "rows": {"autojoint": [row], "nnU-Net": [row]},
        "bootstrap": {"Dice lesion, autojoint - nnU-Net": (0.0, -0.1, 0.1)},
        "confusion": {"autojoint": [[1, 0, 0], [0, 1, 0], [0, 0, 1]]},
    }
    text = render(result)
    assert "instead of nnU-Net's 8 GB default" in text
    assert "nnU-Net 3d_fullres 40x80x80 batch 2, autojoint 24x48x80 batch 2" in text
    assert "DEVIATES" in text and "optimizer adam" in text
    assert "| autojoint | 0.500 | n/a |" in text
    assert "+0.000 (95% interval -0.100 to +0.100)" in text


def _cached_rows_setup() -> dict:
    """The row setup of a 60-case, 16 x 25-iteration run with the default recipe."""
    return row_setup(
        argparse.Namespace(
            num_cases=60,
            epochs=16,
            iterations=25,
            threads=1,
            gpu_memory_gb=1.0,
            autojoint_optimizer=None,
            autojoint_augmentation=None,
            peripheral_mm=3.0,
        )
    )


GATED_DICE = {("autojoint", 0): 0.9, ("autojoint", 2): 0.7, ("nnunet", 0): 0.4, ("nnunet", 2): 0.6}


def test_report_only_rebuilds_the_table_from_complete_folds(tmp_path, capsys) -> None:
    """Folds 0 and 2 have both tools' rows, fold 1 only autojoint's: the table holds folds
    0 and 2 with their known means, fold 1 is named and left out, nothing is trained (no
    nnU-Net, no raw data: only the records directory)."""
    args = ["--out", str(tmp_path / "out"), "--records", str(tmp_path / "rec")]
    setup = _cached_rows_setup()
    eye = [[1, 0, 0], [0, 1, 0], [0, 0, 1]]
    write_json(
        {
            "setup": {"num_cases": 60, "gpu_memory_gb": 1.0},
            "plans": {
                "nnunet": {"patch": [48, 80, 80], "batch": 2},
                "autojoint": {"patch": [24, 48, 80], "batch": 2},
            },
            "seconds": {"nnunet": 1.0, "autojoint": 1.0},
            "classes": ["COVID-19", "CAP", "normal"],
            "splits": [{"train": ["b"], "val": ["a"]}] * 3,
        },
        tmp_path / "rec" / "prepare.json",
    )
    dice = {
        ("autojoint", 0): 0.6,
        ("autojoint", 2): 0.8,
        ("nnunet", 0): 0.5,
        ("nnunet", 2): 0.5,
        ("autojoint", 1): 0.1,
    }
    for (tool, fold), value in dice.items():
        row = {
            "setup": setup,
            "scores": {"Dice lesion": value, "accuracy": 1.0},
            "confusion": eye,
            "curves": {"train loss": [1.0, 0.5]},
        }
        if tool == "nnunet":
            row["ceiling"] = {"scores": {"Dice lesion": 1.0, "accuracy": 1.0}, "confusion": eye}
        elif fold == 0:  # fold 2's row predates the two-step on our masks; no OUT to add it
            row["two_step"] = {"scores": {"accuracy": 0.75}, "confusion": eye}
        if fold != 1:
            row["gated"] = {"scores": {"Dice lesion": GATED_DICE[(tool, fold)]}}
        write_json(row, tmp_path / "rec" / f"{tool}-fold{fold}.json")
    main([*args, "--folds", "0", "1", "2", "--report-only"])
    printed = capsys.readouterr().out
    assert "fold 1: rows missing" in printed
    assert f"fold 2: no autojoint predictions in {tmp_path / 'out'}" in printed
    result = read_json(tmp_path / "out" / "joint3d.json")
    assert result["folds"] == [0, 2]
    assert [r["Dice lesion"] for r in result["rows"][TOOLS["autojoint"]]] == [0.6, 0.8]
    assert len(result["rows"][CEILING]) == 2
    assert result["rows"][AJ_TWO_STEP] == [{"accuracy": 0.75, "fold": 0}]
    assert result["confusion"][AJ_TWO_STEP] == eye
    joint_minus_two_step = result["bootstrap"][f"accuracy, autojoint - {AJ_TWO_STEP}"]
    assert joint_minus_two_step == pytest.approx((0.25, 0.25, 0.25))
    assert result["confusion"][TOOLS["nnunet"]] == [[2, 0, 0], [0, 2, 0], [0, 0, 2]]
    assert result["bootstrap"]["Dice lesion, autojoint - nnU-Net"][0] == pytest.approx(0.2)
    assert [r["Dice lesion"] for r in result["rows"][GATED["autojoint"]]] == [0.9, 0.7]
    gated_diff = result["bootstrap"]["Dice lesion, autojoint gated - nnU-Net gated"]
    assert gated_diff[0] == pytest.approx(0.3)  # (0.9 - 0.4 + 0.7 - 0.6) / 2
    assert result["bootstrap"]["Dice lesion, autojoint gated - nnU-Net"][0] == pytest.approx(0.3)
    text = (tmp_path / "out" / "joint3d_table.md").read_text(encoding="utf-8")
    assert "folds [0, 2]" in text and "| 0.700 ± 0.141 |" in text  # sample sd of 0.6, 0.8
    with pytest.raises(SystemExit, match="no fold of \\[1\\]"):
        main([*args, "--folds", "1", "--report-only"])
    with pytest.raises(SystemExit, match="prepare.json"):
        main(["--out", str(tmp_path / "x"), "--records", str(tmp_path / "y"), "--report-only"])


def test_masks_two_step_on_reference_masks_reads_them_as_the_reference(tmp_path, capsys) -> None:
    """Backfilling the row "autojoint masks + two-step" of a cached fold whose "predicted"
    masks ARE the reference masks: the features of the predictions equal the reference
    features, the accuracy is the CSV's agreement with the reference diagnoses, the cached
    row keeps everything else; without the predictions the row is left as it was."""
    pytest.importorskip("sklearn")
    out = tmp_path / "out"
    generate_dataset(out / "raw", num_train=9, seed=3, fov_mm=80.0, z_extent_mm=60.0)
    labels = sorted((out / "raw" / "labelsTr").glob("*.nii.gz"))
    cases = [p.name[: -len(".nii.gz")] for p in labels]
    prep = {"splits": [{"train": cases[:6], "val": cases[6:]}]}
    args = argparse.Namespace(num_cases=9, peripheral_mm=3.0)
    record = {"setup": {"x": 1}, "scores": {"accuracy": 0.5}, "confusion": [[1]], "curves": {}}
    path = tmp_path / "rec" / "autojoint-fold0.json"
    write_json(record, path)

    assert backfill_masks_two_step(out, record, path, 0, prep, args) == record
    assert "row 'autojoint masks + two-step' left out" in capsys.readouterr().out
    assert read_json(path) == record

    folder = out / "predictions" / "autojoint-fold0"
    folder.mkdir(parents=True)
    for label in labels[6:]:
        (folder / label.name).write_bytes(label.read_bytes())
    got = backfill_masks_two_step(out, record, path, 0, prep, args)
    assert read_json(path) == got
    assert {k: v for k, v in got.items() if k != "two_step"} == record
    reference = read_json(out / "features" / "reference.json")["features"]
    predicted = read_json(out / "features" / "autojoint-fold0.json")
    assert predicted == {c: reference[c] for c in cases[6:]}
    with open(out / "predictions" / "autojoint-fold0.two_step.csv", encoding="utf-8") as fh:
        rows = [line.split(",") for line in fh.read().splitlines()[1:]]
    truth = dict(
        line.split(",")
        for line in (out / "folds" / "fold_0" / "diagnoses.csv")
        .read_text(encoding="utf-8")
        .splitlines()[1:]
    )
    agree = np.mean([truth[r[0]] == r[1] for r in rows])
    assert [r[0] for r in rows] == cases[6:]
    assert got["two_step"]["scores"]["accuracy"] == pytest.approx(agree)
    assert np.sum(got["two_step"]["confusion"]) == 3


def test_gate_empties_the_masks_of_cases_called_a_lesion_free_class(tmp_path) -> None:
    """The "predictions" are the reference masks and every case is called by its reference
    diagnosis but one diseased case, called normal: normal is the lesion-free class, the
    normal cases and that one are emptied (same geometry), the others are the reference,
    and the lesion Dice is 1 on every diseased case but the emptied one (0); cases whose
    masks are both empty are left out of the mean, as the evaluator does."""
    out = tmp_path / "out"
    generate_dataset(out / "raw", num_train=9, seed=3, fov_mm=80.0, z_extent_mm=60.0)
    dataset = load_raw_dataset(out / "raw")
    truth = {c.case_id: str(c.diagnosis) for c in dataset.cases}
    diseased = sorted(c for c, d in truth.items() if d != "normal")
    assert sum(d == "normal" for d in truth.values()) >= 3
    called = {**truth, diseased[0]: "normal"}
    csv_path = tmp_path / "called.csv"
    write_diagnoses_csv(csv_path, [[c, d] for c, d in called.items()], ["case", "diagnosis"])
    refs = tmp_path / "refs.csv"
    write_diagnoses_csv(refs, [[c, d] for c, d in truth.items()], ["case", "diagnosis"])
    split = {"train": sorted(truth), "val": sorted(truth)}
    labels = out / "raw" / "labelsTr"
    row = gated_row(dataset, split, labels, csv_path, labels, refs, tmp_path / "gated")

    assert training_lesion_free_classes(dataset, split["train"]) == ("normal",)
    assert row["classes"] == ["normal"]
    normals = sorted(c for c, d in truth.items() if d == "normal")
    assert row["emptied"] == sorted([*normals, diseased[0]])
    assert row["emptied_with_lesions"] == [diseased[0]]
    assert row["scores"]["Dice lesion"] == pytest.approx((len(diseased) - 1) / len(diseased))
    emptied = sitk.ReadImage(str(tmp_path / "gated" / f"{diseased[0]}.nii.gz"))
    original = sitk.ReadImage(str(labels / f"{diseased[0]}.nii.gz"))
    assert not sitk.GetArrayFromImage(emptied).any()
    assert emptied.GetSpacing() == original.GetSpacing()
    assert emptied.GetDirection() == original.GetDirection()
    kept = sitk.ReadImage(str(tmp_path / "gated" / f"{diseased[1]}.nii.gz"))
    np.testing.assert_array_equal(
        sitk.GetArrayFromImage(kept),
        sitk.GetArrayFromImage(sitk.ReadImage(str(labels / f"{diseased[1]}.nii.gz"))),
    )


def test_autojoint_rows_name_their_lesion_input_and_stale_rows_are_refused(
    tmp_path, capsys
) -> None:
    """With a plan that detaches the lesion input (today's default), a cached autojoint row
    from before the harness recorded the switch (trained end to end) is refused rather than
    reported under the new setting, nnU-Net's row of the same fold stays valid, and a row
    made with the switch reaches the table, which says how autojoint was trained."""
    rec = tmp_path / "rec"
    args = ["--out", str(tmp_path / "out"), "--records", str(rec), "--folds", "0"]
    setup = _cached_rows_setup()
    eye = [[1, 0, 0], [0, 1, 0], [0, 0, 1]]
    autojoint_plan = {"patch": [24, 48, 80], "batch": 2, "detach_lesion_input": True}
    write_json(
        {
            "setup": {"num_cases": 60, "gpu_memory_gb": 1.0},
            "plans": {"nnunet": {"patch": [48, 80, 80], "batch": 2}, "autojoint": autojoint_plan},
            "seconds": {"nnunet": 1.0, "autojoint": 1.0},
            "classes": ["COVID-19", "CAP", "normal"],
            "splits": [{"train": ["b"], "val": ["a"]}],
        },
        rec / "prepare.json",
    )
    scores = {"scores": {"Dice lesion": 0.5, "accuracy": 1.0}, "confusion": eye, "curves": {}}
    ceiling = {"scores": {"Dice lesion": 1.0, "accuracy": 1.0}, "confusion": eye}
    write_json({"setup": setup, **scores, "ceiling": ceiling}, rec / "nnunet-fold0.json")
    write_json({"setup": setup, **scores}, rec / "autojoint-fold0.json")
    with pytest.raises(SystemExit, match="autojoint-fold0.json holds a run with"):
        main([*args, "--report-only"])
    detached = {**setup, "autojoint_detach_lesion_input": True}
    write_json({"setup": detached, **scores}, rec / "autojoint-fold0.json")
    main([*args, "--report-only"])
    text = (tmp_path / "out" / "joint3d_table.md").read_text(encoding="utf-8")
    assert "its classifier reads the lesion map detached" in text
    assert read_json(tmp_path / "out" / "joint3d.json")["folds"] == [0]


def test_kept_prepare_refuses_rows_of_another_split(tmp_path) -> None:
    """Rows cached for one split must not be paired with a run on another: the records'
    prepare.json is compared before it is replaced."""
    from benchmarks.peers.joint3d import _keep_prepare

    prep = {
        "classes": ["a", "b"],
        "splits": [{"train": ["x"], "val": ["y"]}],
        "plans": {"nnunet": {"patch": [8, 8, 8], "batch": 2}, "autojoint": {}},
    }
    rows = tmp_path / "rows"
    assert _keep_prepare(tmp_path / "out", prep, rows) == prep
    assert read_json(rows / "prepare.json") == prep
    assert _keep_prepare(tmp_path / "out", prep, rows) == prep  # the same split passes
    other = {**prep, "splits": [{"train": ["y"], "val": ["x"]}]}
    with pytest.raises(SystemExit, match="holds other splits"):
        _keep_prepare(tmp_path / "out", other, rows)
    bigger = {**prep, "plans": {**prep["plans"], "nnunet": {"patch": [16, 8, 8], "batch": 2}}}
    with pytest.raises(SystemExit, match="holds other nnunet"):
        _keep_prepare(tmp_path / "out", bigger, rows)
    assert read_json(rows / "prepare.json") == prep  # nothing overwritten


def test_training_record_reads_only_the_logs_it_is_given(tmp_path) -> None:
    """A fold re-run for one tool reads that tool's log alone; seconds per iteration are the
    summed epoch walls over the run's iterations."""
    from benchmarks.peers.joint3d_scoring import training_record

    epochs = [
        {"seconds": 10.0, "loss_seg": 1.0, "val_view_dice": 0.2},
        {"seconds": 30.0, "loss_seg": 0.5, "val_view_dice": 0.4},
    ]
    write_json({"epochs": epochs}, tmp_path / "training_log.json")
    record = training_record(None, tmp_path / "training_log.json", 8)
    assert list(record) == ["autojoint"]
    assert record["autojoint"]["seconds_per_iteration"] == pytest.approx(5.0)
    assert list(record["autojoint"]["curves"].values()) == [[1.0, 0.5], [0.2, 0.4]]
    assert training_record(None, None, 8) == {}
