"""The one table of the 3D-DRUwAS ablation family (the rows of the paper's Table 4).

Everything that needs to know the variants (network construction, trainers,
analysis, the demo, the experiment grid) reads :data:`VARIANTS` and nothing
else restates it.

Each row of Table 4 (:data:`ABLATION_VARIANTS`) is the same network class
(:class:`nnunetv2_druwas.network.DRUwASUNet`) with three switches and an activation. The Swish
row is the full network with SiLU, trained as a continuation of the ReLU run (``continues``
names the key of the variant whose final weights it starts from). One more row, ``nnunet``, is
not in Table 4: it builds nnU-Net's own network from the plans (``network="plan"``: PlainConvUNet
for ``nnUNetPlans``, ResidualEncoderUNet for ``nnUNetResEncUNetMPlans``, ...) and has no switches,
so nnU-Net's network can be trained under the same recipes and short schedules as the variants.

Every variant exists under three training recipes (:data:`RECIPE_SUFFIXES`): the paper's
(``paper``: Adam, lr 5e-4, ReduceLROnPlateau, 100 epochs; 60 for the Swish continuation), the
paper's taken literally (``strict``: the same without deep supervision, with one pass over the
training cases per epoch and without test-time mirroring) and nnU-Net's default (``nnunet``: SGD,
poly schedule, 1000 epochs). A trainer's name is the variant's name plus the recipe's suffix.
"""
from __future__ import annotations

from dataclasses import dataclass


#: What a variant's trainers build: ``druwas`` the :class:`DRUwASUNet` with the variant's switches,
#: ``plan`` nnU-Net's own network of the plans (nnU-Net's ``get_network_from_plans``).
NETWORKS = ("druwas", "plan")


@dataclass(frozen=True)
class Variant:
    key: str               # short id used in tables, plots and file names
    table4_row: int | None  # row of the paper's Table 4 (1-7); None: not a row of Table 4
    label: str             # the row's name as the paper prints it (cleaned up)
    trainer: str           # nnU-Net trainer class name under the paper's recipe
    residual: bool | None  # the switches of a DRUwAS network; None for network "plan"
    attention_gate: bool | None
    spatial_attention: bool | None
    nonlin: str | None = "relu"   # one of network.NONLINEARITIES; None for network "plan" (the plan's)
    continues: str | None = None  # key of the variant whose final weights this one starts from
    network: str = "druwas"       # one of NETWORKS

    @property
    def network_kwargs(self) -> dict:
        """The switches as keyword arguments of :class:`DRUwASUNet` (network ``druwas`` only)."""
        if self.network != "druwas":
            raise ValueError(f"variant {self.key!r} builds nnU-Net's network from the plans; it has no DRUwAS switches")
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
    Variant("nnunet", None, "nnU-Net's network (from the plan)", "nnUNetTrainerDRUwAS_nnUNetNetwork", None, None, None,
            nonlin=None, network="plan"),
)
#: The seven rows of the paper's Table 4 (every DRUwAS network), in the table's order.
ABLATION_VARIANTS: tuple[Variant, ...] = tuple(v for v in VARIANTS if v.table4_row is not None)

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
    """(variant, recipe) of a DRUwAS trainer name, or None for any other trainer (also for a repeat's
    name: split it with :func:`split_repeat` first)."""
    return all_trainers().get(name)


# --- repeats and nnU-Net's own trainers -----------------------------------------------------

#: Repeat k >= 1 of a trainer is the trainer named ``<trainer>_repeat<k>`` (its own nnU-Net folder
#: ``<trainer>_repeat<k>__<plans>__<configuration>``, so ``nnUNetv2_predict -tr`` finds it); the plain
#: name is repeat 0.
REPEAT_SUFFIX = "_repeat"


@dataclass(frozen=True)
class Reference:
    """A training of nnU-Net's own (``nnunetv2_druwas grid --reference KEY``): a trainer under a plans file."""
    key: str       # the --reference value
    label: str     # the row's name in the tables
    trainer: str   # nnU-Net trainer class
    plans: str     # plans identifier (nnUNetv2_train -p)
    planner: str   # nnUNetv2_plan_experiment -pl that writes those plans


#: nnU-Net's own trainings that the grid can add on the same datasets, configurations and folds.
REFERENCES: dict[str, Reference] = {r.key: r for r in (
    Reference("nnunet", "nnU-Net (default)", "nnUNetTrainer", "nnUNetPlans", "ExperimentPlanner"),
    Reference("resenc-m", "nnU-Net ResEnc M", "nnUNetTrainer", "nnUNetResEncUNetMPlans", "nnUNetPlannerResEncM"),
    Reference("resenc-l", "nnU-Net ResEnc L", "nnUNetTrainer", "nnUNetResEncUNetLPlans", "nnUNetPlannerResEncL"),
    Reference("resenc-xl", "nnU-Net ResEnc XL", "nnUNetTrainer", "nnUNetResEncUNetXLPlans", "nnUNetPlannerResEncXL"),
)}

#: Labels of nnU-Net's own trainers in the tables, by (trainer, plans); any other non-DRUwAS run is
#: labelled by its trainer and plans (:func:`reference_label`).
NNUNET_REFERENCE_LABELS = {(r.trainer, r.plans): r.label for r in REFERENCES.values()}


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


def continued_trainer(trainer: str) -> str | None:
    """The trainer whose final weights ``trainer`` starts from, or None: repeat k of a continuation
    (Swish) continues repeat k of the variant it continues (ReLU), under the same recipe.

    Args:
        trainer: a trainer class name, with or without a repeat suffix.
    """
    base, repeat = split_repeat(trainer)
    found = lookup_trainer(base)
    if found is None or found[0].continues is None:
        return None
    variant, recipe = found
    return repeat_trainer_name(trainer_name(variant_by_key(variant.continues), recipe), repeat)
