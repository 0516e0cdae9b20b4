"""The multitask benchmark's report, built from synthetic cached runs (no training), and its
paired bootstrap interval against known answers."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from benchmarks.multitask_report import (
    ALL_METRICS,
    CURVE_KEYS,
    METRICS,
    RECORD_VERSION,
    REFERENCE,
    RESULT_FILE,
    SetupMismatchError,
    curve_ends,
    markdown,
    mean_curves,
    read_records,
    run_name,
    summarise,
    summed_confusions,
    write_report,
)
from benchmarks.stats import paired_bootstrap_interval

# --- paired bootstrap -----------------------------------------------------------------------


def test_constant_differences_give_a_zero_width_interval_at_that_constant() -> None:
    b = np.array([0.125, 0.5, 0.875, 0.0625, 0.75, 0.375])  # dyadic: b + 0.25 - b is exact
    iv = paired_bootstrap_interval(b + 0.25, b)
    assert (iv.mean, iv.low, iv.high, iv.num_pairs) == (0.25, 0.25, 0.25, 6)
    rounded = paired_bootstrap_interval([0.7, 0.3, 0.9], [0.6, 0.2, 0.8])  # 0.1 up to rounding
    np.testing.assert_allclose([rounded.low, rounded.mean, rounded.high], 0.1, atol=1e-15)


def test_interval_of_a_symmetric_sample_contains_its_mean() -> None:
    diff = np.array([-3.0, -1.0, 0.0, 1.0, 3.0]) + 2.0  # symmetric about 2
    iv = paired_bootstrap_interval(diff, np.zeros_like(diff))
    assert iv.mean == pytest.approx(2.0)
    assert iv.low < 2.0 < iv.high
    # a 95 % interval of a mean lies inside the sample's range
    assert diff.min() <= iv.low and iv.high <= diff.max()


def test_resampling_is_paired_and_independent_of_the_pairs_order() -> None:
    rng = np.random.default_rng(3)
    a, b = rng.normal(size=8), rng.normal(size=8)
    iv = paired_bootstrap_interval(a, b)
    order = rng.permutation(8)
    assert paired_bootstrap_interval(a[order], b[order]) == iv  # pairs moved together
    unpaired = paired_bootstrap_interval(a[order], b)  # pairs broken up
    assert (unpaired.low, unpaired.high) != (iv.low, iv.high)
    # the fixed seed makes it reproducible; another seed moves only the interval
    other = paired_bootstrap_interval(a, b, seed=1)
    assert paired_bootstrap_interval(a, b) == iv and other.mean == iv.mean


def test_incomplete_pairs_are_left_out_and_bad_inputs_refused() -> None:
    iv = paired_bootstrap_interval([1.0, math.nan, 3.0], [0.0, 0.0, math.nan])
    assert (iv.mean, iv.low, iv.high, iv.num_pairs) == (1.0, 1.0, 1.0, 1)
    empty = paired_bootstrap_interval([math.nan], [1.0])
    assert empty.num_pairs == 0 and math.isnan(empty.mean)
    with pytest.raises(ValueError, match="equal 1-D shapes"):
        paired_bootstrap_interval([1.0, 2.0], [1.0])
    with pytest.raises(ValueError, match="confidence"):
        paired_bootstrap_interval([1.0], [1.0], confidence=1.0)


# --- report from cached runs -----------------------------------------------------------------

SETUP = {"budget": {"epochs": 3, "iterations": 2}, "augmentation": "light", "data": "demo"}
VARIANTS = ("joint (default)", "segmentation only", "classification only")
FOLDS, SEEDS = ("0", "1", "2"), (0, 1)


def _record(variant: str, fold: str, seed: int) -> dict:
    """A run whose Dice is the joint's minus 0.05 for segmentation only and whose accuracy
    is the joint's minus 0.5 for classification only, for every (fold, seed)."""
    base = 0.6 + 0.1 * int(fold) + 0.01 * seed  # what fold and seed do to every variant
    metrics = {m.key: base for m in ALL_METRICS}
    metrics["dice"] = base - (0.05 if variant == "segmentation only" else 0.0)
    metrics["accuracy"] = base - (0.5 if variant == "classification only" else 0.0)
    metrics["macro_auc"] = math.nan if variant == "segmentation only" else base
    curves = {k: [1.0 / (e + 1) + int(fold) for e in range(3)] for k in CURVE_KEYS}
    curves["val_accuracy"] = [None, 0.5, 0.5 + int(fold) * 0.1]
    return {
        "record_version": RECORD_VERSION,
        "variant": variant,
        "fold": fold,
        "seed": seed,
        "setup": {**SETUP, "overrides": [variant]},
        "metrics": metrics,
        "curves": curves,
        "deletion": None,
        "seconds": 1.0,
    }


