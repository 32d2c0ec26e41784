"""``protocols.csv``: the same predictions under every evaluation protocol, side by side.

For every measured row (a trainer of a dataset, plans and configuration, its repeats together) and
region: the mean Dice and HD95 under each protocol (as the tables would show them with
``--protocol NAME``: the mean over repeats of the run means), how many cases each mean is over, and
each HD95's ratio to ``brats``'s. The ratio is the mean HD95 under the protocol divided by the mean
HD95 under ``brats`` over the (fold, case) items that both have an HD95 for (per-case values
averaged over repeats), so both means of a ratio are over the same cases; ``hd95_ratio_<p>_n`` says
how many (no ratio where the ``brats`` mean is 0). Every protocol's numbers come from :func:`analysis.collect.collect`, which scores the folds
that lack the protocol's file; a protocol that cannot score a fold (the ``authors`` protocol on
volumes that are not 240 x 240 x 155, a fold without ``validation/`` predictions) leaves its cells
empty and is noted, never fatal.

Columns of ``protocols.csv``: dataset, trainer, plans, configuration, variant, recipe, method,
region, n_cases, folds, repeats (of the ``brats`` rows, else of the first protocol that has the row),
then for every protocol ``p``: ``dice_<p>``, ``dice_<p>_n``, ``hd95_<p>``, ``hd95_<p>_n``,
``complete_<p>`` and, except for ``brats``, ``hd95_ratio_<p>`` and ``hd95_ratio_<p>_n``.
"""
from __future__ import annotations

import pandas as pd

from analysis.collect import REGIONS, ROW_KEYS, Collection
from analysis.display import ablation_row, metric_label, sample_label
from analysis.render import DAGGER, DECIMALS, Cell, Column, Layout, Sheet, number_text
from nnunetv2_druwas.evaluation.protocols import DEFAULT_PROTOCOL, PROTOCOLS

NAME = "protocols"
TITLE = "Protocols."
CAPTION = ("The same predictions under every evaluation protocol: mean Dice and HD95 per measured row and region, "
           "and each HD95's ratio to the brats protocol's")
KEYS = ["dataset", "trainer", "plans", "configuration"]
DESCRIBED = ["variant", "recipe", "method", "n_cases", "folds", "repeats"]


def compared_protocols(names: list[str] | None) -> list[str]:
    """The protocols of the comparison, in the order of :data:`PROTOCOLS`, ``brats`` always among them.

    Args:
        names: protocol names; None: all of them; empty: none (no comparison).
    """
    if names is None:
        return list(PROTOCOLS)
    if not names:
        return []
    chosen = {DEFAULT_PROTOCOL, *names}
    return [name for name in PROTOCOLS if name in chosen]


def protocol_rows(collections: dict[str, Collection]) -> tuple[pd.DataFrame, list[str]]:
    """The wide table of the module docstring and the notes about it.

    Args:
        collections: protocol -> :func:`analysis.collect.collect` of the same results under it
            (``brats`` among them for the ratios); empty: an empty table.
    """
    from analysis.stats import over_repeats
    from analysis.tables import measured_rows

    if not collections:
        return pd.DataFrame(columns=[*KEYS, *DESCRIBED[:3], "region", *DESCRIBED[3:]]), []
    long = []
    for protocol, collection in collections.items():
        rows = measured_rows(collection)
        for region in REGIONS:
            part = rows[[*KEYS, *DESCRIBED, "complete"]].assign(region=region, protocol=protocol)
            for metric in ("dice", "hd95"):
                part[metric] = rows[f"{metric}_{region.lower()}"].to_numpy(float)
                part[f"{metric}_n"] = rows[f"{metric}_{region.lower()}_n"].to_numpy()
            long.append(part)
    long = pd.concat(long, ignore_index=True)
    order = {name: k for k, name in enumerate(collections)}
    first = long.sort_values("protocol", key=lambda p: p.map(order), kind="stable") \
        .drop_duplicates([*KEYS, "region"])[[*KEYS, "region", *DESCRIBED]]
    frame = first.set_index([*KEYS, "region"])
    for protocol in collections:
        values = long[long["protocol"] == protocol].set_index([*KEYS, "region"])
        frame[f"dice_{protocol}"] = values["dice"]
        frame[f"dice_{protocol}_n"] = values["dice_n"].astype("Int64")
        frame[f"hd95_{protocol}"] = values["hd95"]
        frame[f"hd95_{protocol}_n"] = values["hd95_n"].astype("Int64")
        frame[f"complete_{protocol}"] = values["complete"].astype("boolean")
        if protocol != DEFAULT_PROTOCOL and DEFAULT_PROTOCOL in collections:
            ratio, n = _matched_ratio(over_repeats(collections[protocol].per_case),
                                      over_repeats(collections[DEFAULT_PROTOCOL].per_case))
            frame[f"hd95_ratio_{protocol}"] = ratio
            frame[f"hd95_ratio_{protocol}_n"] = n.reindex(frame.index).fillna(0).astype(int)
    frame = frame.reset_index()
    frame["region"] = pd.Categorical(frame["region"], categories=list(REGIONS), ordered=True)
    frame["row"] = frame["variant"].map(ablation_row).astype("Int64")     # ablation rows first, references last
    frame = frame.sort_values(["dataset", "row", "recipe", "trainer", "plans", "configuration", "region"],
                              na_position="last", ignore_index=True).drop(columns="row")
    frame["region"] = frame["region"].astype(str)
    frame = frame[[*KEYS, *DESCRIBED[:3], "region", *DESCRIBED[3:],
                   *[c for c in frame.columns if c not in KEYS + DESCRIBED + ["region"]]]]
    return frame, _notes(collections, frame)


