"""Shared fixtures: isolated nnU-Net folders and a tiny preprocessed BraTS-like dataset.

Every test that touches nnU-Net gets its own ``nnUNet_raw``/``nnUNet_preprocessed``/
``nnUNet_results`` under pytest's temporary folder; nothing reads or writes the user's.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]
TRAINERS = REPO / "trainers"
TINY_ID = 990


def nnunet_environment(root: Path) -> dict[str, str]:
    """The environment for nnU-Net commands, with every folder inside ``root``."""
    env = dict(os.environ)
    for name in ("nnUNet_raw", "nnUNet_preprocessed", "nnUNet_results"):
        (root / name).mkdir(parents=True, exist_ok=True)
        env[name] = str(root / name)
    env.update(
        nnUNet_extTrainer=str(TRAINERS),
        nnUNet_def_n_proc="2",
        nnUNet_n_proc_DA="2",
        nnUNet_compile="false",
        OMP_NUM_THREADS="2",
        OMP_WAIT_POLICY="PASSIVE",  # spinning OpenMP threads starve nnU-Net's augmentation workers on 2 cores
        PYTHONWARNINGS="ignore",
    )
    return env


def run_command(cmd: list[str], env: dict[str, str], timeout: float = 900) -> subprocess.CompletedProcess:
    """Run a real command; on failure show its output in the assertion message."""
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, (
        f"{' '.join(map(str, cmd))} failed ({proc.returncode})\n--- stdout\n{proc.stdout[-6000:]}"
        f"\n--- stderr\n{proc.stderr[-6000:]}")
    return proc


# nnU-Net labels (1 edema, 2 necrosis, 3 enhancing) inside each BraTS region, written out here.
NNUNET_REGION_LABELS = {"WT": (1, 2, 3), "TC": (2, 3), "ET": (3,)}


def brats_metrics_by_hand(pred_dir: Path, gt_dir: Path, cases: list[str]) -> dict[tuple[str, str], dict]:
    """(case, region) -> Dice and voxel counts of ``pred_dir/<case>.nii.gz`` against ``gt_dir``, computed
    here with numpy (BraTS conventions: both masks empty -> Dice 1, one empty -> 0)."""
    import nibabel as nib

    metrics = {}
    for case in cases:
        pred = np.asanyarray(nib.load(pred_dir / f"{case}.nii.gz").dataobj)
        ref = np.asanyarray(nib.load(gt_dir / f"{case}.nii.gz").dataobj)
        for region, labels in NNUNET_REGION_LABELS.items():
            p, r = np.isin(pred, labels), np.isin(ref, labels)
            total = int(p.sum() + r.sum())
            metrics[(case, region)] = dict(dice=1.0 if total == 0 else 2 * int((p & r).sum()) / total,
                                           n_pred=int(p.sum()), n_ref=int(r.sum()))
    return metrics


def check_fold_metrics(fold: Path, gt_dir: Path, cases: list[str], predictions: str = "validation") -> "pd.DataFrame":
    """``fold/brats_metrics.csv`` and its summary hold the Dice of ``fold/<predictions>`` (nnU-Net's
    ``validation``, or the demo's test-set ``predictions``) against ``gt_dir``, recomputed by hand for
    exactly ``cases``; returns the metrics table."""
    import pandas as pd

    metrics = pd.read_csv(fold / "brats_metrics.csv", dtype={"case": str})
    expected = brats_metrics_by_hand(fold / predictions, gt_dir, cases)
    assert sorted(zip(metrics["case"], metrics["region"])) == sorted(expected)
    assert not metrics["missing"].any()
    for row in metrics.itertuples():
        by_hand = expected[(row.case, row.region)]
        assert row.dice == pytest.approx(by_hand["dice"], abs=1e-12), (row.case, row.region)
        assert (row.n_pred, row.n_ref) == (by_hand["n_pred"], by_hand["n_ref"]), (row.case, row.region)
    summary = pd.read_csv(fold / "brats_metrics_summary.csv").query("metric == 'dice'").set_index("region")
    for region in NNUNET_REGION_LABELS:
        values = [expected[(case, region)]["dice"] for case in cases]
        assert summary.at[region, "n"] == len(cases)
        assert summary.at[region, "mean"] == pytest.approx(np.mean(values), abs=1e-12), region
    return metrics


def check_measured_rows(table_csv: Path, folds: dict[str, Path]) -> None:
    """Table 4's measured row of each trainer is the mean over the cases of its one fold's metrics
    (``folds``: trainer -> its fold folder)."""
    import pandas as pd

    table = pd.read_csv(table_csv)
    measured = table[table["source"] == "measured"].set_index("trainer")
    assert sorted(measured.index) == sorted(folds)
    for trainer, fold in folds.items():
        metrics = pd.read_csv(fold / "brats_metrics.csv")
        for region in NNUNET_REGION_LABELS:
            for metric in ("dice", "hd95"):
                values = metrics.loc[metrics["region"] == region, metric]
                column = f"{metric}_{region.lower()}"
                assert measured.at[trainer, column] == pytest.approx(values.mean(), rel=1e-9), (trainer, column)
                assert measured.at[trainer, f"{column}_n"] == len(values)


@pytest.fixture
def nnunet_env(tmp_path, monkeypatch) -> dict[str, str]:
    """Fresh, empty nnU-Net folders for one test, also set in this process's environment."""
    env = nnunet_environment(tmp_path / "nnunet")
    for k in ("nnUNet_raw", "nnUNet_preprocessed", "nnUNet_results", "nnUNet_extTrainer",
              "nnUNet_def_n_proc", "nnUNet_n_proc_DA"):
        monkeypatch.setenv(k, env[k])
    return env


def write_tiny_raw_dataset(raw: Path, dataset_id: int = TINY_ID, n_cases: int = 6, size: int = 48,
                           seed: int = 0) -> Path:
    """A minimal region-based BraTS-like dataset in nnU-Net's raw format (labels 0-3)."""
    import nibabel as nib

    rng = np.random.default_rng(seed)
    folder = raw / f"Dataset{dataset_id:03d}_Tiny"
    (folder / "imagesTr").mkdir(parents=True)
    (folder / "labelsTr").mkdir()
    grid = np.stack(np.meshgrid(*[np.arange(size)] * 3, indexing="ij"), -1).astype(np.float32)
    for i in range(n_cases):
        center = rng.uniform(size * 0.35, size * 0.65, 3)
        r = np.linalg.norm(grid - center, axis=-1)
        radius = rng.uniform(6, 10)
        seg = np.zeros((size,) * 3, np.uint8)
        seg[r < radius * 1.6] = 1          # edema
        seg[r < radius] = 3                # enhancing rim
        seg[r < radius * 0.6] = 2          # necrotic core
        case = f"TINY_{i:03d}"
        affine = np.diag([1.0, 1.0, 1.0, 1.0])
        for c, contrast in enumerate(([0, 1.0, 0.6, 1.5], [0, 1.0, 2.0, 0.5], [0, 2.0, 1.0, 1.5],
                                      [0, 2.0, 1.0, 2.0])):
            img = np.asarray(contrast, np.float32)[seg] + rng.normal(0, 0.2, seg.shape).astype(np.float32)
            nib.save(nib.Nifti1Image(img, affine), folder / "imagesTr" / f"{case}_{c:04d}.nii.gz")
        nib.save(nib.Nifti1Image(seg, affine), folder / "labelsTr" / f"{case}.nii.gz")
    dataset_json = {
        "channel_names": {"0": "T1", "1": "T1ce", "2": "T2", "3": "FLAIR"},
        "labels": {"background": 0, "whole tumor": [1, 2, 3], "tumor core": [2, 3], "enhancing tumor": 3},
        "regions_class_order": [1, 2, 3],
        "numTraining": n_cases,
        "file_ending": ".nii.gz",
    }
    (folder / "dataset.json").write_text(json.dumps(dataset_json, indent=2))
    return folder


@pytest.fixture(scope="session")
def tiny_preprocessed(tmp_path_factory) -> dict[str, str]:
    """A tiny dataset (id 990), planned and preprocessed by nnU-Net for real (2d and 3d_fullres).

    Built once per test session: under pytest-xdist (the README's ``-n 2``) the workers share one copy,
    the first to arrive builds it under a file lock. Returns the environment to run nnU-Net commands
    with. Tests that train should point ``nnUNet_results`` at their own folder (see
    :func:`results_env`); tests that change the dataset copy it first.
    """
    from filelock import FileLock

    shared = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        shared = shared.parent    # the session's folder, above every worker's own
    root = shared / "tiny_shared"
    with FileLock(str(shared / "tiny_shared.lock")):
        env = nnunet_environment(root)
        if not (root / "done").exists():
            for name in ("nnUNet_raw", "nnUNet_preprocessed"):   # what a failed build left
                shutil.rmtree(root / name)
                (root / name).mkdir()
            raw = write_tiny_raw_dataset(Path(env["nnUNet_raw"]))
            run_command(["nnUNetv2_plan_and_preprocess", "-d", str(TINY_ID), "-c", "2d", "3d_fullres",
                         "-np", "2", "2", "-npfp", "2", "--verify_dataset_integrity"], env)
            # nnU-Net's own split (what its first training would write), written now: trainings in two
            # workers must not both write it at once
            from nnunetv2.utilities.crossval_split import generate_crossval_split
            cases = sorted(p.name.removesuffix(".nii.gz") for p in (raw / "labelsTr").iterdir())
            (Path(env["nnUNet_preprocessed"]) / raw.name / "splits_final.json").write_text(
                json.dumps(generate_crossval_split(cases, seed=12345, n_splits=5)))
            (root / "done").write_text("")
    return env


def results_env(base_env: dict[str, str], folder: Path, **extra: str) -> dict[str, str]:
    """``base_env`` with its own results folder (and extra variables, e.g. DRUWAS_EPOCHS)."""
    env = dict(base_env)
    folder.mkdir(parents=True, exist_ok=True)
    env["nnUNet_results"] = str(folder)
    env.update({k: str(v) for k, v in extra.items()})
    return env


@pytest.fixture(scope="module")
def one_thread():
    """One intra-op torch thread for a module of tiny networks (use with ``pytest.mark.usefixtures``):
    as fast alone and 5x faster on a busy 2-core machine."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


#: the longest test files (measured in CI, docs/testing.md), collected first so that under pytest-xdist
#: (``-n 2 --dist loadfile --no-loadscope-reorder``) they start at once instead of ending the run alone.
SLOWEST_FIRST = ("test_demo.py", "test_faults.py", "test_grid.py")


def pytest_collection_modifyitems(items) -> None:
    def rank(item) -> int:
        name = item.path.name
        return SLOWEST_FIRST.index(name) if name in SLOWEST_FIRST else len(SLOWEST_FIRST)

    items.sort(key=rank)   # stable: the order within a file and among the others stays
