"""The evaluation protocol as an axis: ``nnunetv2_druwas evaluate --protocol``, ``evaluate-results --protocol``
and ``DRUWAS_PROTOCOLS`` at the end of training.

Every protocol runs through the real command on NIfTI files and is checked against values that do not
come from the production code: medpy (``brats``), MONAI (``eq2``), the independent implementation of the
authors' rules in ``tests/test_protocols.py`` (``authors``) and the official package's own output in
``tests/data/lesionwise/`` (``lesionwise``). The values of a missing prediction are written out here from
each protocol's rules.
"""
from __future__ import annotations

import hashlib
import json
import math
import shutil
import subprocess
import sys
import warnings
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
import pytest
from medpy.metric import binary as medpy_binary

from conftest import TINY_ID, results_env, run_command
from test_evaluation import tumour, write_nifti
from test_lesionwise import CASES as LESIONWISE_CASES
from test_lesionwise import REFERENCE as LESIONWISE_REFERENCE
from test_protocols import NNUNET_TO_BRATS, expected_rows, make_case
from test_trainers import RELU, SHORT, TRAIN, fold_dir, in_process_trainer

from nnunetv2_druwas.errors import DruwasError
from nnunetv2_druwas.evaluation import evaluate_folder
from nnunetv2_druwas.folds import FoldState, fold_state

COLUMNS = ["case", "region", "protocol", "dice", "hd95", "sensitivity", "specificity", "n_pred", "n_ref", "n_tp",
           "missing", "hd95_definition", "nsd", "global_dice", "global_nsd", "global_hd95", "lesion_tp", "lesion_fp",
           "lesion_fn", "padded_from"]
LESIONWISE_ONLY = ["nsd", "global_dice", "global_nsd", "global_hd95", "lesion_tp", "lesion_fp", "lesion_fn"]
NNUNET_REGIONS = {"WT": (1, 2, 3), "TC": (2, 3), "ET": (3,)}
BRATS_REGIONS = {"WT": (1, 2, 4), "TC": (1, 4), "ET": (4,)}
BRATS_SHAPE = (240, 240, 155)
BRATS_EMPTY = 373.13                                   # BraTS 2018-2020: exactly one mask empty
AUTHORS_EMPTY = math.sqrt(128 ** 2 + 128 ** 2)         # Evaluations.py line 33 of the authors' code
# brats_evaluation/metrics_parser.py, _handle_missing_data: every HD95 373, everything else 0
LESIONWISE_MISSING = {"dice": 0.0, "hd95": 373.0, "nsd": 0.0, "global_dice": 0.0, "global_nsd": 0.0,
                      "global_hd95": 373.0, "lesion_tp": 0, "lesion_fp": 0, "lesion_fn": 0}


def evaluate_cli(pred_dir: Path, gt_dir: Path, out: Path, *options: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "nnunetv2_druwas", "evaluate", str(pred_dir), str(gt_dir), "-o",
                           str(out), *options], capture_output=True, text=True, timeout=600)


def read_csv(path: Path) -> pd.DataFrame:
    frame = pd.read_csv(path, dtype={"case": str})
    assert list(frame.columns) == COLUMNS
    return frame.set_index(["case", "region"])


def folders(root: Path) -> tuple[Path, Path]:
    pred_dir, gt_dir = root / "pred", root / "gt"
    pred_dir.mkdir(parents=True)
    gt_dir.mkdir(parents=True)
    return pred_dir, gt_dir


# --- brats and eq2 ---------------------------------------------------------------------------

