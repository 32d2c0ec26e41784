"""Lesion-wise BraTS metrics: equal to the official package (brats-evaluation 0.0.10) and to hand computations.

The reference values in tests/data/lesionwise/reference.json were computed by the package itself
(tests/reference/brats_evaluation_reference.py) on the cases in tests/data/lesionwise/cases.npz.
"""
from __future__ import annotations

import importlib.util
import json
import math
from pathlib import Path

import numpy as np
import pytest

from nnunetv2_druwas.evaluation.lesionwise import LESIONWISE_INF_HD95, ROW_KEYS, lesionwise_case_metrics

DATA = Path(__file__).parent / "data" / "lesionwise"
REFERENCE = json.loads((DATA / "reference.json").read_text())
REGIONS = {region: tuple(labels) for region, labels in REFERENCE["regions"].items()}
COUNTS = ("lesion_tp", "lesion_fp", "lesion_fn")


def _reference_script():
    spec = importlib.util.spec_from_file_location(
        "brats_evaluation_reference", Path(__file__).parent / "reference" / "brats_evaluation_reference.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


CASES = _reference_script().read_cases(DATA / "cases.npz")


def assert_row(row: dict, expected: dict, what: str) -> None:
    """Every value as expected: counts exactly, NaN as NaN, inf as inf, the rest to 1e-6."""
    for key, want in expected.items():
        got = row[key]
        if key in COUNTS:
            assert isinstance(got, int) and got == want, f"{what} {key}: {got!r} != {want!r}"
        elif math.isnan(want):
            assert math.isnan(got), f"{what} {key}: {got!r}, expected NaN"
        elif math.isinf(want):
            assert got == want, f"{what} {key}: {got!r}, expected {want!r}"
        else:
            assert abs(got - want) <= 1e-6, f"{what} {key}: {got!r} != {want!r}"


def test_fixture_records_the_package_and_covers_the_cases():
    assert REFERENCE["package"] == "brats-evaluation==0.0.10" and REFERENCE["config"] == "gli"
    assert REFERENCE["versions"]["brats-evaluation"] == "0.0.10"
    assert {"panoptica", "numpy", "scipy", "connected-components-3d", "SimpleITK"} <= set(REFERENCE["versions"])
    assert [c["name"] for c in CASES] == [c["name"] for c in REFERENCE["cases"]]
    assert len(CASES) >= 20
    lesions = [REFERENCE["cases"][i]["array"]["WT"] for i in range(len(CASES))]
    assert sum(r["lesion_tp"] + r["lesion_fn"] >= 2 for r in lesions) >= 10  # multi-lesion references
    assert any(r["lesion_fn"] and r["lesion_tp"] for r in lesions)  # a missed lesion
    assert any(r["lesion_fp"] and r["lesion_tp"] for r in lesions)  # false positives
    assert any(len(set(c["spacing"])) > 1 for c in CASES)  # anisotropic spacing
    for empty_pred, empty_ref in ((True, False), (False, True), (True, True)):
        assert any(bool(c["pred"].any()) != empty_pred and bool(c["ref"].any()) != empty_ref for c in CASES)


@pytest.mark.parametrize("index", range(len(CASES)), ids=[c["name"] for c in CASES])
def test_equals_the_package_on_arrays(index):
    case, expected = CASES[index], REFERENCE["cases"][index]["array"]
    rows = lesionwise_case_metrics(case["pred"], case["ref"], case["spacing"], REGIONS)
    assert [r["region"] for r in rows] == list(REGIONS)
    for row in rows:
        assert tuple(row) == ROW_KEYS
        assert_row(row, expected[row["region"]], f"{case['name']} {row['region']}")


@pytest.mark.parametrize("index", range(len(CASES)), ids=[c["name"] for c in CASES])
def test_equals_the_package_on_nifti_files(index):
    """The package reads files with SimpleITK: arrays in (z, y, x) order, spacing still in (x, y, z) order."""
    case, expected = CASES[index], REFERENCE["cases"][index]["files"]
    rows = lesionwise_case_metrics(case["pred"].T, case["ref"].T, case["spacing"], REGIONS)
    for row in rows:
        assert_row(row, expected[row["region"]], f"{case['name']} {row['region']}")


def test_two_lesions_one_missed_by_hand():
    # reference: lesion A = two voxels along the 3 mm axis, lesion B = one voxel far away; prediction: half of A
    ref = np.zeros((6, 6, 16), np.uint8)
    ref[2, 2, 2] = ref[2, 2, 3] = ref[2, 2, 12] = 1
    pred = np.zeros_like(ref)
    pred[2, 2, 2] = 1
    (row,) = lesionwise_case_metrics(pred, ref, (1.0, 1.0, 3.0), {"WT": (1,)})
    # matched pair A: Dice 2*1/(2+1); surface distances ref->pred [0, 3 mm], pred->ref [0];
    # pooled [0, 0, 3]: 95th percentile 0 + 0.9 * 3; NSD at 1 mm: (1/2 + 1/1) / 2
    # whole masks, in voxels: Dice 2*1/(3+1); ref->pred [0, 1, 10], pred->ref [0]:
    # pooled [0, 0, 1, 10]: 1 + 0.85 * 9; NSD at 0.5 voxel: (1/3 + 1/1) / 2
    assert_row(row, {"dice": 2 / 3, "hd95": 2.7, "nsd": 0.75, "global_dice": 0.5, "global_hd95": 8.65,
                     "global_nsd": 2 / 3, "lesion_tp": 1, "lesion_fp": 0, "lesion_fn": 1}, "missed")


def test_one_false_positive_by_hand():
    ref = np.zeros((12, 12, 12), np.uint8)
    ref[2, 2, 2] = 3
    pred = ref.copy()
    pred[8, 8, 8] = 3
    (row,) = lesionwise_case_metrics(pred, ref, (2.0, 2.0, 2.0), {"ET": (3,)})
    # the matched lesion is perfect; the false positive only counts. Globally (in voxels, the spacing is
    # ignored): pred->ref [0, 6*sqrt(3)], ref->pred [0]: pooled 95th percentile 0.9 * 6*sqrt(3)
    assert_row(row, {"dice": 1.0, "hd95": 0.0, "nsd": 1.0, "global_dice": 2 / 3, "global_hd95": 5.4 * math.sqrt(3),
                     "global_nsd": 0.75, "lesion_tp": 1, "lesion_fp": 1, "lesion_fn": 0}, "false positive")


def test_lesions_are_26_connected_in_3d_and_4_connected_in_2d():
    ref = np.zeros((6, 6, 6), np.uint8)
    ref[2, 2, 2] = ref[3, 3, 3] = 1  # corner contact: one lesion
    pred = np.zeros_like(ref)
    pred[2, 2, 2] = 1
    (row,) = lesionwise_case_metrics(pred, ref, (1.0, 1.0, 1.0), {"WT": (1,)})
    # one matched lesion: ref->pred [0, sqrt(3)], pred->ref [0]: HD95 0.9*sqrt(3); NSD at 1 mm (1/2 + 1) / 2
    assert_row(row, {"dice": 2 / 3, "hd95": 0.9 * math.sqrt(3), "nsd": 0.75, "lesion_tp": 1, "lesion_fn": 0},
               "3D corner contact")
    (row,) = lesionwise_case_metrics(pred[2], ref[2] | ref[3], (1.0, 1.0), {"WT": (1,)})
    assert_row(row, {"dice": 1.0, "lesion_tp": 1, "lesion_fn": 1}, "2D corner contact")


@pytest.mark.parametrize("pred_voxels, ref_voxels, expected", [
    ([], [], {"dice": math.nan, "hd95": math.nan, "nsd": math.nan, "global_dice": math.nan,
              "global_nsd": math.nan, "global_hd95": math.nan, "lesion_tp": 0, "lesion_fp": 0, "lesion_fn": 0}),
    ([], [(1, 1, 1), (5, 5, 5)], {"dice": 0.0, "hd95": math.inf, "nsd": 0.0, "global_dice": 0.0, "global_nsd": 0.0,
                                  "global_hd95": LESIONWISE_INF_HD95, "lesion_tp": 0, "lesion_fp": 0, "lesion_fn": 2}),
    ([(1, 1, 1)], [], {"dice": 0.0, "hd95": math.inf, "nsd": 0.0, "global_dice": 0.0, "global_nsd": 0.0,
                       "global_hd95": 373.0, "lesion_tp": 0, "lesion_fp": 1, "lesion_fn": 0}),
    ([(1, 1, 2)], [(1, 1, 1)], {"dice": 0.0, "hd95": math.inf, "nsd": 0.0, "global_dice": 0.0, "global_nsd": 0.0,
                                "global_hd95": 373.0, "lesion_tp": 0, "lesion_fp": 1, "lesion_fn": 1}),
], ids=["both_empty", "empty_prediction", "empty_reference", "no_overlap"])
def test_empty_and_disjoint_masks_by_hand(pred_voxels, ref_voxels, expected):
    pred, ref = np.zeros((8, 8, 8), np.int16), np.zeros((8, 8, 8), np.int16)
    for voxel in pred_voxels:
        pred[voxel] = 2
    for voxel in ref_voxels:
        ref[voxel] = 2
    (row,) = lesionwise_case_metrics(pred, ref, (1.0, 1.0, 1.0), {"TC": (2, 3)})
    assert_row(row, expected, "empty")


@pytest.mark.parametrize("pred_shape, spacing, message", [
    ((8, 8, 7), (1.0, 1.0, 1.0), "shape"),
    ((8, 8, 8), (1.0, 1.0), "spacing"),
    ((8, 8, 8), (1.0, 0.0, 1.0), "spacing"),
])
def test_bad_input_is_an_error(pred_shape, spacing, message):
    with pytest.raises(ValueError, match=message):
        lesionwise_case_metrics(np.zeros(pred_shape, np.uint8), np.zeros((8, 8, 8), np.uint8), spacing, {"WT": (1,)})
    with pytest.raises(ValueError, match="2D or 3D"):
        lesionwise_case_metrics(np.zeros((2, 2, 2, 2), np.uint8), np.zeros((2, 2, 2, 2), np.uint8), (1.0,) * 4,
                                {"WT": (1,)})
