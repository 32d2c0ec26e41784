"""Tables 1-4 as Markdown, LaTeX (booktabs) and HTML, from one layout.

What every format shows (decisions):

- Published and the paper's values exactly as their source printed them (``<metric>_printed``
  of :mod:`analysis.published`); measured Dice with 4 decimals, HD95 with 2, the sample standard
  deviation under (LaTeX, HTML) or beside (Markdown) the mean (for a row of several repeats: the
  between-repeat standard deviation of the run means), and ``n (folds ...) xR`` of every
  measured row (:func:`analysis.display.sample_label`). A cell computed over fewer values than the
  row's cases says ``n=...``. A difference within run-to-run noise carries :data:`NOISE_MARK`.
- Bold: the best value of a column (highest Dice, lowest HD95) within comparable rows: among the
  published rows *and the paper's own rows* (all are numbers printed by a source under its own,
  unstated protocol), and separately among the complete measured rows (one harness, one protocol),
  compared at the printed precision. Difference rows and incomplete (dagger) runs are never bold.
- Tables 1-3 group their rows (published, the paper's, measured) under a heading each, reference
  rows (nnU-Net) last; Table 4 groups by its row number: the paper's row, the measured runs of that
  variant, and ``measured - paper`` (the measured row minus the paper's row of the same variant),
  then the measured reference rows under their own heading; Table 4b groups each variant's
  differences to the baseline and to nnU-Net by row number.
- Every format renders a :class:`Sheet` (a :class:`Layout` of lead columns, metric columns under
  spanning headers, and titled row groups); :func:`layout` makes it for the paper's tables,
  :mod:`analysis.protocol_table` for ``protocols``.
- LaTeX: a ``table*`` float (full text width of a two-column paper) that needs ``booktabs``,
  ``array`` and ``graphicx``; a tabular wider than the text or taller than the page leaves beside its
  caption and footnotes (Table 1 with many measured rows) is scaled down to fit; long method names wrap, paths in
  footnotes may break after ``/`` and ``_``, negative
  numbers get a real minus sign. :func:`latex_document` wraps tables into a document that compiles
  with ``pdflatex`` on its own (page size of a CVPR/IEEE two-column paper).
"""
from __future__ import annotations

import html
from dataclasses import dataclass

import pandas as pd

from analysis.collect import REGIONS
from analysis.display import MINUS, metric_label, sample_label, setting_label
from analysis.published import METRIC_COLUMNS

CAPTIONS = {
    1: "Comparison with other approaches on BraTS 2020",
    2: "Comparison with other approaches on BraTS 2018",
    3: "Comparison with other approaches on BraTS 2019",
    4: "Ablation study on BraTS 2020",
    "4b": "Ablation study on BraTS 2020, measured: each variant minus the baseline and minus nnU-Net on the "
          "same folds (mean paired difference over the matched cases)",
}
DAGGER = "\u2020"
NOISE_MARK = "\u2021"
DIFFERENCE = "measured - paper"
BASELINE_DIFFERENCE = "variant - baseline"
REFERENCE_DIFFERENCE = "variant - nnU-Net"
DIFFERENCES = (DIFFERENCE, BASELINE_DIFFERENCE, REFERENCE_DIFFERENCE)
DECIMALS = {"dice": 4, "hd95": 2}
GROUP_TITLES = {"published": "Published", "paper": "This paper (as printed)",
                "measured": "Measured (this harness)"}
REFERENCE_TITLE = "References: nnU-Net on the same folds (measured)"
SOURCE_LABELS = {"paper": "paper", "measured": "measured", DIFFERENCE: f"measured {MINUS} paper",
                 BASELINE_DIFFERENCE: f"variant {MINUS} baseline", REFERENCE_DIFFERENCE: f"variant {MINUS} nnU-Net"}


@dataclass
class Table:
    """One of the paper's tables (``number`` 1-4) or Table 4b (``"4b"``): its rows (``frame``, columns
    :data:`analysis.tables.TABLE_COLUMNS`), footnotes and the unit of its measured HD95 values."""
    number: int | str
    frame: pd.DataFrame
    footnotes: list[str]
    hd95_unit: str = "mm"


@dataclass
class Cell:
    """One metric cell: the value's text, the line below it (std, n) and whether it is bold."""
    text: str
    below: str = ""
    bold: bool = False


@dataclass
class Column:
    """A metric column: ``top`` spans the columns that share it (LaTeX, HTML), ``sub`` is its own header,
    ``flat`` its one-line header (Markdown)."""
    top: str
    sub: str
    flat: str


