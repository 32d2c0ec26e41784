"""The experiment grid: every training run of the paper, as SLURM job arrays or one shell script.

The paper's Tables 1-4 need, for each dataset (BraTS 2018/2019/2020), each configuration and each
DRUwAS variant (:data:`nnunetv2_druwas.variants.VARIANTS`), the five folds of nnU-Net's
cross-validation. ``nnunetv2_druwas grid`` turns such a selection into job scripts:

- one SLURM **job array** per dataset x configuration x trainer, one array task per fold (the array
  index *is* the fold), each task running ``nnUNetv2_train D C $SLURM_ARRAY_TASK_ID -tr T -p P``;
- the Swish continuation (variant ``swish``, which starts from the final ReLU weights of variant
  ``full``) as its own array with ``--dependency=aftercorr:<full array>``: Swish fold k starts as
  soon as ReLU fold k has finished successfully, without waiting for the other folds. SLURM makes a
  task whose counterpart is not in the ReLU array wait for the whole ReLU array (and cancels it when
  any ReLU task fails), so a Swish fold whose ReLU fold is already trained still gets a task in the
  ReLU array: that task finds the fold done and exits at once;
- one last job, ``python -m analysis.tables``, with ``--dependency=afterok`` on every array.

``--reference nnunet resenc-m`` (:data:`nnunetv2_druwas.variants.REFERENCES`) adds nnU-Net's own
trainings (``nnUNetTrainer`` under ``nnUNetPlans``, resp. ``nnUNetResEncUNetMPlans``) on the same
datasets, configurations and folds, each array ending every task with ``nnunetv2_druwas
evaluate-results --fold-dir`` (nnU-Net's trainer writes no metrics). Plans that are not ready
(:func:`nnunetv2_druwas.plans.missing`) get one job per dataset, ``python -m nnunetv2_druwas.plans``,
which those arrays wait for (``afterok``). ``--repeats R`` adds repeats 1..R-1
(``<trainer>_repeat<k>``, :func:`nnunetv2_druwas.variants.repeat_trainer_name`) of every selected
trainer, references included, each its own array; Swish repeat k waits for ReLU repeat k.

Every job carries ``--kill-on-invalid-dep=yes``, so a failed training cancels what waits for it
instead of leaving it pending forever.

Runs that are done (:func:`nnunetv2_druwas.folds.fold_state`: the fold has the trainer's
``brats_metrics.csv``) are left out when the scripts are written, and each job asks again when it
starts (``python -m nnunetv2_druwas.folds FOLD_DIR -- nnUNetv2_train ...``; the results may have
changed in between): a finished fold exits at once, a fold with a checkpoint continues with ``--c``
(the training, or only the final validation and BraTS evaluation when ``checkpoint_final.pth`` is
there without the metrics), any other fold trains from scratch.

The job scripts export the variables of :data:`nnunetv2_druwas.env.VARIABLES` that are set when
the grid is written (:func:`nnunetv2_druwas.env.job_exports`), ``DRUWAS_LR`` included, so a
resubmission resumes with the same settings.

``--format shell`` writes the same job scripts plus ``run_all.sh``, which runs them one after
another in dependency order on a single machine. ``--submit`` hands the arrays to ``sbatch`` in
dependency order and records the job ids in ``submitted.json``; ``--status`` reports every run as
done / running / queued / incomplete / evaluation failed / missing (``queue unknown`` when ``squeue``
cannot be read); ``--estimate`` prints the GPU-hours of a grid. The files of a grid are replaced
together (:func:`nnunetv2_druwas.files.replaced_together`).

Output folder layout::

    OUT/grid.json        the selection (so --status --out OUT needs nothing else)
    OUT/jobs/*.sh        one script per job (SLURM header + bash body)
    OUT/run_all.sh       --format shell only
    OUT/logs/            job output, one file per job (and fold)
    OUT/tables/          what python -m analysis.tables writes
    OUT/submitted.json   job ids, after --submit
"""
from __future__ import annotations

import argparse
import json
import math
import shlex
import shutil
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Iterable, Mapping, Sequence

from nnunetv2_druwas import env, plans
from nnunetv2_druwas.errors import DruwasError
from nnunetv2_druwas.files import replaced_together, write_text
from nnunetv2_druwas.folds import FoldState, describe, fold_state
from nnunetv2_druwas.variants import (ABLATION_VARIANTS, RECIPES, REFERENCES, VARIANTS, all_trainers, continued_trainer,
                                     lookup_trainer, repeat_trainer_name, split_repeat, trainer_name, variant_by_key)

# Training cases of one fold of BraTS 2020 (369 cases) under 5-fold cross-validation: 295 or 296
# (2019: 268, 2018: 228); the epoch length of a one-pass recipe in --estimate.
DEFAULT_TRAIN_CASES = 296
TABLES_JOB = "tables"
LOG_MARK = "[druwas-grid]"  # prefix of the start / end lines every job writes to its log


# --- what to run -------------------------------------------------------------------------

@dataclass(frozen=True)
class Run:
    """One ``nnUNetv2_train`` call: a fold of a trainer on a dataset and configuration."""
    dataset: str          # nnU-Net dataset folder name, e.g. Dataset500_BraTS2020
    configuration: str
    trainer: str
    plans: str
    fold: int

    @property
    def array_name(self) -> str:
        """The name of the job array this run belongs to (also its script's file stem)."""
        return array_name(self.dataset, self.trainer, self.plans, self.configuration)

    def fold_dir(self, results: Path) -> Path:
        return Path(results) / self.dataset / run_folder(self.trainer, self.plans, self.configuration) / \
            f"fold_{self.fold}"


