"""The shared mechanisms, one per concern: the environment table (env), atomic groups of outputs
(files), the process pool (parallel), the fold state (folds), the label table; and failures that are
not swallowed (a failed BraTS evaluation, an unreadable SLURM queue).

Kills are real: a child process is killed with SIGKILL at the moment under test.
"""
from __future__ import annotations

import ast
import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from conftest import REPO, TINY_ID, results_env
from nnunetv2_druwas import env, files, grid
from nnunetv2_druwas.errors import DruwasError
from nnunetv2_druwas.folds import FoldState, fold_state, resume_arguments
from nnunetv2_druwas.parallel import parallel_map


def listing(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


def dead(pid: int) -> bool:
    """Gone, or a zombie waiting to be reaped (it runs no more)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
    except (FileNotFoundError, ProcessLookupError):
        return True


def run_child(script: str, tmp_path: Path, timeout: float = 120) -> subprocess.CompletedProcess:
    path = tmp_path / "child.py"
    path.write_text(textwrap.dedent(script))
    return subprocess.run([sys.executable, str(path)], capture_output=True, text=True, timeout=timeout,
                          env=dict(os.environ, PYTHONPATH=str(REPO)))


# --- env: one table of environment variables ---------------------------------------------------

def test_every_variable_the_harness_reads_is_in_the_table():
    core = {"nnUNet_raw", "nnUNet_preprocessed", "nnUNet_results", "nnUNet_extTrainer", "nnUNet_def_n_proc",
            "nnUNet_n_proc_DA", "nnUNet_compile", "nnUNet_keep_files_open", "OMP_NUM_THREADS",
            "DRUWAS_EPOCHS", "DRUWAS_ITERS", "DRUWAS_LR", "DRUWAS_SEED", "DRUWAS_INIT_CHECKPOINT"}
    assert core <= set(env.VARIABLES)
    # every name the code reads through env.read / env.require / env.value is a row of the table
    read = set()
    for folder in ("nnunetv2_druwas", "analysis", "trainers"):
        for path in sorted((REPO / folder).rglob("*.py")):
            for node in ast.walk(ast.parse(path.read_text())):
                if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and \
                        node.func.attr in ("read", "require", "value") and isinstance(node.func.value, ast.Name) \
                        and node.func.value.id == "env" and node.args and isinstance(node.args[0], ast.Constant):
                    read.add(node.args[0].value)
    assert {"DRUWAS_EPOCHS", "nnUNet_results"} <= read   # the scan finds the calls
    assert read - set(env.VARIABLES) == set()
    assert all(v.kind in env.KINDS for v in env.VARIABLES.values())
    with pytest.raises(KeyError, match="add a row"):
        env.read("DRUWAS_NOT_A_VARIABLE", {})


def test_no_module_but_env_reads_the_environment():
    """os.environ / os.getenv appear in env.py only (the library, the analysis and the trainers)."""
    offenders = []
    for folder in ("nnunetv2_druwas", "analysis", "trainers"):
        for path in sorted((REPO / folder).rglob("*.py")):
            if path == REPO / "nnunetv2_druwas" / "env.py":
                continue
            for node in ast.walk(ast.parse(path.read_text())):
                if isinstance(node, ast.Attribute) and node.attr in ("environ", "getenv", "putenv") and \
                        isinstance(node.value, ast.Name) and node.value.id == "os":
                    offenders.append(f"{path.relative_to(REPO)}:{node.lineno}")
    assert offenders == []


def test_typed_reads_and_clear_errors(tmp_path):
    values = {"DRUWAS_EPOCHS": " 7 ", "DRUWAS_LR": "5e-3", "nnUNet_n_proc_DA": "0", "nnUNet_compile": "F",
              "nnUNet_keep_files_open": "yes", "nnUNet_results": str(tmp_path), "DRUWAS_ITERS": ""}
    assert env.read("DRUWAS_EPOCHS", values) == 7 and isinstance(env.read("DRUWAS_EPOCHS", values), int)
    assert env.read("DRUWAS_LR", values) == 5e-3
    assert env.read("nnUNet_n_proc_DA", values) == 0
    assert env.read("nnUNet_compile", values) is False and env.read("nnUNet_keep_files_open", values) is True
    assert env.read("nnUNet_results", values) == tmp_path
    assert env.read("DRUWAS_ITERS", values) is None and env.read("nnUNet_raw", values) is None
    for name, bad, wanted in (("DRUWAS_EPOCHS", "0", "a whole number >= 1"), ("DRUWAS_EPOCHS", "2.5", "whole"),
                              ("nnUNet_n_proc_DA", "-1", "a whole number >= 0"), ("DRUWAS_LR", "inf", "a number > 0"),
                              ("nnUNet_compile", "maybe", "true or false"),
                              ("nnUNet_raw", str(tmp_path / "absent"), "not an existing folder"),
                              ("DRUWAS_INIT_CHECKPOINT", str(tmp_path), "not an existing file")):
        with pytest.raises(DruwasError, match=f"{name}=.*{wanted}"):
            env.read(name, {name: bad})
    with pytest.raises(DruwasError, match="nnUNet_raw is not set: export nnUNet_raw="):
        env.require("nnUNet_raw", {})


def test_a_new_variable_is_one_table_row(monkeypatch):
    """A row is enough: it is read by its kind and the grid's jobs carry it."""
    monkeypatch.setitem(env.VARIABLES, "DRUWAS_CHECKPOINTING", env.Variable("DRUWAS_CHECKPOINTING", "flag", "test"))
    assert env.read("DRUWAS_CHECKPOINTING", {"DRUWAS_CHECKPOINTING": "on"}) is True
    folders = {name: str(REPO) for name in env.DATA_VARIABLES}
    assert env.job_exports({**folders, "DRUWAS_CHECKPOINTING": "1"})["DRUWAS_CHECKPOINTING"] == "1"


def test_child_environment_is_a_changed_copy(monkeypatch):
    monkeypatch.setenv("DRUWAS_EPOCHS", "3")
    monkeypatch.delenv("DRUWAS_LR", raising=False)
    child = env.child_environment({"DRUWAS_EPOCHS": None, "DRUWAS_LR": "0.1"})
    assert "DRUWAS_EPOCHS" not in child and child["DRUWAS_LR"] == "0.1"
    assert os.environ["DRUWAS_EPOCHS"] == "3" and "DRUWAS_LR" not in os.environ


def test_grid_jobs_export_every_set_variable_including_the_learning_rate(nnunet_env, tmp_path, capsys):
    (Path(nnunet_env["nnUNet_preprocessed"]) / "Dataset990_Tiny").mkdir()
    selection = grid.Selection(("Dataset990_Tiny",), ("3d_fullres",), (0,), ("nnUNetTrainerDRUwAS",))
    checkpoint = tmp_path / "weights.pth"
    checkpoint.write_bytes(b"")
    environ = dict(nnunet_env, DRUWAS_LR="5e-3", DRUWAS_EPOCHS="4", DRUWAS_INIT_CHECKPOINT=str(checkpoint))
    jobs = grid.write_grid(selection, tmp_path / "out", environ=environ)
    script = (tmp_path / "out" / "jobs" / f"{jobs[0].name}.sh").read_text()
    assert "\nexport DRUWAS_LR=5e-3\n" in script and "\nexport DRUWAS_EPOCHS=4\n" in script
    assert "DRUWAS_INIT_CHECKPOINT" not in script
    assert "note: DRUWAS_INIT_CHECKPOINT is set but the jobs do not carry it" in capsys.readouterr().err
    with pytest.raises(DruwasError, match="DRUWAS_LR='fast' is not a number > 0"):
        grid.write_grid(selection, tmp_path / "other", environ=dict(nnunet_env, DRUWAS_LR="fast"))
    assert not (tmp_path / "other" / "jobs").exists()


def test_convert_writes_into_the_given_environment_without_touching_the_process_one(tmp_path, monkeypatch):
    from nnunetv2_druwas.data.convert import convert_brats
    from nnunetv2_druwas.data.synth import make_brats_release

    mine, users = tmp_path / "raw", tmp_path / "users_raw"
    mine.mkdir()
    users.mkdir()
    monkeypatch.setenv("nnUNet_raw", str(users))
    src = make_brats_release(tmp_path / "src", 2020, 3, (16, 16, 12), seed=1)
    target = convert_brats(src, 2020, num_processes=1, progress=False, environ={"nnUNet_raw": str(mine)})
    assert target == mine / "Dataset500_BraTS2020" and (target / "dataset.json").is_file()
    assert listing(users) == [] and os.environ["nnUNet_raw"] == str(users)


# --- files: outputs replaced together ----------------------------------------------------------

def old_outputs(folder: Path) -> dict[Path, str]:
    outputs = {folder / "metrics.csv": "old metrics", folder / "metrics_summary.csv": "old summary"}
    for path, text in outputs.items():
        path.write_text(text)
    return outputs


@pytest.mark.parametrize("failure", [KeyboardInterrupt(), OSError(28, "No space left on device"),
                                     ValueError("bad table")])
def test_a_failed_group_leaves_the_old_outputs_and_nothing_else(tmp_path, failure):
    outputs = old_outputs(tmp_path)
    with pytest.raises(type(failure)):
        with files.replaced_together() as group:
            group.write_text(tmp_path / "metrics.csv", "new metrics")
            group.path(tmp_path / "metrics_summary.csv").write_text("half a summ")
            group.write_text(tmp_path / "new_file.csv", "new")
            raise failure
    assert {p: p.read_text() for p in outputs} == outputs
    assert listing(tmp_path) == ["metrics.csv", "metrics_summary.csv"]


def test_a_rename_that_fails_during_the_commit_rolls_the_group_back(tmp_path, monkeypatch):
    outputs = old_outputs(tmp_path)
    real_replace = os.replace
    failures = []

    def failing_replace(source, target):   # the first rename of the summary into place fails
        if Path(target).name == "metrics_summary.csv" and not failures:
            failures.append(target)
            raise OSError(5, "Input/output error")
        real_replace(source, target)

    monkeypatch.setattr(os, "replace", failing_replace)
    with pytest.raises(OSError, match="Input/output"):
        with files.replaced_together() as group:
            group.write_text(tmp_path / "metrics.csv", "new metrics")
            group.write_text(tmp_path / "metrics_summary.csv", "new summary")
    monkeypatch.setattr(os, "replace", real_replace)
    assert {p: p.read_text() for p in outputs} == outputs
    assert listing(tmp_path) == ["metrics.csv", "metrics_summary.csv"]


def test_files_get_the_users_umask_and_removed_targets_go(tmp_path):
    previous = os.umask(0o022)
    try:
        (tmp_path / "gone.sh").write_text("old")
        with files.replaced_together() as group:
            group.write_text(tmp_path / "a.csv", "a")
            group.write_text(tmp_path / "run.sh", "echo", executable=True)
            group.remove(tmp_path / "gone.sh")
        with files.staged_folder(tmp_path / "dataset") as staging:
            (staging / "x").write_text("x")
        os.umask(0o027)
        files.write_text(tmp_path / "b.csv", "b")
    finally:
        os.umask(previous)
    modes = {p.name: p.stat().st_mode & 0o777 for p in tmp_path.iterdir()}
    assert modes == {"a.csv": 0o644, "run.sh": 0o755, "dataset": 0o755, "b.csv": 0o640}


KILL_BETWEEN_RENAMES = """
import os, signal, sys
from pathlib import Path
from nnunetv2_druwas import files

folder, stage = Path(sys.argv[1] if len(sys.argv) > 1 else {folder!r}), {stage!r}
real_replace = os.replace

def replace(source, target):
    real_replace(source, target)
    if stage == "commit" and Path(target).name == "metrics.csv" and ".tmp" in str(source):
        os.kill(os.getpid(), signal.SIGKILL)   # between the renames of the group

os.replace = replace
with files.replaced_together() as group:
    group.write_text(folder / "metrics.csv", "new metrics")
    group.write_text(folder / "metrics_summary.csv", "new summary")
    with files.staged_folder(folder / "dataset", replace=[folder / "dataset"]) as staging:
        (staging / "case.nii.gz").write_text("new case")
        if stage == "writing":
            os.kill(os.getpid(), signal.SIGKILL)   # before any commit
"""


def test_a_writer_killed_between_renames_is_completed_by_the_next_one(tmp_path, capfd):
    outputs = old_outputs(tmp_path)
    (tmp_path / "dataset").mkdir()
    (tmp_path / "dataset" / "old_case.nii.gz").write_text("old case")
    proc = run_child(KILL_BETWEEN_RENAMES.format(folder=str(tmp_path), stage="commit"), tmp_path)
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    (journal,) = tmp_path.glob(".druwas-journal.*.json")
    assert (tmp_path / "metrics.csv").read_text() == "new metrics"
    assert (tmp_path / "metrics_summary.csv").read_text() == "old summary"    # half done: the kill
    assert listing(tmp_path / "dataset") == ["case.nii.gz"]                   # the folder was committed first

    files.recover(outputs)
    assert {p.name: p.read_text() for p in outputs} == {"metrics.csv": "new metrics",
                                                         "metrics_summary.csv": "new summary"}
    assert listing(tmp_path) == ["child.py", "dataset", "metrics.csv", "metrics_summary.csv"]
    assert "completed an interrupted replacement of 2 output(s)" in capfd.readouterr().err


def test_a_writer_killed_before_its_commit_leaves_old_outputs_and_its_temporaries_are_removed(tmp_path, capfd):
    outputs = old_outputs(tmp_path)
    proc = run_child(KILL_BETWEEN_RENAMES.format(folder=str(tmp_path), stage="writing"), tmp_path)
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    assert {p: p.read_text() for p in outputs} == outputs
    assert len(listing(tmp_path)) == 6 and not (tmp_path / "dataset").exists()   # + two .tmp files, one folder
    with files.replaced_together() as group:    # the next writer of the same outputs
        group.write_text(tmp_path / "metrics.csv", "newer metrics")
        group.write_text(tmp_path / "metrics_summary.csv", "newer summary")
    with files.staged_folder(tmp_path / "dataset"):
        pass
    assert listing(tmp_path) == ["child.py", "dataset", "metrics.csv", "metrics_summary.csv"]
    assert capfd.readouterr().err.count("left by a killed writer") == 3


def test_temporaries_of_a_running_writer_are_left_alone(tmp_path):
    sleeper = subprocess.Popen(["sleep", "60"])
    try:
        temporary = tmp_path / f".out.csv.{files._HOST}-{sleeper.pid}-0123abcd.tmp"
        temporary.write_text("being written")
        files.recover([tmp_path / "out.csv"])
        assert temporary.exists()
    finally:
        sleeper.kill()
        sleeper.wait()
    files.recover([tmp_path / "out.csv"])
    assert not temporary.exists()


def test_staged_folder_keeps_its_rules(tmp_path):
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "precious").write_text("user data")
    with pytest.raises(DruwasError, match="already exists and is not empty"):
        with files.staged_folder(tmp_path / "mine"):
            pass
    with pytest.raises(RuntimeError):
        with files.staged_folder(tmp_path / "mine", replace=[tmp_path / "mine"]) as staging:
            (staging / "new").write_text("x")
            raise RuntimeError("conversion failed")
    assert listing(tmp_path) == ["mine"] and listing(tmp_path / "mine") == ["precious"]
    (tmp_path / "Dataset500_Old").mkdir()
    with files.staged_folder(tmp_path / "Dataset500_New", replace=[tmp_path / "Dataset500_Old"]) as staging:
        (staging / "dataset.json").write_text("{}")
    assert listing(tmp_path) == ["Dataset500_New", "mine"]


