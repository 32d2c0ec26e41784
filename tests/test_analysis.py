"""Tables, statistics and plots of `analysis/` against numbers computed independently here.

A results folder is built with known per-case metrics (several trainers, recipes, folds and
datasets, some runs incomplete); every number the analysis writes is recomputed from that
ground truth with numpy/scipy directly.
"""
from __future__ import annotations

import json
import os
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
from nnunetv2_druwas.variants import VARIANTS, trainer_name, variant_by_key

REPO = Path(__file__).resolve().parents[1]
REGIONS = ("WT", "TC", "ET")
METRICS = ("dice_wt", "dice_tc", "dice_et", "hd95_wt", "hd95_tc", "hd95_et")
CONFIG, PLANS = "3d_fullres", "nnUNetPlans"
N_CASES = 5          # cases per fold
SEED, RESAMPLES = 3, 999

# dataset -> (trainer -> folds with a brats_metrics.csv)
PAPER_TRAINERS = [trainer_name(v) for v in VARIANTS]
LAYOUT = {
    "Dataset500_BraTS2020": {**{t: (0, 1) for t in PAPER_TRAINERS}, "nnUNetTrainer": (0, 1),
                             trainer_name(variant_by_key("baseline"), "nnunet"): (0, 1),
                             trainer_name(variant_by_key("full"), "nnunet"): (0,),       # fold 1 absent
                             "nnUNetTrainerDRUwAS_SAAG": (0,)},                           # fold 1: checkpoint only
    "Dataset502_BraTS2018": {"nnUNetTrainerDRUwAS": (0, 1), "nnUNetTrainerDRUwASSwish": (0, 1)},
    "Dataset990_Tiny": {"nnUNetTrainerDRUwAS_Baseline": (0,)},
}
MISSING = ("Dataset500_BraTS2020", "nnUNetTrainerDRUwAS_Res", 1, "Dataset500_BraTS2020_11", "TC")


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
                                   missing=False)
                        if (dataset, trainer, fold, case, region) == MISSING:
                            row.update(dice=0.0, hd95=373.13, missing=True)
                        rows.append(row)
    return pd.DataFrame(rows)


