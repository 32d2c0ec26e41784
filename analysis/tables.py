"""The paper's Tables 1-4, measured next to published, with statistics, figures and one report page.

Usage::

    python -m analysis.tables [--results DIR] [--out DIR] [--protocol NAME] [--compare-protocols NAME ...]
                              [--year-override 500=2020 ...]

``--results`` defaults to ``$nnUNet_results``; ``--out`` defaults to
``<results>/druwas_tables`` (it must be given when there is no results folder:
then only the published rows are written). ``--protocol`` (default ``brats``) is the evaluation
protocol of every measured number (:data:`nnunetv2_druwas.evaluation.protocols.PROTOCOLS`): each
fold's ``<protocol>_metrics.csv`` is read, and a fold that lacks it is scored from its saved
``validation/`` predictions and the file cached in the fold (:func:`analysis.collect.collect`).
Written to ``--out``:

- ``table1.csv`` .. ``table4.csv`` (+ ``.md`` and ``.tex``; ``tables.tex`` is a document that
  compiles them all with ``pdflatex``; how they are shown: :mod:`analysis.render`). Tables 1, 2, 3
  are BraTS 2020, 2018, 2019: the published rows, the paper's own rows, and one measured row per
  trainer (dataset x trainer x plans x configuration; its repeats ``<trainer>_repeat<k>`` together)
  on a dataset of that year, then the reference rows (nnU-Net's own trainers, labelled by
  :func:`nnunetv2_druwas.variants.reference_label`, and reference variants: no Table 4 row). A
  measured row's value is the mean over its repeats of the run means (one run: the mean over all
  cases with the folds pooled), with the sample standard deviation over cases (``*_std``, ddof 1,
  of the per-case values averaged over repeats), the between-repeat standard deviation of the run
  means (``*_repeat_std``, NaN for one repeat), the number of values (``*_n``), the cases
  (``n_cases``), the folds (``folds``) and the repeats (``repeats``). Table 4 (BraTS 2020 ablation):
  the paper's seven rows, the measured DRUwAS variants of every recipe found, ``measured - paper``
  rows (measured minus the paper's row of the same variant), and the reference rows below them.
- ``table4b.csv`` (+ ``.md``, ``.tex``): each measured ablation variant minus the baseline and
  minus nnU-Net (:func:`analysis.stats.comparable` says which nnU-Net run) of the same dataset,
  recipe, plans and configuration: the mean paired difference over the matched (fold, case) items of
  the per-case values averaged over repeats.
- Run-to-run noise: a difference (``measured - paper``, ``variant - baseline``, ``variant -
  nnU-Net``) whose magnitude is smaller than :data:`NOISE_FACTOR` times the between-repeat standard
  deviation is marked (``*_noise``, the mark of :data:`analysis.render.NOISE_MARK`). The standard
  deviation (``*_repeat_std`` of a difference row) is that of the measured row, or for two rows the
  larger of theirs; a row trained once has none, so a difference involving it is never marked.
- ``protocols.csv`` (+ ``.md``, ``.tex``; :mod:`analysis.protocol_table`): every measured row and
  region under every protocol of ``--compare-protocols`` (default: all; each scored on demand,
  failures noted) side by side, with each HD95's ratio to ``brats``'s.
- ``per_case.csv`` (the tidy table every number comes from), ``runs.csv`` (every run and repeat
  found and whether it is complete), ``statistics.csv``, ``bootstrap_ci.csv``, ``ranking.csv``,
  ``switch_effects.csv`` (see :mod:`analysis.stats`), ``training_curves.csv`` (see
  :mod:`analysis.curves`), ``notes.md`` (what applies to no single table: datasets without a BraTS
  year, skipped folders, what the ranking dropped), the figures of :mod:`analysis.plots` under
  ``plots/`` and ``report.html`` (:mod:`analysis.report`: everything on one page).

Column ``year`` of the tables is the publication year; the BraTS release of a
measured row is ``brats_year``. Footnotes name incomplete runs (marked with a dagger),
the protocol and HD95 definition of the measured rows, repeats, the noise marking and the paper's
internal inconsistency, each only in the tables whose rows it concerns.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import pandas as pd

from analysis.collect import ROW_KEYS, RUN_KEYS, Collection, collect, parse_year_overrides
from analysis.display import ablation_row, hd95_unit, run_label, setting_label
from analysis.published import INCONSISTENCY_NOTE, METRIC_COLUMNS, TABLE_YEARS, published_rows
from analysis.render import (BASELINE_DIFFERENCE, DAGGER, DIFFERENCE, DIFFERENCES, NOISE_MARK, REFERENCE_DIFFERENCE,
                             SOURCE_LABELS, Table, latex_document, sheet, to_latex, to_markdown)
from nnunetv2_druwas import env
from nnunetv2_druwas.errors import DruwasError, report_errors
from nnunetv2_druwas.evaluation.protocols import DEFAULT_PROTOCOL, PROTOCOLS
from nnunetv2_druwas.files import replaced_together

SOURCE_ORDER = {"published": 0, "paper": 1, "measured": 2, DIFFERENCE: 3, BASELINE_DIFFERENCE: 4,
                REFERENCE_DIFFERENCE: 5}
#: A difference smaller than this many between-repeat standard deviations is within run-to-run noise.
NOISE_FACTOR = 2
STAT_COLUMNS = [f"{c}_{s}" for c in METRIC_COLUMNS for s in ("std", "n", "repeat_std", "noise")]
PRINTED_COLUMNS = [f"{c}_printed" for c in METRIC_COLUMNS]
TABLE_COLUMNS = ["table", "method", "source", "compared_with", "reference", "year", "variant", "table4_row", "recipe",
                 "protocol", "dataset", "brats_year", "trainer", "plans", "configuration", "complete", "issues",
                 "n_cases", "folds", "repeats", *METRIC_COLUMNS, *STAT_COLUMNS, *PRINTED_COLUMNS]
INTEGER_COLUMNS = ["reference", "year", "table4_row", "brats_year", "n_cases", "repeats",
                   *[c for c in STAT_COLUMNS if c.endswith("_n")]]


def _metric_wide(frame: pd.DataFrame, keys: list[str], how: str) -> pd.DataFrame:
    """keys x ``<metric>_<region>`` of one aggregate (``mean``, ``std``, ``count``) of dice and hd95."""
    wide = frame.groupby([*keys, "region"])[["dice", "hd95"]].agg(how).unstack("region")
    wide.columns = [f"{metric}_{region.lower()}" for metric, region in wide.columns]
    return wide.reindex(columns=list(METRIC_COLUMNS))


def measured_rows(collection: Collection) -> pd.DataFrame:
    """One row per trainer (its repeats together): mean over repeats of the run means, the standard
    deviations and counts of the module docstring.

    Args:
        collection: what :func:`analysis.collect.collect` found.
    """
    from analysis.stats import over_repeats

    per_case = collection.per_case
    if per_case.empty:
        return pd.DataFrame(columns=[c for c in TABLE_COLUMNS if c != "table"])
    runs = collection.runs.set_index(RUN_KEYS)
    run_means = _metric_wide(per_case, RUN_KEYS, "mean").join(runs["base_trainer"]).reset_index()
    by_row = run_means.groupby(ROW_KEYS)[list(METRIC_COLUMNS)]
    pooled = over_repeats(per_case).rename(columns={"trainer": "base_trainer"})
    wide = by_row.mean().join(by_row.std(ddof=1).add_suffix("_repeat_std"))
    wide = wide.join(_metric_wide(pooled, ROW_KEYS, "std").add_suffix("_std"))
    wide = wide.join(_metric_wide(pooled, ROW_KEYS, "count").fillna(0).astype(int).add_suffix("_n"))
    wide["n_cases"] = pooled.drop_duplicates([*ROW_KEYS, "fold", "case"]).groupby(ROW_KEYS).size()
    wide["repeats"] = run_means.groupby(ROW_KEYS).size()
    members = collection.runs.groupby(ROW_KEYS)
    described = members[["dataset_id", "brats_year", "variant", "recipe", "protocol"]].first()
    described["complete"] = members["complete"].all()
    described["issues"] = members.apply(lambda g: "; ".join(f"{t}: {i}" if len(g) > 1 else i for t, i in
                                                           zip(g["trainer"], g["issues"]) if i), include_groups=False)
    described["folds"] = members["folds"].agg(lambda f: ",".join(map(str, sorted({int(x) for v in f
                                                                                  for x in v.split(",") if x}))))
    rows = described.join(wide, how="inner").reset_index().rename(columns={"base_trainer": "trainer"})
    rows["source"] = "measured"
    rows["table4_row"] = rows["variant"].map(ablation_row)
    rows["reference"] = pd.NA
    rows["year"] = pd.NA
    several = rows.groupby("brats_year", dropna=False)["dataset"].transform("nunique") > 1
    rows["method"] = [f"{run_label(row['variant'], row['trainer'], row['plans'])} ("
                      f"{setting_label(row['recipe'], row['configuration'], row['plans'], row['dataset'] if many else None)})"
                      for (_, row), many in zip(rows.iterrows(), several)]
    return rows


def within_noise(difference, std) -> np.ndarray:
    """True where ``|difference| < NOISE_FACTOR * std`` (never where either is NaN).

    Args:
        difference: differences (array-like).
        std: the between-repeat standard deviations they are compared with (array-like, NaN: unknown).
    """
    difference, std = np.asarray(difference, float), np.asarray(std, float)
    with np.errstate(invalid="ignore"):
        return np.abs(difference) < NOISE_FACTOR * std


def _difference_rows(measured: pd.DataFrame, paper: pd.DataFrame) -> pd.DataFrame:
    """measured - paper for every measured row of a variant the paper has, marked against its repeats."""
    reference = paper.set_index("variant")[list(METRIC_COLUMNS)]
    rows = measured[measured["variant"].isin(reference.index)].copy()
    rows[list(METRIC_COLUMNS)] = rows[list(METRIC_COLUMNS)].to_numpy(float) - \
        reference.loc[rows["variant"]].to_numpy(float)
    for column in METRIC_COLUMNS:
        rows[f"{column}_std"] = np.nan
        rows[f"{column}_noise"] = within_noise(rows[column], rows[f"{column}_repeat_std"])
    rows["source"] = DIFFERENCE
    return rows


def comparison_rows(collection: Collection, measured: pd.DataFrame) -> pd.DataFrame:
    """Table 4b's rows: each ablation variant minus the baseline and minus nnU-Net, per dataset, recipe,
    plans and configuration, on the matched cases of the per-case values averaged over repeats.

    Args:
        collection: the runs of Table 4 (one BraTS year).
        measured: :func:`measured_rows` of the same collection (their repeat standard deviations and
            completeness).
    """
    from analysis import stats

    columns = [c for c in TABLE_COLUMNS if c != "table"]
    if measured.empty:
        return pd.DataFrame(columns=columns)
    pairs = stats.baseline_pairs() + stats.reference_pairs()
    differences = pd.DataFrame(stats.paired_differences(stats.comparable(stats.over_repeats(collection.per_case)),
                                                        ["dataset", *stats.GROUP_KEYS], pairs))
    if differences.empty:
        return pd.DataFrame(columns=columns)
    lookup = measured.set_index(["dataset", "trainer", "plans", "configuration"])
    rows = []
    for keys, group in differences.groupby(["dataset", *stats.GROUP_KEYS, "variant", "reference"], sort=False,
                                           dropna=False):
        first = group.iloc[0]
        sides = [lookup.loc[(first["dataset"], trainer, first["plans"], first["configuration"])]
                 for trainer in (first["variant_trainer"], first["reference_trainer"])]
        reference = first["reference"]
        row = dict(zip(["dataset", *stats.GROUP_KEYS, "variant", "reference_key"], keys),
                   trainer=first["variant_trainer"], protocol=collection.protocol,
                   source=BASELINE_DIFFERENCE if reference == "baseline" else REFERENCE_DIFFERENCE,
                   compared_with="baseline" if reference == "baseline" else
                   run_label(None if reference == stats.NNUNET_DEFAULT else reference, first["reference_trainer"],
                             stats.NNUNET_DEFAULT_PLANS if reference == stats.NNUNET_DEFAULT else first["plans"]),
                   complete=bool(sides[0]["complete"] and sides[1]["complete"]),
                   issues="; ".join(filter(None, (sides[0]["issues"], sides[1]["issues"]))),
                   n_cases=int(group["n"].max()), repeats=sides[0]["repeats"],
                   folds=",".join(map(str, sorted({int(f) for v in group["folds"] for f in v.split(",")}))))
        for item in group.itertuples():
            column = f"{item.metric}_{item.region.lower()}"
            spreads = [side[f"{column}_repeat_std"] for side in sides]    # unknown for a row trained once
            std = np.nan if any(pd.isna(spread) for spread in spreads) else max(spreads)
            row.update({column: item.mean_difference, f"{column}_n": item.n, f"{column}_repeat_std": std,
                        f"{column}_noise": bool(within_noise(item.mean_difference, std))})
        rows.append(row)
    frame = pd.DataFrame(rows).drop(columns="reference_key")
    frame["table4_row"] = frame["variant"].map(ablation_row)
    return frame.reindex(columns=columns)


def _run_path(row) -> str:
    return f"{row.dataset}/{row.trainer}__{row.plans}__{row.configuration}"


def _shown_runs(measured: pd.DataFrame, collection: Collection, year: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(the runs of ``year``, those of them that are in the measured rows)."""
    runs = collection.runs[(collection.runs["brats_year"] == year).fillna(False).astype(bool)]
    if measured.empty:
        return runs, runs.iloc[:0]
    keys = measured.rename(columns={"trainer": "base_trainer"})[ROW_KEYS].drop_duplicates()
    return runs, runs.merge(keys, on=ROW_KEYS, how="inner")


