"""The paper's Tables 1-4, measured next to published, with statistics, figures and one report page.

Usage::

    python -m analysis.tables [--results DIR] [--out DIR] [--protocol NAME] [--compare-protocols NAME ...]
                              [--year-override 500=2020 ...] [--no-postprocessing] [--complexity FILE]

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
  the paper's seven rows, the measured DRUwAS variants of every recipe found, each followed by its
  ``+ postprocessing`` row (source ``measured + postprocessing``), ``measured - paper`` rows (measured
  minus the paper's row of the same variant), and the reference rows (also with ``+ postprocessing``)
  below them.
- nnU-Net's BraTS postprocessing (:mod:`analysis.postprocessing`; off with ``--no-postprocessing``):
  every run's threshold (its ``brats_postprocessing.json``, chosen now and cached there where it has
  none) applied to every fold's validation predictions, scored under the protocol and cached as
  ``<protocol>_postprocessed_metrics.csv`` in the fold. Decisions: the ``+ postprocessing`` rows are in
  Table 4 and the other releases' ablation tables, with the reference rows; Tables 1-3 (comparisons with
  published methods, each with its own post-processing) and Table 4b (variant against variant, both
  without) have none. ``postprocessing.csv``: every run's threshold, the mean ET Dice without and with it
  (:data:`analysis.postprocessing.COLUMNS`); the paired tests with vs without are ``statistics.csv``'s
  family ``postprocessing`` (:func:`analysis.stats.wilcoxon_tests`). A run without validation predictions
  has no such row: noted, never fatal.
- ``table_ablation_<release>.csv`` (+ ``.md``, ``.tex``; e.g. ``table_ablation_brats2021``,
  ``table_ablation_brats2023``, ``table_ablation_msd``): one ablation table per release a dataset records
  that no paper table is of (``release`` in its dataset.json, or ``brats_year``; ``--year-override`` wins):
  Table 4's measured rows and their ``+ postprocessing`` rows with Table 4b's differences under each, no
  published rows, the same footnotes.
- ``table5.csv`` (+ ``.md``, ``.tex``; :mod:`analysis.complexity_table`): the model complexity table of
  ``python -m nnunetv2_druwas.benchmarks.complexity``, when a complexity.csv is found (``--complexity FILE``,
  else ``<results>/complexity.csv``, else ``<out>/complexity.csv``).
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
  found and whether it is complete), ``postprocessing.csv``, ``statistics.csv``, ``bootstrap_ci.csv``,
  ``ranking.csv``,
  ``switch_effects.csv`` (see :mod:`analysis.stats`), ``training_curves.csv`` (see
  :mod:`analysis.curves`), ``notes.md`` (what applies to no single table: datasets without a BraTS
  year, skipped folders, what the ranking dropped), the figures of :mod:`analysis.plots` under
  ``plots/`` and ``report.html`` (:mod:`analysis.report`: everything on one page).

Column ``year`` of the tables is the publication year; the release of a measured row is ``release``
(``"2020"``, ``"2021"``, ``"msd"``, ...), its BraTS year ``brats_year``. Footnotes name incomplete runs
(marked with a dagger), the protocol and HD95 definition of the measured rows, repeats, the noise marking,
the postprocessing and the paper's internal inconsistency, each only in the tables whose rows it concerns.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import pandas as pd

from analysis.collect import ROW_KEYS, RUN_KEYS, Collection, collect, parse_year_overrides
from analysis.display import MINUS, ablation_row, hd95_unit, release_slug, release_title, run_label, setting_label
from analysis.published import INCONSISTENCY_NOTE, METRIC_COLUMNS, TABLE_YEARS, published_rows
from analysis.render import (BASELINE_DIFFERENCE, DAGGER, DIFFERENCE, NOISE_MARK, POSTPROCESSED,
                             REFERENCE_DIFFERENCE, SOURCE_LABELS, Table, latex_document, sheet, to_latex, to_markdown)
from nnunetv2_druwas import env
from nnunetv2_druwas.errors import DruwasError, report_errors
from nnunetv2_druwas.evaluation.protocols import DEFAULT_PROTOCOL, PROTOCOLS
from nnunetv2_druwas.files import replaced_together

#: Row order within a group (a run's ``+ postprocessing`` row follows it: the sorts are stable).
SOURCE_ORDER = {"published": 0, "paper": 1, "measured": 2, POSTPROCESSED: 2, DIFFERENCE: 3, BASELINE_DIFFERENCE: 4,
                REFERENCE_DIFFERENCE: 5}
#: The releases of the paper's tables; any other release a dataset records gets its own ablation table.
PAPER_RELEASES = tuple(dict.fromkeys(str(year) for year in TABLE_YEARS.values()))
#: A difference smaller than this many between-repeat standard deviations is within run-to-run noise.
NOISE_FACTOR = 2
STAT_COLUMNS = [f"{c}_{s}" for c in METRIC_COLUMNS for s in ("std", "n", "repeat_std", "noise")]
PRINTED_COLUMNS = [f"{c}_printed" for c in METRIC_COLUMNS]
TABLE_COLUMNS = ["table", "method", "source", "compared_with", "reference", "year", "variant", "table4_row", "recipe",
                 "protocol", "dataset", "brats_year", "release", "trainer", "plans", "configuration", "complete",
                 "issues", "n_cases", "folds", "repeats", *METRIC_COLUMNS, *STAT_COLUMNS, *PRINTED_COLUMNS]
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
    described = members[["dataset_id", "brats_year", "release", "variant", "recipe", "protocol"]].first()
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
    several = rows.groupby("release", dropna=False)["dataset"].transform("nunique") > 1
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
                   trainer=first["variant_trainer"], protocol=collection.protocol, release=sides[0]["release"],
                   brats_year=sides[0]["brats_year"],
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


def _of_release(frame: pd.DataFrame, release: str) -> pd.DataFrame:
    """The rows of ``frame`` (a ``release`` column) of one release."""
    if frame.empty:
        return frame
    return frame[(frame["release"] == release).fillna(False).astype(bool)]


def _shown_runs(measured: pd.DataFrame, collection: Collection, release: str) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(the runs of ``release``, those of them that are in the measured rows)."""
    runs = _of_release(collection.runs, release)
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
COMPARISON_NOTE = ("Each cell of a {what}: the mean over the (fold, case) items both rows have a value for of the "
                   "paired difference (per-case values averaged over each row's repeats); n = those items (a cell "
                   "over fewer says n=...).")
