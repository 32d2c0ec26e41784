"""`nnunetv2_druwas evaluate-results`: folds scored where they lie, from their validation/ predictions."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd

DATASET = "Dataset990_Tiny"
RUN = "nnUNetTrainer__nnUNetPlans__3d_fullres"
REGIONS = {"WT": (1, 2, 3), "TC": (2, 3), "ET": (3,)}   # nnU-Net's BraTS labels, written out here on purpose


def _save(path: Path, labels: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    nib.save(nib.Nifti1Image(labels.astype(np.uint8), np.eye(4)), path)


def _tree(root: Path) -> tuple[dict[str, str], dict[str, tuple[np.ndarray, np.ndarray]]]:
    """A preprocessed dataset (ground truths, dataset.json, a 2-fold split) and one run whose fold 0
    has validation predictions and fold 1 none; returns the environment and fold 0's (pred, gt)."""
    rng = np.random.default_rng(3)
    pre, results = root / "preprocessed" / DATASET, root / "results"
    cases = [f"TINY_{i:03d}" for i in range(4)]
    pairs = {}
    for case in cases:
        gt = np.zeros((20, 20, 20), np.uint8)
        gt[4:14, 4:14, 4:14] = 1
        gt[6:12, 6:12, 6:12] = 2
        gt[8:10, 8:10, 8:10] = 3
        pred = gt.copy()
        pred[rng.integers(0, 20, 30), rng.integers(0, 20, 30), rng.integers(0, 20, 30)] = rng.integers(0, 4, 30)
        _save(pre / "gt_segmentations" / f"{case}.nii.gz", gt)
        pairs[case] = (pred, gt)
    (pre / "dataset.json").write_text(json.dumps({
        "labels": {"background": 0, "whole tumor": [1, 2, 3], "tumor core": [2, 3], "enhancing tumor": 3},
        "regions_class_order": [1, 2, 3], "file_ending": ".nii.gz", "channel_names": {"0": "T1"}}))
    (pre / "splits_final.json").write_text(json.dumps([{"train": cases[2:], "val": cases[:2]},
                                                       {"train": cases[:2], "val": cases[2:]}]))
    validation = {}
    for case in cases[:2]:
        _save(results / DATASET / RUN / "fold_0" / "validation" / f"{case}.nii.gz", pairs[case][0])
        validation[case] = pairs[case]
    (results / DATASET / RUN / "fold_1").mkdir(parents=True)   # not validated yet: nothing to score
    env = {"nnUNet_preprocessed": str(root / "preprocessed"), "nnUNet_results": str(results),
           "nnUNet_raw": str(root)}
    return env, validation


def test_evaluate_results_scores_validated_folds_against_their_split(tmp_path):
    import os

    env, validation = _tree(tmp_path)
    command = [sys.executable, "-m", "nnunetv2_druwas", "evaluate-results", "-d", "990"]
    proc = subprocess.run(command, env={**os.environ, **env}, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    fold = Path(env["nnUNet_results"]) / DATASET / RUN / "fold_0"
    metrics = pd.read_csv(fold / "brats_metrics.csv")
    assert not (fold.parent / "fold_1" / "brats_metrics.csv").exists()
    assert sorted(metrics["case"].unique()) == sorted(validation)   # the fold's validation cases only
    for _, row in metrics.iterrows():
        pred, gt = (np.isin(a, REGIONS[row["region"]]) for a in validation[row["case"]])
        expected = 2 * (pred & gt).sum() / (pred.sum() + gt.sum())
        assert abs(row["dice"] - expected) < 1e-12
    # a second run finds nothing left to score and leaves the file alone
    before = (fold / "brats_metrics.csv").stat().st_mtime_ns
    proc = subprocess.run(command, env={**os.environ, **env}, capture_output=True, text=True)
    assert proc.returncode == 0 and "nothing to score" in proc.stdout
    assert (fold / "brats_metrics.csv").stat().st_mtime_ns == before


def test_a_fold_without_its_split_is_a_clear_error(tmp_path):
    import os

    env, _ = _tree(tmp_path)
    (Path(env["nnUNet_preprocessed"]) / DATASET / "splits_final.json").unlink()
    proc = subprocess.run([sys.executable, "-m", "nnunetv2_druwas", "evaluate-results"], env={**os.environ, **env},
                          capture_output=True, text=True)
    assert proc.returncode == 2
    assert "splits_final.json" in proc.stderr and "Traceback" not in proc.stderr
