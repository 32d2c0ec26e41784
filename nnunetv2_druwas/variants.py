"""The one table of the 3D-DRUwAS ablation family (the rows of the paper's Table 4).

Everything that needs to know the variants (network construction, trainers,
analysis, the demo, the experiment grid) reads :data:`VARIANTS` and nothing
else restates it.

Each variant is the same network class (:class:`nnunetv2_druwas.network.DRUwASUNet`)
with three switches and an activation. The Swish row is the full network with
SiLU, trained as a continuation of the ReLU run (``continues`` names the key of
the variant whose final weights it starts from).

Every variant exists under three training recipes (:data:`RECIPE_SUFFIXES`): the paper's
(``paper``: Adam, lr 5e-4, ReduceLROnPlateau, 100 epochs; 60 for the Swish continuation), the
paper's taken literally (``strict``: the same without deep supervision, with one pass over the
training cases per epoch and without test-time mirroring) and nnU-Net's default (``nnunet``: SGD,
poly schedule, 1000 epochs). A trainer's name is the variant's name plus the recipe's suffix.
"""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Variant:
    key: str               # short id used in tables, plots and file names
    table4_row: int        # row of the paper's Table 4 (1-7)
    label: str             # the row's name as the paper prints it (cleaned up)
    trainer: str           # nnU-Net trainer class name under the paper's recipe
    residual: bool
    attention_gate: bool
    spatial_attention: bool
    nonlin: str = "relu"   # one of network.NONLINEARITIES
    continues: str | None = None  # key of the variant whose final weights this one starts from

    @property
    def network_kwargs(self) -> dict:
        """The switches as keyword arguments of :class:`DRUwASUNet`."""
        return dict(residual=self.residual, attention_gate=self.attention_gate,
                    spatial_attention=self.spatial_attention, nonlin=self.nonlin)


VARIANTS: tuple[Variant, ...] = (
    Variant("baseline", 1, "3D U-Net (baseline)", "nnUNetTrainerDRUwAS_Baseline", False, False, False),
    Variant("sa", 2, "Baseline + spatial attention", "nnUNetTrainerDRUwAS_SA", False, False, True),
    Variant("ag", 3, "Baseline + attention gate", "nnUNetTrainerDRUwAS_AG", False, True, False),
    Variant("saag", 4, "Baseline + spatial attention and attention gate", "nnUNetTrainerDRUwAS_SAAG",
            False, True, True),
    Variant("res", 5, "Baseline + ResNet (residual blocks)", "nnUNetTrainerDRUwAS_Res", True, False, False),
    Variant("full", 6, "Proposed method (ReLU)", "nnUNetTrainerDRUwAS", True, True, True),
    Variant("swish", 7, "Proposed method (ReLU + Swish)", "nnUNetTrainerDRUwASSwish", True, True, True,
            nonlin="swish", continues="full"),
)

# Training recipe -> what it appends to a variant's trainer name (nnunetv2_druwas.training has the recipes).
RECIPE_SUFFIXES = {"paper": "", "nnunet": "_nnUNetRecipe", "strict": "_PaperStrict"}
RECIPES = tuple(RECIPE_SUFFIXES)


def trainer_name(variant: Variant, recipe: str = "paper") -> str:
    """The nnU-Net trainer class name of ``variant`` under ``recipe`` (a key of :data:`RECIPE_SUFFIXES`)."""
    if recipe not in RECIPES:
        raise ValueError(f"unknown recipe {recipe!r}; choose one of {RECIPES}")
    return variant.trainer + RECIPE_SUFFIXES[recipe]


def all_trainers() -> dict[str, tuple[Variant, str]]:
    """Every trainer name -> (variant, recipe), one recipe after another in :data:`RECIPES`' order."""
    return {trainer_name(v, r): (v, r) for r in RECIPES for v in VARIANTS}


def variant_by_key(key: str) -> Variant:
    for v in VARIANTS:
        if v.key == key:
            return v
    raise KeyError(f"unknown variant {key!r}; known: {', '.join(v.key for v in VARIANTS)}")


def lookup_trainer(name: str) -> tuple[Variant, str] | None:
    """(variant, recipe) of a DRUwAS trainer name, or None for any other trainer."""
    return all_trainers().get(name)


# --- repeats and nnU-Net's own trainers -----------------------------------------------------

#: Repeat k >= 1 of a trainer is the trainer named ``<trainer>_repeat<k>`` (its own nnU-Net folder
#: ``<trainer>_repeat<k>__<plans>__<configuration>``, so ``nnUNetv2_predict -tr`` finds it); the plain
#: name is repeat 0.
REPEAT_SUFFIX = "_repeat"

#: Labels of nnU-Net's own trainers in the tables, by (trainer, plans); any other non-DRUwAS run is
#: labelled by its trainer and plans (:func:`reference_label`).
NNUNET_REFERENCE_LABELS = {
    ("nnUNetTrainer", "nnUNetPlans"): "nnU-Net (default)",
    ("nnUNetTrainer", "nnUNetResEncUNetMPlans"): "nnU-Net ResEnc M",
    ("nnUNetTrainer", "nnUNetResEncUNetLPlans"): "nnU-Net ResEnc L",
    ("nnUNetTrainer", "nnUNetResEncUNetXLPlans"): "nnU-Net ResEnc XL",
}


def repeat_trainer_name(trainer: str, repeat: int) -> str:
    """The trainer name of repeat ``repeat`` of ``trainer`` (repeat 0 is ``trainer`` itself).

    Args:
        trainer: a trainer class name without a repeat suffix.
        repeat: 0, 1, 2, ...
    """
    if repeat < 0:
        raise ValueError(f"repeat must be >= 0, got {repeat}")
    return trainer if repeat == 0 else f"{trainer}{REPEAT_SUFFIX}{repeat}"


def split_repeat(trainer: str) -> tuple[str, int]:
    """``("nnUNetTrainerDRUwAS", 2)`` for ``nnUNetTrainerDRUwAS_repeat2``; ``(trainer, 0)`` for a plain name.

    Args:
        trainer: a trainer class name, with or without a repeat suffix.
    """
    base, sep, number = trainer.rpartition(REPEAT_SUFFIX)
    if sep and base and number.isdigit() and not number.startswith("0"):
        return base, int(number)
    return trainer, 0


def reference_label(trainer: str, plans: str) -> str:
    """How a run of a trainer that is not a DRUwAS variant is named in the tables.

    Args:
        trainer: the trainer class name (a repeat suffix is ignored).
        plans: the plans identifier of the run.
    """
    base, _ = split_repeat(trainer)
    return NNUNET_REFERENCE_LABELS.get((base, plans), f"{base} ({plans})")
