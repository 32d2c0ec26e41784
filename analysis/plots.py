"""Figures from the tidy tables (seaborn, Agg backend, each written as PNG and PDF).

- ``per_case_dice`` / ``per_case_hd95``: per-case values per region (columns) and run (rows of
  boxes, one colour per training setting), one row of panels per dataset. HD95 is on a
  symmetric-log axis (linear below 1 mm, so a 0 of two empty masks stays visible); empty-mask
  failures (exactly one of prediction and reference empty, or no prediction: HD95 373.13 mm,
  Dice 0 under the BraTS convention) are drawn as red crosses instead of plain points.
- ``switch_effects``: the mean paired difference (with minus without, matched cases only) that
  each ablation switch makes, per region, for Dice and HD95, per dataset and setting
  (:func:`analysis.stats.switch_effects`).
- ``measured_vs_paper``: each measured DRUwAS variant on BraTS 2020 against the paper's
  Table 4 row of the same variant, one point per variant and region, with the identity line.
- ``figure4_training_curves``: the paper's Figure 4: the ReLU run's pseudo Dice and loss per
  epoch followed by its Swish continuation's, per fold (thin) and their mean (thick), from
  nnU-Net's own training logs (:func:`analysis.curves.continuation_curves`).
- ``protocol_comparison``: every measured row's mean Dice, mean HD95 and HD95 ratio to ``brats``
  per region under every compared protocol side by side (:mod:`analysis.protocol_table`).

:func:`draw_all` returns every figure's name with a caption (the report shows both).
"""
from __future__ import annotations

from pathlib import Path

import pandas as pd

from analysis.collect import REGIONS
from analysis.display import (METRIC_NAMES, MINUS, SWITCH_NAMES, ablation_row, hd95_unit, metric_label,
                              run_label, setting_label, short_label)
from nnunetv2_druwas.files import Group, replaced_together
from nnunetv2_druwas.variants import variant_by_key

FAILURE_COLOR = "crimson"
KEY = "runs: Table 4 row and switches (Res residual blocks, SA spatial attention, AG attention gate)"


def _save(figure, folder: Path, name: str, group: Group) -> Path:
    """Write ``<name>.png`` and ``.pdf`` into ``group``; returns the PNG as written so far (its temporary)."""
    written = {}
    for suffix in ("png", "pdf"):
        written[suffix] = group.path(folder / f"{name}.{suffix}")
        figure.savefig(written[suffix], format=suffix, dpi=150, bbox_inches="tight")
    return written["png"]


def _setting(frame: pd.DataFrame, with_dataset: bool = False) -> pd.Series:
    return pd.Series([setting_label(r, c, p, d if with_dataset else None) for r, c, p, d in
                      zip(frame["recipe"], frame["configuration"], frame["plans"], frame["dataset"])],
                     index=frame.index, dtype=object)


def _method_order(frame: pd.DataFrame) -> list[str]:
    rows = frame.drop_duplicates("method")
    row = rows["variant"].map(lambda k: ablation_row(k) or 99)
    return rows.assign(row=row).sort_values(["row", "method"])["method"].tolist()


def failures(per_case: pd.DataFrame) -> pd.Series:
    """True for the empty-mask failures of the tidy table: no prediction, or exactly one of the
    prediction and the reference empty (the BraTS convention scores those Dice 0, HD95 373.13)."""
    n_pred = pd.to_numeric(per_case["n_pred"], errors="coerce")
    n_ref = pd.to_numeric(per_case["n_ref"], errors="coerce")
    return per_case["missing"].astype(bool) | ((n_pred == 0) != (n_ref == 0)) & n_pred.notna() & n_ref.notna()


HD95_TICKS = (0, 1, 2, 5, 10, 20, 50, 100, 200, 500)
DIFFERENCE_TICKS = (-1000, -100, -10, -1, 0, 1, 10, 100, 1000)   # labelled; 2 and 5 of each decade unlabelled
RATIO_TICKS = (0, 0.5, 1, 2, 5, 10, 20, 50, 100)