def run_folder(trainer: str, plans: str, configuration: str) -> str:
    """nnU-Net's folder of a trained model inside the dataset's results folder."""
    return f"{trainer}__{plans}__{configuration}"


def array_name(dataset: str, trainer: str, plans: str, configuration: str) -> str:
    return f"{dataset}__{run_folder(trainer, plans, configuration)}"


@dataclass(frozen=True)
class Selection:
    """The grid a user asked for: every combination of these is one run."""
    datasets: tuple[str, ...]        # dataset folder names
    configurations: tuple[str, ...]
    folds: tuple[int, ...]
    trainers: tuple[str, ...]        # trainer class names, continued trainers after what they continue
    plans: str = "nnUNetPlans"
    references: tuple[str, ...] = ()  # keys of variants.REFERENCES: nnU-Net's own trainings
    repeats: int = 1                 # repeats 0..repeats-1 of every trainer (repeat 0: the plain name)

    def trainings(self) -> list[tuple[str, str]]:
        """(trainer, plans) of every training per dataset, configuration and fold: the DRUwAS trainers
        under :attr:`plans`, then the references under their own plans, each followed by its repeats
        (so every continuation comes after the run it continues)."""
        pairs = [(t, self.plans) for t in self.trainers]
        pairs += [(REFERENCES[r].trainer, REFERENCES[r].plans) for r in self.references]
        return [(repeat_trainer_name(t, k), p) for t, p in pairs for k in range(self.repeats)]

    def runs(self) -> list[Run]:
        return [Run(d, c, t, p, f) for d in self.datasets for c in self.configurations
                for t, p in self.trainings() for f in self.folds]


# --recipe values that select several recipes ("both" predates the strict recipe and keeps its meaning)
RECIPE_GROUPS = {"both": ("paper", "nnunet"), "all": RECIPES}
RECIPE_CHOICES = (*RECIPES, *RECIPE_GROUPS)


def select_trainers(requested: Sequence[str], recipe: str = "paper") -> tuple[str, ...]:
    """Trainer names for ``--trainers``: names, variant keys or ``all``, in the variant table's order.

    Args:
        requested: DRUwAS trainer class names (e.g. ``nnUNetTrainerDRUwAS_SA``), variant keys
            (``baseline``, ``sa``, ..., ``swish``, and ``nnunet``: nnU-Net's network under a DRUwAS
            recipe) or ``all`` (the seven rows of Table 4, not ``nnunet``).
        recipe: for keys and ``all``: a training recipe (``paper``, ``nnunet``, ``strict``) or a
            group of them (:data:`RECIPE_GROUPS`: ``both`` = paper and nnunet, ``all`` = every
            recipe). Explicit trainer names carry their recipe in the name and ignore this.

    Raises:
        DruwasError: for a name that is neither a DRUwAS trainer nor a variant key, or an unknown recipe.
    """
    if recipe not in RECIPE_CHOICES:
        raise DruwasError(f"unknown recipe {recipe!r}; choose one of {', '.join(RECIPE_CHOICES)}")
    recipes = RECIPE_GROUPS.get(recipe, (recipe,))
    chosen: set[str] = set()
    for item in requested:
        if item == "all":
            chosen.update(trainer_name(v, r) for v in ABLATION_VARIANTS for r in recipes)
        elif lookup_trainer(item) is not None:
            chosen.add(item)
        elif item in {v.key for v in VARIANTS}:
            chosen.update(trainer_name(variant_by_key(item), r) for r in recipes)
        else:
            raise DruwasError(f"unknown trainer {item!r}: give a DRUwAS trainer name "
                              f"(see `nnunetv2_druwas trainers`), a variant key "
                              f"({', '.join(v.key for v in VARIANTS)}) or 'all'")
    # the table's order puts every variant after the one it continues (swish after full)
    return tuple(name for name in all_trainers() if name in chosen)


def dataset_name(dataset: str | int, environ: Mapping[str, str] | None = None) -> str:
    """nnU-Net's folder name of a dataset id (``500`` -> ``Dataset500_BraTS2020``), found the way
    nnU-Net finds it: in ``nnUNet_preprocessed``, ``nnUNet_raw`` and ``nnUNet_results``.

    Args:
        dataset: an id (``500``, ``"500"``) or a full name (``Dataset500_BraTS2020``, returned as is).
        environ: the environment holding the nnU-Net folders; None reads this process's.
    """
    text = str(dataset)
    if text.startswith("Dataset"):
        return text
    if not text.isdigit():
        raise DruwasError(f"dataset {text!r} is neither an id (500) nor a name (Dataset500_BraTS2020)")
    prefix = f"Dataset{int(text):03d}_"
    folders = {var: env.value(var, environ) for var in ("nnUNet_preprocessed", "nnUNet_raw", "nnUNet_results")}
    found = sorted({p.name for folder in folders.values() if folder and Path(folder).is_dir()
                    for p in Path(folder).iterdir() if p.is_dir() and p.name.startswith(prefix)})
    if len(found) != 1:
        where = ", ".join(f"{v}={folder or '(not set)'}" for v, folder in folders.items())
        what = "no dataset" if not found else f"several datasets ({', '.join(found)})"
        raise DruwasError(f"{what} with id {text} in the nnU-Net folders ({where}); convert and "
                          f"preprocess it first (nnunetv2_druwas convert-brats, nnUNetv2_plan_and_preprocess)")
    return found[0]


# --- the jobs --------------------------------------------------------------------------------

@dataclass(frozen=True)
class Job:
    """One SLURM submission (an array over folds, or a single job) and the bash it runs."""
    name: str                                   # job name and script file stem
    body: tuple[str, ...]                       # bash lines; in an array job "$fold" is the fold
    folds: tuple[int, ...] = ()                 # array indices (= folds); () for a single job
    dependencies: tuple[tuple[str, str], ...] = ()  # (SLURM dependency type, name of a job in the grid)
    gpu: bool = False                           # whether it asks for --gpus-per-task