@pytest.fixture
def small_cases(tmp_path):
    """GT cases A, B, C (nnU-Net labels, anisotropic spacing); A and B predicted (B without ET), C missing,
    D predicted without ground truth."""
    rng = np.random.default_rng(11)
    pred_dir, gt_dir = folders(tmp_path)
    spacing = (1.0, 1.2, 2.5)
    gts = {case: tumour(rng) for case in "ABC"}
    preds = {"A": np.roll(gts["A"], 2, axis=1), "B": np.where(gts["B"] == 3, 2, gts["B"]), "D": gts["A"]}
    preds["B"][:6] = 0
    for case, seg in gts.items():
        write_nifti(gt_dir / f"{case}.nii.gz", seg, spacing)
    for case, seg in preds.items():
        write_nifti(pred_dir / f"{case}.nii.gz", seg, spacing)
    return pred_dir, gt_dir, gts, preds, spacing


def monai_hd95(pred: np.ndarray, ref: np.ndarray, spacing) -> float:
    import torch
    from monai.metrics import compute_hausdorff_distance

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return compute_hausdorff_distance(torch.from_numpy(pred)[None, None], torch.from_numpy(ref)[None, None],
                                          percentile=95, spacing=spacing).item()


@pytest.mark.parametrize("protocol", ["brats", "eq2"])
def test_brats_equals_medpy_and_eq2_equals_monai_through_the_command(small_cases, tmp_path, protocol):
    pred_dir, gt_dir, gts, preds, spacing = small_cases
    out = tmp_path / f"{protocol}.csv"
    proc = evaluate_cli(pred_dir, gt_dir, out, "--labels", "nnunet", "--protocol", protocol)
    assert proc.returncode == 0, proc.stderr
    assert f"protocol {protocol} (HD95 in mm): 3 cases, 1 missing" in proc.stdout and "D" in proc.stderr
    df = read_csv(out)
    assert (df["protocol"] == protocol).all()
    assert (df["hd95_definition"] == {"brats": "brats", "eq2": "max_directed"}[protocol]).all()
    assert df[LESIONWISE_ONLY + ["padded_from"]].isna().all().all()
    checked = 0
    for case in "AB":
        for region, labels in NNUNET_REGIONS.items():
            p, g = np.isin(preds[case], labels), np.isin(gts[case], labels)
            row = df.loc[(case, region)]
            assert row["dice"] == pytest.approx(medpy_binary.dc(p, g), abs=1e-12)
            assert row["sensitivity"] == pytest.approx(medpy_binary.sensitivity(p, g))
            assert row["specificity"] == pytest.approx(medpy_binary.specificity(p, g))
            assert (row["n_pred"], row["n_ref"], row["n_tp"]) == (p.sum(), g.sum(), (p & g).sum())
            if not p.any():   # B's ET: BraTS' value for exactly one empty mask
                assert row["hd95"] == BRATS_EMPTY
                continue
            expected = (medpy_binary.hd95(p, g, voxelspacing=spacing) if protocol == "brats"
                        else monai_hd95(p, g, spacing))
            assert row["hd95"] == pytest.approx(expected, rel=1e-6, abs=1e-6)   # MONAI: float32
            checked += 1
    assert checked == 5
    missing = df.loc["C"]
    assert missing["missing"].all() and (missing["dice"] == 0).all() and (missing["hd95"] == BRATS_EMPTY).all()
    assert (missing["sensitivity"] == 0).all() and missing["specificity"].isna().all()
    summary = pd.read_csv(out.with_name(f"{protocol}_summary.csv"))
    assert (summary["protocol"] == protocol).all() and set(summary["metric"]) == {"dice", "hd95"}


