"""The experiment grid: run list, rendered scripts, refusals, and a real single-node SLURM run.

The cluster test submits a tiny grid (1 epoch of 2 iterations, CPU) to a real SLURM started by
``.ci/slurm.sh`` (installed with apt-get when missing) and checks the order the dependencies
impose, the tables at the end, ``--status``, and the skip / resume logic of the job scripts.
"""
from __future__ import annotations

import hashlib
import json
import math
import re
import shutil
import subprocess
import time
from pathlib import Path

import pytest

from conftest import REPO, TINY_ID, check_fold_metrics, check_measured_rows, results_env, run_command
from nnunetv2_druwas import grid
from nnunetv2_druwas.errors import DruwasError
from nnunetv2_druwas.variants import ABLATION_VARIANTS

DATASET = "Dataset990_Tiny"
FULL, SWISH = "nnUNetTrainerDRUwAS", "nnUNetTrainerDRUwASSwish"


METRICS_HEADER = "case,region,dice,hd95,sensitivity,specificity,n_pred,n_ref,missing,hd95_definition\n"


def finish(results: Path, trainer: str, fold: int, *, metrics: bool = True, dataset: str = DATASET,
           configuration: str = "3d_fullres", plans: str = "nnUNetPlans") -> Path:
    """Make a fold look trained (final checkpoint, and the BraTS metrics, with no cases, unless told otherwise)."""
    fold_dir = grid.Run(dataset, configuration, trainer, plans, fold).fold_dir(results)
    fold_dir.mkdir(parents=True, exist_ok=True)
    (fold_dir / "checkpoint_final.pth").write_bytes(b"")
    if metrics:
        (fold_dir / "brats_metrics.csv").write_text(METRICS_HEADER)
    return fold_dir


def write_plans(preprocessed: Path, plans: str, configurations: dict[str, str | None]) -> None:
    """A plans file whose configurations have these data identifiers (None: inherits from 3d_fullres);
    the data folders exist for the ones named."""
    folder = preprocessed / DATASET
    folder.mkdir(parents=True, exist_ok=True)
    entries = {c: ({"data_identifier": d} if d else {"inherits_from": "3d_fullres"}) for c, d in configurations.items()}
    (folder / f"{plans}.json").write_text(json.dumps({"configurations": entries}))


@pytest.fixture
def env(nnunet_env) -> dict[str, str]:
    (Path(nnunet_env["nnUNet_preprocessed"]) / DATASET).mkdir()
    return nnunet_env


def selection(trainers=(FULL, SWISH), folds=(0, 1, 2, 3, 4)) -> grid.Selection:
    return grid.Selection((DATASET,), ("3d_fullres",), tuple(folds), tuple(trainers))


# --- the run list ----------------------------------------------------------------------------

def test_trainer_selection_expands_keys_and_all_with_continuations_last():
    paper = grid.select_trainers(["all"])
    assert paper == tuple(v.trainer for v in ABLATION_VARIANTS)   # the seven rows of Table 4
    assert paper.index(SWISH) > paper.index(FULL)
    assert len(grid.select_trainers(["all"], "both")) == 2 * len(ABLATION_VARIANTS)
    # nnU-Net's network under the DRUwAS recipes is chosen by its key, after the ablation rows
    assert grid.select_trainers(["nnunet", "baseline"], "strict") == (
        "nnUNetTrainerDRUwAS_Baseline_PaperStrict", "nnUNetTrainerDRUwAS_nnUNetNetwork_PaperStrict")
    both = set(grid.select_trainers(["all"], "both"))
    assert not any(name.endswith("_PaperStrict") for name in both)        # "both" keeps its meaning
    strict = grid.select_trainers(["all"], "strict")
    assert strict == tuple(f"{v.trainer}_PaperStrict" for v in ABLATION_VARIANTS)
    assert set(grid.select_trainers(["all"], "all")) == both | set(strict)
    assert grid.select_trainers(["swish", "full"], "strict") == (f"{FULL}_PaperStrict", f"{SWISH}_PaperStrict")
    with pytest.raises(DruwasError, match="unknown recipe 'strikt'; choose one of paper, nnunet, strict, both, all"):
        grid.select_trainers(["all"], "strikt")
    assert grid.select_trainers(["swish", "full"], "nnunet") == (f"{FULL}_nnUNetRecipe", f"{SWISH}_nnUNetRecipe")
    assert grid.select_trainers(["nnUNetTrainerDRUwAS_SA", "baseline"]) == (
        "nnUNetTrainerDRUwAS_Baseline", "nnUNetTrainerDRUwAS_SA")
    with pytest.raises(DruwasError, match="nnUNetTrainer'"):
        grid.select_trainers(["nnUNetTrainer"])


def test_dataset_id_resolves_to_the_folder_name(env):
    assert grid.dataset_name(990, env) == DATASET
    assert grid.dataset_name("Dataset123_Other", env) == "Dataset123_Other"
    with pytest.raises(DruwasError, match="no dataset with id 991"):
        grid.dataset_name("991", env)