def _measured_notes(measured: pd.DataFrame, collection: Collection, shown: pd.DataFrame) -> list[str]:
    """Protocol, repeats and HD95 definition of measured rows (shared by every table that has them)."""
    protocol = PROTOCOLS[collection.protocol]
    notes = [f"Measured rows scored under the {protocol.name} protocol ({protocol.description}); HD95 in "
             f"{protocol.hd95_unit}."]
    if (measured["repeats"].fillna(1) > 1).any():
        notes.append("\u00d7R: the row pools R repeated trainings (<trainer>_repeat<k>, each in runs.csv): its value "
                     "is the mean over the repeats of their means, and in Tables 1-4 the value under it the "
                     "between-repeat standard deviation (ddof 1) of those means.")
    definitions = sorted(collection.per_case.merge(shown[RUN_KEYS], on=RUN_KEYS)["hd95_definition"].dropna()
                         .astype(str).replace("", np.nan).dropna().unique())
    if len(definitions) == 1:
        notes.append(f"Measured HD95 definition: {definitions[0]}.")
    elif definitions:
        notes.append(f"Measured rows mix HD95 definitions ({'; '.join(definitions)}): compare with care.")
    return notes


NOISE_NOTE = (f"{NOISE_MARK} within run-to-run noise: |difference| < {NOISE_FACTOR} \u00d7 the between-repeat standard "
              "deviation of the row's run means (of two rows: the larger of the two); a row trained once has no such "
              "standard deviation, so a difference involving it is never marked.")


