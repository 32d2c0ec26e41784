"""The DRUwAS nnU-Net trainers, driven through nnU-Net's own commands on the tiny dataset (CPU).

Real runs: ``nnUNetv2_train`` for the main trainer, the Swish continuation and its ``--c``
resume, the paper-strict recipe and its Swish continuation, two repeats of the reference trainer
(nnU-Net's network) and a third run with repeat 1's seed, and ``nnUNetv2_predict``. Every one
of the 24 trainers also builds its network in this process (2d configuration, to stay fast), and
each network takes one real training step.
"""
from __future__ import annotations

import hashlib
import json
import math
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import TINY_ID, TRAINERS, check_fold_metrics, results_env, run_command
from nnunetv2_druwas.errors import DruwasError
from nnunetv2_druwas.variants import RECIPES, VARIANTS, all_trainers, repeat_trainer_name

# Short runs for every command here, with as few processes as nnU-Net allows: augmentation in
# the main process (nnUNet_n_proc_DA=0 makes only the batches it uses), one export worker and the
# BraTS evaluation in process (nnUNet_def_n_proc=1). OMP's passive wait keeps torch's threads
# from spinning against each other on a busy machine (otherwise a forward pass can be 100x slower).
# Together they halve the CPU time of a run.
SHORT = dict(DRUWAS_EPOCHS=1, DRUWAS_ITERS=2, OMP_WAIT_POLICY="PASSIVE", nnUNet_n_proc_DA=0, nnUNet_def_n_proc=1)
TRAIN = ["nnUNetv2_train", str(TINY_ID), "3d_fullres", "0", "-device", "cpu", "-tr"]
RELU, SWISH = "nnUNetTrainerDRUwAS", "nnUNetTrainerDRUwASSwish"
REFERENCE = "nnUNetTrainerDRUwAS_nnUNetNetwork"   # nnU-Net's network of the plan, paper's recipe
STRICT, SWISH_STRICT = RELU + "_PaperStrict", SWISH + "_PaperStrict"


def fold_dir(env: dict[str, str], trainer: str, configuration: str = "3d_fullres", fold: int = 0) -> Path:
    (dataset,) = Path(env["nnUNet_results"]).glob(f"Dataset{TINY_ID:03d}_*")
    return dataset / f"{trainer}__nnUNetPlans__{configuration}" / f"fold_{fold}"


def splits(env: dict[str, str]) -> list[dict]:
    (preprocessed,) = Path(env["nnUNet_preprocessed"]).glob(f"Dataset{TINY_ID:03d}_*")
    return json.loads((preprocessed / "splits_final.json").read_text())


def load_checkpoint(path: Path) -> dict:
    return torch.load(path, map_location="cpu", weights_only=False)


def preprocessed_dataset(env: dict[str, str]) -> Path:
    (folder,) = Path(env["nnUNet_preprocessed"]).glob(f"Dataset{TINY_ID:03d}_*")
    return folder


def check_fold_0_metrics(env: dict[str, str], fold: Path) -> None:
    """The fold's BraTS metrics are those of its validation predictions, recomputed by hand."""
    splits = json.loads((preprocessed_dataset(env) / "splits_final.json").read_text())
    check_fold_metrics(fold, preprocessed_dataset(env) / "gt_segmentations", sorted(splits[0]["val"]))


def in_process_trainer(name: str, configuration: str, env: dict[str, str], monkeypatch, plans: str = "nnUNetPlans"):
    """A trainer of the named class built in this process, as ``nnUNetv2_train`` builds it."""
    from batchgenerators.utilities.file_and_folder_operations import load_json

    from nnunetv2_druwas import training

    for key in ("nnUNet_raw", "nnUNet_preprocessed", "nnUNet_results", "nnUNet_n_proc_DA",
                "DRUWAS_EPOCHS", "DRUWAS_ITERS", "DRUWAS_LR", "DRUWAS_SEED", "DRUWAS_INIT_CHECKPOINT", "DRUWAS_CHECKPOINTING"):
        if key in env:
            monkeypatch.setenv(key, env[key])
        else:
            monkeypatch.delenv(key, raising=False)
    (preprocessed,) = Path(env["nnUNet_preprocessed"]).glob(f"Dataset{TINY_ID:03d}_*")
    plans = load_json(str(preprocessed / f"{plans}.json"))
    plans["continue_training"] = False
    dataset_json = load_json(str(preprocessed / "dataset.json"))
    return getattr(training, name)(plans, configuration, 0, dataset_json, torch.device("cpu"))   # repeats too


def plan_network(trainer) -> torch.nn.Module:
    """nnU-Net's own network of the trainer's plan and configuration (get_network_from_plans)."""
    from nnunetv2.utilities.get_network_from_plans import get_network_from_plans
    from nnunetv2.utilities.label_handling.label_handling import determine_num_input_channels

    cm = trainer.configuration_manager
    inputs = determine_num_input_channels(trainer.plans_manager, cm, trainer.dataset_json)
    return get_network_from_plans(cm.network_arch_class_name, cm.network_arch_init_kwargs,
                                  cm.network_arch_init_kwargs_req_import, inputs,
                                  trainer.label_manager.num_segmentation_heads, deep_supervision=True)


def n_parameters(network: torch.nn.Module) -> int:
    return sum(p.numel() for p in network.parameters())


@pytest.fixture(scope="module")
def relu_run(tiny_preprocessed, tmp_path_factory) -> dict[str, str]:
    """One real 3d_fullres run of the main trainer; returns its environment."""
    env = results_env(tiny_preprocessed, tmp_path_factory.mktemp("results"), **SHORT)
    run_command(TRAIN + [RELU], env)
    return env


@pytest.fixture(scope="module")
def swish_run(relu_run) -> dict[str, str]:
    """The Swish continuation of ``relu_run``, in the same results folder."""
    run_command(TRAIN + [SWISH], relu_run)
    return relu_run


# --- discovery and the env command ----------------------------------------------------------

