"""nnU-Net trainers for the DRUwAS family: the behaviour behind every name in ``trainers/``.

Every row of :data:`nnunetv2_druwas.variants.VARIANTS` becomes three nnU-Net trainer classes
(:func:`trainer_classes`), one per training recipe:

* **nnU-Net's recipe** (:class:`DRUwASTrainerBase`, names ending in ``_nnUNetRecipe``): only the
  network changes; optimizer (SGD, Nesterov momentum 0.99, lr 1e-2, weight decay 3e-5), poly
  schedule, 1000 epochs of 250 iterations, the plan's batch size, augmentation and loss are
  nnU-Net's own.
* **The paper's recipe** (:class:`DRUwASPaperRecipeTrainer`, the plain names): Adam, lr 5e-4
  and PyTorch's other defaults (no weight decay: the paper names none), ReduceLROnPlateau with
  patience 4 and factor 0.1 (PyTorch's default; the paper gives no factor) on the validation
  signal below, 100 epochs (60 for the Swish continuation) and batch size 4 where the plan's
  memory budget allows (:meth:`DRUwASPaperRecipeTrainer.paper_batch_size`).
* **The paper's recipe taken literally** (:class:`DRUwASPaperStrictTrainer`, names ending in
  ``_PaperStrict``): the paper's recipe without three things nnU-Net adds and neither the paper
  nor the authors' public code (ADRUwAMS) has: no deep supervision; one epoch = one pass over the
  fold's training cases, ``ceil(n_train / batch size)`` training iterations (and
  ``ceil(n_val / batch size)`` validation iterations); no test-time mirroring in the final
  validation (nor in ``nnUNetv2_predict`` of such a model: its checkpoint allows no mirroring axes).

Shared by all recipes (decisions where the paper is silent):

* Loss: nnU-Net's region-based Dice + BCE on the WT/TC/ET sigmoid outputs (SPEC open point 5).
* Deep supervision: on, as in nnU-Net (open point 6), at the scales of the strides the network
  really uses (its stage count can be smaller than the plan's); off under the strict recipe.
* Epoch length: nnU-Net's 250 training and 50 validation iterations (open point 4); the paper's
  "epoch" is not defined further. The strict recipe reads it as one pass over the training cases.
* Split: nnU-Net's 5-fold cross-validation (open point 7), so every fold is a full experiment.
* Plateau signal: nnU-Net's exponential moving average of the online validation pseudo Dice
  (``ema_fg_dice``, mean over WT/TC/ET, mode max), available after every epoch on every DDP
  worker alike. The raw pseudo Dice of 50 random patches is too noisy for a patience of 4;
  the EMA is also what nnU-Net uses to keep ``checkpoint_best.pth``.

Swish continuation (Table 4 row 7; variants whose ``continues`` is set): a fresh training
(not ``--c``) first loads *all* weights, the head included and strictly, from
``$nnUNet_results/<Dataset>/<ReLU trainer>__<plans>__<configuration>/fold_<N>/checkpoint_final.pth``
(the ReLU trainer of the same recipe), or from the file named by ``DRUWAS_INIT_CHECKPOINT``
(``nnUNetv2_train`` takes no new options). nnU-Net's ``-pretrained_weights`` is not used: it
drops the segmentation head. What was loaded is written to ``fold_<N>/continuation.json``.
``--c`` resumes the Swish run from its own checkpoint and loads nothing else.

Short runs without code changes: ``DRUWAS_EPOCHS`` (epochs), ``DRUWAS_ITERS`` (training
iterations per epoch; validation iterations scale with it, at least 1) and ``DRUWAS_LR`` (initial
learning rate, for compressed demo runs) override every DRUwAS trainer; ``DRUWAS_ITERS`` also
replaces the strict recipe's one-pass epoch. Nothing that changes the network is read from the environment, because
``nnUNetv2_predict`` must rebuild the same network from the trainer name alone. ``DRUWAS_CHECKPOINTING=1``
turns on activation checkpointing for training (``DRUwASUNet.checkpointing``: less memory, about one
more forward pass of time; no weight and no output changes, so prediction is unaffected).

After the final validation, every fold gets ``brats_metrics.csv`` (and its ``_summary.csv``):
BraTS-convention Dice and HD95 of ``fold_<N>/validation`` against
``$nnUNet_preprocessed/<Dataset>/gt_segmentations``
(:func:`nnunetv2_druwas.evaluation.evaluate.evaluate_folder`). When that evaluation fails, the
message goes to ``fold_<N>/brats_metrics_error.txt`` and ``nnUNetv2_train`` exits with an error
(status 1): the fold is then ``evaluation-failed`` (:mod:`nnunetv2_druwas.folds`), which the grid
status and the tables report; ``--c`` redoes only the final validation and the evaluation.
``DRUWAS_PROTOCOLS`` (e.g. ``eq2,authors``) adds ``<protocol>_metrics.csv`` for further evaluation
protocols, scored before ``brats_metrics.csv`` with the same failure handling.
"""
from __future__ import annotations