def _footnotes(number: int, measured: pd.DataFrame, collection: Collection, marked: bool = False) -> list[str]:
    """The notes of one of Tables 1-4: only those about its own rows (and runs of its year left out of it).

    Args:
        number: 1-4.
        measured: the table's measured rows.
        collection: what was collected.
        marked: some difference of the table is within run-to-run noise.
    """
    notes = []
    runs, shown = _shown_runs(measured, collection, TABLE_YEARS[number])
    if not measured.empty:
        notes.append("Measured rows (this harness): mean over all cases of the folds shown (pooled), with the "
                     "sample standard deviation (ddof 1) under it; n = cases per mean (a cell over fewer values "
                     "says n=...).")
        notes += _measured_notes(measured, collection, shown)
        for row in shown[~shown["complete"].astype(bool)].itertuples():
            notes.append(f"{DAGGER} Incomplete run {_run_path(row)}: {row.issues}.")
        if measured["table4_row"].isna().any():
            notes.append("Reference rows (last): nnU-Net's own trainers (nnU-Net (default): nnUNetTrainer with "
                         "nnUNetPlans; ResEnc: its residual-encoder plans) and reference variants (nnU-Net's "
                         "network under a DRUwAS recipe) on the same folds, scored the same way.")
    missing = runs[runs["folds"] == ""].merge(shown[ROW_KEYS].drop_duplicates(), on=ROW_KEYS, how="left",
                                              indicator=True)
    for row in missing[missing["_merge"] == "left_only"].itertuples():
        notes.append(f"Run {_run_path(row)} has no evaluated fold and is not in the table: {row.issues}.")
    printed = "the paper's rows" if number == 4 else "published and the paper's rows"
    best = f"Bold: the best value of a column (highest Dice, lowest HD95) among {printed}"
    notes.append(best + (", and separately among the complete measured rows (at the printed precision); "
                         f"{DAGGER} runs are never bold." if not measured.empty else "."))
    if number == 4:
        if not measured.empty:
            protocol = PROTOCOLS[collection.protocol]
            unit = f"; its HD95 is in {protocol.hd95_unit}" if protocol.hd95_unit != "mm" else ""
            notes.append(f"{SOURCE_LABELS[DIFFERENCE]}: a measured row minus the paper's row of the same variant (other "
                         f"data splits; measured under the {protocol.name} protocol{unit}, while the paper does not "
                         "state its protocol, so the two may come from different protocols: protocols.csv shows the "
                         "same predictions under every protocol).")
        if marked:
            notes.append(NOISE_NOTE)
        notes.append("The paper's values are printed as the paper prints them; it does not state its HD95 "
                     "protocol.")
    else:
        notes.append("Published and the paper's values are printed as their source prints them (Dice printed "
                     "in percent as fractions); each source's HD95 protocol is its own, and the paper does not "
                     "state them.")
    if number in (1, 4):
        notes.append(INCONSISTENCY_NOTE)
    return notes