def test_trainer_module_imports_in_a_fresh_interpreter_and_nnunet_finds_every_name():
    script = (
        "import sys, json\n"
        f"sys.path.insert(0, {str(TRAINERS)!r})\n"
        "import druwas\n"
        "from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer\n"
        "from nnunetv2.utilities.find_objects import recursive_find_trainer_class_by_name\n"
        "names = sorted(druwas.__all__)\n"
        "assert all(issubclass(getattr(druwas, n), nnUNetTrainer) for n in names)\n"
        "found = {n: recursive_find_trainer_class_by_name(n).__name__ for n in names}\n"
        "heavy = [m for m in ('nnunetv2_druwas.evaluation.evaluate', 'nnunetv2_druwas.evaluation.metrics',\n"
        "                     'medpy', 'monai') if m in sys.modules]\n"
        "repeats = {}\n"
        "for n in ('nnUNetTrainerDRUwASSwish_PaperStrict_repeat2', 'nnUNetTrainer_repeat1', 'nnUNetTrainer_250epochs_repeat3'):\n"
        "    cls = recursive_find_trainer_class_by_name(n)\n"
        "    again = recursive_find_trainer_class_by_name(n)\n"
        "    import pickle\n"
        "    repeats[n] = [cls.__name__, cls.repeat, cls is again, pickle.loads(pickle.dumps(cls)) is cls,\n"
        "                  [c.__name__ for c in cls.__mro__[1:4]]]\n"
        "try:\n"
        "    recursive_find_trainer_class_by_name('nnUNetTrainerNoSuchThing_repeat1')\n"
        "    missing = 'found'\n"
        "except RuntimeError as e:\n"
        "    missing = 'Could not find' in str(e)\n"
        "print(json.dumps({'names': names, 'found': found, 'heavy': heavy, 'repeats': repeats, 'missing': missing}))\n")
    env = dict(os.environ, nnUNet_extTrainer=str(TRAINERS))
    proc = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-4000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result["names"] == sorted(all_trainers())
    assert len(result["names"]) == len(VARIANTS) * len(RECIPES) == 24
    assert result["found"] == {n: n for n in result["names"]}
    assert result["heavy"] == []
    # repeats of DRUwAS and of nnU-Net's own trainers: built on demand, the same class every time
    assert result["repeats"] == {
        "nnUNetTrainerDRUwASSwish_PaperStrict_repeat2": [
            "nnUNetTrainerDRUwASSwish_PaperStrict_repeat2", 2, True, True,
            ["nnUNetTrainerDRUwASSwish_PaperStrict", "DRUwASPaperStrictTrainer", "DRUwASPaperRecipeTrainer"]],
        "nnUNetTrainer_repeat1": ["nnUNetTrainer_repeat1", 1, True, True, ["SeededTrainer", "nnUNetTrainer", "object"]],
        "nnUNetTrainer_250epochs_repeat3": ["nnUNetTrainer_250epochs_repeat3", 3, True, True,
                                            ["SeededTrainer", "nnUNetTrainer_250epochs", "nnUNetTrainer"]]}
    assert result["missing"] is True


def test_env_prints_the_trainer_folder_and_reports_data_folders(tmp_path, capsys):
    from nnunetv2_druwas.cli import main
    from nnunetv2_druwas.env import environment_lines, trainers_dir

    assert trainers_dir() == TRAINERS.resolve()
    results = tmp_path / "results"
    results.mkdir()
    lines = environment_lines({"nnUNet_results": str(results), "nnUNet_raw": str(tmp_path / "absent"),
                               "nnUNet_extTrainer": os.pathsep.join(["/other/trainers", str(TRAINERS)])})
    assert lines[0] == f"export nnUNet_extTrainer={TRAINERS.resolve()}{os.pathsep}/other/trainers"
    assert f"export nnUNet_results={results}" in lines
    assert any(line.startswith("# nnUNet_raw=") and "not a folder" in line for line in lines)
    assert any(line.startswith("# nnUNet_preprocessed is not set") for line in lines)
    assert main(["env", "--trainers-dir"]) == 0
    assert capsys.readouterr().out.strip() == str(TRAINERS.resolve())


def test_trainers_command_lists_the_reference_network_and_repeats(capsys):
    from nnunetv2_druwas.cli import main

    assert main(["trainers"]) == 0
    lines = capsys.readouterr().out.splitlines()
    reference = [line for line in lines if line.startswith(REFERENCE + " ")]
    assert len(reference) == 1 and "reference: nnU-Net's network (from the plan) [paper recipe" in reference[0]
    assert any(line.startswith(f"{SWISH}_PaperStrict ") and line.endswith(f"continues {STRICT}]") for line in lines)
    assert "nnUNetTrainer_repeat1" in lines[-1] and "DRUWAS_SEED + k" in lines[-1]


# --- recipes and overrides, in process ------------------------------------------------------

def test_recipes_and_length_overrides(tiny_preprocessed, tmp_path, monkeypatch):
    from nnunetv2_druwas.training import DRUwASPaperRecipeTrainer

    env = results_env(tiny_preprocessed, tmp_path)
    paper = in_process_trainer(RELU, "3d_fullres", env, monkeypatch)
    assert isinstance(paper, DRUwASPaperRecipeTrainer)
    assert (paper.num_epochs, paper.initial_lr, paper.num_iterations_per_epoch) == (100, 5e-4, 250)
    assert in_process_trainer(SWISH, "3d_fullres", env, monkeypatch).num_epochs == 60
    nnunet = in_process_trainer(RELU + "_nnUNetRecipe", "3d_fullres", env, monkeypatch)
    assert (nnunet.num_epochs, nnunet.initial_lr, nnunet.weight_decay) == (1000, 1e-2, 3e-5)
    assert in_process_trainer(SWISH + "_nnUNetRecipe", "3d_fullres", env, monkeypatch).num_epochs == 1000
    strict = in_process_trainer(STRICT, "3d_fullres", env, monkeypatch)
    assert (strict.num_epochs, strict.initial_lr, strict.enable_deep_supervision) == (100, 5e-4, False)
    assert in_process_trainer(SWISH_STRICT, "3d_fullres", env, monkeypatch).num_epochs == 60
    assert paper.enable_deep_supervision and nnunet.enable_deep_supervision
    # the tiny plan asks for batch 2 (nnU-Net's 5 %-of-the-data cap); the memory budget allows the paper's 4
    assert paper.configuration_manager.batch_size == 2 and paper.paper_batch_size() == 4

    short = in_process_trainer("nnUNetTrainerDRUwAS_SA_nnUNetRecipe", "2d",
                               dict(env, DRUWAS_EPOCHS="3", DRUWAS_ITERS="10"), monkeypatch)
    assert (short.num_epochs, short.num_iterations_per_epoch, short.num_val_iterations_per_epoch) == (3, 10, 2)
    assert in_process_trainer(SWISH, "2d", dict(env, DRUWAS_ITERS="1"), monkeypatch).num_val_iterations_per_epoch == 1
    assert in_process_trainer(RELU, "2d", dict(env, DRUWAS_LR="5e-3"), monkeypatch).initial_lr == 5e-3
    for variable, bad in (("DRUWAS_EPOCHS", "0"), ("DRUWAS_EPOCHS", "ten"), ("DRUWAS_ITERS", "1.5"),
                          ("DRUWAS_LR", "-1"), ("DRUWAS_LR", "nan")):
        with pytest.raises(DruwasError, match=f"{variable}={bad!r} is not"):
            in_process_trainer(RELU, "2d", dict(env, **{variable: bad}), monkeypatch)