import functools
import hashlib
import json
import math
from pathlib import Path
from typing import ClassVar

import torch
from nnunetv2.configuration import default_num_processes
from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer
from nnunetv2.utilities.get_network_from_plans import get_network_from_plans
from nnunetv2.utilities.label_handling.label_handling import determine_num_input_channels
from nnunetv2.utilities.plans_handling.plans_handler import ConfigurationManager, PlansManager
from torch import nn
from torch._dynamo import OptimizedModule
from torch.optim.lr_scheduler import ReduceLROnPlateau

from nnunetv2_druwas import env, files
from nnunetv2_druwas.errors import DruwasError
from nnunetv2_druwas.evaluation.protocols import fold_protocols
from nnunetv2_druwas.folds import EVALUATION_ERROR_FILE, METRICS_FILE
from nnunetv2_druwas.network import druwas_from_plans
from nnunetv2_druwas.variants import Variant, all_trainers, trainer_name, variant_by_key

INIT_CHECKPOINT_VARIABLE = "DRUWAS_INIT_CHECKPOINT"
CONTINUATION_RECORD = "continuation.json"   # in fold_N/: what a continuation run started from

PLATEAU_SIGNAL = "ema_fg_dice"  # nnU-Net logger key: EMA of the online validation pseudo Dice
PLATEAU_PATIENCE = 4
PLATEAU_FACTOR = 0.1

# nnU-Net's default ExperimentPlanner budget (8 GB target) in its planner's unit, feature-map
# estimate x batch size: UNet_reference_val_{2d,3d} x UNet_reference_val_corresp_bs_{2d,3d}.
NNUNET_PLANNER_BUDGET = {2: 85_000_000 * 12, 3: 560_000_000 * 2}