@dataclass(frozen=True)
class JobSettings:
    """How the jobs run: resources asked from SLURM and the training device.

    Args:
        device: ``-device`` of ``nnUNetv2_train`` (``cuda`` or ``cpu``).
        partition, time, mem, account, cpus_per_task: the ``#SBATCH`` options of the same name
            (None leaves the cluster's default).
        gpus_per_task: GPUs per training task (``cuda`` only; 0 asks for none).
        sbatch_extra: further ``#SBATCH ...`` lines, verbatim, in every job.
        tables_args: extra arguments of ``python -m analysis.tables`` (e.g. ``--no-plots``).
    """
    device: str = "cuda"
    partition: str | None = None
    time: str | None = None
    mem: str | None = None
    account: str | None = None
    cpus_per_task: int | None = None
    gpus_per_task: int = 1
    sbatch_extra: tuple[str, ...] = ()
    tables_args: tuple[str, ...] = ()


def executable(name: str) -> str:
    """An entry point of this Python environment (beside ``sys.executable``), else from PATH."""
    beside = Path(sys.executable).parent / name
    if beside.is_file():
        return str(beside)
    found = shutil.which(name)
    if found is None:
        raise DruwasError(f"{name} is not installed beside {sys.executable} nor on PATH; install nnunetv2")
    return found


def _train_body(dataset: str, configuration: str, trainer: str, plans: str, device: str) -> tuple[str, ...]:
    """The bash that trains one fold: nnunetv2_druwas.folds decides at run time between skip, resume
    (``--c``) and a fresh start, and runs nnUNetv2_train accordingly; a trainer that writes no BraTS
    metrics itself (nnU-Net's own) is then scored by ``nnunetv2_druwas evaluate-results``."""
    fold_dir = f'"$nnUNet_results"/{shlex.quote(dataset)}/{shlex.quote(run_folder(trainer, plans, configuration))}' \
               f'/"fold_$fold"'
    train = " ".join(shlex.quote(a) for a in (executable("nnUNetv2_train"), dataset, configuration))
    train += f' "$fold" -tr {shlex.quote(trainer)} -p {shlex.quote(plans)} -device {shlex.quote(device)}'
    body = (f"fold_dir={fold_dir}",
            f"{shlex.quote(sys.executable)} -m nnunetv2_druwas.folds \"$fold_dir\" -- {train}")
    if lookup_trainer(split_repeat(trainer)[0]) is None:
        body += (f'{shlex.quote(sys.executable)} -m nnunetv2_druwas evaluate-results --fold-dir "$fold_dir"',)
    return body


def _plans_job(dataset: str, reference: str, configurations: Sequence[str]) -> Job:
    """The job that plans (and preprocesses) what a reference's arrays need (:mod:`nnunetv2_druwas.plans`)."""
    command = [sys.executable, "-m", "nnunetv2_druwas.plans", dataset, reference, "-c", *configurations]
    return Job(f"{dataset}__{REFERENCES[reference].plans}__plans", (" ".join(shlex.quote(a) for a in command),))


def plan_jobs(selection: Selection, out: Path, settings: JobSettings = JobSettings(),
              environ: dict[str, str] | None = None) -> list[Job]:
    """The jobs of a grid, in dependency order, leaving out folds that are already done.

    Args:
        selection: datasets, configurations, folds, trainers and plans of the grid.
        out: the grid's output folder (the tables job writes to ``out/tables``).
        settings: the training device and the extra arguments of the tables job.
        environ: the environment holding ``nnUNet_results``; None reads this process's.

    Raises:
        DruwasError: when a continuation (Swish) needs a fold of a trainer that is neither done
            nor part of the grid, or a reference's plans file lacks a configuration.
    """
    results = Path(env.require("nnUNet_results", environ)).resolve()
    preprocessed = Path(env.require("nnUNet_preprocessed", environ))
    jobs: list[Job] = []
    for dataset in selection.datasets:
        plans_jobs = {REFERENCES[r].plans: _plans_job(dataset, r, selection.configurations)
                      for r in selection.references
                      if plans.missing(dataset, REFERENCES[r].plans, selection.configurations, preprocessed)}
        first = len(jobs)
        for configuration in selection.configurations:
            for trainer, plans_name in selection.trainings():
                todo = tuple(f for f in selection.folds
                             if fold_state(Run(dataset, configuration, trainer, plans_name, f)
                                           .fold_dir(results)) != FoldState.DONE)
                if not todo:
                    continue
                dependencies: tuple[tuple[str, str], ...] = ()
                if plans_name in plans_jobs:
                    dependencies = (("afterok", plans_jobs[plans_name].name),)
                parent = continued_trainer(trainer)
                if parent is not None:
                    _check_continuation(selection, dataset, configuration, trainer, parent, todo, results)
                    parent_name = array_name(dataset, parent, plans_name, configuration)
                    for index, job in enumerate(jobs):
                        if job.name == parent_name:  # aftercorr needs the counterpart task (docstring)
                            jobs[index] = replace(job, folds=tuple(sorted({*job.folds, *todo})))
                            dependencies = (("aftercorr", parent_name),)
                jobs.append(Job(array_name(dataset, trainer, plans_name, configuration),
                                _train_body(dataset, configuration, trainer, plans_name, settings.device),
                                folds=todo, dependencies=dependencies, gpu=settings.device == "cuda"))
        needed = {name for job in jobs[first:] for _, name in job.dependencies}
        jobs[first:first] = [job for job in plans_jobs.values() if job.name in needed]
    tables = [shlex.quote(sys.executable), "-m", "analysis.tables", "--results", '"$nnUNet_results"',
              "--out", shlex.quote(str(Path(out).resolve() / "tables")),
              *(shlex.quote(a) for a in settings.tables_args)]
    jobs.append(Job(TABLES_JOB, (" ".join(tables),), dependencies=tuple(("afterok", j.name) for j in jobs)))
    return jobs