def test_hd95_option_is_the_protocol_it_names(small_cases, tmp_path):
    """``--hd95 max_directed`` (the former option) is ``--protocol eq2``, with a note; both at odds is an error."""
    pred_dir, gt_dir, *_ = small_cases
    new, old = tmp_path / "new.csv", tmp_path / "old.csv"
    assert evaluate_cli(pred_dir, gt_dir, new, "--labels", "nnunet", "--protocol", "eq2").returncode == 0
    proc = evaluate_cli(pred_dir, gt_dir, old, "--labels", "nnunet", "--hd95", "max_directed")
    assert proc.returncode == 0 and "--hd95 max_directed is --protocol eq2" in proc.stderr
    pd.testing.assert_frame_equal(pd.read_csv(new), pd.read_csv(old))
    proc = evaluate_cli(pred_dir, gt_dir, tmp_path / "x.csv", "--labels", "nnunet", "--hd95", "max_directed",
                        "--protocol", "brats")
    assert proc.returncode == 2 and "--hd95 max_directed is the eq2 protocol" in proc.stderr
    assert not (tmp_path / "x.csv").exists()
    with pytest.raises(DruwasError, match="--empty-hd95 applies to the brats and eq2"):
        evaluate_folder(pred_dir, gt_dir, labels="nnunet", protocol="lesionwise", empty_hd95=100.0, progress=False)
    with pytest.raises(DruwasError, match="--pad-to-brats applies to the authors protocol only"):
        evaluate_folder(pred_dir, gt_dir, labels="nnunet", protocol="eq2", pad_to_brats=True, progress=False)


# --- authors ---------------------------------------------------------------------------------

def test_authors_protocol_through_the_command_equals_the_independent_rules(tmp_path):
    """BraTS-sized cases in BraTS labels: an off-centre tumour with false positives, a case without enhancing
    tumour in the reference, and a missing prediction."""
    pred_dir, gt_dir = folders(tmp_path)
    cases = {"corner": make_case("corner", seed=0), "no_et": make_case("no_et", seed=2)}
    for name, (pred, ref) in cases.items():
        write_nifti(pred_dir / f"{name}.nii.gz", pred)
        write_nifti(gt_dir / f"{name}.nii.gz", ref)
    _, lost = make_case("empty_prediction", seed=4)
    write_nifti(gt_dir / "lost.nii.gz", lost)
    out = tmp_path / "authors.csv"
    proc = evaluate_cli(pred_dir, gt_dir, out, "--labels", "brats", "--protocol", "authors")
    assert proc.returncode == 0, proc.stderr
    assert "protocol authors (HD95 in voxels): 3 cases, 1 missing" in proc.stdout
    df = read_csv(out)
    assert (df["protocol"] == "authors").all() and (df["hd95_definition"] == "authors").all()
    # the authors' code has no sensitivity or specificity in this sense (its "specificity" is the precision)
    assert df[["sensitivity", "specificity", "padded_from"] + LESIONWISE_ONLY].isna().all().all()
    for name, (pred, ref) in cases.items():
        expected = expected_rows(pred, ref)
        for region in BRATS_REGIONS:
            row, want = df.loc[(name, region)], expected[region]
            assert (row["n_pred"], row["n_ref"], row["n_tp"]) == (want["n_pred"], want["n_ref"], want["n_tp"])
            assert row["dice"] == pytest.approx(want["dice"], rel=1e-12)
            assert row["hd95"] == pytest.approx(want["hd95"], rel=1e-12, abs=1e-12)
    assert df.loc[("no_et", "ET"), "hd95"] == pytest.approx(AUTHORS_EMPTY)
    missing = df.loc["lost"]
    assert missing["missing"].all() and (missing["dice"] == 0).all()
    assert np.allclose(missing["hd95"], AUTHORS_EMPTY)
    assert list(missing["n_ref"]) == [expected_rows(np.zeros_like(lost), lost)[r]["n_ref"] for r in BRATS_REGIONS]


