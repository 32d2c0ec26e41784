"""nnU-Net's BraTS postprocessing: the threshold search against a direct computation, its file, the
export with postprocessing, and one real run (Decathlon data: convert, plan, train one step, choose, export)."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from conftest import run_command, results_env
from nnunetv2_druwas import cli
from nnunetv2_druwas.data.convert import convert_brats
from nnunetv2_druwas.data.export import export_brats
from nnunetv2_druwas.data.synth import make_brats_release
from nnunetv2_druwas.errors import DruwasError
from nnunetv2_druwas.evaluation.postprocess import apply_threshold, choose_threshold, read_threshold

DATASET = "Dataset990_BraTS2020"
RUN = "nnUNetTrainerX__nnUNetPlans__3d_fullres"
SIDE = 16
LABELS = {"background": 0, "whole tumor": [1, 2, 3], "tumor core": [2, 3], "enhancing tumor": 3}


def direct_threshold(pred: np.ndarray, threshold: int) -> np.ndarray:
    """The script's rule, written out: fewer than ``threshold`` voxels of label 3 -> label 2."""
    out = pred.copy()
    if np.sum(out == 3) < threshold:
        out[out == 3] = 2
    return out


def direct_et_dice(pred: np.ndarray, ref: np.ndarray) -> float:
    a, b = pred == 3, ref == 3
    if a.sum() + b.sum() == 0:
        return 1.0
    return 2.0 * np.sum(a & b) / (a.sum() + b.sum())


def blob(array: np.ndarray, corner: tuple[int, int, int], n: int, label: int) -> None:
    """Set ``n`` voxels from ``corner`` on, row by row (a compact component)."""
    flat = np.zeros(array.size, bool)
    start = np.ravel_multi_index(corner, array.shape)
    flat[start:start + n] = True
    array[flat.reshape(array.shape)] = label


def make_case(ref_et: int, pred_et: int, overlap: bool, spurious_at: tuple[int, int, int] = (12, 2, 0)
              ) -> tuple[np.ndarray, np.ndarray]:
    """A reference and a prediction: the same edema and core; ``ref_et`` ET voxels in the reference;
    ``pred_et`` predicted ET voxels, on the reference's ET when ``overlap``, else elsewhere (spurious)."""
    ref = np.zeros((SIDE,) * 3, np.uint8)
    ref[2:10, 2:10, 2:10] = 1
    ref[4:8, 4:8, 4:8] = 2
    pred = ref.copy()
    if ref_et:
        blob(ref, (5, 5, 5), ref_et, 3)
    if pred_et:
        blob(pred, (5, 5, 5) if overlap else spurious_at, pred_et, 3)
    return ref, pred


#: case -> (fold, reference ET, predicted ET, overlapping): spurious ET of 7, 25 and 43 voxels where the
#: reference has none, a true small ET of 30 voxels, large true ETs, a case without any ET.
CASES = {
    "BraTS20_Training_001": (0, 0, 7, False),
    "BraTS20_Training_002": (0, 0, 25, False),
    "BraTS20_Training_003": (0, 30, 30, True),
    "BraTS20_Training_004": (1, 0, 43, False),
    "BraTS20_Training_005": (1, 120, 100, True),
    "BraTS20_Training_006": (1, 0, 0, False),
    "BraTS20_Training_007": (1, 60, 90, True),
}


@pytest.fixture
def run_tree(tmp_path, monkeypatch):
    """A results tree with two folds of validation predictions and the preprocessed ground truths."""
    pre, results = tmp_path / "preprocessed", tmp_path / "results"
    gt_dir, run = pre / DATASET / "gt_segmentations", results / DATASET / RUN
    gt_dir.mkdir(parents=True)
    affine = np.eye(4)
    splits = [{"train": [], "val": []}, {"train": [], "val": []}]
    arrays = {}
    for case, (fold, ref_et, pred_et, overlap) in CASES.items():
        ref, pred = make_case(ref_et, pred_et, overlap)
        arrays[case] = ref, pred
        splits[fold]["val"].append(case)
        splits[1 - fold]["train"].append(case)
        (run / f"fold_{fold}" / "validation").mkdir(parents=True, exist_ok=True)
        nib.save(nib.Nifti1Image(ref, affine), gt_dir / f"{case}.nii.gz")
        nib.save(nib.Nifti1Image(pred, affine), run / f"fold_{fold}" / "validation" / f"{case}.nii.gz")
    (run / "fold_2").mkdir()            # a fold without its validation: not part of the search
    dataset = {"labels": LABELS, "regions_class_order": [1, 2, 3], "file_ending": ".nii.gz", "release": "2020",
               "brats_year": 2020}
    for folder in (pre / DATASET, run):
        (folder / "dataset.json").write_text(json.dumps(dataset))
    (pre / DATASET / "splits_final.json").write_text(json.dumps(splits))
    monkeypatch.setenv("nnUNet_preprocessed", str(pre))
    return run, arrays