def _check_continuation(selection: Selection, dataset: str, configuration: str, trainer: str, parent: str,
                        folds: Iterable[int], results: Path) -> None:
    if (parent, selection.plans) in selection.trainings():
        return
    for fold in folds:
        run = Run(dataset, configuration, parent, selection.plans, fold)
        if not (run.fold_dir(results) / "checkpoint_final.pth").is_file():
            raise DruwasError(
                f"{trainer} fold {fold} of {dataset} ({configuration}) continues {parent}, whose fold {fold} "
                f"has no checkpoint_final.pth in {run.fold_dir(results)} and is not in the grid: "
                f"add {parent} to --trainers")


def environment_exports(environ: Mapping[str, str] | None = None) -> list[str]:
    """The ``export`` lines every job starts with (:func:`nnunetv2_druwas.env.job_exports`):
    nnU-Net's folders (absolute), the DRUwAS trainer folder in ``nnUNet_extTrainer``, and every
    other variable of :data:`nnunetv2_druwas.env.VARIABLES` that is set here (process counts,
    ``DRUWAS_EPOCHS``, ``DRUWAS_ITERS``, ``DRUWAS_LR``, ...). A set variable the jobs do not carry
    (``DRUWAS_INIT_CHECKPOINT``) gets a note on stderr.

    Args:
        environ: the environment to carry; None reads this process's.
    """
    exports = env.job_exports(environ)
    for name, variable in env.VARIABLES.items():
        if not variable.job and env.value(name, environ) is not None:
            print(f"note: {name} is set but the jobs do not carry it ({variable.meaning}; each Swish fold "
                  f"continues its own ReLU fold)", file=sys.stderr)
    return [f"export {name}={shlex.quote(value)}" for name, value in exports.items()]


# --- rendering -------------------------------------------------------------------------------

def array_spec(folds: Sequence[int]) -> str:
    """SLURM's ``--array`` value for these indices: ``0-4``, ``0,2-3``."""
    parts: list[str] = []
    ordered = sorted(set(folds))
    start = prev = ordered[0]
    for f in ordered[1:] + [None]:
        if f is not None and f == prev + 1:
            prev = f
            continue
        parts.append(str(start) if start == prev else f"{start}-{prev}")
        if f is not None:
            start = prev = f
    return ",".join(parts)


def sbatch_header(job: Job, out: Path, settings: JobSettings) -> list[str]:
    """The ``#SBATCH`` lines of one job (dependencies are given to sbatch when submitting)."""
    logs = Path(out).resolve() / "logs"
    lines = [f"#SBATCH --job-name={job.name}"]
    if job.folds:
        lines += [f"#SBATCH --array={array_spec(job.folds)}", f"#SBATCH --output={logs}/%x__fold%a__%A.log"]
    else:
        lines.append(f"#SBATCH --output={logs}/%x__%j.log")
    for option, value in (("partition", settings.partition), ("time", settings.time), ("mem", settings.mem),
                          ("account", settings.account), ("cpus-per-task", settings.cpus_per_task)):
        if value is not None:
            lines.append(f"#SBATCH --{option}={value}")
    # one task per job; SLURM refuses --gpus-per-task without a task count
    lines.append("#SBATCH --ntasks=1")
    if job.gpu and settings.gpus_per_task > 0:
        lines.append(f"#SBATCH --gpus-per-task={settings.gpus_per_task}")
    lines.append("#SBATCH --kill-on-invalid-dep=yes")
    for extra in settings.sbatch_extra:
        if not extra.startswith("#SBATCH "):
            raise DruwasError(f"--sbatch-extra {extra!r} must be a whole line starting with '#SBATCH '")
        lines.append(extra)
    return lines


def render_job(job: Job, exports: Sequence[str], out: Path, settings: JobSettings, *, slurm: bool = True) -> str:
    """The script of one job: bash, runnable by ``sbatch`` (array task = fold) or by hand
    (``bash script.sh FOLD``).

    Args:
        job: the job.
        exports: the ``export`` lines (:func:`environment_exports`).
        out: the grid's output folder (for the log paths).
        settings: the SLURM resources.
        slurm: whether to write the ``#SBATCH`` header.
    """
    lines = ["#!/usr/bin/env bash"]
    if slurm:
        lines += sbatch_header(job, out, settings)
    lines += [f"# written by `nnunetv2_druwas grid`; {_job_comment(job)}", "set -euo pipefail", *exports]
    if job.folds:
        lines.append('fold="${1:-${SLURM_ARRAY_TASK_ID:?run as a SLURM array task or give the fold: bash $0 FOLD}}"')
        what = f"{job.name} fold $fold"
    else:
        what = job.name
    lines.append(f'echo "{LOG_MARK} start {what} $(date +%s.%N) on $(hostname)"')
    lines += job.body
    lines.append(f'echo "{LOG_MARK} end {what} $(date +%s.%N)"')
    return "\n".join(lines) + "\n"


def _job_comment(job: Job) -> str:
    deps = ", ".join(f"{kind} {name}" for kind, name in job.dependencies) or "nothing"
    return (f"folds {array_spec(job.folds)}" if job.folds else "single job") + f"; waits for: {deps}"