def _symlog_axis(ax, axis: str = "x", ticks: tuple[float, ...] = HD95_TICKS) -> None:
    """HD95 on a symmetric-log axis (linear between -1 and 1): plain labels at ``ticks``, unlabelled minor
    ticks at 2 and 5 of each decade."""
    from matplotlib.ticker import FixedLocator, NullFormatter, ScalarFormatter

    getattr(ax, f"set_{axis}scale")("symlog", linthresh=1.0, linscale=0.4)
    target = ax.xaxis if axis == "x" else ax.yaxis
    target.set_major_locator(FixedLocator(ticks))
    target.set_major_formatter(ScalarFormatter())
    target.set_minor_locator(FixedLocator([s * m * 10 ** e for s in (-1, 1) for m in (2, 5) for e in range(4)]))
    target.set_minor_formatter(NullFormatter())


def _per_case_figure(data: pd.DataFrame, metric: str, unit: str):
    import matplotlib.pyplot as plt
    import seaborn as sns
    from matplotlib.lines import Line2D

    datasets = sorted(data["dataset"].unique())
    settings = sorted(data["setting"].unique())
    palette = dict(zip(settings, sns.color_palette("colorblind", len(settings))))
    heights = [max(1.2, 0.22 * len(data.loc[data["dataset"] == d, "method"].unique()) * max(1, len(settings)) * 0.75)
               for d in datasets]
    figure, axes = plt.subplots(len(datasets), len(REGIONS), figsize=(11, sum(heights) + 1.4), squeeze=False,
                                sharex=True, sharey="row", gridspec_kw=dict(height_ratios=heights))
    for i, dataset in enumerate(datasets):
        subset = data[data["dataset"] == dataset]
        order = _method_order(subset)
        hue_order = [s for s in settings if s in set(subset["setting"])]
        common = dict(y="method", x=metric, hue="setting", order=order, hue_order=hue_order, dodge=True)
        for j, region in enumerate(REGIONS):
            ax = axes[i, j]
            cases = subset[subset["region"] == region]
            sns.boxplot(data=cases, palette=palette, showfliers=False, linewidth=0.7, ax=ax, legend=False,
                        boxprops=dict(alpha=0.45), **common)
            sns.stripplot(data=cases[~cases["failure"]], palette=palette, size=2.5, alpha=0.8, jitter=0.2, ax=ax,
                          legend=False, **common)
            failed = cases[cases["failure"]]
            if not failed.empty:
                sns.stripplot(data=failed, palette={s: FAILURE_COLOR for s in hue_order}, marker="X", size=5,
                              jitter=0.1, ax=ax, legend=False, **common)
            if metric == "hd95":
                _symlog_axis(ax)
            else:
                ax.set_xlim(-0.03, 1.03)
            ax.set_title(f"{region} \u00b7 {dataset}", fontsize=9)
            ax.set_ylabel("")
            ax.set_xlabel(metric_label(metric, unit, better=True) + (", symmetric log" if metric == "hd95" else "")
                          if i == len(datasets) - 1 else "")
            ax.tick_params(axis="y", labelsize=8)
    handles = [plt.Rectangle((0, 0), 1, 1, facecolor=palette[s], alpha=0.6) for s in settings]
    labels = list(settings)
    if data["failure"].any():
        values = sorted(data.loc[data["failure"], metric].dropna().unique())
        shown = ", ".join(f"{v:g}" for v in values[:3])
        handles.append(Line2D([], [], marker="X", color=FAILURE_COLOR, linestyle="", markersize=6))
        labels.append(f"empty-mask failure or no prediction ({METRIC_NAMES[metric]} = {shown}"
                      f"{' ' + unit if metric == 'hd95' else ''})")
    figure.legend(handles, labels, loc="lower center", ncol=min(3, len(labels)), frameon=False, fontsize=8,
                  bbox_to_anchor=(0.5, 0.0))
    figure.suptitle(f"Per-case {metric_label(metric, unit)} of every run (box: quartiles; points: cases)\n{KEY}",
                    fontsize=10)
    figure.tight_layout(rect=(0, 0.06 if len(labels) > 3 else 0.04, 1, 0.98))
    return figure