def _comparison_footnotes(rows: pd.DataFrame, measured: pd.DataFrame, collection: Collection) -> list[str]:
    """The notes of Table 4b."""
    if rows.empty:
        return ["No measured ablation variant has a baseline or an nnU-Net run to compare with on the same folds."]
    _, shown = _shown_runs(measured, collection, TABLE_YEARS[4])
    notes = ["Each cell: the mean over the (fold, case) items both rows have a value for of the paired difference "
             "(per-case values averaged over each row's repeats); n = those items (a cell over fewer says n=...).",
             *_measured_notes(rows, collection, shown)]
    if (~rows["complete"].astype(bool)).any():
        notes.append(f"{DAGGER} One of the two rows is incomplete (its runs are named under Table 4).")
    notes.append("nnU-Net: the reference variant of the same recipe, plans and configuration (only the network "
                 "differs) where there is one, else nnU-Net's default run (nnUNetTrainer, nnUNetPlans, the same "
                 "configuration: network and training recipe differ); statistics.csv holds the paired Wilcoxon "
                 "tests of the same comparisons.")
    notes.append(NOISE_NOTE)
    return notes


def _table_unit(collection: Collection, year: int) -> str:
    """The HD95 unit of a table's header: mm, or the measured rows' unit beside the published mm."""
    unit = hd95_unit(collection.per_case[collection.per_case["brats_year"] == year])
    return unit if unit == "mm" else f"mm; measured: {unit}"


