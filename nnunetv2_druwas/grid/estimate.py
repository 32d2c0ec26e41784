"""The cost of a grid before it runs: GPU-hours and wall hours per trainer (``grid --estimate``).

From one measured number, the seconds of an epoch of nnU-Net's 250 iterations on one GPU, and each
trainer's length from its class (:func:`recipe_epochs`, :func:`recipe_iterations`): nnU-Net's own
trainer and recipes that keep its length train 1000 epochs of 250 iterations; a recipe whose epoch
is one pass over the training cases takes ``ceil(train_cases / 4)`` iterations.
"""
from __future__ import annotations

import math
from typing import Sequence

from nnunetv2_druwas.variants import REFERENCES, continued_trainer, lookup_trainer, split_repeat

# Training cases of one fold of BraTS 2020 (369 cases) under 5-fold cross-validation: 295 or 296
# (2019: 268, 2018: 228); the epoch length of a one-pass recipe in --estimate.
DEFAULT_TRAIN_CASES = 296
NNUNET_DEFAULT_EPOCHS = 1000  # nnUNetTrainer.__init__ sets num_epochs = 1000 (an instance attribute)
NNUNET_ITERATIONS = 250       # nnUNetTrainer.__init__: num_iterations_per_epoch


def gpu_hours(epoch_seconds: float, trainers: Sequence[str], *, datasets: int = 3, folds: int = 5,
              configurations: int = 1, epochs: dict[str, int] | None = None,
              train_cases: int = DEFAULT_TRAIN_CASES, references: Sequence[str] = (), repeats: int = 1) -> list[dict]:
    """The GPU-hours of a grid: one row per trainer (then per reference), and a total row.

    Training only (the final validation and the tables add minutes per fold, not hours). Column
    ``wall_hours`` is the time from submission to the end of that trainer's folds when every task
    gets its own GPU at once: its own epochs plus those of the run it continues (Swish after
    ReLU); the total row gives the longest of them. An epoch of ``iterations`` training iterations
    takes ``epoch_seconds * iterations / 250``.

    Args:
        epoch_seconds: seconds per training epoch of nnU-Net's 250 iterations on one GPU.
        trainers: DRUwAS trainer names (:func:`select_trainers`).
        datasets: number of datasets (3 for BraTS 2018, 2019, 2020).
        folds: folds per dataset (nnU-Net's 5-fold cross-validation).
        configurations: nnU-Net configurations per dataset (``-c``), each trained on every fold.
        epochs: trainer name -> epochs, for trainers whose length differs from
            :func:`recipe_epochs` (the trainer's own).
        train_cases: training cases per fold, for recipes whose epoch is one pass over them
            (:func:`recipe_iterations`).
        references: keys of :data:`~nnunetv2_druwas.variants.REFERENCES` (nnU-Net's trainer: 1000
            epochs of 250 iterations, each epoch counted at ``epoch_seconds`` too).
        repeats: runs of every trainer per fold (repeats run in parallel: the wall time is one's).
    """
    def n_epochs(trainer: str) -> int:
        return (epochs or {}).get(trainer) or recipe_epochs(trainer)

    def hours(trainer: str) -> float:
        return n_epochs(trainer) * epoch_seconds * recipe_iterations(trainer, train_cases) / NNUNET_ITERATIONS / 3600

    def chain_hours(trainer: str | None) -> float:
        return 0.0 if trainer is None else hours(trainer) + chain_hours(continued_trainer(trainer))

    rows = []
    runs = datasets * configurations * folds * repeats
    entries = [(trainer, recipe, variant.key) for trainer in trainers for variant, recipe in [lookup_trainer(trainer)]]
    entries += [(REFERENCES[key].trainer, "nnunet", key) for key in references]
    for trainer, recipe, key in entries:
        rows.append(dict(recipe=recipe, variant=key, trainer=trainer, epochs=n_epochs(trainer),
                         iterations=recipe_iterations(trainer, train_cases), runs=runs,
                         gpu_hours=runs * hours(trainer), wall_hours=chain_hours(trainer)))
    rows.append(dict(recipe="", variant="total", trainer="", epochs="", iterations="", runs=sum(r["runs"] for r in rows),
                     gpu_hours=sum(r["gpu_hours"] for r in rows), wall_hours=max(r["wall_hours"] for r in rows)))
    return rows


def recipe_iterations(trainer: str, train_cases: int = DEFAULT_TRAIN_CASES) -> int:
    """Training iterations per epoch of a trainer (without ``DRUWAS_ITERS``).

    Args:
        trainer: a trainer name; nnU-Net's 250 unless it is a DRUwAS trainer whose recipe's epoch is
            one pass over the training cases (``ceil(train_cases / batch size)``, the paper's batch size 4).
        train_cases: training cases per fold.
    """
    from nnunetv2_druwas.training import trainer_classes

    cls = trainer_classes().get(split_repeat(trainer)[0])
    if cls is None or not cls.recipe_one_pass_epochs:
        return NNUNET_ITERATIONS
    return math.ceil(train_cases / cls.paper_target_batch_size)


def recipe_epochs(trainer: str) -> int:
    """The number of epochs a trainer trains for, from its class (without ``DRUWAS_EPOCHS``).

    Args:
        trainer: a trainer name; nnU-Net's trainer and a recipe that keeps nnU-Net's length get
            nnU-Net's 1000.
    """
    from nnunetv2_druwas.training import trainer_classes

    cls = trainer_classes().get(split_repeat(trainer)[0])
    if cls is None:
        return NNUNET_DEFAULT_EPOCHS
    epochs = cls.recipe_continuation_epochs if cls.variant.continues else cls.recipe_num_epochs
    return epochs or NNUNET_DEFAULT_EPOCHS


def format_gpu_hours(rows: Sequence[dict], epoch_seconds: float) -> str:
    """:func:`gpu_hours` as a fixed-width table."""
    lines = [f"Training time at {epoch_seconds:g} s per epoch of {NNUNET_ITERATIONS} iterations on one GPU "
             f"(one GPU per run; runs = datasets x configurations x folds x repeats)",
             f"{'recipe':<7} {'variant':<9} {'trainer':<44} {'epochs':>6} {'iters':>5} {'runs':>5} {'GPU-hours':>10} "
             f"{'wall hours':>10}"]
    for r in rows:
        lines.append(f"{r['recipe']:<7} {r['variant']:<9} {r['trainer']:<44} {r['epochs']:>6} {r['iterations']:>5} "
                     f"{r['runs']:>5} {r['gpu_hours']:>10.1f} {r['wall_hours']:>10.1f}")
    return "\n".join(lines)
