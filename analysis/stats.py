"""Statistics the paper does not report, computed from the tidy per-case table.

- :func:`wilcoxon_tests`: paired Wilcoxon signed-rank tests (``scipy.stats.wilcoxon``,
  two-sided, its defaults) per region and metric, between each ablation variant and the
  baseline and between the Swish and the ReLU (``full``) model. Pairs are matched on
  (dataset, fold, case); a pair with a missing value on either side is dropped. The runs
  compared share recipe, plans and configuration; datasets are pooled. The Holm
  correction runs over all tests of one (recipe, plans, configuration) group.
- :func:`bootstrap_ci`: percentile bootstrap 95 % confidence intervals of each run's
  mean per region and metric (``scipy.stats.bootstrap``; a fresh generator seeded with
  ``seed`` for every interval, so an interval does not depend on which others are computed).
- :func:`brats_ranking`: the BraTS ranking scheme: every run on a dataset is ranked per
  (fold, case), region and metric (Dice descending, HD95 ascending, ties get the average
  rank); a run's score is the mean of its ranks. Only (fold, case, region) items that every
  run of the dataset has a value for are ranked.
- :func:`switch_effects`: the effect of each ablation switch: the difference of run means
  between two variants that differ in that switch only (with minus without).

Everything here reads the tidy table of :mod:`analysis.collect`; scipy is imported inside
the functions so that importing this module stays fast.
"""
from __future__ import annotations

import warnings

import numpy as np
import pandas as pd

from analysis.collect import REGIONS, RUN_KEYS
from nnunetv2_druwas.errors import DruwasError
from nnunetv2_druwas.variants import VARIANTS

METRICS = ("dice", "hd95")
GROUP_KEYS = ["recipe", "plans", "configuration"]
SWITCHES = ("residual", "attention_gate", "spatial_attention", "nonlin")
HIGHER_IS_BETTER = {"dice": True, "hd95": False}


def holm(p_values) -> np.ndarray:
    """Holm-Bonferroni adjusted p-values (NaN entries stay NaN and do not count).

    Args:
        p_values: the unadjusted p-values of one family of tests.
    """
    p = np.asarray(p_values, dtype=float)
    adjusted = np.full_like(p, np.nan)
    valid = np.flatnonzero(~np.isnan(p))
    order = valid[np.argsort(p[valid], kind="stable")]
    m = len(order)
    running = 0.0
    for i, index in enumerate(order):
        running = max(running, min(1.0, (m - i) * p[index]))
        adjusted[index] = running
    return adjusted


def comparisons() -> list[tuple[str, str]]:
    """(variant, reference) pairs tested: every variant against the baseline, then Swish against ReLU."""
    swish = [v for v in VARIANTS if v.continues]
    return [(v.key, "baseline") for v in VARIANTS if v.key != "baseline"] + [(v.key, v.continues) for v in swish]


def _wide(group: pd.DataFrame, metric: str) -> pd.DataFrame:
    """(dataset, fold, case, region) x variant table of one metric."""
    try:
        return group.pivot(index=["dataset", "fold", "case", "region"], columns="variant", values=metric)
    except ValueError as exc:
        raise DruwasError(f"duplicate (dataset, fold, case, region) rows for one variant in "
                          f"{sorted(group['trainer'].unique())}; each brats_metrics.csv must list a case once") from exc


def wilcoxon_tests(per_case: pd.DataFrame) -> pd.DataFrame:
    """Paired Wilcoxon signed-rank tests, Holm-corrected; one row per test.

    Args:
        per_case: the tidy table of :func:`analysis.collect.collect`.

    Returns columns recipe, plans, configuration, variant, reference, region, metric, n (pairs),
    mean_variant, mean_reference, mean_difference and median_difference (variant minus reference),
    statistic, p_value, p_holm, significant (p_holm < 0.05).
    """
    from scipy.stats import wilcoxon

    columns = [*GROUP_KEYS, "variant", "reference", "region", "metric", "n", "mean_variant", "mean_reference",
               "mean_difference", "median_difference", "statistic", "p_value", "p_holm", "significant"]
    rows = []
    data = per_case[per_case["variant"].notna()]
    for keys, group in data.groupby(GROUP_KEYS, sort=True):
        family = []
        for metric in METRICS:
            wide = _wide(group, metric)
            for variant, reference in comparisons():
                if variant not in wide or reference not in wide:
                    continue
                for region in [r for r in REGIONS if r in wide.index.get_level_values("region")]:
                    pair = wide.xs(region, level="region")[[variant, reference]].dropna()
                    if pair.empty:
                        continue
                    x, y = pair[variant].to_numpy(), pair[reference].to_numpy()
                    with warnings.catch_warnings():
                        warnings.simplefilter("ignore", RuntimeWarning)  # all differences zero -> p = 1
                        result = wilcoxon(x, y)
                    family.append(dict(zip(GROUP_KEYS, keys), variant=variant, reference=reference, region=region,
                                       metric=metric, n=len(x), mean_variant=x.mean(), mean_reference=y.mean(),
                                       mean_difference=(x - y).mean(), median_difference=float(np.median(x - y)),
                                       statistic=float(result.statistic), p_value=float(result.pvalue)))
        for row, adjusted in zip(family, holm([r["p_value"] for r in family])):
            row.update(p_holm=adjusted, significant=bool(adjusted < 0.05))
        rows += family
    return pd.DataFrame(rows, columns=columns)