def _write_runs(out: Path, skip: tuple[str, str, int] | None = None) -> None:
    for v in VARIANTS:
        for f in FOLDS:
            for s in SEEDS:
                if (v, f, s) == skip:
                    continue
                path = out / "runs" / run_name(v, f, s) / RESULT_FILE
                path.parent.mkdir(parents=True)
                path.write_text(json.dumps(_record(v, f, s), allow_nan=True), encoding="utf-8")


def _setups() -> dict[str, dict]:
    return {v: {**SETUP, "overrides": [v]} for v in VARIANTS}


def test_report_from_cached_runs_has_the_known_paired_differences(tmp_path: Path) -> None:
    _write_runs(tmp_path)
    records, missing = read_records(tmp_path, VARIANTS, FOLDS, SEEDS, _setups())
    assert missing == [] and len(records) == 18
    text = write_report(tmp_path, records, SETUP, "Synthetic runs.")
    assert text == (tmp_path / "multitask_gain.md").read_text(encoding="utf-8")
    for line in (
        "| joint (default) − segmentation only | lesion Dice | +0.050 [+0.050, +0.050] | 6 |",
        "| joint (default) − classification only | accuracy | +0.500 [+0.500, +0.500] | 6 |",
    ):
        assert line in text
    assert "CAM contrast (eq. 10 target)" in text
    header = next(line for line in text.splitlines() if line.startswith("| variant | runs |"))
    assert header.count("|") == len(METRICS) + 3  # no label breaks the table
    report = json.loads((tmp_path / "multitask_gain.json").read_text(encoding="utf-8"))
    seg = report["differences"]["segmentation only"]
    assert seg["dice"]["mean"] == pytest.approx(-0.05)
    assert seg["precision"]["low"] == seg["precision"]["high"] == pytest.approx(0.0)
    assert seg["macro_auc"]["num_pairs"] == 0 and seg["macro_auc"]["mean"] is None
    joint = report["summary"][REFERENCE]["dice"]
    assert joint["n"] == 6 and joint["mean"] == pytest.approx(0.705)
    assert len(report["runs"]) == 18
    for name in ("multitask_gain.png", "multitask_gain_curves.png"):
        assert (tmp_path / name).read_bytes()[:4] == b"\x89PNG"


def test_missing_runs_are_listed_and_another_setup_is_refused(tmp_path: Path) -> None:
    _write_runs(tmp_path, skip=("classification only", "2", 1))
    records, missing = read_records(tmp_path, VARIANTS, FOLDS, SEEDS, _setups())
    assert len(records) == 17
    assert missing == [run_name("classification only", "2", 1)]
    other = _setups()
    other["segmentation only"] = {**other["segmentation only"], "augmentation": "default"}
    with pytest.raises(SetupMismatchError, match="delete that run folder"):
        read_records(tmp_path, VARIANTS, FOLDS, SEEDS, other)
    old = tmp_path / "runs" / run_name("joint (default)", "0", 0) / RESULT_FILE
    old.write_text(json.dumps({"variant": "joint (default)", "row": [0.5]}), encoding="utf-8")
    with pytest.raises(SetupMismatchError, match="version None"):
        read_records(tmp_path, VARIANTS, FOLDS, SEEDS, _setups())