def test_repeats_seed_from_their_number_and_honour_the_overrides(tiny_preprocessed, tmp_path, monkeypatch):
    """Repeat k's seed is DRUWAS_SEED + k; nnU-Net's trainer repeated is seeded and takes the DRUWAS_*
    overrides, plain nnUNetTrainer stays nnU-Net's own; Swish repeat k continues ReLU repeat k."""
    from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer

    env = results_env(tiny_preprocessed, tmp_path / "results", DRUWAS_EPOCHS="3", DRUWAS_ITERS="10", DRUWAS_LR="0.02")
    plain = in_process_trainer("nnUNetTrainer", "2d", env, monkeypatch)
    assert type(plain) is nnUNetTrainer and not hasattr(plain, "run_seed")
    assert (plain.num_epochs, plain.num_iterations_per_epoch, plain.initial_lr) == (1000, 250, 1e-2)
    repeat = in_process_trainer("nnUNetTrainer_repeat2", "2d", env, monkeypatch)
    assert isinstance(repeat, nnUNetTrainer) and (repeat.repeat, repeat.run_seed) == (2, 2)
    assert (repeat.num_epochs, repeat.num_iterations_per_epoch, repeat.num_val_iterations_per_epoch,
            repeat.initial_lr) == (3, 10, 2, 0.02)
    assert in_process_trainer("nnUNetTrainer_repeat2", "2d", dict(env, DRUWAS_SEED="5"), monkeypatch).run_seed == 7
    assert in_process_trainer(RELU, "2d", dict(env, DRUWAS_SEED="5"), monkeypatch).run_seed == 5
    assert in_process_trainer(RELU, "2d", env, monkeypatch).run_seed == 0
    with pytest.raises(DruwasError, match="DRUWAS_SEED='-1' is not a whole number >= 0"):
        in_process_trainer(RELU, "2d", dict(env, DRUWAS_SEED="-1"), monkeypatch)

    swish = in_process_trainer(SWISH + "_repeat1", "2d", env, monkeypatch)
    assert (swish.run_seed, swish.num_epochs, swish.initial_lr) == (1, 3, 0.02)
    assert in_process_trainer(SWISH_STRICT + "_repeat1", "2d", env, monkeypatch)._source_trainer_name() == \
        STRICT + "_repeat1"
    with pytest.raises(DruwasError) as error:
        swish.continuation_checkpoint()
    assert f"{RELU}_repeat1__nnUNetPlans__2d" in str(error.value)
    assert f"-tr {RELU}_repeat1 -p nnUNetPlans" in str(error.value)


@pytest.mark.parametrize("name", sorted(all_trainers()))
def test_every_trainer_builds_its_network_and_takes_a_training_step(name, tiny_preprocessed, tmp_path, monkeypatch):
    """Every name builds the right network and recipe (the reference row: nnU-Net's own network of the
    plan, the same class and parameter count as nnU-Net's get_network_from_plans); each of the 8
    networks takes a real training and validation step (under the paper's recipe: the nnU-Net recipe
    twin has the same network, and its SGD step is nnU-Net's own; the strict twin's real run is tested
    below)."""
    from nnunetv2.training.lr_scheduler.polylr import PolyLRScheduler

    from nnunetv2_druwas.network import AttentionGate, DRUwASUNet, ResidualBlock, SpatialAttention
    from nnunetv2_druwas.training import PlateauOnValidation

    variant, recipe = all_trainers()[name]
    torch.manual_seed(0)
    trainer = in_process_trainer(name, "2d", results_env(tiny_preprocessed, tmp_path, nnUNet_n_proc_DA="0"),
                                 monkeypatch)
    trainer.initialize()
    network = trainer.bare_network()
    if variant.network == "plan":
        reference = plan_network(trainer)
        assert type(network) is type(reference) and type(network).__name__ == "PlainConvUNet"
        assert n_parameters(network) == n_parameters(reference)
        assert {k: v.shape for k, v in network.state_dict().items()} == \
            {k: v.shape for k, v in reference.state_dict().items()}
        scales = trainer._get_deep_supervision_scales()   # nnU-Net's: the plan's pooling
        pools = np.cumprod(np.vstack(trainer.configuration_manager.pool_op_kernel_sizes), axis=0)
        assert scales == (None if recipe == "strict" else [list(1 / p) for p in pools[:-1]])
    else:
        assert isinstance(network, DRUwASUNet) and network.encoder.conv_op is torch.nn.Conv2d
        present = {switch: any(isinstance(m, block) for m in network.modules())
                   for switch, block in (("residual", ResidualBlock), ("attention_gate", AttentionGate),
                                         ("spatial_attention", SpatialAttention))}
        assert present == {switch: getattr(variant, switch) for switch in present}
        assert any(isinstance(m, torch.nn.SiLU) for m in network.modules()) == (variant.nonlin == "swish")
    adam = recipe in ("paper", "strict")
    expected = (torch.optim.Adam, PlateauOnValidation) if adam else (torch.optim.SGD, PolyLRScheduler)
    assert (type(trainer.optimizer), type(trainer.lr_scheduler)) == expected
    # the paper's batch of 4 fits the tiny plan's memory budget, also for nnU-Net's own network
    assert trainer.batch_size == (4 if adam else trainer.configuration_manager.batch_size)
    if recipe != "paper":
        return

    train_loader, val_loader = trainer.get_dataloaders()
    batch = next(train_loader)
    # one target per network output: the deep-supervision scales follow the network, not the plan
    trainer.network.train()
    with torch.no_grad():
        outputs = trainer.network(batch["data"])
    assert [o.shape[2:] for o in outputs] == [t.shape[2:] for t in batch["target"]]
    before = {k: v.clone() for k, v in network.state_dict().items()}
    loss = trainer.train_step(batch)["loss"]
    assert np.isfinite(loss)
    assert any(not torch.equal(before[k], v) for k, v in network.state_dict().items())
    assert np.isfinite(trainer.validation_step(next(val_loader))["loss"])


def test_checkpointing_switch_reaches_the_network_and_changes_no_step(tiny_preprocessed, tmp_path, monkeypatch):
    """DRUWAS_CHECKPOINTING=1 turns on DRUwASUNet.checkpointing; nnU-Net's own training step (deep
    supervision loss, optimizer) then gives the same loss and the same new weights."""
    env = results_env(tiny_preprocessed, tmp_path, nnUNet_n_proc_DA="0")
    trainers = {}
    for switch in ("", "1"):
        torch.manual_seed(0)
        trainers[switch] = in_process_trainer(RELU, "2d", dict(env, DRUWAS_CHECKPOINTING=switch), monkeypatch)
        trainers[switch].initialize()
    off, on = trainers[""], trainers["1"]
    assert (off.bare_network().checkpointing, on.bare_network().checkpointing) == (False, True)
    assert "DRUWAS_CHECKPOINTING" in Path(on.log_file).read_text()
    batch = next(off.get_dataloaders()[0])
    losses = [trainer.train_step(batch)["loss"] for trainer in (off, on)]
    assert np.isclose(losses[0], losses[1], rtol=1e-6, atol=0)
    after_off, after_on = off.bare_network().state_dict(), on.bare_network().state_dict()
    assert all(torch.allclose(after_off[k], after_on[k], rtol=1e-5, atol=1e-7) for k in after_off)


