"""Faults and bad input: every expected failure of the command line is one ``error:`` line that names
the path and what to do, with exit status 2; nothing half-written stays behind (a full disk
included); what a killed run leaves is recovered by the next run of the same command; bad values are
refused before they reach a table.

Kills are real: SIGKILL sent by the test, or at the N-th ``rename`` of the command under
``strace -f -e inject=rename:signal=KILL:when=N`` (Debian's strace, installed by ``.ci/run``); N is
found by a traced run of the same command first. A full disk is a small tmpfs mounted by the test
(as root; skipped, saying so, where mounting is not permitted).
"""
from __future__ import annotations

import errno
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
import pytest

from analysis.collect import collect
from analysis.tables import main as tables_main
from conftest import REPO
from test_resume import SHORT, TRAINER, run_demo_until
from nnunetv2_druwas.data.convert import convert_brats
from nnunetv2_druwas.data.synth import make_brats_release
from nnunetv2_druwas.errors import DruwasError, describe_os_error, report_errors

SHAPE = (16, 16, 12)
DATASET = "Dataset500_BraTS2020"


def command_env(**changes: str) -> dict[str, str]:
    """This checkout first on the path; no bytecode writes (their renames would shift N)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("nnUNet_")}
    env.update(PYTHONPATH=str(REPO), PYTHONDONTWRITEBYTECODE="1", PYTHONWARNINGS="ignore", **changes)
    return env


def druwas(*args, env: dict[str, str] | None = None, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run(druwas_command(*args), env=env or command_env(), capture_output=True, text=True,
                          timeout=timeout)


def druwas_command(*args) -> list[str]:
    return [sys.executable, "-m", "nnunetv2_druwas", *map(str, args)]


def tables_command(*args) -> list[str]:
    return [sys.executable, "-m", "analysis.tables", *map(str, args)]


def error_line(proc: subprocess.CompletedProcess) -> str:
    """The one ``error:`` line of a command that failed as promised (status 2, no traceback)."""
    assert proc.returncode == 2, f"status {proc.returncode}\n{proc.stdout[-2000:]}\n{proc.stderr[-4000:]}"
    assert "Traceback" not in proc.stderr, proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert len(lines) == 1, proc.stderr
    return lines[0]


def listing(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


def contents(folder: Path) -> dict[str, str]:
    return {p.name: p.read_text() for p in sorted(folder.iterdir()) if p.is_file()}


# --- a label-map folder to evaluate ------------------------------------------------------------

def label_map(seed: int, shape=(20, 20, 16)) -> np.ndarray:
    rng = np.random.default_rng(seed)
    seg = np.zeros(shape, np.uint8)
    low, high = rng.integers(2, 6, 3), rng.integers(12, 15, 3)
    seg[low[0]:high[0], low[1]:high[1], low[2]:high[2]] = 1
    seg[low[0] + 2:high[0] - 2, low[1] + 2:high[1] - 2, low[2] + 2:high[2] - 2] = 3
    seg[low[0] + 4:high[0] - 4, low[1] + 4:high[1] - 4, low[2] + 4:high[2] - 4] = 2
    return seg


def save(path: Path, array: np.ndarray) -> None:
    nib.save(nib.Nifti1Image(array, np.eye(4)), path)


@pytest.fixture
def label_folders(tmp_path) -> tuple[Path, Path]:
    """Ground truths A, B, C and predictions (B's shifted by a voxel)."""
    gt, pred = tmp_path / "gt", tmp_path / "pred"
    gt.mkdir()
    pred.mkdir()
    for i, case in enumerate("ABC"):
        save(gt / f"{case}.nii.gz", label_map(i))
        save(pred / f"{case}.nii.gz", np.roll(label_map(i), 1 if case == "B" else 0, axis=0))
    return pred, gt


def evaluate_args(label_folders, out: Path) -> list:
    pred, gt = label_folders
    return ["evaluate", pred, gt, "-o", out, "--labels", "nnunet", "--num-processes", "1"]


# --- one error line for every expected failure --------------------------------------------------

def _output_is_a_folder(folder: Path) -> tuple[Path, Path]:
    (folder / "metrics.csv").mkdir()
    (folder / "metrics.csv" / "mine.txt").write_text("user data")
    return folder / "metrics.csv", folder / "metrics.csv"


def _summary_is_a_folder(folder: Path) -> tuple[Path, Path]:
    (folder / "metrics_summary.csv").mkdir()
    (folder / "metrics_summary.csv" / "mine.txt").write_text("user data")
    (folder / "metrics.csv").write_text("old metrics")
    return folder / "metrics.csv", folder / "metrics_summary.csv"


def _output_under_a_file(folder: Path) -> tuple[Path, Path]:
    (folder / "a_file").write_text("user data")
    return folder / "a_file" / "metrics.csv", folder / "a_file"


@pytest.mark.parametrize("case", [_output_is_a_folder, _summary_is_a_folder, _output_under_a_file])
def test_unusable_output_paths_are_one_error_line_and_nothing_is_replaced(label_folders, tmp_path, case):
    """-o naming a folder (once silently deleted and replaced by the CSV), a summary path that is a
    folder (metrics.csv was replaced first), -o under a file (a FileExistsError traceback)."""
    folder = tmp_path / "out"
    folder.mkdir()
    output, named = case(folder)
    before = {p: p.read_text() if p.is_file() else None for p in folder.rglob("*")}
    line = error_line(druwas(*evaluate_args(label_folders, output)))
    assert str(named) in line, line
    assert {p: p.read_text() if p.is_file() else None for p in folder.rglob("*")} == before


def test_a_read_only_disk_is_one_error_line(label_folders, tmp_path):
    disk = mount_tmpfs(tmp_path / "ro", "size=1m,ro")
    line = error_line(druwas(*evaluate_args(label_folders, disk / "metrics.csv")))
    assert f"{disk / 'metrics.csv'}: Read-only file system; the file system is read-only" in line


@pytest.mark.parametrize("error, wanted", [
    (PermissionError(errno.EACCES, "Permission denied", "/data/out/table1.csv"),
     "error: /data/out/table1.csv: Permission denied; no permission: choose a folder you can write to"),
    (OSError(errno.ENOSPC, "No space left on device"), "error: No space left on device; the disk is full"),
    (OSError(errno.EXDEV, "Invalid cross-device link", "/a/x", None, "/b/x"),
     "error: /a/x -> /b/x: Invalid cross-device link; check the path and rerun"),
    (DruwasError("case A: bad"), "error: case A: bad"),
])
def test_report_errors_turns_expected_failures_into_one_line(capsys, error, wanted):
    def command():
        raise error

    assert report_errors(command) == 2
    err = capsys.readouterr().err
    assert err.startswith(wanted) and err.count("\n") == 1, err
    assert report_errors(lambda: None) == 0 and report_errors(lambda: 3) == 3
    assert describe_os_error(OSError(errno.ENOSPC, "No space left on device", "f")).count("\n") == 0


# --- a full disk: a small tmpfs ------------------------------------------------------------------

def mount_tmpfs(mount: Path, options: str) -> Path:
    mount.mkdir(parents=True)
    proc = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(mount)], capture_output=True,
                          text=True)
    if proc.returncode != 0:
        pytest.skip(f"mounting a tmpfs is not permitted here ({proc.stderr.strip() or proc.returncode}): a full "
                    f"or read-only disk needs root (CI runs as root)")
    _MOUNTS.append(mount)
    return mount