def test_padding_equals_embedding_by_hand_and_is_opt_in(tmp_path):
    """A 40 x 40 x 32 case padded by --pad-to-brats scores as the same case placed by hand in a 240 x 240 x 155
    volume ((240 - 40) // 2 = 100 and (155 - 32) // 2 = 61 zeros before it); without the option it is an
    error naming the case, and a larger volume is refused even with it."""
    rng = np.random.default_rng(5)
    gt = tumour(rng, shape=(40, 40, 32))
    pred = np.roll(gt, 3, axis=2)
    pred[2:5, 30:34, 3:6] = 1                          # a false-positive blob
    small_pred, small_gt = folders(tmp_path / "small")
    write_nifti(small_pred / "case7.nii.gz", pred)
    write_nifti(small_gt / "case7.nii.gz", gt)
    big = {}
    for name, seg in (("pred", pred), ("gt", gt)):
        big[name] = np.zeros(BRATS_SHAPE, np.uint8)
        big[name][100:140, 100:140, 61:93] = seg
    big_pred, big_gt = folders(tmp_path / "big")
    write_nifti(big_pred / "case7.nii.gz", big["pred"])
    write_nifti(big_gt / "case7.nii.gz", big["gt"])

    padded, embedded = tmp_path / "padded.csv", tmp_path / "embedded.csv"
    proc = evaluate_cli(small_pred, small_gt, padded, "--labels", "nnunet", "--protocol", "authors", "--pad-to-brats")
    assert proc.returncode == 0, proc.stderr
    assert "zero-padded to 240 x 240 x 155" in proc.stdout
    assert evaluate_cli(big_pred, big_gt, embedded, "--labels", "nnunet", "--protocol", "authors").returncode == 0
    padded_df, embedded_df = read_csv(padded), read_csv(embedded)
    assert (padded_df["padded_from"] == "40x40x32").all() and embedded_df["padded_from"].isna().all()
    pd.testing.assert_frame_equal(padded_df.drop(columns="padded_from"), embedded_df.drop(columns="padded_from"))
    expected = expected_rows(NNUNET_TO_BRATS[big["pred"]], NNUNET_TO_BRATS[big["gt"]])
    for region in BRATS_REGIONS:
        assert padded_df.loc[("case7", region), "hd95"] == pytest.approx(expected[region]["hd95"], rel=1e-12)
        assert padded_df.loc[("case7", region), "dice"] == pytest.approx(expected[region]["dice"], rel=1e-12)
    assert padded_df.loc[("case7", "WT"), "hd95"] > 1.0   # the false positive counts

    refused = tmp_path / "refused.csv"
    proc = evaluate_cli(small_pred, small_gt, refused, "--labels", "nnunet", "--protocol", "authors")
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert "case case7" in proc.stderr and "(40, 40, 32)" in proc.stderr and "--pad-to-brats" in proc.stderr
    assert not refused.exists() and not list(tmp_path.glob("*.tmp"))
    large_pred, large_gt = folders(tmp_path / "large")
    write_nifti(large_pred / "wide.nii.gz", np.zeros((241, 40, 32), np.uint8))
    write_nifti(large_gt / "wide.nii.gz", np.pad(gt, ((0, 201), (0, 0), (0, 0))))
    with pytest.raises(DruwasError, match=r"case wide: .*\(241, 40, 32\).*only pads"):
        evaluate_folder(large_pred, large_gt, labels="nnunet", protocol="authors", pad_to_brats=True,
                        num_processes=1, progress=False)


# --- lesionwise --------------------------------------------------------------------------------

