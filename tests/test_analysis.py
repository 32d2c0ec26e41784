"""Tables, statistics and plots of `analysis/` against numbers computed independently here.

A results folder is built with known per-case metrics (several trainers, recipes, folds and
datasets, some runs incomplete); every number the analysis writes is recomputed from that
ground truth with numpy/scipy directly.
"""
from __future__ import annotations

import io
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import stats as sps

from analysis import stats
from analysis.collect import collect, parse_year_overrides
from analysis.published import published_rows
from analysis.tables import compile_tables, main
from nnunetv2_druwas.errors import DruwasError
from nnunetv2_druwas.variants import ABLATION_VARIANTS, trainer_name, variant_by_key

REPO = Path(__file__).resolve().parents[1]
REGIONS = ("WT", "TC", "ET")
METRICS = ("dice_wt", "dice_tc", "dice_et", "hd95_wt", "hd95_tc", "hd95_et")
CONFIG, PLANS = "3d_fullres", "nnUNetPlans"
N_CASES = 5          # cases per fold
SEED, RESAMPLES = 3, 999

# dataset -> (trainer -> folds with a brats_metrics.csv)
PAPER_TRAINERS = [trainer_name(v) for v in ABLATION_VARIANTS]
LAYOUT = {
    "Dataset500_BraTS2020": {**{t: (0, 1) for t in PAPER_TRAINERS}, "nnUNetTrainer": (0, 1),
                             trainer_name(variant_by_key("baseline"), "nnunet"): (0, 1),
                             trainer_name(variant_by_key("full"), "nnunet"): (0,),       # fold 1 absent
                             "nnUNetTrainerDRUwAS_SAAG": (0,)},                           # fold 1: checkpoint only
    "Dataset502_BraTS2018": {"nnUNetTrainerDRUwAS": (0, 1), "nnUNetTrainerDRUwASSwish": (0, 1)},
    "Dataset990_Tiny": {"nnUNetTrainerDRUwAS_Baseline": (0,)},
    # the Decathlon's release (no BraTS year): its own ablation table; a trainer outside every paired test
    "Dataset505_MSDBrainTumour": {"nnUNetTrainer_100epochs": (0, 1)},
}
COMPLEXITY = REPO / "docs" / "benchmarks" / "complexity_cpu" / "complexity.csv"    # timed: Table 5 with ratios
MISSING = ("Dataset500_BraTS2020", "nnUNetTrainerDRUwAS_Res", 1, "Dataset500_BraTS2020_11", "TC")
# an empty-mask failure (empty prediction of a non-empty reference: Dice 0, HD95 373.13) and a NaN HD95
FAILURE = ("Dataset500_BraTS2020", "nnUNetTrainerDRUwAS_SA", 0, "Dataset500_BraTS2020_02", "ET")
NAN_HD95 = ("Dataset500_BraTS2020", "nnUNetTrainerDRUwAS_AG", 1, "Dataset500_BraTS2020_13", "WT")
# training logs: (trainer, fold) -> (checkpoint file, epochs); every fold has metrics, so every fold is done
# (a checkpoint_latest.pth without checkpoint_final.pth would make it a fold in training: folds.fold_state)
RELU, SWISH = "nnUNetTrainerDRUwAS", "nnUNetTrainerDRUwASSwish"
CHECKPOINTS = {(RELU, 0): ("checkpoint_final.pth", 6), (RELU, 1): ("checkpoint_final.pth", 6),
               (SWISH, 0): ("checkpoint_final.pth", 4), (SWISH, 1): ("checkpoint_final.pth", 2)}


def _truth() -> pd.DataFrame:
    """The known per-case metrics, one dict per dataset x trainer x fold x case x region."""
    rng = np.random.default_rng(7)
    rows = []
    for dataset, trainers in LAYOUT.items():
        for trainer, folds in trainers.items():
            for fold in folds:
                for i in range(N_CASES):
                    case = f"{dataset}_{fold}{i}"
                    for region in REGIONS:
                        # the Swish run beats every published WT Dice so its measured row is bold in Table 1
                        low = 0.93 if (trainer == "nnUNetTrainerDRUwASSwish" and region == "WT") else 0.5
                        row = dict(dataset=dataset, trainer=trainer, fold=fold, case=case, region=region,
                                   dice=round(rng.uniform(low, 0.99), 4), hd95=round(rng.uniform(1.0, 20.0), 3),
                                   missing=False, n_pred=100, n_ref=100)
                        key = (dataset, trainer, fold, case, region)
                        if key == MISSING:
                            row.update(dice=0.0, hd95=373.13, missing=True, n_pred=0)
                        elif key == FAILURE:
                            row.update(dice=0.0, hd95=373.13, n_pred=0)
                        elif key == NAN_HD95:
                            row.update(hd95=np.nan)
                        rows.append(row)
    return pd.DataFrame(rows)


def _write_log(path: Path, epochs: int, rng: np.random.Generator) -> dict[str, list[float]]:
    """An nnU-Net checkpoint whose ``logging`` comes from nnU-Net's own logger; returns what was logged."""
    import torch
    from nnunetv2.training.logging.nnunet_logger import MetaLogger

    logger = MetaLogger(str(path.parent), resume=False)
    for epoch in range(epochs):
        logger.log("lrs", 5e-4, epoch)
        logger.log("train_losses", float(-0.1 * epoch + rng.normal(0, 0.01)), epoch)
        logger.log("val_losses", float(-0.08 * epoch + rng.normal(0, 0.01)), epoch)
        logger.log("dice_per_class_or_region", [0.5, 0.6, 0.7], epoch)
        logger.log("mean_fg_dice", np.float64(0.4 + 0.05 * epoch + rng.normal(0, 0.02)), epoch)
        logger.log("epoch_start_timestamps", 0.0, epoch)
        logger.log("epoch_end_timestamps", 1.0, epoch)
    checkpoint = logger.get_checkpoint()
    torch.save({"network_weights": {}, "logging": checkpoint, "current_epoch": epochs}, path)
    return {key: [float(v) for v in checkpoint[key]] for key in ("train_losses", "val_losses", "mean_fg_dice",
                                                                 "ema_fg_dice")}