_MOUNTS: list[Path] = []


@pytest.fixture(autouse=True)
def _unmount():
    yield
    while _MOUNTS:
        subprocess.run(["umount", "-l", str(_MOUNTS.pop())], check=True)


def fill(disk: Path, leave: int = 0) -> Path:
    """Fill ``disk`` up to its last byte, then give back ``leave`` bytes (whole pages)."""
    filler = disk / "filler"
    descriptor = os.open(filler, os.O_WRONLY | os.O_CREAT, 0o644)
    try:
        while True:
            os.write(descriptor, b"\0" * 4096)
    except OSError as e:
        assert e.errno == errno.ENOSPC
    finally:
        os.close(descriptor)
    os.truncate(filler, max(0, filler.stat().st_size - leave))
    return filler


def test_full_disk_in_evaluate_replaces_nothing(label_folders, tmp_path):
    disk = mount_tmpfs(tmp_path / "disk", "size=1m")
    (disk / "metrics.csv").write_text("old metrics")
    (disk / "metrics_summary.csv").write_text("old summary")
    filler = fill(disk, leave=4096)   # room for the metrics, not for the summary
    before = contents(disk)
    line = error_line(druwas(*evaluate_args(label_folders, disk / "metrics.csv")))
    assert re.search(rf"{disk}/metrics(_summary)?\.csv: No space left on device; the disk is full", line), line
    assert contents(disk) == before and listing(disk) == ["filler", "metrics.csv", "metrics_summary.csv"]

    filler.unlink()
    previous = os.umask(0o022)
    try:
        assert druwas(*evaluate_args(label_folders, disk / "metrics.csv")).returncode == 0
    finally:
        os.umask(previous)
    assert len(pd.read_csv(disk / "metrics.csv")) == 9 and len(pd.read_csv(disk / "metrics_summary.csv")) == 6
    assert {p.name: p.stat().st_mode & 0o777 for p in disk.iterdir()} == \
        {"metrics.csv": 0o644, "metrics_summary.csv": 0o644}