def test_lesionwise_through_the_command_equals_the_package(tmp_path):
    """The package's own values on the fixture's 28 cases, read from NIfTI files with their spacing in the
    header (nibabel's arrays and zooms: the package's values on the arrays; on files with anisotropic
    spacing the package itself differs, as it passes SimpleITK's (z, y, x) arrays with (x, y, z) spacing)."""
    pred_dir, gt_dir = folders(tmp_path)
    for case in LESIONWISE_CASES:
        for folder, key in ((pred_dir, "pred"), (gt_dir, "ref")):
            nib.save(nib.Nifti1Image(case[key], np.diag([*case["spacing"], 1.0])), folder / f"{case['name']}.nii.gz")
    write_nifti(gt_dir / "zz_missing.nii.gz", LESIONWISE_CASES[0]["ref"])
    regions = LESIONWISE_REFERENCE["regions"]        # the gli labels: 1 NETC, 2 SNFH, 3 ET
    dataset_json = tmp_path / "dataset.json"
    dataset_json.write_text(json.dumps({"labels": {"background": 0, "whole tumor": regions["WT"],
                                                   "tumor core": regions["TC"], "enhancing tumor": regions["ET"]},
                                        "regions_class_order": [1, 2, 3]}))
    out = tmp_path / "lesionwise.csv"
    proc = evaluate_cli(pred_dir, gt_dir, out, "--dataset-json", str(dataset_json), "--protocol", "lesionwise")
    assert proc.returncode == 0, proc.stderr
    assert f"protocol lesionwise (HD95 in mm): {len(LESIONWISE_CASES) + 1} cases, 1 missing" in proc.stdout
    df = read_csv(out)
    assert (df["protocol"] == "lesionwise").all() and df[["sensitivity", "specificity", "padded_from"]].isna().all().all()
    differs_on_files = 0
    for entry in LESIONWISE_REFERENCE["cases"]:
        for region, want in entry["array"].items():
            row = df.loc[(entry["name"], region)]
            for key, value in want.items():
                got = row[key]
                if key.startswith("lesion_"):
                    assert got == value, (entry["name"], region, key)
                elif math.isnan(value) or math.isinf(value):
                    assert (math.isnan(got) and math.isnan(value)) or got == value, (entry["name"], region, key)
                else:
                    assert got == pytest.approx(value, rel=1e-6, abs=1e-6), (entry["name"], region, key)
            on_files = entry["files"][region]["hd95"]
            differs_on_files += not (row["hd95"] == pytest.approx(on_files, rel=1e-6) or
                                     (math.isnan(on_files) and math.isnan(row["hd95"])))
    assert differs_on_files > 0                                       # the package's transposed spacing
    assert np.isinf(df.loc[("empty_prediction", "WT"), "hd95"])      # inf kept, not replaced
    assert df.loc["both_empty"][["dice", "hd95", "nsd", "global_dice"]].isna().all().all()
    missing = df.loc["zz_missing"]
    assert missing["missing"].all()
    for key, value in LESIONWISE_MISSING.items():
        assert (missing[key] == value).all(), key
    summary = pd.read_csv(out.with_name("lesionwise_summary.csv"))
    assert set(summary["metric"]) == {"dice", "hd95", "nsd", "global_dice", "global_nsd", "global_hd95"}


# --- the same checks for every protocol ---------------------------------------------------------

PROTOCOL_OPTIONS = {"brats": [], "eq2": [], "authors": ["--pad-to-brats"], "lesionwise": []}


@pytest.mark.parametrize("protocol", list(PROTOCOL_OPTIONS))
def test_every_protocol_handles_bad_and_missing_predictions_alike(small_cases, tmp_path, protocol):
    pred_dir, gt_dir, gts, preds, spacing = small_cases
    kwargs = dict(labels="nnunet", protocol=protocol, pad_to_brats=protocol == "authors", num_processes=1,
                  progress=False)
    df = evaluate_folder(pred_dir, gt_dir, **kwargs).set_index(["case", "region"])
    assert df.attrs["extra_predictions"] == ["D"] and sorted(set(df.index.get_level_values(0))) == list("ABC")
    assert list(df["missing"]) == [False] * 6 + [True] * 3 and (df["protocol"] == protocol).all()
    failure = {"brats": {"dice": 0.0, "hd95": BRATS_EMPTY}, "eq2": {"dice": 0.0, "hd95": BRATS_EMPTY},
               "authors": {"dice": 0.0, "hd95": AUTHORS_EMPTY}, "lesionwise": LESIONWISE_MISSING}[protocol]
    for key, value in failure.items():
        assert np.allclose(df.loc["C"][key].astype(float), value), key
    assert list(df.loc["C"]["n_ref"]) == [int(np.isin(gts["C"], labels).sum()) for labels in NNUNET_REGIONS.values()]
    out = tmp_path / "bad.csv"
    write_nifti(pred_dir / "B.nii.gz", preds["B"][:, :, :-1], spacing)
    proc = evaluate_cli(pred_dir, gt_dir, out, "--labels", "nnunet", "--protocol", protocol, *PROTOCOL_OPTIONS[protocol])
    assert proc.returncode == 2 and "case B" in proc.stderr and "shape" in proc.stderr and not out.exists()
    write_nifti(pred_dir / "B.nii.gz", np.where(preds["B"] == 1, 4, preds["B"]), spacing)
    with pytest.raises(DruwasError, match=r"case B: prediction .* label\(s\) \[4\]"):
        evaluate_folder(pred_dir, gt_dir, out, **kwargs)
    (pred_dir / "B.nii.gz").unlink()
    write_nifti(gt_dir / "C.nii.gz", np.where(gts["C"] == 3, 4, gts["C"]), spacing)   # checked when missing too
    with pytest.raises(DruwasError, match=r"case C: ground truth .* label\(s\) \[4\]"):
        evaluate_folder(pred_dir, gt_dir, out, **kwargs)
    assert not out.exists()