def build_tables(collection: Collection) -> dict[int | str, Table]:
    """Tables 1-4 and 4b from the transcribed rows and what was measured.

    Args:
        collection: what :func:`analysis.collect.collect` found (may be empty).
    """
    published = published_rows()
    measured = measured_rows(collection)
    tables = {}
    for number, year in TABLE_YEARS.items():
        rows = measured[measured["brats_year"] == year] if not measured.empty else measured
        marked = False
        if number == 4:
            paper = published[published["table"] == 4]
            differences = _difference_rows(rows, paper)
            marked = bool(differences[[f"{c}_noise" for c in METRIC_COLUMNS]].eq(True).any().any())
            parts = [paper, rows, differences]
            sort = ["table4_row", "order", "recipe", "configuration", "dataset", "method"]
        else:
            parts = [published[published["table"] == number], rows]
            sort = ["order", "table4_row", "trainer", "configuration", "dataset"]
        tables[number] = Table(number, _ordered(parts, number, sort), _footnotes(number, rows, collection, marked),
                               _table_unit(collection, year))
    year = TABLE_YEARS[4]
    of_year = collection.per_case["brats_year"] == year
    rows = measured[measured["brats_year"] == year] if not measured.empty else measured
    comparisons = comparison_rows(Collection(collection.per_case[of_year.fillna(False).astype(bool)],
                                             collection.runs, protocol=collection.protocol), rows)
    tables["4b"] = Table("4b", _ordered([comparisons], "4b", ["table4_row", "recipe", "configuration", "dataset",
                                                              "order", "compared_with"]),
                         _comparison_footnotes(comparisons, rows, collection), _table_unit(collection, year))
    return tables