def test_apply_threshold_changes_only_a_small_et():
    ref, pred = make_case(0, 12, False)
    before = pred.copy()
    for threshold in (0, 5, 12):   # 12 voxels are not fewer than 12
        assert apply_threshold(pred, threshold) is pred
    changed = apply_threshold(pred, 13)
    assert np.array_equal(changed, direct_threshold(pred, 13)) and not np.array_equal(changed, pred)
    assert np.array_equal(pred, before)                         # the input is not modified
    assert np.array_equal(changed > 1, pred > 1) and np.array_equal(changed > 0, pred > 0)   # TC and WT kept


def test_threshold_search_matches_a_direct_computation(run_tree, capsys):
    run, arrays = run_tree
    code = cli.main(["postprocess", str(run), "-np", "1"])
    assert code == 0
    out = capsys.readouterr().out
    result = json.loads((run / "brats_postprocessing.json").read_text())

    candidates = list(range(0, 751, 10))
    expected = [np.mean([direct_et_dice(direct_threshold(pred, t), ref) for ref, pred in arrays.values()])
                for t in candidates]
    assert list(result["mean_et_dice"]) == [str(t) for t in candidates]
    assert np.allclose(list(result["mean_et_dice"].values()), expected, rtol=0, atol=1e-12)
    # 30 and 50 tie (two spurious ETs removed; at 50 the third too, but the true 30-voxel ET lost): the smaller wins
    assert expected[3] == pytest.approx(expected[5]) and expected[3] == max(expected) and expected[4] < expected[3]
    assert result["threshold"] == 30 == candidates[int(np.argmax(expected))]
    assert result["mean_et_dice_without"] == pytest.approx(expected[0], abs=1e-12)
    assert result["mean_et_dice_chosen"] == pytest.approx(expected[3], abs=1e-12)
    assert result["n"] == 7 and result["folds"] == [0, 1] and result["cases_changed"] == 2
    assert (result["label"], result["replaced_with"]) == (3, 2)
    # the case without ET in prediction and reference counts 1 at every threshold (BraTS), threshold 0 included
    assert expected[0] == pytest.approx(np.mean([0, 0, 1, 0, 200 / 220, 1, 120 / 150]))
    assert "threshold 30 voxels" in out and "n=7" in out and "folds 0, 1" in out
    assert read_threshold(run) == 30


def test_the_choice_is_kept_unless_overwrite_and_bad_runs_are_errors(run_tree, tmp_path):
    run, arrays = run_tree
    choose_threshold(run, num_processes=1)
    path = run / "brats_postprocessing.json"
    result = json.loads(path.read_text())
    path.write_text(json.dumps(dict(result, threshold=1200)))
    assert choose_threshold(run, num_processes=1)["threshold"] == 1200          # kept
    assert read_threshold(run) == 750                                          # the script's cap
    assert choose_threshold(run, num_processes=1, overwrite=True)["threshold"] == 30
    missing = run / "fold_1" / "validation" / "BraTS20_Training_005.nii.gz"
    missing.unlink()
    with pytest.raises(DruwasError, match="no prediction of case BraTS20_Training_005"):
        choose_threshold(run, num_processes=1, overwrite=True)
    assert json.loads(path.read_text())["threshold"] == 30                    # the old file is intact
    with pytest.raises(DruwasError, match="no fold of .* has its validation predictions"):
        choose_threshold(run / "fold_2", num_processes=1)
    other = tmp_path / "preprocessed" / DATASET / "dataset.json"
    other.write_text(json.dumps({"labels": {"background": 0, "liver": 1}}))
    with pytest.raises(DruwasError, match="not a BraTS dataset made by convert-brats"):
        choose_threshold(run, num_processes=1, overwrite=True)
    with pytest.raises(DruwasError, match="postprocess .*fold_2"):
        read_threshold(run / "fold_2")