def render_run_all(jobs: Sequence[Job], out: Path) -> str:
    """``run_all.sh``: every job, fold by fold, one after another in dependency order (no SLURM)."""
    out = Path(out).resolve()
    lines = ["#!/usr/bin/env bash", "# written by `nnunetv2_druwas grid --format shell`: the whole grid on this "
             "machine, in dependency order; each job's output also goes to logs/", "set -euo pipefail",
             f"mkdir -p {shlex.quote(str(out / 'logs'))}"]
    for job in jobs:
        script = shlex.quote(str(out / "jobs" / f"{job.name}.sh"))
        for fold in job.folds or (None,):
            arg, suffix = ("", "") if fold is None else (f" {fold}", f"__fold{fold}")
            log = shlex.quote(str(out / "logs" / f"{job.name}{suffix}.log"))
            lines.append(f"bash {script}{arg} 2>&1 | tee {log}")
    return "\n".join(lines) + "\n"


# --- writing, submitting ---------------------------------------------------------------------

def write_grid(selection: Selection, out: Path, settings: JobSettings = JobSettings(), *, fmt: str = "slurm",
               overwrite: bool = False, environ: dict[str, str] | None = None) -> list[Job]:
    """Write the grid's scripts into ``out`` (see the module docstring for the layout).

    Args:
        selection: what to run.
        out: the output folder (created).
        settings: resources and device of the jobs.
        fmt: ``slurm`` (job scripts for sbatch) or ``shell`` (the same scripts without the SLURM
            header, plus ``run_all.sh``).
        overwrite: replace a folder whose grid was already submitted (it has ``submitted.json``).
        environ: the environment to carry into the jobs; None reads this process's.

    Returns:
        The jobs, in dependency order.

    Raises:
        DruwasError: when ``out`` holds a submitted grid and ``overwrite`` is false, or for the
            errors of :func:`plan_jobs` and :func:`environment_exports`.
    """
    if fmt not in ("slurm", "shell"):
        raise DruwasError(f"unknown --format {fmt!r}; choose slurm or shell")
    out = Path(out).resolve()
    if (out / "submitted.json").exists() and not overwrite:
        raise DruwasError(f"{out} holds a grid that was already submitted ({out / 'submitted.json'}); "
                          f"choose another --out, or pass --overwrite to replace its scripts")
    exports = environment_exports(environ)
    jobs = plan_jobs(selection, out, settings, environ)
    (out / "jobs").mkdir(parents=True, exist_ok=True)
    (out / "logs").mkdir(exist_ok=True)
    with replaced_together() as group:   # scripts, run_all.sh and grid.json: all new or all old
        scripts = {out / "jobs" / f"{job.name}.sh": job for job in jobs}
        for script, job in scripts.items():
            group.write_text(script, render_job(job, exports, out, settings, slurm=fmt == "slurm"), executable=True)
        for stale in sorted(set((out / "jobs").glob("*.sh")) - set(scripts)):
            group.remove(stale)
        if fmt == "shell":
            group.write_text(out / "run_all.sh", render_run_all(jobs, out), executable=True)
        else:
            group.remove(out / "run_all.sh")
        group.remove(out / "submitted.json")
        group.write_text(out / "grid.json", json.dumps({"selection": asdict(selection), "format": fmt,
                                                        "settings": asdict(settings),
                                                        "jobs": {j.name: list(j.folds) for j in jobs}}, indent=2))
    return jobs


def submit(jobs: Sequence[Job], out: Path) -> dict[str, str]:
    """Submit the written jobs with ``sbatch --parsable``, in order, each with the real ids of
    the jobs it depends on; record them in ``out/submitted.json`` (also when a submission fails).

    Returns:
        Job name -> SLURM job id.

    Raises:
        DruwasError: when ``sbatch`` is missing or refuses a job (the message names the script and
            the ids already submitted, which keep running).
    """
    if shutil.which("sbatch") is None:
        raise DruwasError("sbatch is not on PATH: submit from a SLURM login node, or use --format shell")
    out = Path(out).resolve()
    ids: dict[str, str] = {}
    try:
        for job in jobs:
            script = out / "jobs" / f"{job.name}.sh"
            cmd = ["sbatch", "--parsable"]
            dependency = _dependency_option(job, ids)
            if dependency:
                cmd.append(f"--dependency={dependency}")
            proc = subprocess.run([*cmd, str(script)], capture_output=True, text=True)
            if proc.returncode != 0:
                raise DruwasError(f"sbatch refused {script}: {proc.stderr.strip() or proc.stdout.strip()}; "
                                  f"already submitted: {ids or 'nothing'}")
            ids[job.name] = proc.stdout.strip().split(";")[0]
    finally:
        if ids:
            record = {"submitted_at": time.strftime("%Y-%m-%dT%H:%M:%S"),
                      "jobs": {name: {"id": ids[name], "folds": list(job.folds)}
                               for job in jobs for name in [job.name] if name in ids}}
            write_text(out / "submitted.json", json.dumps(record, indent=2))
    return ids


def _dependency_option(job: Job, ids: dict[str, str]) -> str:
    """``aftercorr:12,afterok:13:14`` from a job's dependencies (all of them must hold)."""
    by_kind: dict[str, list[str]] = {}
    for kind, name in job.dependencies:
        by_kind.setdefault(kind, []).append(ids[name])
    return ",".join(f"{kind}:{':'.join(found)}" for kind, found in by_kind.items())


# --- status ----------------------------------------------------------------------------------

def queue_states() -> dict[tuple[str, str], str] | None:
    """(array job id, task id) -> SLURM state for every job in ``squeue``; task id ``N/A`` for a
    single job. None when ``squeue`` is missing or does not answer."""
    if shutil.which("squeue") is None:
        return None
    try:
        proc = subprocess.run(["squeue", "-h", "-r", "-o", "%F|%K|%T"], capture_output=True, text=True, timeout=30)
    except subprocess.TimeoutExpired:
        return None
    if proc.returncode != 0:
        return None
    states = {}
    for line in proc.stdout.splitlines():
        parts = line.strip().split("|")
        if len(parts) == 3:
            states[(parts[0], parts[1])] = parts[2]
    return states


