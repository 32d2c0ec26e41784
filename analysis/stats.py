"""Statistics the paper does not report, computed from the tidy per-case table.

Every paired comparison (:func:`wilcoxon_tests`, :func:`switch_effects`) goes through
:func:`paired_differences`: the two runs are matched on (dataset, fold, case) and only cases
that both have a value for (per region and metric) are used; ``n`` says how many pairs that
was and ``n_unpaired`` how many cases only one side had. Means of different case sets (one run
missing a fold) are never subtracted.

Repeats: the tables' per-case input for the paired comparisons and the ranking is
:func:`over_repeats`: each case's value averaged over the repeats of its row (a repeat that lacks
the case, or has no value for it, does not count), so a row with repeats enters a test once per case.

nnU-Net's default (decision): every ablation variant is also compared with nnU-Net on the same
folds (:func:`comparable`). Within one (recipe, plans, configuration) group that reference is
the reference variant trained under the same recipe (a variant without a Table 4 row: nnU-Net's
network built from the plan, key ``nnunet``), so that only the network differs; where the group has
none, it is nnU-Net's own default run (trainer ``nnUNetTrainer``, plans ``nnUNetPlans``, the same
configuration; key :data:`NNUNET_DEFAULT`), which also differs in its training recipe unless the
group's recipe is nnU-Net's. The ``reference`` column says which one was used.

- :func:`wilcoxon_tests`: paired Wilcoxon signed-rank tests (``scipy.stats.wilcoxon``,
  two-sided, its defaults) per region and metric, between each ablation variant and the
  baseline, between the Swish and the ReLU (``full``) model, and between each ablation variant
  and nnU-Net's default. The runs compared share
  recipe, plans and configuration; datasets are pooled. When every paired difference is zero
  the test has nothing to reject: p = 1 (scipy returns NaN there for larger n), and the test
  stays in its family. The Holm correction runs over all tests of one (recipe, plans,
  configuration) group.
- :func:`bootstrap_ci`: percentile bootstrap 95 % confidence intervals of each run's mean
  per region and metric (``scipy.stats.bootstrap``; a fresh generator seeded with ``seed``
  for every interval, so an interval does not depend on which others are computed).
- :func:`brats_ranking`: the BraTS ranking scheme: every run on a dataset is ranked per
  (fold, case), region and metric (Dice descending, HD95 ascending, ties get the average
  rank); a run's score is the mean of its ranks. Only (fold, case, region) items that every
  run of the dataset has a value for are ranked; the table says per metric how many items
  were ranked, how many were dropped and how many each run lacked (the runs that caused the
  drops), and :func:`ranking_notes` says it in words.
- :func:`switch_effects`: the effect of each ablation switch: the mean paired difference
  (with minus without) between two variants that differ in that switch only.

Everything here reads the tidy table of :mod:`analysis.collect`; scipy is imported inside
the functions so that importing this module stays fast.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from analysis.collect import REGIONS, ROW_KEYS, RUN_KEYS
from analysis.display import METRIC_NAMES
from nnunetv2_druwas import variants
from nnunetv2_druwas.errors import DruwasError

METRICS = ("dice", "hd95")
GROUP_KEYS = ["recipe", "plans", "configuration"]
SWITCHES = ("residual", "attention_gate", "spatial_attention", "nonlin")
HIGHER_IS_BETTER = {"dice": True, "hd95": False}
#: The key of nnU-Net's default run (trainer nnUNetTrainer, plans nnUNetPlans) in comparisons.
NNUNET_DEFAULT = "nnUNetTrainer"
NNUNET_DEFAULT_PLANS = "nnUNetPlans"


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


def _ablation() -> list:
    return [v for v in variants.VARIANTS if v.table4_row is not None]


def reference_keys() -> list[str]:
    """The keys a variant is compared with as nnU-Net: the reference variants (no Table 4 row), then
    :data:`NNUNET_DEFAULT` (used only where a group has no reference variant: :func:`comparable`)."""
    return [v.key for v in variants.VARIANTS if v.table4_row is None] + [NNUNET_DEFAULT]


def baseline_pairs() -> list[tuple[str, str]]:
    """(variant, "baseline") for every ablation variant but the baseline."""
    return [(v.key, "baseline") for v in _ablation() if v.key != "baseline"]


def reference_pairs() -> list[tuple[str, str]]:
    """(variant, nnU-Net reference) for every ablation variant and every key of :func:`reference_keys`."""
    return [(v.key, reference) for reference in reference_keys() for v in _ablation()]


def comparisons() -> list[tuple[str, str]]:
    """(variant, reference) pairs tested: every variant against the baseline, Swish against ReLU, and every
    variant against nnU-Net's default."""
    swish = [(v.key, v.continues) for v in _ablation() if v.continues]
    return baseline_pairs() + swish + reference_pairs()