def test_export_applies_the_runs_threshold_before_mapping_labels(run_tree, tmp_path, capsys):
    run, arrays = run_tree
    choose_threshold(run, num_processes=1)
    predictions = tmp_path / "pred"
    predictions.mkdir()
    shutil.copy(run / "dataset.json", predictions / "dataset.json")
    for case, (_, pred) in arrays.items():
        nib.save(nib.Nifti1Image(pred, np.eye(4)), predictions / f"{case}.nii.gz")
    code = cli.main(["export-brats", str(predictions), str(tmp_path / "submit"), "--postprocess", str(run),
                     "-np", "1"])
    assert code == 0, capsys.readouterr().err
    to_brats = np.array([0, 2, 1, 4])    # nnU-Net 1 edema, 2 core, 3 enhancing -> BraTS 2, 1, 4
    for case, (_, pred) in arrays.items():
        exported = np.asanyarray(nib.load(tmp_path / "submit" / f"{case}.nii.gz").dataobj)
        assert np.array_equal(exported, to_brats[direct_threshold(pred, 30)]), case
    plain = export_brats(predictions, tmp_path / "plain", num_processes=1, progress=False)
    changed = [c for c in arrays if not np.array_equal(np.asanyarray(nib.load(plain / f"{c}.nii.gz").dataobj),
                                                       np.asanyarray(nib.load(tmp_path / "submit" / f"{c}.nii.gz").dataobj))]
    assert changed == ["BraTS20_Training_001", "BraTS20_Training_002"]
    # a run of another release's dataset, and a run without a threshold, are refused
    info = json.loads((predictions / "dataset.json").read_text())
    (predictions / "dataset.json").write_text(json.dumps(dict(info, release="2021", brats_year=2021)))
    with pytest.raises(DruwasError, match="trained on a BraTS 2020 dataset"):
        export_brats(predictions, tmp_path / "x", postprocess=run, num_processes=1)
    (run / "brats_postprocessing.json").unlink()
    with pytest.raises(DruwasError, match="choose the run's threshold first"):
        export_brats(predictions, tmp_path / "x", postprocess=run, num_processes=1)
    assert not (tmp_path / "x").exists()


def test_decathlon_run_trains_one_step_chooses_a_threshold_and_exports(tmp_path, nnunet_env, capsys):
    """One real run on a converted Decathlon dataset: plan, one training step, the fold's validation,
    the threshold chosen on it (checked against a direct computation) and the export with postprocessing."""
    src = make_brats_release(tmp_path / "Task01_BrainTumour", "msd", 5, (40, 40, 32), seed=2)
    out = convert_brats(src, "msd", num_processes=1, progress=False)
    assert out.name == "Dataset505_MSDBrainTumour"
    run_command(["nnUNetv2_plan_and_preprocess", "-d", "505", "-c", "3d_fullres", "-np", "2", "-npfp", "2"],
                nnunet_env)
    env = results_env(nnunet_env, Path(nnunet_env["nnUNet_results"]), DRUWAS_EPOCHS="1", DRUWAS_ITERS="1",
                      nnUNet_n_proc_DA="0", OMP_WAIT_POLICY="PASSIVE")
    run_command(["nnUNetv2_train", "505", "3d_fullres", "0", "-tr", "nnUNetTrainerDRUwAS", "-device", "cpu"], env)
    run = Path(env["nnUNet_results"]) / out.name / "nnUNetTrainerDRUwAS__nnUNetPlans__3d_fullres"
    validation = run / "fold_0" / "validation"
    split = json.loads((Path(env["nnUNet_preprocessed"]) / out.name / "splits_final.json").read_text())[0]["val"]

    assert cli.main(["postprocess", str(run), "-np", "1"]) == 0, capsys.readouterr().err
    result = json.loads((run / "brats_postprocessing.json").read_text())
    gt = Path(env["nnUNet_preprocessed"]) / out.name / "gt_segmentations"
    pairs = [(np.asanyarray(nib.load(gt / f"{c}.nii.gz").dataobj), np.asanyarray(nib.load(validation / f"{c}.nii.gz").dataobj))
             for c in split]
    expected = [np.mean([direct_et_dice(direct_threshold(p, t), r) for r, p in pairs]) for t in range(0, 751, 10)]
    assert np.allclose(list(result["mean_et_dice"].values()), expected, rtol=0, atol=1e-12)
    assert result["threshold"] == 10 * int(np.argmax(expected)) and result["n"] == len(split)
    assert result["folds"] == [0] and result["dataset"] == out.name

    code = cli.main(["export-brats", str(validation), str(tmp_path / "submit"), "--msd", "--postprocess", str(run),
                     "-np", "1"])
    assert code == 0, capsys.readouterr().err
    for case in split:   # the Decathlon's labels are nnU-Net's: the export is the postprocessed prediction
        pred = np.asanyarray(nib.load(validation / f"{case}.nii.gz").dataobj)
        exported = nib.load(tmp_path / "submit" / f"{case}.nii.gz")
        assert np.array_equal(np.asanyarray(exported.dataobj), direct_threshold(pred, result["threshold"]))