def test_records_in_the_store_are_read_first_and_fill_missing_runs(tmp_path: Path) -> None:
    out, store = tmp_path / "out", tmp_path / "store"
    _write_runs(out, skip=("classification only", "2", 1))
    store.mkdir()
    kept = _record("classification only", "2", 1)
    (store / f"{run_name('classification only', '2', 1)}.json").write_text(
        json.dumps(kept), encoding="utf-8"
    )
    # a store record shadows the run folder's: the store's value is the one read
    shadow = _record(REFERENCE, "0", 0)
    shadow["metrics"]["dice"] = 0.123
    (store / f"{run_name(REFERENCE, '0', 0)}.json").write_text(json.dumps(shadow), encoding="utf-8")
    records, missing = read_records(out, VARIANTS, FOLDS, SEEDS, _setups(), store)
    assert missing == [] and len(records) == 18
    first = next(r for r in records if (r["variant"], r["fold"], r["seed"]) == (REFERENCE, "0", 0))
    assert first["metrics"]["dice"] == pytest.approx(0.123)
    assert read_records(out, VARIANTS, FOLDS, SEEDS, _setups())[1] == [
        run_name("classification only", "2", 1)
    ]


def test_mean_curves_average_runs_epoch_by_epoch_skipping_missing_values() -> None:
    records = [_record(REFERENCE, f, 0) for f in ("0", "1")]
    curves = mean_curves(records)[REFERENCE]
    np.testing.assert_allclose(curves["loss_cls"], [1.5, 1.0, 1 / 3 + 0.5])
    assert math.isnan(curves["val_accuracy"][0])
    np.testing.assert_allclose(curves["val_accuracy"][1:], [0.5, 0.55])


def test_curve_ends_are_the_mean_and_sd_of_each_runs_last_quarter_change() -> None:
    records = [_record(REFERENCE, f, 0) for f in ("0", "1")]
    records[0]["curves"]["val_view_dice"] = [0.1 * e for e in range(8)]  # +0.2 at the end
    records[1]["curves"]["val_view_dice"] = [0.5] * 8  # flat
    ends = curve_ends(records)[REFERENCE]
    assert ends["val_view_dice"]["mean"] == pytest.approx(0.1)
    assert ends["val_view_dice"]["sd"] == pytest.approx(math.sqrt(0.02))
    assert math.isnan(ends["loss_seg"]["mean"])  # three epochs: too short to tell
    text = markdown(records, "d")
    assert "Learning curves at the end" in text and "| 0.100 ± 0.141 |" in text


def test_run_names_keep_variant_fold_and_seed_apart() -> None:
    names = {run_name(v, f, s) for v in VARIANTS for f in FOLDS for s in SEEDS}
    assert len(names) == len(VARIANTS) * len(FOLDS) * len(SEEDS)
    assert run_name("classification only, image input", "1", 0) == (
        "classification_only_image_input-fold1-seed0"
    )


def test_fold_is_an_alias_of_one_fold_and_the_setup_keys_the_variant() -> None:
    from benchmarks.multitask_gain import VARIANTS, parse_args, run_setup

    args = parse_args(["--out", "x", "--fold", "2", "--variants", "segmentation only"])
    assert args.folds == ["2"] and args.validation_tta
    assert parse_args(["--out", "x"]).folds == ["0", "1", "2"]
    with pytest.raises(SystemExit):
        parse_args(["--out", "x", "--fold", "1", "--folds", "0", "1"])
    with pytest.raises(SystemExit):
        parse_args(["--out", "x", "--variants", "no such variant"])
    setup = run_setup(args, "segmentation only")
    assert setup["overrides"] == list(VARIANTS["segmentation only"])
    assert setup["budget"] == {"epochs": 16, "iterations": 25}
    assert run_setup(args, "joint (default)") != setup