@dataclass
class Layout:
    """What every format renders: lead columns, then metric columns, rows in titled groups."""
    lead: list[str]
    columns: list[Column]
    groups: list[tuple[str, list[tuple[list[str], list[Cell]]]]]
    lead_spec: str = "l"     # LaTeX column types of the lead columns


@dataclass
class Sheet:
    """A rendered table in any format: ``name`` is its file stem, HTML id and LaTeX label."""
    name: str
    title: str
    caption: str
    layout: Layout
    footnotes: list[str]


def metric_columns(unit: str) -> list[Column]:
    """Dice WT/TC/ET and HD95 WT/TC/ET (``unit``) of the paper's tables."""
    return [Column("Dice", r, f"Dice {r}") for r in REGIONS] + \
        [Column(metric_label("hd95", unit), r, f"HD95 {r} ({unit})") for r in REGIONS]


def _incomplete(frame: pd.DataFrame) -> pd.Series:
    return ~frame["source"].isin(["published", "paper"]) & ~frame["complete"].eq(True)


def best_mask(frame: pd.DataFrame) -> pd.DataFrame:
    """True where a metric cell is the best of its column within its comparable rows (module docstring).

    Args:
        frame: a table's rows (``source``, ``complete`` and the metric columns).
    """
    mask = pd.DataFrame(False, index=frame.index, columns=list(METRIC_COLUMNS))
    pools = {"printed": frame["source"].isin(["published", "paper"]),
             "measured": (frame["source"] == "measured") & frame["complete"].eq(True)}
    for name, pool in pools.items():
        for column in METRIC_COLUMNS:
            metric = column.split("_")[0]
            values = pd.to_numeric(frame.loc[pool, column], errors="coerce")
            if name == "measured":
                values = values.round(DECIMALS[metric])
            if values.notna().any():
                best = values.max() if metric == "dice" else values.min()
                mask.loc[values.index[values == best], column] = True
    return mask


def number_text(value: float, decimals: int, signed: bool = False) -> str:
    """A number with a real minus sign (and ``+`` when ``signed``)."""
    return f"{value:{'+' if signed else ''}.{decimals}f}".replace("-", MINUS)


def _cell(row: pd.Series, column: str, bold: bool) -> Cell:
    metric = column.split("_")[0]
    if row["source"] in ("published", "paper"):
        printed = row.get(f"{column}_printed")
        return Cell(printed if isinstance(printed, str) else "-", bold=bold)
    value, decimals = row[column], DECIMALS[metric]
    if pd.isna(value):
        return Cell("-")
    count = row[f"{column}_n"]
    fewer = f"(n={count})" if not pd.isna(count) and not pd.isna(row["n_cases"]) and count < row["n_cases"] else ""
    if row["source"] in DIFFERENCES:
        noise = row.get(f"{column}_noise")
        mark = NOISE_MARK if not pd.isna(noise) and bool(noise) else ""
        return Cell(number_text(value, decimals, signed=True) + mark, fewer)
    repeated = not pd.isna(row.get("repeats")) and row["repeats"] > 1
    spread = row[f"{column}_repeat_std"] if repeated else row[f"{column}_std"]
    below = "" if pd.isna(spread) else "\u00b1" + number_text(spread, decimals)
    return Cell(number_text(value, decimals), " ".join(filter(None, (below, fewer))), bold)


def _sample(row: pd.Series) -> str:
    if pd.isna(row["n_cases"]):
        return ""
    repeats = row.get("repeats")
    return sample_label(int(row["n_cases"]), row["folds"], None if pd.isna(repeats) else int(repeats))


def layout(table: Table) -> Layout:
    """The rows and cells every format of ``table`` shows."""
    frame = table.frame
    mask = best_mask(frame)
    incomplete = _incomplete(frame)
    measured = ~frame["source"].isin(["published", "paper"])
    several = frame.loc[measured, "dataset"].nunique() > 1
    ablation = table.number in (4, "4b")
    rows = []
    for index, row in frame.iterrows():
        dagger = DAGGER if incomplete[index] else ""
        cells = [_cell(row, c, bold=bool(mask.at[index, c]) and not incomplete[index]) for c in METRIC_COLUMNS]
        if ablation:
            reference = pd.isna(row["table4_row"])
            method = row["method"] if row["source"] == "paper" or reference else \
                setting_label(row["recipe"], row["configuration"], row["plans"], row["dataset"] if several else None)
            source = f"{MINUS} {row['compared_with']}" if table.number == "4b" else SOURCE_LABELS[row["source"]]
            lead = ["" if reference else str(row["table4_row"]), method + dagger, source, _sample(row)]
            key = "reference" if reference else row["table4_row"]
        else:
            lead = [row["method"] + dagger, "" if pd.isna(row["reference"]) else f"[{row['reference']}]",
                    "" if pd.isna(row["year"]) else str(row["year"]), _sample(row)]
            key = row["source"]
        if not rows or rows[-1][0] != key:
            rows.append((key, []))
        rows[-1][1].append((lead, cells))
    titles = GROUP_TITLES if not ablation else {"reference": REFERENCE_TITLE}
    groups = [(titles.get(key, ""), members) for key, members in rows]
    if ablation:
        lead = ["Row", "Method", "Difference" if table.number == "4b" else "Source", "n"]
        spec = r"c>{\raggedright\arraybackslash}p{3.6cm}ll"
    else:
        lead, spec = ["Method", "Ref.", "Year", "n"], r">{\raggedright\arraybackslash}p{6.3cm}lll"
    return Layout(lead, metric_columns(table.hd95_unit), groups, spec)