def over_repeats(per_case: pd.DataFrame) -> pd.DataFrame:
    """The tidy table with one value per measured row and case: the mean over the row's repeats.

    Args:
        per_case: :attr:`analysis.collect.Collection.per_case` (columns ``base_trainer`` and ``repeat``).

    Returns the columns dataset, trainer (the trainer without its repeat suffix), plans, configuration,
    variant, recipe, fold, case, region, dice and hd95 (the mean over the repeats that have a value;
    NaN when none has), ``repeats`` (repeats that have the case) and ``missing`` (any repeat lacked its
    prediction).
    """
    keys = [*ROW_KEYS, "variant", "recipe", "fold", "case", "region"]
    columns = ["dataset", "trainer", "plans", "configuration", "variant", "recipe", "fold", "case", "region",
               *METRICS, "repeats", "missing"]
    if per_case.empty:
        return pd.DataFrame(columns=columns)
    grouped = per_case.groupby(keys, sort=True, dropna=False)
    frame = grouped[list(METRICS)].mean().join(grouped.size().rename("repeats")).join(grouped["missing"].any())
    return frame.reset_index().rename(columns={"base_trainer": "trainer"})[columns]


def comparable(per_case: pd.DataFrame) -> pd.DataFrame:
    """The DRUwAS rows of the tidy table, plus nnU-Net's default run (variant :data:`NNUNET_DEFAULT`) in
    every (recipe, plans, configuration) group that has no reference variant of its own (module docstring).

    Args:
        per_case: a tidy table (columns trainer, plans, configuration, variant, recipe, ...).
    """
    druwas = per_case[per_case["variant"].notna()]
    default = per_case[per_case["variant"].isna() & (per_case["trainer"] == NNUNET_DEFAULT)
                       & (per_case["plans"] == NNUNET_DEFAULT_PLANS)]
    own = set(reference_keys()) - {NNUNET_DEFAULT}
    parts = [druwas]
    if not default.empty:
        for (recipe, plans, configuration), group in druwas.groupby(GROUP_KEYS, sort=True):
            if plans == NNUNET_DEFAULT_PLANS and not group["variant"].isin(own).any():
                parts.append(default[default["configuration"] == configuration].assign(variant=NNUNET_DEFAULT,
                                                                                      recipe=recipe))
    return pd.concat(parts, ignore_index=True) if len(parts) > 1 else druwas


def _wide(group: pd.DataFrame, metric: str) -> pd.DataFrame:
    """(dataset, fold, case, region) x variant table of one metric."""
    try:
        return group.pivot(index=["dataset", "fold", "case", "region"], columns="variant", values=metric)
    except ValueError as exc:
        raise DruwasError(f"duplicate (dataset, fold, case, region) rows for one variant in "
                          f"{sorted(group['trainer'].unique())}; each metrics file must list a case once (and "
                          f"repeats be averaged first: over_repeats)") from exc


def paired_differences(per_case: pd.DataFrame, keys: list[str],
                       pairs: list[tuple[str, str]]) -> list[dict]:
    """Every paired comparison of two variants, on the cases both have a value for.

    Args:
        per_case: the tidy table; rows without a ``variant`` (not a DRUwAS trainer) are ignored.
        keys: the columns whose groups are compared separately (e.g. recipe, plans, configuration;
            datasets within a group are pooled, pairs are matched on (dataset, fold, case)).
        pairs: (variant, reference) keys to compare; a pair with a side absent from a group is skipped.

    Returns one dict per group x pair x metric x region (in that order) with the group's keys,
    ``variant``, ``reference``, their trainers ``variant_trainer`` and ``reference_trainer``, ``region``,
    ``metric``, ``n`` (matched pairs), ``folds`` (of the matched pairs, comma separated), ``n_unpaired``
    (cases with a value on one side only), ``mean_variant`` and ``mean_reference`` (over the matched
    pairs), ``mean_difference`` and ``median_difference`` (variant minus reference) and the arrays ``x``
    (variant) and ``y`` (reference). Groups or regions without any matched pair give no dict.
    """
    rows = []
    data = per_case[per_case["variant"].notna()]
    for group_keys, group in data.groupby(keys, sort=True):
        group_keys = group_keys if isinstance(group_keys, tuple) else (group_keys,)
        trainers = group.groupby("variant")["trainer"].first()
        for variant, reference in pairs:
            for metric in METRICS:
                wide = _wide(group, metric)
                if variant not in wide or reference not in wide:
                    continue
                for region in [r for r in REGIONS if r in wide.index.get_level_values("region")]:
                    both = wide.xs(region, level="region")[[variant, reference]]
                    has = both.notna()
                    pair = both[has.all(axis=1)]
                    if pair.empty:
                        continue
                    x, y = pair[variant].to_numpy(float), pair[reference].to_numpy(float)
                    folds = sorted(set(pair.index.get_level_values("fold")))
                    rows.append(dict(zip(keys, group_keys), variant=variant, reference=reference,
                                     variant_trainer=trainers[variant], reference_trainer=trainers[reference],
                                     region=region, metric=metric, n=len(x), folds=",".join(map(str, folds)),
                                     n_unpaired=int((has.sum(axis=1) == 1).sum()),
                                     mean_variant=x.mean(), mean_reference=y.mean(), mean_difference=(x - y).mean(),
                                     median_difference=float(np.median(x - y)), x=x, y=y))
    return rows


