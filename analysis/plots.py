"""Figures from the tidy table (seaborn, Agg backend, each written as PNG and PDF).

- ``per_case_dice`` / ``per_case_hd95``: per-case values per region (columns) and run
  (x axis), one row of panels per dataset; boxes with the cases as points.
- ``switch_effects``: the mean difference (with minus without) that each ablation switch
  makes, per region, for Dice and HD95 (from :func:`analysis.stats.switch_effects`).
- ``measured_vs_published``: each measured DRUwAS variant on BraTS 2020 against the
  paper's Table 4 row of the same variant, one point per variant and region, with the
  identity line.
"""
from __future__ import annotations

from pathlib import Path

import pandas as pd

from analysis.collect import REGIONS
from nnunetv2_druwas.files import Group, replaced_together
from nnunetv2_druwas.variants import variant_by_key

METRIC_LABELS = {"dice": "Dice", "hd95": "HD95 (mm)"}


def _save(figure, folder: Path, name: str, group: Group) -> list[Path]:
    written = []
    for suffix in ("png", "pdf"):
        path = folder / f"{name}.{suffix}"
        figure.savefig(group.path(path), format=suffix, dpi=150, bbox_inches="tight")
        written.append(path)
    return written


def _run_name(frame: pd.DataFrame) -> pd.Series:
    name = frame["variant"].map(lambda k: k if isinstance(k, str) else None).fillna(frame["trainer"])
    recipe = frame["recipe"].fillna("")
    return name + recipe.map(lambda r: f" ({r})" if r else "") + " " + frame["configuration"]


def draw_all(per_case: pd.DataFrame, table4: pd.DataFrame, effects: pd.DataFrame, folder: Path,
             group: Group | None = None) -> list[Path]:
    """Draw every figure into ``folder``; returns the files written.

    Args:
        per_case: the tidy table.
        table4: the rows of Table 4 (:func:`analysis.tables.build_tables`), paper and measured.
        effects: :func:`analysis.stats.switch_effects` of the same tidy table.
        folder: where the PNG and PDF files go (created).
        group: the :class:`nnunetv2_druwas.files.Group` that replaces the files together with
            others (the tables); None: the figures are replaced together on their own.
    """
    if group is None:
        with replaced_together() as own:
            return draw_all(per_case, table4, effects, folder, own)
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import seaborn as sns

    folder.mkdir(parents=True, exist_ok=True)
    sns.set_theme(style="whitegrid", context="paper")
    written = []
    data = per_case.assign(run=_run_name(per_case))
    runs = data.drop_duplicates("run")
    runs = runs.assign(row=runs["variant"].map(lambda k: variant_by_key(k).table4_row if isinstance(k, str) else 99))
    order = runs.sort_values(["row", "run"])["run"].tolist()
    for metric in ("dice", "hd95"):
        grid = sns.catplot(data=data, x="run", y=metric, col="region", row="dataset", kind="box", order=order,
                           col_order=list(REGIONS), showfliers=False, color="0.85", height=3.2, aspect=1.2,
                           sharey=metric == "dice")
        grid.map_dataframe(sns.stripplot, x="run", y=metric, order=order, size=3, alpha=0.7, jitter=0.2)
        grid.set_axis_labels("", METRIC_LABELS[metric])
        for ax in grid.axes.flat:
            plt.setp(ax.get_xticklabels(), rotation=60, ha="right", rotation_mode="anchor")
        written += _save(grid.figure, folder, f"per_case_{metric}", group)
        plt.close(grid.figure)
    if not effects.empty:
        grid = sns.catplot(data=effects, x="switch", y="difference", hue="region", col="metric", kind="bar",
                           hue_order=list(REGIONS), errorbar=None, sharey=False, height=3.2, aspect=1.2)
        grid.set_axis_labels("switch turned on", "mean difference (with - without)")
        written += _save(grid.figure, folder, "switch_effects", group)
        plt.close(grid.figure)
    paper = table4[table4["source"] == "paper"].set_index("variant")
    measured = table4[table4["source"] == "measured"]
    if not measured.empty:
        points = []
        for _, row in measured.iterrows():
            for column in paper.columns:
                if column.startswith(("dice_", "hd95_")) and column.count("_") == 1:
                    points.append(dict(variant=row["variant"], recipe=row["recipe"], metric=column.split("_")[0],
                                       region=column.split("_")[1].upper(), published=paper.at[row["variant"], column],
                                       measured=row[column]))
        points = pd.DataFrame(points)
        grid = sns.relplot(data=points, x="published", y="measured", hue="variant", style="region", col="metric",
                           row="recipe",
                           facet_kws=dict(sharex=False, sharey=False), height=3.2)
        for (_, metric), ax in zip([(r, m) for r in grid.row_names for m in grid.col_names], grid.axes.flat):
            subset = points[points["metric"] == metric][["published", "measured"]].to_numpy().ravel()
            low, high = pd.Series(subset).min(), pd.Series(subset).max()
            ax.plot([low, high], [low, high], color="0.5", linestyle="--", linewidth=1)
        written += _save(grid.figure, folder, "measured_vs_published", group)
        plt.close(grid.figure)
    return written