#: ``queue`` of :func:`grid_status` when squeue is to be asked.
ASK_SQUEUE = "ask squeue"
QUEUE_UNKNOWN = "queue unknown"


def grid_status(selection: Selection, out: Path | None = None, environ: Mapping[str, str] | None = None,
                queue: Mapping[tuple[str, str], str] | None | str = ASK_SQUEUE) -> list[dict]:
    """The state of every run of a grid, from its fold folder (:func:`nnunetv2_druwas.folds.fold_state`)
    and the SLURM queue.

    ``done``: the fold has its BraTS metrics; ``running`` / ``queued``: its array task is in
    ``squeue`` (running or pending); ``queue unknown``: submitted, not done, and ``squeue`` cannot be
    read (it may be running: nothing is recommended); otherwise, with no job working on it,
    ``evaluation failed`` (trained, but the BraTS evaluation failed: the row's ``detail`` says why),
    ``incomplete`` (a checkpoint: submitting the grid again resumes it) or ``missing`` (nothing yet).

    Args:
        selection: the grid.
        out: the grid's folder; its ``submitted.json`` links runs to SLURM job ids.
        environ: the environment holding ``nnUNet_results``; None reads this process's.
        queue: :func:`queue_states`: :data:`ASK_SQUEUE` asks ``squeue`` (when something was
            submitted), None means it could not be read, ``{}`` an empty queue.

    Returns:
        One dict per run (references and repeats included): dataset, configuration, plans, trainer,
        fold, state, job_id, detail (the fold folder's state in words).
    """
    results = Path(env.require("nnUNet_results", environ)).resolve()
    submitted = {}
    if out is not None and (Path(out) / "submitted.json").is_file():
        submitted = json.loads((Path(out) / "submitted.json").read_text())["jobs"]
    if isinstance(queue, str):
        queue = queue_states() if submitted else {}
    rows = []
    for run in selection.runs():
        job_id = submitted.get(run.array_name, {}).get("id", "")
        fold_dir = run.fold_dir(results)
        on_disk = fold_state(fold_dir)
        in_queue = queue.get((job_id, str(run.fold))) if job_id and queue is not None else None
        if on_disk == FoldState.DONE:
            state = "done"
        elif job_id and queue is None:
            state = QUEUE_UNKNOWN
        elif in_queue is not None:
            state = "queued" if in_queue == "PENDING" else "running"
        elif on_disk == FoldState.EVALUATION_FAILED:
            state = "evaluation failed"
        else:
            state = "missing" if on_disk == FoldState.NONE else "incomplete"
        rows.append(dict(dataset=run.dataset, configuration=run.configuration, plans=run.plans, trainer=run.trainer,
                         fold=run.fold, state=state, job_id=f"{job_id}_{run.fold}" if job_id else "",
                         detail=describe(fold_dir)))
    return rows


def format_status(rows: Sequence[dict]) -> str:
    """A fixed-width table of :func:`grid_status` rows, what to do about them, and a count per state
    on the last line."""
    columns = ("dataset", "configuration", "plans", "trainer", "fold", "state", "job_id")
    widths = {c: max([len(c), *(len(str(r[c])) for r in rows)]) for c in columns}
    lines = ["  ".join(c.ljust(widths[c]) for c in columns)]
    lines += ["  ".join(str(r[c]).ljust(widths[c]) for c in columns) for r in rows]
    counts: dict[str, int] = {}
    for r in rows:
        counts[r["state"]] = counts.get(r["state"], 0) + 1
    for r in rows:
        if r["state"] == "evaluation failed":
            lines.append(f"{r['dataset']} {r['trainer']} {r['plans']} {r['configuration']} fold {r['fold']}: "
                         f"{r['detail']}")
    if counts.get(QUEUE_UNKNOWN):
        lines.append(f"The SLURM queue could not be read (squeue is missing or failed): {counts[QUEUE_UNKNOWN]} "
                     f"submitted run(s) that are not done may still be running or queued. Nothing is "
                     f"recommended until squeue answers.")
    else:
        todo = sum(counts.get(s, 0) for s in ("incomplete", "missing", "evaluation failed"))
        if todo:
            lines.append(f"{todo} run(s) are neither done nor in the queue: write and submit the grid again "
                         f"(same options, --overwrite); done folds are skipped, the others continue with --c "
                         f"or start.")
    lines.append(", ".join(f"{n} {state}" for state, n in sorted(counts.items())))
    return "\n".join(lines)


# --- cost --------------------------------------------------------------------------------------