def _write_results(root: Path) -> tuple[Path, dict[str, str], pd.DataFrame, dict]:
    truth = _truth()
    results, raw = root / "results", root / "raw"
    # BraTS years: 2020 from nnUNet_raw, 2018 from the copy in the trainer folder, none for 990
    (raw / "Dataset500_BraTS2020").mkdir(parents=True)
    (raw / "Dataset500_BraTS2020" / "dataset.json").write_text(json.dumps({"brats_year": 2020}))
    (raw / "Dataset505_MSDBrainTumour").mkdir()
    (raw / "Dataset505_MSDBrainTumour" / "dataset.json").write_text(json.dumps({"release": "msd"}))
    for (dataset, trainer, fold), rows in truth.groupby(["dataset", "trainer", "fold"]):
        folder = results / dataset / f"{trainer}__{PLANS}__{CONFIG}" / f"fold_{fold}"
        folder.mkdir(parents=True)
        table = rows[["case", "region", "dice", "hd95", "missing", "n_pred", "n_ref"]].assign(
            sensitivity=0.9, specificity=0.99, hd95_definition="brats")
        table.to_csv(folder / "brats_metrics.csv", index=False)
        if dataset == "Dataset502_BraTS2018":
            (folder.parent / "dataset.json").write_text(json.dumps({"brats_year": 2018}))
    rng = np.random.default_rng(11)
    logs = {}
    for (trainer, fold), (name, epochs) in CHECKPOINTS.items():
        folder = results / "Dataset500_BraTS2020" / f"{trainer}__{PLANS}__{CONFIG}" / f"fold_{fold}"
        logs[(trainer, fold)] = _write_log(folder / name, epochs, rng)
    saag = results / "Dataset500_BraTS2020" / f"nnUNetTrainerDRUwAS_SAAG__{PLANS}__{CONFIG}" / "fold_1"
    saag.mkdir()
    (saag / "checkpoint_final.pth").write_bytes(b"")
    unevaluated = results / "Dataset500_BraTS2020" / f"nnUNetTrainerDRUwAS_AG_nnUNetRecipe__{PLANS}__{CONFIG}"
    (unevaluated / "fold_0").mkdir(parents=True)
    (unevaluated / "fold_0" / "checkpoint_final.pth").write_bytes(b"")
    shutil.copy(COMPLEXITY, results / "complexity.csv")          # found there: Table 5
    env = dict(os.environ, nnUNet_raw=str(raw), nnUNet_preprocessed=str(root / "preprocessed"),
               nnUNet_results=str(results), MPLBACKEND="Agg")
    return results, env, truth, logs


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """The results folder, run once through `python -m analysis.tables` (with plots)."""
    root = tmp_path_factory.mktemp("analysis")
    results, env, truth, logs = _write_results(root)
    out = root / "tables"
    proc = subprocess.run([sys.executable, "-m", "analysis.tables", "--results", str(results), "--out", str(out),
                           "--seed", str(SEED), "--n-resamples", str(RESAMPLES)],
                          env=env, cwd=REPO, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    return dict(results=results, env=env, truth=truth, logs=logs, out=out, stdout=proc.stdout)


def _read(built, name: str) -> pd.DataFrame:
    return pd.read_csv(built["out"] / name, dtype={"case": str})


def _values(truth: pd.DataFrame, dataset: str, trainer: str, region: str, metric: str) -> np.ndarray:
    """The known values of one run, region and metric (NaN left out, as every mean leaves it out)."""
    mask = (truth["dataset"] == dataset) & (truth["trainer"] == trainer) & (truth["region"] == region)
    values = truth.loc[mask, metric].to_numpy(float)
    return values[~np.isnan(values)]


def _holm_reference(p: list[float]) -> list[float]:
    """Holm's step-down adjustment written out the textbook way (quadratic, independent of the module)."""
    m = len(p)
    order = sorted(range(m), key=lambda i: p[i])
    rank = {index: k for k, index in enumerate(order)}
    return [max(min(1.0, (m - rank[j]) * p[j]) for j in range(m) if rank[j] <= rank[i]) for i in range(m)]


def _check_measured(table: pd.DataFrame, truth: pd.DataFrame, dataset: str, trainers) -> None:
    measured = table[(table["source"] == "measured") & (table["dataset"] == dataset)]
    assert sorted(measured["trainer"]) == sorted(trainers)
    for _, row in measured.iterrows():
        run = truth[(truth["dataset"] == dataset) & (truth["trainer"] == row["trainer"])]
        assert row["n_cases"] == run["case"].nunique()
        assert row["folds"] == ",".join(map(str, sorted(run["fold"].unique())))
        for column in METRICS:
            metric, region = column.split("_")
            values = _values(truth, dataset, row["trainer"], region.upper(), metric)
            assert row[column] == pytest.approx(values.mean(), rel=1e-12)
            assert row[f"{column}_std"] == pytest.approx(values.std(ddof=1), rel=1e-9)
            assert row[f"{column}_n"] == len(values)


def _markdown_rows(text: str) -> list[list[str]]:
    """The cells of every body row of a Markdown table (group headings left out)."""
    lines = [line for line in text.splitlines() if line.startswith("| ") and not line.startswith("| *")]
    return [[cell.strip() for cell in line.strip("|").split(" | ")] for line in lines[1:]]


# --- published rows ----------------------------------------------------------------------

def test_published_rows_are_the_papers():
    rows = published_rows()
    counts = rows.groupby(["table", "source"]).size().to_dict()
    assert counts == {(1, "published"): 19, (1, "paper"): 2, (2, "published"): 6, (2, "paper"): 1,
                      (3, "published"): 6, (3, "paper"): 1, (4, "paper"): 7}
    row = rows.set_index(["table", "method"])
    # spot checks against the paper text (Tables 1-4)
    assert row.loc[(1, "TransBTS"), ["reference", "year", "hd95_et"]].tolist() == [25, 2021, 16.7160]
    assert row.loc[(1, "Selective Deeply Supervised Multi-Scale Attention Network"), "dice_wt"] == 0.9024  # 90.24 %
    assert row.loc[(1, "Multimodal Transformer of Incomplete MRI Data"), "dice_et"] == 0.8155           # 81.55 %
    assert row.loc[(1, "Self-supervised hybrid fusion network"), "hd95_tc"] == 23.439  # HD95 never rescaled
    assert row.loc[(1, "dResU-Net"), ["hd95_wt", "hd95_tc", "hd95_et"]].isna().all()
    assert row.loc[(1, "3D-DRUwAS (ReLU + Swish)"), "dice_tc"] == 0.9137
    assert row.loc[(2, "MCCNN and CRFs"), ["reference", "hd95_wt"]].tolist() == [43, 12.6069]
    assert row.loc[(2, "AG-ResUNet"), "reference"] == 15
    assert row.loc[(2, "3D-DRUwAS"), "hd95_et"] == 5.0269
    assert row.loc[(3, "Multiscale lightweight 3D segmentation with attention mechanism"), "hd95_et"] == 4.03
    assert row.loc[(3, "3D-DRUwAS"), "dice_et"] == 0.8117
    table4 = rows[rows["table"] == 4].set_index("variant")
    assert table4.loc["baseline", "hd95_et"] == 18.084
    assert table4.loc["saag", "dice_tc"] == 0.8026
    assert table4.loc["swish", ["dice_wt", "hd95_wt"]].tolist() == [0.9115, 1.4195]
    assert rows.loc[rows["source"] == "published", ["dice_wt", "dice_tc", "dice_et"]].max().max() < 1
    # the printed text is kept: not padded, a percent Dice has its decimal point moved, "-" stays empty
    assert row.loc[(1, "3D self-ensemble ResUNet"), "dice_wt_printed"] == "0.89"
    assert row.loc[(1, "A deep CNN model for glioma tumor segmentation"), "hd95_et_printed"] == "5"
    assert row.loc[(1, "Selective Deeply Supervised Multi-Scale Attention Network"), "dice_wt_printed"] == "0.9024"
    assert row.loc[(1, "Dual-Path attention U-Net"), "hd95_wt_printed"] == "6.3000"
    assert pd.isna(row.loc[(1, "dResU-Net"), "hd95_wt_printed"])
    assert table4.loc["baseline", "hd95_et_printed"] == "18.084"
    for column in METRICS:   # every printed text is the value
        printed = rows[f"{column}_printed"].dropna()
        assert printed.astype(float).tolist() == pytest.approx(rows.loc[printed.index, column].tolist(), rel=1e-12)


PAPER_TABLES = Path(__file__).parent / "data" / "paper_tables.txt"   # verbatim lines of the paper's text
# the rows Table 1 prints in percent (Dice 90.24 for 0.9024), by citation number
PERCENT_ROWS = {34, 35, 37, 39}


def _number(cell: str) -> float | None:
    try:
        return float("nan") if cell == "-" else float(cell)
    except ValueError:
        return None


def _paper_table_rows(text: str) -> list[dict]:
    """Every row of Tables 1-4 in the extract: table, printed name, citation number, year, six values
    (Dice as printed), in the paper's order. The extract holds the four tables in order, one block each."""
    blocks = text.split("\n## lines ")[1:]
    assert len(blocks) == 4
    rows = []
    for table, block in enumerate(blocks, start=1):
        assert f"Table {table}: " in block
        for line in block.splitlines()[1:]:
            cells = [c.strip() for c in line.split("\t") if c.strip()]
            if len(cells) not in (7, 8) or _number(cells[0]) is not None \
                    or any(_number(c) is None for c in cells[-6:]):
                continue
            name, *values = cells
            rows.append(dict(table=table, name=name, year=int(values.pop(0)) if len(values) == 7 else None,
                             reference=int(name.rsplit("[", 1)[1].rstrip("]")) if "[" in name else None,
                             printed=[_number(v) for v in values]))
    return rows


def _compact(name: str) -> str:
    return name.replace(" ", "").lower()


def test_every_row_of_tables_1_to_4_matches_the_paper_text():
    parsed = _paper_table_rows(PAPER_TABLES.read_text(encoding="utf-8"))
    rows = published_rows()
    assert [sum(r["table"] == t for r in parsed) for t in (1, 2, 3, 4)] == [21, 7, 7, 7]
    assert len(rows) == len(parsed)
    percent = {r["reference"] for r in parsed if any(v > 1 for v in r["printed"][:3])}
    assert percent == PERCENT_ROWS
    for table in (1, 2, 3, 4):
        ours = rows[rows["table"] == table]
        expected = [r for r in parsed if r["table"] == table]
        if table < 4:   # published rows first, in the paper's order, then the paper's own
            ours = pd.concat([ours[ours["source"] == "published"], ours[ours["source"] == "paper"]])
        else:
            ours = ours.sort_values("table4_row")
            assert ours["table4_row"].tolist() == list(range(1, 8))
        assert len(ours) == len(expected)
        for (_, row), printed in zip(ours.iterrows(), expected):
            name = printed["name"]
            values = np.array(printed["printed"])
            if printed["reference"] in PERCENT_ROWS:
                values[:3] /= 100          # Dice as a fraction; HD95 as printed
            assert row[list(METRICS)].to_numpy(float) == pytest.approx(values, rel=1e-12, nan_ok=True), name
            assert (row["source"] == "paper") == (table == 4 or "(ours)" in name), name
            assert (None if pd.isna(row["reference"]) else int(row["reference"])) == printed["reference"], name
            if table < 4:
                assert _compact(name).startswith(_compact(row["method"])), (name, row["method"])
                assert (None if pd.isna(row["year"]) else int(row["year"])) == printed["year"], name
    # Table 4 prints no names the extraction keeps whole nor years: the rows Table 1 names are its rows 6
    # and 7 (same numbers), and the paper's own rows carry the year Table 1 prints for them (2023)
    table1_ours = [r for r in parsed if r["table"] == 1 and "(ours)" in r["name"]]
    table4 = [r for r in parsed if r["table"] == 4]
    assert [r["printed"] for r in table1_ours] == [table4[5]["printed"], table4[6]["printed"]]
    assert ["(Relu)" in table4[5]["name"], "(Relu + Swish)" in table4[6]["name"], "(Baseline)" in table4[0]["name"]] \
        == [True, True, True]
    by_row = rows[rows["table"] == 4].set_index("table4_row")
    assert (by_row.at[1, "variant"], by_row.at[6, "variant"], by_row.at[7, "variant"]) == ("baseline", "full", "swish")
    paper_years = rows.loc[(rows["source"] == "paper") & rows["table"].isin([1, 4]), "year"]
    assert set(paper_years) == {r["year"] for r in table1_ours} == {2023}


# --- the command and its tables ------------------------------------------------------------

def test_tables_1_to_3_measured_rows(built):
    truth = built["truth"]
    table1, table2, table3 = (_read(built, f"table{n}.csv") for n in (1, 2, 3))
    assert (table1["source"].value_counts().to_dict() ==
            {"published": 19, "measured": len(LAYOUT["Dataset500_BraTS2020"]), "paper": 2})
    _check_measured(table1, truth, "Dataset500_BraTS2020", LAYOUT["Dataset500_BraTS2020"])
    _check_measured(table2, truth, "Dataset502_BraTS2018", LAYOUT["Dataset502_BraTS2018"])
    _check_measured(_read(built, "table_ablation_msd.csv"), truth, "Dataset505_MSDBrainTumour",
                    LAYOUT["Dataset505_MSDBrainTumour"])             # the Decathlon's release: a table of its own
    assert set(table3["source"]) == {"published", "paper"}          # Dataset990 has no BraTS year
    # ... which is said on stdout and in the output files, not only on stdout
    for name in ("notes.md", "report.html"):
        assert "Dataset990_Tiny has no brats_year" in (built["out"] / name).read_text(), name
    assert "Dataset990_Tiny has no brats_year" in built["stdout"]
    assert "nnU-Net (default) (3d_fullres)" in set(table1["method"])      # a reference row, labelled as such
    assert table1["method"].iloc[-1] == "nnU-Net (default) (3d_fullres)"   # ... and last
    assert "Proposed method (ReLU + Swish) (paper recipe, 3d_fullres)" in set(table1["method"])
    # the rows with missing predictions and the empty-mask failure keep dice 0 / hd95 373.13 in the mean
    res = table1[table1["trainer"] == "nnUNetTrainerDRUwAS_Res"].iloc[0]
    assert res["dice_tc_n"] == 2 * N_CASES and not res["complete"]
    ag = table1[table1["trainer"] == "nnUNetTrainerDRUwAS_AG"].iloc[0]
    assert ag["hd95_wt_n"] == 2 * N_CASES - 1 and ag["n_cases"] == 2 * N_CASES    # the NaN is left out
    # the _n columns are integers in the CSV (empty for the published rows), never 10.0
    text = pd.read_csv(built["out"] / "table1.csv", dtype=str)
    for column in [c for c in text.columns if c.endswith("_n")] + ["n_cases"]:
        assert text[column].dropna().str.fullmatch(r"\d+").all(), column
    per_case = _read(built, "per_case.csv")
    assert len(per_case) == len(truth)
    years = per_case.groupby("dataset")["brats_year"].first()
    assert years.dropna().to_dict() == {"Dataset500_BraTS2020": 2020, "Dataset502_BraTS2018": 2018}
    assert np.isnan(years["Dataset990_Tiny"])


def test_table4_measured_and_differences(built):
    truth, table4 = built["truth"], _read(built, "table4.csv")
    paper = published_rows().query("table == 4").set_index("variant")
    assert (table4["source"] == "paper").sum() == 7
    measured = table4[table4["source"] == "measured"]
    expected = {(v.key, "paper") for v in ABLATION_VARIANTS} | {("baseline", "nnunet"), ("full", "nnunet")}
    ablation = measured[measured["variant"].notna()]
    assert set(zip(ablation["variant"], ablation["recipe"])) == expected
    # nnU-Net's own trainer is a reference row below every ablation row, labelled by variants.reference_label
    (reference,) = measured[measured["variant"].isna()].itertuples()
    assert (reference.trainer, reference.method) == ("nnUNetTrainer", "nnU-Net (default) (3d_fullres)")
    assert pd.isna(reference.table4_row) and reference.Index > table4.index[table4["table4_row"].notna()].max()
    _check_measured(table4, truth, "Dataset500_BraTS2020",
                    [trainer_name(variant_by_key(k), r) for k, r in expected] + ["nnUNetTrainer"])
    differences = table4[table4["source"] == "measured - paper"]
    assert len(differences) == len(expected)
    for _, row in differences.iterrows():
        for column in METRICS:
            metric, region = column.split("_")
            values = _values(truth, "Dataset500_BraTS2020", row["trainer"], region.upper(), metric)
            assert row[column] == pytest.approx(values.mean() - paper.at[row["variant"], column], rel=1e-9)
    assert table4["table4_row"].dropna().is_monotonic_increasing
    md = (built["out"] / "table4.md").read_text()
    assert md.count("| measured \u2212 paper |") == len(expected)
    assert "| *References: nnU-Net on the same folds (measured)* |" in md


def test_tables_print_values_as_their_source_and_n_with_folds(built):
    table1 = (built["out"] / "table1.md").read_text()
    rows = {cells[0]: cells for cells in _markdown_rows(table1)}
    header = [line for line in table1.splitlines() if line.startswith("| Method")][0]
    assert "| n |" in header and "HD95 WT (mm)" in header and "HD95 ET (mm)" in header
    # published: as printed (not padded); [32]'s ET HD95 stays 5; percent Dice as fractions with the same digits
    assert rows["3D self-ensemble ResUNet"][4:10] == ["0.89", "0.81", "0.76", "5.28", "7.74", "33.26"]
    assert rows["A deep CNN model for glioma tumor segmentation"][9] == "5"
    assert rows["Selective Deeply Supervised Multi-Scale Attention Network"][4] == "0.9024"
    assert rows["dResU-Net"][7:10] == ["-", "-", "-"]
    # measured: Dice 4 decimals, HD95 2 decimals, std beside; n and folds in the table itself
    truth = built["truth"]
    swish = rows["Proposed method (ReLU + Swish) (paper recipe, 3d_fullres)"]
    assert swish[3] == f"{2 * N_CASES} (folds 0, 1)"
    values = _values(truth, "Dataset500_BraTS2020", "nnUNetTrainerDRUwASSwish", "ET", "hd95")
    assert swish[9].strip("*") == f"{values.mean():.2f} \u00b1{values.std(ddof=1):.2f}"
    values = _values(truth, "Dataset500_BraTS2020", "nnUNetTrainerDRUwASSwish", "TC", "dice")
    assert swish[5].strip("*") == f"{values.mean():.4f} \u00b1{values.std(ddof=1):.4f}"
    saag = rows["Baseline + spatial attention and attention gate (paper recipe, 3d_fullres)\u2020"]
    assert saag[3] == f"{N_CASES} (fold 0)"
    ag = rows["Baseline + attention gate (paper recipe, 3d_fullres)"]   # one NaN HD95 in WT
    assert ag[7].endswith(f"(n={2 * N_CASES - 1})")


def test_footnotes_only_where_they_concern(built):
    md = {n: (built["out"] / f"table{n}.md").read_text() for n in (1, 2, 3, 4)}
    table1_md, table4_md = md[1], md[4]
    assert "nnUNetTrainerDRUwAS_SAAG__nnUNetPlans__3d_fullres: fold 1: checkpoint_final.pth but no " \
           "brats_metrics.csv" in table1_md
    assert "nnUNetTrainerDRUwAS_Res__nnUNetPlans__3d_fullres: fold 1: 1 of 15 case-region rows without " \
           "prediction" in table1_md
    assert "nnUNetTrainerDRUwAS_nnUNetRecipe__nnUNetPlans__3d_fullres: fold(s) 1 absent" in table4_md
    assert "Run Dataset500_BraTS2020/nnUNetTrainerDRUwAS_AG_nnUNetRecipe__nnUNetPlans__3d_fullres has no " \
           "evaluated fold and is not in the table: fold(s) 1 absent; fold 0: checkpoint_final.pth but no " \
           "brats_metrics.csv" in table4_md
    incomplete_lines = [line for line in table1_md.splitlines() if "Incomplete run" in line]
    assert len(incomplete_lines) == 3        # SAAG, Res, and the nnU-Net-recipe full run
    marked = [line for line in table1_md.splitlines() if line.startswith("| ") and "\u2020" in line]
    assert len(marked) == 3
    # notes about runs, measured rows and the paper's final model only where those rows are
    for number, text in md.items():
        assert ("Incomplete run" in text) == (number in (1, 4)), number
        assert ("Measured HD95 definition: brats." in text) == (number in (1, 2, 4)), number
        assert ("0.9121/0.9121/0.8583" in text) == (number in (1, 4)), number
        assert ("measured \u2212 paper: a measured row minus" in text) == (number == 4), number
        assert ("Published and the paper's values" in text) == (number != 4), number
    runs = _read(built, "runs.csv").set_index("trainer")
    assert runs.loc["nnUNetTrainerDRUwAS_Baseline"].query("dataset == 'Dataset500_BraTS2020'")["complete"].all()


def _expected_bold(table: pd.DataFrame, column: str) -> set[int]:
    """Rows whose cell is bold: best among published + paper rows, best among complete measured rows
    (at the printed precision: Dice 4, HD95 2 decimals); never a difference row or an incomplete run."""
    metric = column.split("_")[0]
    best = set()
    printed = table[table["source"].isin(["published", "paper"])]
    measured = table[(table["source"] == "measured") & table["complete"].eq(True)]
    for rows, values in ((printed, printed[column]), (measured, measured[column].round(4 if metric == "dice" else 2))):
        if values.notna().any():
            target = values.max() if metric == "dice" else values.min()
            best |= set(rows.index[values == target])
    return best


def test_best_values_bold_within_comparable_rows(built):
    for number in (1, 2, 4):
        table = _read(built, f"table{number}.csv")
        rows = _markdown_rows((built["out"] / f"table{number}.md").read_text())
        assert len(rows) == len(table)
        for k, column in enumerate(METRICS):
            bold = {i for i, cells in enumerate(rows) if cells[4 + k].startswith("**")}
            assert bold == _expected_bold(table, column), (number, column)
        tex = (built["out"] / f"table{number}.tex").read_text()
        assert tex.count(r"\textbf{") == sum(len(_expected_bold(table, c)) for c in METRICS)
    table1 = _read(built, "table1.csv")
    swish = table1.index[table1["trainer"] == "nnUNetTrainerDRUwASSwish"][0]
    assert swish in _expected_bold(table1, "dice_wt")       # measured WT Dice: bold among measured
    assert table1.index[table1["method"] == "3D-DRUwAS (ReLU + Swish)"][0] in _expected_bold(table1, "dice_wt")
    # an incomplete run is never bold, even with the best value of its column
    table4 = _read(built, "table4.csv")
    saag = table4[(table4["source"] == "measured") & (table4["variant"] == "saag")].iloc[0]
    complete = table4[(table4["source"] == "measured") & table4["complete"].eq(True)]
    assert saag["hd95_wt"] < complete["hd95_wt"].min()
    rows = _markdown_rows((built["out"] / "table4.md").read_text())
    assert not rows[saag.name][7].startswith("**")


def _pdflatex(folder: Path, name: str) -> str:
    assert shutil.which("pdflatex"), "pdflatex not found: .ci/run installs texlive-latex-base and " \
                                     "texlive-latex-recommended (booktabs)"
    proc = subprocess.run(["pdflatex", "-interaction=nonstopmode", "-halt-on-error", name], cwd=folder,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-4000:]
    return (folder / name).with_suffix(".log").read_text(errors="replace")


def test_latex_compiles_on_its_own_and_fits_a_page(built, tmp_path):
    from analysis.render import latex_document

    for path in built["out"].glob("*.tex"):
        shutil.copy(path, tmp_path / path.name)
    # every table written: the paper's, Table 4b, the Decathlon's ablation table, Table 5 and the protocols
    names = sorted(p.stem for p in built["out"].glob("*.tex") if p.stem != "tables")
    assert names == ["protocols", "table1", "table2", "table3", "table4", "table4b", "table5", "table_ablation_msd"]
    for name in names:
        tex = (tmp_path / f"{name}.tex").read_text()
        assert r"\begin{table*}" in tex and r"\toprule" in tex and r"\bottomrule" in tex
        assert not re.search(r"(^|[&{ ])-\d", tex, re.MULTILINE), "a number with a hyphen for a minus"
        assert "\u2212" not in tex and "\u00b1" not in tex and "\u2020" not in tex
        (tmp_path / f"alone_{name}.tex").write_text(latex_document([rf"\input{{{name}}}"]))
        log = _pdflatex(tmp_path, f"alone_{name}.tex")
        assert "Overfull \\hbox" not in log and "Float too large" not in log, name
        assert re.search(r"Output written on alone_\w+\.pdf \(1 page", log), name
    table4 = (tmp_path / "table4.tex").read_text()
    assert "$-$0." in table4 and r"measured $-$ paper" in table4        # a real minus sign
    assert r"nnUNetRecipe\_\allowbreak{}\_\allowbreak{}nnUNetPlans" in table4   # break points in long names
    log = _pdflatex(tmp_path, "tables.tex")                  # the document written beside the tables
    assert "Overfull \\hbox" not in log and "Float too large" not in log and "Output written on tables.pdf" in log


def test_latex_of_a_long_table_still_fits_a_page(built, tmp_path, monkeypatch):
    from analysis.render import Table, latex_document, to_latex
    from analysis.tables import build_tables

    for key, value in built["env"].items():
        if key.startswith("nnUNet_"):
            monkeypatch.setenv(key, value)
    table1 = build_tables(collect(built["results"]))[1]
    measured = table1.frame[table1.frame["source"] == "measured"]
    frame = pd.concat([table1.frame, measured, measured], ignore_index=True)     # 33 measured rows
    (tmp_path / "long.tex").write_text(latex_document([to_latex(Table(1, frame, table1.footnotes))]))
    log = _pdflatex(tmp_path, "long.tex")
    assert "Overfull \\hbox" not in log and "Float too large" not in log
    assert re.search(r"Output written on long\.pdf \(1 page", log)


def test_figures_written(built):
    names = {p.name for p in (built["out"] / "plots").iterdir()}
    for stem in ("per_case_dice", "per_case_hd95", "switch_effects", "measured_vs_paper", "figure4_training_curves"):
        assert {f"{stem}.png", f"{stem}.pdf"} <= names
        assert (built["out"] / "plots" / f"{stem}.png").stat().st_size > 1000
    from analysis.plots import failures
    per_case = _read(built, "per_case.csv")
    failed = per_case[failures(per_case)]
    assert set(zip(failed["trainer"], failed["fold"], failed["case"], failed["region"])) == \
        {MISSING[1:], FAILURE[1:]}


def test_training_curves_and_figure4(built):
    from analysis.curves import continuation_curves

    curves = _read(built, "training_curves.csv")
    for (trainer, fold), log in built["logs"].items():
        rows = curves[(curves["trainer"] == trainer) & (curves["fold"] == fold)].sort_values("epoch")
        assert rows["epoch"].tolist() == list(range(1, CHECKPOINTS[(trainer, fold)][1] + 1))
        assert set(rows["checkpoint"]) == {CHECKPOINTS[(trainer, fold)][0]}
        for column, key in (("train_loss", "train_losses"), ("val_loss", "val_losses"),
                            ("pseudo_dice", "mean_fg_dice"), ("ema_pseudo_dice", "ema_fg_dice")):
            assert rows[column].tolist() == pytest.approx(log[key], rel=1e-12), column
    notes = (built["out"] / "notes.md").read_text()
    assert "nnUNetTrainerDRUwAS_SAAG__nnUNetPlans__3d_fullres/fold_1/checkpoint_final.pth: training log not " \
           "readable (empty file)" in notes
    # Figure 4's one epoch axis: each fold's ReLU epochs, then its Swish epochs numbered on
    joined = continuation_curves(curves)
    for fold in (0, 1):
        relu_epochs, swish_epochs = CHECKPOINTS[(RELU, fold)][1], CHECKPOINTS[(SWISH, fold)][1]
        rows = joined[joined["fold"] == fold]
        assert rows["epoch"].tolist() == list(range(1, relu_epochs + swish_epochs + 1))
        assert rows["phase"].tolist() == ["ReLU"] * relu_epochs + ["Swish"] * swish_epochs
        expected = built["logs"][(RELU, fold)]["mean_fg_dice"] + built["logs"][(SWISH, fold)]["mean_fg_dice"]
        assert rows["pseudo_dice"].tolist() == pytest.approx(expected, rel=1e-12)


def test_report_is_one_self_contained_page_that_renders(built):
    import browser
    from PIL import Image

    page_path = built["out"] / "report.html"
    text = page_path.read_text()
    figures = sorted(p.stem for p in (built["out"] / "plots").glob("*.png"))
    assert all(link.startswith("data:") for link in re.findall(r'(?:src|href)="([^"#][^"]*)"', text))
    for anchor in [f"table{n}" for n in (1, 2, 3, 4, "4b", 5)] + ["table_ablation_msd", "protocols"] + figures + \
            ["wilcoxon", "postprocessing", "switches", "ranking", "bootstrap"]:
        assert f'id="{anchor}"' in text, anchor
    assert "0.9121/0.9121/0.8583" in text and "Incomplete run" in text      # the tables' footnotes
    chromium, driver = browser.executables()
    assert chromium and driver, "chromium/chromedriver not found: .ci/run installs chromium and chromium-driver"
    with browser.open_page(page_path) as page:
        state = page.run("return {images: Array.from(document.images).map(i => [i.complete, i.naturalWidth]),"
                         " height: document.documentElement.scrollHeight, chrome: window.outerHeight - "
                         "window.innerHeight, tables: document.querySelectorAll('table.paper').length}")
        screenshot = page.screenshot(1300, state["height"] + state["chrome"])
        pictures = page.element_screenshots("img")
    assert len(state["images"]) == len(figures) == len(pictures)
    assert all(complete and width > 0 for complete, width in state["images"]), state["images"]
    assert state["tables"] == 8          # Tables 1-4, 4b, the Decathlon's ablation table, Table 5 and the protocols
    artefact = REPO / "test-artifacts" / "report.png"
    artefact.parent.mkdir(exist_ok=True)
    artefact.write_bytes(screenshot)
    print(f"report screenshot: {artefact}")
    for png in [screenshot, *pictures]:
        image = Image.open(io.BytesIO(png)).convert("RGB")
        assert image.width > 100 and image.height > 100
        colours = image.getcolors(1 << 24)
        assert len(colours) > 50, "blank (nearly one colour)"
    assert Image.open(io.BytesIO(screenshot)).height >= state["height"]


# --- statistics -----------------------------------------------------------------------------

def _paired(truth, variant_trainer, reference_trainer, region, metric, unpaired: bool = False):
    """Values of two runs on the (dataset, fold, case) both have a value for (and how many only one has)."""
    a = truth[(truth["trainer"] == variant_trainer) & (truth["region"] == region)].dropna(subset=[metric])
    b = truth[(truth["trainer"] == reference_trainer) & (truth["region"] == region)].dropna(subset=[metric])
    joined = a.merge(b, on=["dataset", "fold", "case"], suffixes=("_x", "_y"), how="outer", indicator=True)
    both = joined[joined["_merge"] == "both"]
    x, y = both[f"{metric}_x"].to_numpy(float), both[f"{metric}_y"].to_numpy(float)
    return (x, y, int((joined["_merge"] != "both").sum())) if unpaired else (x, y)


def test_wilcoxon_and_holm(built):
    truth, table = built["truth"], _read(built, "statistics.csv")
    for recipe in ("paper", "nnunet"):
        family = table[table["recipe"] == recipe]
        keys = [v.key for v in ABLATION_VARIANTS] if recipe == "paper" else ["baseline", "full"]
        # every variant against the baseline, Swish against ReLU, and every variant against nnU-Net's default
        # run (nnUNetTrainer, nnUNetPlans: there is no reference variant of either recipe here)
        pairs = [(k, "baseline") for k in keys[1:]] + ([("swish", "full")] if recipe == "paper" else []) + \
            [(k, "nnUNetTrainer") for k in keys]
        assert len(family) == len(pairs) * 3 * 2
        assert set(zip(family["variant"], family["reference"])) == set(pairs)
        trainer = lambda key: "nnUNetTrainer" if key == "nnUNetTrainer" else trainer_name(variant_by_key(key), recipe)  # noqa: E731
        for _, row in family.iterrows():
            x, y, unpaired = _paired(truth, trainer(row["variant"]), trainer(row["reference"]), row["region"],
                                     row["metric"], unpaired=True)
            assert (row["n"], row["n_unpaired"]) == (len(x), unpaired)
            expected = sps.wilcoxon(x, y)
            assert row["p_value"] == pytest.approx(expected.pvalue, rel=1e-9)
            assert row["statistic"] == pytest.approx(expected.statistic)
            assert row["mean_difference"] == pytest.approx((x - y).mean())
            assert row["mean_variant"] == pytest.approx(x.mean())
        assert family["p_holm"].tolist() == pytest.approx(_holm_reference(family["p_value"].tolist()))
        assert (family["significant"] == (family["p_holm"] < 0.05)).all()
    swish = table[(table["variant"] == "swish") & (table["reference"] == "full")]
    assert set(swish["n"]) == {4 * N_CASES}       # pooled over both datasets and both folds
    saag = table[(table["variant"] == "saag") & (table["reference"] == "baseline")]
    # only fold 0 has metrics; unpaired: fold 1 of Dataset500 and Dataset990's baseline fold (datasets pooled)
    assert set(saag["n"]) == {N_CASES} and set(saag["n_unpaired"]) == {2 * N_CASES}
    ag = table[(table["variant"] == "ag") & (table["reference"] == "baseline") & (table["region"] == "WT")
               & (table["metric"] == "hd95")].iloc[0]
    assert (ag["n"], ag["n_unpaired"]) == (2 * N_CASES - 1, 1 + N_CASES)        # the NaN HD95 is unpaired


def test_holm_textbook_example():
    assert stats.holm([0.01, 0.04, 0.03, 0.005]).tolist() == pytest.approx([0.03, 0.06, 0.06, 0.02])
    adjusted = stats.holm([0.2, np.nan, 0.01])
    assert np.isnan(adjusted[1]) and adjusted[[0, 2]].tolist() == pytest.approx([0.2, 0.02])


def _tidy(values: dict[str, dict[int, list[float]]], metric: str = "dice", dataset: str = "Dataset500_X",
          region: str = "WT") -> pd.DataFrame:
    """A hand-built tidy table: variant -> fold -> per-case values of one metric and region."""
    rows = []
    for variant, folds in values.items():
        for fold, cases in folds.items():
            for i, value in enumerate(cases):
                rows.append(dict(dataset=dataset, trainer=trainer_name(variant_by_key(variant)), plans=PLANS,
                                 configuration=CONFIG, variant=variant, recipe="paper", fold=fold,
                                 case=f"c{fold}_{i}", region=region, **{"dice": np.nan, "hd95": np.nan, metric: value}))
    return pd.DataFrame(rows)


def test_wilcoxon_zero_differences_give_p_1_and_stay_in_the_family():
    rng = np.random.default_rng(5)
    base = rng.uniform(0.5, 0.9, 25).round(3)
    ag = (base + rng.normal(0.03, 0.05, 25)).round(3)
    res = (base + rng.normal(0.0, 0.05, 25)).round(3)
    table = stats.wilcoxon_tests(_tidy({"baseline": {0: list(base)}, "sa": {0: list(base)}, "ag": {0: list(ag)},
                                        "res": {0: list(res)}}))
    by = table.set_index("variant")
    assert by.at["sa", "p_value"] == 1.0 and by.at["sa", "statistic"] == 0.0 and by.at["sa", "n"] == 25
    for variant, values in (("ag", ag), ("res", res)):
        assert by.at[variant, "p_value"] == pytest.approx(sps.wilcoxon(values, base).pvalue, rel=1e-12)
    # Holm over all three tests, the p = 1 included (m = 3, not 2)
    assert table["p_holm"].tolist() == pytest.approx(_holm_reference(table["p_value"].tolist()))
    smallest = table["p_value"].idxmin()
    assert table.at[smallest, "p_holm"] == pytest.approx(min(1.0, 3 * table.at[smallest, "p_value"]))


def test_paired_differences_with_a_missing_fold_ties_and_nan():
    base = {0: [0.5, 0.6, 0.7, 0.8, 0.9], 1: [0.4, 0.5, 0.6, 0.7, 0.8]}
    # fold 1 absent for sa; tied magnitudes |0.1| and a zero difference; one NaN
    sa = {0: [0.6, 0.5, 0.8, 0.8, np.nan]}
    table = stats.wilcoxon_tests(_tidy({"baseline": base, "sa": sa}))
    (row,) = table.itertuples()
    x, y = np.array([0.6, 0.5, 0.8, 0.8]), np.array([0.5, 0.6, 0.7, 0.8])   # matched and not NaN, by hand
    assert (row.n, row.n_unpaired) == (4, 6)            # 5 cases of fold 1 + the NaN case
    expected = sps.wilcoxon(x, y)
    assert row.p_value == pytest.approx(expected.pvalue, rel=1e-12)
    assert row.statistic == pytest.approx(expected.statistic)
    assert row.mean_difference == pytest.approx((x - y).mean())
    assert row.mean_reference == pytest.approx(y.mean())


def test_switch_effects_use_matched_cases_only():
    # the variant with the switch misses fold 1, where the baseline did badly: unmatched means would
    # say +0.15 (better), the matched cases say -0.05 (worse)
    base = {0: [0.8] * 5, 1: [0.4] * 5}
    sa = {0: [0.75] * 5}
    effects = stats.switch_effects(_tidy({"baseline": base, "sa": sa}))
    (row,) = effects.itertuples()
    assert (row.switch, row.with_variant, row.without_variant) == ("spatial_attention", "sa", "baseline")
    unmatched = np.mean(sa[0]) - np.mean(base[0] + base[1])
    assert unmatched == pytest.approx(0.15)
    assert row.difference == pytest.approx(np.mean(np.array(sa[0]) - np.array(base[0])))
    assert row.difference == pytest.approx(-0.05)
    assert (row.n, row.n_unpaired) == (5, 5)


def test_switch_effects(built):
    truth, table = built["truth"], _read(built, "switch_effects.csv")
    table = table[(table["dataset"] == "Dataset500_BraTS2020") & (table["recipe"] == "paper")]
    expected_pairs = {("spatial_attention", "sa", "baseline"), ("attention_gate", "ag", "baseline"),
                      ("residual", "res", "baseline"), ("attention_gate", "saag", "sa"),
                      ("spatial_attention", "saag", "ag"), ("residual", "full", "saag"), ("swish", "swish", "full")}
    assert set(zip(table["switch"], table["with_variant"], table["without_variant"])) == expected_pairs
    for _, row in table.iterrows():
        with_, without = (trainer_name(variant_by_key(k)) for k in (row["with_variant"], row["without_variant"]))
        x, y = _paired(truth[truth["dataset"] == row["dataset"]], with_, without, row["region"], row["metric"])
        assert row["n"] == len(x)
        assert row["difference"] == pytest.approx((x - y).mean())


def test_bootstrap_ci(built):
    truth, table = built["truth"], _read(built, "bootstrap_ci.csv")
    n_runs = sum(len(t) for t in LAYOUT.values())
    assert len(table) == n_runs * 3 * 2
    for _, row in table.iterrows():
        values = _values(truth, row["dataset"], row["trainer"], row["region"], row["metric"])
        assert row["n"] == len(values)
        expected = sps.bootstrap((values,), np.mean, n_resamples=RESAMPLES, method="percentile",
                                 rng=np.random.default_rng(SEED)).confidence_interval
        assert [row["ci_low"], row["ci_high"]] == pytest.approx([expected.low, expected.high], rel=1e-12)
        assert row["ci_low"] <= row["mean"] <= row["ci_high"]


def test_brats_ranking(built):
    truth, table = built["truth"], _read(built, "ranking.csv")
    for dataset, trainers in LAYOUT.items():
        data = truth[truth["dataset"] == dataset]
        runs = sorted(trainers)
        ranks = {run: [] for run in runs}
        per_metric = {(run, m, r): [] for run in runs for m in ("dice", "hd95") for r in REGIONS}
        got = table[table["dataset"] == dataset].set_index("trainer")
        assert sorted(got.index) == runs
        for metric, sign in (("dice", -1), ("hd95", 1)):
            # items: (fold, case, region) that every run has a value for
            present = data.dropna(subset=[metric]).groupby(["fold", "case", "region"])["trainer"].agg(set)
            items = present[present.map(len) == len(runs)].index
            assert set(got[f"n_items_{metric}"]) == {len(items)}
            assert set(got[f"n_dropped_{metric}"]) == {len(present) - len(items)}
            for run in runs:
                assert got.at[run, f"lacks_{metric}"] == sum(run not in have for have in present)
            lookup = data.set_index(["fold", "case", "region", "trainer"])[metric]
            for item in items:
                values = [sign * lookup[(*item, run)] for run in runs]
                for run, rank in zip(runs, sps.rankdata(values)):
                    ranks[run].append(rank)
                    per_metric[(run, metric, item[2])].append(rank)
        expected_mean = {run: np.mean(r) for run, r in ranks.items()}
        for run in runs:
            assert got.at[run, "mean_rank"] == pytest.approx(expected_mean[run])
            assert got.at[run, "rank_hd95_ET"] == pytest.approx(np.mean(per_metric[(run, "hd95", "ET")]))
            assert got.at[run, "position"] == 1 + sum(v < expected_mean[run] for v in expected_mean.values())
    lacking = table[table["dataset"] == "Dataset500_BraTS2020"].set_index("trainer")
    assert lacking.at["nnUNetTrainerDRUwAS_SAAG", "lacks_dice"] == 3 * N_CASES        # fold 1 lacking
    assert lacking.loc["nnUNetTrainerDRUwAS_AG", ["lacks_dice", "lacks_hd95"]].tolist() == [0, 1]   # one NaN
    notes = (built["out"] / "notes.md").read_text()
    assert "BraTS ranking of Dataset500_BraTS2020 (10 runs), (fold, case, region) items ranked per metric: " \
           "Dice: 15 of 30; HD95: 15 of 30." in notes
    assert "nnUNetTrainerDRUwAS_AG__nnUNetPlans__3d_fullres (0/1)" in notes


def test_ranking_counts_items_per_metric_and_names_the_runs_that_dropped_them():
    dice = _tidy({"baseline": {0: [0.5, 0.6, 0.7], 1: [0.5, 0.6, 0.7]}, "sa": {0: [0.6, 0.6, 0.8]},
                  "ag": {0: [0.7, 0.5, 0.6], 1: [0.4, 0.6, 0.9]}})
    hd95 = dice.assign(hd95=dice["dice"] * 10, dice=dice["dice"])
    hd95.loc[(hd95["variant"] == "ag") & (hd95["case"] == "c0_0"), "hd95"] = np.nan
    ranking = stats.brats_ranking(hd95).set_index("variant")
    assert ranking["n_items_dice"].tolist() == [3] * 3 and ranking["n_dropped_dice"].tolist() == [3] * 3
    assert ranking["n_items_hd95"].tolist() == [2] * 3 and ranking["n_dropped_hd95"].tolist() == [4] * 3
    assert ranking.loc[["baseline", "sa", "ag"], "lacks_dice"].tolist() == [0, 3, 0]
    assert ranking.loc[["baseline", "sa", "ag"], "lacks_hd95"].tolist() == [0, 3, 1]
    # ranks of fold 0, by hand: Dice (higher better) c0_0: ag 1, sa 2, base 3; c0_1: base/sa tie 1.5, ag 3;
    # c0_2: sa 1, base 2, ag 3.  HD95 (lower better; c0_0 dropped) c0_1: ag 1, base/sa 2.5; c0_2: ag 1, base 2, sa 3
    expected = {"baseline": [3, 1.5, 2, 2.5, 2], "sa": [2, 1.5, 1, 2.5, 3], "ag": [1, 3, 3, 1, 1]}
    for variant, ranks in expected.items():
        assert ranking.at[variant, "mean_rank"] == pytest.approx(np.mean(ranks))
    (note,) = stats.ranking_notes(stats.brats_ranking(hd95))
    assert "Dice: 3 of 6; HD95: 2 of 6" in note
    assert "nnUNetTrainerDRUwAS_SA__nnUNetPlans__3d_fullres (3/3)" in note
    assert "nnUNetTrainerDRUwAS_AG__nnUNetPlans__3d_fullres (0/1)" in note
    assert "Baseline__" not in note


# --- options and errors --------------------------------------------------------------------

def test_year_override_and_exclude_incomplete(built, tmp_path, monkeypatch):
    for key, value in built["env"].items():
        if key.startswith("nnUNet_"):
            monkeypatch.setenv(key, value)
    tables = compile_tables(built["results"], tmp_path, year_overrides=parse_year_overrides(["990=2019"]),
                            exclude_incomplete=True, plots=False, n_resamples=99, echo=False)
    table3 = tables[3].frame
    _check_measured(table3, built["truth"], "Dataset990_Tiny", ["nnUNetTrainerDRUwAS_Baseline"])
    table1 = tables[1].frame
    assert not {"nnUNetTrainerDRUwAS_SAAG", "nnUNetTrainerDRUwAS_Res"} & set(table1["trainer"].dropna())
    assert any("Excluded incomplete run" in note and "SAAG" in note for note in tables[1].footnotes)
    assert parse_year_overrides(["Dataset500_BraTS2020=2019"]) == {"Dataset500_BraTS2020": 2019}
    with pytest.raises(DruwasError, match="DATASET=YEAR"):
        parse_year_overrides(["500"])


def test_no_results_writes_published_rows(tmp_path, monkeypatch, capsys):
    env = {k: v for k, v in os.environ.items() if not k.startswith("nnUNet_")}
    for key in ("nnUNet_raw", "nnUNet_preprocessed", "nnUNet_results"):
        monkeypatch.delenv(key, raising=False)
    (tmp_path / "empty").mkdir()
    proc = subprocess.run([sys.executable, "-m", "analysis.tables", "--out", str(tmp_path / "a")], env=env,
                          cwd=REPO, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert main(["--results", str(tmp_path / "empty")]) == 0
    for out in (tmp_path / "a", tmp_path / "empty" / "druwas_tables"):
        for number, count in ((1, 21), (2, 7), (3, 7), (4, 7)):
            table = pd.read_csv(out / f"table{number}.csv")
            assert len(table) == count and "measured" not in set(table["source"])
            assert (out / f"table{number}.tex").read_text().count(r"\textbf{") == 6
        assert pd.read_csv(out / "statistics.csv").empty
        assert not (out / "plots").exists()
    capsys.readouterr()
    assert main([]) == 2
    assert capsys.readouterr().err.startswith("error: no results folder")


def test_bad_metrics_csv_names_the_file(tmp_path):
    fold = tmp_path / "Dataset500_BraTS2020" / "nnUNetTrainerDRUwAS__nnUNetPlans__3d_fullres" / "fold_0"
    fold.mkdir(parents=True)
    pd.DataFrame({"case": ["a"], "region": ["WT"], "dice": [0.5]}).to_csv(fold / "brats_metrics.csv", index=False)
    with pytest.raises(DruwasError, match=r"fold_0/brats_metrics.csv: missing column\(s\) hd95"):
        collect(tmp_path, {500: 2020})
    pd.DataFrame({c: ["x"] for c in ("case", "dice", "hd95", "sensitivity", "specificity", "n_pred", "n_ref",
                                     "missing", "hd95_definition")}).assign(region="NCR").to_csv(
        fold / "brats_metrics.csv", index=False)
    with pytest.raises(DruwasError, match="unknown region"):
        collect(tmp_path, {500: 2020})
