"""Which runs a grid selection needs: its datasets x configurations x trainings x folds.

A :class:`Selection` is what a user asks ``nnunetv2_druwas grid`` for; :meth:`Selection.runs` lists
every ``nnUNetv2_train`` call of it as a :class:`Run`: the DRUwAS trainers under the selection's
plans, then nnU-Net's references under their own plans (:data:`nnunetv2_druwas.variants.REFERENCES`),
each with its repeats ``<trainer>_repeat<k>``. :func:`select_trainers` turns ``--trainers`` and
``--recipe`` into trainer names, :func:`dataset_name` a dataset id into nnU-Net's folder name.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Mapping, Sequence

from nnunetv2_druwas import env
from nnunetv2_druwas.errors import DruwasError
from nnunetv2_druwas.variants import (ABLATION_VARIANTS, RECIPES, REFERENCES, VARIANTS, all_trainers, lookup_trainer,
                                     repeat_trainer_name, trainer_name, variant_by_key)


@dataclass(frozen=True)
class Run:
    """One ``nnUNetv2_train`` call: a fold of a trainer on a dataset and configuration."""
    dataset: str          # nnU-Net dataset folder name, e.g. Dataset500_BraTS2020
    configuration: str
    trainer: str
    plans: str
    fold: int

    @property
    def array_name(self) -> str:
        """The name of the job array this run belongs to (also its script's file stem)."""
        return array_name(self.dataset, self.trainer, self.plans, self.configuration)

    def fold_dir(self, results: Path) -> Path:
        return Path(results) / self.dataset / run_folder(self.trainer, self.plans, self.configuration) / \
            f"fold_{self.fold}"


def run_folder(trainer: str, plans: str, configuration: str) -> str:
    """nnU-Net's folder of a trained model inside the dataset's results folder."""
    return f"{trainer}__{plans}__{configuration}"


def array_name(dataset: str, trainer: str, plans: str, configuration: str) -> str:
    return f"{dataset}__{run_folder(trainer, plans, configuration)}"


@dataclass(frozen=True)
class Selection:
    """The grid a user asked for: every combination of these is one run."""
    datasets: tuple[str, ...]        # dataset folder names
    configurations: tuple[str, ...]
    folds: tuple[int, ...]
    trainers: tuple[str, ...]        # trainer class names, continued trainers after what they continue
    plans: str = "nnUNetPlans"
    references: tuple[str, ...] = ()  # keys of variants.REFERENCES: nnU-Net's own trainings
    repeats: int = 1                 # repeats 0..repeats-1 of every trainer (repeat 0: the plain name)

    def trainings(self) -> list[tuple[str, str]]:
        """(trainer, plans) of every training per dataset, configuration and fold: the DRUwAS trainers
        under :attr:`plans`, then the references under their own plans, each followed by its repeats
        (so every continuation comes after the run it continues)."""
        pairs = [(t, self.plans) for t in self.trainers]
        pairs += [(REFERENCES[r].trainer, REFERENCES[r].plans) for r in self.references]
        return [(repeat_trainer_name(t, k), p) for t, p in pairs for k in range(self.repeats)]

    def runs(self) -> list[Run]:
        return [Run(d, c, t, p, f) for d in self.datasets for c in self.configurations
                for t, p in self.trainings() for f in self.folds]


# --recipe values that select several recipes ("both" predates the strict recipe and keeps its meaning)
RECIPE_GROUPS = {"both": ("paper", "nnunet"), "all": RECIPES}
RECIPE_CHOICES = (*RECIPES, *RECIPE_GROUPS)


def select_trainers(requested: Sequence[str], recipe: str = "paper") -> tuple[str, ...]:
    """Trainer names for ``--trainers``: names, variant keys or ``all``, in the variant table's order.

    Args:
        requested: DRUwAS trainer class names (e.g. ``nnUNetTrainerDRUwAS_SA``), variant keys
            (``baseline``, ``sa``, ..., ``swish``, and ``nnunet``: nnU-Net's network under a DRUwAS
            recipe) or ``all`` (the seven rows of Table 4, not ``nnunet``).
        recipe: for keys and ``all``: a training recipe (``paper``, ``nnunet``, ``strict``) or a
            group of them (:data:`RECIPE_GROUPS`: ``both`` = paper and nnunet, ``all`` = every
            recipe). Explicit trainer names carry their recipe in the name and ignore this.

    Raises:
        DruwasError: for a name that is neither a DRUwAS trainer nor a variant key, or an unknown recipe.
    """
    if recipe not in RECIPE_CHOICES:
        raise DruwasError(f"unknown recipe {recipe!r}; choose one of {', '.join(RECIPE_CHOICES)}")
    recipes = RECIPE_GROUPS.get(recipe, (recipe,))
    chosen: set[str] = set()
    for item in requested:
        if item == "all":
            chosen.update(trainer_name(v, r) for v in ABLATION_VARIANTS for r in recipes)
        elif lookup_trainer(item) is not None:
            chosen.add(item)
        elif item in {v.key for v in VARIANTS}:
            chosen.update(trainer_name(variant_by_key(item), r) for r in recipes)
        else:
            raise DruwasError(f"unknown trainer {item!r}: give a DRUwAS trainer name "
                              f"(see `nnunetv2_druwas trainers`), a variant key "
                              f"({', '.join(v.key for v in VARIANTS)}) or 'all'")
    # the table's order puts every variant after the one it continues (swish after full)
    return tuple(name for name in all_trainers() if name in chosen)


def dataset_name(dataset: str | int, environ: Mapping[str, str] | None = None) -> str:
    """nnU-Net's folder name of a dataset id (``500`` -> ``Dataset500_BraTS2020``), found the way
    nnU-Net finds it: in ``nnUNet_preprocessed``, ``nnUNet_raw`` and ``nnUNet_results``.

    Args:
        dataset: an id (``500``, ``"500"``) or a full name (``Dataset500_BraTS2020``, returned as is).
        environ: the environment holding the nnU-Net folders; None reads this process's.
    """
    text = str(dataset)
    if text.startswith("Dataset"):
        return text
    if not text.isdigit():
        raise DruwasError(f"dataset {text!r} is neither an id (500) nor a name (Dataset500_BraTS2020)")
    prefix = f"Dataset{int(text):03d}_"
    folders = {var: env.value(var, environ) for var in ("nnUNet_preprocessed", "nnUNet_raw", "nnUNet_results")}
    found = sorted({p.name for folder in folders.values() if folder and Path(folder).is_dir()
                    for p in Path(folder).iterdir() if p.is_dir() and p.name.startswith(prefix)})
    if len(found) != 1:
        where = ", ".join(f"{v}={folder or '(not set)'}" for v, folder in folders.items())
        what = "no dataset" if not found else f"several datasets ({', '.join(found)})"
        raise DruwasError(f"{what} with id {text} in the nnU-Net folders ({where}); convert and "
                          f"preprocess it first (nnunetv2_druwas convert-brats, nnUNetv2_plan_and_preprocess)")
    return found[0]