def gpu_hours(epoch_seconds: float, trainers: Sequence[str], *, datasets: int = 3, folds: int = 5,
              configurations: int = 1, epochs: dict[str, int] | None = None,
              train_cases: int = DEFAULT_TRAIN_CASES, references: Sequence[str] = (), repeats: int = 1) -> list[dict]:
    """The GPU-hours of a grid: one row per trainer (then per reference), and a total row.

    Training only (the final validation and the tables add minutes per fold, not hours). Column
    ``wall_hours`` is the time from submission to the end of that trainer's folds when every task
    gets its own GPU at once: its own epochs plus those of the run it continues (Swish after
    ReLU); the total row gives the longest of them. An epoch of ``iterations`` training iterations
    takes ``epoch_seconds * iterations / 250``.

    Args:
        epoch_seconds: seconds per training epoch of nnU-Net's 250 iterations on one GPU.
        trainers: DRUwAS trainer names (:func:`select_trainers`).
        datasets: number of datasets (3 for BraTS 2018, 2019, 2020).
        folds: folds per dataset (nnU-Net's 5-fold cross-validation).
        configurations: nnU-Net configurations per dataset (``-c``), each trained on every fold.
        epochs: trainer name -> epochs, for trainers whose length differs from
            :func:`recipe_epochs` (the trainer's own).
        train_cases: training cases per fold, for recipes whose epoch is one pass over them
            (:func:`recipe_iterations`).
        references: keys of :data:`~nnunetv2_druwas.variants.REFERENCES` (nnU-Net's trainer: 1000
            epochs of 250 iterations, each epoch counted at ``epoch_seconds`` too).
        repeats: runs of every trainer per fold (repeats run in parallel: the wall time is one's).
    """
    def n_epochs(trainer: str) -> int:
        return (epochs or {}).get(trainer) or recipe_epochs(trainer)

    def hours(trainer: str) -> float:
        return n_epochs(trainer) * epoch_seconds * recipe_iterations(trainer, train_cases) / NNUNET_ITERATIONS / 3600

    def chain_hours(trainer: str | None) -> float:
        return 0.0 if trainer is None else hours(trainer) + chain_hours(continued_trainer(trainer))

    rows = []
    runs = datasets * configurations * folds * repeats
    entries = [(trainer, recipe, variant.key) for trainer in trainers for variant, recipe in [lookup_trainer(trainer)]]
    entries += [(REFERENCES[key].trainer, "nnunet", key) for key in references]
    for trainer, recipe, key in entries:
        rows.append(dict(recipe=recipe, variant=key, trainer=trainer, epochs=n_epochs(trainer),
                         iterations=recipe_iterations(trainer, train_cases), runs=runs,
                         gpu_hours=runs * hours(trainer), wall_hours=chain_hours(trainer)))
    rows.append(dict(recipe="", variant="total", trainer="", epochs="", iterations="", runs=sum(r["runs"] for r in rows),
                     gpu_hours=sum(r["gpu_hours"] for r in rows), wall_hours=max(r["wall_hours"] for r in rows)))
    return rows


NNUNET_DEFAULT_EPOCHS = 1000  # nnUNetTrainer.__init__ sets num_epochs = 1000 (an instance attribute)
NNUNET_ITERATIONS = 250       # nnUNetTrainer.__init__: num_iterations_per_epoch


def recipe_iterations(trainer: str, train_cases: int = DEFAULT_TRAIN_CASES) -> int:
    """Training iterations per epoch of a trainer (without ``DRUWAS_ITERS``).

    Args:
        trainer: a trainer name; nnU-Net's 250 unless it is a DRUwAS trainer whose recipe's epoch is
            one pass over the training cases (``ceil(train_cases / batch size)``, the paper's batch size 4).
        train_cases: training cases per fold.
    """
    from nnunetv2_druwas.training import trainer_classes

    cls = trainer_classes().get(split_repeat(trainer)[0])
    if cls is None or not cls.recipe_one_pass_epochs:
        return NNUNET_ITERATIONS
    return math.ceil(train_cases / cls.paper_target_batch_size)


def recipe_epochs(trainer: str) -> int:
    """The number of epochs a trainer trains for, from its class (without ``DRUWAS_EPOCHS``).

    Args:
        trainer: a trainer name; nnU-Net's trainer and a recipe that keeps nnU-Net's length get
            nnU-Net's 1000.
    """
    from nnunetv2_druwas.training import trainer_classes

    cls = trainer_classes().get(split_repeat(trainer)[0])
    if cls is None:
        return NNUNET_DEFAULT_EPOCHS
    epochs = cls.recipe_continuation_epochs if cls.variant.continues else cls.recipe_num_epochs
    return epochs or NNUNET_DEFAULT_EPOCHS


def format_gpu_hours(rows: Sequence[dict], epoch_seconds: float) -> str:
    """:func:`gpu_hours` as a fixed-width table."""
    lines = [f"Training time at {epoch_seconds:g} s per epoch of {NNUNET_ITERATIONS} iterations on one GPU "
             f"(one GPU per run; runs = datasets x configurations x folds x repeats)",
             f"{'recipe':<7} {'variant':<9} {'trainer':<44} {'epochs':>6} {'iters':>5} {'runs':>5} {'GPU-hours':>10} "
             f"{'wall hours':>10}"]
    for r in rows:
        lines.append(f"{r['recipe']:<7} {r['variant']:<9} {r['trainer']:<44} {r['epochs']:>6} {r['iterations']:>5} "
                     f"{r['runs']:>5} {r['gpu_hours']:>10.1f} {r['wall_hours']:>10.1f}")
    return "\n".join(lines)


# --- the `nnunetv2_druwas grid` subcommand ----------------------------------------------------------