NNUNET_NOTE = ("nnU-Net: the reference variant of the same recipe, plans and configuration (only the network differs) "
               "where there is one, else nnU-Net's default run (nnUNetTrainer, nnUNetPlans, the same configuration: "
               "network and training recipe differ); statistics.csv holds the paired Wilcoxon tests of the same "
               "comparisons.")
POSTPROCESSING_NOTE = (
    f"{SOURCE_LABELS[POSTPROCESSED]}: the same predictions after nnU-Net's BraTS postprocessing (its BraTS 2020 entry, "
    "Task082_BraTS_2020.py: a case whose predicted enhancing tumour has fewer voxels than the run's threshold gets "
    "it relabelled necrosis/non-enhancing core, so WT and TC do not change), scored the same way. Each run's "
    "threshold is chosen on its own cross-validation predictions (0-750 voxels, the highest mean ET Dice), i.e. on "
    "the cases it is evaluated on, as nnU-Net chose it: these rows are optimistic. postprocessing.csv: every run's "
    "threshold; statistics.csv (family postprocessing): each row with vs without, ET.")


def _postprocessing_notes(release: str, measured: pd.DataFrame, postprocessed: Collection | None) -> list[str]:
    """What the ``+ postprocessing`` rows of a table are, and its runs that have none or fewer folds."""
    if postprocessed is None or measured.empty:
        return []
    runs, shown = _shown_runs(measured, postprocessed, release)
    notes = [POSTPROCESSING_NOTE] if (shown["folds"] != "").any() else []
    lacking = shown[shown["folds"] == ""]
    if not lacking.empty:
        first = lacking.iloc[0]
        notes.append(f"{SOURCE_LABELS[POSTPROCESSED]}: none for {len(lacking)} of {len(shown)} runs (e.g. "
                     f"{_run_path(first)}: {first['postprocessing_issues']}); postprocessing.csv says why for each.")
    for row in shown[(shown["folds"] != "") & (shown["postprocessing_issues"] != "")].itertuples():
        notes.append(f"{DAGGER} {SOURCE_LABELS[POSTPROCESSED]} of {_run_path(row)}: {row.postprocessing_issues}.")
    return notes