def _ordered(parts: list[pd.DataFrame], number: int | str, sort: list[str]) -> pd.DataFrame:
    """The rows of one table in its columns and order (published rows keep the paper's order: the stable
    sort only moves measured and difference rows)."""
    parts = [p for p in parts if not p.empty]
    frame = pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=TABLE_COLUMNS)
    frame = frame.reindex(columns=TABLE_COLUMNS).assign(table=str(number))
    frame["order"] = frame["source"].map(SOURCE_ORDER)
    frame = frame.sort_values(sort, kind="stable", na_position="last").drop(columns="order")
    return frame.astype({column: "Int64" for column in INTEGER_COLUMNS}).reset_index(drop=True)


# --- writing -------------------------------------------------------------------------------

def compile_tables(results: Path | str | None, out: Path | str, *, year_overrides: dict | None = None,
                   protocol: str = DEFAULT_PROTOCOL, compare_protocols: list[str] | None = None,
                   exclude_incomplete: bool = False, plots: bool = True, seed: int = 0, n_resamples: int = 9999,
                   num_processes: int = 2, echo: bool = True) -> dict[int | str, Table]:
    """Collect (scoring folds on demand), build Tables 1-4 and 4b, compare the protocols, compute the
    statistics, draw the figures, write everything and the report.

    Every file is replaced together with the others (:func:`nnunetv2_druwas.files.replaced_together`):
    after an error the previous outputs stay as they were (folds scored on the way stay scored).

    Args:
        results: the nnU-Net results folder; None for published rows only.
        out: output folder (created).
        year_overrides: dataset id or folder name -> BraTS year, winning over dataset.json.
        protocol: the evaluation protocol of the measured rows.
        compare_protocols: the protocols of ``protocols.csv`` (``brats`` is added: the ratios need it);
            None: every protocol; an empty list: no comparison.
        exclude_incomplete: drop incomplete runs (named in a footnote) instead of marking them.
        plots: draw the PNG/PDF figures (needs measured rows).
        seed: seed of the bootstrap.
        n_resamples: bootstrap resamples per interval.
        num_processes: worker processes for scoring folds.
        echo: print the Markdown tables and notes to stdout (and progress bars while scoring).
    """
    from analysis import curves as training, stats
    from analysis.protocol_table import compared_protocols, protocol_rows, protocol_sheet
    from analysis.report import build_report

    collections: dict[str, Collection] = {}

    def collected(name: str) -> Collection:
        if name not in collections:
            collections[name] = collect(results, year_overrides, name, num_processes=num_processes, progress=echo)
        return collections[name]

    collection = collected(protocol)
    dropped = collection.runs[~collection.runs["complete"].astype(bool)]
    if exclude_incomplete and not dropped.empty:
        keep = collection.runs["complete"].astype(bool)
        collection = Collection(collection.per_case[collection.per_case["complete"].astype(bool)],
                                collection.runs[keep], collection.notes, collection.protocol)
    tables = build_tables(collection)
    if exclude_incomplete:
        for table in tables.values():
            table.footnotes += [f"Excluded incomplete run {_run_path(r)}: {r.issues}." for r in dropped.itertuples()]
    compared = compared_protocols(compare_protocols)
    comparison, comparison_notes = protocol_rows({name: collected(name) for name in compared} if results else {})
    sheets = [*tables.values(), protocol_sheet(comparison, comparison_notes, compared)]
    out = Path(out)
    per_case = collection.per_case
    pooled = stats.over_repeats(per_case)
    named = dict(protocol=collection.protocol)     # every number names its protocol
    statistics = stats.wilcoxon_tests(pooled).assign(**named)
    ranking = stats.brats_ranking(pooled).assign(**named)
    effects = stats.switch_effects(pooled).assign(**named)
    intervals = stats.bootstrap_ci(per_case, seed=seed, n_resamples=n_resamples).assign(**named)
    curves, curve_notes = training.training_curves(results, collection.runs)
    notes = collection.notes + curve_notes + stats.ranking_notes(ranking)
    shown = [("wilcoxon", f"Paired Wilcoxon signed-rank tests (statistics.csv), {collection.protocol} protocol: matched "
              "(dataset, fold, case) pairs of per-case values averaged over repeats, Holm-corrected per recipe, plans "
              "and configuration", statistics.drop(
                  columns=["mean_variant", "mean_reference", "median_difference", "statistic"])),
             ("switches", "Switch effects (switch_effects.csv): mean paired difference, with minus without, over "
              "the matched cases", effects),
             ("ranking", "BraTS ranking (ranking.csv): mean rank over the items every run has (runs: trainers, "
              "repeats averaged); lacks = items a run has no value for",
              ranking[[c for c in ranking.columns if not c.startswith("rank_")]]),
             ("bootstrap", "Bootstrap 95 % confidence intervals of each run's mean (bootstrap_ci.csv; every repeat "
              "on its own), cases of all folds pooled", intervals)]
    with replaced_together() as group:   # every output new, or (after an error) every one as it was
        group.makedirs(out)
        for item in sheets:
            name = sheet(item).name
            frame = item.frame if isinstance(item, Table) else comparison
            group.write_text(out / f"{name}.csv", frame.to_csv(index=False))
            group.write_text(out / f"{name}.md", to_markdown(item))
            group.write_text(out / f"{name}.tex", to_latex(item))
        group.write_text(out / "tables.tex", latex_document([rf"\input{{{sheet(item).name}}}" for item in sheets]))
        for name, frame in (("per_case", per_case), ("runs", collection.runs), ("statistics", statistics),
                            ("bootstrap_ci", intervals), ("ranking", ranking), ("switch_effects", effects),
                            ("training_curves", curves)):
            group.write_text(out / f"{name}.csv", frame.to_csv(index=False))
        group.write_text(out / "notes.md", "# Notes\n\n" + "".join(f"- {note}\n" for note in notes or ["none"]))
        figures = {}
        if plots and not per_case.empty:
            from analysis.plots import draw_all
            figures = draw_all(per_case, tables[4].frame, effects, training.continuation_curves(curves),
                               out / "plots", group, comparison)
        group.write_text(out / "report.html", build_report(
            sheets, shown, notes, figures, str(results) if results is not None else "(no results folder)"))
    if echo:
        for item in sheets:
            print(to_markdown(item))
        for note in notes:
            print(f"note: {note}")
        print(f"written to {out} (everything on one page: {out / 'report.html'})")
    return tables


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--results", type=Path, default=None,
                        help="nnU-Net results folder (default: $nnUNet_results)")
    parser.add_argument("--out", type=Path, default=None, help="output folder (default: <results>/druwas_tables)")
    parser.add_argument("--protocol", choices=list(PROTOCOLS), default=DEFAULT_PROTOCOL,
                        help=f"evaluation protocol of the measured rows (default {DEFAULT_PROTOCOL}); folds without "
                             "its <protocol>_metrics.csv are scored from their validation/ predictions and cached")
    parser.add_argument("--compare-protocols", nargs="*", choices=list(PROTOCOLS), default=None, metavar="NAME",
                        help="protocols side by side in protocols.csv (default: all of "
                             f"{', '.join(PROTOCOLS)}; brats is always added; no names: no comparison)")
    parser.add_argument("--year-override", nargs="+", action="extend", default=[], metavar="DATASET=YEAR",
                        help="BraTS year of a dataset (id or folder name), e.g. 500=2020; wins over dataset.json")
    parser.add_argument("--exclude-incomplete", action="store_true",
                        help="leave incomplete runs out of every table (they are named in a footnote)")
    parser.add_argument("--no-plots", action="store_true", help="skip the PNG/PDF figures")
    parser.add_argument("--seed", type=int, default=0, help="seed of the bootstrap confidence intervals")
    parser.add_argument("--n-resamples", type=int, default=9999, help="bootstrap resamples per interval")
    parser.add_argument("-np", "--num-processes", type=int, default=2,
                        help="worker processes for scoring folds (default 2)")


def run(args: argparse.Namespace) -> int:
    results = args.results or (Path(env.value("nnUNet_results")) if env.value("nnUNet_results") else None)
    out = args.out or (results / "druwas_tables" if results is not None else None)
    if out is None:
        raise DruwasError("no results folder: pass --results DIR (or set nnUNet_results), or --out DIR to write "
                          "the published rows only")
    compile_tables(results, out, year_overrides=parse_year_overrides(args.year_override), protocol=args.protocol,
                   compare_protocols=args.compare_protocols, exclude_incomplete=args.exclude_incomplete,
                   plots=not args.no_plots, seed=args.seed, n_resamples=args.n_resamples,
                   num_processes=args.num_processes)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m analysis.tables", description=__doc__.split("\n")[0])
    add_arguments(parser)
    args = parser.parse_args(argv)
    return report_errors(lambda: run(args))


if __name__ == "__main__":
    sys.exit(main())
