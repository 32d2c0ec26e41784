"""The full-size benchmark's measuring (python -m nnunetv2_druwas.benchmarks.fullsize).

The benchmark itself runs for tens of minutes (its reduced form, 48 x 48 x 40 cases, took 15 minutes
on the shared 2-core machine), so it is run by hand (docs/benchmarks/fullsize_cpu/); these tests
check what its figures rest on: the memory of a process tree, nnU-Net's log and the environment.
"""
from __future__ import annotations

import json
import sys
import textwrap
from pathlib import Path

import pytest

from nnunetv2_druwas import env
from nnunetv2_druwas.benchmarks.fullsize import measure, training_figures
from nnunetv2_druwas.errors import DruwasError

MIB = 2 ** 20

# a parent holding 120 MiB starts a child holding 240 MiB; both touch every page and wait
TREE = textwrap.dedent("""
    import subprocess, sys, time
    held = b"p" * (120 * 2 ** 20)
    child = subprocess.Popen([sys.executable, "-c",
                              "import time; held = b'c' * (240 * 2 ** 20); time.sleep(2.5)"])
    child.wait()
""")


def test_measure_sums_the_process_tree_and_finds_the_largest_process(tmp_path):
    figures = measure([sys.executable, "-c", TREE], env.child_environment(), tmp_path / "tree.log", interval=0.1)
    # the tree holds both at once: at least 360 MiB (plus two interpreters); one process at most ~240 + interpreter
    assert figures["peak_tree_rss_mib"] >= 360
    assert figures["peak_tree_pss_mib"] >= 360     # private pages: PSS counts them fully
    assert 240 <= figures["peak_process_rss_mib"] < 340
    assert figures["wall_s"] >= 2.5


def test_measure_names_the_log_of_a_failed_command(tmp_path):
    log = tmp_path / "failing.log"
    with pytest.raises(DruwasError, match="(?s)exit code 3.*failing.log.*broken on purpose"):
        measure([sys.executable, "-c", "import sys; print('broken on purpose'); sys.exit(3)"],
                env.child_environment(), log)


def test_training_figures_read_nnunets_log_and_the_run_record(tmp_path):
    fold = tmp_path / "fold_0"
    fold.mkdir()
    (fold / "druwas_run.json").write_text(json.dumps(
        {"batch_size": 4, "num_iterations_per_epoch": 2, "num_val_iterations_per_epoch": 1}))
    # the lines nnU-Net 2.8.1 writes (print_to_log_file: "<datetime>: <message>"), times chosen here
    (fold / "training_log_2026_1_1_10_00_00.txt").write_text(textwrap.dedent("""\
        Configuration name: 3d_fullres
         {'batch_size': 2}
        2026-01-01 10:00:05.000000: Epoch 0 
        2026-01-01 10:00:05.100000: Current learning rate: 0.0005 
        2026-01-01 10:05:05.500000: train_loss 0.6611 
        2026-01-01 10:05:05.600000: Epoch time: 300.5 s 
        2026-01-01 10:05:07.000000: Training done. 
        2026-01-01 10:05:07.100000: predicting BraTS20_Training_005 
        2026-01-01 10:07:05.600000: Validation complete 
        2026-01-01 10:07:06.600000: BraTS metrics of the validation cases: brats_metrics.csv 
        """))
    figures = training_figures(fold)
    assert figures["epoch_s"] == 300.5
    assert figures["s_per_iteration"] == pytest.approx(300.5 / 2)
    assert figures["s_per_sample"] == pytest.approx(300.5 / 2 / 4)
    assert figures["final_validation_s"] == pytest.approx(121.0)   # 10:05:05.6 -> 10:07:06.6
    assert (figures["batch_size"], figures["iterations"], figures["validation_iterations"]) == (4, 2, 1)


def test_training_figures_say_when_no_epoch_finished(tmp_path):
    (tmp_path / "druwas_run.json").write_text(json.dumps(
        {"batch_size": 4, "num_iterations_per_epoch": 2, "num_val_iterations_per_epoch": 1}))
    (tmp_path / "training_log_x.txt").write_text("2026-01-01 10:00:05.000000: Epoch 0 \n")
    with pytest.raises(DruwasError, match="no 'Epoch time' line"):
        training_figures(tmp_path)


def test_work_environment_keeps_every_nnunet_folder_inside_the_work_folder(tmp_path, monkeypatch):
    monkeypatch.setenv("nnUNet_raw", "/users/own/raw")
    monkeypatch.setenv("DRUWAS_LR", "0.1")
    monkeypatch.delenv("nnUNet_n_proc_DA", raising=False)
    environ = env.work_environment(tmp_path, {"DRUWAS_LR": None, "DRUWAS_EPOCHS": "1"})
    assert [Path(environ[name]) for name in ("nnUNet_raw", "nnUNet_preprocessed", "nnUNet_results")] == \
        [tmp_path / "nnUNet_raw", tmp_path / "nnUNet_preprocessed", tmp_path / "nnUNet_results"]
    assert environ["nnUNet_extTrainer"] == str(env.trainers_dir())
    assert (environ["nnUNet_n_proc_DA"], environ["nnUNet_compile"], environ["DRUWAS_EPOCHS"]) == ("2", "false", "1")
    assert "DRUWAS_LR" not in environ