def state_dict_digest(state_dict: dict[str, torch.Tensor]) -> str:
    """A SHA-256 over the names, dtypes, shapes and bytes of a state dict (order-independent).

    Args:
        state_dict: parameter name -> tensor, e.g. a checkpoint's ``network_weights``.
    """
    digest = hashlib.sha256()
    for key in sorted(state_dict):
        tensor = state_dict[key].detach().cpu().contiguous()
        digest.update(f"{key}|{tensor.dtype}|{tuple(tensor.shape)}|".encode())
        digest.update(tensor.reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def _file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


class PlateauOnValidation(ReduceLROnPlateau):
    """ReduceLROnPlateau stepped by a validation signal once per epoch, via :meth:`observe`.

    nnU-Net calls ``lr_scheduler.step(epoch)`` at the start of every epoch (made for its poly
    schedule, which is a function of the epoch); for a plateau schedule that number is not a
    metric, so :meth:`step` does nothing here and the trainer calls :meth:`observe` with the
    signal at the end of the epoch.
    """

    def step(self, *args, **kwargs) -> None:
        """Ignored: see the class docstring."""

    def observe(self, signal: float) -> None:
        """Record this epoch's validation signal; lowers the learning rate after a plateau."""
        super().step(float(signal))


class DRUwASTrainerBase(nnUNetTrainer):
    """A DRUwAS network under nnU-Net's own training recipe.

    A named trainer sets the class attributes :attr:`variant` and :attr:`recipe`
    (:func:`trainer_classes` does this for every name); nothing else differs between them.
    Recipes change hyperparameters through the ``recipe_*`` class attributes (None keeps
    nnU-Net's value) and override single methods (see :class:`DRUwASPaperRecipeTrainer`).
    """

    variant: ClassVar[Variant | None] = None   # the row of variants.VARIANTS this trainer trains
    recipe: ClassVar[str] = "nnunet"           # key in variants.RECIPES
    widths: ClassVar[str] = "paper"            # druwas_from_plans(widths=...): "paper" or "plan"
    recipe_initial_lr: ClassVar[float | None] = None
    recipe_weight_decay: ClassVar[float | None] = None
    recipe_num_epochs: ClassVar[int | None] = None
    recipe_continuation_epochs: ClassVar[int | None] = None   # epochs of a continuation run
    recipe_one_pass_epochs: ClassVar[bool] = False  # True: an epoch is one pass over the training cases

    def __init__(self, plans: dict, configuration: str, fold: int, dataset_json: dict,
                 device: torch.device = torch.device("cuda")):
        if self.variant is None:
            raise TypeError(f"{type(self).__name__} has no variant; train one of the named DRUwAS trainers "
                            f"(nnunetv2_druwas trainers --names-only)")
        super().__init__(plans, configuration, fold, dataset_json, device)
        if self.recipe_initial_lr is not None:
            self.initial_lr = self.recipe_initial_lr
        if self.recipe_weight_decay is not None:
            self.weight_decay = self.recipe_weight_decay
        epochs = self.recipe_continuation_epochs if self.variant.continues else self.recipe_num_epochs
        if epochs is not None:
            self.num_epochs = epochs
        self._apply_environment_overrides()
        self._resumed_from_own_checkpoint = False
        fold_protocols()   # a wrong DRUWAS_PROTOCOLS fails now, not after the training

    def _apply_environment_overrides(self) -> None:
        """``DRUWAS_EPOCHS`` / ``DRUWAS_ITERS`` / ``DRUWAS_LR``: shorter runs without code changes;
        ``DRUWAS_CHECKPOINTING``: activation checkpointing (applied in :meth:`initialize`)."""
        epochs = env.read("DRUWAS_EPOCHS")
        if epochs is not None:
            self.print_to_log_file(f"DRUWAS_EPOCHS={epochs}: {epochs} epochs instead of {self.num_epochs}")
            self.num_epochs = epochs
        iterations = env.read("DRUWAS_ITERS")
        if iterations is not None:
            validation = max(1, round(self.num_val_iterations_per_epoch * iterations / self.num_iterations_per_epoch))
            self.print_to_log_file(
                f"DRUWAS_ITERS={iterations}: {iterations} training / {validation} validation iterations per "
                f"epoch instead of {self.num_iterations_per_epoch} / {self.num_val_iterations_per_epoch}")
            self.num_iterations_per_epoch, self.num_val_iterations_per_epoch = iterations, validation
        lr = env.read("DRUWAS_LR")
        if lr is not None:
            self.print_to_log_file(f"DRUWAS_LR={lr}: initial learning rate {lr} instead of {self.initial_lr}")
            self.initial_lr = lr
        self.activation_checkpointing = bool(env.read("DRUWAS_CHECKPOINTING"))

    def initialize(self) -> None:
        super().initialize()
        if self.activation_checkpointing:  # before the first forward pass, so torch.compile traces it once
            self.bare_network().checkpointing = True
            self.print_to_log_file("DRUWAS_CHECKPOINTING: activation checkpointing of every network stage")

    # --- network ----------------------------------------------------------------------

    @classmethod
    def build_network_architecture(cls, plans_manager: PlansManager, configuration_manager: ConfigurationManager,
                                   num_input_channels: int, num_output_channels: int,
                                   enable_deep_supervision: bool = True) -> nn.Module:
        """The variant's :class:`~nnunetv2_druwas.network.DRUwASUNet` for this plan (also used by
        ``nnUNetv2_predict``, which knows only the trainer's name)."""
        if cls.variant is None:
            raise TypeError(f"{cls.__name__} has no variant; use one of the named DRUwAS trainers")
        return druwas_from_plans(configuration_manager.network_arch_init_kwargs,
                                 configuration_manager.network_arch_init_kwargs_req_import,
                                 num_input_channels, num_output_channels, enable_deep_supervision,
                                 widths=cls.widths, **cls.variant.network_kwargs)

    def bare_network(self) -> nn.Module:
        """The network without nnU-Net's DDP and torch.compile wrappers."""
        network = self.network.module if self.is_ddp else self.network
        return network._orig_mod if isinstance(network, OptimizedModule) else network

    def _get_deep_supervision_scales(self) -> list[list[float]] | None:
        """The scales of the network's own outputs (it may have fewer stages than the plan)."""
        if not self.enable_deep_supervision:
            return None
        if self.network is None:
            raise RuntimeError("deep-supervision scales are known once the network is built (initialize)")
        return self.bare_network().deep_supervision_scales()

    # --- checkpoints and the continuation ---------------------------------------------

    def load_checkpoint(self, filename_or_checkpoint: str | dict) -> None:
        super().load_checkpoint(filename_or_checkpoint)
        self._resumed_from_own_checkpoint = True

    def on_train_start(self) -> None:
        if not self.was_initialized:
            self.initialize()
        if self.variant.continues is not None and not self._resumed_from_own_checkpoint:
            self.load_continuation_weights()
        elif self.variant.continues is None and env.value(INIT_CHECKPOINT_VARIABLE) is not None:
            self.print_to_log_file(f"{INIT_CHECKPOINT_VARIABLE} is ignored: {type(self).__name__} is not a "
                                   f"continuation (only {self._continuation_names()} read it)")
        super().on_train_start()

    def continuation_checkpoint(self) -> Path:
        """The checkpoint a continuation run starts from: ``DRUWAS_INIT_CHECKPOINT`` if set, else the
        final checkpoint of the matching run of the variant it continues.

        Raises:
            DruwasError: the file does not exist (saying which run to train, or which variable to fix).
        """
        explicit = env.value(INIT_CHECKPOINT_VARIABLE)   # checked here, to say what else to do
        if explicit:
            path = Path(explicit).expanduser().resolve()
            if not path.is_file():
                raise DruwasError(f"{INIT_CHECKPOINT_VARIABLE}={explicit}: no such checkpoint file; name an nnU-Net "
                                  f"checkpoint_final.pth of the same network, or unset it to use the "
                                  f"{self._source_trainer_name()} run")
            return path
        source = self._source_trainer_name()
        plans, dataset = self.plans_manager.plans_name, self.plans_manager.dataset_name
        path = (env.require("nnUNet_results") / dataset / f"{source}__{plans}__{self.configuration_name}" /
                f"fold_{self.fold}" / "checkpoint_final.pth")
        if not path.is_file():
            raise DruwasError(
                f"{type(self).__name__} continues the final weights of {source}, but {path} does not exist. "
                f"Train that run first: nnUNetv2_train {dataset} {self.configuration_name} {self.fold} -tr {source} "
                f"-p {plans}  (or set {INIT_CHECKPOINT_VARIABLE}=/path/to/checkpoint_final.pth to start from "
                f"another checkpoint of the same network)")
        return path

    def _continuation_names(self) -> str:
        return ", ".join(name for name, (v, _) in all_trainers().items() if v.continues)

    def _source_trainer_name(self) -> str:
        return trainer_name(variant_by_key(self.variant.continues), self.recipe)

    def load_continuation_weights(self) -> None:
        """Load every weight (head included, strictly) from :meth:`continuation_checkpoint` and record
        what was loaded in ``fold_N/continuation.json``."""
        path = self.continuation_checkpoint()
        checkpoint = torch.load(path, map_location=self.device, weights_only=False)
        weights = checkpoint.get("network_weights") if isinstance(checkpoint, dict) else None
        if weights is None:
            raise DruwasError(f"{path} is not an nnU-Net checkpoint (it has no 'network_weights')")
        weights = {k[len("module."):] if k.startswith("module.") else k: v for k, v in weights.items()}
        try:
            self.bare_network().load_state_dict(weights, strict=True)
        except RuntimeError as e:
            raise DruwasError(f"the weights in {path} do not fit the network of {type(self).__name__} "
                              f"(another variant, plans or configuration?): {e}") from e
        record = {
            "checkpoint": str(path),
            "checkpoint_sha256": _file_sha256(path),
            "source_trainer": checkpoint.get("trainer_name"),
            "source_epochs": checkpoint.get("current_epoch"),
            "weights_sha256": state_dict_digest(weights),
        }
        if self.local_rank == 0:
            files.write_text(Path(self.output_folder, CONTINUATION_RECORD), json.dumps(record, indent=2) + "\n")
        self.print_to_log_file(f"Continuation: loaded all weights of {record['source_trainer']} "
                               f"({record['source_epochs']} epochs) from {path}")

    # --- BraTS evaluation of the final validation -------------------------------------

    def perform_actual_validation(self, save_probabilities: bool = False) -> None:
        """nnU-Net's final validation, then :meth:`evaluate_validation` (on the first process)."""
        super().perform_actual_validation(save_probabilities)
        if self.local_rank == 0:
            self.evaluate_validation()

    def evaluate_validation(self) -> None:
        """Metrics of this fold's validation cases: ``fold_N/brats_metrics.csv``, and
        ``fold_N/<protocol>_metrics.csv`` for every protocol named in ``DRUWAS_PROTOCOLS`` (scored first:
        :func:`nnunetv2_druwas.evaluation.protocols.fold_protocols`).

        On failure the message is written to ``fold_N/brats_metrics_error.txt`` (removed again by a
        later success) and the command fails: a user-facing problem (e.g. a dataset whose regions are
        not WT/TC/ET) ends it with the message and status 1, anything else is raised as it is.
        """
        from nnunetv2_druwas.evaluation.results import score_fold

        folder = Path(self.output_folder)
        _, cases = self.do_split()   # nnU-Net's own split (also for folds beyond splits_final.json)
        protocol = "brats"
        try:
            for protocol in fold_protocols():
                output = score_fold(folder, protocol, preprocessed=Path(self.preprocessed_dataset_folder_base).parent,
                                    cases=cases, num_processes=default_num_processes, overwrite=True)
                if protocol != "brats":
                    self.print_to_log_file(f"{protocol} metrics of the validation cases: {output}")
        except Exception as e:
            message = str(e) if isinstance(e, DruwasError) else f"{type(e).__name__}: {e}"
            if protocol != "brats":
                message = f"{protocol} protocol: {message}"
            files.write_text(folder / EVALUATION_ERROR_FILE, message + "\n")
            self.print_to_log_file(f"BraTS evaluation failed: {message}")
            if isinstance(e, DruwasError):
                raise SystemExit(f"error: the BraTS evaluation of {folder} failed: {message}\nThe training "
                                 f"itself is done (checkpoint_final.pth); fix the cause, then rerun the same command "
                                 f"with --c, which redoes only the final validation and the evaluation.") from None
            raise
        (folder / EVALUATION_ERROR_FILE).unlink(missing_ok=True)
        self.print_to_log_file(f"BraTS metrics of the validation cases: {folder / METRICS_FILE}")


class DRUwASPaperRecipeTrainer(DRUwASTrainerBase):
    """A DRUwAS network under the paper's recipe (module docstring): Adam 5e-4, ReduceLROnPlateau
    (patience 4) on the EMA validation pseudo Dice, 100 epochs (60 continuing), batch size 4."""

    recipe = "paper"
    recipe_initial_lr = 5e-4
    recipe_weight_decay = 0.0
    recipe_num_epochs = 100
    recipe_continuation_epochs = 60
    paper_target_batch_size: ClassVar[int] = 4

    def configure_optimizers(self) -> tuple[torch.optim.Optimizer, PlateauOnValidation]:
        optimizer = torch.optim.Adam(self.network.parameters(), lr=self.initial_lr, weight_decay=self.weight_decay)
        return optimizer, self._plateau_schedule(optimizer)

    @staticmethod
    def _plateau_schedule(optimizer: torch.optim.Optimizer) -> PlateauOnValidation:
        return PlateauOnValidation(optimizer, mode="max", factor=PLATEAU_FACTOR, patience=PLATEAU_PATIENCE)

    def on_epoch_end(self) -> None:
        # before nnU-Net's epoch end, so that a checkpoint written there holds the new learning rate
        self.lr_scheduler.observe(self.logger.get_value(PLATEAU_SIGNAL, step=-1))
        super().on_epoch_end()

    def load_checkpoint(self, filename_or_checkpoint: str | dict) -> None:
        """nnU-Net's checkpoints hold no scheduler state; the plateau schedule is rebuilt by replaying
        the validation signal logged in the checkpoint, from the initial learning rate."""
        super().load_checkpoint(filename_or_checkpoint)
        for group in self.optimizer.param_groups:
            group["lr"] = self.initial_lr
        self.lr_scheduler = self._plateau_schedule(self.optimizer)
        for signal in self.logger.get_value(PLATEAU_SIGNAL, step=None):
            self.lr_scheduler.observe(signal)

    def _set_batch_size_and_oversample(self) -> None:
        batch_size = self.paper_batch_size()
        if batch_size != self.configuration_manager.batch_size:
            self.print_to_log_file(f"Paper recipe: batch size {batch_size} instead of the plan's "
                                   f"{self.configuration_manager.batch_size}")
        # nnU-Net reads the (global) batch size from the configuration and splits it over DDP workers
        self.configuration_manager.configuration["batch_size"] = batch_size
        super()._set_batch_size_and_oversample()

    def paper_batch_size(self) -> int:
        """The paper's batch size 4, lowered only as far as the plan's memory budget requires.

        The budget is in the unit of nnU-Net's planner, ``compute_conv_feature_map_size(patch) x
        batch size``: the larger of what the plan spends on nnU-Net's own network (its estimate
        times the plan's batch size) and what nnU-Net's default planner allows for its 8 GB
        target (:data:`NNUNET_PLANNER_BUDGET`; the plan's batch size may be below it because of
        nnU-Net's 5 %-of-the-dataset cap, which is not about memory). The result is the largest
        batch size <= 4 whose DRUwAS estimate fits (at least 1). For BraTS (128^3 patch, batch 2
        in nnU-Net's plan) the full DRUwAS network estimates 0.62x nnU-Net's network, and batch 4
        fits nnU-Net's default budget. The 2d configuration also gets 4 (the paper trained 3D only).
        """
        cm = self.configuration_manager
        num_inputs = determine_num_input_channels(self.plans_manager, cm, self.dataset_json)
        num_outputs = self.label_manager.num_segmentation_heads
        with torch.device("meta"):   # estimates only: no memory, no initialisation cost
            ours = self.build_network_architecture(self.plans_manager, cm, num_inputs, num_outputs, True)
            reference = get_network_from_plans(cm.network_arch_class_name, cm.network_arch_init_kwargs,
                                               cm.network_arch_init_kwargs_req_import, num_inputs, num_outputs,
                                               allow_init=False, deep_supervision=True)
        budget = NNUNET_PLANNER_BUDGET[len(cm.patch_size)]
        if hasattr(reference, "compute_conv_feature_map_size"):
            budget = max(budget, int(reference.compute_conv_feature_map_size(cm.patch_size)) * cm.batch_size)
        per_sample = int(ours.compute_conv_feature_map_size(cm.patch_size))
        return max(1, min(self.paper_target_batch_size, budget // per_sample))


class DRUwASPaperStrictTrainer(DRUwASPaperRecipeTrainer):
    """The paper's recipe taken literally (module docstring): no deep supervision, one epoch = one pass
    over the fold's training cases, no test-time mirroring.

    The epoch length is set when nnU-Net builds the data loaders (the split is known then):
    ``ceil(n_train / batch size)`` training and ``ceil(n_val / batch size)`` validation iterations,
    with the global batch size (all DDP workers together). nnU-Net's loaders keep drawing random
    cases (with replacement, a third of them foreground-oversampled), so an epoch sees as many
    samples as there are training cases, not each case exactly once. ``DRUWAS_ITERS``, when set,
    wins (for short runs).
    """

    recipe = "strict"
    recipe_one_pass_epochs = True

    def __init__(self, plans: dict, configuration: str, fold: int, dataset_json: dict,
                 device: torch.device = torch.device("cuda")):
        super().__init__(plans, configuration, fold, dataset_json, device)
        self.enable_deep_supervision = False   # nnU-Net's nnUNetTrainerNoDeepSupervision

    def get_tr_and_val_datasets(self):
        dataset_tr, dataset_val = super().get_tr_and_val_datasets()
        self._set_one_pass_epoch(len(dataset_tr.identifiers), len(dataset_val.identifiers))
        return dataset_tr, dataset_val

    def _set_one_pass_epoch(self, n_train: int, n_val: int) -> None:
        batch = self.configuration_manager.batch_size
        train, val = math.ceil(n_train / batch), max(1, math.ceil(n_val / batch))
        if env.read("DRUWAS_ITERS") is not None:
            self.print_to_log_file(f"Paper-strict recipe: DRUWAS_ITERS is set, so {self.num_iterations_per_epoch} "
                                   f"training iterations per epoch instead of one pass ({train})")
            return
        self.num_iterations_per_epoch, self.num_val_iterations_per_epoch = train, val
        self.print_to_log_file(f"Paper-strict recipe: one epoch = one pass over {n_train} training cases at batch "
                               f"size {batch}: {train} training iterations; {val} validation iterations "
                               f"for {n_val} validation cases")

    def configure_rotation_dummyDA_mirroring_and_inital_patch_size(self):
        """nnU-Net's augmentation (mirroring included); no mirroring axes for inference, so the final
        validation and ``nnUNetv2_predict`` of this model run without test-time mirroring."""
        augmentation = super().configure_rotation_dummyDA_mirroring_and_inital_patch_size()
        self.inference_allowed_mirroring_axes = None
        return augmentation


_RECIPE_BASES: dict[str, type[DRUwASTrainerBase]] = {
    "paper": DRUwASPaperRecipeTrainer, "nnunet": DRUwASTrainerBase, "strict": DRUwASPaperStrictTrainer}


@functools.cache
def trainer_classes() -> dict[str, type[DRUwASTrainerBase]]:
    """Every DRUwAS trainer name (``variants.all_trainers()``) -> its nnU-Net trainer class.

    The same class objects on every call, also available as attributes of this module.
    """
    classes = {}
    for name, (variant, recipe) in all_trainers().items():
        doc = f"{variant.label} (Table 4 row {variant.table4_row}) trained with the {recipe} recipe."
        classes[name] = type(name, (_RECIPE_BASES[recipe],), {
            "variant": variant, "recipe": recipe, "__doc__": doc, "__module__": __name__, "__qualname__": name})
    return classes


globals().update(trainer_classes())