def test_jobs_skip_done_folds_and_chain_swish_and_tables(env, tmp_path):
    results = Path(env["nnUNet_results"])
    finish(results, FULL, 0)
    finish(results, FULL, 1, metrics=False)        # trained, metrics missing: still to do (resumes)
    finish(results, SWISH, 2)
    jobs = grid.plan_jobs(selection(), tmp_path / "out", environ=env)
    by_name = {j.name: j for j in jobs}
    full, swish = (grid.array_name(DATASET, t, "nnUNetPlans", "3d_fullres") for t in (FULL, SWISH))
    assert [j.name for j in jobs] == [full, swish, grid.TABLES_JOB]
    # ReLU fold 0 is done, but Swish fold 0 needs its counterpart task for aftercorr (it exits at once)
    assert by_name[full].folds == (0, 1, 2, 3, 4)
    assert by_name[swish].folds == (0, 1, 3, 4)
    assert by_name[full].dependencies == ()
    assert by_name[swish].dependencies == (("aftercorr", full),)
    assert by_name[grid.TABLES_JOB].dependencies == (("afterok", full), ("afterok", swish))
    assert by_name[grid.TABLES_JOB].folds == ()


def test_done_arrays_are_left_out_and_their_dependents_start_free(env, tmp_path):
    results = Path(env["nnUNet_results"])
    for fold in range(5):
        finish(results, FULL, fold)
    jobs = grid.plan_jobs(selection(), tmp_path / "out", environ=env)
    assert [(j.name, j.dependencies) for j in jobs][0] == (
        grid.array_name(DATASET, SWISH, "nnUNetPlans", "3d_fullres"), ())
    for fold in range(5):
        finish(results, SWISH, fold)
    jobs = grid.plan_jobs(selection(), tmp_path / "out", environ=env)
    assert [(j.name, j.dependencies) for j in jobs] == [(grid.TABLES_JOB, ())]


def test_continuation_without_its_relu_run_is_refused(env, tmp_path):
    results = Path(env["nnUNet_results"])
    with pytest.raises(DruwasError, match=f"continues {FULL}, whose fold 0 .* add {FULL} to --trainers"):
        grid.plan_jobs(selection(trainers=(SWISH,)), tmp_path / "out", environ=env)
    finish(results, FULL, 0)
    jobs = grid.plan_jobs(selection(trainers=(SWISH,), folds=(0,)), tmp_path / "out", environ=env)
    assert jobs[0].folds == (0,) and jobs[0].dependencies == ()


def test_references_and_repeats_add_arrays_with_their_plans_and_evaluation(env, tmp_path):
    """--reference nnunet resenc-m --repeats 2: nnU-Net's trainer under each plans, every trainer twice
    (repeat k of Swish waits for repeat k of ReLU), the ResEnc M arrays after the job that plans it,
    and nnU-Net's trainer scored by evaluate-results; done folds are left out as for the DRUwAS runs."""
    results, preprocessed = Path(env["nnUNet_results"]), Path(env["nnUNet_preprocessed"])
    write_plans(preprocessed, "nnUNetPlans", {"3d_fullres": "nnUNetPlans_3d_fullres"})
    (preprocessed / DATASET / "nnUNetPlans_3d_fullres").mkdir()
    finish(results, FULL, 0)
    finish(results, "nnUNetTrainer", 0)
    chosen = grid.Selection((DATASET,), ("3d_fullres",), (0, 1), (FULL, SWISH), references=("nnunet", "resenc-m"),
                            repeats=2)
    assert chosen.trainings() == [
        (FULL, "nnUNetPlans"), (f"{FULL}_repeat1", "nnUNetPlans"), (SWISH, "nnUNetPlans"),
        (f"{SWISH}_repeat1", "nnUNetPlans"), ("nnUNetTrainer", "nnUNetPlans"), ("nnUNetTrainer_repeat1", "nnUNetPlans"),
        ("nnUNetTrainer", "nnUNetResEncUNetMPlans"), ("nnUNetTrainer_repeat1", "nnUNetResEncUNetMPlans")]
    jobs = grid.plan_jobs(chosen, tmp_path / "out", environ=env)
    name = {t: grid.array_name(DATASET, t, p, "3d_fullres") for t, p in chosen.trainings()[:6]}
    resenc, resenc1 = (grid.array_name(DATASET, t, "nnUNetResEncUNetMPlans", "3d_fullres")
                       for t in ("nnUNetTrainer", "nnUNetTrainer_repeat1"))
    plan = f"{DATASET}__nnUNetResEncUNetMPlans__plans"
    assert [(j.name, j.folds, j.dependencies) for j in jobs] == [
        (plan, (), ()),
        (name[FULL], (0, 1), ()), (name[f"{FULL}_repeat1"], (0, 1), ()),
        (name[SWISH], (0, 1), (("aftercorr", name[FULL]),)),
        (name[f"{SWISH}_repeat1"], (0, 1), (("aftercorr", name[f"{FULL}_repeat1"]),)),
        (name["nnUNetTrainer"], (1,), ()), (name["nnUNetTrainer_repeat1"], (0, 1), ()),
        (resenc, (0, 1), (("afterok", plan),)), (resenc1, (0, 1), (("afterok", plan),)),
        (grid.TABLES_JOB, (), tuple(("afterok", j.name) for j in jobs[:-1]))]
    by_name = {j.name: "\n".join(j.body) for j in jobs}
    assert by_name[plan].endswith(f"-m nnunetv2_druwas.plans {DATASET} resenc-m -c 3d_fullres")
    assert "-tr nnUNetTrainer_repeat1 -p nnUNetResEncUNetMPlans -device cuda" in by_name[resenc1]
    for job in (resenc, resenc1, name["nnUNetTrainer"]):   # nnU-Net's trainer writes no metrics
        assert by_name[job].splitlines()[-1].endswith('-m nnunetv2_druwas evaluate-results --fold-dir "$fold_dir"')
    assert not any("evaluate-results" in by_name[name[t]] for t in (FULL, f"{FULL}_repeat1", SWISH))

    # plans ready (3d_fullres reuses the default data): no plans job, nothing waits; a missing data
    # folder of another configuration (its own identifier) still needs one
    write_plans(preprocessed, "nnUNetResEncUNetMPlans", {"3d_fullres": "nnUNetPlans_3d_fullres",
                                                         "3d_lowres": "nnUNetResEncUNetMPlans_3d_lowres",
                                                         "3d_cascade_fullres": None})
    ready = grid.plan_jobs(chosen, tmp_path / "out", environ=env)
    assert plan not in {j.name for j in ready} and {j.name: j.dependencies for j in ready}[resenc] == ()
    from nnunetv2_druwas import plans

    assert plans.missing(DATASET, "nnUNetResEncUNetMPlans", ["3d_fullres", "3d_lowres", "3d_cascade_fullres"],
                         preprocessed) == ["3d_lowres"]
    with pytest.raises(DruwasError, match="has no configuration 2d"):
        plans.missing(DATASET, "nnUNetResEncUNetMPlans", ["2d"], preprocessed)


