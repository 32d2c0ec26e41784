"""The tables' protocol axis, nnU-Net's own trainers as reference rows, and repeats with run-to-run noise.

Two results trees, every expected number computed here independently:

- ``scored``: real NIfTI predictions in ``fold_N/validation`` and ground truths + splits in a
  preprocessed folder, and no metrics file anywhere: the analysis scores every fold (``brats``, then
  ``eq2`` on demand), caches the files in the folds and labels nnU-Net's runs as reference rows.
  Dice is recomputed with numpy, the BraTS HD95 with medpy.
- ``repeats``: hand-written ``brats_metrics.csv`` files of repeated trainings (``<trainer>_repeat<k>``),
  one repeat missing a fold, one trainer run once, and dyadic values so that one difference lies
  exactly at twice the between-repeat standard deviation.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
import pytest
from scipy import stats as sps

from analysis.published import published_rows
from analysis.tables import compile_tables
from nnunetv2_druwas import variants
from nnunetv2_druwas.variants import Variant, repeat_trainer_name, trainer_name, variant_by_key

REPO = Path(__file__).resolve().parents[1]
DATASET = "Dataset500_BraTS2020"
CONFIG = "3d_fullres"
REGIONS = {"WT": (1, 2, 3), "TC": (2, 3), "ET": (3,)}   # nnU-Net's BraTS labels, written out here on purpose
METRICS = ("dice_wt", "dice_tc", "dice_et", "hd95_wt", "hd95_tc", "hd95_et")
SHAPE = (24, 24, 20)
CASES = [f"BraTS20_{i:03d}" for i in range(6)]
SPLITS = [{"train": CASES[3:], "val": CASES[:3]}, {"train": CASES[:3], "val": CASES[3:]}]
# run folder -> how many voxels its predictions get wrong besides a shift of 0 or 1 voxel (every run: folds 0 and 1)
SCORED_RUNS = {"nnUNetTrainer__nnUNetPlans__3d_fullres": 40, "nnUNetTrainer__nnUNetResEncUNetMPlans__3d_fullres": 25,
               "nnUNetTrainerDRUwAS_Baseline__nnUNetPlans__3d_fullres": 60,
               "nnUNetTrainerDRUwAS_SA__nnUNetPlans__3d_fullres": 50}
NOISE = "\u2021"


def _save(path: Path, labels: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    nib.save(nib.Nifti1Image(labels.astype(np.uint8), np.eye(4)), path)


def _tumour(rng: np.random.Generator) -> np.ndarray:
    grid = np.stack(np.meshgrid(*[np.arange(s) for s in SHAPE], indexing="ij"), -1)
    r = np.linalg.norm(grid - rng.uniform(8, 12, 3), axis=-1)
    seg = np.zeros(SHAPE, np.uint8)
    seg[r < 6] = 1
    seg[r < 4] = 3
    seg[r < 2.2] = 2
    return seg


def _write_scored_tree(root: Path) -> tuple[dict[str, str], dict]:
    """Ground truths, dataset.json and splits in nnUNet_preprocessed; every run's folds with validation/
    predictions and checkpoint_final.pth, without any metrics file. Returns the environment and
    run folder -> fold -> case -> (prediction, ground truth)."""
    rng = np.random.default_rng(12)
    pre, results, raw = root / "preprocessed" / DATASET, root / "results", root / "raw" / DATASET
    truths = {case: _tumour(rng) for case in CASES}
    for case, gt in truths.items():
        _save(pre / "gt_segmentations" / f"{case}.nii.gz", gt)
    (pre / "dataset.json").write_text(json.dumps({
        "labels": {"background": 0, "whole tumor": [1, 2, 3], "tumor core": [2, 3], "enhancing tumor": 3},
        "regions_class_order": [1, 2, 3], "file_ending": ".nii.gz", "channel_names": {"0": "T1"}}))
    (pre / "splits_final.json").write_text(json.dumps(SPLITS))
    raw.mkdir(parents=True)
    (raw / "dataset.json").write_text(json.dumps({"brats_year": 2020}))
    pairs: dict = {}
    for run, wrong in SCORED_RUNS.items():
        for fold, split in enumerate(SPLITS):
            folder = results / DATASET / run / f"fold_{fold}"
            folder.mkdir(parents=True)
            (folder / "checkpoint_final.pth").write_bytes(b"")
            for case in split["val"]:
                pred = np.roll(truths[case], int(rng.integers(0, 2)), axis=int(rng.integers(0, 3)))
                index = tuple(rng.integers(0, s, wrong) for s in SHAPE)
                pred[index] = rng.integers(0, 4, wrong)
                _save(folder / "validation" / f"{case}.nii.gz", pred)
                pairs.setdefault(run, {}).setdefault(fold, {})[case] = (pred, truths[case])
    env = dict(os.environ, nnUNet_raw=str(root / "raw"), nnUNet_preprocessed=str(root / "preprocessed"),
               nnUNet_results=str(results), MPLBACKEND="Agg")
    return env, pairs


def _expected_brats(pairs: dict) -> pd.DataFrame:
    """Per run x fold x case x region: Dice (numpy) and the BraTS HD95 (medpy's hd95, in mm: spacing 1)."""
    from medpy.metric.binary import hd95

    rows = []
    for run, folds in pairs.items():
        for fold, cases in folds.items():
            for case, (pred, gt) in cases.items():
                for region, labels in REGIONS.items():
                    p, g = np.isin(pred, labels), np.isin(gt, labels)
                    assert p.any() and g.any()
                    rows.append(dict(run=run, trainer=run.split("__")[0], fold=fold, case=case, region=region,
                                     dice=2 * (p & g).sum() / (p.sum() + g.sum()), hd95=hd95(p, g)))
    return pd.DataFrame(rows)


@pytest.fixture(scope="module")
def scored(tmp_path_factory):
    """The ``scored`` tree, compiled once under the brats protocol (no protocol comparison: nothing else is
    scored yet)."""
    root = tmp_path_factory.mktemp("scored")
    env, pairs = _write_scored_tree(root)
    saved = {k: os.environ.get(k) for k in ("nnUNet_raw", "nnUNet_preprocessed", "nnUNet_results")}
    os.environ.update({k: env[k] for k in saved})
    try:
        tables = compile_tables(env["nnUNet_results"], root / "tables", compare_protocols=[], plots=False,
                                n_resamples=99, echo=False)
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
    return dict(root=root, env=env, pairs=pairs, tables=tables, out=root / "tables",
                results=Path(env["nnUNet_results"]), expected=_expected_brats(pairs))


def test_unscored_folds_are_scored_cached_and_nnunet_runs_are_reference_rows(scored):
    results, expected = scored["results"], scored["expected"]
    for run in SCORED_RUNS:
        for fold, split in enumerate(SPLITS):
            metrics = pd.read_csv(results / DATASET / run / f"fold_{fold}" / "brats_metrics.csv")
            assert sorted(metrics["case"].unique()) == sorted(split["val"])        # the split's validation cases
            truth = expected[(expected["run"] == run) & (expected["fold"] == fold)]
            merged = metrics.merge(truth, on=["case", "region"])
            assert len(merged) == 3 * len(split["val"])
            assert merged["dice_x"].to_numpy() == pytest.approx(merged["dice_y"].to_numpy(), abs=1e-12)
            assert merged["hd95_x"].to_numpy() == pytest.approx(merged["hd95_y"].to_numpy(), rel=1e-9)
    table4 = pd.read_csv(scored["out"] / "table4.csv")
    measured = table4[table4["source"] == "measured"].set_index("trainer")
    labels = ["nnU-Net (default) (3d_fullres)", "nnU-Net ResEnc M (3d_fullres, nnUNetResEncUNetMPlans)"]
    references = measured[measured["variant"].isna()]
    assert sorted(references["method"]) == labels
    assert set(measured.loc[measured["variant"].notna(), "variant"]) == {"baseline", "sa"}
    # the references come after every ablation row (paper, measured and difference rows)
    last_ablation = table4.index[table4["table4_row"].notna()].max()
    assert (table4.index[(table4["source"] == "measured") & table4["variant"].isna()] > last_ablation).all()
    for (trainer, plans), row in references.reset_index().set_index(["trainer", "plans"]).iterrows():
        truth = expected[expected["run"] == f"{trainer}__{plans}__{CONFIG}"]
        assert row["n_cases"] == len(CASES) and row["folds"] == "0,1" and bool(row["complete"])
        for column in METRICS:
            metric, region = column.split("_")
            values = truth.loc[truth["region"] == region.upper(), metric].to_numpy(float)
            assert row[column] == pytest.approx(values.mean(), rel=1e-9)
            assert row[f"{column}_std"] == pytest.approx(values.std(ddof=1), rel=1e-9)
    md = (scored["out"] / "table4.md").read_text()
    assert "| *References: nnU-Net on the same folds (measured)* |" in md
    assert "|  | nnU-Net (default) (3d_fullres) | measured | 6 (folds 0, 1) |" in md
    table1 = pd.read_csv(scored["out"] / "table1.csv")
    assert set(labels) <= set(table1["method"])
    assert "Measured rows scored under the brats protocol" in md
    # a second compile finds every fold scored and leaves the cached files alone
    files = sorted(results.glob("*/*/fold_*/brats_metrics.csv"))
    assert len(files) == 2 * len(SCORED_RUNS)
    before = [f.stat().st_mtime_ns for f in files]
    proc = subprocess.run([sys.executable, "-m", "analysis.tables", "--results", str(results), "--out",
                           str(scored["root"] / "again"), "--compare-protocols", "--no-plots", "--n-resamples", "99"],
                          env=scored["env"], cwd=REPO, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr
    assert [f.stat().st_mtime_ns for f in files] == before
    assert "score folds" not in proc.stderr


def test_statistics_and_table4b_compare_with_nnunet_default(scored):
    expected = scored["expected"]
    statistics = pd.read_csv(scored["out"] / "statistics.csv")
    table4b = pd.read_csv(scored["out"] / "table4b.csv")
    trainers = {"baseline": "nnUNetTrainerDRUwAS_Baseline", "sa": "nnUNetTrainerDRUwAS_SA",
                "nnUNetTrainer": "nnUNetTrainer"}
    pairs = {("sa", "baseline"), ("baseline", "nnUNetTrainer"), ("sa", "nnUNetTrainer")}
    assert set(zip(statistics["variant"], statistics["reference"])) == pairs
    assert set(zip(table4b["variant"], table4b["compared_with"])) == \
        {("sa", "baseline"), ("baseline", "nnU-Net (default)"), ("sa", "nnU-Net (default)")}
    for _, row in statistics.iterrows():
        def values(key):
            run = expected[(expected["run"] == f"{trainers[key]}__nnUNetPlans__{CONFIG}")
                           & (expected["region"] == row["region"])]
            return run.sort_values(["fold", "case"])[row["metric"]].to_numpy(float)
        x, y = values(row["variant"]), values(row["reference"])
        assert row["n"] == len(CASES)
        assert row["p_value"] == (1.0 if np.all(x == y) else pytest.approx(sps.wilcoxon(x, y).pvalue, rel=1e-9))
        assert row["mean_difference"] == pytest.approx((x - y).mean(), rel=1e-9)
        difference = table4b[(table4b["variant"] == row["variant"]) & (table4b["compared_with"] == (
            "baseline" if row["reference"] == "baseline" else "nnU-Net (default)"))].iloc[0]
        column = f"{row['metric']}_{row['region'].lower()}"
        assert difference[column] == pytest.approx((x - y).mean(), rel=1e-9)
        assert difference[f"{column}_n"] == len(CASES)
        assert not difference[f"{column}_noise"]          # single runs: no run-to-run noise to compare with
    md = (scored["out"] / "table4b.md").read_text()
    assert "| 2 | paper recipe, 3d_fullres | \u2212 nnU-Net (default) | 6 (folds 0, 1) |" in md
    assert NOISE not in md.split("\n- ")[0]


def test_protocol_eq2_scored_on_demand_and_protocols_side_by_side(scored):
    results, out = scored["results"], scored["root"] / "eq2"
    assert not list(results.glob("*/*/fold_*/eq2_metrics.csv"))
    proc = subprocess.run([sys.executable, "-m", "analysis.tables", "--results", str(results), "--out", str(out),
                           "--protocol", "eq2", "--compare-protocols", "eq2", "authors", "--n-resamples", "99"],
                          env=scored["env"], cwd=REPO, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr
    assert "score folds (eq2)" in proc.stderr                         # the progress bar of the scoring
    cached = {}
    for run in SCORED_RUNS:
        for fold in (0, 1):
            path = results / DATASET / run / f"fold_{fold}" / "eq2_metrics.csv"
            frame = pd.read_csv(path).assign(run=run, fold=fold)
            assert set(frame.get("protocol", pd.Series(["eq2"]))) == {"eq2"}
            brats = pd.read_csv(path.with_name("brats_metrics.csv")).assign(run=run, fold=fold)
            cached[(run, fold)] = frame.merge(brats, on=["run", "fold", "case", "region"], suffixes=("", "_brats"))
    cached = pd.concat(cached.values(), ignore_index=True)
    assert (cached["dice"] == cached["dice_brats"]).all() and (cached["hd95"] != cached["hd95_brats"]).any()
    # Tables 1 and 4 under eq2: the means of the eq2 files, the protocol named in the rows and notes
    table4 = pd.read_csv(out / "table4.csv")
    measured = table4[table4["source"] == "measured"]
    assert set(measured["protocol"]) == {"eq2"}
    for _, row in measured.iterrows():
        run = cached[cached["run"] == f"{row['trainer']}__{row['plans']}__{CONFIG}"]
        for column in METRICS:
            metric, region = column.split("_")
            assert row[column] == pytest.approx(run.loc[run["region"] == region.upper(), metric].mean(), rel=1e-9)
    md = (out / "table4.md").read_text()
    assert "Measured rows scored under the eq2 protocol" in md
    assert "measured under the eq2 protocol" in md and "may come from different protocols" in md
    assert "Measured rows scored under the eq2 protocol" in (out / "table1.md").read_text()
    # protocols.csv: brats (added for the ratios), eq2, authors side by side; ratios recomputed here
    comparison = pd.read_csv(out / "protocols.csv")
    assert len(comparison) == len(SCORED_RUNS) * 3
    ratios = 0
    for _, row in comparison.iterrows():
        run = cached[(cached["run"] == f"{row['trainer']}__{row['plans']}__{CONFIG}")
                     & (cached["region"] == row["region"])]
        assert row["dice_brats"] == pytest.approx(run["dice_brats"].mean(), rel=1e-9)
        assert row["hd95_brats"] == pytest.approx(run["hd95_brats"].mean(), rel=1e-9)
        assert row["hd95_eq2"] == pytest.approx(run["hd95"].mean(), rel=1e-9)
        if run["hd95_brats"].mean() == 0:             # every BraTS HD95 0 (ET here): no ratio
            assert np.isnan(row["hd95_ratio_eq2"])
        else:
            assert row["hd95_ratio_eq2"] == pytest.approx(run["hd95"].mean() / run["hd95_brats"].mean(), rel=1e-9)
            ratios += 1
        assert row["hd95_ratio_eq2_n"] == len(CASES)
        assert np.isnan(row["hd95_authors"]) and np.isnan(row["dice_authors"])
    assert ratios >= 2 * len(SCORED_RUNS)              # the ratio is tested on most rows
    notes = (out / "protocols.md").read_text()
    assert re.search(r"- authors: \d+ of \d+ runs have fewer scored folds than under brats", notes)
    assert "HD95 authors (voxels)" in notes and "HD95 eq2 / brats" in notes
    assert (out / "plots" / "protocol_comparison.png").stat().st_size > 1000
    report = (out / "report.html").read_text()
    assert 'id="protocols"' in report and 'id="protocol_comparison"' in report


# --- repeats and run-to-run noise ------------------------------------------------------------

C = np.array([0.5, 0.5625, 0.625, 0.6875])      # dyadic: every mean and standard deviation below is exact
OFFSETS = (-0.125, 0.0, 0.125)                   # three repeats: run means 0.125 apart, std exactly 0.125
REFERENCE_VARIANT = Variant("nnunet", None, "nnU-Net's network (from the plan)", "nnUNetTrainerDRUwAS_nnUNetNetwork",
                            False, False, False)


def _repeat_layout() -> dict[str, list[tuple[int, ...]]]:
    """trainer -> the folds of each of its repeats (repeat k = index k)."""
    nnunet = variant_by_key("nnunet")
    return {"nnUNetTrainerDRUwAS_Baseline": [(0, 1), (0, 1), (0, 1)],
            "nnUNetTrainerDRUwAS_SA": [(0, 1), (0,)],                    # repeat 1 misses fold 1
            "nnUNetTrainerDRUwAS_AG": [(0, 1)],                          # trained once
            "nnUNetTrainer": [(0, 1), (0, 1)],
            trainer_name(variant_by_key("baseline"), "nnunet"): [(0, 1), (0, 1)],
            trainer_name(nnunet, "nnunet"): [(0, 1), (0, 1)]}


def _repeat_values(trainer: str, repeat: int, fold: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Per-case values of one repeat and fold: WT and TC Dice dyadic, the rest random."""
    n = len(C)
    values = {f"{m}_{r}": rng.uniform(0.4, 0.9, n) if m == "dice" else rng.uniform(1, 30, n)
              for m in ("dice", "hd95") for r in ("WT", "TC", "ET")}
    if trainer == "nnUNetTrainerDRUwAS_Baseline":
        values["dice_WT"] = values["dice_TC"] = C + OFFSETS[repeat]
    elif trainer == "nnUNetTrainerDRUwAS_SA":
        values["dice_WT"], values["dice_TC"] = C + 0.25, C + 0.125     # exactly 2 std and 1 std above the baseline
    elif trainer == "nnUNetTrainerDRUwAS_AG":
        values["dice_WT"] = C + 0.0625
    return values


def _write_repeat_tree(root: Path) -> tuple[Path, pd.DataFrame]:
    rng = np.random.default_rng(21)
    results = root / "results"
    rows = []
    for trainer, repeats in _repeat_layout().items():
        for repeat, folds in enumerate(repeats):
            name = repeat_trainer_name(trainer, repeat)
            for fold in folds:
                values = _repeat_values(trainer, repeat, fold, rng)
                for i in range(len(C)):
                    for region in ("WT", "TC", "ET"):
                        rows.append(dict(trainer=trainer, repeat=repeat, run=name, fold=fold, case=f"c{fold}{i}",
                                         region=region, dice=values[f"dice_{region}"][i],
                                         hd95=values[f"hd95_{region}"][i]))
    truth = pd.DataFrame(rows)
    for (run, fold), frame in truth.groupby(["run", "fold"]):
        folder = results / DATASET / f"{run}__nnUNetPlans__{CONFIG}" / f"fold_{fold}"
        folder.mkdir(parents=True)
        frame[["case", "region", "dice", "hd95"]].assign(
            sensitivity=1.0, specificity=1.0, n_pred=10, n_ref=10, missing=False,
            hd95_definition="brats").to_csv(folder / "brats_metrics.csv", index=False)
    return results, truth


@pytest.fixture(scope="module")
def repeats(tmp_path_factory):
    """The ``repeats`` tree compiled in this process, with a reference variant in the variants table
    (added here while the table has none)."""
    root = tmp_path_factory.mktemp("repeats")
    patch = pytest.MonkeyPatch()
    if not any(v.key == "nnunet" for v in variants.VARIANTS):
        patch.setattr(variants, "VARIANTS", (*variants.VARIANTS, REFERENCE_VARIANT))
    try:
        results, truth = _write_repeat_tree(root)
        tables = compile_tables(results, root / "tables", year_overrides={500: 2020}, compare_protocols=[],
                                plots=False, n_resamples=99, echo=False)
        yield dict(root=root, truth=truth, tables=tables, out=root / "tables")
    finally:
        patch.undo()


def _run_means(truth: pd.DataFrame, trainer: str, column: str) -> np.ndarray:
    metric, region = column.split("_")
    part = truth[(truth["trainer"] == trainer) & (truth["region"] == region.upper())]
    return part.groupby("repeat")[metric].mean().to_numpy(float)


def _per_case(truth: pd.DataFrame, trainer: str, region: str, metric: str) -> dict[tuple[int, str], float]:
    """(fold, case) -> the mean over the repeats that have it, written out with plain Python."""
    sums: dict = {}
    for row in truth[(truth["trainer"] == trainer) & (truth["region"] == region)].itertuples():
        sums.setdefault((row.fold, row.case), []).append(getattr(row, metric))
    return {key: sum(v) / len(v) for key, v in sums.items()}


def test_repeats_pool_into_one_row_with_the_between_repeat_std(repeats):
    truth, out = repeats["truth"], repeats["out"]
    runs = pd.read_csv(out / "runs.csv")
    assert set(runs["trainer"]) == {repeat_trainer_name(t, k) for t, folds in _repeat_layout().items()
                                    for k in range(len(folds))}                         # every repeat listed
    assert runs.set_index("trainer").at["nnUNetTrainerDRUwAS_SA_repeat1", "issues"] == "fold(s) 1 absent"
    table4 = pd.read_csv(out / "table4.csv")
    measured = table4[table4["source"] == "measured"].set_index("trainer")
    assert len(measured) == len(_repeat_layout())
    for trainer, layout in _repeat_layout().items():
        row = measured.loc[trainer]
        assert row["repeats"] == len(layout)
        assert row["n_cases"] == 2 * len(C) and row["folds"] == "0,1"
        assert bool(row["complete"]) == (trainer != "nnUNetTrainerDRUwAS_SA")
        for column in METRICS:
            means = _run_means(truth, trainer, column)
            assert row[column] == pytest.approx(means.mean(), rel=1e-12)           # mean of the run means
            if len(means) > 1:
                assert row[f"{column}_repeat_std"] == pytest.approx(means.std(ddof=1), rel=1e-9)
            else:
                assert np.isnan(row[f"{column}_repeat_std"])
            metric, region = column.split("_")
            per_case = np.array(list(_per_case(truth, trainer, region.upper(), metric).values()))
            assert row[f"{column}_std"] == pytest.approx(per_case.std(ddof=1), rel=1e-9)
    baseline, sa = measured.loc["nnUNetTrainerDRUwAS_Baseline"], measured.loc["nnUNetTrainerDRUwAS_SA"]
    assert (baseline["dice_wt"], baseline["dice_wt_repeat_std"]) == (0.59375, 0.125)        # exact
    # SA's repeat 1 misses fold 1: the mean of the run means is not the mean over all its values
    pooled = truth.loc[(truth["trainer"] == "nnUNetTrainerDRUwAS_SA") & (truth["region"] == "ET"), "hd95"].mean()
    assert sa["hd95_et"] != pytest.approx(pooled, rel=1e-6)
    md = (out / "table4.md").read_text()
    line = next(x for x in md.splitlines() if x.startswith("| 1 | paper recipe, 3d_fullres | measured |"))
    assert "| 8 (folds 0, 1) \u00d73 | 0.5938 \u00b10.1250 |" in line
    assert "| 3 | paper recipe, 3d_fullres | measured | 8 (folds 0, 1) |" in md      # trained once: no x1
    assert "Incomplete run Dataset500_BraTS2020/nnUNetTrainerDRUwAS_SA_repeat1__nnUNetPlans__3d_fullres: " \
           "fold(s) 1 absent." in md
    assert "\u00d7R: the row pools R repeated trainings" in md
    # the reference variant is a reference row labelled by its label and recipe, below the ablation rows
    reference = measured.loc[trainer_name(variant_by_key("nnunet"), "nnunet")]
    assert reference["method"] == "nnU-Net's network (from the plan) (nnU-Net recipe, 3d_fullres)"
    assert pd.isna(reference["table4_row"])


def test_paired_tests_use_per_case_values_averaged_over_repeats(repeats):
    truth = repeats["truth"]
    statistics = pd.read_csv(repeats["out"] / "statistics.csv")
    paper = statistics[statistics["recipe"] == "paper"]
    # the paper recipe has no reference variant: nnU-Net's default run; the nnU-Net recipe has one
    assert set(paper.loc[paper["variant"] == "sa", "reference"]) == {"baseline", "nnUNetTrainer"}
    nnunet = statistics[statistics["recipe"] == "nnunet"]
    assert set(zip(nnunet["variant"], nnunet["reference"])) == {("baseline", "nnunet")}
    trainers = {("paper", "baseline"): "nnUNetTrainerDRUwAS_Baseline", ("paper", "sa"): "nnUNetTrainerDRUwAS_SA",
                ("paper", "ag"): "nnUNetTrainerDRUwAS_AG", ("paper", "nnUNetTrainer"): "nnUNetTrainer",
                ("nnunet", "baseline"): trainer_name(variant_by_key("baseline"), "nnunet"),
                ("nnunet", "nnunet"): trainer_name(variant_by_key("nnunet"), "nnunet")}
    assert len(statistics) == (2 + 3 + 1) * 6
    for _, row in statistics.iterrows():
        x = _per_case(truth, trainers[(row["recipe"], row["variant"])], row["region"], row["metric"])
        y = _per_case(truth, trainers[(row["recipe"], row["reference"])], row["region"], row["metric"])
        keys = sorted(set(x) & set(y))
        a, b = np.array([x[k] for k in keys]), np.array([y[k] for k in keys])
        assert row["n"] == len(keys) == 2 * len(C)
        if np.all(a == b):
            assert row["p_value"] == 1.0
        else:
            assert row["p_value"] == pytest.approx(sps.wilcoxon(a, b).pvalue, rel=1e-9)
        assert row["mean_difference"] == pytest.approx((a - b).mean(), rel=1e-9, abs=1e-15)


def test_differences_within_run_to_run_noise_are_marked(repeats):
    truth, out = repeats["truth"], repeats["out"]
    paper = published_rows().query("table == 4").set_index("variant")
    table4 = pd.read_csv(out / "table4.csv")
    md_rows = [line for line in (out / "table4.md").read_text().splitlines()
               if line.startswith("| ") and not line.startswith("| *")][1:]
    trainers = {"baseline": "nnUNetTrainerDRUwAS_Baseline", "sa": "nnUNetTrainerDRUwAS_SA",
                "ag": "nnUNetTrainerDRUwAS_AG"}
    differences = table4[table4["source"] == "measured - paper"].reset_index()
    assert len(differences) == 4            # baseline, sa, ag (paper recipe) and baseline (nnU-Net recipe)
    marked = 0
    for _, row in differences.iterrows():
        trainer = row["trainer"]
        for k, column in enumerate(METRICS):
            means = _run_means(truth, trainer, column)
            difference = means.mean() - paper.at[row["variant"], column]
            std = means.std(ddof=1) if len(means) > 1 else np.nan
            expected = bool(abs(difference) < 2 * std)            # NaN std (one repeat): never marked
            assert row[column] == pytest.approx(difference, rel=1e-9)
            assert bool(row[f"{column}_noise"]) == expected, (trainer, column)
            cell = md_rows[row["index"]].strip("|").split(" | ")[4 + k]
            assert (NOISE in cell) == expected
            marked += expected
    assert marked
    ag = differences[differences["variant"] == "ag"].iloc[0]
    assert not ag[[f"{c}_noise" for c in METRICS]].any()              # trained once: never marked
    assert f"{NOISE} within run-to-run noise: |difference| < 2 \u00d7 the between-repeat standard deviation" in \
        (out / "table4.md").read_text()
    # Table 4b: variant - baseline and variant - nnU-Net, noise = the larger std of the two rows, both repeated
    table4b = pd.read_csv(out / "table4b.csv")
    md4b = [line for line in (out / "table4b.md").read_text().splitlines() if line.startswith("| ")][1:]
    reference_of = {"paper": "nnUNetTrainer", "nnunet": trainer_name(variant_by_key("nnunet"), "nnunet")}
    assert len(table4b) == 2 + 3 + 1
    for index, row in table4b.iterrows():
        variant_trainer = trainers[row["variant"]] if row["recipe"] == "paper" else \
            trainer_name(variant_by_key(row["variant"]), "nnunet")
        other = trainers["baseline"] if row["compared_with"] == "baseline" else reference_of[row["recipe"]]
        for k, column in enumerate(METRICS):
            metric, region = column.split("_")
            x, y = (_per_case(truth, t, region.upper(), metric) for t in (variant_trainer, other))
            keys = sorted(set(x) & set(y))
            difference = np.mean([x[key] - y[key] for key in keys])
            both = [_run_means(truth, t, column) for t in (variant_trainer, other)]
            std = max(m.std(ddof=1) for m in both) if all(len(m) > 1 for m in both) else np.nan
            assert row[column] == pytest.approx(difference, rel=1e-9, abs=1e-15)
            assert bool(row[f"{column}_noise"]) == bool(abs(difference) < 2 * std), (row["variant"], column)
            assert (NOISE in md4b[index].strip("|").split(" | ")[4 + k]) == bool(abs(difference) < 2 * std)
    sa = table4b[(table4b["variant"] == "sa") & (table4b["compared_with"] == "baseline")].iloc[0]
    assert (sa["dice_wt"], sa["dice_wt_repeat_std"]) == (0.25, 0.125)      # exactly at 2 std: not marked
    assert not sa["dice_wt_noise"] and sa["dice_tc_noise"]                 # 1 std: marked
    ag = table4b[(table4b["variant"] == "ag") & (table4b["compared_with"] == "baseline")].iloc[0]
    assert ag["dice_wt"] == 0.0625 and not ag[[f"{c}_noise" for c in METRICS]].any()   # AG trained once
    reference = table4b[table4b["recipe"] == "nnunet"].iloc[0]
    assert reference["compared_with"] == "nnU-Net's network (from the plan)"
    assert "| 2 | paper recipe, 3d_fullres\u2020 | \u2212 baseline |" in "\n".join(md4b)


def test_latex_with_references_and_noise_marks_compiles(repeats, tmp_path):
    from analysis.render import latex_document

    assert shutil.which("pdflatex"), "pdflatex not found: .ci/run installs texlive-latex-base"
    for path in repeats["out"].glob("*.tex"):
        shutil.copy(path, tmp_path / path.name)
    assert r"$^\ddagger$" in (tmp_path / "table4b.tex").read_text()
    for name in ("table4", "table4b", "protocols"):
        (tmp_path / f"alone_{name}.tex").write_text(latex_document([rf"\input{{{name}}}"]))
        proc = subprocess.run(["pdflatex", "-interaction=nonstopmode", "-halt-on-error", f"alone_{name}.tex"],
                              cwd=tmp_path, capture_output=True, text=True, timeout=300)
        assert proc.returncode == 0, proc.stdout[-3000:]
        log = (tmp_path / f"alone_{name}.log").read_text(errors="replace")
        assert "Overfull \\hbox" not in log and "Float too large" not in log, name
        assert re.search(rf"Output written on alone_{name}\.pdf \(1 page", log), name
