"""BraTS-convention evaluation: values against medpy and MONAI, empty masks, folders, CLI."""
from __future__ import annotations

import json
import subprocess
import sys
import warnings
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
import pytest
from medpy.metric import binary as medpy_binary
from scipy.ndimage import binary_erosion, gaussian_filter, generate_binary_structure

from nnunetv2_druwas.errors import DruwasError
from nnunetv2_druwas.evaluation import BRATS_EMPTY_HD95, dice, evaluate_folder, hd95, region_metrics, surfaces
from nnunetv2_druwas.evaluation.metrics import bounding_box

COLUMNS = ["case", "region", "protocol", "dice", "hd95", "sensitivity", "specificity", "n_pred", "n_ref", "n_tp",
           "missing", "hd95_definition", "nsd", "global_dice", "global_nsd", "global_hd95", "lesion_tp", "lesion_fp",
           "lesion_fn", "padded_from"]
NNUNET_DATASET_JSON = {"labels": {"background": 0, "whole tumor": [1, 2, 3], "tumor core": [2, 3],
                                  "enhancing tumor": 3}, "regions_class_order": [1, 2, 3], "file_ending": ".nii.gz"}


def blobs(rng: np.random.Generator, shape: tuple[int, ...], level: float = 0.53) -> np.ndarray:
    """A random mask of smooth blobs (several components, some touching the volume border)."""
    return gaussian_filter(rng.random(shape), 1.5) > level


def random_pairs(seed: int, n: int, ndim: int = 3):
    """n non-empty (pred, ref, spacing) triples of random shapes and anisotropic spacings."""
    rng = np.random.default_rng(seed)
    while n:
        shape = tuple(int(s) for s in rng.integers(6, 22, ndim))
        pred, ref = blobs(rng, shape), blobs(rng, shape)
        if pred.any() and ref.any():
            n -= 1
            yield pred, ref, tuple(float(s) for s in rng.uniform(0.4, 3.0, ndim))


@pytest.mark.parametrize("ndim", [2, 3])
def test_dice_and_hd95_equal_medpy(ndim):
    for pred, ref, spacing in random_pairs(seed=ndim, n=25, ndim=ndim):
        assert dice(pred, ref) == pytest.approx(medpy_binary.dc(pred, ref), abs=1e-12)
        assert hd95(pred, ref, spacing) == pytest.approx(medpy_binary.hd95(pred, ref, voxelspacing=spacing), abs=1e-6)


def test_max_directed_equals_monai():
    import torch
    from monai.metrics import compute_hausdorff_distance

    for pred, ref, spacing in random_pairs(seed=7, n=20):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            expected = compute_hausdorff_distance(torch.from_numpy(pred)[None, None], torch.from_numpy(ref)[None, None],
                                                  percentile=95, spacing=spacing).item()
        # MONAI returns float32: agree to float32 rounding (about 1e-7 relative), not 1e-12
        assert hd95(pred, ref, spacing, definition="max_directed") == pytest.approx(expected, rel=1e-6, abs=1e-6)


def test_surfaces_on_crop_equal_full_volume_surfaces():
    rng = np.random.default_rng(3)
    mask = blobs(rng, (16, 18, 12), level=0.5)
    mask[0, :5, :5] = mask[-1, -5:, 3:] = True  # touch the volume border on both sides
    other = np.zeros_like(mask)
    other[4:9, 4:9, 4:9] = True
    full = mask ^ binary_erosion(mask, structure=generate_binary_structure(3, 1))
    box = bounding_box(mask | other)
    assert np.array_equal(surfaces(mask, other)[0], full[box])


def test_empty_mask_conventions():
    empty, full = np.zeros((8, 8, 8), bool), np.zeros((8, 8, 8), bool)
    full[2:5, 2:5, 2:5] = True
    spacing = (1.0, 1.0, 1.0)
    assert dice(empty, empty) == 1.0 and hd95(empty, empty, spacing) == 0.0
    for pred, ref in ((empty, full), (full, empty)):
        assert dice(pred, ref) == 0.0
        for definition in ("brats", "max_directed"):
            assert hd95(pred, ref, spacing, definition) == BRATS_EMPTY_HD95
            assert hd95(pred, ref, spacing, definition, empty_hd95=99.0) == 99.0
    both_empty = region_metrics(empty, empty, spacing)
    assert both_empty["specificity"] == 1.0 and np.isnan(both_empty["sensitivity"])
    missed = region_metrics(empty, full, spacing)
    assert missed["sensitivity"] == 0.0 and missed["n_ref"] == 27 and missed["n_pred"] == 0
    over = region_metrics(full, empty, spacing, total=1000)
    assert over["specificity"] == pytest.approx(1 - 27 / 1000)


