"""nnU-Net's BraTS postprocessing as an axis of the tables, and the ablation tables of other releases.

One results tree with real NIfTI validation predictions (ground truths, dataset.json and splits in a
preprocessed folder) of three releases: BraTS 2020 (Table 4), BraTS 2021 and the Decathlon's Task01 (each
an ablation table of its own). The predictions carry small spurious enhancing-tumour components (a few
voxels away from the tumour) in cases whose reference has none, so each run's threshold removes them. One
2020 run has metrics files but no predictions (no threshold: noted); one Decathlon run lacks fold 1's
predictions (its threshold comes from fold 0; its postprocessed row covers fold 0 and is marked).
Every expected number is computed here: the threshold search and the rule written out, Dice with numpy,
HD95 with medpy, the BraTS empty-mask values by hand.
"""
from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
import pytest
from scipy import stats as sps

from test_analysis import _holm_reference, _pdflatex
from test_analysis_references import compile_in

SHAPE = (16, 16, 16)
CONFIG, PLANS = "3d_fullres", "nnUNetPlans"
REGIONS = {"WT": (1, 2, 3), "TC": (2, 3), "ET": (3,)}          # nnU-Net's BraTS labels, written out here
METRICS = ("dice_wt", "dice_tc", "dice_et", "hd95_wt", "hd95_tc", "hd95_et")
EMPTY_HD95 = 373.13
#: dataset -> (its dataset.json's release keys, case name prefix)
DATASETS = {"Dataset500_BraTS2020": ({"release": "2020", "brats_year": 2020}, "BraTS20_Training"),
            "Dataset503_BraTS2021": ({"release": "2021", "brats_year": 2021}, "BraTS2021"),
            "Dataset505_MSDBrainTumour": ({"release": "msd"}, "BRATS")}
NO_ET = (1, 3, 4)                 # cases whose reference has no enhancing tumour
#: trainer -> case index -> spurious ET voxels of its predictions
RUNS = {"nnUNetTrainerDRUwAS_Baseline": {1: 5, 3: 14, 4: 23}, "nnUNetTrainerDRUwAS_SA": {0: 8, 1: 12},
        "nnUNetTrainer": {}}
NO_PREDICTIONS = ("Dataset500_BraTS2020", "nnUNetTrainerDRUwAS_AG")           # metrics files only
FOLD_1_DELETED = ("Dataset505_MSDBrainTumour", "nnUNetTrainerDRUwAS_Baseline")  # fold 1: metrics, no predictions
LABELS = {"background": 0, "whole tumor": [1, 2, 3], "tumor core": [2, 3], "enhancing tumor": 3}


def _cases(dataset: str) -> list[str]:
    return [f"{DATASETS[dataset][1]}_{i:03d}" for i in range(6)]


def _splits(dataset: str) -> list[dict]:
    cases = _cases(dataset)
    return [{"train": cases[3:], "val": cases[:3]}, {"train": cases[:3], "val": cases[3:]}]


def _reference(rng: np.random.Generator, has_et: bool) -> np.ndarray:
    r = np.linalg.norm(np.indices(SHAPE).transpose(1, 2, 3, 0) - rng.uniform(7.5, 8.5, 3), axis=-1)
    seg = np.zeros(SHAPE, np.uint8)
    seg[r < 5] = 1
    seg[r < 3.5] = 3 if has_et else 2
    seg[r < 2] = 2
    return seg


def _prediction(gt: np.ndarray, spurious: int, rng: np.random.Generator) -> np.ndarray:
    pred = np.roll(gt, int(rng.integers(0, 2)), axis=int(rng.integers(0, 3)))
    pred.reshape(-1)[:spurious] = 3          # a compact component in the corner, far from the tumour
    return pred


def _rule(pred: np.ndarray, threshold: int) -> np.ndarray:
    """The script's rule, written out: a predicted ET of fewer than ``threshold`` voxels becomes label 2."""
    out = pred.copy()
    if np.sum(out == 3) < threshold:
        out[out == 3] = 2
    return out


def _brats(pred: np.ndarray, gt: np.ndarray) -> dict[str, tuple[float, float]]:
    """region -> (Dice, HD95) with BraTS's empty-mask values (both empty: 1 and 0; one empty: 0 and 373.13)."""
    from medpy.metric.binary import hd95

    values = {}
    for region, labels in REGIONS.items():
        p, g = np.isin(pred, labels), np.isin(gt, labels)
        if not p.any() and not g.any():
            values[region] = (1.0, 0.0)
        elif p.any() != g.any():
            values[region] = (0.0, EMPTY_HD95)
        else:
            values[region] = (2 * (p & g).sum() / (p.sum() + g.sum()), hd95(p, g))
    return values