def _rows_of_panels(n_rows: int, n_columns: int, heights: list[float], width: float, **subplot_kw):
    """A figure with one titled subfigure per row (its title names the setting), ``n_columns`` axes each."""
    import matplotlib.pyplot as plt

    figure = plt.figure(figsize=(width, sum(heights) + 0.8), layout="constrained")
    rows = figure.subfigures(n_rows, 1, height_ratios=heights, squeeze=False)[:, 0]
    return figure, [(row, row.subplots(1, n_columns, squeeze=False, **subplot_kw)[0]) for row in rows]


def _switch_figure(effects: pd.DataFrame, unit: str):
    import seaborn as sns

    effects = effects.assign(setting=_setting(effects, with_dataset=True))
    effects["comparison"] = [f"{SWITCH_NAMES[s]}: {short_label(w)} vs {short_label(wo)}" for s, w, wo in
                             zip(effects["switch"], effects["with_variant"], effects["without_variant"])]
    settings = sorted(effects["setting"].unique())
    n_bars = effects.groupby("setting")["comparison"].nunique()
    heights = [max(1.8, 0.45 * n_bars[s] + 0.9) for s in settings]
    figure, rows = _rows_of_panels(len(settings), 2, heights, 11, sharey=True)
    for (row, axes), setting in zip(rows, settings):
        subset = effects[effects["setting"] == setting]
        order = subset.assign(rank=subset["switch"].map(list(SWITCH_NAMES).index)).sort_values(
            ["rank", "comparison"])["comparison"].unique().tolist()
        span = f"{subset['n'].min()}" if subset["n"].min() == subset["n"].max() else \
            f"{subset['n'].min()}-{subset['n'].max()}"
        row.suptitle(f"{setting}: n = {span} matched cases per bar", fontsize=9)
        for ax, metric in zip(axes, ("dice", "hd95")):
            sns.barplot(data=subset[subset["metric"] == metric], y="comparison", x="difference", hue="region",
                        order=order, hue_order=list(REGIONS), palette="colorblind", errorbar=None, ax=ax,
                        legend=False)
            ax.axvline(0, color="0.3", linewidth=0.8)
            if metric == "hd95":
                _symlog_axis(ax, "x", DIFFERENCE_TICKS)
            ax.set_xlabel(metric_label(metric, unit, better=True, what=f"difference, with {MINUS} without")
                          + (", symmetric log" if metric == "hd95" else ""), fontsize=8)
            ax.set_ylabel("")
            ax.tick_params(axis="y", labelsize=8)
    _region_legend(figure)
    figure.suptitle("Effect of turning one ablation switch on: mean paired difference over the matched cases\n"
                    + KEY, fontsize=10)
    return figure


def _region_legend(figure) -> None:
    import matplotlib.pyplot as plt
    import seaborn as sns

    colors = sns.color_palette("colorblind", len(REGIONS))
    figure.legend([plt.Rectangle((0, 0), 1, 1, color=c) for c in colors], list(REGIONS), title="region",
                  loc="outside right upper", frameon=False, fontsize=8)