# --- parallel: one pool ------------------------------------------------------------------------

def _sleep_then_square(x: float) -> float:
    time.sleep(x)
    return x * x


def _pid(_) -> int:
    return os.getpid()


def _fail_on_three(x: int) -> int:
    if x == 3:
        raise DruwasError("case 3 is broken")
    return x


def test_pool_keeps_order_and_runs_small_batches_here(capfd):
    durations = [0.4, 0.0, 0.3, 0.0, 0.2, 0.1]
    assert parallel_map(_sleep_then_square, durations, 2, progress=False) == [d * d for d in durations]
    assert capfd.readouterr().err == ""
    here = parallel_map(_pid, range(10), 2, min_jobs_per_worker=8, progress=False)
    assert set(here) == {os.getpid()}
    spawned = parallel_map(_pid, range(16), 2, min_jobs_per_worker=8, desc="scoring", progress=True)
    assert os.getpid() not in spawned and len(set(spawned)) <= 2
    assert "scoring" in capfd.readouterr().err
    with pytest.raises(DruwasError, match="case 3 is broken"):
        parallel_map(_fail_on_three, range(6), 2, progress=False)


POOL_CHILD = """
import sys
sys.path.insert(0, {helper!r})
from nnunetv2_druwas.parallel import parallel_map
import pool_helper

if __name__ == "__main__":
    parallel_map(pool_helper.record_and_sleep, [{folder!r}] * 2, 2, progress=False)
"""
POOL_HELPER = """
import os, time

def record_and_sleep(folder):
    open(os.path.join(folder, str(os.getpid())), "w").close()
    time.sleep(600)
"""