def _write_results(root: Path) -> tuple[Path, dict[str, str], pd.DataFrame]:
    truth = _truth()
    results, raw = root / "results", root / "raw"
    # BraTS years: 2020 from nnUNet_raw, 2018 from the copy in the trainer folder, none for 990
    (raw / "Dataset500_BraTS2020").mkdir(parents=True)
    (raw / "Dataset500_BraTS2020" / "dataset.json").write_text(json.dumps({"brats_year": 2020}))
    for (dataset, trainer, fold), rows in truth.groupby(["dataset", "trainer", "fold"]):
        folder = results / dataset / f"{trainer}__{PLANS}__{CONFIG}" / f"fold_{fold}"
        folder.mkdir(parents=True)
        table = rows[["case", "region", "dice", "hd95", "missing"]].assign(
            sensitivity=0.9, specificity=0.99, n_pred=100, n_ref=100, hd95_definition="brats")
        table.to_csv(folder / "brats_metrics.csv", index=False)
        if dataset == "Dataset502_BraTS2018":
            (folder.parent / "dataset.json").write_text(json.dumps({"brats_year": 2018}))
    saag = results / "Dataset500_BraTS2020" / f"nnUNetTrainerDRUwAS_SAAG__{PLANS}__{CONFIG}" / "fold_1"
    saag.mkdir()
    (saag / "checkpoint_final.pth").write_bytes(b"")
    unevaluated = results / "Dataset500_BraTS2020" / f"nnUNetTrainerDRUwAS_AG_nnUNetRecipe__{PLANS}__{CONFIG}"
    (unevaluated / "fold_0").mkdir(parents=True)
    (unevaluated / "fold_0" / "checkpoint_final.pth").write_bytes(b"")
    env = dict(os.environ, nnUNet_raw=str(raw), nnUNet_preprocessed=str(root / "preprocessed"),
               nnUNet_results=str(results), MPLBACKEND="Agg")
    return results, env, truth


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """The results folder, run once through `python -m analysis.tables` (with plots)."""
    root = tmp_path_factory.mktemp("analysis")
    results, env, truth = _write_results(root)
    out = root / "tables"
    proc = subprocess.run([sys.executable, "-m", "analysis.tables", "--results", str(results), "--out", str(out),
                           "--seed", str(SEED), "--n-resamples", str(RESAMPLES)],
                          env=env, cwd=REPO, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    return dict(results=results, env=env, truth=truth, out=out, stdout=proc.stdout)


def _read(built, name: str) -> pd.DataFrame:
    return pd.read_csv(built["out"] / name, dtype={"case": str})


def _values(truth: pd.DataFrame, dataset: str, trainer: str, region: str, metric: str) -> np.ndarray:
    mask = (truth["dataset"] == dataset) & (truth["trainer"] == trainer) & (truth["region"] == region)
    return truth.loc[mask, metric].to_numpy(float)


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
        for column in METRICS:
            metric, region = column.split("_")
            values = _values(truth, dataset, row["trainer"], region.upper(), metric)
            assert row[column] == pytest.approx(values.mean(), rel=1e-12)
            assert row[f"{column}_std"] == pytest.approx(values.std(ddof=1), rel=1e-9)
            assert row[f"{column}_n"] == len(values)


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
    assert set(table3["source"]) == {"published", "paper"}          # Dataset990 has no BraTS year
    assert "Dataset990_Tiny has no brats_year" in built["stdout"]
    assert "nnUNetTrainer (measured: 3d_fullres)" in set(table1["method"])
    # the rows with missing predictions are kept in the mean (dice 0, hd95 373.13) and flagged
    res = table1[table1["trainer"] == "nnUNetTrainerDRUwAS_Res"].iloc[0]
    assert res["dice_tc_n"] == 2 * N_CASES and not res["complete"]
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
    expected = {(v.key, "paper") for v in VARIANTS} | {("baseline", "nnunet"), ("full", "nnunet")}
    assert set(zip(measured["variant"], measured["recipe"])) == expected
    assert "nnUNetTrainer" not in set(table4["trainer"].dropna())
    _check_measured(table4, truth, "Dataset500_BraTS2020", [trainer_name(variant_by_key(k), r) for k, r in expected])
    differences = table4[table4["source"] == "difference"]
    assert len(differences) == len(expected)
    for _, row in differences.iterrows():
        for column in METRICS:
            metric, region = column.split("_")
            values = _values(truth, "Dataset500_BraTS2020", row["trainer"], region.upper(), metric)
            assert row[column] == pytest.approx(values.mean() - paper.at[row["variant"], column], rel=1e-9)
    assert table4["table4_row"].is_monotonic_increasing


def test_footnotes_name_incomplete_runs_and_hd95(built):
    table1_md = (built["out"] / "table1.md").read_text()
    table4_md = (built["out"] / "table4.md").read_text()
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
    assert "Measured HD95 definition: brats." in table1_md
    assert "0.9121/0.9121/0.8583" in table1_md and "1.2261/1.33527/1.6837" in table4_md
    assert "0.9121" not in (built["out"] / "table2.md").read_text()
    marked = [line for line in table1_md.splitlines() if line.startswith("| ") and "\u2020" in line]
    assert len(marked) == 3
    runs = _read(built, "runs.csv").set_index("trainer")
    assert runs.loc["nnUNetTrainerDRUwAS_Baseline"].query("dataset == 'Dataset500_BraTS2020'")["complete"].all()


def test_latex_bolds_the_best_of_each_column(built):
    tex = (built["out"] / "table1.tex").read_text()
    table1 = _read(built, "table1.csv")
    assert r"\toprule" in tex and r"\midrule" in tex and r"\bottomrule" in tex
    rows = [line for line in tex.splitlines() if line.endswith(r"\\") and " & " in line][2:]   # skip headers
    assert len(rows) == len(table1)
    for k, column in enumerate(METRICS):
        cells = [row.split(" & ")[4 + k].removesuffix(r" \\") for row in rows]
        bold = [i for i, cell in enumerate(cells) if cell.startswith(r"\textbf{")]
        values = table1[column]
        best = values.max() if column.startswith("dice") else values.min()
        assert bold == list(np.flatnonzero(values.to_numpy() == best)), column
    swish = table1.index[(table1["trainer"] == "nnUNetTrainerDRUwASSwish")][0]
    assert rows[swish].split(" & ")[4].startswith(r"\textbf{")          # measured beats every published WT Dice
    assert table1.at[swish, "dice_wt"] > 0.9115


def test_plots_written(built):
    names = {p.name for p in (built["out"] / "plots").iterdir()}
    for stem in ("per_case_dice", "per_case_hd95", "switch_effects", "measured_vs_published"):
        assert {f"{stem}.png", f"{stem}.pdf"} <= names
        assert (built["out"] / "plots" / f"{stem}.png").stat().st_size > 1000


# --- statistics -----------------------------------------------------------------------------

def _paired(truth, variant_trainer, reference_trainer, region, metric):
    a = truth[(truth["trainer"] == variant_trainer) & (truth["region"] == region)]
    b = truth[(truth["trainer"] == reference_trainer) & (truth["region"] == region)]
    joined = a.merge(b, on=["dataset", "fold", "case"], suffixes=("_x", "_y"))
    return joined[f"{metric}_x"].to_numpy(float), joined[f"{metric}_y"].to_numpy(float)


def test_wilcoxon_and_holm(built):
    truth, table = built["truth"], _read(built, "statistics.csv")
    for recipe in ("paper", "nnunet"):
        family = table[table["recipe"] == recipe]
        pairs = [(v.key, "baseline") for v in VARIANTS[1:]] + [("swish", "full")] if recipe == "paper" \
            else [("full", "baseline")]
        assert len(family) == len(pairs) * 3 * 2
        for _, row in family.iterrows():
            x, y = _paired(truth, trainer_name(variant_by_key(row["variant"]), recipe),
                           trainer_name(variant_by_key(row["reference"]), recipe), row["region"], row["metric"])
            assert row["n"] == len(x)
            expected = sps.wilcoxon(x, y)
            assert row["p_value"] == pytest.approx(expected.pvalue, rel=1e-9)
            assert row["statistic"] == pytest.approx(expected.statistic)
            assert row["mean_difference"] == pytest.approx((x - y).mean())
        assert family["p_holm"].tolist() == pytest.approx(_holm_reference(family["p_value"].tolist()))
        assert (family["significant"] == (family["p_holm"] < 0.05)).all()
    swish = table[(table["variant"] == "swish") & (table["reference"] == "full")]
    assert set(swish["n"]) == {4 * N_CASES}       # pooled over both datasets and both folds
    saag = table[(table["variant"] == "saag")]
    assert set(saag["n"]) == {N_CASES}            # only fold 0 has metrics


def test_holm_textbook_example():
    assert stats.holm([0.01, 0.04, 0.03, 0.005]).tolist() == pytest.approx([0.03, 0.06, 0.06, 0.02])
    adjusted = stats.holm([0.2, np.nan, 0.01])
    assert np.isnan(adjusted[1]) and adjusted[[0, 2]].tolist() == pytest.approx([0.2, 0.02])


def test_bootstrap_ci(built):
    truth, table = built["truth"], _read(built, "bootstrap_ci.csv")
    n_runs = sum(len(t) for t in LAYOUT.values())
    assert len(table) == n_runs * 3 * 2
    for _, row in table.iterrows():
        values = _values(truth, row["dataset"], row["trainer"], row["region"], row["metric"])
        expected = sps.bootstrap((values,), np.mean, n_resamples=RESAMPLES, method="percentile",
                                 rng=np.random.default_rng(SEED)).confidence_interval
        assert [row["ci_low"], row["ci_high"]] == pytest.approx([expected.low, expected.high], rel=1e-12)
        assert row["ci_low"] <= row["mean"] <= row["ci_high"]


def test_brats_ranking(built):
    truth, table = built["truth"], _read(built, "ranking.csv")
    for dataset, trainers in LAYOUT.items():
        data = truth[truth["dataset"] == dataset]
        runs = sorted(trainers)
        # items every run has: (fold, case, region) present for all trainers
        items = data.groupby(["fold", "case", "region"])["trainer"].nunique()
        items = items[items == len(runs)].index
        ranks = {run: [] for run in runs}
        per_metric = {(run, m, r): [] for run in runs for m in ("dice", "hd95") for r in REGIONS}
        for metric, sign in (("dice", -1), ("hd95", 1)):
            lookup = data.set_index(["fold", "case", "region", "trainer"])[metric]
            for item in items:
                values = [sign * lookup[(*item, run)] for run in runs]
                for run, rank in zip(runs, sps.rankdata(values)):
                    ranks[run].append(rank)
                    per_metric[(run, metric, item[2])].append(rank)
        got = table[table["dataset"] == dataset].set_index("trainer")
        assert sorted(got.index) == runs
        expected_mean = {run: np.mean(r) for run, r in ranks.items()}
        for run in runs:
            assert got.at[run, "mean_rank"] == pytest.approx(expected_mean[run])
            assert got.at[run, "n_items"] == len(items) / 1
            assert got.at[run, "rank_hd95_ET"] == pytest.approx(np.mean(per_metric[(run, "hd95", "ET")]))
            assert got.at[run, "position"] == 1 + sum(v < expected_mean[run] for v in expected_mean.values())
    assert len(items) > 0


def test_switch_effects(built):
    truth, table = built["truth"], _read(built, "switch_effects.csv")
    table = table[(table["dataset"] == "Dataset500_BraTS2020") & (table["recipe"] == "paper")]
    expected_pairs = {("spatial_attention", "sa", "baseline"), ("attention_gate", "ag", "baseline"),
                      ("residual", "res", "baseline"), ("attention_gate", "saag", "sa"),
                      ("spatial_attention", "saag", "ag"), ("residual", "full", "saag"), ("swish", "swish", "full")}
    assert set(zip(table["switch"], table["with_variant"], table["without_variant"])) == expected_pairs
    for _, row in table.iterrows():
        with_, without = (trainer_name(variant_by_key(k)) for k in (row["with_variant"], row["without_variant"]))
        expected = (_values(truth, row["dataset"], with_, row["region"], row["metric"]).mean()
                    - _values(truth, row["dataset"], without, row["region"], row["metric"]).mean())
        assert row["difference"] == pytest.approx(expected)


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