def _versus_paper_figure(table4: pd.DataFrame, unit: str):
    import seaborn as sns
    from matplotlib.lines import Line2D

    paper = table4[table4["source"] == "paper"].set_index("variant")
    measured = table4[(table4["source"] == "measured") & table4["variant"].isin(paper.index)]
    points = []
    several = measured["dataset"].nunique() > 1
    for _, row in measured.iterrows():
        for metric in ("dice", "hd95"):
            for region in REGIONS:
                column = f"{metric}_{region.lower()}"
                points.append(dict(variant=f"{row['table4_row']} {variant_by_key(row['variant']).label}",
                                   setting=setting_label(row["recipe"], row["configuration"], row["plans"],
                                                         row["dataset"] if several else None),
                                   metric=metric, region=region, paper=paper.at[row["variant"], column],
                                   measured=row[column]))
    points = pd.DataFrame(points).dropna(subset=["paper", "measured"])
    settings = sorted(points["setting"].unique())
    variants = sorted(points["variant"].unique(), key=lambda v: int(v.split(" ")[0]))
    palette = dict(zip(variants, sns.color_palette("colorblind", len(variants))))
    markers = dict(zip(REGIONS, ("o", "X", "s")))
    figure, rows = _rows_of_panels(len(settings), 2, [3.6] * len(settings), 11)
    for (row, axes), setting in zip(rows, settings):
        row.suptitle(setting, fontsize=9)
        for ax, metric in zip(axes, ("dice", "hd95")):
            subset = points[(points["setting"] == setting) & (points["metric"] == metric)]
            sns.scatterplot(data=subset, x="paper", y="measured", hue="variant", style="region", hue_order=variants,
                            style_order=list(REGIONS), markers=markers, palette=palette, s=45, ax=ax, legend=False)
            values = subset[["paper", "measured"]].to_numpy(float).ravel()
            if metric == "hd95":
                _symlog_axis(ax, "x")
                _symlog_axis(ax, "y")
                low, high = 0, values.max() * 1.4
            else:
                pad = 0.05 * max(values.max() - values.min(), 0.05)
                low, high = values.min() - pad, min(1.0, values.max() + pad)
            ax.plot([low, high], [low, high], color="0.5", linestyle="--", linewidth=1)
            ax.set_xlim(low, high)
            ax.set_ylim(low, high)
            ax.set_title(metric_label(metric, unit, better=True) + (", symmetric log" if metric == "hd95" else ""),
                         fontsize=9)
            ax.set_xlabel("paper's Table 4 (as printed)", fontsize=8)
            ax.set_ylabel("measured (mean over cases)", fontsize=8)
    handles = [Line2D([], [], marker="o", linestyle="", color=palette[v]) for v in variants]
    handles += [Line2D([], [], marker=markers[r], linestyle="", color="0.3") for r in REGIONS]
    handles.append(Line2D([], [], linestyle="--", color="0.5"))
    figure.legend(handles, variants + list(REGIONS) + ["identity (measured = paper)"],
                  loc="outside right upper", frameon=False, fontsize=8)
    figure.suptitle("Measured means vs the paper's Table 4", fontsize=10, x=0.4)
    return figure


def _curves_figure(curves: pd.DataFrame):
    from matplotlib.lines import Line2D

    curves = curves.assign(setting=_setting(curves, with_dataset=True))
    settings = sorted(curves["setting"].unique())
    panels = ((("pseudo_dice", "pseudo Dice", "tab:green"),
               ("ema_pseudo_dice", "pseudo Dice, moving average", "darkgreen")),
              (("train_loss", "training loss", "tab:blue"), ("val_loss", "validation loss", "tab:orange")))
    figure, rows = _rows_of_panels(len(settings), 2, [3.2] * len(settings), 11)
    for (row, axes), setting in zip(rows, settings):
        subset = curves[curves["setting"] == setting]
        folds = sorted(subset["fold"].unique())
        running = sorted(subset.loc[subset["checkpoint"] != "checkpoint_final.pth", "fold"].unique())
        row.suptitle(f"{setting}: fold{'s' if len(folds) > 1 else ''} {', '.join(map(str, folds))}"
                     + (f" (still training: fold {', '.join(map(str, running))}, from checkpoint_latest.pth)"
                        if running else ""), fontsize=9)
        for ax, series in zip(axes, panels):
            for column, label, color in series:
                for _, part in subset.groupby(["fold", "phase"], sort=False):
                    ax.plot(part["epoch"], part[column], color=color, linewidth=0.6, alpha=0.35)
                for _, part in subset.groupby("phase", sort=False):   # the mean over the folds, phase by phase
                    mean = part.groupby("epoch")[column].mean()
                    ax.plot(mean.index, mean.to_numpy(), color=color, linewidth=1.8)
            phases = subset.groupby("phase", sort=False)["epoch"].agg(["min", "max"])
            for k, (phase, span) in enumerate(phases.iterrows()):
                if k:
                    ax.axvspan(span["min"] - 0.5, span["max"] + 0.5, color="0.92", zorder=0)
                    ax.axvline(span["min"] - 0.5, color="0.4", linestyle="--", linewidth=0.8)
                ax.text((span["min"] + span["max"]) / 2, 1.01, f"{phase}: epochs {span['min']}-{span['max']}",
                        transform=ax.get_xaxis_transform(), ha="center", va="bottom", fontsize=7, color="0.3")
            ax.set_xlabel("epoch", fontsize=8)
            ax.set_ylabel("pseudo Dice (higher is better)" if series is panels[0] else "loss (lower is better)",
                          fontsize=8)
            ax.set_xlim(subset["epoch"].min() - 0.5, subset["epoch"].max() + 0.5)
    labels = [label for series in panels for _, label, _ in series]
    colors = [color for series in panels for _, _, color in series]
    handles = [Line2D([], [], color=c, linewidth=1.8) for c in colors] + [Line2D([], [], color="0.5", linewidth=0.6)]
    figure.legend(handles, [f"{label} (mean of the folds)" for label in labels] + ["one fold"],
                  loc="outside lower center", ncol=3, frameon=False, fontsize=8)
    figure.suptitle("Figure 4: the ReLU run followed by its Swish continuation (nnU-Net's training logs: online "
                    "validation pseudo Dice and loss)", fontsize=10)
    return figure