# --- folds: DRUWAS_PROTOCOLS at the end of training, evaluate-results later ----------------------

@pytest.fixture(scope="module")
def protocols_run(tiny_preprocessed, tmp_path_factory) -> dict[str, str]:
    """One real short run of the main trainer with two further protocols."""
    env = results_env(tiny_preprocessed, tmp_path_factory.mktemp("results"), **SHORT,
                      DRUWAS_PROTOCOLS="eq2, lesionwise")
    run_command(TRAIN + [RELU], env)
    return env


def validation_pairs(env: dict[str, str]) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """(prediction, ground truth) of every validation case of fold 0, as nibabel reads them."""
    fold = fold_dir(env, RELU)
    (preprocessed,) = Path(env["nnUNet_preprocessed"]).glob(f"Dataset{TINY_ID:03d}_*")
    pairs = {}
    for path in sorted((fold / "validation").glob("*.nii.gz")):
        case = path.name[: -len(".nii.gz")]
        pairs[case] = (np.asarray(nib.load(path).dataobj), np.asarray(nib.load(preprocessed / "gt_segmentations" /
                                                                                 path.name).dataobj))
    return pairs


def test_druwas_protocols_writes_each_protocol_at_the_end_of_training(protocols_run):
    fold = fold_dir(protocols_run, RELU)
    pairs = validation_pairs(protocols_run)
    assert pairs
    for protocol in ("brats", "eq2", "lesionwise"):
        df = read_csv(fold / f"{protocol}_metrics.csv")
        assert (fold / f"{protocol}_metrics_summary.csv").is_file()
        assert (df["protocol"] == protocol).all() and not df["missing"].any()
        assert sorted(set(df.index.get_level_values(0))) == sorted(pairs)
    eq2 = read_csv(fold / "eq2_metrics.csv")
    for case, (pred, gt) in pairs.items():
        for region, labels in NNUNET_REGIONS.items():
            p, g = np.isin(pred, labels), np.isin(gt, labels)
            if p.any() and g.any():
                assert eq2.loc[(case, region), "hd95"] == pytest.approx(monai_hd95(p, g, (1.0, 1.0, 1.0)), rel=1e-6)
    assert not (fold / "authors_metrics.csv").exists() and fold_state(fold) == FoldState.DONE
    log = "".join(p.read_text() for p in fold.glob("training_log_*.txt"))
    assert "eq2 metrics of the validation cases" in log and "lesionwise metrics of the validation cases" in log


