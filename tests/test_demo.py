"""The main job, end to end for real (short): synth -> convert -> plan -> train x7 -> tables."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import torch

from conftest import check_fold_metrics, check_measured_rows
from nnunetv2_druwas.demo import DemoSettings, prepare_workdir
from nnunetv2_druwas.errors import DruwasError
from nnunetv2_druwas.variants import ABLATION_VARIANTS

SHORT = ["--cases", "6", "--shape", "40", "40", "32", "--epochs", "1", "--iters", "2"]


def _demo(workdir: Path, env: dict[str, str], *extra: str) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "nnunetv2_druwas.cli", "demo", "--workdir", str(workdir), *SHORT, *extra]
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=1500)


def test_demo_end_to_end_and_resume(tmp_path):
    # The user's own nnU-Net folders must never be touched: point them somewhere that must stay absent.
    user = tmp_path / "users_nnunet"
    env = dict(os.environ, nnUNet_def_n_proc="2", nnUNet_n_proc_DA="2")
    for name in ("nnUNet_raw", "nnUNet_preprocessed", "nnUNet_results"):
        env[name] = str(user / name)
    workdir = tmp_path / "demo"

    first = _demo(workdir, env)
    assert first.returncode == 0, first.stdout[-4000:] + first.stderr[-4000:]
    assert not user.exists()

    results = workdir / "nnUNet_results" / "Dataset500_BraTS2020"
    preprocessed = workdir / "nnUNet_preprocessed" / "Dataset500_BraTS2020"
    validation = sorted(json.loads((preprocessed / "splits_final.json").read_text())[0]["val"])
    folds = {}
    for v in ABLATION_VARIANTS:
        folds[v.trainer] = fold = results / f"{v.trainer}__nnUNetPlans__3d_fullres" / "fold_0"
        checkpoint = torch.load(fold / "checkpoint_final.pth", map_location="cpu", weights_only=False)
        assert (checkpoint["trainer_name"], checkpoint["current_epoch"]) == (v.trainer, 1)
        check_fold_metrics(fold, preprocessed / "gt_segmentations", validation)

    table4 = pd.read_csv(workdir / "tables" / "table4.csv")
    check_measured_rows(workdir / "tables" / "table4.csv", folds)
    assert len(table4[table4["source"] == "paper"]) == len(ABLATION_VARIANTS)
    assert "Table 4" in first.stdout and str(workdir / "tables") in first.stdout
    plots = {p.name for p in (workdir / "tables" / "plots").iterdir()}
    stems = {name.rsplit(".", 1)[0] for name in plots}
    assert {"per_case_dice", "per_case_hd95", "switch_effects"} <= stems    # tests/test_analysis.py checks them all
    assert plots == {f"{stem}.{ending}" for stem in stems for ending in ("png", "pdf")}

    # A rerun with the same settings resumes: every step is found done and skipped.
    second = _demo(workdir, env)
    assert second.returncode == 0, second.stderr[-4000:]
    assert second.stdout.count("already done, skipped") == 3 + len(ABLATION_VARIANTS)

    # Other settings on the same folder are refused, not mixed in.
    other = subprocess.run([sys.executable, "-m", "nnunetv2_druwas.cli", "demo", "--workdir", str(workdir),
                            "--epochs", "3"], env=env, capture_output=True, text=True)
    assert other.returncode == 2 and "--fresh" in other.stderr and "Traceback" not in other.stderr


def test_demo_refuses_a_folder_it_did_not_make(tmp_path):
    folder = tmp_path / "mine"
    folder.mkdir()
    (folder / "precious.txt").write_text("user data")
    with pytest.raises(DruwasError, match="not made by the demo"):
        prepare_workdir(folder, fresh=True, settings=DemoSettings())
    assert (folder / "precious.txt").read_text() == "user data"


def test_fresh_restarts_a_demo_folder(tmp_path):
    folder = tmp_path / "demo"
    prepare_workdir(folder, fresh=False, settings=DemoSettings(epochs=1))
    (folder / "old_output").write_text("x")
    prepare_workdir(folder, fresh=True, settings=DemoSettings(epochs=2))
    assert not (folder / "old_output").exists()
    assert json.loads((folder / ".druwas_demo").read_text())["settings"]["epochs"] == 2
