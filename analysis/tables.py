"""The paper's Tables 1-4, measured next to published, with statistics and plots.

Usage::

    python -m analysis.tables [--results DIR] [--out DIR] [--year-override 500=2020 ...]

``--results`` defaults to ``$nnUNet_results``; ``--out`` defaults to
``<results>/druwas_tables`` (it must be given when there is no results folder:
then only the published rows are written). Written to ``--out``:

- ``table1.csv`` .. ``table4.csv`` (+ ``.md`` and ``.tex``, LaTeX with booktabs and the
  best value of each column in bold: highest Dice, lowest HD95, over every row that
  is not a difference). Tables 1, 2, 3 are BraTS 2020, 2018, 2019: the published rows,
  the paper's own rows, and one measured row per run (dataset x trainer x plans x
  configuration) on a dataset of that year: mean over all cases with the folds pooled,
  the sample standard deviation (``*_std``, ddof 1) and the number of values
  (``*_n``). Table 4 (BraTS 2020 ablation): the paper's seven rows, the measured
  DRUwAS variants of every recipe found, and ``difference`` rows (measured minus
  the paper's row of the same variant).
- ``per_case.csv`` (the tidy table every number comes from), ``runs.csv`` (what was
  found and whether it is complete), ``statistics.csv``, ``bootstrap_ci.csv``,
  ``ranking.csv``, ``switch_effects.csv`` (see :mod:`analysis.stats`) and the plots of
  :mod:`analysis.plots` under ``plots/``.

Column ``year`` of the tables is the publication year; the BraTS release of a
measured row is ``brats_year``. Footnotes name incomplete runs (marked with a dagger),
the HD95 definition of the measured rows, and the paper's internal inconsistency.
"""
from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from analysis.collect import REGIONS, RUN_KEYS, Collection, collect, parse_year_overrides
from analysis.published import INCONSISTENCY_NOTE, METRIC_COLUMNS, TABLE_YEARS, published_rows
from nnunetv2_druwas import env
from nnunetv2_druwas.errors import DruwasError
from nnunetv2_druwas.files import replaced_together
from nnunetv2_druwas.variants import variant_by_key

CAPTIONS = {
    1: "Comparison with other approaches on BraTS 2020",
    2: "Comparison with other approaches on BraTS 2018",
    3: "Comparison with other approaches on BraTS 2019",
    4: "Ablation study on BraTS 2020",
}
SOURCE_ORDER = {"published": 0, "paper": 1, "measured": 2, "difference": 3}
DAGGER = "\u2020"
STAT_COLUMNS = [f"{c}_{s}" for c in METRIC_COLUMNS for s in ("std", "n")]
TABLE_COLUMNS = ["table", "method", "source", "reference", "year", "variant", "table4_row", "recipe", "dataset",
                 "brats_year", "trainer", "plans", "configuration", "complete", "issues", *METRIC_COLUMNS,
                 *STAT_COLUMNS]


@dataclass
class Table:
    """One of the paper's tables: its rows (``frame``, columns :data:`TABLE_COLUMNS`) and footnotes."""
    number: int
    frame: pd.DataFrame
    footnotes: list[str] = field(default_factory=list)


def _run_label(row: pd.Series, several_datasets: bool) -> str:
    details = []
    if isinstance(row["recipe"], str):
        details.append(f"{row['recipe']} recipe")
    details.append(row["configuration"])
    if row["plans"] != "nnUNetPlans":
        details.append(row["plans"])
    if several_datasets:
        details.append(row["dataset"])
    name = variant_by_key(row["variant"]).label if isinstance(row["variant"], str) else row["trainer"]
    return f"{name} (measured: {', '.join(details)})"


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
    rows = collection.runs.merge(wide.reset_index(), on=RUN_KEYS, how="inner")
    rows["source"] = "measured"
    rows["table4_row"] = rows["variant"].map(lambda k: variant_by_key(k).table4_row if isinstance(k, str) else None)
    rows["reference"] = pd.NA
    rows["year"] = pd.NA
    several = rows.groupby("brats_year", dropna=False)["dataset"].transform("nunique") > 1
    rows["method"] = [_run_label(row, many) for (_, row), many in zip(rows.iterrows(), several)]
    for column in STAT_COLUMNS:
        if column.endswith("_n"):
            rows[column] = rows[column].fillna(0).astype(int)
    return rows