def test_status_and_estimate_count_references_and_repeats(env, tmp_path, capsys):
    from nnunetv2_druwas.cli import main

    results = Path(env["nnUNet_results"])
    finish(results, "nnUNetTrainer_repeat1", 0, plans="nnUNetResEncUNetMPlans")
    chosen = grid.Selection((DATASET,), ("3d_fullres",), (0,), (FULL,), references=("resenc-m",), repeats=2)
    rows = grid.grid_status(chosen, None, env, queue={})
    assert [(r["plans"], r["trainer"], r["state"]) for r in rows] == [
        ("nnUNetPlans", FULL, "missing"), ("nnUNetPlans", f"{FULL}_repeat1", "missing"),
        ("nnUNetResEncUNetMPlans", "nnUNetTrainer", "missing"), ("nnUNetResEncUNetMPlans", "nnUNetTrainer_repeat1", "done")]
    assert re.search(r"nnUNetResEncUNetMPlans +nnUNetTrainer_repeat1 +0 +done", grid.format_status(rows))

    assert main(["grid", "--estimate", "--epoch-seconds", "36", "-d", "500", "-f", "0", "1", "--trainers", "full",
                 "swish", "--reference", "nnunet", "resenc-m", "--repeats", "3"]) == 0
    lines = [line.split() for line in capsys.readouterr().out.splitlines()[2:]]
    # 1 dataset x 1 configuration x 2 folds x 3 repeats = 6 runs each; nnU-Net's trainer: 1000 epochs
    assert [line[:6] for line in lines[:-1]] == [
        ["paper", "full", FULL, "100", "250", "6"], ["paper", "swish", SWISH, "60", "250", "6"],
        ["nnunet", "nnunet", "nnUNetTrainer", "1000", "250", "6"], ["nnunet", "resenc-m", "nnUNetTrainer", "1000", "250", "6"]]
    assert float(lines[2][6]) == pytest.approx(6 * 1000 * 36 / 3600)
    assert lines[-1][:3] == ["total", "24", f"{6 * (100 + 60 + 1000 + 1000) * 36 / 3600:.1f}"]
    assert main(["grid", "--estimate", "--epoch-seconds", "36", "--repeats", "0"]) == 2
    assert "--repeats 0" in capsys.readouterr().err


def test_array_spec_compresses_ranges():
    assert grid.array_spec([0, 1, 2, 3, 4]) == "0-4"
    assert grid.array_spec([4, 0, 2, 3]) == "0,2-4"
    assert grid.array_spec([3]) == "3"


# --- the scripts -----------------------------------------------------------------------------