def bootstrap_ci(per_case: pd.DataFrame, *, seed: int = 0, n_resamples: int = 9999,
                 confidence_level: float = 0.95) -> pd.DataFrame:
    """Bootstrap confidence intervals of each run's mean per region and metric (cases, folds pooled).

    Args:
        per_case: the tidy table.
        seed: seeds a new ``numpy.random.default_rng`` for every interval.
        n_resamples: bootstrap resamples per interval.
        confidence_level: e.g. 0.95 for 95 % intervals.

    Returns columns dataset, trainer, plans, configuration, variant, recipe, region, metric, n, mean,
    ci_low, ci_high (NaN when fewer than two values).
    """
    from scipy.stats import bootstrap

    rows = []
    for keys, group in per_case.groupby([*RUN_KEYS, "region"], sort=True):
        for metric in METRICS:
            values = group[metric].dropna().to_numpy(dtype=float)
            low = high = np.nan
            if len(values) >= 2:
                result = bootstrap((values,), np.mean, n_resamples=n_resamples, confidence_level=confidence_level,
                                   method="percentile", rng=np.random.default_rng(seed))
                low, high = result.confidence_interval
            rows.append(dict(zip([*RUN_KEYS, "region"], keys), variant=group["variant"].iloc[0],
                             recipe=group["recipe"].iloc[0], metric=metric, n=len(values),
                             mean=values.mean() if len(values) else np.nan, ci_low=float(low), ci_high=float(high)))
    return pd.DataFrame(rows, columns=[*RUN_KEYS, "variant", "recipe", "region", "metric", "n", "mean", "ci_low",
                                       "ci_high"])


def brats_ranking(per_case: pd.DataFrame) -> pd.DataFrame:
    """The BraTS ranking of all runs of each dataset.

    Args:
        per_case: the tidy table.

    Returns one row per run: dataset, trainer, plans, configuration, variant, recipe, n_items (ranked
    (fold, case, region) items per metric), mean_rank (over all cases, regions and metrics),
    ``rank_<metric>_<region>`` (mean rank per metric and region) and position (1 = best; ties share
    the smaller position).
    """
    frames = []
    for dataset, group in per_case.groupby("dataset", sort=True):
        run = group["trainer"] + "__" + group["plans"] + "__" + group["configuration"]
        group = group.assign(run=run)
        for metric in METRICS:
            wide = group.pivot_table(index=["fold", "case", "region"], columns="run", values=metric,
                                     aggfunc="first", dropna=False).dropna()
            ranks = wide.rank(axis=1, ascending=not HIGHER_IS_BETTER[metric], method="average")
            long = ranks.stack().rename("rank").reset_index()
            frames.append(long.assign(dataset=dataset, metric=metric, n_items=len(wide)))
    columns = [*RUN_KEYS, "variant", "recipe", "n_items", "mean_rank", "position"]
    if not frames:
        return pd.DataFrame(columns=columns)
    ranks = pd.concat(frames, ignore_index=True)
    ranks[["trainer", "plans", "configuration"]] = ranks["run"].str.split("__", expand=True)
    table = ranks.groupby(RUN_KEYS).agg(n_items=("n_items", "first"), mean_rank=("rank", "mean"))
    detail = ranks.pivot_table(index=RUN_KEYS, columns=["metric", "region"], values="rank", aggfunc="mean")
    detail = detail.reindex(columns=[(m, r) for m in METRICS for r in REGIONS if (m, r) in detail.columns])
    detail.columns = [f"rank_{metric}_{region}" for metric, region in detail.columns]
    table = table.join(detail).reset_index()
    table["position"] = table.groupby("dataset")["mean_rank"].rank(method="min").astype(int)
    labels = per_case.drop_duplicates(RUN_KEYS)[[*RUN_KEYS, "variant", "recipe"]]
    table = table.merge(labels, on=RUN_KEYS, how="left")
    return table[columns + list(detail.columns)].sort_values(["dataset", "position"], ignore_index=True)


def _switch_pairs() -> list[tuple[str, str, str]]:
    """(switch, variant with it, variant without it) for variant pairs that differ in that switch only."""
    pairs = []
    for with_ in VARIANTS:
        for without in VARIANTS:
            differ = [s for s in SWITCHES if getattr(with_, s) != getattr(without, s)]
            if len(differ) == 1:
                switch = differ[0]
                on = with_.nonlin != "relu" if switch == "nonlin" else getattr(with_, switch)
                if on:
                    pairs.append(("swish" if switch == "nonlin" else switch, with_.key, without.key))
    return pairs


def switch_effects(per_case: pd.DataFrame) -> pd.DataFrame:
    """Difference of run means (with minus without) for every variant pair that differs in one switch.

    Args:
        per_case: the tidy table; only DRUwAS variants are used, compared within one dataset, recipe,
            plans and configuration.

    Returns columns dataset, recipe, plans, configuration, switch, with_variant, without_variant, region,
    metric, difference.
    """
    keys = ["dataset", *GROUP_KEYS]
    columns = [*keys, "switch", "with_variant", "without_variant", "region", "metric", "difference"]
    data = per_case[per_case["variant"].notna()]
    if data.empty:
        return pd.DataFrame(columns=columns)
    means = data.groupby([*keys, "variant", "region"])[list(METRICS)].mean()
    rows = []
    for group_keys, group in means.groupby(level=keys):
        group = group.droplevel(keys)
        for switch, with_, without in _switch_pairs():
            if with_ not in group.index.get_level_values("variant") or \
                    without not in group.index.get_level_values("variant"):
                continue
            difference = group.loc[with_] - group.loc[without]
            for region, values in difference.iterrows():
                for metric in METRICS:
                    rows.append(dict(zip(keys, group_keys), switch=switch, with_variant=with_,
                                     without_variant=without, region=region, metric=metric,
                                     difference=values[metric]))
    return pd.DataFrame(rows, columns=columns)