def _difference_rows(measured: pd.DataFrame, paper: pd.DataFrame) -> pd.DataFrame:
    reference = paper.set_index("variant")[list(METRIC_COLUMNS)]
    rows = measured[measured["variant"].isin(reference.index)].copy()
    rows[list(METRIC_COLUMNS)] = rows[list(METRIC_COLUMNS)].to_numpy(float) - \
        reference.loc[rows["variant"]].to_numpy(float)
    rows[STAT_COLUMNS] = np.nan
    rows["source"] = "difference"
    rows["method"] = rows["method"].str.replace("(measured:", "(measured - published:", regex=False)
    return rows


def _footnotes(number: int, measured: pd.DataFrame, collection: Collection) -> list[str]:
    notes = []
    year = collection.runs["brats_year"] == TABLE_YEARS[number]
    unevaluated = collection.runs[year.fillna(False).astype(bool) & (collection.runs["folds"] == "")]
    if number == 4:
        unevaluated = unevaluated[unevaluated["variant"].notna()]
    for row in unevaluated.itertuples():
        notes.append(f"Run {row.dataset}/{row.trainer}__{row.plans}__{row.configuration} has no evaluated fold "
                     f"and is not in the table: {row.issues}.")
    per_case = collection.per_case
    if not measured.empty:
        notes.append("Measured rows: mean over all cases of all folds (pooled), ± the sample standard deviation "
                     "(ddof 1); the CSV also gives the number of values per cell.")
        incomplete = measured[~measured["complete"].astype(bool)]
        for _, row in incomplete.iterrows():
            notes.append(f"{DAGGER} Incomplete run {row['dataset']}/{row['trainer']}__{row['plans']}__"
                         f"{row['configuration']}: {row['issues']}.")
        runs = measured[RUN_KEYS].drop_duplicates()
        definitions = sorted(per_case.merge(runs, on=RUN_KEYS)["hd95_definition"].dropna().astype(str).unique())
        if len(definitions) == 1:
            notes.append(f"Measured HD95 definition: {definitions[0]}.")
        elif definitions:
            notes.append(f"Measured rows mix HD95 definitions ({'; '.join(definitions)}): compare with care.")
    if number in (1, 4):
        notes.append(INCONSISTENCY_NOTE)
    notes.append("Published HD95 values follow each source's own protocol, which the paper does not state.")
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
        for column in ("reference", "year", "table4_row", "brats_year"):
            frame[column] = frame[column].astype("Int64")
        tables[number] = Table(number, frame.reset_index(drop=True), _footnotes(number, rows, collection))
    return tables


# --- rendering ---------------------------------------------------------------------------

def best_mask(frame: pd.DataFrame) -> pd.DataFrame:
    """True where a metric cell is the best of its column (max Dice, min HD95) among non-difference rows."""
    ranked = frame["source"] != "difference"
    mask = pd.DataFrame(False, index=frame.index, columns=list(METRIC_COLUMNS))
    for column in METRIC_COLUMNS:
        values = pd.to_numeric(frame.loc[ranked, column], errors="coerce")
        if values.notna().any():
            best = values.max() if column.startswith("dice") else values.min()
            mask.loc[values.index[values == best], column] = True
    return mask


def _cell(row: pd.Series, column: str, plus_minus: str) -> str:
    value = row[column]
    if pd.isna(value):
        return "-"
    text = f"{value:+.4f}" if row["source"] == "difference" else f"{value:.4f}"
    if row["source"] == "measured" and not pd.isna(row[f"{column}_std"]):
        text += f"{plus_minus}{row[f'{column}_std']:.4f}"
    return text


def _display(table: Table, *, bold, plus_minus: str, dagger: str, escape) -> tuple[list[str], list[list[str]]]:
    frame, mask = table.frame, best_mask(table.frame)
    lead = ["Row", "Method", "Source"] if table.number == 4 else ["Method", "Ref.", "Year", "Source"]
    header = lead + [f"Dice {r}" for r in REGIONS] + [f"HD95 {r}" for r in REGIONS]
    body = []
    for index, row in frame.iterrows():
        method = escape(row["method"]) + (dagger if row["source"] == "measured" and not row["complete"] else "")
        if table.number == 4:
            cells = [str(row["table4_row"]), method, row["source"]]
        else:
            cells = [method, "" if pd.isna(row["reference"]) else f"[{row['reference']}]",
                     "" if pd.isna(row["year"]) else str(row["year"]), row["source"]]
        for column in METRIC_COLUMNS:
            text = _cell(row, column, plus_minus)
            cells.append(bold(text) if mask.at[index, column] else text)
        body.append(cells)
    return header, body