def _footnotes(number: int | str, release: str, measured: pd.DataFrame, collection: Collection, *,
               marked: bool = False, processed: pd.DataFrame | None = None, postprocessed: Collection | None = None,
               compared: bool = False) -> list[str]:
    """The notes of one of Tables 1-4 or of a release's ablation table: only those about its own rows (and runs
    of its release left out of it).

    Args:
        number: 1-4, or the key of a release's ablation table.
        release: the release of its measured rows.
        measured: the table's measured rows (without postprocessing).
        collection: what was collected.
        marked: some difference of the table is within run-to-run noise.
        processed: the table's ``+ postprocessing`` rows (None or empty: none).
        postprocessed: the postprocessed collection (None: postprocessing off); ablation tables only.
        compared: the table has ``variant - baseline`` / ``variant - nnU-Net`` rows.
    """
    notes = []
    paper = number in TABLE_YEARS
    runs, shown = _shown_runs(measured, collection, release)
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
    both = ", with and without postprocessing" if processed is not None and not processed.empty else ""
    if not paper:
        notes.append(f"Bold: the best value of a column (highest Dice, lowest HD95) among the complete measured "
                     f"rows{both} (at the printed precision); {DAGGER} runs are never bold.")
    else:
        best = f"Bold: the best value of a column (highest Dice, lowest HD95) among {printed}"
        notes.append(best + (f", and separately among the complete measured rows{both} (at the printed "
                             f"precision); {DAGGER} runs are never bold." if not measured.empty else "."))
    if number == 4 and not measured.empty:
        protocol = PROTOCOLS[collection.protocol]
        unit = f"; its HD95 is in {protocol.hd95_unit}" if protocol.hd95_unit != "mm" else ""
        notes.append(f"{SOURCE_LABELS[DIFFERENCE]}: a measured row minus the paper's row of the same variant (other "
                     f"data splits; measured under the {protocol.name} protocol{unit}, while the paper does not "
                     "state its protocol, so the two may come from different protocols: protocols.csv shows the "
                     "same predictions under every protocol).")
    if compared:
        notes += [COMPARISON_NOTE.format(what=f"{MINUS} baseline or {MINUS} nnU-Net row"), NNUNET_NOTE]
    notes += _postprocessing_notes(release, measured, postprocessed)
    if marked:
        notes.append(NOISE_NOTE)
    if number == 4:
        notes.append("The paper's values are printed as the paper prints them; it does not state its HD95 "
                     "protocol.")
    elif paper:
        notes.append("Published and the paper's values are printed as their source prints them (Dice printed "
                     "in percent as fractions); each source's HD95 protocol is its own, and the paper does not "
                     "state them.")
    else:
        notes.append(f"The paper has no table of {release_title(release)}: every row here is measured.")
    if number in (1, 4):
        notes.append(INCONSISTENCY_NOTE)
    return notes


def _comparison_footnotes(rows: pd.DataFrame, measured: pd.DataFrame, collection: Collection) -> list[str]:
    """The notes of Table 4b."""
    if rows.empty:
        return ["No measured ablation variant has a baseline or an nnU-Net run to compare with on the same folds."]
    _, shown = _shown_runs(measured, collection, str(TABLE_YEARS[4]))
    notes = [COMPARISON_NOTE.format(what="difference"), *_measured_notes(rows, collection, shown)]
    if (~rows["complete"].astype(bool)).any():
        notes.append(f"{DAGGER} One of the two rows is incomplete (its runs are named under Table 4).")
    notes += [NNUNET_NOTE, NOISE_NOTE]
    return notes


def _table_unit(collection: Collection, release: str) -> str:
    """The HD95 unit of a table's header: mm, or the measured rows' unit beside the published mm."""
    unit = hd95_unit(_of_release(collection.per_case, release))
    return unit if unit == "mm" else f"mm; measured: {unit}"