def test_workers_die_with_a_killed_parent(tmp_path):
    (tmp_path / "pool_helper.py").write_text(POOL_HELPER)
    pids = tmp_path / "pids"
    pids.mkdir()
    script = tmp_path / "child.py"
    script.write_text(textwrap.dedent(POOL_CHILD.format(helper=str(tmp_path), folder=str(pids))))
    parent = subprocess.Popen([sys.executable, str(script)], env=dict(os.environ, PYTHONPATH=str(REPO)))
    try:
        deadline = time.monotonic() + 120
        while len(list(pids.iterdir())) < 2 and time.monotonic() < deadline and parent.poll() is None:
            time.sleep(0.1)
        workers = [int(p.name) for p in pids.iterdir()]
        assert len(workers) == 2 and parent.poll() is None
        parent.send_signal(signal.SIGKILL)
        parent.wait()
        deadline = time.monotonic() + 30
        while not all(dead(pid) for pid in workers) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert all(dead(pid) for pid in workers), "workers outlived their killed parent"
    finally:
        parent.kill()
        for p in pids.iterdir():
            try:
                os.kill(int(p.name), signal.SIGKILL)
            except ProcessLookupError:
                pass


# --- folds: one decision -----------------------------------------------------------------------

@pytest.mark.parametrize("present, state", [
    ((), FoldState.NONE),
    (("checkpoint_best.pth",), FoldState.TRAINING),                      # short runs: no latest before the end
    (("checkpoint_latest.pth", "checkpoint_best.pth"), FoldState.TRAINING),
    (("checkpoint_final.pth", "checkpoint_best.pth"), FoldState.TRAINED),   # killed in the final validation
    (("checkpoint_final.pth", "checkpoint_latest.pth"), FoldState.TRAINED),  # killed before latest was deleted
    (("checkpoint_final.pth", "brats_metrics_error.txt"), FoldState.EVALUATION_FAILED),
    (("checkpoint_final.pth", "brats_metrics.csv"), FoldState.DONE),
    (("checkpoint_final.pth", "brats_metrics.csv", "brats_metrics_error.txt"), FoldState.DONE),
    (("brats_metrics.csv",), FoldState.DONE),                            # checkpoints deleted after evaluation
    (("checkpoint_latest.pth", "brats_metrics.csv"), FoldState.TRAINING),  # a new training over an old result
])
def test_fold_state_from_the_files(tmp_path, present, state):
    for name in present:
        (tmp_path / name).write_text("x")
    assert fold_state(tmp_path) == state
    assert resume_arguments(state) == {FoldState.NONE: [], FoldState.DONE: None}.get(state, ["--c"])


