"""An ordinary (non-editable) install ships the trainers: a wheel of the working tree, installed into a
fresh virtual environment, trains with ``nnUNetv2_train -tr nnUNetTrainerDRUwAS`` from a folder outside
the repository, with ``nnUNet_extTrainer`` set the README's way (``eval "$(nnunetv2_druwas env)"``).

The virtual environment sees the system's site packages (torch and nnU-Net are not installed again);
the wheel goes into the environment's own site packages, which come first on its ``sys.path``, and
``PYTHONPATH`` is removed, so neither the repository nor an editable install of it is imported.
"""
from __future__ import annotations

import shlex
import subprocess
import sys
from pathlib import Path

from conftest import REPO, TINY_ID, results_env, run_command
from mutation_check import copy_working_tree

TRAINER = "nnUNetTrainerDRUwAS"


def test_wheel_installs_the_trainers_and_trains_outside_the_repository(tiny_preprocessed, tmp_path):
    source, wheels, venv, work = (tmp_path / name for name in ("source", "wheels", "venv", "work"))
    for folder in (source, work):
        folder.mkdir()
    copy_working_tree(source)  # a clean copy: the build writes build/ and *.egg-info beside its sources
    environ = {k: v for k, v in results_env(tiny_preprocessed, tmp_path / "results", DRUWAS_EPOCHS=1,
                                            DRUWAS_ITERS=1, nnUNet_n_proc_DA=0, nnUNet_def_n_proc=1,
                                            PIP_DISABLE_PIP_VERSION_CHECK=1).items()
               if k not in ("PYTHONPATH", "nnUNet_extTrainer")}
    pip = ["-m", "pip", "-q"]
    run_command([sys.executable, *pip, "wheel", "--no-deps", "--no-build-isolation", "--no-index", "-w", str(wheels),
                 str(source)], environ)
    (wheel,) = wheels.glob("nnunetv2_druwas-*.whl")
    run_command([sys.executable, "-m", "venv", "--system-site-packages", "--without-pip", str(venv)], environ)
    python = venv / "bin" / "python"
    # the outer environment's pip installs into the venv it runs in; --ignore-installed: never touch the
    # outer environment's (editable) install of the project
    run_command([str(python), *pip, "install", "--no-deps", "--no-index", "--ignore-installed", str(wheel)], environ)
    site = Path(run_command([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                            environ).stdout.strip()).resolve()

    def in_venv(*cmd: str) -> str:
        """stdout of ``cmd``, run by bash in ``work`` after the README's ``eval "$(nnunetv2_druwas env)"``."""
        script = f'eval "$({shlex.quote(str(venv / "bin" / "nnunetv2_druwas"))} env)" && {shlex.join(cmd)}'
        proc = subprocess.run(["bash", "-c", script], cwd=work, env=environ, capture_output=True, text=True,
                              timeout=900)
        assert proc.returncode == 0, f"{script} failed\n--- stdout\n{proc.stdout[-6000:]}\n--- stderr\n{proc.stderr[-6000:]}"
        return proc.stdout

    installed = site / "nnunetv2_druwas" / "_trainers"
    assert (installed / "druwas.py").read_text() == (REPO / "trainers" / "druwas.py").read_text()
    modules = in_venv(str(python), "-c", "import os, nnunetv2_druwas.training as t; "
                      "print(os.environ['nnUNet_extTrainer']); print(t.__file__)").splitlines()
    assert modules == [str(installed), str(site / "nnunetv2_druwas" / "training.py")]
    assert TRAINER in in_venv(str(venv / "bin" / "nnunetv2_druwas"), "trainers", "--names-only").split()

    # nnUNetv2_train, run by the venv's interpreter (the console script lives in the outer environment)
    log = in_venv(str(python), "-m", "nnunetv2.run.run_training", str(TINY_ID), "2d", "0", "-tr", TRAINER,
                  "-device", "cpu")
    assert f"Using trainer '{TRAINER}' from: {installed}" in log
    fold = tmp_path / "results" / f"Dataset{TINY_ID:03d}_Tiny" / f"{TRAINER}__nnUNetPlans__2d" / "fold_0"
    assert (fold / "checkpoint_final.pth").is_file()
    assert (fold / "brats_metrics.csv").is_file()  # the DRUwAS trainer's own evaluation ran