def _marked(frame: pd.DataFrame) -> bool:
    """Whether some difference of ``frame`` is within run-to-run noise."""
    return bool(frame.reindex(columns=[f"{c}_noise" for c in METRIC_COLUMNS]).eq(True).any().any())


def _comparisons(collection: Collection, measured: pd.DataFrame, release: str) -> pd.DataFrame:
    """Table 4b's rows of one release (:func:`comparison_rows` on its runs)."""
    per_case = _of_release(collection.per_case, release)
    return comparison_rows(Collection(per_case, collection.runs, protocol=collection.protocol),
                           _of_release(measured, release))


def other_releases(measured: pd.DataFrame) -> list[str]:
    """The releases of measured rows that no paper table is of (2021, 2023, msd, ...), in the order of
    :data:`nnunetv2_druwas.data.brats.RELEASES`, then by name.

    Args:
        measured: :func:`measured_rows`.
    """
    from nnunetv2_druwas.data.brats import RELEASES

    found = set(measured["release"].dropna().astype(str)) - set(PAPER_RELEASES) if not measured.empty else set()
    order = list(RELEASES)
    return sorted(found, key=lambda r: (order.index(r) if r in order else len(order), r))


#: The order of a release's ablation table (and of Table 4b): by row, run, then its rows in SOURCE_ORDER.
RELEASE_SORT = ["table4_row", "recipe", "configuration", "dataset", "plans", "trainer", "order", "compared_with"]