def test_full_disk_in_convert_leaves_no_dataset(tmp_path):
    src = make_brats_release(tmp_path / "src", 2020, 4, (24, 24, 20), seed=2)
    disk = mount_tmpfs(tmp_path / "disk", "size=2m")
    (disk / "raw").mkdir()
    fill(disk, leave=16 * 4096)   # about one case
    proc = druwas("convert-brats", src, "--year", 2020, "-np", 2, env=command_env(nnUNet_raw=str(disk / "raw")))
    line = error_line(proc)
    assert f"{disk / 'raw' / DATASET}" in line and "No space left on device; the disk is full" in line, line
    assert listing(disk / "raw") == []


def test_full_disk_in_tables_leaves_no_tables_folder(tmp_path):
    disk = mount_tmpfs(tmp_path / "disk", "size=1m")
    fill(disk, leave=3 * 4096)   # a few of the tables fit
    proc = subprocess.run(tables_command("--out", disk / "tables", "--no-plots"), env=command_env(), cwd=tmp_path,
                          capture_output=True, text=True, timeout=300)
    line = error_line(proc)
    assert f"{disk / 'tables'}/" in line and "No space left on device; the disk is full" in line, line
    assert listing(disk) == ["filler"]


# --- kills: the next run of the same command recovers ------------------------------------------