def test_per_label_dice_gets_its_own_table_and_older_records_show_a_dash() -> None:
    records = [_record(v, f, 0) for v in VARIANTS[:2] for f in ("0", "1")]
    for r in records[:3]:  # the last segmentation-only run predates the per-label keys
        r["metrics"]["dice_consolidation"] = 0.25 * (1 + int(r["fold"]))
        r["metrics"]["dice_ground_glass"] = math.nan if r["fold"] == "1" else 0.5
    summary = summarise(records)
    assert summary[REFERENCE]["dice_consolidation"] == {
        "mean": 0.375,
        "sd": pytest.approx(0.25 / math.sqrt(2)),
        "n": 2,
    }
    assert summary["segmentation only"]["dice_ground_glass"]["n"] == 1
    text = markdown(records, "x")
    assert "| variant | runs | Dice consolidation | Dice ground_glass |" in text
    assert "| segmentation only | 1 | 0.250 | 0.500 |" in text  # one run recorded them
    # paired with the joint's fold-0 run only: 0.25 - 0.25 and 0.5 - 0.5
    assert "| segmentation only | +0.000 [+0.000, +0.000] | +0.000 [+0.000, +0.000] |" in text
    old = [_record(v, f, 0) for v in VARIANTS for f in ("0", "1")]
    assert "Dice per label" not in markdown(old, "x")


def test_multitask_records_keep_each_labels_dice_from_the_validation_summary() -> None:
    from benchmarks.multitask_gain import segmentation_scores

    def block(dice: float | None, **extra: float) -> dict:
        return {"dice": dice, "precision": 0.5, "nsd": 0.4, "sensitivity": 0.3, **extra}

    summary = {
        "labels": {"ground_glass": 1, "consolidation": 2},
        "mean": {
            "ground_glass": block(0.7),
            "consolidation": block(None),  # no validation case had it, none predicted
            "lesion": block(0.6),
        },
        "metric_per_case": [
            {"metrics": {"lesion": {"volume_pred_ml": 3.0, "volume_ref_ml": 1.0}}},
            {"metrics": {"lesion": {"volume_pred_ml": 0.0, "volume_ref_ml": 4.0}}},
            {"metrics": {}},  # a case without a reference mask
        ],
    }
    s = segmentation_scores(summary)
    assert s["dice"] == 0.6 and s["recall"] == 0.3 and s["volume_error_ml"] == 3.0
    assert s["dice_ground_glass"] == 0.7 and math.isnan(s["dice_consolidation"])


def test_confusions_are_summed_per_variant_over_the_runs_that_recorded_one() -> None:
    classes = ["COVID-19", "CAP", "normal"]
    records = [_record(v, f, 0) for v in VARIANTS[:2] for f in ("0", "1")]
    records[0]["confusion"] = {"classes": classes, "matrix": [[2, 1, 0], [0, 3, 0], [0, 0, 4]]}
    records[1]["confusion"] = {"classes": classes, "matrix": [[3, 0, 0], [1, 1, 1], [0, 0, 4]]}
    records[2]["confusion"] = None  # a run made before confusions were recorded
    got = summed_confusions(records)
    assert got == {
        REFERENCE: {"classes": classes, "matrix": [[5, 1, 0], [1, 4, 1], [0, 0, 8]], "runs": 2}
    }
    text = markdown(records, "x")
    assert f"- {REFERENCE} (2 runs): [[5, 1, 0], [1, 4, 1], [0, 0, 8]]" in text
    assert "order COVID-19, CAP, normal" in text
    assert "Diagnosis confusion" not in markdown(records[2:], "x")
    records[1]["confusion"]["classes"] = ["CAP", "COVID-19", "normal"]
    with pytest.raises(ValueError, match="cannot be summed"):
        summed_confusions(records)


def test_a_shared_plan_from_before_the_detach_switch_is_refused(tmp_path: Path) -> None:
    """Such a plan loads end to end, so 'joint (default)' would silently train the old
    way; the benchmark names the file and the fix instead."""
    from benchmarks.multitask_gain import refuse_stale_plan

    path = tmp_path / "plans.json"
    path.write_text(json.dumps({"network": {"classifier_input": "concat"}}), encoding="utf-8")
    with pytest.raises(SystemExit, match="plans.json was planned by an older autojoint"):
        refuse_stale_plan(path)
    network = {"classifier_input": "concat", "detach_lesion_input": True}
    path.write_text(json.dumps({"network": network}), encoding="utf-8")
    refuse_stale_plan(path)  # today's planner output passes