def sheet(item: Table | Sheet) -> Sheet:
    """A paper table as a :class:`Sheet` (a sheet stays as it is)."""
    if isinstance(item, Sheet):
        return item
    return Sheet(f"table{item.number}", f"Table {item.number}.", CAPTIONS[item.number], layout(item), item.footnotes)


def _spans(columns: list[Column]) -> list[tuple[str, int, int]]:
    """(top, first, last) of each run of consecutive columns with the same ``top`` (0-based)."""
    spans: list[tuple[str, int, int]] = []
    for index, column in enumerate(columns):
        if spans and spans[-1][0] == column.top:
            spans[-1] = (column.top, spans[-1][1], index)
        else:
            spans.append((column.top, index, index))
    return spans


def to_markdown(item: Table | Sheet) -> str:
    """The table as GitHub Markdown: caption, pipe table (best values in bold), footnotes."""
    item = sheet(item)
    shape = item.layout
    escape = lambda text: text.replace("|", "\\|")  # noqa: E731
    header = shape.lead + [c.flat for c in shape.columns]
    lines = [f"**{item.title}** {item.caption}.", "", "| " + " | ".join(header) + " |",
             "|" + "|".join("---" for _ in header) + "|"]
    for title, members in shape.groups:
        if title:
            lines.append(f"| *{escape(title)}* |" + " |" * (len(header) - 1))
        for lead, cells in members:
            texts = [c.text + (f" {c.below}" if c.below else "") for c in cells]
            texts = [f"**{t}**" if c.bold else t for t, c in zip(texts, cells)]
            lines.append("| " + " | ".join(escape(t) for t in lead + texts) + " |")
    lines += [""] + [f"- {note}" for note in item.footnotes]
    return "\n".join(lines) + "\n"


_LATEX_SPECIAL = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#",
                  "_": r"\_", "{": r"\{", "}": r"\}",
                  "~": r"\textasciitilde{}", "^": r"\textasciicircum{}", DAGGER: r"$^\dagger$",
                  "\u00b1": r"$\pm$", MINUS: r"$-$", "\u00d7": r"$\times$", NOISE_MARK: r"$^\ddagger$"}


_BREAK_AFTER = {"_": r"\_\allowbreak{}", "/": r"/\allowbreak{}"}


def latex_escape(text: str, *, breaks: bool = False) -> str:
    """Escape LaTeX's special characters in plain text.

    Args:
        text: the text.
        breaks: allow line breaks after ``/`` and ``_`` (for paths and trainer names in footnotes).
    """
    special = {**_LATEX_SPECIAL, **_BREAK_AFTER} if breaks else _LATEX_SPECIAL
    return "".join(special.get(ch, ch) for ch in str(text))