def _protocols_figure(comparison: pd.DataFrame):
    import seaborn as sns

    protocols = [c.removeprefix("dice_") for c in comparison.columns
                 if c.startswith("dice_") and not c.endswith("_n")]
    several = comparison["dataset"].nunique() > 1
    labels = [f"{short_label(v, run_label(v, t, p))} \u00b7 " + setting_label(r, c, p, d if several else None)
              for v, t, p, r, c, d in zip(comparison["variant"], comparison["trainer"], comparison["plans"],
                                          comparison["recipe"], comparison["configuration"], comparison["dataset"])]
    long = []
    for protocol in protocols:
        for quantity, column in (("dice", f"dice_{protocol}"), ("hd95", f"hd95_{protocol}"),
                                 ("ratio", f"hd95_ratio_{protocol}")):
            if column in comparison:
                long.append(pd.DataFrame({"run": labels, "region": comparison["region"], "protocol": protocol,
                                          "quantity": quantity, "value": comparison[column].to_numpy(float)}))
    long = pd.concat(long, ignore_index=True).dropna(subset=["value"])
    quantities = [q for q in ("dice", "hd95", "ratio") if q in set(long["quantity"])]
    units = {p: hd95_unit(pd.DataFrame({"protocol": [p]})) for p in protocols}
    unit = " or ".join(sorted(set(units.values())))
    order = list(dict.fromkeys(labels))
    palette = dict(zip(protocols, sns.color_palette("colorblind", len(protocols))))
    height = max(2.2, 0.12 * len(order) * len(protocols) + 0.8)
    figure, rows = _rows_of_panels(len(quantities), len(REGIONS), [height] * len(quantities), 12, sharey=True)
    titles = {"dice": metric_label("dice", better=True),
              "hd95": metric_label("hd95", unit, better=True) + ", symmetric log",
              "ratio": "HD95 / brats's HD95 over the same cases, symmetric log (1: no change)"}
    for (row, axes), quantity in zip(rows, quantities):
        row.suptitle(titles[quantity], fontsize=9)
        for ax, region in zip(axes, REGIONS):
            subset = long[(long["quantity"] == quantity) & (long["region"] == region)]
            sns.barplot(data=subset, y="run", x="value", hue="protocol", order=order,
                        hue_order=[p for p in protocols if p in set(subset["protocol"])] or None, palette=palette,
                        errorbar=None, ax=ax, legend=False)
            if quantity == "ratio":
                ax.axvline(1, color="0.3", linewidth=0.8)
            if quantity != "dice":
                _symlog_axis(ax, "x", HD95_TICKS if quantity == "hd95" else RATIO_TICKS)
            ax.set_title(region, fontsize=9)
            ax.set_xlabel("")
            ax.set_ylabel("")
            ax.tick_params(axis="y", labelsize=7)
    import matplotlib.pyplot as plt

    figure.legend([plt.Rectangle((0, 0), 1, 1, color=palette[p]) for p in protocols],
                  [f"{p} (HD95 in {units[p]})" if p in set(long["protocol"]) else f"{p} (no values)"
                   for p in protocols], title="protocol", loc="outside right upper",
                  frameon=False, fontsize=8)
    figure.suptitle("The same predictions under every evaluation protocol (mean over cases; runs: Table 4 row and "
                    "switches, or the reference's name)", fontsize=10)
    return figure


