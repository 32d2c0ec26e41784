"""Training curves from nnU-Net's own logs, and the paper's Figure 4 (ReLU, then its Swish continuation).

nnU-Net keeps its per-epoch log in every checkpoint (``checkpoint["logging"]``: ``train_losses``,
``val_losses``, ``mean_fg_dice`` (the online validation pseudo Dice), ``ema_fg_dice`` (its moving
average), ``lrs``, ...). :func:`training_curves` reads it from ``checkpoint_final.pth`` of each fold,
or from ``checkpoint_latest.pth`` while a training is still running (``checkpoint`` says which),
into one tidy table: a row per dataset x trainer x plans x configuration x fold x epoch.

:func:`continuation_curves` puts a continued run and its continuation on one epoch axis (the
paper's Figure 4: 100 ReLU epochs, then 60 Swish epochs as 101-160): for each fold, the epochs
of the run that the continuation variant starts from (``Variant.continues``), then the
continuation's epochs numbered on from there.
"""
from __future__ import annotations

from pathlib import Path

import pandas as pd

from analysis.collect import RUN_KEYS
from analysis.display import NONLIN_NAMES
from nnunetv2_druwas.variants import VARIANTS, split_repeat, variant_by_key

LOGGED = {"train_losses": "train_loss", "val_losses": "val_loss", "mean_fg_dice": "pseudo_dice",
          "ema_fg_dice": "ema_pseudo_dice", "lrs": "learning_rate"}
CURVE_COLUMNS = [*RUN_KEYS, "variant", "recipe", "fold", "checkpoint", "epoch", *LOGGED.values()]
CHECKPOINTS = ("checkpoint_final.pth", "checkpoint_latest.pth")


def read_log(path: Path) -> pd.DataFrame:
    """The per-epoch log of one nnU-Net checkpoint: columns ``epoch`` (1-based) and :data:`LOGGED`'s values.

    Args:
        path: a ``checkpoint_*.pth`` written by nnU-Net.
    """
    import torch

    checkpoint = torch.load(path, map_location="cpu", weights_only=False, mmap=True)
    logging = checkpoint.get("logging") if isinstance(checkpoint, dict) else None
    if not isinstance(logging, dict):
        raise ValueError("no 'logging' dict (not an nnU-Net checkpoint?)")
    series = {name: list(logging.get(key) or []) for key, name in LOGGED.items()}
    epochs = min(len(v) for k, v in series.items() if k != "learning_rate")   # every list has one entry per epoch
    frame = pd.DataFrame({name: pd.to_numeric(pd.Series(values[:epochs], dtype=object), errors="coerce")
                          for name, values in series.items()}) if epochs else pd.DataFrame(columns=list(series))
    frame.insert(0, "epoch", range(1, len(frame) + 1))
    return frame


def training_curves(results: Path | str | None, runs: pd.DataFrame) -> tuple[pd.DataFrame, list[str]]:
    """Every logged epoch of every fold of ``runs`` under ``results``; returns the table and notes.

    Args:
        results: the nnU-Net results folder (None: nothing to read).
        runs: :attr:`analysis.collect.Collection.runs` (dataset, trainer, plans, configuration,
            variant, recipe); every ``fold_<int>`` folder of those runs is looked at.

    A checkpoint that cannot be read is skipped with a note naming it (the tables do not need it).
    """
    frames, notes = [], []
    for run in ([] if results is None else runs.itertuples()):
        folder = Path(results) / run.dataset / f"{run.trainer}__{run.plans}__{run.configuration}"
        for fold_dir in sorted(folder.glob("fold_*")):
            if not fold_dir.name[5:].isdigit():
                continue
            path = next((fold_dir / name for name in CHECKPOINTS if (fold_dir / name).is_file()), None)
            if path is None:
                continue
            try:
                log = read_log(path)
            except Exception as exc:  # noqa: BLE001 - torch raises many kinds for a damaged file
                reason = "empty file" if path.stat().st_size == 0 else \
                    f"{type(exc).__name__}: {str(exc).splitlines()[0][:160]}"
                notes.append(f"{path}: training log not readable ({reason}); not in training_curves.csv.")
                continue
            frames.append(log.assign(**{key: getattr(run, key) for key in RUN_KEYS}, variant=run.variant,
                                     recipe=run.recipe, fold=int(fold_dir.name[5:]), checkpoint=path.name))
    if not frames:
        return pd.DataFrame(columns=CURVE_COLUMNS), notes
    return pd.concat(frames, ignore_index=True)[CURVE_COLUMNS], notes


def continuation_curves(curves: pd.DataFrame) -> pd.DataFrame:
    """Each continuation run's folds after the folds of the run it continues, on one epoch axis.

    Args:
        curves: :func:`training_curves`' table.

    Returns the rows of both runs for every (dataset, plans, configuration, recipe, fold) that has
    both (repeat 0 of each: the trainers without ``_repeat<k>``), with ``epoch`` renumbered (the continuation's epoch e becomes e + the epochs the continued
    fold logged), ``phase`` (the activation: ReLU, Swish) and ``continuation`` (the continuation's key).
    """
    keys = ["dataset", "plans", "configuration", "recipe", "fold"]
    curves = curves[curves["trainer"].map(lambda trainer: split_repeat(trainer)[1] == 0).astype(bool)]
    frames = []
    for variant in (v for v in VARIANTS if v.continues):
        before = curves[curves["variant"] == variant.continues]
        after = curves[curves["variant"] == variant.key]
        offsets = before.groupby(keys)["epoch"].max().rename("offset").reset_index()
        after = after.merge(offsets, on=keys, how="inner")
        before = before.merge(offsets[keys], on=keys, how="inner")
        before = before[before.set_index(keys).index.isin(after.set_index(keys).index)]
        after = after.assign(epoch=after["epoch"] + after["offset"]).drop(columns="offset")
        for part, key in ((before, variant.continues), (after, variant.key)):
            frames.append(part.assign(phase=NONLIN_NAMES.get(variant_by_key(key).nonlin, variant_by_key(key).nonlin),
                                      continuation=variant.key))
    frames = [f for f in frames if not f.empty]
    if not frames:
        return pd.DataFrame(columns=[*CURVE_COLUMNS, "phase", "continuation"])
    return pd.concat(frames, ignore_index=True).sort_values([*keys, "epoch"], ignore_index=True)
