"""The main job, end to end for real (short): synth -> convert -> plan -> train every variant and the reference
-> predict and evaluate the test set -> tables; resumed, and reproduced value for value."""
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
from nnunetv2_druwas.variants import ABLATION_VARIANTS, VARIANTS

SHORT = ["--cases", "6", "--test-cases", "3", "--shape", "40", "40", "32", "--epochs", "1", "--iters", "2"]
DATASET = "Dataset500_BraTS2020"


def _demo(workdir: Path, env: dict[str, str], *extra: str) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "nnunetv2_druwas.cli", "demo", "--workdir", str(workdir), *SHORT, *extra]
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=1500)


def _test_set_outputs(workdir: Path, trainers) -> dict[str, str]:
    """Every test-set metrics file of ``trainers``, by relative path."""
    return {str(p.relative_to(workdir)): p.read_text()
            for trainer in trainers
            for p in sorted((workdir / "test_set").glob(f"*/{trainer}__*/fold_0/*_metrics*.csv"))}


def test_demo_end_to_end_test_set_reproducible_and_resumed(tmp_path):
    # The user's own nnU-Net folders must never be touched: point them somewhere that must stay absent.
    user = tmp_path / "users_nnunet"
    env = dict(os.environ, nnUNet_def_n_proc="2", nnUNet_n_proc_DA="2")
    for name in ("nnUNet_raw", "nnUNet_preprocessed", "nnUNet_results"):
        env[name] = str(user / name)
    workdir = tmp_path / "demo"

    first = _demo(workdir, env)
    assert first.returncode == 0, first.stdout[-4000:] + first.stderr[-4000:]
    assert not user.exists()

    # every variant and the reference network trained on fold 0, its validation cases scored in the fold
    results = workdir / "nnUNet_results" / DATASET
    preprocessed = workdir / "nnUNet_preprocessed" / DATASET
    validation = sorted(json.loads((preprocessed / "splits_final.json").read_text())[0]["val"])
    for v in VARIANTS:
        fold = results / f"{v.trainer}__nnUNetPlans__3d_fullres" / "fold_0"
        checkpoint = torch.load(fold / "checkpoint_final.pth", map_location="cpu", weights_only=False)
        assert (checkpoint["trainer_name"], checkpoint["current_epoch"]) == (v.trainer, 1)
        assert json.loads((fold / "druwas_run.json").read_text())["seed"] == 0
        check_fold_metrics(fold, preprocessed / "gt_segmentations", validation)

    # the test set: held out of the training cases, predicted by every model, scored by hand here
    raw = workdir / "nnUNet_raw" / DATASET
    test_cases = sorted(p.name[:-len(".nii.gz")] for p in (raw / "labelsTs_test").iterdir())
    training_cases = {p.name[:-len(".nii.gz")] for p in (raw / "labelsTr").iterdir()}
    assert len(test_cases) == 3 and not set(test_cases) & training_cases
    test_folds = {}
    for v in VARIANTS:
        test_folds[v.trainer] = fold = workdir / "test_set" / DATASET / f"{v.trainer}__nnUNetPlans__3d_fullres" / "fold_0"
        assert sorted(p.name for p in (fold / "predictions").glob("*.nii.gz")) == [f"{c}.nii.gz" for c in test_cases]
        check_fold_metrics(fold, raw / "labelsTs_test", test_cases, predictions="predictions")
        for protocol in ("eq2", "authors"):
            scored = pd.read_csv(fold / f"{protocol}_metrics.csv")
            assert set(scored["protocol"]) == {protocol} and len(scored) == 3 * len(test_cases)

    # Table 4's measured rows are the test set's means (n = its cases), the reference row among them
    table4 = pd.read_csv(workdir / "tables" / "table4.csv")
    check_measured_rows(workdir / "tables" / "table4.csv", test_folds)
    assert set(table4.loc[table4["source"] == "measured", "dice_wt_n"]) == {len(test_cases)}
    assert len(table4[table4["source"] == "paper"]) == len(ABLATION_VARIANTS)
    protocols = pd.read_csv(workdir / "tables" / "protocols.csv")   # every model under the three protocols
    assert set(protocols["trainer"]) == set(test_folds) and set(protocols["n_cases"]) == {len(test_cases)}
    assert protocols[["complete_brats", "complete_eq2", "complete_authors"]].all().all()
    assert "Table 4" in first.stdout and "Paired Wilcoxon" in first.stdout and "bootstrap" in first.stdout
    assert str(workdir / "tables") in first.stdout
    statistics = pd.read_csv(workdir / "tables" / "statistics.csv")
    assert set(statistics.loc[statistics["family"] == "variants", "n"]) == {len(test_cases)}
    plots = {p.name for p in (workdir / "tables" / "plots").iterdir()}
    stems = {name.rsplit(".", 1)[0] for name in plots}
    assert {"per_case_dice", "per_case_hd95", "switch_effects"} <= stems    # tests/test_analysis.py checks them all
    assert plots == {f"{stem}.{ending}" for stem in stems for ending in ("png", "pdf")}

    # A rerun with the same settings resumes: every step is found done and skipped.
    second = _demo(workdir, env)
    assert second.returncode == 0, second.stderr[-4000:]
    assert second.stdout.count("already done, skipped") == 4 + 2 * len(VARIANTS)

    # The same command in another folder gives the same test-set metrics and Table 4 rows, value for value
    # (a subset of the variants, to keep the test short: the full model and its Swish continuation, the run
    # most likely to drift).
    again = tmp_path / "again"
    repeated = [v for v in VARIANTS if v.key in ("full", "swish")]
    third = _demo(again, env, "--variants", *(v.key for v in reversed(repeated)))   # any order
    assert third.returncode == 0, third.stdout[-4000:] + third.stderr[-4000:]
    trainers = [v.trainer for v in repeated]
    expected = _test_set_outputs(workdir, trainers)
    assert len(expected) == 2 * 3 * len(repeated)     # metrics and summary of three protocols
    assert _test_set_outputs(again, trainers) == {k: v.replace(str(workdir), str(again)) for k, v in expected.items()}
    rows = pd.read_csv(again / "tables" / "table4.csv").query("source == 'measured'").set_index("trainer")
    assert sorted(rows.index) == sorted(trainers)
    pd.testing.assert_frame_equal(rows, table4.query("source == 'measured'").set_index("trainer").loc[rows.index],
                                  check_dtype=False)   # table4_row: int here, float there (the reference row has none)
    marker = json.loads((again / ".druwas_demo").read_text())["settings"]
    assert marker["variants"] == [v.key for v in repeated]       # recorded in the table's order

    # Other settings on the same folder are refused, not mixed in.
    other = subprocess.run([sys.executable, "-m", "nnunetv2_druwas.cli", "demo", "--workdir", str(workdir),
                            "--epochs", "3"], env=env, capture_output=True, text=True)
    assert other.returncode == 2 and "--fresh" in other.stderr and "Traceback" not in other.stderr


@pytest.mark.parametrize("keys, message", [
    (["swish"], "swish continues the run of full; add full"),
    (["full", "resnet"], "unknown resnet; choose from baseline sa ag saag res full swish nnunet"),
])
def test_variants_are_checked_before_anything_is_written(tmp_path, keys, message):
    proc = subprocess.run([sys.executable, "-m", "nnunetv2_druwas.cli", "demo", "--workdir", str(tmp_path / "demo"),
                           "--variants", *keys], capture_output=True, text=True)
    assert proc.returncode == 2 and message in proc.stderr and "Traceback" not in proc.stderr
    assert not (tmp_path / "demo").exists()


def test_the_default_demo_trains_every_variant_and_the_reference():
    assert DemoSettings().selected() == VARIANTS


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