def draw_all(per_case: pd.DataFrame, table4: pd.DataFrame, effects: pd.DataFrame, curves: pd.DataFrame,
             folder: Path, group: Group | None = None,
             comparison: pd.DataFrame | None = None) -> dict[str, tuple[str, Path]]:
    """Draw every figure there is data for into ``folder``.

    Args:
        per_case: the tidy table (:func:`analysis.collect.collect`).
        table4: the rows of Table 4 (:func:`analysis.tables.build_tables`), paper and measured.
        effects: :func:`analysis.stats.switch_effects` of the same tidy table.
        curves: :func:`analysis.curves.continuation_curves` (Figure 4); may be empty.
        folder: where the PNG and PDF files go (created).
        group: the :class:`nnunetv2_druwas.files.Group` that replaces the figures together with other
            outputs (the tables); None: the figures are replaced together on their own.
        comparison: :func:`analysis.protocol_table.protocol_rows`' table; None or empty: no protocol figure.

    Returns:
        figure name -> (caption, the PNG as written: a temporary of ``group`` until it is committed).
    """
    if group is None:
        with replaced_together() as own:
            return draw_all(per_case, table4, effects, curves, folder, own, comparison)
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import seaborn as sns

    group.makedirs(folder)
    sns.set_theme(style="whitegrid", context="paper")
    unit = hd95_unit(per_case)
    drawn = {}

    def keep(figure, name: str, caption: str) -> None:
        drawn[name] = (caption, _save(figure, folder, name, group))
        plt.close(figure)

    data = per_case.assign(method=[short_label(v, run_label(v, t, p)) for v, t, p in
                                   zip(per_case["variant"], per_case["base_trainer"], per_case["plans"])],
                           setting=_setting(per_case), failure=failures(per_case))
    for metric in ("dice", "hd95"):
        keep(_per_case_figure(data, metric, unit), f"per_case_{metric}",
             f"Per-case {metric_label(metric, unit)} of every run, per region and dataset; rows are the runs "
             f"(Table 4 row and switches: Res residual blocks, SA spatial attention, AG attention gate), colours "
             f"their training setting; red crosses are empty-mask failures or missing predictions."
             + (" Symmetric-log axis, linear below 1." if metric == "hd95" else ""))
    if not effects.empty:
        keep(_switch_figure(effects, unit), "switch_effects",
             "Mean paired difference (with minus without the switch) over the cases both runs have, per region; "
             "the facet titles give the number of matched cases.")
    if ((table4["source"] == "measured") & table4["variant"].isin(table4.loc[table4["source"] == "paper",
                                                                              "variant"])).any():
        keep(_versus_paper_figure(table4, unit), "measured_vs_paper",
             "Each measured variant's mean against the paper's Table 4 value of the same variant (HD95 on log "
             "axes); points on the dashed line agree.")
    if comparison is not None and not comparison.empty:
        keep(_protocols_figure(comparison), "protocol_comparison",
             "Every measured row's mean Dice and HD95 per region under every protocol compared, and each HD95's "
             "ratio to the brats protocol's over the same cases (protocols.csv); log axes for HD95 and the ratio.")
    if not curves.empty:
        keep(_curves_figure(curves), "figure4_training_curves",
             "The paper's Figure 4: the ReLU run's epochs followed by its Swish continuation's on one axis "
             "(shaded), from nnU-Net's training logs (checkpoint_final.pth, or checkpoint_latest.pth while "
             "training); thin lines are folds, thick lines their mean.")
    return drawn