def write_nifti(path: Path, labels: np.ndarray, spacing=(1.0, 1.0, 1.0)) -> None:
    nib.save(nib.Nifti1Image(labels.astype(np.uint8), np.diag([*spacing, 1.0])), path)


def tumour(rng: np.random.Generator, shape=(24, 24, 20), enhancing: int = 3, necrosis: int = 2,
           edema: int = 1) -> np.ndarray:
    """A label map with edema, enhancing rim and necrotic core, in the given label values."""
    field = gaussian_filter(rng.random(shape), 2.0)
    seg = np.zeros(shape, np.uint8)
    seg[field > np.quantile(field, 0.7)] = edema
    seg[field > np.quantile(field, 0.85)] = enhancing
    seg[field > np.quantile(field, 0.95)] = necrosis
    return seg


@pytest.fixture
def folders(tmp_path):
    """GT cases A, B, C (C has no enhancing tumour) in .nii.gz; predictions for A (.nii), B, extra D."""
    rng = np.random.default_rng(0)
    gt_dir, pred_dir = tmp_path / "gt", tmp_path / "pred"
    gt_dir.mkdir()
    pred_dir.mkdir()
    spacing = (1.0, 1.2, 2.5)
    gts = {case: tumour(rng) for case in "ABC"}
    gts["C"][gts["C"] == 3] = 1
    for case, seg in gts.items():
        write_nifti(gt_dir / f"{case}.nii.gz", seg, spacing)
    preds = {"A": np.roll(gts["A"], 1, axis=0), "B": np.zeros_like(gts["B"]), "D": gts["A"]}
    preds["B"][:10] = gts["B"][:10]
    write_nifti(pred_dir / "A.nii", preds["A"], spacing)
    for case in "BD":
        write_nifti(pred_dir / f"{case}.nii.gz", preds[case], spacing)
    (pred_dir / "summary.json").write_text("{}")
    return pred_dir, gt_dir, gts, preds, spacing


def test_evaluate_folder_scores_missing_and_reports_extra(folders, tmp_path, capsys):
    pred_dir, gt_dir, gts, preds, spacing = folders
    out = tmp_path / "out" / "metrics.csv"
    df = evaluate_folder(pred_dir, gt_dir, out, labels="nnunet", num_processes=1, progress=False)
    assert list(df.columns) == COLUMNS
    assert list(df["case"]) == list("AAABBBCCC") and list(df["region"]) == ["WT", "TC", "ET"] * 3
    assert df.attrs["extra_predictions"] == ["D"]
    assert "D" in capsys.readouterr().err
    missing = df[df["case"] == "C"]
    assert missing["missing"].all() and (missing["dice"] == 0).all() and (missing["hd95"] == BRATS_EMPTY_HD95).all()
    assert not df[df["case"] != "C"]["missing"].any()
    for case in "AB":
        for region, labels in {"WT": [1, 2, 3], "TC": [2, 3], "ET": [3]}.items():
            p, g = np.isin(preds[case], labels), np.isin(gts[case], labels)
            row = df[(df["case"] == case) & (df["region"] == region)].iloc[0]
            assert row["dice"] == pytest.approx(medpy_binary.dc(p, g), abs=1e-12)
            assert row["hd95"] == pytest.approx(medpy_binary.hd95(p, g, voxelspacing=spacing), abs=1e-6)
            assert (row["n_pred"], row["n_ref"]) == (p.sum(), g.sum())
            assert row["sensitivity"] == pytest.approx(medpy_binary.sensitivity(p, g))
            assert row["specificity"] == pytest.approx(medpy_binary.specificity(p, g))
    assert (df["hd95_definition"] == "brats").all()
    written = pd.read_csv(out)
    assert list(written.columns) == COLUMNS and len(written) == 9
    summary = pd.read_csv(out.with_name("metrics_summary.csv"))
    assert set(summary["region"]) == {"WT", "TC", "ET"} and set(summary["metric"]) == {"dice", "hd95"}
    assert (summary["n_missing"] == 1).all()
    wt_dice = summary[(summary["region"] == "WT") & (summary["metric"] == "dice")].iloc[0]
    assert wt_dice["mean"] == pytest.approx(df[df["region"] == "WT"]["dice"].mean())
    assert wt_dice["median"] == pytest.approx(df[df["region"] == "WT"]["dice"].median())
    assert not list(out.parent.glob("*.tmp"))


