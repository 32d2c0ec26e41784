"""The demo resumes what a kill interrupted, as the fold's state asks (nnunetv2_druwas.folds).

The demo runs for real (synth -> convert -> plan -> nnUNetv2_train) and is killed with SIGKILL, its
whole process group, at the moment under test: during the training of the first variant, then during
its final validation. Each rerun must continue (``--c``), not start over.
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable

import torch

from conftest import REPO
from nnunetv2_druwas.folds import FoldState, fold_state

SHORT = ["--cases", "6", "--shape", "40", "40", "32", "--epochs", "4", "--iters", "2"]
TRAINER = "nnUNetTrainerDRUwAS_Baseline"   # the first variant the demo trains


def run_demo_until(workdir: Path, environ: dict[str, str], condition: Callable[[], bool], log: Path,
                   timeout: float = 900) -> None:
    """Start the demo and kill its whole process group (SIGKILL) as soon as ``condition`` holds."""
    with open(log, "w") as out:
        demo = subprocess.Popen([sys.executable, "-m", "nnunetv2_druwas", "demo", "--workdir", str(workdir), *SHORT],
                                env=environ, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.monotonic() + timeout
        while not condition():
            assert demo.poll() is None, f"the demo ended before the moment to kill it:\n{log.read_text()[-4000:]}"
            assert time.monotonic() < deadline, f"timed out:\n{log.read_text()[-4000:]}"
            time.sleep(0.05)
    finally:
        os.killpg(demo.pid, signal.SIGKILL)
        demo.wait()


def weights(checkpoint: Path) -> dict[str, torch.Tensor]:
    return torch.load(checkpoint, map_location="cpu", weights_only=False)["network_weights"]


def test_demo_killed_during_training_and_during_final_validation_resumes_without_retraining(tmp_path):
    environ = dict(os.environ, PYTHONPATH=str(REPO), nnUNet_def_n_proc="1", nnUNet_n_proc_DA="1",
                   OMP_NUM_THREADS="2", OMP_WAIT_POLICY="PASSIVE", PYTHONWARNINGS="ignore")
    workdir = tmp_path / "demo"
    fold = workdir / "nnUNet_results" / "Dataset500_BraTS2020" / f"{TRAINER}__nnUNetPlans__3d_fullres" / "fold_0"

    def new_log(before: set[Path]) -> str:
        (log,) = set(fold.glob("training_log_*.txt")) - before
        return log.read_text()

    def training_log_has(text: str) -> bool:
        return any(text in p.read_text() for p in fold.glob("training_log_*.txt"))

    # 1. killed during training: epoch 0 is over (checkpoint_best.pth written), epoch 1 has begun
    run_demo_until(workdir, environ, lambda: training_log_has("Epoch 1") and not (fold / "checkpoint_final.pth").exists(),
                   tmp_path / "first.log")
    assert fold_state(fold) == FoldState.TRAINING

    # 2. the rerun continues that training (--c, from epoch 1 on); killed during its final validation
    logs = set(fold.glob("training_log_*.txt"))
    run_demo_until(workdir, environ, lambda: (fold / "validation").is_dir() and not (fold / "brats_metrics.csv").exists(),
                   tmp_path / "second.log")
    assert f"-tr {TRAINER} (4 epochs x 2 iterations, lr 0.005, seed 0, resumed: training)" in (tmp_path / "second.log").read_text()
    resumed = new_log(logs)
    assert "Epoch 1" in resumed and "Epoch 0" not in resumed
    assert fold_state(fold) == FoldState.TRAINED
    trained = weights(fold / "checkpoint_final.pth")

    # 3. the rerun redoes only the final validation and the BraTS evaluation: no epoch is trained again
    logs = set(fold.glob("training_log_*.txt"))
    run_demo_until(workdir, environ, lambda: (fold / "brats_metrics.csv").exists(), tmp_path / "third.log")
    assert "resumed: trained" in (tmp_path / "third.log").read_text()
    validated = new_log(logs)
    assert "Epoch " not in validated and "BraTS metrics of the validation cases" in validated
    assert fold_state(fold) == FoldState.DONE
    final = weights(fold / "checkpoint_final.pth")
    assert set(final) == set(trained) and all(torch.equal(final[k], trained[k]) for k in trained)
