"""nnU-Net trainers for the DRUwAS family: the behaviour behind every name in ``trainers/``.

Every row of :data:`nnunetv2_druwas.variants.VARIANTS` becomes three nnU-Net trainer classes
(:func:`trainer_classes`), one per training recipe. The rows of Table 4 build a
:class:`~nnunetv2_druwas.network.DRUwASUNet`; the reference row ``nnunet``
(``nnUNetTrainerDRUwAS_nnUNetNetwork``) builds nnU-Net's own network from the plans (nnU-Net's
``build_network_architecture``: PlainConvUNet for ``nnUNetPlans``, ResidualEncoderUNet for
``-p nnUNetResEncUNetMPlans``), with deep supervision at the plan's scales. The recipes:

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

Seeds and repeats (:class:`SeededTrainer`, the base of every DRUwAS trainer): a training seeds
Python's ``random``, numpy and torch from its seed, ``DRUWAS_SEED`` (default 0) plus its repeat
number, before nnU-Net builds the network, and again (a derived seed) before it builds the data
loaders; the augmentation workers get per-worker seeds derived from it and run in batchgenerators'
``MultiThreadedAugmenter`` (one queue per worker, read in turn), not nnU-Net's
``NonDetMultiThreadedAugmenter``, whose shared queue hands out batches in whichever order the
workers finish. Repeat k of any trainer is the class ``<trainer>_repeat<k>``
(:func:`repeat_trainer_class`, built on first use: ``trainers/druwas.py`` resolves such names for
``nnUNetv2_train`` and ``nnUNetv2_predict``), for every DRUwAS trainer and every trainer class of
nnU-Net's own package; ``nnUNetTrainer_repeat<k>`` is nnU-Net's trainer, seeded the same way and
honouring ``DRUWAS_EPOCHS``/``DRUWAS_ITERS``/``DRUWAS_LR`` (plain ``nnUNetTrainer`` stays nnU-Net's
own, unseeded). Repeat k of the Swish continuation continues repeat k of the ReLU run. Every
training writes its seed, repeat and settings to ``fold_<N>/druwas_run.json`` when it starts (a
resumed run rewrites it with ``started_at_epoch``; it is reseeded then, so a resumed run is not
the uninterrupted one).

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
import os
import random
import sys
from contextlib import ExitStack
from importlib.metadata import version
from pathlib import Path
from typing import ClassVar
from unittest import mock

import numpy as np
import torch
from batchgenerators.dataloading.multi_threaded_augmenter import MultiThreadedAugmenter
from batchgenerators.dataloading import nondet_multi_threaded_augmenter
from batchgenerators.dataloading.single_threaded_augmenter import SingleThreadedAugmenter
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
from nnunetv2_druwas.folds import EVALUATION_ERROR_FILE, METRICS_FILE, RUN_RECORD
from nnunetv2_druwas.network import druwas_from_plans
from nnunetv2_druwas.variants import (Variant, all_trainers, continued_trainer, repeat_trainer_name, split_repeat,
                                     trainer_name)

INIT_CHECKPOINT_VARIABLE = "DRUWAS_INIT_CHECKPOINT"
CONTINUATION_RECORD = "continuation.json"   # in fold_N/: what a continuation run started from
SEED_VARIABLE = "DRUWAS_SEED"
SETTINGS_VARIABLES = (SEED_VARIABLE, "DRUWAS_EPOCHS", "DRUWAS_ITERS", "DRUWAS_LR")

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


def seed_everything(seed: int) -> None:
    """Seed Python's ``random``, numpy's global generator and torch (CPU and every GPU).

    Args:
        seed: a whole number in [0, 2**32).
    """
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def derived_seeds(seed: int, *stream: int, n: int = 1) -> list[int]:
    """``n`` seeds of one sub-stream of a run's seed (numpy's ``SeedSequence``: reproducible, and
    independent of the other sub-streams).

    Args:
        seed: the run's seed.
        stream: whole numbers >= 0 naming the sub-stream (here: DDP rank, then 0 for the main
            process's data, 1 for the training workers, 2 for the validation workers).
        n: how many seeds.
    """
    return [int(s) for s in np.random.SeedSequence([seed, *stream]).generate_state(n)]


class WorkerSeeding:
    """nnU-Net's data loader as seen by the workers of a ``MultiThreadedAugmenter``: each worker, when
    batchgenerators tells it its number (``set_thread_id``, before its first batch), seeds Python's
    ``random``, numpy and torch with its own seed and limits torch to one thread. batchgenerators'
    ``MultiThreadedAugmenter`` seeds numpy only and leaves torch as forked: every worker would draw the
    same torch random numbers, and a worker forked from a process whose OpenMP threads ran can hang in
    its first multithreaded torch call (nnU-Net's ``NonDetMultiThreadedAugmenter`` does both itself).

    Args:
        loader: nnU-Net's data loader.
        seeds: one seed per worker.
    """

    def __init__(self, loader, seeds: list[int]):
        self.loader, self.seeds = loader, seeds

    def set_thread_id(self, thread_id: int) -> None:
        torch.set_num_threads(1)
        seed_everything(self.seeds[thread_id])
        self.loader.set_thread_id(thread_id)

    def __iter__(self):
        return self

    def __next__(self):
        return next(self.loader)

    def __repr__(self) -> str:
        return f"WorkerSeeding({self.loader!r}, seeds={self.seeds})"


class SeededTrainer(nnUNetTrainer):
    """nnU-Net's trainer plus what every training of the harness adds: a seed, the ``DRUWAS_*``
    overrides, and ``fold_N/druwas_run.json`` (module docstring, "Seeds and repeats").

    The seed is ``DRUWAS_SEED`` (default 0) plus :attr:`repeat`. A subclass sets its recipe's
    hyperparameters in :meth:`_apply_recipe`, which runs before the overrides.
    """

    repeat: ClassVar[int] = 0   # repeat k of a trainer is the class <trainer>_repeat<k> (repeat_trainer_class)

    def __init__(self, plans: dict, configuration: str, fold: int, dataset_json: dict,
                 device: torch.device = torch.device("cuda")):
        super().__init__(plans, configuration, fold, dataset_json, device)
        self._apply_recipe()
        self._apply_environment_overrides()
        self.run_seed = (env.read(SEED_VARIABLE) or 0) + self.repeat
        self.augmentation_seeds: dict[str, object] = {}

    def _apply_recipe(self) -> None:
        """A recipe's hyperparameters (none here: nnU-Net's own)."""

    def _apply_environment_overrides(self) -> None:
        """``DRUWAS_EPOCHS`` / ``DRUWAS_ITERS`` / ``DRUWAS_LR``: shorter runs without code changes."""
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

    def initialize(self) -> None:
        """Seed every generator from the run's seed, then nnU-Net's initialisation (the network's weights)."""
        seed_everything(self.run_seed)
        self.print_to_log_file(f"Seed {self.run_seed} (repeat {self.repeat}; {SEED_VARIABLE}="
                               f"{env.value(SEED_VARIABLE) or '0 (unset)'})")
        super().initialize()

    def get_dataloaders(self):
        """nnU-Net's data loaders, seeded: the augmentation in this process (``nnUNet_n_proc_DA=0``)
        from a seed derived from the run's, the workers from per-worker derived seeds
        (:class:`WorkerSeeding`) in a ``MultiThreadedAugmenter`` (nnU-Net's
        ``NonDetMultiThreadedAugmenter`` is swapped for it while nnU-Net builds the loaders). Under
        DDP every rank derives its own seeds."""
        rank = torch.distributed.get_rank() if self.is_ddp else 0
        main_seed = derived_seeds(self.run_seed, rank, 0)[0]
        seed_everything(main_seed)
        workers: list[list[int]] = []

        def seeded_augmenter(data_loader, transform, num_processes: int, num_cached: int = 2, seeds=None,
                             pin_memory: bool = False, wait_time: float = 0.02) -> MultiThreadedAugmenter:
            workers.append(derived_seeds(self.run_seed, rank, 1 + len(workers), n=num_processes))
            return MultiThreadedAugmenter(WorkerSeeding(data_loader, workers[-1]), transform, num_processes,
                                          num_cached_per_queue=max(2, math.ceil(num_cached / num_processes)),
                                          seeds=workers[-1], pin_memory=pin_memory, wait_time=wait_time)

        with ExitStack() as stack:   # every module of the class hierarchy that builds nnU-Net's augmenter
            for cls in type(self).__mro__:
                module = sys.modules.get(cls.__module__)
                if getattr(module, "NonDetMultiThreadedAugmenter", None) is \
                        nondet_multi_threaded_augmenter.NonDetMultiThreadedAugmenter:
                    stack.enter_context(mock.patch.object(module, "NonDetMultiThreadedAugmenter", seeded_augmenter))
            loaders = super().get_dataloaders()
        self.augmentation_seeds = {"main_process": main_seed}
        for name, loader in zip(("training_workers", "validation_workers"), loaders):
            if isinstance(loader, MultiThreadedAugmenter):
                self.augmentation_seeds[name] = list(loader.seeds)
            elif not isinstance(loader, SingleThreadedAugmenter):
                self.augmentation_seeds[name] = f"not seeded ({type(loader).__name__})"
                self.print_to_log_file(f"Warning: the {name.replace('_', ' ')} ({type(loader).__name__}) are not "
                                       f"seeded; this run is not reproducible")
        return loaders

    def on_train_start(self) -> None:
        super().on_train_start()
        if self.local_rank == 0:
            files.write_text(Path(self.output_folder, RUN_RECORD), json.dumps(self.run_record(), indent=2) + "\n")

    def run_record(self) -> dict:
        """What ``fold_N/druwas_run.json`` holds: trainer, repeat, seed, the ``DRUWAS_*`` settings as
        set, the schedule they gave, the augmentation seeds and the versions."""
        return {
            "trainer": type(self).__name__,
            "base_trainer": split_repeat(type(self).__name__)[0],
            "repeat": self.repeat,
            "seed": self.run_seed,
            "settings": {name: env.value(name) for name in SETTINGS_VARIABLES},
            "num_epochs": self.num_epochs,
            "num_iterations_per_epoch": self.num_iterations_per_epoch,
            "num_val_iterations_per_epoch": self.num_val_iterations_per_epoch,
            "initial_lr": self.initial_lr,
            "batch_size": self.batch_size,
            "started_at_epoch": self.current_epoch,
            "augmentation_seeds": self.augmentation_seeds,
            "device": str(self.device),
            "versions": {name: version(name) for name in ("torch", "nnunetv2", "batchgenerators")},
        }


class DRUwASTrainerBase(SeededTrainer):
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
        self._resumed_from_own_checkpoint = False
        self.activation_checkpointing = bool(env.read("DRUWAS_CHECKPOINTING"))
        fold_protocols()   # a wrong DRUWAS_PROTOCOLS fails now, not after the training

    def _apply_recipe(self) -> None:
        """The ``recipe_*`` class attributes that are set (None keeps nnU-Net's value)."""
        if self.recipe_initial_lr is not None:
            self.initial_lr = self.recipe_initial_lr
        if self.recipe_weight_decay is not None:
            self.weight_decay = self.recipe_weight_decay
        epochs = self.recipe_continuation_epochs if self.variant.continues else self.recipe_num_epochs
        if epochs is not None:
            self.num_epochs = epochs

    def initialize(self) -> None:
        super().initialize()
        if not self.activation_checkpointing:
            return
        if self.variant.network == "plan":
            self.print_to_log_file("DRUWAS_CHECKPOINTING is ignored: nnU-Net's own network has no checkpointing")
        else:   # before the first forward pass, so torch.compile traces it once
            self.bare_network().checkpointing = True
            self.print_to_log_file("DRUWAS_CHECKPOINTING: activation checkpointing of every network stage")

    # --- network ----------------------------------------------------------------------

    @classmethod
    def build_network_architecture(cls, plans_manager: PlansManager, configuration_manager: ConfigurationManager,
                                   num_input_channels: int, num_output_channels: int,
                                   enable_deep_supervision: bool = True) -> nn.Module:
        """The variant's :class:`~nnunetv2_druwas.network.DRUwASUNet` for this plan, or nnU-Net's own
        network of the plan for a variant with ``network="plan"`` (also used by ``nnUNetv2_predict``,
        which knows only the trainer's name)."""
        if cls.variant is None:
            raise TypeError(f"{cls.__name__} has no variant; use one of the named DRUwAS trainers")
        if cls.variant.network == "plan":
            return nnUNetTrainer.build_network_architecture(plans_manager, configuration_manager, num_input_channels,
                                                            num_output_channels, enable_deep_supervision)
        return druwas_from_plans(configuration_manager.network_arch_init_kwargs,
                                 configuration_manager.network_arch_init_kwargs_req_import,
                                 num_input_channels, num_output_channels, enable_deep_supervision,
                                 widths=cls.widths, **cls.variant.network_kwargs)

    def bare_network(self) -> nn.Module:
        """The network without nnU-Net's DDP and torch.compile wrappers."""
        network = self.network.module if self.is_ddp else self.network
        return network._orig_mod if isinstance(network, OptimizedModule) else network

    def _get_deep_supervision_scales(self) -> list[list[float]] | None:
        """The scales of the network's own outputs (a DRUwAS network may have fewer stages than the
        plan; nnU-Net's network has the plan's)."""
        if not self.enable_deep_supervision or self.variant.network == "plan":
            return super()._get_deep_supervision_scales()
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
        """The trainer this continuation starts from: the same repeat of the continued variant."""
        return continued_trainer(repeat_trainer_name(trainer_name(self.variant, self.recipe), self.repeat))

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
        row = f"Table 4 row {variant.table4_row}" if variant.table4_row else "reference, not in Table 4"
        doc = f"{variant.label} ({row}) trained with the {recipe} recipe."
        classes[name] = type(name, (_RECIPE_BASES[recipe],), {
            "variant": variant, "recipe": recipe, "__doc__": doc, "__module__": __name__, "__qualname__": name})
    return classes


globals().update(trainer_classes())


@functools.cache
def repeat_trainer_class(name: str) -> type[nnUNetTrainer] | None:
    """The class of ``<trainer>_repeat<k>`` (k >= 1), built on first use and the same object afterwards;
    None when ``name`` is no repeat or its trainer is neither a DRUwAS trainer nor a trainer class of
    nnU-Net's own package.

    A DRUwAS trainer's repeat is its subclass with :attr:`SeededTrainer.repeat` = k; an nnU-Net
    trainer's repeat puts :class:`SeededTrainer` in front of it (seeded, ``DRUWAS_*`` honoured).

    Args:
        name: a trainer class name, e.g. ``nnUNetTrainerDRUwAS_repeat2`` or ``nnUNetTrainer_repeat1``.
    """
    base_name, repeat = split_repeat(name)
    if repeat == 0:
        return None
    base = trainer_classes().get(base_name) or _nnunet_trainer_class(base_name)
    if base is None:
        return None
    bases = (base,) if issubclass(base, SeededTrainer) else (SeededTrainer, base)
    doc = f"Repeat {repeat} of {base_name}: seed {SEED_VARIABLE} + {repeat}."
    return type(name, bases, {"repeat": repeat, "__doc__": doc, "__module__": __name__, "__qualname__": name})


def _nnunet_trainer_class(name: str) -> type[nnUNetTrainer] | None:
    """A trainer class of nnU-Net's own package by name (as ``nnUNetv2_train`` searches it), or None."""
    import nnunetv2
    from nnunetv2.utilities.find_class_by_name import recursive_find_python_class

    found = recursive_find_python_class(os.path.join(nnunetv2.__path__[0], "training", "nnUNetTrainer"), name,
                                        "nnunetv2.training.nnUNetTrainer")
    return found if isinstance(found, type) and issubclass(found, nnUNetTrainer) else None


def __getattr__(name: str) -> type[nnUNetTrainer]:
    """Repeats as module attributes (PEP 562), so nnU-Net's lookup by name and pickle find them."""
    found = repeat_trainer_class(name)
    if found is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return found
