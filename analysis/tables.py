"""The paper's Tables 1-4, measured next to published, with statistics, figures and one report page.

Usage::

    python -m analysis.tables [--results DIR] [--out DIR] [--year-override 500=2020 ...]

``--results`` defaults to ``$nnUNet_results``; ``--out`` defaults to
``<results>/druwas_tables`` (it must be given when there is no results folder:
then only the published rows are written). Written to ``--out``:

- ``table1.csv`` .. ``table4.csv`` (+ ``.md`` and ``.tex``; ``tables.tex`` is a document that
  compiles all four with ``pdflatex``; how they are shown: :mod:`analysis.render`). Tables 1, 2, 3
  are BraTS 2020, 2018, 2019: the published rows, the paper's own rows, and one measured row per run
  (dataset x trainer x plans x configuration) on a dataset of that year: mean over all cases with
  the folds pooled, the sample standard deviation (``*_std``, ddof 1), the number of values
  (``*_n``), the cases (``n_cases``) and the folds (``folds``). Table 4 (BraTS 2020 ablation): the
  paper's seven rows, the measured DRUwAS variants of every recipe found, and ``measured - paper``
  rows (measured minus the paper's row of the same variant).
- ``per_case.csv`` (the tidy table every number comes from), ``runs.csv`` (what was found and
  whether it is complete), ``statistics.csv``, ``bootstrap_ci.csv``, ``ranking.csv``,
  ``switch_effects.csv`` (see :mod:`analysis.stats`), ``training_curves.csv`` (see
  :mod:`analysis.curves`), ``notes.md`` (what applies to no single table: datasets without a BraTS
  year, skipped folders, what the ranking dropped), the figures of :mod:`analysis.plots` under
  ``plots/`` and ``report.html`` (:mod:`analysis.report`: everything on one page).

Column ``year`` of the tables is the publication year; the BraTS release of a
measured row is ``brats_year``. Footnotes name incomplete runs (marked with a dagger),
the HD95 definition of the measured rows, and the paper's internal inconsistency, each
only in the tables whose rows it concerns.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import pandas as pd

from analysis.collect import RUN_KEYS, Collection, collect, parse_year_overrides
from analysis.display import hd95_unit, run_label, setting_label
from analysis.published import INCONSISTENCY_NOTE, METRIC_COLUMNS, TABLE_YEARS, published_rows
from analysis.render import DAGGER, DIFFERENCE, SOURCE_LABELS, Table, latex_document, to_latex, to_markdown
from nnunetv2_druwas import env
from nnunetv2_druwas.errors import DruwasError, report_errors
from nnunetv2_druwas.files import replaced_together
from nnunetv2_druwas.variants import variant_by_key

SOURCE_ORDER = {"published": 0, "paper": 1, "measured": 2, DIFFERENCE: 3}
STAT_COLUMNS = [f"{c}_{s}" for c in METRIC_COLUMNS for s in ("std", "n")]
PRINTED_COLUMNS = [f"{c}_printed" for c in METRIC_COLUMNS]
TABLE_COLUMNS = ["table", "method", "source", "reference", "year", "variant", "table4_row", "recipe", "dataset",
                 "brats_year", "trainer", "plans", "configuration", "complete", "issues", "n_cases", "folds",
                 *METRIC_COLUMNS, *STAT_COLUMNS, *PRINTED_COLUMNS]
INTEGER_COLUMNS = ["reference", "year", "table4_row", "brats_year", "n_cases",
                   *[c for c in STAT_COLUMNS if c.endswith("_n")]]


def measured_rows(collection: Collection) -> pd.DataFrame:
    """One row per run: mean, std and n of every metric column over cases with the folds pooled.

    Args:
        collection: what :func:`analysis.collect.collect` found.
    """
    per_case = collection.per_case
    if per_case.empty:
        return pd.DataFrame(columns=[c for c in TABLE_COLUMNS if c != "table"])
    stats = per_case.groupby([*RUN_KEYS, "region"])[["dice", "hd95"]].agg(["mean", "std", "count"])
    wide = stats.unstack("region")
    suffix = {"mean": "", "std": "_std", "count": "_n"}
    wide.columns = [f"{metric}_{region.lower()}{suffix[stat]}" for metric, stat, region in wide.columns]
    for column in [*METRIC_COLUMNS, *STAT_COLUMNS]:
        if column not in wide:
            wide[column] = np.nan
    wide["n_cases"] = per_case.drop_duplicates([*RUN_KEYS, "fold", "case"]).groupby(RUN_KEYS).size()
    rows = collection.runs.merge(wide.reset_index(), on=RUN_KEYS, how="inner")
    rows["source"] = "measured"
    rows["table4_row"] = rows["variant"].map(lambda k: variant_by_key(k).table4_row if isinstance(k, str) else None)
    rows["reference"] = pd.NA
    rows["year"] = pd.NA
    several = rows.groupby("brats_year", dropna=False)["dataset"].transform("nunique") > 1
    rows["method"] = [f"{run_label(row['variant'], row['trainer'])} ("
                      f"{setting_label(row['recipe'], row['configuration'], row['plans'], row['dataset'] if many else None)})"
                      for (_, row), many in zip(rows.iterrows(), several)]
    for column in STAT_COLUMNS:
        if column.endswith("_n"):
            rows[column] = rows[column].fillna(0).astype(int)
    return rows


def _difference_rows(measured: pd.DataFrame, paper: pd.DataFrame) -> pd.DataFrame:
    reference = paper.set_index("variant")[list(METRIC_COLUMNS)]
    rows = measured[measured["variant"].isin(reference.index)].copy()
    rows[list(METRIC_COLUMNS)] = rows[list(METRIC_COLUMNS)].to_numpy(float) - \
        reference.loc[rows["variant"]].to_numpy(float)
    rows[[c for c in STAT_COLUMNS if c.endswith("_std")]] = np.nan
    rows["source"] = DIFFERENCE
    return rows


def _run_path(row) -> str:
    return f"{row.dataset}/{row.trainer}__{row.plans}__{row.configuration}"


def _footnotes(number: int, measured: pd.DataFrame, collection: Collection) -> list[str]:
    """The notes of one table: only those about its own rows (and runs of its year left out of it)."""
    notes = []
    if not measured.empty:
        notes.append("Measured rows (this harness): mean over all cases of the folds shown (pooled), with the "
                     "sample standard deviation (ddof 1) under it; n = cases per mean (a cell over fewer values "
                     "says n=...).")
        for row in measured[~measured["complete"].astype(bool)].itertuples():
            notes.append(f"{DAGGER} Incomplete run {_run_path(row)}: {row.issues}.")
        runs = measured[RUN_KEYS].drop_duplicates()
        definitions = sorted(collection.per_case.merge(runs, on=RUN_KEYS)["hd95_definition"].dropna()
                             .astype(str).unique())
        if len(definitions) == 1:
            notes.append(f"Measured HD95 definition: {definitions[0]}.")
        elif definitions:
            notes.append(f"Measured rows mix HD95 definitions ({'; '.join(definitions)}): compare with care.")
    year = collection.runs["brats_year"] == TABLE_YEARS[number]
    unevaluated = collection.runs[year.fillna(False).astype(bool) & (collection.runs["folds"] == "")]
    if number == 4:
        unevaluated = unevaluated[unevaluated["variant"].notna()]
    for row in unevaluated.itertuples():
        notes.append(f"Run {_run_path(row)} has no evaluated fold and is not in the table: {row.issues}.")
    printed = "the paper's rows" if number == 4 else "published and the paper's rows"
    best = f"Bold: the best value of a column (highest Dice, lowest HD95) among {printed}"
    notes.append(best + (", and separately among the complete measured rows (at the printed precision); "
                         f"{DAGGER} runs are never bold." if not measured.empty else "."))
    if number == 4:
        if not measured.empty:
            notes.append(f"{SOURCE_LABELS[DIFFERENCE]}: a measured row minus the paper's row of the same variant (other data "
                         "splits; the paper does not state its HD95 protocol).")
        notes.append("The paper's values are printed as the paper prints them; it does not state its HD95 "
                     "protocol.")
    else:
        notes.append("Published and the paper's values are printed as their source prints them (Dice printed "
                     "in percent as fractions); each source's HD95 protocol is its own, and the paper does not "
                     "state them.")
    if number in (1, 4):
        notes.append(INCONSISTENCY_NOTE)
    return notes


def build_tables(collection: Collection) -> dict[int, Table]:
    """Tables 1-4 from the transcribed rows and what was measured.

    Args:
        collection: what :func:`analysis.collect.collect` found (may be empty).
    """
    published = published_rows()
    measured = measured_rows(collection)
    tables = {}
    for number, year in TABLE_YEARS.items():
        rows = measured[measured["brats_year"] == year] if not measured.empty else measured
        if number == 4:
            rows = rows[rows["variant"].notna()]
            paper = published[published["table"] == 4]
            parts = [paper, rows, _difference_rows(rows, paper)]
            sort = ["table4_row", "order", "recipe", "configuration", "dataset"]
        else:
            parts = [published[published["table"] == number], rows]
            sort = ["order", "table4_row", "trainer", "configuration", "dataset"]
        frame = pd.concat([p for p in parts if not p.empty], ignore_index=True)
        frame = frame.reindex(columns=TABLE_COLUMNS).assign(table=number)
        frame["order"] = frame["source"].map(SOURCE_ORDER)
        # published rows keep the paper's order: the stable sort only moves measured/difference rows
        frame = frame.sort_values(sort, kind="stable", na_position="last").drop(columns="order")
        frame = frame.astype({column: "Int64" for column in INTEGER_COLUMNS})
        tables[number] = Table(number, frame.reset_index(drop=True), _footnotes(number, rows, collection),
                               hd95_unit(collection.per_case[collection.per_case["brats_year"] == year]))
    return tables


# --- writing -------------------------------------------------------------------------------

def compile_tables(results: Path | str | None, out: Path | str, *, year_overrides: dict | None = None,
                   exclude_incomplete: bool = False, plots: bool = True, seed: int = 0, n_resamples: int = 9999,
                   echo: bool = True) -> dict[int, Table]:
    """Collect, build Tables 1-4, compute the statistics, draw the figures, write everything and the report.

    Every file is replaced together with the others (:func:`nnunetv2_druwas.files.replaced_together`):
    after an error the previous outputs stay as they were.

    Args:
        results: the nnU-Net results folder; None for published rows only.
        out: output folder (created).
        year_overrides: dataset id or folder name -> BraTS year, winning over dataset.json.
        exclude_incomplete: drop incomplete runs (named in a footnote) instead of marking them.
        plots: draw the PNG/PDF figures (needs measured rows).
        seed: seed of the bootstrap.
        n_resamples: bootstrap resamples per interval.
        echo: print the Markdown tables and notes to stdout.
    """
    from analysis import curves as training, stats
    from analysis.report import build_report

    collection = collect(results, year_overrides)
    dropped = collection.runs[~collection.runs["complete"].astype(bool)]
    if exclude_incomplete and not dropped.empty:
        keep = collection.runs["complete"].astype(bool)
        collection = Collection(collection.per_case[collection.per_case["complete"].astype(bool)],
                                collection.runs[keep], collection.notes)
    tables = build_tables(collection)
    if exclude_incomplete:
        for table in tables.values():
            table.footnotes += [f"Excluded incomplete run {_run_path(r)}: {r.issues}." for r in dropped.itertuples()]
    out = Path(out)
    per_case = collection.per_case
    statistics = stats.wilcoxon_tests(per_case)
    ranking = stats.brats_ranking(per_case)
    effects = stats.switch_effects(per_case)
    intervals = stats.bootstrap_ci(per_case, seed=seed, n_resamples=n_resamples)
    curves, curve_notes = training.training_curves(results, collection.runs)
    notes = collection.notes + curve_notes + stats.ranking_notes(ranking)
    shown = [("wilcoxon", "Paired Wilcoxon signed-rank tests (statistics.csv): matched (dataset, fold, case) "
              "pairs, Holm-corrected per recipe, plans and configuration", statistics.drop(
                  columns=["mean_variant", "mean_reference", "median_difference", "statistic"])),
             ("switches", "Switch effects (switch_effects.csv): mean paired difference, with minus without, over "
              "the matched cases", effects),
             ("ranking", "BraTS ranking (ranking.csv): mean rank over the items every run has; lacks = items a "
              "run has no value for", ranking[[c for c in ranking.columns if not c.startswith("rank_")]]),
             ("bootstrap", "Bootstrap 95 % confidence intervals of each run's mean (bootstrap_ci.csv), cases of "
              "all folds pooled", intervals)]
    with replaced_together() as group:   # every output new, or (after an error) every one as it was
        group.makedirs(out)
        for number, table in tables.items():
            group.write_text(out / f"table{number}.csv", table.frame.to_csv(index=False))
            group.write_text(out / f"table{number}.md", to_markdown(table))
            group.write_text(out / f"table{number}.tex", to_latex(table))
        group.write_text(out / "tables.tex", latex_document([rf"\input{{table{number}}}" for number in tables]))
        for name, frame in (("per_case", per_case), ("runs", collection.runs), ("statistics", statistics),
                            ("bootstrap_ci", intervals), ("ranking", ranking), ("switch_effects", effects),
                            ("training_curves", curves)):
            group.write_text(out / f"{name}.csv", frame.to_csv(index=False))
        group.write_text(out / "notes.md", "# Notes\n\n" + "".join(f"- {note}\n" for note in notes or ["none"]))
        figures = {}
        if plots and not per_case.empty:
            from analysis.plots import draw_all
            figures = draw_all(per_case, tables[4].frame, effects, training.continuation_curves(curves),
                               out / "plots", group)
        group.write_text(out / "report.html", build_report(
            tables, shown, notes, figures, str(results) if results is not None else "(no results folder)"))
    if echo:
        for table in tables.values():
            print(to_markdown(table))
        for note in notes:
            print(f"note: {note}")
        print(f"written to {out} (everything on one page: {out / 'report.html'})")
    return tables


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--results", type=Path, default=None,
                        help="nnU-Net results folder (default: $nnUNet_results)")
    parser.add_argument("--out", type=Path, default=None, help="output folder (default: <results>/druwas_tables)")
    parser.add_argument("--year-override", nargs="+", action="extend", default=[], metavar="DATASET=YEAR",
                        help="BraTS year of a dataset (id or folder name), e.g. 500=2020; wins over dataset.json")
    parser.add_argument("--exclude-incomplete", action="store_true",
                        help="leave incomplete runs out of every table (they are named in a footnote)")
    parser.add_argument("--no-plots", action="store_true", help="skip the PNG/PDF figures")
    parser.add_argument("--seed", type=int, default=0, help="seed of the bootstrap confidence intervals")
    parser.add_argument("--n-resamples", type=int, default=9999, help="bootstrap resamples per interval")


def run(args: argparse.Namespace) -> int:
    results = args.results or (Path(env.value("nnUNet_results")) if env.value("nnUNet_results") else None)
    out = args.out or (results / "druwas_tables" if results is not None else None)
    if out is None:
        raise DruwasError("no results folder: pass --results DIR (or set nnUNet_results), or --out DIR to write "
                          "the published rows only")
    compile_tables(results, out, year_overrides=parse_year_overrides(args.year_override),
                   exclude_incomplete=args.exclude_incomplete, plots=not args.no_plots, seed=args.seed,
                   n_resamples=args.n_resamples)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m analysis.tables", description=__doc__.split("\n")[0])
    add_arguments(parser)
    args = parser.parse_args(argv)
    return report_errors(lambda: run(args))


if __name__ == "__main__":
    sys.exit(main())
