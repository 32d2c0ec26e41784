"""Tables 1-4 as Markdown, LaTeX (booktabs) and HTML, from one layout.

What every format shows (decisions):

- Published and the paper's values exactly as their source printed them (``<metric>_printed``
  of :mod:`analysis.published`); measured Dice with 4 decimals, HD95 with 2, the sample standard
  deviation under (LaTeX, HTML) or beside (Markdown) the mean, and ``n (folds ...)`` of every
  measured row (:func:`analysis.display.sample_label`). A cell computed over fewer values than the
  row's cases says ``n=...``.
- Bold: the best value of a column (highest Dice, lowest HD95) within comparable rows: among the
  published rows *and the paper's own rows* (all are numbers printed by a source under its own,
  unstated protocol), and separately among the complete measured rows (one harness, one protocol),
  compared at the printed precision. Difference rows and incomplete (dagger) runs are never bold.
- Tables 1-3 group their rows (published, the paper's, measured) under a heading each; Table 4
  groups by its row number: the paper's row, the measured runs of that variant, and ``measured -
  paper`` (the measured row minus the paper's row of the same variant).
- LaTeX: a ``table*`` float (full text width of a two-column paper) that needs ``booktabs``,
  ``array`` and ``graphicx``; a tabular taller than 3/4 of the page (Table 1 with more than about 15
  measured rows) is scaled down to that height so the float still fits; long method names wrap, paths in footnotes may break after ``/`` and ``_``, negative
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
}
DAGGER = "\u2020"
DIFFERENCE = "measured - paper"
DECIMALS = {"dice": 4, "hd95": 2}
GROUP_TITLES = {"published": "Published", "paper": "This paper (as printed)",
                "measured": "Measured (this harness)"}
SOURCE_LABELS = {"paper": "paper", "measured": "measured", DIFFERENCE: f"measured {MINUS} paper"}


@dataclass
class Table:
    """One of the paper's tables: its rows (``frame``, columns :data:`analysis.tables.TABLE_COLUMNS`),
    footnotes and the unit of its measured HD95 values."""
    number: int
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
class Layout:
    """What every format renders: lead columns, then six metric columns, rows in titled groups."""
    lead: list[str]
    unit: str
    groups: list[tuple[str, list[tuple[list[str], list[Cell]]]]]


def _incomplete(frame: pd.DataFrame) -> pd.Series:
    return frame["source"].isin(["measured", DIFFERENCE]) & ~frame["complete"].eq(True)


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


def _number(value: float, decimals: int, signed: bool = False) -> str:
    return f"{value:{'+' if signed else ''}.{decimals}f}".replace("-", MINUS)


def _cell(row: pd.Series, column: str, bold: bool) -> Cell:
    metric = column.split("_")[0]
    if row["source"] in ("published", "paper"):
        printed = row.get(f"{column}_printed")
        return Cell(printed if isinstance(printed, str) else "-", bold=bold)
    value, decimals = row[column], DECIMALS[metric]
    if pd.isna(value):
        return Cell("-")
    if row["source"] == DIFFERENCE:
        return Cell(_number(value, decimals, signed=True))
    below = "" if pd.isna(row[f"{column}_std"]) else "\u00b1" + _number(row[f"{column}_std"], decimals)
    count = row[f"{column}_n"]
    if not pd.isna(count) and not pd.isna(row["n_cases"]) and count < row["n_cases"]:
        below += f" (n={count})"
    return Cell(_number(value, decimals), below, bold)


def layout(table: Table) -> Layout:
    """The rows and cells every format of ``table`` shows."""
    frame = table.frame
    mask = best_mask(frame)
    incomplete = _incomplete(frame)
    measured = frame["source"] == "measured"
    several = frame.loc[measured, "dataset"].nunique() > 1
    rows = []
    for index, row in frame.iterrows():
        dagger = DAGGER if incomplete[index] else ""
        sample = "" if pd.isna(row["n_cases"]) else sample_label(int(row["n_cases"]), row["folds"])
        cells = [_cell(row, c, bool(mask.at[index, c]) and not incomplete[index]) for c in METRIC_COLUMNS]
        if table.number == 4:
            key = "" if pd.isna(row["table4_row"]) else str(row["table4_row"])   # "": a reference, no row
            method = row["method"] if row["source"] == "paper" or not key else \
                setting_label(row["recipe"], row["configuration"], row["plans"], row["dataset"] if several else None)
            lead = [key, method + dagger, SOURCE_LABELS[row["source"]], sample]
        else:
            lead = [row["method"] + dagger, "" if pd.isna(row["reference"]) else f"[{row['reference']}]",
                    "" if pd.isna(row["year"]) else str(row["year"]), sample]
            key = row["source"]
        if not rows or rows[-1][0] != key:
            rows.append((key, []))
        rows[-1][1].append((lead, cells))
    groups = [("" if table.number == 4 else GROUP_TITLES[key], members) for key, members in rows]
    lead = ["Row", "Method", "Source", "n"] if table.number == 4 else ["Method", "Ref.", "Year", "n"]
    return Layout(lead, table.hd95_unit, groups)


def to_markdown(table: Table) -> str:
    """The table as GitHub Markdown: caption, pipe table (best values in bold), footnotes."""
    shape = layout(table)
    escape = lambda text: text.replace("|", "\\|")  # noqa: E731
    header = shape.lead + [f"Dice {r}" for r in REGIONS] + [f"HD95 {r} ({shape.unit})" for r in REGIONS]
    lines = [f"**Table {table.number}.** {CAPTIONS[table.number]}.", "", "| " + " | ".join(header) + " |",
             "|" + "|".join("---" for _ in header) + "|"]
    for title, members in shape.groups:
        if title:
            lines.append(f"| *{title}* |" + " |" * (len(header) - 1))
        for lead, cells in members:
            texts = [c.text + (f" {c.below}" if c.below else "") for c in cells]
            texts = [f"**{t}**" if c.bold else t for t, c in zip(texts, cells)]
            lines.append("| " + " | ".join(escape(t) for t in lead + texts) + " |")
    lines += [""] + [f"- {note}" for note in table.footnotes]
    return "\n".join(lines) + "\n"


_LATEX_SPECIAL = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#",
                  "_": r"\_", "{": r"\{", "}": r"\}",
                  "~": r"\textasciitilde{}", "^": r"\textasciicircum{}", DAGGER: r"$^\dagger$",
                  "\u00b1": r"$\pm$", MINUS: r"$-$", "\u00d7": r"$\times$"}


_BREAK_AFTER = {"_": r"\_\allowbreak{}", "/": r"/\allowbreak{}"}


def latex_escape(text: str, *, breaks: bool = False) -> str:
    """Escape LaTeX's special characters in plain text.

    Args:
        text: the text.
        breaks: allow line breaks after ``/`` and ``_`` (for paths and trainer names in footnotes).
    """
    special = {**_LATEX_SPECIAL, **_BREAK_AFTER} if breaks else _LATEX_SPECIAL
    return "".join(special.get(ch, ch) for ch in str(text))


def to_latex(table: Table) -> str:
    """The table as a booktabs ``table*`` (needs ``booktabs``, ``array``, ``graphicx``), best values bold,
    standard deviations on their own line, footnotes below."""
    shape = layout(table)
    n_lead = len(shape.lead)
    width = len(shape.lead) + 6
    method = r">{\raggedright\arraybackslash}p{%s}" % ("3.6cm" if table.number == 4 else "6.3cm")
    spec = ("c" + method + "l" if table.number == 4 else method + "ll") + "l" + "r" * 6

    def cell(c: Cell) -> str:
        text = latex_escape(c.text)
        text = rf"\textbf{{{text}}}" if c.bold else text
        return rf"\druwasstd{{{text}}}{{{latex_escape(c.below)}}}" if c.below else text

    lines = [f"% Table {table.number} of nnunetv2-druwas (python -m analysis.tables); "
             r"needs \usepackage{booktabs,array,graphicx}",
             r"\providecommand{\druwasstd}[2]{\begin{tabular}[t]{@{}r@{}}#1\\[-2pt]{\tiny #2}\end{tabular}}",
             r"\begin{table*}[tp]", r"\centering", r"\scriptsize", r"\setlength{\tabcolsep}{3.5pt}",
             rf"\caption{{{latex_escape(CAPTIONS[table.number])}.}}", rf"\label{{tab:druwas{table.number}}}",
             r"\sbox0{\begin{tabular}{" + spec + "}", r"\toprule",
             " & " * (n_lead - 1) + rf" & \multicolumn{{3}}{{c}}{{Dice}} & "
             rf"\multicolumn{{3}}{{c}}{{{latex_escape(metric_label('hd95', shape.unit))}}} \\",
             rf"\cmidrule(lr){{{n_lead + 1}-{n_lead + 3}}} \cmidrule(lr){{{n_lead + 4}-{n_lead + 6}}}",
             " & ".join(shape.lead + list(REGIONS) * 2) + r" \\"]
    for title, members in shape.groups:
        lines.append(r"\midrule")
        if title:
            lines.append(rf"\multicolumn{{{width}}}{{l}}{{\emph{{{latex_escape(title)}}}}} \\")
        for lead, cells in members:
            lines.append(" & ".join([latex_escape(t) for t in lead] + [cell(c) for c in cells]) + r" \\")
    lines += [r"\bottomrule", r"\end{tabular}}%",
              r"\ifdim\dimexpr\ht0+\dp0\relax>0.75\textheight\resizebox*{!}{0.75\textheight}{\usebox0}"
              r"\else\usebox0\fi", r"\par\smallskip",
              r"\parbox{\linewidth}{\scriptsize\raggedright"]
    lines += [latex_escape(note, breaks=True) + r"\par" for note in table.footnotes]
    lines += ["}", r"\end{table*}"]
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


def to_html(table: Table) -> str:
    """The table as an HTML ``<table>`` with its caption and footnotes (for the report page)."""
    shape = layout(table)
    escape = html.escape
    width = len(shape.lead) + 6
    parts = [f'<table class="paper" id="table{table.number}">',
             f"<caption><b>Table {table.number}.</b> {escape(CAPTIONS[table.number])}.</caption>", "<thead><tr>",
             *[f'<th rowspan="2">{escape(h)}</th>' for h in shape.lead],
             '<th colspan="3">Dice</th>', f'<th colspan="3">{escape(metric_label("hd95", shape.unit))}</th>',
             "</tr><tr>", *[f"<th>{r}</th>" for r in REGIONS * 2], "</tr></thead>"]
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
    parts.append('<ul class="notes">' + "".join(f"<li>{escape(n)}</li>" for n in table.footnotes) + "</ul>")
    return "\n".join(parts)