def wilcoxon_tests(per_case: pd.DataFrame) -> pd.DataFrame:
    """Paired Wilcoxon signed-rank tests, Holm-corrected; one row per test.

    Args:
        per_case: the tidy table of :func:`analysis.collect.collect` (with repeats: :func:`over_repeats`
            of it); nnU-Net's default run enters through :func:`comparable`.

    Returns columns recipe, plans, configuration, variant, reference (a variant key, or
    :data:`NNUNET_DEFAULT`), region, metric, n (matched pairs), n_unpaired, mean_variant, mean_reference (over the matched pairs), mean_difference and
    median_difference (variant minus reference), statistic, p_value (1 when every difference is
    zero), p_holm, significant (p_holm < 0.05).
    """
    from scipy.stats import wilcoxon

    columns = [*GROUP_KEYS, "variant", "reference", "region", "metric", "n", "n_unpaired", "mean_variant",
               "mean_reference", "mean_difference", "median_difference", "statistic", "p_value", "p_holm",
               "significant"]
    rows = paired_differences(comparable(per_case), GROUP_KEYS, comparisons())
    for row in rows:
        x, y = row.pop("x"), row.pop("y")
        if np.all(x == y):   # nothing to rank: no evidence of a difference
            statistic, p_value = 0.0, 1.0
        else:
            result = wilcoxon(x, y)
            statistic, p_value = float(result.statistic), float(result.pvalue)
        row.update(statistic=statistic, p_value=p_value)
    table = pd.DataFrame(rows, columns=columns)
    for _, family in table.groupby(GROUP_KEYS, sort=False):
        table.loc[family.index, "p_holm"] = holm(family["p_value"])
    table["significant"] = table["p_holm"] < 0.05
    return table


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

    Returns one row per run: dataset, trainer, plans, configuration, variant, recipe; per metric
    ``n_items_<metric>`` ((fold, case, region) items ranked: those every run of the dataset has a
    value for), ``n_dropped_<metric>`` (items some but not all runs have) and ``lacks_<metric>``
    (items this run has no value for while another run has: a run with ``lacks`` > 0 caused
    drops); mean_rank (over all ranked items of both metrics), ``rank_<metric>_<region>`` (mean
    rank per metric and region) and position (1 = best; ties share the smaller position).
    """
    counts = [f"{what}_{metric}" for metric in METRICS for what in ("n_items", "n_dropped", "lacks")]
    columns = [*RUN_KEYS, "variant", "recipe", *counts, "mean_rank", "position"]
    frames, tallies = [], []
    for dataset, group in per_case.groupby("dataset", sort=True):
        run = group["trainer"] + "__" + group["plans"] + "__" + group["configuration"]
        group = group.assign(run=run)
        for metric in METRICS:
            try:
                wide = group.pivot(index=["fold", "case", "region"], columns="run", values=metric)
            except ValueError as exc:
                raise DruwasError(f"{dataset}: duplicate (fold, case, region) rows in one run; each "
                                  f"brats_metrics.csv must list a case once") from exc
            wide = wide.dropna(how="all")
            lacking = wide.isna()
            ranked = wide[~lacking.any(axis=1)]
            ranks = ranked.rank(axis=1, ascending=not HIGHER_IS_BETTER[metric], method="average")
            frames.append(ranks.stack().rename("rank").reset_index().assign(dataset=dataset, metric=metric))
            tallies.append(pd.DataFrame({"dataset": dataset, "run": wide.columns, "metric": metric,
                                         "n_items": len(ranked), "n_dropped": len(wide) - len(ranked),
                                         "lacks": lacking.sum().to_numpy()}))
    if not frames:
        return pd.DataFrame(columns=columns)
    ranks = pd.concat(frames, ignore_index=True)
    tally = pd.concat(tallies, ignore_index=True).pivot(index=["dataset", "run"], columns="metric")
    tally.columns = [f"{what}_{metric}" for what, metric in tally.columns]
    table = tally[counts].join(ranks.groupby(["dataset", "run"])["rank"].mean().rename("mean_rank"))
    detail = ranks.pivot_table(index=["dataset", "run"], columns=["metric", "region"], values="rank",
                               aggfunc="mean")
    detail = detail.reindex(columns=[(m, r) for m in METRICS for r in REGIONS if (m, r) in detail.columns])
    detail.columns = [f"rank_{metric}_{region}" for metric, region in detail.columns]
    table = table.join(detail).reset_index()
    table[["trainer", "plans", "configuration"]] = table["run"].str.split("__", expand=True)
    table["position"] = table.groupby("dataset")["mean_rank"].rank(method="min").astype("Int64")
    labels = per_case.drop_duplicates(RUN_KEYS)[[*RUN_KEYS, "variant", "recipe"]]
    table = table.merge(labels, on=RUN_KEYS, how="left")
    return table[columns + list(detail.columns)].sort_values(["dataset", "position"], ignore_index=True)


def ranking_notes(ranking: pd.DataFrame) -> list[str]:
    """One sentence per dataset: how many items the ranking used per metric and which runs caused drops.

    Args:
        ranking: :func:`brats_ranking`'s table.
    """
    notes = []
    for dataset, runs in ranking.groupby("dataset", sort=True):
        first = runs.iloc[0]
        counts = "; ".join(f"{METRIC_NAMES[m]}: {first[f'n_items_{m}']} of "
                           f"{first[f'n_items_{m}'] + first[f'n_dropped_{m}']}" for m in METRICS)
        note = (f"BraTS ranking of {dataset} ({len(runs)} run{'s' if len(runs) > 1 else ''}), (fold, case, region) "
                f"items ranked per metric: {counts}.")
        lacking = runs[runs[[f"lacks_{m}" for m in METRICS]].sum(axis=1) > 0]
        if not lacking.empty:
            causes = ", ".join(f"{r.trainer}__{r.plans}__{r.configuration} ("
                               + "/".join(str(getattr(r, f"lacks_{m}")) for m in METRICS) + ")"
                               for r in lacking.itertuples())
            note += f" Items were dropped because these runs lack them (Dice/HD95 items lacking): {causes}."
        notes.append(note)
    return notes


def _switch_pairs() -> list[tuple[str, str, str]]:
    """(switch, variant with it, variant without it) for variant pairs that differ in that switch only."""
    pairs = []
    for with_ in _ablation():
        for without in _ablation():
            differ = [s for s in SWITCHES if getattr(with_, s) != getattr(without, s)]
            if len(differ) == 1:
                switch = differ[0]
                on = with_.nonlin != "relu" if switch == "nonlin" else getattr(with_, switch)
                if on:
                    pairs.append(("swish" if switch == "nonlin" else switch, with_.key, without.key))
    return pairs


def switch_effects(per_case: pd.DataFrame) -> pd.DataFrame:
    """Mean paired difference (with minus without) for every variant pair that differs in one switch.

    Args:
        per_case: the tidy table (with repeats: :func:`over_repeats` of it); only the ablation variants are
            used, compared within one dataset, recipe, plans and configuration, on the (fold, case) items
            both variants have a value for.

    Returns columns dataset, recipe, plans, configuration, switch, with_variant, without_variant, region,
    metric, n (matched cases), n_unpaired, mean_with, mean_without (over the matched cases), difference
    (mean of the paired differences).
    """
    keys = ["dataset", *GROUP_KEYS]
    columns = [*keys, "switch", "with_variant", "without_variant", "region", "metric", "n", "n_unpaired",
               "mean_with", "mean_without", "difference"]
    switch_of = {(with_, without): switch for switch, with_, without in _switch_pairs()}
    rows = paired_differences(per_case, keys, list(switch_of))
    table = pd.DataFrame(rows, columns=[*keys, "variant", "reference", "region", "metric", "n", "n_unpaired",
                                        "mean_variant", "mean_reference", "mean_difference"])
    table = table.rename(columns={"variant": "with_variant", "reference": "without_variant",
                                  "mean_variant": "mean_with", "mean_reference": "mean_without",
                                  "mean_difference": "difference"})
    table["switch"] = [switch_of[pair] for pair in zip(table["with_variant"], table["without_variant"])]
    return table[columns]