def test_evaluate_results_scores_another_protocol_without_retraining(protocols_run):
    """``evaluate-results --protocol authors --pad-to-brats`` on the trained fold: its validation/ predictions
    against gt_segmentations (the tiny cases are 48^3), nothing trained or predicted again."""
    from nnunetv2_druwas.evaluation.results import score_fold

    fold = fold_dir(protocols_run, RELU)
    before = {str(p.relative_to(fold)): hashlib.sha256(p.read_bytes()).hexdigest() for p in fold.rglob("*") if p.is_file()}
    proc = subprocess.run([sys.executable, "-m", "nnunetv2_druwas", "evaluate-results", "-d", str(TINY_ID),
                           "--protocol", "authors", "--pad-to-brats"], env=protocols_run, capture_output=True,
                          text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr
    assert str(fold / "authors_metrics.csv") in proc.stdout
    after = {str(p.relative_to(fold)): hashlib.sha256(p.read_bytes()).hexdigest() for p in fold.rglob("*") if p.is_file()}
    assert set(after) - set(before) == {"authors_metrics.csv", "authors_metrics_summary.csv"}
    assert all(after[name] == digest for name, digest in before.items())   # checkpoints, predictions, logs
    df = read_csv(fold / "authors_metrics.csv")
    assert (df["protocol"] == "authors").all() and (df["padded_from"] == "48x48x48").all()
    for case, (pred, gt) in validation_pairs(protocols_run).items():
        embed = (slice(96, 144), slice(96, 144), slice(53, 101))   # (240 - 48) // 2, (155 - 48) // 2
        big_pred, big_gt = np.zeros(BRATS_SHAPE, np.uint8), np.zeros(BRATS_SHAPE, np.uint8)
        big_pred[embed], big_gt[embed] = pred, gt
        expected = expected_rows(NNUNET_TO_BRATS[big_pred], NNUNET_TO_BRATS[big_gt])
        for region in BRATS_REGIONS:
            assert df.loc[(case, region), "dice"] == pytest.approx(expected[region]["dice"], rel=1e-12)
            assert df.loc[(case, region), "hd95"] == pytest.approx(expected[region]["hd95"], rel=1e-12, abs=1e-12)
    cached = (fold / "lesionwise_metrics.csv").stat().st_mtime_ns
    assert score_fold(fold, "lesionwise") == fold / "lesionwise_metrics.csv"   # cached: not scored again
    assert (fold / "lesionwise_metrics.csv").stat().st_mtime_ns == cached


def test_a_failing_extra_protocol_fails_the_fold_like_brats(protocols_run, tmp_path):
    """``DRUWAS_PROTOCOLS=authors`` on 48^3 cases (no padding at the end of training): the evaluation fails, the
    message names the protocol and the case, and the fold is ``evaluation-failed`` (no brats_metrics.csv)."""
    results = tmp_path / "results"
    shutil.copytree(protocols_run["nnUNet_results"], results)
    env = dict(protocols_run, nnUNet_results=str(results), DRUWAS_PROTOCOLS="authors")
    fold = fold_dir(env, RELU)
    for path in fold.glob("*_metrics*.csv"):
        path.unlink()
    proc = subprocess.run(TRAIN + [RELU, "--val"], env=env, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 1
    assert "error: the BraTS evaluation of" in proc.stderr and "authors protocol: case TINY_" in proc.stderr
    assert (fold / "brats_metrics_error.txt").read_text().startswith("authors protocol: case TINY_")
    assert not (fold / "brats_metrics.csv").exists() and fold_state(fold) == FoldState.EVALUATION_FAILED


def test_unknown_druwas_protocols_fail_before_training(tiny_preprocessed, monkeypatch):
    monkeypatch.setenv("DRUWAS_PROTOCOLS", "eq2,hd95")
    with pytest.raises(DruwasError, match=r"DRUWAS_PROTOCOLS='eq2,hd95' names unknown protocol\(s\) hd95"):
        in_process_trainer(RELU, "2d", tiny_preprocessed, monkeypatch)
    monkeypatch.setenv("DRUWAS_PROTOCOLS", "lesionwise brats,eq2,lesionwise")
    from nnunetv2_druwas.evaluation.protocols import fold_protocols
    assert fold_protocols() == ("lesionwise", "eq2", "brats")