def test_deep_supervision_follows_the_network_for_a_plan_with_more_stages(tiny_preprocessed, tmp_path, monkeypatch):
    """A 6-stage anisotropic plan: the paper's network has 5 stages, so 4 outputs; the loss weights
    and the deep-supervision scales (hence the targets) follow it, not the plan's 5."""
    trainer = in_process_trainer(RELU, "2d", results_env(tiny_preprocessed, tmp_path), monkeypatch)
    arch = trainer.configuration_manager.network_arch_init_kwargs
    arch.update(n_stages=6, features_per_stage=[32, 64, 128, 256, 512, 512], kernel_sizes=[[3, 3]] * 6,
                strides=[[1, 1], [2, 1], [2, 2], [2, 2], [2, 2], [2, 2]], n_conv_per_stage=[2] * 6,
                n_conv_per_stage_decoder=[2] * 5)
    trainer.initialize()
    scales = trainer._get_deep_supervision_scales()
    assert scales == [[1, 1], [0.5, 1], [0.25, 0.5], [0.125, 0.25]]
    assert len(trainer.loss.weight_factors) == len(scales)
    with torch.no_grad():
        outputs = trainer.network(torch.zeros(1, trainer.num_input_channels, 32, 64))
    assert [tuple(o.shape[2:]) for o in outputs] == [(32 * a, 64 * b) for a, b in scales]


# The paper's recipe, written out here: Adam from 5e-4, ReduceLROnPlateau with patience 4 and PyTorch's
# factor 0.1 on nnU-Net's EMA pseudo Dice (new = 0.9 old + 0.1 value), higher is better.
PAPER_LR, PATIENCE, FACTOR = 5e-4, 4, 0.1


def ema_by_hand(values: list[float]) -> list[float]:
    ema = [values[0]]
    for value in values[1:]:
        ema.append(0.9 * ema[-1] + 0.1 * value)
    return ema


def run_epochs(trainer, pseudo_dice: list[float], keep: Path | None = None) -> None:
    """Epochs through nnU-Net's own hooks (as its ``run_training`` calls them) without training steps:
    nnU-Net's validation epoch end gets counts whose Dice is ``pseudo_dice[e]`` in every region
    (tp = d, fp = fn = 1 - d); its ``on_epoch_end`` logs, writes ``checkpoint_latest.pth`` (every epoch:
    save_every = 1) and counts the epoch. With ``keep``, each epoch's checkpoint is copied to
    ``keep/epoch_<e>.pth``."""
    trainer.save_every = 1
    for dice in pseudo_dice:
        epoch = trainer.current_epoch
        trainer.on_epoch_start()
        trainer.on_train_epoch_start()
        trainer.on_train_epoch_end([{"loss": np.array(0.5)}])
        trainer.on_validation_epoch_start()
        counts = np.full(3, dice), np.full(3, 1 - dice)
        trainer.on_validation_epoch_end([{"loss": np.array(0.4), "tp_hard": counts[0], "fp_hard": counts[1],
                                          "fn_hard": counts[1]}])
        trainer.on_epoch_end()
        if keep is not None:
            keep.mkdir(exist_ok=True)
            shutil.copy(Path(trainer.output_folder) / "checkpoint_latest.pth", keep / f"epoch_{epoch}.pth")


def checkpoint_rate(path: Path) -> float:
    (group,) = load_checkpoint(path)["optimizer_state"]["param_groups"]
    return group["lr"]


def test_plateau_keeps_the_rate_while_the_signal_rises(tiny_preprocessed, tmp_path, monkeypatch):
    env = results_env(tiny_preprocessed, tmp_path / "results")
    trainer = in_process_trainer("nnUNetTrainerDRUwAS_Baseline", "2d", env, monkeypatch)
    trainer.initialize()
    rising = [0.3 + 0.05 * epoch for epoch in range(8)]
    run_epochs(trainer, rising)
    assert trainer.logger.get_value("ema_fg_dice", step=None) == pytest.approx(ema_by_hand(rising))
    assert trainer.logger.get_value("lrs", step=None) == pytest.approx([PAPER_LR] * 8)
    checkpoint = Path(trainer.output_folder) / "checkpoint_latest.pth"
    assert load_checkpoint(checkpoint)["current_epoch"] == 8
    assert checkpoint_rate(checkpoint) == pytest.approx(PAPER_LR)
    resumed = in_process_trainer("nnUNetTrainerDRUwAS_Baseline", "2d", env, monkeypatch)
    resumed.load_checkpoint(str(checkpoint))
    assert resumed.optimizer.param_groups[0]["lr"] == pytest.approx(PAPER_LR)


def test_plateau_lowers_the_rate_once_patience_plus_one_epochs_after_the_best(tiny_preprocessed, tmp_path,
                                                                              monkeypatch):
    """The EMA rises for 4 epochs (best at epoch 3), then stays flat: the end of epoch 3 + 4 + 1 = 8 lowers
    the rate, so nnU-Net's checkpoint of epoch 8 holds it and epoch 9 trains with it; nothing else drops in
    11 epochs. A trainer resumed from a checkpoint of the plateau (``--c``) drops at the same epoch."""
    env = results_env(tiny_preprocessed, tmp_path / "results")
    trainer = in_process_trainer("nnUNetTrainerDRUwAS_Baseline", "2d", env, monkeypatch)
    trainer.initialize()
    # pseudo Dice values whose EMA is 0.50, 0.52, 0.54, 0.56, then 0.56 for ever
    signal = [0.5, 0.7, 0.72, 0.74] + [0.56] * 7
    ema = ema_by_hand(signal)
    assert ema[:4] == pytest.approx([0.5, 0.52, 0.54, 0.56]) and ema[4:] == pytest.approx([0.56] * 7)
    best = 3
    drop = best + PATIENCE + 1
    checkpoints = tmp_path / "checkpoints"
    run_epochs(trainer, signal, keep=checkpoints)
    assert trainer.logger.get_value("ema_fg_dice", step=None) == pytest.approx(ema)
    rates = [PAPER_LR] * (drop + 1) + [PAPER_LR * FACTOR] * (len(signal) - drop - 1)
    assert trainer.logger.get_value("lrs", step=None) == pytest.approx(rates)     # the rate each epoch trained at
    assert [checkpoint_rate(checkpoints / f"epoch_{e}.pth") for e in range(len(signal))] == \
        pytest.approx([PAPER_LR] * drop + [PAPER_LR * FACTOR] * (len(signal) - drop))

    # --c from the checkpoint of epoch 6 (three epochs into the plateau), then the same signal
    resumed = in_process_trainer("nnUNetTrainerDRUwAS_Baseline", "2d", results_env(env, tmp_path / "resumed"),
                                 monkeypatch)
    resumed.load_checkpoint(str(checkpoints / "epoch_6.pth"))
    assert resumed.current_epoch == 7 and resumed.optimizer.param_groups[0]["lr"] == pytest.approx(PAPER_LR)
    run_epochs(resumed, signal[7:])
    assert resumed.logger.get_value("lrs", step=None) == pytest.approx(rates)
    # --c from the checkpoint written at the drop: the lowered rate, and no second drop on resuming
    after = in_process_trainer("nnUNetTrainerDRUwAS_Baseline", "2d", results_env(env, tmp_path / "after"), monkeypatch)
    after.load_checkpoint(str(checkpoints / f"epoch_{drop}.pth"))
    assert after.optimizer.param_groups[0]["lr"] == pytest.approx(PAPER_LR * FACTOR)
    run_epochs(after, signal[drop + 1:])
    assert after.logger.get_value("lrs", step=None) == pytest.approx(rates)