def to_latex(item: Table | Sheet) -> str:
    """The table as a booktabs ``table*`` (needs ``booktabs``, ``array``, ``graphicx``), best values bold,
    standard deviations on their own line, footnotes below; the tabular is scaled down to the text width,
    and to the height the page leaves beside the caption and the footnotes, where it would not fit."""
    item = sheet(item)
    shape = item.layout
    n_lead = len(shape.lead)
    width = n_lead + len(shape.columns)

    def cell(c: Cell) -> str:
        text = latex_escape(c.text)
        text = rf"\textbf{{{text}}}" if c.bold else text
        return rf"\druwasstd{{{text}}}{{{latex_escape(c.below)}}}" if c.below else text

    spans = _spans(shape.columns)
    lines = [f"% {item.title} of nnunetv2-druwas (python -m analysis.tables); "
             r"needs \usepackage{booktabs,array,graphicx}",
             r"\providecommand{\druwasstd}[2]{\begin{tabular}[t]{@{}r@{}}#1\\[-2pt]{\tiny #2}\end{tabular}}",
             r"\ifdefined\druwasheight\else\newdimen\druwasheight\fi",
             r"\begin{table*}[tp]", r"\centering", r"\scriptsize", r"\setlength{\tabcolsep}{3.5pt}",
             rf"\caption{{{latex_escape(item.caption)}.}}", rf"\label{{tab:druwas-{item.name}}}",
             r"\sbox0{\begin{tabular}{" + shape.lead_spec + "r" * len(shape.columns) + "}", r"\toprule",
             " & " * (n_lead - 1) + "".join(rf" & \multicolumn{{{last - first + 1}}}{{c}}{{{latex_escape(top)}}}"
                                            for top, first, last in spans) + r" \\",
             " ".join(rf"\cmidrule(lr){{{n_lead + first + 1}-{n_lead + last + 1}}}" for _, first, last in spans),
             " & ".join([latex_escape(h) for h in shape.lead] + [latex_escape(c.sub) for c in shape.columns])
             + r" \\"]
    for title, members in shape.groups:
        lines.append(r"\midrule")
        if title:
            lines.append(rf"\multicolumn{{{width}}}{{l}}{{\emph{{{latex_escape(title)}}}}} \\")
        for lead, cells in members:
            lines.append(" & ".join([latex_escape(t) for t in lead] + [cell(c) for c in cells]) + r" \\")
    lines += [r"\bottomrule", r"\end{tabular}}%",
              r"\sbox1{\parbox{\linewidth}{\scriptsize\raggedright"]
    lines += [latex_escape(note, breaks=True) + r"\par" for note in item.footnotes]
    lines += [r"}}%",
              r"\druwasheight=\dimexpr0.94\textheight-\ht1-\dp1-5\baselineskip\relax",
              r"\ifdim\wd0>\linewidth\sbox0{\resizebox{\linewidth}{!}{\usebox0}}\fi",
              r"\ifdim\dimexpr\ht0+\dp0\relax>\druwasheight\resizebox*{!}{\druwasheight}{\usebox0}"
              r"\else\usebox0\fi", r"\par\smallskip", r"\usebox1", r"\end{table*}"]
    return "\n".join(lines) + "\n"


LATEX_PREAMBLE = "\n".join([
    r"\documentclass[twocolumn]{article}",
    r"\usepackage[letterpaper,textwidth=6.875in,textheight=8.875in]{geometry}  % a CVPR/IEEE page",
    r"\usepackage{booktabs,array,graphicx}",
])


def latex_document(bodies: list[str]) -> str:
    """A document that compiles with ``pdflatex`` on its own and shows each table body on its page.

    Args:
        bodies: LaTeX of tables (:func:`to_latex`) or ``\\input{...}`` lines.
    """
    return "\n".join([LATEX_PREAMBLE, r"\begin{document}", *bodies, r"\end{document}"]) + "\n"


def to_html(item: Table | Sheet) -> str:
    """The table as an HTML ``<table>`` with its caption and footnotes (for the report page)."""
    item = sheet(item)
    shape = item.layout
    escape = html.escape
    width = len(shape.lead) + len(shape.columns)
    parts = [f'<table class="paper" id="{item.name}">',
             f"<caption><b>{escape(item.title)}</b> {escape(item.caption)}.</caption>", "<thead><tr>",
             *[f'<th rowspan="2">{escape(h)}</th>' for h in shape.lead],
             *[f'<th colspan="{last - first + 1}">{escape(top)}</th>' for top, first, last in _spans(shape.columns)],
             "</tr><tr>", *[f"<th>{escape(c.sub)}</th>" for c in shape.columns], "</tr></thead>"]
    for title, members in shape.groups:
        parts.append("<tbody>")
        if title:
            parts.append(f'<tr class="group"><th colspan="{width}">{escape(title)}</th></tr>')
        for lead, cells in members:
            tds = [f"<td>{escape(t)}</td>" for t in lead]
            for cell in cells:
                text = escape(cell.text)
                text = f"<strong>{text}</strong>" if cell.bold else text
                below = f'<br><span class="std">{escape(cell.below)}</span>' if cell.below else ""
                tds.append(f'<td class="num">{text}{below}</td>')
            parts.append("<tr>" + "".join(tds) + "</tr>")
        parts.append("</tbody>")
    parts.append("</table>")
    parts.append('<ul class="notes">' + "".join(f"<li>{escape(n)}</li>" for n in item.footnotes) + "</ul>")
    return "\n".join(parts)