def build_tables(collection: Collection, postprocessed: Collection | None = None) -> dict[int | str, Table]:
    """Tables 1-4 and 4b and the ablation table of every other release, from the transcribed rows and what
    was measured.

    Args:
        collection: what :func:`analysis.collect.collect` found (may be empty).
        postprocessed: the same runs with nnU-Net's BraTS postprocessing (:func:`analysis.postprocessing.postprocess`):
            the ``+ postprocessing`` rows of Table 4 and of the release tables; None: none.
    """
    published = published_rows()
    measured = measured_rows(collection)
    processed = measured_rows(postprocessed).assign(source=POSTPROCESSED) if postprocessed is not None else \
        measured.iloc[:0]
    tables: dict[int | str, Table] = {}
    for number, year in TABLE_YEARS.items():
        release = str(year)
        rows = _of_release(measured, release)
        marked = False
        if number == 4:
            paper = published[published["table"] == 4]
            differences = _difference_rows(rows, paper)
            marked = _marked(differences)
            parts = [paper, rows, _of_release(processed, release), differences]
            sort = ["table4_row", "order", "recipe", "configuration", "dataset", "method"]
        else:
            parts = [published[published["table"] == number], rows]
            sort = ["order", "table4_row", "trainer", "configuration", "dataset"]
        tables[number] = Table(number, _ordered(parts, number, sort),
                               _footnotes(number, release, rows, collection, marked=marked,
                                          processed=_of_release(processed, release) if number == 4 else None,
                                          postprocessed=postprocessed if number == 4 else None),
                               _table_unit(collection, release))
    release = str(TABLE_YEARS[4])
    comparisons = _comparisons(collection, measured, release)
    tables["4b"] = Table("4b", _ordered([comparisons], "4b", RELEASE_SORT),
                         _comparison_footnotes(comparisons, _of_release(measured, release), collection),
                         _table_unit(collection, release))
    for release in other_releases(measured):
        number = f"ablation_{release_slug(release)}"
        rows, comparisons = _of_release(measured, release), _comparisons(collection, measured, release)
        frame = _ordered([rows, _of_release(processed, release), comparisons], number, RELEASE_SORT)
        notes = _footnotes(number, release, rows, collection, marked=_marked(comparisons),
                           processed=_of_release(processed, release), postprocessed=postprocessed,
                           compared=not comparisons.empty)
        tables[number] = Table(number, frame, notes, _table_unit(collection, release), release)
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
                   exclude_incomplete: bool = False, postprocessing: bool = True, complexity: Path | str | None = None,
                   plots: bool = True, seed: int = 0, n_resamples: int = 9999, num_processes: int = 2,
                   echo: bool = True) -> dict[int | str, Table]:
    """Collect (scoring folds on demand), postprocess, build Tables 1-4, 4b, the other releases' ablation
    tables and Table 5, compare the protocols, compute the statistics, draw the figures, write everything
    and the report.

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
        postprocessing: add nnU-Net's BraTS postprocessing (:mod:`analysis.postprocessing`: thresholds chosen
            where a run has none, folds postprocessed and scored, both cached); False: no ``+ postprocessing``
            rows and an empty ``postprocessing.csv``.
        complexity: the complexity.csv of Table 5; None: ``<results>/complexity.csv``, else
            ``<out>/complexity.csv``, else no Table 5 (:func:`analysis.complexity_table.find_complexity`).
        plots: draw the PNG/PDF figures (needs measured rows).
        seed: seed of the bootstrap.
        n_resamples: bootstrap resamples per interval.
        num_processes: worker processes for scoring folds (and choosing thresholds).
        echo: print the Markdown tables and notes to stdout (and progress bars while scoring).
    """
    from analysis import curves as training, stats
    from analysis.complexity_table import complexity_sheet, find_complexity, read_complexity
    from analysis.postprocessing import COLUMNS as POSTPROCESSING_COLUMNS, postprocess
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
    out = Path(out)
    complexity = find_complexity(complexity, results, out)
    complexity_frame = read_complexity(complexity) if complexity is not None else None
    postprocessed, processing = None, pd.DataFrame(columns=POSTPROCESSING_COLUMNS)
    if postprocessing and results is not None:
        postprocessed, processing = postprocess(collection, results, num_processes=num_processes, progress=echo)
    tables = build_tables(collection, postprocessed)
    if exclude_incomplete:
        for table in tables.values():
            table.footnotes += [f"Excluded incomplete run {_run_path(r)}: {r.issues}." for r in dropped.itertuples()]
    compared = compared_protocols(compare_protocols)
    comparison, comparison_notes = protocol_rows({name: collected(name) for name in compared} if results else {})
    sheets = [(table, table.frame) for table in tables.values()]
    if complexity_frame is not None:
        sheets.append((complexity_sheet(complexity_frame, complexity), complexity_frame))
    sheets.append((protocol_sheet(comparison, comparison_notes, compared), comparison))
    per_case = collection.per_case
    pooled = stats.over_repeats(per_case)
    named = dict(protocol=collection.protocol)     # every number names its protocol
    statistics = stats.wilcoxon_tests(pooled, None if postprocessed is None else
                                      stats.over_repeats(postprocessed.per_case)).assign(**named)
    ranking = stats.brats_ranking(pooled).assign(**named)
    effects = stats.switch_effects(pooled).assign(**named)
    intervals = stats.bootstrap_ci(per_case, seed=seed, n_resamples=n_resamples).assign(**named)
    curves, curve_notes = training.training_curves(results, collection.runs)
    notes = collection.notes + _postprocessing_summary(postprocessing, processing) + curve_notes + \
        stats.ranking_notes(ranking)
    shown = [("wilcoxon", f"Paired Wilcoxon signed-rank tests (statistics.csv), {collection.protocol} protocol: matched "
              "(dataset, fold, case) pairs of per-case values averaged over repeats, Holm-corrected per family "
              "(variants; postprocessing: each row with vs without, ET), recipe, plans and configuration",
              statistics.drop(columns=["mean_variant", "mean_reference", "median_difference", "statistic"])),
             ("postprocessing", "nnU-Net's BraTS postprocessing per run (postprocessing.csv): the threshold (found in "
              "the run's brats_postprocessing.json or chosen now), the cross-validation cases it was chosen on and "
              f"their mean ET Dice without and with it (BraTS convention), and the run's mean ET Dice under the "
              f"{collection.protocol} protocol over the cases of the tables", processing),
             ("switches", "Switch effects (switch_effects.csv): mean paired difference, with minus without, over "
              "the matched cases", effects),
             ("ranking", "BraTS ranking (ranking.csv): mean rank over the items every run has (runs: trainers, "
              "repeats averaged); lacks = items a run has no value for",
              ranking[[c for c in ranking.columns if not c.startswith("rank_")]]),
             ("bootstrap", "Bootstrap 95 % confidence intervals of each run's mean (bootstrap_ci.csv; every repeat "
              "on its own), cases of all folds pooled", intervals)]
    names = [sheet(item).name for item, _ in sheets]
    with replaced_together() as group:   # every output new, or (after an error) every one as it was
        group.makedirs(out)
        for (item, frame), name in zip(sheets, names):
            group.write_text(out / f"{name}.csv", frame.to_csv(index=False))
            group.write_text(out / f"{name}.md", to_markdown(item))
            group.write_text(out / f"{name}.tex", to_latex(item))
        for stale in _stale_outputs(out, names):
            group.remove(stale)
        group.write_text(out / "tables.tex", latex_document([rf"\input{{{name}}}" for name in names]))
        for name, frame in (("per_case", per_case), ("runs", collection.runs), ("statistics", statistics),
                            ("postprocessing", processing), ("bootstrap_ci", intervals), ("ranking", ranking),
                            ("switch_effects", effects), ("training_curves", curves)):
            group.write_text(out / f"{name}.csv", frame.to_csv(index=False))
        group.write_text(out / "notes.md", "# Notes\n\n" + "".join(f"- {note}\n" for note in notes or ["none"]))
        figures = {}
        if plots and not per_case.empty:
            from analysis.plots import draw_all
            figures = draw_all(per_case, tables[4].frame, effects, training.continuation_curves(curves),
                               out / "plots", group, comparison)
        group.write_text(out / "report.html", build_report(
            [item for item, _ in sheets], shown, notes, figures,
            str(results) if results is not None else "(no results folder)"))
    if echo:
        for item, _ in sheets:
            print(to_markdown(item))
        for note in notes:
            print(f"note: {note}")
        print(f"written to {out} (everything on one page: {out / 'report.html'})")
    return tables