def _threshold(pairs: list[tuple[np.ndarray, np.ndarray]]) -> tuple[int, float, float]:
    """(threshold, mean ET Dice at it, at 0): the highest mean ET Dice over 0, 10, ..., 750, the smallest on ties."""
    best, best_mean, means = 0, -1.0, []
    for threshold in range(0, 751, 10):
        mean = float(np.mean([_brats(_rule(pred, threshold), gt)["ET"][0] for pred, gt in pairs]))
        means.append(mean)
        if mean > best_mean:
            best, best_mean = threshold, mean
    return best, best_mean, means[0]


def _save(path: Path, labels: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    nib.save(nib.Nifti1Image(labels.astype(np.uint8), np.eye(4)), path)


def _write_tree(root: Path) -> tuple[dict[str, str], pd.DataFrame, dict]:
    """The tree; returns the environment, the expected per-case values (with and without postprocessing) and
    (dataset, trainer) -> (threshold, its mean ET Dice, the mean ET Dice without, cases changed, cases)."""
    rng = np.random.default_rng(16)
    rows, thresholds = [], {}
    for dataset, (release, _) in DATASETS.items():
        pre = root / "preprocessed" / dataset
        truths = {case: _reference(rng, i not in NO_ET) for i, case in enumerate(_cases(dataset))}
        for case, gt in truths.items():
            _save(pre / "gt_segmentations" / f"{case}.nii.gz", gt)
        info = {"labels": LABELS, "regions_class_order": [1, 2, 3], "file_ending": ".nii.gz",
                "channel_names": {"0": "T1"}, **release}
        (pre / "dataset.json").write_text(json.dumps(info))
        (pre / "splits_final.json").write_text(json.dumps(_splits(dataset)))
        (root / "raw" / dataset).mkdir(parents=True)
        (root / "raw" / dataset / "dataset.json").write_text(json.dumps(release))
        for trainer, spurious in RUNS.items():
            run_dir = root / "results" / dataset / f"{trainer}__{PLANS}__{CONFIG}"
            chosen_on = []
            for fold, split in enumerate(_splits(dataset)):
                folder = run_dir / f"fold_{fold}"
                plain = []
                for case in split["val"]:
                    pred = _prediction(truths[case], spurious.get(int(case[-3:]), 0), rng)
                    _save(folder / "validation" / f"{case}.nii.gz", pred)
                    plain.append(dict(case=case, pred=pred))
                if (dataset, trainer) == FOLD_1_DELETED and fold == 1:   # scored once, predictions gone since
                    shutil.rmtree(folder / "validation")
                    pd.DataFrame([dict(case=p["case"], region=region, dice=d, hd95=h, missing=False)
                                  for p in plain for region, (d, h) in _brats(p["pred"], truths[p["case"]]).items()]
                                 ).to_csv(folder / "brats_metrics.csv", index=False)
                else:
                    chosen_on += [(p["pred"], truths[p["case"]]) for p in plain]
                for p in plain:
                    p.update(fold=fold, postprocessed=(dataset, trainer) != FOLD_1_DELETED or fold == 0)
                rows += [dict(dataset=dataset, trainer=trainer, **p) for p in plain]
            threshold, with_, without = _threshold(chosen_on)
            changed = sum(1 for pred, _ in chosen_on if 0 < np.sum(pred == 3) < threshold)
            thresholds[(dataset, trainer)] = (threshold, with_, without, changed, len(chosen_on))
    dataset, trainer = NO_PREDICTIONS
    for fold, split in enumerate(_splits(dataset)):
        folder = root / "results" / dataset / f"{trainer}__{PLANS}__{CONFIG}" / f"fold_{fold}"
        folder.mkdir(parents=True)
        pd.DataFrame([dict(case=case, region=region, dice=0.75, hd95=4.0, missing=False) for case in split["val"]
                      for region in REGIONS]).to_csv(folder / "brats_metrics.csv", index=False)
    truth = []
    for row in rows:
        gt = _reference_of(root, row["dataset"], row["case"])
        threshold = thresholds[(row["dataset"], row["trainer"])][0]
        after = _rule(row["pred"], threshold)
        plain, processed = _brats(row["pred"], gt), _brats(after, gt)
        for region in REGIONS:
            truth.append(dict(dataset=row["dataset"], trainer=row["trainer"], fold=row["fold"], case=row["case"],
                              region=region, dice=plain[region][0], hd95=plain[region][1],
                              pp_dice=processed[region][0] if row["postprocessed"] else np.nan,
                              pp_hd95=processed[region][1] if row["postprocessed"] else np.nan,
                              changed=not np.array_equal(after, row["pred"])))
    env = dict(os.environ, nnUNet_raw=str(root / "raw"), nnUNet_preprocessed=str(root / "preprocessed"),
               nnUNet_results=str(root / "results"), MPLBACKEND="Agg")
    return env, pd.DataFrame(truth), thresholds


def _reference_of(root: Path, dataset: str, case: str) -> np.ndarray:
    return np.asanyarray(nib.load(root / "preprocessed" / dataset / "gt_segmentations" / f"{case}.nii.gz").dataobj)


@pytest.fixture(scope="module")
def tree(tmp_path_factory):
    root = tmp_path_factory.mktemp("postprocessing")
    env, truth, thresholds = _write_tree(root)
    tables = compile_in(env, root / "tables")
    return dict(root=root, env=env, truth=truth, thresholds=thresholds, tables=tables, out=root / "tables",
                results=root / "results")


def _run(truth: pd.DataFrame, dataset: str, trainer: str, region: str) -> pd.DataFrame:
    return truth[(truth["dataset"] == dataset) & (truth["trainer"] == trainer) & (truth["region"] == region)]


def _check_row(row: pd.Series, truth: pd.DataFrame, processed: bool) -> None:
    """A measured (or + postprocessing) row against the means and standard deviations of the expected values."""
    for column in METRICS:
        metric, region = column.split("_")
        values = _run(truth, row["dataset"], row["trainer"], region.upper())[("pp_" if processed else "") + metric]
        values = values.dropna().to_numpy(float)
        assert row[column] == pytest.approx(values.mean(), rel=1e-9, abs=1e-12), (row["trainer"], column)
        assert row[f"{column}_std"] == pytest.approx(values.std(ddof=1), rel=1e-9, abs=1e-12), (row["trainer"], column)
        assert row[f"{column}_n"] == len(values)


def test_thresholds_are_chosen_cached_and_listed(tree):
    results, truth = tree["results"], tree["truth"]
    table = pd.read_csv(tree["out"] / "postprocessing.csv", dtype={"folds": str, "chosen_on_folds": str})
    assert len(table) == len(DATASETS) * len(RUNS) + 1
    assert {t for t, *_ in tree["thresholds"].values()} >= {0, 20, 30}     # the runs differ
    for (dataset, trainer), (threshold, with_, without, changed, n) in tree["thresholds"].items():
        saved = json.loads((results / dataset / f"{trainer}__{PLANS}__{CONFIG}" / "brats_postprocessing.json")
                           .read_text())
        assert saved["threshold"] == threshold
        row = table[(table["dataset"] == dataset) & (table["trainer"] == trainer)].iloc[0]
        assert (row["threshold"], row["threshold_from"], row["chosen_on_n"], row["cases_changed"]) == \
            (threshold, "chosen", n, changed)
        assert row["mean_et_dice_with"] == pytest.approx(with_, rel=1e-12)
        assert row["mean_et_dice_without"] == pytest.approx(without, rel=1e-12)
        et = _run(truth, dataset, trainer, "ET").dropna(subset=["pp_dice"])
        assert row["n_cases"] == len(et) and row["protocol"] == "brats"
        assert row["et_dice_without"] == pytest.approx(et["dice"].mean(), rel=1e-12)
        assert row["et_dice_with"] == pytest.approx(et["pp_dice"].mean(), rel=1e-12)
        if (dataset, trainer) == FOLD_1_DELETED:
            assert (row["folds"], row["chosen_on_folds"]) == ("0", "0")
            assert "fold 1: postprocessing failed" in row["issues"] and "no validation/" in row["issues"]
        else:
            assert (row["folds"], row["chosen_on_folds"]) == ("0,1", "0,1") and pd.isna(row["issues"])
    none = table[table["trainer"] == NO_PREDICTIONS[1]].iloc[0]
    assert pd.isna(none["threshold"]) and pd.isna(none["folds"]) and pd.isna(none["threshold_from"])
    assert "validation predictions" in none["issues"]
    # every fold caches its postprocessed values: the cases the rule changes, their metrics recomputed
    for (dataset, trainer, fold), cases in truth[truth["pp_dice"].notna()].groupby(["dataset", "trainer", "fold"]):
        cached = pd.read_csv(results / dataset / f"{trainer}__{PLANS}__{CONFIG}" / f"fold_{fold}" /
                             "brats_postprocessed_metrics.csv", dtype={"case": str})
        assert set(cached["threshold"]) == {tree["thresholds"][(dataset, trainer)][0]}
        merged = cached.merge(cases, on=["case", "region"], suffixes=("", "_expected"))
        assert len(merged) == len(cases) == len(cached)
        assert (merged["postprocessed"] == merged["changed"]).all()
        assert merged["dice"].to_numpy() == pytest.approx(merged["pp_dice"].to_numpy(), abs=1e-12)
        assert merged["hd95"].to_numpy() == pytest.approx(merged["pp_hd95"].to_numpy(), rel=1e-9)
    assert truth["changed"].sum() >= 6                  # the rule fires, in every dataset
    assert not (results / NO_PREDICTIONS[0] / f"{NO_PREDICTIONS[1]}__{PLANS}__{CONFIG}" /
                "brats_postprocessing.json").exists()


def test_table4_shows_each_run_with_and_without_postprocessing(tree):
    truth, out = tree["truth"], tree["out"]
    table4 = pd.read_csv(out / "table4.csv")
    assert set(table4.loc[table4["source"] != "paper", "dataset"]) == {"Dataset500_BraTS2020"}
    measured = table4[table4["source"] == "measured"]
    processed = table4[table4["source"] == "measured + postprocessing"]
    assert sorted(measured["trainer"]) == sorted([*RUNS, NO_PREDICTIONS[1]])
    assert sorted(processed["trainer"]) == sorted(RUNS)                  # none for the run without predictions
    for _, row in measured[measured["trainer"] != NO_PREDICTIONS[1]].iterrows():
        _check_row(row, truth, processed=False)
    for _, row in processed.iterrows():
        _check_row(row, truth, processed=True)
        plain = measured[measured["trainer"] == row["trainer"]].iloc[0]
        for column in ("dice_wt", "dice_tc", "hd95_wt", "hd95_tc"):         # WT and TC never change
            assert row[column] == pytest.approx(plain[column], rel=1e-12)
        assert bool(row["complete"]) and row["n_cases"] == 6 and row["folds"] == "0,1"
    baseline = processed[processed["trainer"] == "nnUNetTrainerDRUwAS_Baseline"].iloc[0]
    assert baseline["dice_et"] > measured.loc[measured["trainer"] == "nnUNetTrainerDRUwAS_Baseline", "dice_et"].iloc[0]
    md = (out / "table4.md").read_text()
    lines = [line for line in md.splitlines() if line.startswith("| 1 |")]
    assert [line.split(" | ")[2] for line in lines] == ["paper", "measured", "+ postprocessing",
                                                        "measured \u2212 paper"]
    assert "|  | nnU-Net (default) (3d_fullres) | + postprocessing | 6 (folds 0, 1) |" in md
    assert "+ postprocessing: the same predictions after nnU-Net's BraTS postprocessing" in md
    assert "+ postprocessing: none for 1 of 4 runs (e.g. Dataset500_BraTS2020/nnUNetTrainerDRUwAS_AG__" in md
    for number in (1, 2, 3):          # decision: the comparison tables show each run once
        assert "postprocessing" not in (out / f"table{number}.md").read_text()
    assert "measured + postprocessing" not in set(pd.read_csv(out / "table4b.csv")["source"])


def test_paired_tests_with_and_without_postprocessing(tree):
    truth = tree["truth"]
    statistics = pd.read_csv(tree["out"] / "statistics.csv")
    assert set(statistics["family"]) == {"variants", "postprocessing"}
    family = statistics[statistics["family"] == "postprocessing"].copy()
    keys = {"baseline": "nnUNetTrainerDRUwAS_Baseline", "sa": "nnUNetTrainerDRUwAS_SA",
            "nnUNetTrainer": "nnUNetTrainer"}
    assert set(zip(family["variant"], family["reference"])) == {(f"{k} + postprocessing", k) for k in keys}
    assert set(family["region"]) == {"ET"} and len(family) == len(keys) * 2
    for _, row in family.iterrows():
        run = truth[(truth["trainer"] == keys[row["reference"]]) & (truth["region"] == "ET")]
        both = run.dropna(subset=[f"pp_{row['metric']}"])        # matched (dataset, fold, case); datasets pooled
        x, y = both[f"pp_{row['metric']}"].to_numpy(float), both[row["metric"]].to_numpy(float)
        assert (row["n"], row["n_unpaired"]) == (len(x), len(run) - len(both))
        assert row["mean_difference"] == pytest.approx((x - y).mean(), rel=1e-9, abs=1e-12)
        assert row["p_value"] == (1.0 if np.all(x == y) else pytest.approx(sps.wilcoxon(x, y).pvalue, rel=1e-9))
    assert (family.loc[family["reference"] == "nnUNetTrainer", "p_value"] == 1.0).all()      # threshold 0
    assert (family.loc[family["reference"] == "baseline", "p_value"] < 1).all()
    family["recipe"] = family["recipe"].fillna("")
    for _, group in family.groupby(["recipe", "plans", "configuration"]):       # a Holm family of its own
        assert group["p_holm"].tolist() == pytest.approx(_holm_reference(group["p_value"].tolist()))
    assert sorted(family.groupby(["recipe"]).size().tolist()) == [2, 4]        # nnU-Net's run; baseline and SA


def _paired_mean(truth: pd.DataFrame, dataset: str, a: str, b: str, region: str, metric: str) -> float:
    x, y = (_run(truth, dataset, t, region).set_index(["fold", "case"])[metric] for t in (a, b))
    keys = sorted(set(x.index) & set(y.index))
    return float(np.mean([x[k] - y[k] for k in keys]))


@pytest.mark.parametrize("dataset, stem, title", [
    ("Dataset503_BraTS2021", "table_ablation_brats2021", "BraTS 2021"),
    ("Dataset505_MSDBrainTumour", "table_ablation_msd", "Medical Segmentation Decathlon Task01_BrainTumour")])
def test_other_releases_get_their_own_ablation_table(tree, dataset, stem, title):
    truth, out = tree["truth"], tree["out"]
    table = pd.read_csv(out / f"{stem}.csv", dtype={"release": str})
    assert set(table["dataset"]) == {dataset} and "paper" not in set(table["source"])
    assert set(table["release"].dropna()) == {DATASETS[dataset][0]["release"]}
    measured = table[table["source"] == "measured"]
    processed = table[table["source"] == "measured + postprocessing"]
    assert sorted(measured["trainer"]) == sorted(processed["trainer"]) == sorted(RUNS)
    for _, row in measured.iterrows():
        _check_row(row, truth, processed=False)
        assert row["n_cases"] == 6 and bool(row["complete"])
    for _, row in processed.iterrows():
        _check_row(row, truth, processed=True)
        assert bool(row["complete"]) == ((dataset, row["trainer"]) != FOLD_1_DELETED)
    differences = table[table["source"].isin(["variant - baseline", "variant - nnU-Net"])]
    trainers = {"baseline": "nnUNetTrainerDRUwAS_Baseline", "sa": "nnUNetTrainerDRUwAS_SA",
                "nnU-Net (default)": "nnUNetTrainer"}
    assert set(zip(differences["variant"], differences["compared_with"])) == \
        {("sa", "baseline"), ("baseline", "nnU-Net (default)"), ("sa", "nnU-Net (default)")}
    for _, row in differences.iterrows():
        for column in METRICS:
            metric, region = column.split("_")
            expected = _paired_mean(truth, dataset, trainers[row["variant"]], trainers[row["compared_with"]],
                                    region.upper(), metric)
            assert row[column] == pytest.approx(expected, rel=1e-9, abs=1e-12), (row["variant"], column)
    md = (out / f"{stem}.md").read_text()
    assert md.startswith(f"**Ablation, {title}.** Ablation study on {title}, measured (the paper has no rows")
    order = [line.split(" | ")[2] for line in md.splitlines() if line.startswith("| 2 |")]
    assert order == ["measured", "+ postprocessing", "\u2212 baseline", "\u2212 nnU-Net (default)"]
    assert "| 1 | paper recipe, 3d_fullres | measured | 6 (folds 0, 1) |" in md
    for note in (f"The paper has no table of {title}: every row here is measured.",
                 "Measured rows scored under the brats protocol", "Each cell of a \u2212 baseline or \u2212 nnU-Net "
                 "row", "+ postprocessing: the same predictions"):
        assert note in md, note
    if dataset == FOLD_1_DELETED[0]:        # its postprocessed row covers fold 0 and says why
        assert "| 1 | paper recipe, 3d_fullres\u2020 | + postprocessing | 3 (fold 0) |" in md
        assert re.search(r"\u2020 \+ postprocessing of Dataset505_MSDBrainTumour/nnUNetTrainerDRUwAS_Baseline__"
                         r"nnUNetPlans__3d_fullres: fold 1: postprocessing failed: .*no validation/", md)
    report = (out / "report.html").read_text()
    assert f'id="{stem}"' in report and 'id="postprocessing"' in report
    assert rf"\input{{{stem}}}" in (out / "tables.tex").read_text()


def test_every_table_compiles_with_pdflatex(tree, tmp_path):
    from analysis.render import latex_document

    names = sorted(p.stem for p in tree["out"].glob("*.tex") if p.stem != "tables")
    assert {"table4", "table_ablation_brats2021", "table_ablation_msd"} <= set(names)
    for path in tree["out"].glob("*.tex"):
        shutil.copy(path, tmp_path / path.name)
    for name in names:
        (tmp_path / f"alone_{name}.tex").write_text(latex_document([rf"\input{{{name}}}"]))
        log = _pdflatex(tmp_path, f"alone_{name}.tex")
        assert "Overfull \\hbox" not in log and "Float too large" not in log, name
        assert re.search(rf"Output written on alone_{name}\.pdf \(1 page", log), name


def test_year_override_and_no_postprocessing(tree, tmp_path):
    out = tmp_path / "tables"
    shutil.copytree(tree["out"], out)
    tables = compile_in(tree["env"], out, year_overrides={503: 2020}, postprocessing=False)
    assert "ablation_brats2021" not in tables and "ablation_msd" in tables
    assert not list(out.glob("table_ablation_brats2021.*"))           # the earlier run's table is gone
    table4 = pd.read_csv(out / "table4.csv")
    assert set(table4.loc[table4["source"] == "measured", "dataset"]) == {"Dataset500_BraTS2020",
                                                                          "Dataset503_BraTS2021"}
    for path in out.glob("table*.csv"):
        assert "measured + postprocessing" not in set(pd.read_csv(path)["source"].dropna()), path.name
    assert pd.read_csv(out / "postprocessing.csv").empty
    assert set(pd.read_csv(out / "statistics.csv")["family"]) == {"variants"}
    assert "not applied (--no-postprocessing)" in (out / "notes.md").read_text()
    assert r"\input{table_ablation_brats2021}" not in (out / "tables.tex").read_text()


def test_cached_values_are_reused_and_redone_for_another_threshold(tree, tmp_path):
    results = tree["results"]
    files = sorted(results.glob("*/*/fold_*/brats_postprocessed_metrics.csv"))
    assert len(files) == len(DATASETS) * len(RUNS) * 2 - 1
    before = {f: f.stat().st_mtime_ns for f in files}
    compile_in(tree["env"], tmp_path / "again")
    assert {f: f.stat().st_mtime_ns for f in files} == before                 # nothing scored again
    assert (pd.read_csv(tmp_path / "again" / "postprocessing.csv")["threshold_from"].dropna() == "found").all()
    run = results / "Dataset500_BraTS2020" / f"nnUNetTrainerDRUwAS_Baseline__{PLANS}__{CONFIG}"
    saved = (run / "brats_postprocessing.json").read_text()
    try:
        (run / "brats_postprocessing.json").write_text(json.dumps(dict(json.loads(saved), threshold=0)))
        compile_in(tree["env"], tmp_path / "zero")
        for fold in (0, 1):
            cached = pd.read_csv(run / f"fold_{fold}" / "brats_postprocessed_metrics.csv")
            assert set(cached["threshold"]) == {0} and not cached["postprocessed"].any()
        table4 = pd.read_csv(tmp_path / "zero" / "table4.csv").query("trainer == 'nnUNetTrainerDRUwAS_Baseline'")
        rows = table4.set_index("source")
        for column in METRICS:
            assert rows.at["measured + postprocessing", column] == pytest.approx(rows.at["measured", column])
        assert changed_files(files, before) == {run / "fold_0" / "brats_postprocessed_metrics.csv",
                                                run / "fold_1" / "brats_postprocessed_metrics.csv"}
    finally:
        (run / "brats_postprocessing.json").write_text(saved)


def changed_files(files: list[Path], before: dict[Path, int]) -> set[Path]:
    return {f for f in files if f.stat().st_mtime_ns != before[f]}