def _matched_ratio(pooled: pd.DataFrame, brats: pd.DataFrame) -> tuple[pd.Series, pd.Series]:
    """Mean HD95 of ``pooled`` / mean HD95 of ``brats`` over the items both have a value for, and their count,
    per (dataset, trainer, plans, configuration, region)."""
    items = [*KEYS, "fold", "case", "region"]
    both = pooled[items + ["hd95"]].merge(brats[items + ["hd95"]], on=items, suffixes=("", "_brats")).dropna(
        subset=["hd95", "hd95_brats"])
    grouped = both.groupby([*KEYS, "region"])
    means = grouped[["hd95", "hd95_brats"]].mean()
    ratio = means["hd95"] / means["hd95_brats"].where(means["hd95_brats"] != 0)
    return ratio, grouped.size()


def _notes(collections: dict[str, Collection], frame: pd.DataFrame) -> list[str]:
    """What each protocol is, how the ratio is made, and which protocol could not score what."""
    notes = [f"{name}: {PROTOCOLS[name].description}; HD95 in {PROTOCOLS[name].hd95_unit} (rules from "
             f"{PROTOCOLS[name].source})." for name in collections]
    if DEFAULT_PROTOCOL in collections and len(collections) > 1:
        notes.append("HD95 <protocol> / brats: the mean HD95 under the protocol divided by the mean HD95 under brats, "
                     "both over the (fold, case) items that have an HD95 under both (per-case values averaged over "
                     "repeats); none where the brats mean is 0; a unit other than mm makes it voxels per mm.")
    notes.append("Each mean is the mean over the row's repeats of the run means, as in the tables; a cell over "
                 f"fewer cases than the row's says n=...; {DAGGER} a row incomplete under a protocol that has "
                 "values for it (its runs are named under the tables of that protocol).")
    baseline = next(iter(collections.values())).runs.set_index(["dataset", "trainer", "plans", "configuration"])
    for name, collection in list(collections.items())[1:]:
        runs = collection.runs.set_index(["dataset", "trainer", "plans", "configuration"])
        fewer = runs[runs["folds"].str.len() < baseline["folds"].reindex(runs.index).fillna("").str.len()]
        if fewer.empty:
            continue
        example = fewer.iloc[0]
        reason = example["issues"].split("; ")[0]
        datasets = ", ".join(sorted(fewer.index.get_level_values("dataset").unique()))
        notes.append(f"{name}: {len(fewer)} of {len(runs)} runs have fewer scored folds than under "
                     f"{next(iter(collections))} ({datasets}); e.g. {example.name[1]}: {reason}.")
    return notes


def protocol_sheet(frame: pd.DataFrame, notes: list[str], protocols: list[str]) -> Sheet:
    """``protocols.md``/``.tex``/HTML: a group of rows (its regions) per measured row, the protocols side by side.

    Args:
        frame: :func:`protocol_rows`' table.
        notes: its notes (the sheet's footnotes).
        protocols: the protocols compared, in their column order.
    """
    columns, cells = [], []
    for name in protocols:
        unit = PROTOCOLS[name].hd95_unit
        columns += [Column(name, "Dice", f"Dice {name}"), Column(name, metric_label("hd95", unit), f"HD95 {name} ({unit})")]
        cells += [("dice", f"dice_{name}", f"dice_{name}_n"), ("hd95", f"hd95_{name}", f"hd95_{name}_n")]
        if name != DEFAULT_PROTOCOL:
            columns.append(Column(name, "/ brats", f"HD95 {name} / brats"))
            cells.append(("hd95", f"hd95_ratio_{name}", f"hd95_ratio_{name}_n"))
    several = frame["dataset"].nunique() > 1
    groups = []
    for _, rows in frame.groupby(KEYS, sort=False):
        first = rows.iloc[0]
        complete = not any(rows[f"complete_{p}"].eq(False).any() for p in protocols if f"complete_{p}" in rows)
        title = first["method"] + (f", {first['dataset']}" if several else "") + ("" if complete else DAGGER)
        members = []
        for _, row in rows.iterrows():
            sample = sample_label(int(row["n_cases"]), row["folds"], int(row["repeats"]))
            members.append(([row["region"], sample], [_cell(row, *spec) for spec in cells]))
        groups.append((title, members))
    if not protocols:
        notes = ["No protocols compared (--compare-protocols without names)."]
    elif frame.empty:
        notes = ["No measured rows to compare.", *notes]
    layout = Layout(["Region", "n"], columns, groups, "ll")
    return Sheet(NAME, TITLE, CAPTION, layout, notes)


def _cell(row: pd.Series, metric: str, column: str, count: str) -> Cell:
    value = row.get(column)
    if value is None or pd.isna(value):
        return Cell("-")
    n = row.get(count)
    fewer = f"(n={int(n)})" if n is not None and not pd.isna(n) and n < row["n_cases"] else ""
    return Cell(number_text(float(value), DECIMALS[metric]), fewer)