def to_markdown(table: Table) -> str:
    """The table as GitHub Markdown: caption, pipe table (best values in bold), footnotes."""
    header, body = _display(table, bold=lambda t: f"**{t}**", plus_minus=" ± ", dagger=f" {DAGGER}",
                            escape=lambda t: t.replace("|", "\\|"))
    lines = [f"**Table {table.number}.** {CAPTIONS[table.number]}.", "", "| " + " | ".join(header) + " |",
             "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(cells) + " |" for cells in body]
    lines += [""] + [f"- {note}" for note in table.footnotes]
    return "\n".join(lines) + "\n"


_LATEX_SPECIAL = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_",
                  "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}",
                  DAGGER: r"$^\dagger$", "±": r"$\pm$"}


def latex_escape(text: str) -> str:
    """Escape LaTeX's special characters in plain text."""
    return "".join(_LATEX_SPECIAL.get(ch, ch) for ch in str(text))


def to_latex(table: Table) -> str:
    """The table as a LaTeX ``table`` with booktabs rules, best values in ``\\textbf``, footnotes below."""
    header, body = _display(table, bold=lambda t: rf"\textbf{{{t}}}", plus_minus=r"$\pm$",
                            dagger=r"$^\dagger$", escape=latex_escape)
    n_lead = len(header) - 6
    lines = [r"\begin{table}[t]", r"\centering", r"\footnotesize",
             rf"\caption{{{latex_escape(CAPTIONS[table.number])}.}}", rf"\label{{tab:druwas{table.number}}}",
             r"\begin{tabular}{" + "l" * n_lead + "r" * 6 + "}", r"\toprule",
             " & " * (n_lead - 1) + rf" & \multicolumn{{3}}{{c}}{{Dice}} & \multicolumn{{3}}{{c}}{{HD95}} \\",
             rf"\cmidrule(lr){{{n_lead + 1}-{n_lead + 3}}} \cmidrule(lr){{{n_lead + 4}-{n_lead + 6}}}",
             " & ".join(header[:n_lead] + list(REGIONS) * 2) + r" \\", r"\midrule"]
    previous = None
    for cells, source in zip(body, table.frame["source"]):
        if previous is not None and source != previous and table.number != 4:
            lines.append(r"\midrule")
        previous = source
        lines.append(" & ".join(cells) + r" \\")
    lines += [r"\bottomrule", r"\end{tabular}"]
    lines += [rf"\par\smallskip\parbox{{\linewidth}}{{\scriptsize {latex_escape(note)}}}"
              for note in table.footnotes]
    lines.append(r"\end{table}")
    return "\n".join(lines) + "\n"


# --- writing -------------------------------------------------------------------------------

def compile_tables(results: Path | str | None, out: Path | str, *, year_overrides: dict | None = None,
                   exclude_incomplete: bool = False, plots: bool = True, seed: int = 0, n_resamples: int = 9999,
                   echo: bool = True) -> dict[int, Table]:
    """Collect, build Tables 1-4, compute the statistics, draw the plots and write everything to ``out``.

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
    from analysis import stats

    collection = collect(results, year_overrides)
    dropped = collection.runs[~collection.runs["complete"].astype(bool)]
    if exclude_incomplete and not dropped.empty:
        keep = collection.runs["complete"].astype(bool)
        collection = Collection(collection.per_case[collection.per_case["complete"].astype(bool)],
                                collection.runs[keep], collection.notes)
    tables = build_tables(collection)
    if exclude_incomplete:
        for table in tables.values():
            table.footnotes += [f"Excluded incomplete run {r.dataset}/{r.trainer}__{r.plans}__{r.configuration}: "
                                f"{r.issues}." for r in dropped.itertuples()]
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    per_case = collection.per_case
    with replaced_together() as group:   # every output new, or (after an error) every one as it was
        for number, table in tables.items():
            group.write_text(out / f"table{number}.csv", table.frame.to_csv(index=False))
            group.write_text(out / f"table{number}.md", to_markdown(table))
            group.write_text(out / f"table{number}.tex", to_latex(table))
        effects = stats.switch_effects(per_case)
        for name, frame in (("per_case", per_case), ("runs", collection.runs),
                            ("statistics", stats.wilcoxon_tests(per_case)),
                            ("bootstrap_ci", stats.bootstrap_ci(per_case, seed=seed, n_resamples=n_resamples)),
                            ("ranking", stats.brats_ranking(per_case)), ("switch_effects", effects)):
            group.write_text(out / f"{name}.csv", frame.to_csv(index=False))
        if plots and not per_case.empty:
            from analysis.plots import draw_all
            draw_all(per_case, tables[4].frame, effects, out / "plots", group)
    if echo:
        for table in tables.values():
            print(to_markdown(table))
        for note in collection.notes:
            print(f"note: {note}")
        print(f"written to {out}")
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
    try:
        return run(args)
    except DruwasError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