def add_arguments(parser: argparse.ArgumentParser) -> None:
    what = parser.add_argument_group("what to run")
    what.add_argument("-d", "--datasets", nargs="+", default=None, metavar="ID",
                      help="dataset ids or names (e.g. 500 501 502)")
    what.add_argument("-c", "--configurations", nargs="+", default=["3d_fullres"], metavar="CONFIG")
    what.add_argument("-f", "--folds", nargs="+", type=int, default=[0, 1, 2, 3, 4], metavar="FOLD")
    what.add_argument("--trainers", nargs="+", default=["all"], metavar="NAME",
                      help="DRUwAS trainer names, variant keys (baseline sa ag saag res full swish, nnunet: "
                           "nnU-Net's network under the recipe) or 'all' (the seven rows of Table 4)")
    what.add_argument("--recipe", choices=RECIPE_CHOICES, default="paper",
                      help="training recipe(s) for variant keys and 'all': paper (default), nnunet, strict, "
                           "both (paper and nnunet) or all")
    what.add_argument("-p", "--plans", default="nnUNetPlans", help="nnU-Net plans identifier of the DRUwAS trainers")
    what.add_argument("--reference", nargs="+", default=[], choices=list(REFERENCES), metavar="KEY",
                      help="add nnU-Net's own trainings on the same datasets, configurations and folds: "
                           + ", ".join(f"{r.key} ({r.trainer} -p {r.plans})" for r in REFERENCES.values()))
    what.add_argument("--repeats", type=int, default=1, metavar="R",
                      help="train repeats 0..R-1 of every trainer, references included (<trainer>_repeat<k>, "
                           "seed DRUWAS_SEED + k; default 1: the plain names only)")
    how = parser.add_argument_group("output and resources")
    how.add_argument("--out", type=Path, default=None, help="folder for the scripts, logs and tables")
    how.add_argument("--format", choices=("slurm", "shell"), default="slurm",
                     help="SLURM job arrays (default) or run_all.sh for one machine")
    how.add_argument("--device", choices=("cuda", "cpu"), default="cuda", help="nnUNetv2_train -device")
    how.add_argument("--partition")
    how.add_argument("--time", help="SLURM time limit per task, e.g. 2-00:00:00")
    how.add_argument("--mem", help="SLURM memory per node, e.g. 32G")
    how.add_argument("--account")
    how.add_argument("--cpus-per-task", type=int, help="CPUs per task (nnU-Net's augmentation workers)")
    how.add_argument("--gpus-per-task", type=int, default=1, help="GPUs per training task with --device cuda")
    how.add_argument("--sbatch-extra", nargs="+", action="extend", default=[], metavar="LINE",
                     help="extra lines for every job, e.g. '#SBATCH --qos=long'")
    how.add_argument("--tables-args", default="", help="extra arguments of python -m analysis.tables, one string")
    how.add_argument("--overwrite", action="store_true", help="replace the scripts of an already submitted grid")
    act = parser.add_argument_group("actions (default: write the scripts)")
    act.add_argument("--submit", action="store_true", help="write, then submit with sbatch in dependency order")
    act.add_argument("--status", action="store_true",
                     help="report each run as done / running / queued / incomplete / missing")
    act.add_argument("--estimate", action="store_true", help="print the grid's GPU-hours and exit")
    act.add_argument("--epoch-seconds", type=float, default=None,
                     help="seconds per epoch of 250 iterations on one GPU, for --estimate")
    act.add_argument("--train-cases", type=int, default=DEFAULT_TRAIN_CASES,
                     help=f"training cases per fold, for --estimate of the strict recipe (one pass per epoch; "
                          f"default {DEFAULT_TRAIN_CASES}: BraTS 2020 under 5-fold cross-validation)")


def _selection_from_args(args: argparse.Namespace) -> Selection:
    if args.datasets is None:
        if args.out is not None and (args.out / "grid.json").is_file():
            return Selection(**{k: tuple(v) if isinstance(v, list) else v for k, v in
                                json.loads((args.out / "grid.json").read_text())["selection"].items()})
        raise DruwasError("give the datasets with -d (e.g. -d 500 501 502)"
                          + (f", or an --out folder with a grid.json" if args.status else ""))
    return Selection(datasets=tuple(dataset_name(d) for d in args.datasets),
                     configurations=tuple(args.configurations), folds=tuple(sorted(set(args.folds))),
                     trainers=select_trainers(args.trainers, args.recipe), plans=args.plans,
                     references=tuple(dict.fromkeys(args.reference)), repeats=args.repeats)


def run(args: argparse.Namespace) -> int:
    if args.repeats < 1:
        raise DruwasError(f"--repeats {args.repeats}: give the number of runs per trainer and fold (>= 1)")
    if args.estimate:
        if args.epoch_seconds is None:
            raise DruwasError("--estimate needs --epoch-seconds (seconds per training epoch on one GPU)")
        if args.train_cases < 1:
            raise DruwasError(f"--train-cases {args.train_cases}: give the number of training cases per fold (>= 1)")
        rows = gpu_hours(args.epoch_seconds, select_trainers(args.trainers, args.recipe),
                         datasets=len(args.datasets) if args.datasets else 3, folds=len(set(args.folds)),
                         configurations=len(set(args.configurations)), train_cases=args.train_cases,
                         references=tuple(dict.fromkeys(args.reference)), repeats=args.repeats)
        print(format_gpu_hours(rows, args.epoch_seconds))
        return 0
    selection = _selection_from_args(args)
    if args.status:
        print(format_status(grid_status(selection, args.out)))
        return 0
    if args.out is None:
        raise DruwasError("give --out, the folder for the job scripts")
    if args.submit and args.format != "slurm":
        raise DruwasError("--submit needs --format slurm (run_all.sh of --format shell runs without SLURM)")
    settings = JobSettings(device=args.device, partition=args.partition, time=args.time, mem=args.mem,
                           account=args.account, cpus_per_task=args.cpus_per_task, gpus_per_task=args.gpus_per_task,
                           sbatch_extra=tuple(args.sbatch_extra), tables_args=tuple(shlex.split(args.tables_args)))
    jobs = write_grid(selection, args.out, settings, fmt=args.format, overwrite=args.overwrite)
    n_tasks = sum(len(j.folds) for j in jobs)
    print(f"wrote {len(jobs)} jobs ({n_tasks} training tasks) to {args.out.resolve() / 'jobs'}")
    if args.format == "shell":
        print(f"run them with: bash {args.out.resolve() / 'run_all.sh'}")
    if args.submit:
        for name, job_id in submit(jobs, args.out).items():
            print(f"{job_id}\t{name}")
    return 0
