"""``report.html``: every table, statistic, figure and note on one self-contained page.

The page needs no server and no network: styles are inline and every figure is embedded as a
``data:image/png;base64`` URI, so the single file can be mailed or opened from any folder.
"""
from __future__ import annotations

import base64
import html
from pathlib import Path

import numpy as np
import pandas as pd

from analysis.render import Sheet, Table, to_html

STYLE = """
body { font-family: system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; margin: 2rem auto; max-width: 1200px;
       padding: 0 1rem; color: #222; line-height: 1.4; }
h1 { font-size: 1.5rem; } h2 { font-size: 1.25rem; margin-top: 2.5rem; border-bottom: 1px solid #ccc; }
table { border-collapse: collapse; margin: 1rem 0 0.3rem; font-size: 0.8rem; }
caption { text-align: left; font-size: 0.9rem; padding-bottom: 0.3rem; }
th, td { padding: 0.15rem 0.45rem; border-bottom: 1px solid #e4e4e4; vertical-align: top; }
thead th { border-bottom: 2px solid #888; background: #f5f5f5; }
tr.group th { text-align: left; font-style: italic; background: #fafafa; }
td.num { text-align: right; white-space: nowrap; font-variant-numeric: tabular-nums; }
.std { color: #666; font-size: 0.7rem; }
ul.notes { font-size: 0.75rem; color: #444; margin-top: 0.2rem; }
figure { margin: 1.5rem 0; } figure img { max-width: 100%; border: 1px solid #eee; }
figcaption { font-size: 0.8rem; color: #444; }
nav a { margin-right: 0.8rem; }
.wide { overflow-x: auto; }
"""


def _text(value) -> str:
    if isinstance(value, (bool, np.bool_)):
        return "yes" if value else "no"
    if pd.isna(value):
        return "-"
    if isinstance(value, (float, np.floating)):
        return f"{int(value)}" if float(value).is_integer() else f"{value:.4g}"
    return str(value)


def frame_to_html(frame: pd.DataFrame, caption: str, *, table_id: str) -> str:
    """A statistics table as HTML: integers as such, other numbers with 4 significant digits; a column
    with one value in every row is named once in the caption instead.

    Args:
        frame: the rows to show (all of them).
        caption: what the table is.
        table_id: the HTML id (for links).
    """
    constant = [c for c in frame.columns if len(frame) > 1 and frame[c].astype(str).nunique() == 1]
    if constant:
        caption += "; every row: " + ", ".join(f"{c} = {_text(frame[c].iloc[0])}" for c in constant)
        frame = frame.drop(columns=constant)
    head = "".join(f"<th>{html.escape(str(c))}</th>" for c in frame.columns)
    rows = []
    for values in frame.itertuples(index=False):
        cells = [f'<td{" class=num" if isinstance(v, (int, float, np.number)) and not isinstance(v, bool) else ""}>'
                 f"{html.escape(_text(v))}</td>" for v in values]
        rows.append("<tr>" + "".join(cells) + "</tr>")
    return (f'<div class="wide"><table id="{table_id}"><caption>{html.escape(caption)}</caption><thead><tr>{head}'
            f"</tr></thead><tbody>{''.join(rows)}</tbody></table></div>")


def _image(path: Path) -> str:
    return "data:image/png;base64," + base64.b64encode(path.read_bytes()).decode("ascii")


def build_report(tables: list[Table | Sheet], statistics: list[tuple[str, str, pd.DataFrame]], notes: list[str],
                 figures: dict[str, tuple[str, Path]], source: str) -> str:
    """The report page as one HTML string.

    Args:
        tables: Tables 1-4 and 4b (:func:`analysis.tables.build_tables`) and the protocols sheet
            (:func:`analysis.protocol_table.protocol_sheet`), in the order shown.
        statistics: (id, caption, frame) of each statistics table to show.
        notes: remarks that concern no single table (datasets without a BraTS year, skipped folders, ranking).
        figures: figure name -> (caption, PNG file to embed) (:func:`analysis.plots.draw_all`).
        source: where the numbers come from (the results folder), for the page's header.
    """
    sections = [("tables", "Tables 1-4, 4b and protocols"), ("statistics", "Statistics"), ("figures", "Figures")]
    parts = ["<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
             "<title>nnunetv2-druwas: tables and figures</title>", f"<style>{STYLE}</style></head><body>",
             "<h1>nnunetv2-druwas: the paper's tables, statistics and figures</h1>",
             f"<p>Measured rows from <code>{html.escape(source)}</code>; every file beside this page holds the "
             "same numbers (CSV, Markdown, LaTeX, PNG/PDF).</p>",
             "<nav>" + "".join(f'<a href="#{key}">{title}</a>' for key, title in sections) + "</nav>"]
    if notes:
        parts.append('<h2 id="notes">Notes</h2><ul class="notes">'
                     + "".join(f"<li>{html.escape(n)}</li>" for n in notes) + "</ul>")
    parts.append('<h2 id="tables">Tables 1-4, 4b and protocols</h2>')
    parts += [to_html(table) for table in tables]
    parts.append('<h2 id="statistics">Statistics</h2>')
    for table_id, caption, frame in statistics:
        parts.append(frame_to_html(frame, caption, table_id=table_id) if not frame.empty else
                     f"<p id=\"{table_id}\">{html.escape(caption)}: nothing to compute (no measured runs).</p>")
    parts.append('<h2 id="figures">Figures</h2>')
    if not figures:
        parts.append("<p>No figures: there are no measured runs (or figures were turned off).</p>")
    for name, (caption, png) in figures.items():
        parts.append(f'<figure id="{name}"><img src="{_image(png)}" alt="{html.escape(name)}">'
                     f"<figcaption><b>{html.escape(name)}</b>: {html.escape(caption)}</figcaption></figure>")
    parts.append("</body></html>")
    return "\n".join(parts) + "\n"