def _stale_outputs(out: Path, names: list[str]) -> list[Path]:
    """Files of tables this run does not write that an earlier run did (Table 5, a release's ablation table)."""
    stems = ["table5", *[p.stem for p in out.glob("table_ablation_*.csv")]]
    return [out / f"{stem}.{ending}" for stem in stems if stem not in names for ending in ("csv", "md", "tex")
            if (out / f"{stem}.{ending}").is_file()]


def _postprocessing_summary(on: bool, processing: pd.DataFrame) -> list[str]:
    """The note on nnU-Net's BraTS postprocessing for notes.md: off, or which runs have no postprocessed values."""
    if not on:
        return ["nnU-Net's BraTS postprocessing not applied (--no-postprocessing): no + postprocessing rows, "
                "postprocessing.csv empty."]
    lacking = processing[processing["folds"].fillna("") == ""]
    if lacking.empty:
        return []
    first = lacking.iloc[0]
    return [f"nnU-Net's BraTS postprocessing: {len(lacking)} of {len(processing)} runs have no postprocessed values "
            f"(e.g. {first['dataset']}/{first['trainer']}__{first['plans']}__{first['configuration']}: "
            f"{first['issues']}); postprocessing.csv says why for each."]


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
    parser.add_argument("--no-postprocessing", action="store_true",
                        help="no + postprocessing rows (nnU-Net's BraTS postprocessing: thresholds chosen where a run "
                             "has none, every fold postprocessed and scored, all cached in the results)")
    parser.add_argument("--complexity", type=Path, default=None, metavar="FILE",
                        help="the complexity.csv of Table 5 (python -m nnunetv2_druwas.benchmarks.complexity; "
                             "default: <results>/complexity.csv, else <out>/complexity.csv, else no Table 5)")
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
                   postprocessing=not args.no_postprocessing, complexity=args.complexity, plots=not args.no_plots,
                   seed=args.seed, n_resamples=args.n_resamples, num_processes=args.num_processes)
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The parser of ``python -m analysis.tables`` (the same options as ``nnunetv2_druwas tables``)."""
    parser = argparse.ArgumentParser(prog="python -m analysis.tables", description=__doc__.split("\n")[0])
    add_arguments(parser)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return report_errors(lambda: run(args))


if __name__ == "__main__":
    sys.exit(main())