def test_fold_command_prints_the_state_and_runs_what_it_asks_for(tmp_path):
    fold = tmp_path / "fold_3"
    fold.mkdir()
    module = [sys.executable, "-m", "nnunetv2_druwas.folds", str(fold)]

    def run(*command):
        proc = subprocess.run([*module, *command], capture_output=True, text=True, timeout=60,
                              env=dict(os.environ, PYTHONPATH=str(REPO)))
        assert proc.returncode == 0, proc.stderr
        return proc.stdout

    assert run() == "none\n"
    assert run("--", "echo", "train") == f"fold state: none\nrunning: echo train\ntrain\n"
    (fold / "checkpoint_final.pth").write_text("x")
    assert run() == "trained\n"
    assert run("--", "echo", "train").splitlines()[-2:] == ["running: echo train --c", "train --c"]
    (fold / "brats_metrics.csv").write_text("x")
    assert run("--", "echo", "train") == f"fold 3 is already done: {fold}\n"


# --- failures are not swallowed ----------------------------------------------------------------

def test_status_with_an_unreadable_queue_says_so_and_recommends_nothing(nnunet_env, tmp_path):
    results = Path(nnunet_env["nnUNet_results"])
    trainer = "nnUNetTrainerDRUwAS"
    selection = grid.Selection(("Dataset990_Tiny",), ("3d_fullres",), (0, 1, 2), (trainer,))
    for fold, names in ((0, ("checkpoint_final.pth", "brats_metrics.csv")), (1, ("checkpoint_latest.pth",))):
        folder = grid.Run("Dataset990_Tiny", "3d_fullres", trainer, "nnUNetPlans", fold).fold_dir(results)
        folder.mkdir(parents=True)
        for name in names:
            (folder / name).write_text("x")
    out = tmp_path / "out"
    out.mkdir()
    (out / "grid.json").write_text(json.dumps({"selection": {
        "datasets": ["Dataset990_Tiny"], "configurations": ["3d_fullres"], "folds": [0, 1, 2],
        "trainers": [trainer], "plans": "nnUNetPlans"}}))
    (out / "submitted.json").write_text(json.dumps({"jobs": {selection.runs()[0].array_name: {"id": "77"}}}))

    rows = grid.grid_status(selection, out, nnunet_env, queue=None)
    assert [r["state"] for r in rows] == ["done", "queue unknown", "queue unknown"]
    known = grid.format_status(grid.grid_status(selection, out, nnunet_env, queue={}))
    assert "write and submit the grid again" in known

    # through the command, with an squeue that fails
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "squeue").write_text("#!/bin/sh\necho 'slurm_load_jobs error: Unable to contact slurm controller' >&2\n"
                                    "exit 1\n")
    (bin_dir / "squeue").chmod(0o755)
    proc = subprocess.run([sys.executable, "-m", "nnunetv2_druwas", "grid", "--status", "--out", str(out)],
                          env=dict(nnunet_env, PATH=f"{bin_dir}:{os.environ['PATH']}"), capture_output=True,
                          text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert "1 done, 2 queue unknown" in proc.stdout
    assert "could not be read" in proc.stdout and "Nothing is recommended" in proc.stdout
    assert "incomplete" not in proc.stdout and "submit the grid again" not in proc.stdout


def test_a_failed_brats_evaluation_fails_the_training_command_and_is_reported(tiny_preprocessed, tmp_path):
    """A dataset whose labels do not name the BraTS regions: nnU-Net trains and validates, the BraTS
    evaluation fails, nnUNetv2_train exits 1 and the fold is 'evaluation-failed' for the grid and the
    tables. Fixed, the grid's job command redoes only the final validation."""
    from analysis.collect import collect

    (source,) = Path(tiny_preprocessed["nnUNet_preprocessed"]).glob(f"Dataset{TINY_ID:03d}_*")
    environ = results_env(tiny_preprocessed, tmp_path / "results", DRUWAS_EPOCHS=1, DRUWAS_ITERS=2,
                          OMP_WAIT_POLICY="PASSIVE", nnUNet_n_proc_DA=0, nnUNet_def_n_proc=1,
                          nnUNet_preprocessed=str(tmp_path / "preprocessed"))
    dataset = Path(environ["nnUNet_preprocessed"]) / source.name
    shutil.copytree(source, dataset)
    good = (dataset / "dataset.json").read_text()
    spec = json.loads(good)
    spec["labels"] = {"background": 0, "lesion": [1, 2, 3], "core": [2, 3], "active": 3}
    (dataset / "dataset.json").write_text(json.dumps(spec))
    trainer = "nnUNetTrainerDRUwAS_Baseline"
    train = [shutil.which("nnUNetv2_train") or "nnUNetv2_train", str(TINY_ID), "2d", "0", "-tr", trainer,
             "-device", "cpu"]

    proc = subprocess.run(train, env=environ, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 1, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "error: the BraTS evaluation of" in proc.stderr and "does not name the regions" in proc.stderr
    fold = Path(environ["nnUNet_results"]) / source.name / f"{trainer}__nnUNetPlans__2d" / "fold_0"
    assert fold_state(fold) == FoldState.EVALUATION_FAILED
    assert "does not name the regions" in (fold / "brats_metrics_error.txt").read_text()

    selection = grid.Selection((source.name,), ("2d",), (0,), (trainer,))
    (row,) = grid.grid_status(selection, None, environ)
    assert row["state"] == "evaluation failed" and "does not name the regions" in row["detail"]
    assert "BraTS evaluation failed: " in grid.format_status([row])
    runs = collect(environ["nnUNet_results"], {TINY_ID: 2020}).runs
    assert not runs["complete"].iloc[0] and "fold 0: BraTS evaluation failed" in runs["issues"].iloc[0]

    (dataset / "dataset.json").write_text(good)
    final = (fold / "checkpoint_final.pth").stat().st_mtime_ns
    logs = set(fold.glob("training_log_*.txt"))
    proc = subprocess.run([sys.executable, "-m", "nnunetv2_druwas.folds", str(fold), "--", *train], env=environ,
                          capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert proc.stdout.splitlines()[1].endswith("-device cpu --c")
    assert fold_state(fold) == FoldState.DONE and not (fold / "brats_metrics_error.txt").exists()
    (log,) = set(fold.glob("training_log_*.txt")) - logs
    assert "Epoch " not in log.read_text()          # nothing was trained again
    assert (fold / "checkpoint_final.pth").stat().st_mtime_ns >= final


# --- one label table ---------------------------------------------------------------------------

def test_regions_and_endings_are_stated_once():
    from analysis import collect
    from nnunetv2_druwas.data import brats
    from nnunetv2_druwas.evaluation import evaluate, metrics

    assert collect.REGIONS is brats.REGIONS and evaluate.NIFTI_ENDINGS is brats.NIFTI_ENDINGS
    assert metrics.LABEL_CONVENTIONS is brats.LABEL_CONVENTIONS
    # what nnU-Net's Dataset137_BraTS21 writes into dataset.json, spelled out
    assert brats.REGION_LABELS == {"background": 0, "whole tumor": [1, 2, 3], "tumor core": [2, 3],
                                   "enhancing tumor": 3}
    assert brats.REGIONS_CLASS_ORDER == [1, 2, 3]


def test_trainers_listing_left_the_variant_table():
    from nnunetv2_druwas import variants
    from nnunetv2_druwas.cli import main

    assert not hasattr(variants, "run") and not hasattr(variants, "add_arguments")
    assert main(["trainers", "--names-only"]) == 0