def test_paper_batch_size_follows_the_memory_budget(tiny_preprocessed, tmp_path, monkeypatch):
    """Plans whose memory budget holds only 2, then 1 DRUwAS sample: a 3D plan for a network with 4-32
    features (so nnU-Net's default 8 GB budget is the larger) and patches of 160^3 and 192^3 voxels."""
    from nnunetv2.utilities.get_network_from_plans import get_network_from_plans

    # nnU-Net's ExperimentPlanner: 560e6 feature-map units at batch 2 for its 8 GB target (3D)
    default_budget = 560_000_000 * 2
    env = results_env(tiny_preprocessed, tmp_path)
    for patch, expected_batch in ((160, 2), (192, 1)):
        trainer = in_process_trainer(RELU, "3d_fullres", env, monkeypatch)
        cm = trainer.configuration_manager
        cm.configuration["patch_size"] = [patch] * 3
        cm.network_arch_init_kwargs["features_per_stage"] = [4, 8, 16, 32]
        with torch.device("meta"):
            ours = trainer.build_network_architecture(trainer.plans_manager, cm, 4, 3, True)
            nnunet = get_network_from_plans(cm.network_arch_class_name, cm.network_arch_init_kwargs,
                                            cm.network_arch_init_kwargs_req_import, 4, 3, allow_init=False,
                                            deep_supervision=True)
        per_sample = int(ours.compute_conv_feature_map_size([patch] * 3))
        budget = max(default_budget, int(nnunet.compute_conv_feature_map_size([patch] * 3)) * cm.batch_size)
        assert budget == default_budget
        assert max(1, min(4, budget // per_sample)) == expected_batch
        assert per_sample * expected_batch <= budget < per_sample * (expected_batch + 1)
        assert trainer.paper_batch_size() == expected_batch
        trainer.initialize()
        assert trainer.batch_size == expected_batch


def test_strict_recipe_has_no_deep_supervision_and_one_pass_epochs(tiny_preprocessed, tmp_path, monkeypatch):
    """The strict network returns one tensor and its loss is not wrapped for deep supervision; its
    epoch length follows the split when nnU-Net builds the datasets, unless DRUWAS_ITERS is set."""
    from nnunetv2.training.loss.deep_supervision import DeepSupervisionWrapper

    env = results_env(tiny_preprocessed, tmp_path)
    trainer = in_process_trainer(STRICT, "2d", env, monkeypatch)
    trainer.initialize()
    paper = in_process_trainer(RELU, "2d", env, monkeypatch)
    paper.initialize()
    assert isinstance(paper.loss, DeepSupervisionWrapper) and not isinstance(trainer.loss, DeepSupervisionWrapper)
    patch = tuple(trainer.configuration_manager.patch_size)
    trainer.network.train()
    with torch.no_grad():
        output = trainer.network(torch.zeros(2, trainer.num_input_channels, *patch))
    assert isinstance(output, torch.Tensor) and tuple(output.shape) == (2, 3, *patch)
    assert trainer._get_deep_supervision_scales() is None
    trainer.get_tr_and_val_datasets()
    split = splits(env)[0]
    assert (trainer.num_iterations_per_epoch, trainer.num_val_iterations_per_epoch) == (
        math.ceil(len(split["train"]) / 4), math.ceil(len(split["val"]) / 4))

    short = in_process_trainer(STRICT, "2d", dict(env, DRUWAS_ITERS="3"), monkeypatch)
    short.initialize()
    short.get_tr_and_val_datasets()
    assert (short.num_iterations_per_epoch, short.num_val_iterations_per_epoch) == (3, 1)


# --- real runs ------------------------------------------------------------------------------

def test_main_trainer_trains_validates_and_writes_brats_metrics(relu_run):
    fold = fold_dir(relu_run, RELU)
    checkpoint = load_checkpoint(fold / "checkpoint_final.pth")
    assert checkpoint["trainer_name"] == RELU and checkpoint["current_epoch"] == 1
    splits = json.loads((preprocessed_dataset(relu_run) / "splits_final.json").read_text())
    validation_cases = sorted(splits[0]["val"])
    assert sorted(p.name[:-len(".nii.gz")] for p in (fold / "validation").glob("*.nii.gz")) == validation_cases
    check_fold_0_metrics(relu_run, fold)
    log = "".join(p.read_text() for p in fold.glob("training_log_*.txt"))
    assert "DRUWAS_EPOCHS=1: 1 epochs instead of 100" in log
    assert "batch size 4 instead of the plan's 2" in log


def test_validation_only_rerun_writes_brats_metrics(relu_run):
    """``--val`` (with ``--val_best``: both checkpoints are loaded) redoes the final validation and
    the BraTS evaluation without training."""
    fold = fold_dir(relu_run, RELU)
    final = (fold / "checkpoint_final.pth").read_bytes()
    for name in ("brats_metrics.csv", "brats_metrics_summary.csv"):
        (fold / name).unlink()
    logs_before = set(fold.glob("training_log_*.txt"))
    run_command(TRAIN + [RELU, "--val", "--val_best"], relu_run)
    check_fold_0_metrics(relu_run, fold)
    assert (fold / "checkpoint_final.pth").read_bytes() == final   # nothing was trained
    (new_log,) = set(fold.glob("training_log_*.txt")) - logs_before
    text = new_log.read_text()
    assert "BraTS metrics of the validation cases" in text and "Epoch 0" not in text


def weights_digest_by_hand(weights: dict[str, torch.Tensor]) -> str:
    """SHA-256 over name, dtype, shape and bytes of every tensor in name order (the record's definition)."""
    digest = hashlib.sha256()
    for name in sorted(weights):
        tensor = weights[name].detach().cpu().contiguous()
        digest.update(f"{name}|{tensor.dtype}|{tuple(tensor.shape)}|".encode())
        digest.update(tensor.numpy().tobytes())
    return digest.hexdigest()


def test_swish_continuation_starts_from_the_relu_weights(swish_run):
    relu_path = fold_dir(swish_run, RELU) / "checkpoint_final.pth"
    fold = fold_dir(swish_run, SWISH)
    record = json.loads((fold / "continuation.json").read_text())
    relu_checkpoint = load_checkpoint(relu_path)
    relu = relu_checkpoint["network_weights"]
    # the record names the ReLU fold of the same dataset, plans, configuration and fold, and what it held
    assert record == {
        "checkpoint": str(relu_path.resolve()),
        "checkpoint_sha256": hashlib.sha256(relu_path.read_bytes()).hexdigest(),
        "source_trainer": RELU,
        "source_epochs": 1,
        "weights_sha256": weights_digest_by_hand(relu),
    }
    assert relu_checkpoint["current_epoch"] == 1 and relu_checkpoint["trainer_name"] == RELU
    # after two Adam steps at lr 5e-4 every weight is still within 1e-2 of the ReLU weights;
    # a fresh He initialisation is not (its convolution weights differ by ~0.1-1)
    swish = load_checkpoint(fold / "checkpoint_final.pth")
    assert swish["trainer_name"] == SWISH and set(swish["network_weights"]) == set(relu)
    for key, value in relu.items():
        assert (swish["network_weights"][key] - value).abs().max() <= 1e-2, key
    check_fold_0_metrics(swish_run, fold)


def test_figure4_reads_nnunets_own_training_logs(swish_run):
    """The analysis reads the per-epoch logs of real checkpoints: the ReLU run's epochs, then the Swish run's."""
    from analysis.collect import collect
    from analysis.curves import continuation_curves, training_curves

    results = Path(swish_run["nnUNet_results"])
    curves, notes = training_curves(results, collect(results).runs)
    assert not notes
    logs = {t: load_checkpoint(fold_dir(swish_run, t) / "checkpoint_final.pth")["logging"] for t in (RELU, SWISH)}
    joined = continuation_curves(curves[curves["trainer"].isin([RELU, SWISH])])
    relu, swish = (len(logs[t]["train_losses"]) for t in (RELU, SWISH))
    assert relu >= 1 and swish >= 1
    assert joined["epoch"].tolist() == list(range(1, relu + swish + 1))
    assert joined["phase"].tolist() == ["ReLU"] * relu + ["Swish"] * swish
    for column, key in (("train_loss", "train_losses"), ("val_loss", "val_losses"), ("pseudo_dice", "mean_fg_dice"),
                        ("ema_pseudo_dice", "ema_fg_dice")):
        expected = [float(v) for v in logs[RELU][key] + logs[SWISH][key]]
        assert joined[column].tolist() == pytest.approx(expected, rel=1e-12), column


def test_swish_resume_continues_its_own_run_without_reloading(swish_run):
    fold = fold_dir(swish_run, SWISH)
    record = (fold / "continuation.json").read_bytes()
    logs_before = set(fold.glob("training_log_*.txt"))
    run_command(TRAIN + [SWISH, "--c"], dict(swish_run, DRUWAS_EPOCHS="2"))
    assert load_checkpoint(fold / "checkpoint_final.pth")["current_epoch"] == 2
    (new_log,) = set(fold.glob("training_log_*.txt")) - logs_before
    text = new_log.read_text()
    assert "Epoch 1" in text and "Epoch 0" not in text
    assert "Continuation:" not in text
    assert (fold / "continuation.json").read_bytes() == record


def test_swish_without_the_relu_run_fails_with_the_command_to_run(tiny_preprocessed, tmp_path, monkeypatch):
    trainer = in_process_trainer(SWISH, "2d", results_env(tiny_preprocessed, tmp_path / "empty"), monkeypatch)
    with pytest.raises(DruwasError) as error:
        trainer.on_train_start()
    message = str(error.value)
    expected = (tmp_path / "empty" / f"Dataset{TINY_ID:03d}_Tiny" / f"{RELU}__nnUNetPlans__2d" / "fold_0"
                / "checkpoint_final.pth")
    assert str(expected) in message
    assert f"nnUNetv2_train Dataset{TINY_ID:03d}_Tiny 2d 0 -tr {RELU} -p nnUNetPlans" in message
    assert "DRUWAS_INIT_CHECKPOINT" in message

    missing = in_process_trainer(SWISH, "2d", results_env(tiny_preprocessed, tmp_path / "empty",
                                                          DRUWAS_INIT_CHECKPOINT=str(tmp_path / "nope.pth")),
                                 monkeypatch)
    with pytest.raises(DruwasError, match="nope.pth: no such checkpoint"):
        missing.continuation_checkpoint()


def test_explicit_init_checkpoint_loads_every_weight_exactly(relu_run, tmp_path, monkeypatch):
    source = tmp_path / "elsewhere.pth"
    shutil.copy(fold_dir(relu_run, RELU) / "checkpoint_final.pth", source)
    env = results_env(relu_run, tmp_path / "results", DRUWAS_INIT_CHECKPOINT=str(source))
    trainer = in_process_trainer(SWISH, "3d_fullres", env, monkeypatch)
    trainer.initialize()
    trainer.load_continuation_weights()
    loaded = trainer.bare_network().state_dict()
    expected = load_checkpoint(source)["network_weights"]
    assert set(loaded) == set(expected)
    assert all(torch.equal(loaded[k], expected[k]) for k in expected)   # head included
    assert json.loads((Path(trainer.output_folder) / "continuation.json").read_text())["checkpoint"] == str(source)

    baseline = in_process_trainer("nnUNetTrainerDRUwAS_Baseline", "3d_fullres", env, monkeypatch)
    baseline.initialize()
    with pytest.raises(DruwasError, match="do not fit the network of nnUNetTrainerDRUwAS_Baseline"):
        baseline.load_continuation_weights()


def test_continuation_from_a_checkpoint_without_its_head_is_refused(tiny_preprocessed, tmp_path, monkeypatch):
    """A ReLU checkpoint written by nnU-Net, with the segmentation heads removed (what
    ``-pretrained_weights`` would keep): the Swish run refuses it, naming the file and the missing head."""
    env = results_env(tiny_preprocessed, tmp_path / "results")
    relu = in_process_trainer(RELU, "2d", env, monkeypatch)
    relu.initialize()
    relu.save_checkpoint(str(tmp_path / "relu.pth"))
    checkpoint = load_checkpoint(tmp_path / "relu.pth")
    head = [k for k in checkpoint["network_weights"] if ".seg_layers." in k]
    assert head
    for key in head:
        del checkpoint["network_weights"][key]
    headless = tmp_path / "headless.pth"
    torch.save(checkpoint, headless)

    swish = in_process_trainer(SWISH, "2d", dict(env, DRUWAS_INIT_CHECKPOINT=str(headless)), monkeypatch)
    with pytest.raises(DruwasError) as error:
        swish.on_train_start()
    message = str(error.value)
    assert str(headless) in message and f"do not fit the network of {SWISH}" in message
    assert "Missing key(s)" in message and head[0] in message
    assert not (Path(swish.output_folder) / "continuation.json").exists()


def test_predict_with_a_druwas_trainer(relu_run, tmp_path):
    import nibabel as nib

    (raw,) = Path(relu_run["nnUNet_raw"]).glob(f"Dataset{TINY_ID:03d}_*")
    inputs = tmp_path / "in"
    inputs.mkdir()
    for image in sorted((raw / "imagesTr").glob("TINY_00[01]_*.nii.gz")):
        shutil.copy(image, inputs)
    run_command(["nnUNetv2_predict", "-i", str(inputs), "-o", str(tmp_path / "out"), "-d", str(TINY_ID),
                 "-c", "3d_fullres", "-f", "0", "-tr", RELU, "-device", "cpu", "-npp", "1", "-nps", "1",
                 "--disable_progress_bar"], relu_run)
    predictions = sorted((tmp_path / "out").glob("*.nii.gz"))
    assert [p.name for p in predictions] == ["TINY_000.nii.gz", "TINY_001.nii.gz"]
    for p in predictions:
        seg = np.asarray(nib.load(p).dataobj)
        assert seg.shape == (48, 48, 48) and set(np.unique(seg)) <= {0, 1, 2, 3}


# --- the paper-strict recipe, for real ----------------------------------------------------------

STRICT_FOLD = 1   # 5 training cases (6 cases, 5 folds): ceil(5 / 4) = 2 iterations, where floor or round give 1


@pytest.fixture(scope="module")
def strict_run(tiny_preprocessed, tmp_path_factory) -> dict[str, str]:
    """The strict full model and its Swish continuation on fold 1, one epoch of one pass each
    (no DRUWAS_ITERS); the final validation keeps its probabilities (--npz)."""
    env = results_env(tiny_preprocessed, tmp_path_factory.mktemp("strict"),
                      **{k: v for k, v in SHORT.items() if k != "DRUWAS_ITERS"})
    env.pop("DRUWAS_ITERS", None)
    train = ["nnUNetv2_train", str(TINY_ID), "3d_fullres", str(STRICT_FOLD), "-device", "cpu", "--npz", "-tr"]
    run_command(train + [STRICT], env)
    run_command(train + [SWISH_STRICT], env)
    return env


def test_strict_recipe_epoch_is_one_pass_over_the_training_cases(strict_run):
    split = splits(strict_run)[STRICT_FOLD]
    n_train, n_val = len(split["train"]), len(split["val"])
    assert n_train % 4 != 0   # otherwise ceil is not tested
    fold = fold_dir(strict_run, STRICT, fold=STRICT_FOLD)
    log = "".join(p.read_text() for p in fold.glob("training_log_*.txt"))
    assert (f"one epoch = one pass over {n_train} training cases at batch size 4: {math.ceil(n_train / 4)} training "
            f"iterations; {math.ceil(n_val / 4)} validation iterations for {n_val} validation cases") in log
    assert f"This split has {n_train} training and {n_val} validation cases" in log   # nnU-Net's own line
    checkpoint = load_checkpoint(fold / "checkpoint_final.pth")
    assert checkpoint["trainer_name"] == STRICT and checkpoint["current_epoch"] == 1
    assert (fold / "brats_metrics.csv").is_file()


def test_strict_recipe_validates_and_predicts_without_mirroring(strict_run, tmp_path, monkeypatch):
    """The checkpoint allows no mirroring axes: ``nnUNetv2_predict`` (test-time augmentation not
    disabled) gives the final validation's probabilities, while the same network with mirroring
    forced on gives other ones (it averages eight flipped predictions)."""
    from nnunetv2.imageio.simpleitk_reader_writer import SimpleITKIO
    from nnunetv2.inference.predict_from_raw_data import nnUNetPredictor

    fold = fold_dir(strict_run, STRICT, fold=STRICT_FOLD)
    assert load_checkpoint(fold / "checkpoint_final.pth")["inference_allowed_mirroring_axes"] is None
    (case,) = splits(strict_run)[STRICT_FOLD]["val"]
    (raw,) = Path(strict_run["nnUNet_raw"]).glob(f"Dataset{TINY_ID:03d}_*")
    inputs = tmp_path / "in"
    inputs.mkdir()
    for image in sorted((raw / "imagesTr").glob(f"{case}_*.nii.gz")):
        shutil.copy(image, inputs)
    run_command(["nnUNetv2_predict", "-i", str(inputs), "-o", str(tmp_path / "out"), "-d", str(TINY_ID),
                 "-c", "3d_fullres", "-f", str(STRICT_FOLD), "-tr", STRICT, "-device", "cpu", "-npp", "1", "-nps", "1",
                 "--save_probabilities", "--disable_progress_bar"], strict_run)
    validation = np.load(fold / "validation" / f"{case}.npz")["probabilities"]
    predicted = np.load(tmp_path / "out" / f"{case}.npz")["probabilities"]
    assert validation.shape == predicted.shape and validation.shape[0] == 3
    # equal up to float noise (nnUNetv2_predict sets its own torch thread count): measured ~2e-7
    assert np.abs(validation - predicted).mean() < 1e-4

    monkeypatch.setenv("nnUNet_extTrainer", strict_run["nnUNet_extTrainer"])
    predictor = nnUNetPredictor(use_mirroring=True, perform_everything_on_device=False, device=torch.device("cpu"),
                                allow_tqdm=False)
    predictor.initialize_from_trained_model_folder(str(fold.parent), (STRICT_FOLD,), "checkpoint_final.pth")
    assert predictor.allowed_mirroring_axes is None
    predictor.allowed_mirroring_axes = (0, 1, 2)
    data, properties = SimpleITKIO().read_images([str(p) for p in sorted(inputs.glob("*.nii.gz"))])
    _, mirrored = predictor.predict_single_npy_array(data, properties, None, None, True)
    assert np.abs(validation - mirrored).mean() > 1e-2   # measured ~0.14


def test_strict_swish_continues_the_strict_relu_run(strict_run):
    from nnunetv2_druwas.training import state_dict_digest

    relu_path = fold_dir(strict_run, STRICT, fold=STRICT_FOLD) / "checkpoint_final.pth"
    fold = fold_dir(strict_run, SWISH_STRICT, fold=STRICT_FOLD)
    record = json.loads((fold / "continuation.json").read_text())
    assert record["checkpoint"] == str(relu_path.resolve()) and record["source_trainer"] == STRICT
    assert record["weights_sha256"] == state_dict_digest(load_checkpoint(relu_path)["network_weights"])
    swish = load_checkpoint(fold / "checkpoint_final.pth")
    assert swish["trainer_name"] == SWISH_STRICT and swish["inference_allowed_mirroring_axes"] is None


# --- repeats and the reference network, for real -------------------------------------------------

# Seeded augmentation workers (nnUNet_n_proc_DA=2: batchgenerators' MultiThreadedAugmenter) are part
# of what these runs check; 2d keeps nnU-Net's network fast on the CPU.
REPEATS = dict(SHORT, nnUNet_n_proc_DA=2)
REPEAT_TRAIN = ["nnUNetv2_train", str(TINY_ID), "2d", "0", "-device", "cpu", "-tr"]


@pytest.fixture(scope="module")
def reference_repeats(tiny_preprocessed, tmp_path_factory) -> tuple[dict[str, str], dict[str, str]]:
    """Repeats 0 and 1 of the reference trainer (nnU-Net's network, paper's recipe) in one results
    folder, and repeat 0 with DRUWAS_SEED=1 (repeat 1's seed) in another; returns both environments."""
    env = results_env(tiny_preprocessed, tmp_path_factory.mktemp("repeats"), **REPEATS)
    again = results_env(tiny_preprocessed, tmp_path_factory.mktemp("same_seed"), **REPEATS, DRUWAS_SEED=1)
    for name, environment in ((REFERENCE, env), (repeat_trainer_name(REFERENCE, 1), env), (REFERENCE, again)):
        run_command(REPEAT_TRAIN + [name], environment)
    return env, again


def test_repeats_coexist_record_their_seeds_and_are_reproducible(reference_repeats):
    """Two repeats of one trainer and fold: own folders, own seeds (recorded, augmentation workers
    included); the same seed twice gives bitwise identical weights, another seed other weights."""
    env, again = reference_repeats
    folds = {"repeat 0": fold_dir(env, REFERENCE, "2d"), "repeat 1": fold_dir(env, REFERENCE + "_repeat1", "2d"),
             "seed 1": fold_dir(again, REFERENCE, "2d")}
    records = {k: json.loads((f / "druwas_run.json").read_text()) for k, f in folds.items()}
    assert [(r["trainer"], r["repeat"], r["seed"], r["settings"]["DRUWAS_SEED"]) for r in records.values()] == [
        (REFERENCE, 0, 0, None), (REFERENCE + "_repeat1", 1, 1, None), (REFERENCE, 0, 1, "1")]
    for record in records.values():
        assert record["base_trainer"] == REFERENCE and record["started_at_epoch"] == 0
        assert (record["num_epochs"], record["num_iterations_per_epoch"]) == (1, 2)
        assert record["settings"]["DRUWAS_EPOCHS"] == "1" and record["settings"]["DRUWAS_ITERS"] == "2"
        seeds = record["augmentation_seeds"]
        assert len(seeds["training_workers"]) == 2 and len(seeds["validation_workers"]) == 1
    assert records["repeat 0"]["augmentation_seeds"] != records["repeat 1"]["augmentation_seeds"]
    assert records["repeat 1"]["augmentation_seeds"] == records["seed 1"]["augmentation_seeds"]

    checkpoints = {k: load_checkpoint(f / "checkpoint_final.pth") for k, f in folds.items()}
    weights = {k: c["network_weights"] for k, c in checkpoints.items()}
    assert checkpoints["repeat 1"]["trainer_name"] == REFERENCE + "_repeat1"
    assert set(weights["repeat 1"]) == set(weights["seed 1"])
    assert all(torch.equal(weights["repeat 1"][k], weights["seed 1"][k]) for k in weights["seed 1"])   # bitwise
    assert checkpoints["repeat 1"]["logging"]["train_losses"] == checkpoints["seed 1"]["logging"]["train_losses"]
    assert any(not torch.equal(weights["repeat 0"][k], weights["repeat 1"][k]) for k in weights["repeat 0"])
    for fold in folds.values():
        assert (fold / "brats_metrics.csv").is_file()


def test_reference_trainer_trains_nnunets_network_of_the_plan(reference_repeats, monkeypatch):
    """The checkpoint holds nnU-Net's own network of the plan: the state dict of get_network_from_plans."""
    env, _ = reference_repeats
    weights = load_checkpoint(fold_dir(env, REFERENCE, "2d") / "checkpoint_final.pth")["network_weights"]
    reference = plan_network(in_process_trainer(REFERENCE, "2d", env, monkeypatch))
    reference.load_state_dict(weights, strict=True)   # every key and shape of nnU-Net's network, nothing else
    assert type(reference).__name__ == "PlainConvUNet"
    assert n_parameters(reference) == sum(weights[k].numel() for k, _ in reference.named_parameters())
    log = "".join(p.read_text() for p in fold_dir(env, REFERENCE, "2d").glob("training_log_*.txt"))
    assert "DRUWAS_EPOCHS=1: 1 epochs instead of 100" in log and "Seed 0 (repeat 0" in log


def test_both_repeats_predict_by_name(reference_repeats, tmp_path):
    """nnUNetv2_predict finds repeat 1 by its name (trainers/druwas.py builds the class on demand)."""
    import nibabel as nib

    env, _ = reference_repeats
    (raw,) = Path(env["nnUNet_raw"]).glob(f"Dataset{TINY_ID:03d}_*")
    inputs = tmp_path / "in"
    inputs.mkdir()
    for image in sorted((raw / "imagesTr").glob("TINY_000_*.nii.gz")):
        shutil.copy(image, inputs)
    for name in (REFERENCE, REFERENCE + "_repeat1"):
        out = tmp_path / name
        proc = run_command(["nnUNetv2_predict", "-i", str(inputs), "-o", str(out), "-d", str(TINY_ID), "-c", "2d",
                            "-f", "0", "-tr", name, "-device", "cpu", "-npp", "1", "-nps", "1",
                            "--disable_progress_bar"], env)
        assert f"Using trainer '{name}'" in proc.stdout
        seg = np.asarray(nib.load(out / "TINY_000.nii.gz").dataobj)
        assert seg.shape == (48, 48, 48) and set(np.unique(seg)) <= {0, 1, 2, 3}


def test_reference_trainer_builds_resenc_m_from_its_plans(tiny_preprocessed, tmp_path, monkeypatch):
    """With nnU-Net's ResEnc M plans (nnUNetv2_plan_experiment -pl nnUNetPlannerResEncM, for real) the
    reference trainer builds nnU-Net's ResidualEncoderUNet of that plan; the paper's batch size fits."""
    (source,) = Path(tiny_preprocessed["nnUNet_preprocessed"]).glob(f"Dataset{TINY_ID:03d}_*")
    env = results_env(tiny_preprocessed, tmp_path / "results", nnUNet_preprocessed=str(tmp_path / "preprocessed"))
    target = tmp_path / "preprocessed" / source.name
    target.mkdir(parents=True)
    for name in ("dataset.json", "dataset_fingerprint.json", "nnUNetPlans.json"):
        shutil.copy(source / name, target)
    run_command(["nnUNetv2_plan_experiment", "-d", str(TINY_ID), "-pl", "nnUNetPlannerResEncM"], env)
    trainer = in_process_trainer(REFERENCE, "3d_fullres", env, monkeypatch, plans="nnUNetResEncUNetMPlans")
    cm = trainer.configuration_manager
    network = trainer.build_network_architecture(trainer.plans_manager, cm, 4, 3, True)
    reference = plan_network(trainer)
    assert type(network).__name__ == type(reference).__name__ == "ResidualEncoderUNet"
    assert n_parameters(network) == n_parameters(reference)
    assert 1 <= trainer.paper_batch_size() <= 4 and trainer.paper_batch_size() >= min(4, cm.batch_size)