def test_empty_regions_in_a_folder(tmp_path):
    """GT without enhancing tumour: predicted ET -> Dice 0, HD95 empty value; both empty -> Dice 1, HD95 0."""
    rng = np.random.default_rng(1)
    gt = tumour(rng)
    gt[gt == 3] = 1
    for name, pred in (("ok", gt.copy()), ("et", np.where(gt == 1, 3, gt))):
        (tmp_path / name / "pred").mkdir(parents=True)
        (tmp_path / name / "gt").mkdir()
        write_nifti(tmp_path / name / "gt" / "X.nii.gz", gt)
        write_nifti(tmp_path / name / "pred" / "X.nii.gz", pred)
    ok = evaluate_folder(tmp_path / "ok" / "pred", tmp_path / "ok" / "gt", labels="nnunet", num_processes=1,
                         progress=False).set_index("region")
    assert ok.loc["ET", "dice"] == 1.0 and ok.loc["ET", "hd95"] == 0.0
    et = evaluate_folder(tmp_path / "et" / "pred", tmp_path / "et" / "gt", labels="nnunet", num_processes=1,
                         empty_hd95=50.0, hd95="max_directed", progress=False).set_index("region")
    assert et.loc["ET", "dice"] == 0.0 and et.loc["ET", "hd95"] == 50.0
    assert (et["hd95_definition"] == "max_directed").all()


def test_brats_label_convention(tmp_path):
    rng = np.random.default_rng(2)
    gt = tumour(rng, enhancing=4, necrosis=1, edema=2)
    pred = np.roll(gt, 2, axis=1)
    for folder, seg in (("gt", gt), ("pred", pred)):
        (tmp_path / folder).mkdir()
        write_nifti(tmp_path / folder / "X.nii.gz", seg)
    df = evaluate_folder(tmp_path / "pred", tmp_path / "gt", labels="brats", num_processes=1,
                         progress=False).set_index("region")
    for region, labels in {"WT": [1, 2, 4], "TC": [1, 4], "ET": [4]}.items():
        p, g = np.isin(pred, labels), np.isin(gt, labels)
        assert df.loc[region, "dice"] == pytest.approx(medpy_binary.dc(p, g))
        assert df.loc[region, "hd95"] == pytest.approx(medpy_binary.hd95(p, g), abs=1e-6)


def test_labels_outside_the_convention_are_refused(tmp_path):
    """BraTS labels (enhancing 4) read as nnU-Net's would drop ET from every region: an error, not zeros."""
    gt = tumour(np.random.default_rng(4), enhancing=4, necrosis=1, edema=2)
    for folder in ("gt", "pred"):
        (tmp_path / folder).mkdir()
        write_nifti(tmp_path / folder / "X.nii.gz", gt)
    with pytest.raises(DruwasError, match=r"case X: ground truth .*X.nii.gz has label\(s\) \[4\].*--labels"):
        evaluate_folder(tmp_path / "pred", tmp_path / "gt", labels="nnunet", num_processes=1, progress=False)
    write_nifti(tmp_path / "pred" / "X.nii.gz", np.where(gt == 4, 3, gt))
    with pytest.raises(DruwasError, match=r"case X: prediction .* label\(s\) \[3\]"):
        evaluate_folder(tmp_path / "pred", tmp_path / "gt", labels="brats", num_processes=1, progress=False)
    (tmp_path / "pred" / "X.nii.gz").unlink()  # a missing prediction: the ground truth is still checked
    with pytest.raises(DruwasError, match=r"ground truth .* label\(s\) \[4\]"):
        evaluate_folder(tmp_path / "pred", tmp_path / "gt", labels="nnunet", num_processes=1, progress=False)


def test_labels_from_dataset_json(folders, tmp_path):
    pred_dir, gt_dir, *_ = folders
    with pytest.raises(DruwasError, match="--labels"):
        evaluate_folder(pred_dir, gt_dir, num_processes=1, progress=False)
    (gt_dir.parent / "dataset.json").write_text(json.dumps(NNUNET_DATASET_JSON))  # beside gt_dir, as in preprocessed
    from_json = evaluate_folder(pred_dir, gt_dir, num_processes=1, progress=False)
    explicit = evaluate_folder(pred_dir, gt_dir, labels="nnunet", num_processes=1, progress=False)
    pd.testing.assert_frame_equal(from_json, explicit)
    not_regions = tmp_path / "labels_only.json"
    not_regions.write_text(json.dumps({"labels": {"background": 0, "edema": 1, "necrosis": 2, "enhancing": 3}}))
    with pytest.raises(DruwasError, match="regions_class_order"):
        evaluate_folder(pred_dir, gt_dir, dataset_json=not_regions, num_processes=1, progress=False)


