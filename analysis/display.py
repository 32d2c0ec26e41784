"""How tables, figures and the report name things: units, sample sizes, runs. One place for each.

- :func:`hd95_unit`: the unit of measured HD95 values, derived from the data: a ``protocol``
  column (where the tidy table has one) maps through :data:`HD95_UNITS`; everything else is mm.
- :func:`sample_label`: how a measured value's sample is shown (cases, folds, repeats).
- :func:`run_label` / :func:`setting_label`: a run by its variant (or, for nnU-Net's own trainers,
  :func:`nnunetv2_druwas.variants.reference_label`) and by what it was trained with;
  :func:`short_label`: a variant in a few characters (figures), derived from its switches.
- :func:`ablation_row`: the Table 4 row of a variant; None for a reference (a variant without one,
  or a trainer outside the DRUwAS family).
"""
from __future__ import annotations

from collections.abc import Iterable

import pandas as pd

from nnunetv2_druwas import variants
from nnunetv2_druwas.evaluation.protocols import PROTOCOLS
from nnunetv2_druwas.variants import reference_label, variant_by_key

DEFAULT_HD95_UNIT = "mm"
# protocol -> unit of its HD95
HD95_UNITS: dict[str, str] = {name: protocol.hd95_unit for name, protocol in PROTOCOLS.items()}
METRIC_NAMES = {"dice": "Dice", "hd95": "HD95"}
BETTER = {"dice": "higher is better", "hd95": "lower is better"}
MINUS = "\u2212"
RECIPE_NAMES = {"paper": "paper recipe", "nnunet": "nnU-Net recipe", "strict": "paper-strict recipe"}
SWITCH_NAMES = {"residual": "residual blocks", "attention_gate": "attention gate",
                "spatial_attention": "spatial attention", "swish": "Swish"}
_SWITCH_ABBREVIATIONS = (("residual", "Res"), ("spatial_attention", "SA"), ("attention_gate", "AG"))
NONLIN_NAMES = {"relu": "ReLU", "swish": "Swish", "leakyrelu": "LeakyReLU", "gelu": "GELU"}


def hd95_unit(frame: pd.DataFrame) -> str:
    """The unit of the HD95 values in ``frame`` (a tidy table or measured rows).

    Args:
        frame: rows with an optional ``protocol`` column; without one (or empty) the unit is mm.
    """
    if "protocol" not in frame:
        return DEFAULT_HD95_UNIT
    units = sorted({HD95_UNITS.get(p, DEFAULT_HD95_UNIT) for p in frame["protocol"].dropna().unique()})
    return " or ".join(units) if units else DEFAULT_HD95_UNIT


def metric_label(metric: str, unit: str = DEFAULT_HD95_UNIT, *, better: bool = False, what: str = "") -> str:
    """``Dice`` / ``HD95 (mm)``, optionally with ``what`` before the unit and which direction is better.

    Args:
        metric: ``dice`` or ``hd95``.
        unit: the HD95 unit (:func:`hd95_unit`); ignored for Dice.
        better: append "higher/lower is better".
        what: a qualifier after the metric name, e.g. "difference".
    """
    details = ([unit] if metric == "hd95" else []) + ([BETTER[metric]] if better else [])
    name = " ".join(filter(None, (METRIC_NAMES[metric], what)))
    return f"{name} ({', '.join(details)})" if details else name


def fold_list(folds: Iterable[int] | str) -> str:
    """``0-4`` for consecutive folds, else ``0, 2, 3``.

    Args:
        folds: fold numbers, or a comma-separated string of them (as in ``runs.csv``).
    """
    if isinstance(folds, str):
        folds = [int(f) for f in folds.split(",") if f.strip()]
    folds = sorted(set(folds))
    if len(folds) > 2 and folds == list(range(folds[0], folds[-1] + 1)):
        return f"{folds[0]}-{folds[-1]}"
    return ", ".join(map(str, folds))


def sample_label(n: int, folds: Iterable[int] | str, repeats: int | None = None) -> str:
    """How a measured value's sample is printed everywhere: ``10 (folds 0, 1)``, ``5 (fold 2)``,
    ``25 (folds 0-4) x3``.

    Args:
        n: cases the value is a mean over.
        folds: the folds they come from.
        repeats: training repeats averaged (None or 1: a single run, not shown).
    """
    listed = fold_list(folds)
    text = f"{n} (fold{'s' if ',' in listed or '-' in listed else ''} {listed})"
    return text + (f" \u00d7{repeats}" if repeats and repeats > 1 else "")


def setting_label(recipe: str | None, configuration: str, plans: str, dataset: str | None = None) -> str:
    """What a run was trained with: ``paper recipe, 3d_fullres`` (+ plans when not nnU-Net's default,
    + the dataset where it is needed to tell runs apart).

    Args:
        recipe: the DRUwAS training recipe, or None for another trainer.
        configuration: nnU-Net configuration.
        plans: nnU-Net plans identifier.
        dataset: dataset folder name to append, or None.
    """
    parts = [RECIPE_NAMES.get(recipe, f"{recipe} recipe")] if isinstance(recipe, str) else []
    parts.append(configuration)
    if plans != "nnUNetPlans":
        parts.append(plans)
    if dataset:
        parts.append(dataset)
    return ", ".join(parts)


def ablation_row(variant: str | None) -> int | None:
    """The paper's Table 4 row of a variant; None for a reference row (a variant without a Table 4 row,
    such as nnU-Net's network from the plan, or None/NaN: a trainer outside the DRUwAS family).

    Args:
        variant: ablation variant key, or None/NaN.
    """
    return variant_by_key(variant).table4_row if isinstance(variant, str) else None


def run_label(variant: str | None, trainer: str, plans: str = "nnUNetPlans") -> str:
    """The name of a run's network: the variant's label, or for another trainer its reference label
    (:func:`nnunetv2_druwas.variants.reference_label`: "nnU-Net (default)", "nnU-Net ResEnc M", ...).

    Args:
        variant: ablation variant key, or None/NaN for a trainer outside the DRUwAS family.
        trainer: nnU-Net trainer class name.
        plans: the run's plans identifier (names nnU-Net's reference runs).
    """
    return variant_by_key(variant).label if isinstance(variant, str) else reference_label(trainer, plans)


def short_label(variant: str | None, trainer: str = "") -> str:
    """A variant in a few characters for figure ticks: Table 4 row and switches, e.g. ``4 +SA+AG``,
    ``7 +Res+SA+AG Swish`` (the activation is named where it tells variants apart); a reference variant
    keeps its label, a trainer outside the DRUwAS family the name given.

    Args:
        variant: ablation variant key, or None/NaN.
        trainer: the name used when ``variant`` is not a key (e.g. :func:`run_label` of the run).
    """
    if not isinstance(variant, str):
        return trainer
    found = variant_by_key(variant)
    if found.table4_row is None:
        return found.label
    switches = "".join(f"+{abbreviation}" for name, abbreviation in _SWITCH_ABBREVIATIONS if getattr(found, name))
    twins = {v.nonlin for v in variants.VARIANTS if v.table4_row is not None
             and all(getattr(v, n) == getattr(found, n) for n, _ in _SWITCH_ABBREVIATIONS)}
    nonlin = NONLIN_NAMES.get(found.nonlin, found.nonlin) if len(twins) > 1 or found.nonlin != "relu" else ""
    return " ".join(filter(None, (str(found.table4_row), switches or "baseline", nonlin)))