def test_slurm_scripts_carry_environment_resources_and_arrays(env, tmp_path, monkeypatch):
    monkeypatch.setenv("DRUWAS_EPOCHS", "3")
    env = dict(env, DRUWAS_EPOCHS="3")
    finish(Path(env["nnUNet_results"]), FULL, 1)
    finish(Path(env["nnUNet_results"]), SWISH, 1)
    settings = grid.JobSettings(partition="gpu", time="2-00:00:00", mem="32G", account="lab", cpus_per_task=8,
                                sbatch_extra=("#SBATCH --qos=long",))
    out = tmp_path / "out"
    jobs = grid.write_grid(selection(), out, settings, environ=env)
    full = (out / "jobs" / f"{jobs[0].name}.sh").read_text()
    tables = (out / "jobs" / "tables.sh").read_text()
    for script in (full, tables):
        assert script.startswith("#!/usr/bin/env bash\n")
        assert "\nset -euo pipefail\n" in script
        for name in ("nnUNet_raw", "nnUNet_preprocessed", "nnUNet_results"):
            assert f"\nexport {name}={env[name]}\n" in script
        assert re.search(rf"\nexport nnUNet_extTrainer={REPO / 'trainers'}[:\n]", script)
        assert "\nexport DRUWAS_EPOCHS=3\n" in script
        assert "\nexport nnUNet_n_proc_DA=2\n" in script
        for line in ("#SBATCH --partition=gpu", "#SBATCH --time=2-00:00:00", "#SBATCH --mem=32G",
                     "#SBATCH --account=lab", "#SBATCH --cpus-per-task=8", "#SBATCH --qos=long",
                     "#SBATCH --ntasks=1", "#SBATCH --kill-on-invalid-dep=yes"):
            assert f"\n{line}\n" in script
    assert "#SBATCH --array=0,2-4\n" in full and "#SBATCH --array" not in tables
    assert "#SBATCH --gpus-per-task=1\n" in full and "--gpus" not in tables
    assert f"#SBATCH --output={out.resolve()}/logs/%x__fold%a__%A.log\n" in full
    assert "DRUWAS_ITERS" not in full
    train_line = next(line for line in full.splitlines() if "-tr " in line)
    assert f"/nnUNetv2_train {DATASET} 3d_fullres \"$fold\" -tr {FULL} -p nnUNetPlans -device cuda" in train_line
    assert " -m nnunetv2_druwas.folds \"$fold_dir\" -- " in train_line   # the fold's state decides at run time
    assert Path(train_line.split(" -- ")[1].split()[0]).is_absolute()
    assert f"-m analysis.tables --results \"$nnUNet_results\" --out {out.resolve() / 'tables'}" in tables
    recorded = json.loads((out / "grid.json").read_text())
    assert recorded["selection"]["trainers"] == [FULL, SWISH]
    assert recorded["jobs"][jobs[0].name] == [0, 2, 3, 4]


def test_cpu_grid_asks_for_no_gpu_and_shell_format_runs_jobs_in_order(env, tmp_path):
    out = tmp_path / "out"
    jobs = grid.write_grid(selection(folds=(0, 1)), out, grid.JobSettings(device="cpu"), fmt="shell", environ=env)
    scripts = {p.name: p.read_text() for p in (out / "jobs").iterdir()}
    assert not any("#SBATCH" in s for s in scripts.values())
    assert all("-device cpu" in s for name, s in scripts.items() if name != "tables.sh")
    run_all = (out / "run_all.sh").read_text().splitlines()
    calls = [line.split()[1:3] for line in run_all if line.startswith("bash ")]
    assert calls == [[str(out / "jobs" / f"{jobs[0].name}.sh"), "0"], [str(out / "jobs" / f"{jobs[0].name}.sh"), "1"],
                     [str(out / "jobs" / f"{jobs[1].name}.sh"), "0"], [str(out / "jobs" / f"{jobs[1].name}.sh"), "1"],
                     [str(out / "jobs" / "tables.sh"), "2>&1"]]