def test_cases_restricts_scoring_to_a_fold(folders):
    """A fold's validation folder against the whole training set's gt_segmentations."""
    pred_dir, gt_dir, *_ = folders
    df = evaluate_folder(pred_dir, gt_dir, labels="nnunet", cases=["B", "A"], num_processes=1, progress=False)
    assert list(df["case"].unique()) == ["A", "B"] and not df["missing"].any()
    with pytest.raises(DruwasError, match="case.*Z"):
        evaluate_folder(pred_dir, gt_dir, labels="nnunet", cases=["A", "Z"], num_processes=1, progress=False)


@pytest.mark.parametrize("change", ["shape", "spacing"])
def test_mismatched_prediction_names_the_case(folders, tmp_path, change):
    pred_dir, gt_dir, gts, _, spacing = folders
    if change == "shape":
        write_nifti(pred_dir / "B.nii.gz", gts["B"][:, :, :-1], spacing)
    else:
        write_nifti(pred_dir / "B.nii.gz", gts["B"], (1.0, 1.2, 2.0))
    out = tmp_path / "bad.csv"
    with pytest.raises(DruwasError, match=f"case B.*{change}"):
        evaluate_folder(pred_dir, gt_dir, out, labels="nnunet", num_processes=1, progress=False)
    assert not out.exists() and not list(tmp_path.glob("*.tmp"))


def test_cli_writes_csv_and_fails_cleanly(folders, tmp_path):
    pred_dir, gt_dir, gts, _, spacing = folders
    out = tmp_path / "cli.csv"
    cmd = [sys.executable, "-m", "nnunetv2_druwas.cli", "evaluate", str(pred_dir), str(gt_dir), "-o", str(out),
           "--labels", "nnunet", "--hd95", "max_directed", "--empty-hd95", "200", "--num-processes", "2"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    df = pd.read_csv(out)
    assert list(df.columns) == COLUMNS and len(df) == 9
    assert (df["hd95_definition"] == "max_directed").all() and (df[df["missing"]]["hd95"] == 200).all()
    summary = pd.read_csv(out.with_name("cli_summary.csv")).set_index(["region", "metric"])
    for (region, metric), row in summary.iterrows():
        values = df.loc[df["region"] == region, metric].to_numpy(float)
        assert (row["n"], row["n_missing"]) == (3, 1)
        assert [row["mean"], row["median"], row["std"]] == pytest.approx(
            [values.mean(), np.median(values), values.std(ddof=1)], rel=1e-12), (region, metric)
    assert sorted(summary.index) == sorted((r, m) for r in ("WT", "TC", "ET") for m in ("dice", "hd95"))
    assert "WT" in proc.stdout
    write_nifti(pred_dir / "A.nii", gts["A"][:-1], spacing)
    proc = subprocess.run(cmd[:-1] + ["1"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and "case A" in proc.stderr and "Traceback" not in proc.stderr


def test_worker_processes_give_the_same_table(tmp_path):
    """Enough cases for the process pool (MIN_CASES_PER_WORKER per worker): same rows as in-process."""
    from nnunetv2_druwas.evaluation.evaluate import MIN_CASES_PER_WORKER

    rng = np.random.default_rng(3)
    (tmp_path / "pred").mkdir()
    (tmp_path / "gt").mkdir()
    for i in range(2 * MIN_CASES_PER_WORKER):
        for folder in ("pred", "gt"):
            seg = (gaussian_filter(rng.random((12, 12, 10)), 1.5) * 7).astype(np.uint8) % 4
            write_nifti(tmp_path / folder / f"C{i:02d}.nii.gz", seg, (1.0, 1.0, 1.5))
    serial = evaluate_folder(tmp_path / "pred", tmp_path / "gt", labels="nnunet", num_processes=1, progress=False)
    pooled = evaluate_folder(tmp_path / "pred", tmp_path / "gt", labels="nnunet", num_processes=2, progress=False)
    pd.testing.assert_frame_equal(serial, pooled)
    assert len(serial) == 3 * 2 * MIN_CASES_PER_WORKER