def renames(command: list[str], env: dict[str, str], log: Path) -> list[tuple[str, str]]:
    """The renames the command's own process makes, in order (a run traced by strace)."""
    proc = subprocess.run(["strace", "-qq", "-e", "trace=rename", "-o", str(log), *command], env=env,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    pairs = [re.findall(r'"((?:[^"\\]|\\.)*)"', line)[:2] for line in log.read_text().splitlines()
             if line.startswith("rename(")]
    return [(source, target) for source, target in pairs]


def killed_at_rename(command: list[str], env: dict[str, str], n: int) -> None:
    """Run ``command`` and SIGKILL it (its workers too) on entering its ``n``-th rename."""
    proc = subprocess.run(["strace", "-f", "-qq", "-o", os.devnull, "-e", "trace=rename",
                           "-e", f"inject=rename:signal=KILL:when={n}", *command], env=env,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode in (-signal.SIGKILL, 128 + signal.SIGKILL), proc.stderr[-3000:]


def rename_number(moves: list[tuple[str, str]], source: Path) -> int:
    """The 1-based number of the rename that moves ``source``."""
    return next(i for i, (s, _) in enumerate(moves, 1) if s == str(source))


def hidden(folder: Path) -> list[str]:
    return [name for name in listing(folder) if name.startswith(".")]


def test_evaluate_killed_between_its_two_renames_is_completed_by_the_next_run(label_folders, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    command = druwas_command(*evaluate_args(label_folders, out / "metrics.csv"))

    def old_outputs() -> None:
        (out / "metrics.csv").write_text("old metrics")
        (out / "metrics_summary.csv").write_text("old summary")

    old_outputs()
    moves = renames(command, command_env(), tmp_path / "strace.log")   # replacing old outputs, as killed below
    old_outputs()
    killed_at_rename(command, command_env(), rename_number(moves, out / "metrics_summary.csv"))
    assert (out / "metrics.csv").read_text() != "old metrics"              # the moment: one file new,
    assert (out / "metrics_summary.csv").read_text() == "old summary"      # the other old, a journal
    assert any(name.startswith(".druwas-journal.") for name in hidden(out))

    rerun = subprocess.run(command, env=command_env(), capture_output=True, text=True, timeout=300)
    assert rerun.returncode == 0, rerun.stderr
    assert "completed an interrupted replacement of 2 output(s)" in rerun.stderr
    assert listing(out) == ["metrics.csv", "metrics_summary.csv"]
    assert len(pd.read_csv(out / "metrics_summary.csv")) == 6


def test_convert_overwrite_killed_at_the_swap_is_completed_by_the_same_command(tmp_path):
    src = make_brats_release(tmp_path / "src", 2020, 3, SHAPE, seed=1)
    raw = tmp_path / "raw"
    raw.mkdir()
    env = command_env(nnUNet_raw=str(raw))
    command = druwas_command("convert-brats", src, "--year", 2020, "--overwrite", "-np", 1)
    assert subprocess.run(command, env=env, capture_output=True, timeout=300).returncode == 0
    moves = renames(command, env, tmp_path / "strace.log")
    (raw / DATASET / "old.txt").write_text("the dataset before the overwrite")
    killed_at_rename(command, env, rename_number(moves, raw / DATASET) + 1)   # old aside, new not yet in place
    assert not (raw / DATASET).exists() and len(hidden(raw)) == 3            # journal, old and new dataset

    rerun = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert rerun.returncode == 0, rerun.stderr
    assert "completed an interrupted replacement" in rerun.stderr
    assert listing(raw) == [DATASET]
    assert json.loads((raw / DATASET / "dataset.json").read_text())["numTraining"] == 3
    assert not (raw / DATASET / "old.txt").exists() and len(listing(raw / DATASET / "imagesTr")) == 12


def processes() -> dict[int, tuple[int, int]]:
    """pid -> (parent pid, process group) of every live process (zombies left out)."""
    table = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if fields[0] != "Z":
            table[int(stat.parent.name)] = (int(fields[1]), int(fields[2]))
    return table


def descendants(pid: int) -> set[int]:
    table, found, frontier = processes(), set(), {pid}
    while frontier:
        frontier = {child for child, (parent, _) in table.items() if parent in frontier} - found
        found |= frontier
    return found


def wait_until(condition, timeout: float, what: str, poll: float = 0.02) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(poll)


def test_killed_convert_leaves_no_workers_and_its_staging_folder_is_removed_with_a_note(tmp_path):
    src = make_brats_release(tmp_path / "src", 2020, 12, (32, 32, 24), seed=4)
    raw = tmp_path / "raw"
    raw.mkdir()
    env = command_env(nnUNet_raw=str(raw))
    command = druwas_command("convert-brats", src, "--year", 2020, "--overwrite", "-np", 2)
    (raw / DATASET).mkdir()
    (raw / DATASET / "dataset.json").write_text("{}")   # the dataset the killed --overwrite would replace
    parent = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    workers: set[int] = set()
    try:
        def writing() -> bool:
            workers.update(descendants(parent.pid))
            return any(p.is_file() for p in raw.glob(".*/imagesTr/*"))

        wait_until(writing, 300, "the conversion to write its first case")
        workers.update(descendants(parent.pid))
        parent.send_signal(signal.SIGKILL)
        parent.wait()
        wait_until(lambda: not workers & set(processes()), 30, f"the workers {workers} to end with their parent")
    finally:
        parent.kill()
        for pid in workers & set(processes()):
            os.kill(pid, signal.SIGKILL)
    assert len(workers) >= 2
    (staging,) = [name for name in hidden(raw)]

    refused = subprocess.run(command[:-3] + ["-np", "1"], env=env, capture_output=True, text=True, timeout=300)
    assert "already exists" in error_line(refused)          # no --overwrite: the dataset is kept ...
    assert f"note: removed {raw / staging}, left by a killed writer" in refused.stderr   # ... the leftover goes
    assert listing(raw) == [DATASET] and listing(raw / DATASET) == ["dataset.json"]


def test_tables_killed_during_their_replacement_are_marked_and_completed_by_the_next_run(tmp_path):
    out = tmp_path / "tables"
    command = tables_command("--out", out, "--no-plots", "--n-resamples", 99)
    assert subprocess.run(command, env=command_env(), capture_output=True, timeout=300).returncode == 0
    moves = renames(command, command_env(), tmp_path / "strace.log")   # replacing old outputs, as killed below
    for path in out.iterdir():
        path.write_text("old")
    killed_at_rename(command, command_env(), rename_number(moves, out / "table3.csv"))
    old = {name for name, text in contents(out).items() if text == "old"}
    assert "table1.csv" not in old and "table3.csv" in old                   # the moment: a mix,
    assert any(name.startswith(".druwas-journal.") for name in hidden(out))  # marked by the journal

    rerun = subprocess.run(command, env=command_env(), capture_output=True, text=True, timeout=300)
    assert rerun.returncode == 0, rerun.stderr
    assert "completed an interrupted replacement" in rerun.stderr
    assert hidden(out) == [] and "old" not in contents(out).values()


# --- bad input ---------------------------------------------------------------------------------

@pytest.mark.parametrize("folder, value", [("pred", np.nan), ("gt", np.inf)])
def test_nan_or_infinite_label_maps_are_an_error_naming_the_case(label_folders, tmp_path, folder, value):
    """A float prediction with NaN was read as background (exit 0, a numpy warning)."""
    path = tmp_path / folder / "B.nii.gz"
    array = label_map(1).astype(np.float32)
    array[5, 5, 5] = value
    save(path, array)
    line = error_line(druwas(*evaluate_args(label_folders, tmp_path / "metrics.csv")))
    assert f"{path} holds NaN or infinite values" in line, line
    assert not (tmp_path / "metrics.csv").exists()


def test_the_same_folder_as_prediction_and_reference_is_a_warning(label_folders, tmp_path):
    _, gt = label_folders
    proc = druwas("evaluate", gt, gt / ".." / "gt", "-o", tmp_path / "m.csv", "--labels", "nnunet")
    assert proc.returncode == 0, proc.stderr
    assert "warning: the prediction and ground-truth folders are the same folder" in proc.stderr


def write_fold_metrics(results: Path) -> Path:
    fold = results / DATASET / "nnUNetTrainerDRUwAS__nnUNetPlans__3d_fullres" / "fold_0"
    fold.mkdir(parents=True)
    rows = [dict(case=case, region=region, dice=0.8, hd95=3.0, sensitivity=0.9, specificity=0.99, n_pred=10,
                 n_ref=11, n_tp=9, missing=False, hd95_definition="brats")
            for case in ("A", "B") for region in ("WT", "TC", "ET")]
    pd.DataFrame(rows).to_csv(fold / "brats_metrics.csv", index=False)
    return fold / "brats_metrics.csv"


@pytest.mark.parametrize("column, value, wanted", [
    ("dice", "7.5", "is outside [0.0, 1.0]"), ("sensitivity", "-0.1", "is outside [0.0, 1.0]"),
    ("specificity", "1.01", "is outside [0.0, 1.0]"), ("hd95", "-2.0", "is outside [0.0, inf]"),
    ("hd95", "n/a mm", "is not a number"), ("dice", "high", "is not a number"),
])
def test_metrics_outside_their_range_are_an_error_naming_file_and_line(tmp_path, column, value, wanted):
    """Dice 7.5 was bolded as the best value; text became NaN and dropped out of the means."""
    path = write_fold_metrics(tmp_path)
    frame = pd.read_csv(path, dtype=str, keep_default_na=False)
    frame.loc[4, column] = value   # case B, region TC: line 6 of the file
    frame.to_csv(path, index=False)
    with pytest.raises(DruwasError) as info:
        collect(tmp_path, {500: 2020})
    assert str(info.value).startswith(f"{path}: line 6 (case B, region TC): {column} {value} {wanted}")


def test_the_authors_perfect_dice_just_above_one_is_accepted(tmp_path):
    """The authors' Dice, (2|A∩B| + 1e-9) / (|A| + |B|), is 1 + 1e-9 / (|A| + |B|) for a perfect case."""
    path = write_fold_metrics(tmp_path)
    frame = pd.read_csv(path, dtype=str, keep_default_na=False)
    frame.loc[4, "dice"] = repr((2 * 57 + 1e-9) / (57 + 57))
    frame.to_csv(path, index=False)
    per_case = collect(tmp_path, {500: 2020}).per_case
    assert per_case.loc[(per_case["case"] == "B") & (per_case["region"] == "TC"), "dice"].item() > 1.0


def test_bad_metrics_through_the_tables_command_leave_no_tables(tmp_path):
    path = write_fold_metrics(tmp_path / "results")
    path.write_text(path.read_text().replace("0.8,", "7.5,", 1))
    proc = subprocess.run(tables_command("--results", tmp_path / "results", "--out", tmp_path / "tables"),
                          env=command_env(), capture_output=True, text=True, timeout=300)
    assert f"{path}: line 2 (case A, region WT): dice 7.5 is outside" in error_line(proc)
    assert not (tmp_path / "tables").exists()


def test_empty_results_folder_says_no_runs_were_found(tmp_path, capsys):
    (tmp_path / "results" / "Dataset500_BraTS2020").mkdir(parents=True)
    assert tables_main(["--results", str(tmp_path / "results"), "--out", str(tmp_path / "t"), "--no-plots"]) == 0
    out = capsys.readouterr().out
    assert f"note: No runs were found in {tmp_path / 'results'}" in out
    assert "No runs were found" in (tmp_path / "t" / "notes.md").read_text()


def test_case_names_that_differ_only_in_capitals_are_an_error_naming_both(tmp_path, monkeypatch):
    """One patient twice, and on a case-insensitive file system one would overwrite the other."""
    src = make_brats_release(tmp_path / "src", 2020, 3, SHAPE, seed=1)
    shutil.copytree(src / "BraTS20_Training_002", src / "braTS20_training_002")
    monkeypatch.setenv("nnUNet_raw", str(tmp_path / "raw"))
    (tmp_path / "raw").mkdir()
    with pytest.raises(DruwasError) as info:
        convert_brats(src, 2020, num_processes=1, progress=False)
    assert f"{src / 'BraTS20_Training_002'}, {src / 'braTS20_training_002'} differ only in capitals" in \
        str(info.value)
    assert listing(tmp_path / "raw") == []


# --- the demo --------------------------------------------------------------------------------

def test_demo_workdir_naming_a_file_is_an_error(tmp_path):
    (tmp_path / "notes.txt").write_text("user data")
    line = error_line(druwas("demo", "--workdir", tmp_path / "notes.txt"))
    assert f"--workdir {tmp_path / 'notes.txt'} is a file, not a folder" in line
    assert (tmp_path / "notes.txt").read_text() == "user data"


def test_demo_killed_during_preprocessing_redoes_it_and_trains(tmp_path):
    """Killed while nnUNetv2_plan_and_preprocess ran, every rerun skipped preprocessing and failed
    inside nnU-Net. The whole process group is killed once some cases are preprocessed; the rerun
    must preprocess again and train the first variant (then it is stopped: the rest is
    test_demo.py's)."""
    workdir = tmp_path / "demo"
    environ = command_env(nnUNet_def_n_proc="2", nnUNet_n_proc_DA="2", OMP_NUM_THREADS="2")
    preprocessed = workdir / "nnUNet_preprocessed" / DATASET
    fold = workdir / "nnUNet_results" / DATASET / f"{TRAINER}__nnUNetPlans__3d_fullres" / "fold_0"
    n_cases = int(SHORT[SHORT.index("--cases") + 1])

    def cases_done() -> int:
        return len(list(preprocessed.glob("nnUNetPlans_3d_fullres/*.pkl")))

    run_demo_until(workdir, environ, lambda: cases_done() > 0, tmp_path / "first.log")
    assert cases_done() < n_cases, f"killed too late: {(tmp_path / 'first.log').read_text()[-4000:]}"
    run_demo_until(workdir, environ, (fold / "brats_metrics.csv").is_file, tmp_path / "second.log")
    log = (tmp_path / "second.log").read_text()
    assert "nnUNetv2_plan_and_preprocess -d 500 -c 3d_fullres (again from the start" in log, log[-4000:]
    assert cases_done() == n_cases