def test_job_script_exits_at_once_for_a_done_fold(env, tmp_path):
    """The run-time check: a fold finished after the scripts were written is not trained again."""
    out = tmp_path / "out"
    jobs = grid.write_grid(selection(trainers=(FULL,), folds=(0,)), out, grid.JobSettings(device="cpu"),
                           fmt="shell", environ=env)
    finish(Path(env["nnUNet_results"]), FULL, 0)
    proc = subprocess.run(["bash", str(out / "jobs" / f"{jobs[0].name}.sh"), "0"], capture_output=True, text=True,
                          timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert "fold 0 is already done" in proc.stdout and "running:" not in proc.stdout


def test_submitted_grid_is_not_overwritten(env, tmp_path):
    out = tmp_path / "out"
    grid.write_grid(selection(), out, environ=env)
    (out / "submitted.json").write_text('{"jobs": {}}')
    before = {p.name: p.read_text() for p in (out / "jobs").iterdir()}
    with pytest.raises(DruwasError, match="already submitted.*--overwrite"):
        grid.write_grid(selection(folds=(0,)), out, environ=env)
    assert {p.name: p.read_text() for p in (out / "jobs").iterdir()} == before
    grid.write_grid(selection(folds=(0,)), out, overwrite=True, environ=env)
    assert not (out / "submitted.json").exists()
    assert "#SBATCH --array=0\n" in (out / "jobs" / f"{grid.array_name(DATASET, FULL, 'nnUNetPlans', '3d_fullres')}"
                                                  f".sh").read_text()


def test_command_line_errors_name_the_problem(env, tmp_path, capsys):
    from nnunetv2_druwas.cli import main

    assert main(["grid", "-d", "991", "--out", str(tmp_path / "out")]) == 2
    assert "error: no dataset with id 991" in capsys.readouterr().err
    assert main(["grid", "-d", "990", "--format", "shell", "--submit", "--out", str(tmp_path / "out")]) == 2
    assert "--submit needs --format slurm" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()
    assert main(["grid", "--estimate"]) == 2
    assert "--estimate needs --epoch-seconds" in capsys.readouterr().err


def test_status_from_results_and_queue(env, tmp_path):
    results = Path(env["nnUNet_results"])
    out = tmp_path / "out"
    out.mkdir()
    full = grid.array_name(DATASET, FULL, "nnUNetPlans", "3d_fullres")
    (out / "submitted.json").write_text(json.dumps({"jobs": {full: {"id": "41", "folds": [1, 2, 3, 4]}}}))
    finish(results, FULL, 0)
    (finish(results, FULL, 1, metrics=False) / "checkpoint_final.pth").rename(
        results / DATASET / f"{FULL}__nnUNetPlans__3d_fullres" / "fold_1" / "checkpoint_latest.pth")
    finish(results, FULL, 2, metrics=False)
    queue = {("41", "1"): "RUNNING", ("41", "3"): "PENDING"}
    rows = grid.grid_status(selection(trainers=(FULL,)), out, env, queue=queue)
    assert [(r["fold"], r["state"], r["job_id"]) for r in rows] == [
        (0, "done", "41_0"), (1, "running", "41_1"), (2, "incomplete", "41_2"), (3, "queued", "41_3"),
        (4, "missing", "41_4")]
    assert grid.format_status(rows).splitlines()[-1] == "1 done, 1 incomplete, 1 missing, 1 queued, 1 running"


def test_gpu_hours_multiply_runs_epochs_and_epoch_time():
    trainers = grid.select_trainers(["all"])
    rows = grid.gpu_hours(36.0, trainers, datasets=3, folds=5, epochs={t: 10 for t in trainers})
    assert [r["variant"] for r in rows] == [v.key for v in ABLATION_VARIANTS] + ["total"]
    assert all(r["runs"] == 15 and r["gpu_hours"] == pytest.approx(15 * 10 * 36 / 3600) for r in rows[:-1])
    assert rows[-1]["gpu_hours"] == pytest.approx(7 * 1.5)
    # one GPU per task: the longest chain is ReLU then its Swish continuation
    assert rows[-1]["wall_hours"] == pytest.approx(20 * 36 / 3600)
    two = grid.gpu_hours(36.0, trainers, datasets=3, folds=5, configurations=2, epochs={t: 10 for t in trainers})
    assert two[-1]["runs"] == 2 * 105 and two[-1]["gpu_hours"] == pytest.approx(2 * 7 * 1.5)


def test_estimate_counts_datasets_configurations_and_folds(capsys):
    from nnunetv2_druwas.cli import main

    assert main(["grid", "--estimate", "--epoch-seconds", "120", "-d", "500", "501", "-c", "3d_fullres", "2d",
                 "-f", "0", "1", "2", "--trainers", "full", "swish"]) == 0
    total = capsys.readouterr().out.splitlines()[-1].split()
    # 2 datasets x 2 configurations x 3 folds = 12 runs per trainer; 12 x (100 + 60) epochs x 120 s
    assert total[:3] == ["total", "24", f"{12 * 160 * 120 / 3600:.1f}"]


def test_paper_recipe_epochs_come_from_the_trainers():
    assert grid.recipe_epochs(FULL) == 100
    assert grid.recipe_epochs(SWISH) == 60
    assert grid.recipe_epochs(f"{FULL}_nnUNetRecipe") == grid.NNUNET_DEFAULT_EPOCHS
    assert (grid.recipe_epochs(f"{FULL}_PaperStrict"), grid.recipe_epochs(f"{SWISH}_PaperStrict")) == (100, 60)


def test_estimate_of_the_strict_recipe_counts_one_pass_epochs(capsys):
    """A strict epoch is ceil(train cases / 4) iterations; --epoch-seconds is per 250 iterations."""
    from nnunetv2_druwas.cli import main

    assert main(["grid", "--estimate", "--epoch-seconds", "100", "-d", "500", "--recipe", "strict",
                 "--trainers", "full", "swish", "--train-cases", "295"]) == 0
    lines = capsys.readouterr().out.splitlines()
    full, swish = (line.split() for line in lines[2:4])
    per_epoch = 100 * math.ceil(295 / 4) / 250                       # 74 iterations: 29.6 s
    assert full[:6] == ["strict", "full", f"{FULL}_PaperStrict", "100", "74", "5"]
    assert float(full[6]) == pytest.approx(round(5 * 100 * per_epoch / 3600, 1))
    assert float(swish[7]) == pytest.approx(round((100 + 60) * per_epoch / 3600, 1))   # after the strict ReLU run
    assert main(["grid", "--estimate", "--epoch-seconds", "100", "--train-cases", "0"]) == 2
    assert "--train-cases 0" in capsys.readouterr().err


# --- a real single-node SLURM ----------------------------------------------------------------

def sinfo_answers() -> bool:
    try:
        return subprocess.run(["sinfo", "-h"], capture_output=True, timeout=10).returncode == 0
    except (FileNotFoundError, subprocess.TimeoutExpired):
        return False


@pytest.fixture(scope="module")
def slurm_cluster() -> None:
    """A SLURM cluster that answers: this machine's, or the single node .ci/slurm.sh installs and starts."""
    if not sinfo_answers():
        proc = subprocess.run(["bash", str(REPO / ".ci" / "slurm.sh"), "start"], capture_output=True, text=True,
                              timeout=600)
        assert proc.returncode == 0, f".ci/slurm.sh start failed:\n{proc.stdout}\n{proc.stderr}"
    assert sinfo_answers()


#: states a SLURM job ends in (squeue --states=all shows them for MinJobAge, 300 s by default)
ENDED = {"COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "OUT_OF_MEMORY", "NODE_FAIL", "PREEMPTED", "BOOT_FAIL",
         "DEADLINE"}


def slurm_states(job_ids: dict[str, str]) -> dict[str, tuple[str, str]]:
    """Job name -> (state, reason) of task 0 (or the single job) of each job, read from squeue."""
    proc = subprocess.run(["squeue", "-h", "-r", "--states=all", "-j", ",".join(job_ids.values()), "-o",
                           "%F|%K|%T|%r"], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, f"squeue failed: {proc.stderr}"
    by_id = {}
    for line in proc.stdout.splitlines():
        array_id, task, state, reason = line.strip().split("|")
        if task in ("0", "N/A"):
            by_id[array_id] = (state, reason)
    return {name: by_id.get(job_id, ("", "")) for name, job_id in job_ids.items()}


def wait_for_slurm(job_ids: dict[str, str], done, what: str, out: Path, timeout: float = 900,
                   check=lambda states: None) -> dict[str, tuple[str, str]]:
    """Poll squeue every second until ``done(states)``; ``check(states)`` must hold at every poll. A job
    seen ended keeps that state when SLURM has since forgotten it."""
    deadline = time.monotonic() + timeout
    states: dict[str, tuple[str, str]] = {}
    while time.monotonic() < deadline:
        # SLURM forgets an ended job after MinJobAge (300 s): an ended state, once seen, is kept
        states = {name: states[name] if state == ("", "") and states.get(name, ("",))[0] in ENDED else state
                  for name, state in slurm_states(job_ids).items()}
        check(states)
        if done(states):
            return states
        time.sleep(1)
    pytest.fail(f"SLURM: {what} did not happen within {timeout} s; last states {states}\n{logs_text(out)}")


def logs_text(out: Path) -> str:
    return "\n".join(f"--- {p.name}\n{p.read_text()[-3000:]}" for p in sorted((out / "logs").glob("*.log")))


def log_times(out: Path) -> dict[str, tuple[float, float]]:
    """Job (and fold) -> (start, end) from the lines every job script writes to its log."""
    times: dict[str, dict[str, float]] = {}
    for log in (out / "logs").glob("*.log"):
        for match in re.finditer(rf"^{re.escape(grid.LOG_MARK)} (start|end) (.+?) (\d+\.\d+)", log.read_text(), re.M):
            times.setdefault(match[2], {})[match[1]] = float(match[3])
    return {name: (t["start"], t["end"]) for name, t in times.items() if "start" in t and "end" in t}


def tiny_validation(env: dict[str, str]) -> tuple[Path, list[str]]:
    """The ground-truth folder of the tiny dataset and the validation cases of its fold 0."""
    preprocessed = Path(env["nnUNet_preprocessed"]) / DATASET
    splits = json.loads((preprocessed / "splits_final.json").read_text())
    return preprocessed / "gt_segmentations", sorted(splits[0]["val"])


def test_grid_runs_on_a_real_slurm_cluster_in_dependency_order(slurm_cluster, tiny_preprocessed, tmp_path):
    env = results_env(tiny_preprocessed, tmp_path / "results", DRUWAS_EPOCHS="1", DRUWAS_ITERS="2")
    results = Path(env["nnUNet_results"])
    out = tmp_path / "grid"
    command = ["nnunetv2_druwas", "grid", "-d", str(TINY_ID), "-c", "2d", "-f", "0", "--trainers", FULL, SWISH,
               "--device", "cpu", "--out", str(out), "--tables-args", "--year-override 990=2020 --no-plots "
               "--n-resamples 99"]
    submitted = run_command([*command, "--submit"], env)
    ids = {name: job["id"] for name, job in json.loads((out / "submitted.json").read_text())["jobs"].items()}
    full, swish = (grid.array_name(DATASET, t, "nnUNetPlans", "2d") for t in (FULL, SWISH))
    assert list(ids) == [full, swish, grid.TABLES_JOB]
    assert all(f"{job_id}\t{name}" in submitted.stdout for name, job_id in ids.items())

    def dependencies_hold(states):   # Swish waits for ReLU and the tables for Swish, at every poll
        if states[full][0] not in ENDED:
            assert states[swish][0] == "PENDING", states
        if states[swish][0] not in ENDED:
            assert states[grid.TABLES_JOB][0] == "PENDING", states

    # once the ReLU task runs, the Swish task and the tables wait for their dependencies
    states = wait_for_slurm(ids, lambda s: s[full][0] == "RUNNING" and s[swish][1] == "Dependency",
                            "ReLU fold 0 running with Swish waiting for it", out, check=dependencies_hold)
    assert states[grid.TABLES_JOB] == ("PENDING", "Dependency"), states
    queue = {(job_id, "0"): states[name][0] for name, job_id in ids.items()}
    rows = grid.grid_status(grid.Selection((DATASET,), ("2d",), (0,), (FULL, SWISH)), out, env, queue=queue)
    assert [(r["trainer"], r["state"], r["job_id"]) for r in rows] == [
        (FULL, "running", f"{ids[full]}_0"), (SWISH, "queued", f"{ids[swish]}_0")]
    states = wait_for_slurm(ids, lambda s: all(state in ENDED for state, _ in s.values()), "the end of every job",
                            out, check=dependencies_hold)
    assert {name: state for name, (state, _) in states.items()} == dict.fromkeys(ids, "COMPLETED"), logs_text(out)

    # the order the dependencies impose, from the start / end lines of the logs
    times = log_times(out)
    assert set(times) == {f"{full} fold 0", f"{swish} fold 0", grid.TABLES_JOB}, logs_text(out)
    assert times[f"{full} fold 0"][1] <= times[f"{swish} fold 0"][0], logs_text(out)
    assert times[f"{swish} fold 0"][1] <= times[grid.TABLES_JOB][0], logs_text(out)
    relu_fold, swish_fold = (grid.Run(DATASET, "2d", t, "nnUNetPlans", 0).fold_dir(results) for t in (FULL, SWISH))
    record = json.loads((swish_fold / "continuation.json").read_text())   # started from the ReLU weights
    assert record["checkpoint"] == str((relu_fold / "checkpoint_final.pth").resolve())
    assert record["checkpoint_sha256"] == hashlib.sha256((relu_fold / "checkpoint_final.pth").read_bytes()).hexdigest()
    gt, cases = tiny_validation(env)
    for fold in (relu_fold, swish_fold):
        check_fold_metrics(fold, gt, cases)
    check_measured_rows(out / "tables" / "table4.csv", {FULL: relu_fold, SWISH: swish_fold})

    status = run_command(["nnunetv2_druwas", "grid", "--status", "--out", str(out)], env).stdout
    assert re.search(rf"{FULL} +0 +done", status) and re.search(rf"{SWISH} +0 +done", status), status
    with pytest.raises(subprocess.CalledProcessError):
        subprocess.run(command, env=env, check=True, capture_output=True)   # refuses to overwrite

    # a finished grid written again is only the tables job
    run_command([*command[:-4], "--out", str(tmp_path / "again")], env)
    assert json.loads((tmp_path / "again" / "grid.json").read_text())["jobs"] == {grid.TABLES_JOB: []}

    # an interrupted Swish fold: reported incomplete, resumed with --c by the shell format's run_all.sh
    (swish_fold / "brats_metrics.csv").unlink()
    (swish_fold / "checkpoint_final.pth").rename(swish_fold / "checkpoint_latest.pth")
    status = run_command(["nnunetv2_druwas", "grid", "--status", "--out", str(out)], env).stdout
    assert re.search(rf"{SWISH} +0 +incomplete", status), status
    shell_out = tmp_path / "shell"
    run_command([*command[:-4], "--format", "shell", "--out", str(shell_out), "--tables-args", command[-1]], env)
    assert set(json.loads((shell_out / "grid.json").read_text())["jobs"]) == {swish, grid.TABLES_JOB}
    run_command(["bash", str(shell_out / "run_all.sh")], env)
    resumed = (shell_out / "logs" / f"{swish}__fold0.log").read_text()
    assert re.search(rf"running: .*nnUNetv2_train {DATASET} 2d 0 -tr {SWISH} .* --c$", resumed, re.M), resumed
    assert grid.fold_state(swish_fold) == "done"
    check_fold_metrics(swish_fold, gt, cases)
    check_measured_rows(shell_out / "tables" / "table4.csv", {FULL: relu_fold, SWISH: swish_fold})

def test_reference_and_repeat_jobs_on_a_real_slurm_cluster(slurm_cluster, tiny_preprocessed, tmp_path):
    """``--trainers baseline --reference nnunet resenc-m --repeats 2`` on fold 0 (2d, 1 epoch of 2
    iterations). Plain nnUNetTrainer is nnU-Net's own (1000 epochs; DRUWAS_* do not apply), so its
    folds, nnunet's repeat 1 and the baseline's repeat 0 are made done beforehand: the grid leaves them
    out and runs, for real, the job that plans ResEnc M, repeat 1 of nnU-Net's trainer under those
    plans after it (scored by evaluate-results) and repeat 1 of the baseline. Then --format shell
    resumes a reference fold whose evaluation is missing."""
    import torch
    from nnunetv2.utilities.get_network_from_plans import get_network_from_plans
    from nnunetv2.utilities.plans_handling.plans_handler import PlansManager

    (source,) = Path(tiny_preprocessed["nnUNet_preprocessed"]).glob(f"Dataset{TINY_ID:03d}_*")
    shutil.copytree(source, tmp_path / "preprocessed" / source.name)   # the ResEnc M plans land in this copy
    env = results_env(tiny_preprocessed, tmp_path / "results", DRUWAS_EPOCHS="1", DRUWAS_ITERS="2",
                      nnUNet_preprocessed=str(tmp_path / "preprocessed"))
    results, resenc_plans = Path(env["nnUNet_results"]), tmp_path / "preprocessed" / DATASET / "nnUNetResEncUNetMPlans.json"
    for trainer, plans_name in (("nnUNetTrainerDRUwAS_Baseline", "nnUNetPlans"), ("nnUNetTrainer", "nnUNetPlans"),
                                ("nnUNetTrainer_repeat1", "nnUNetPlans"), ("nnUNetTrainer", "nnUNetResEncUNetMPlans")):
        finish(results, trainer, 0, configuration="2d", plans=plans_name)
    out = tmp_path / "grid"
    command = ["nnunetv2_druwas", "grid", "-d", str(TINY_ID), "-c", "2d", "-f", "0", "--trainers", "baseline",
               "--reference", "nnunet", "resenc-m", "--repeats", "2", "--device", "cpu", "--out", str(out),
               "--tables-args", "--year-override 990=2020 --no-plots --n-resamples 99"]
    run_command([*command, "--submit"], env)
    ids = {name: job["id"] for name, job in json.loads((out / "submitted.json").read_text())["jobs"].items()}
    plan = f"{DATASET}__nnUNetResEncUNetMPlans__plans"
    baseline1 = grid.array_name(DATASET, "nnUNetTrainerDRUwAS_Baseline_repeat1", "nnUNetPlans", "2d")
    resenc1 = grid.array_name(DATASET, "nnUNetTrainer_repeat1", "nnUNetResEncUNetMPlans", "2d")
    assert list(ids) == [plan, baseline1, resenc1, grid.TABLES_JOB]
    states = wait_for_slurm(ids, lambda s: all(state in ENDED for state, _ in s.values()), "the end of every job", out)
    assert {name: state for name, (state, _) in states.items()} == dict.fromkeys(ids, "COMPLETED"), logs_text(out)

    times = log_times(out)
    assert set(times) == {plan, f"{baseline1} fold 0", f"{resenc1} fold 0", grid.TABLES_JOB}, logs_text(out)
    assert times[plan][1] <= times[f"{resenc1} fold 0"][0], logs_text(out)
    assert resenc_plans.is_file()
    resenc_fold = grid.Run(DATASET, "2d", "nnUNetTrainer_repeat1", "nnUNetResEncUNetMPlans", 0).fold_dir(results)
    checkpoint = torch.load(resenc_fold / "checkpoint_final.pth", map_location="cpu", weights_only=False)
    assert checkpoint["trainer_name"] == "nnUNetTrainer_repeat1" and checkpoint["current_epoch"] == 1   # DRUWAS_EPOCHS
    cm = PlansManager(json.loads(resenc_plans.read_text())).get_configuration("2d")
    network = get_network_from_plans(cm.network_arch_class_name, cm.network_arch_init_kwargs,
                                     cm.network_arch_init_kwargs_req_import, 4, 3, deep_supervision=True)
    network.load_state_dict(checkpoint["network_weights"], strict=True)   # nnU-Net's ResEnc M network of the plan
    assert type(network).__name__ == "ResidualEncoderUNet"
    for fold, trainer in ((resenc_fold, "nnUNetTrainer_repeat1"), (grid.Run(
            DATASET, "2d", "nnUNetTrainerDRUwAS_Baseline_repeat1", "nnUNetPlans", 0).fold_dir(results),
            "nnUNetTrainerDRUwAS_Baseline_repeat1")):
        record = json.loads((fold / "druwas_run.json").read_text())
        assert (record["trainer"], record["repeat"], record["seed"], record["num_epochs"]) == (trainer, 1, 1, 1)
        assert grid.fold_state(fold) == "done"
    scored = (resenc_fold / "brats_metrics.csv").read_text().splitlines()
    assert len(scored) == 1 + 3 * 2 and scored[0].startswith("case,region,protocol,dice,hd95")   # 2 validation cases x 3
    status = run_command(["nnunetv2_druwas", "grid", "--status", "--out", str(out)], env).stdout
    assert status.splitlines()[-1] == "6 done", status
    assert "nnUNetTrainer_repeat1" in (out / "tables" / "runs.csv").read_text()

    # the evaluation of a reference fold is missing: --format shell resumes it (--c: the final
    # validation again) and scores it
    (resenc_fold / "brats_metrics.csv").unlink()
    shell_out = tmp_path / "shell"
    run_command([*command[:-2], "--format", "shell", "--out", str(shell_out), "--tables-args", "--no-plots "
                 "--n-resamples 99 --year-override 990=2020"], env)
    assert set(json.loads((shell_out / "grid.json").read_text())["jobs"]) == {resenc1, grid.TABLES_JOB}
    run_command(["bash", str(shell_out / "run_all.sh")], env)
    log = (shell_out / "logs" / f"{resenc1}__fold0.log").read_text()
    assert re.search(rf"running: .*nnUNetv2_train {DATASET} 2d 0 -tr nnUNetTrainer_repeat1 -p nnUNetResEncUNetMPlans "
                     rf"-device cpu --c$", log, re.M), log
    assert f"{resenc_fold}/brats_metrics.csv" in log and grid.fold_state(resenc_fold) == "done"
