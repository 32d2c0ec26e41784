"""Which jobs a grid needs, in dependency order: one array per trainer, plans jobs, the tables job.

:func:`plan_jobs` turns a :class:`~nnunetv2_druwas.grid.selection.Selection` into :class:`Job` s:
one job array per dataset x configuration x training (array index = fold) holding only the folds
that are not done, the Swish continuation waiting ``aftercorr`` on the ReLU array it continues, a
plans job per dataset for a reference whose plans are not ready (``afterok``), and last the
``python -m analysis.tables`` job (:data:`TABLES_JOB`) waiting ``afterok`` on all of them. Each
job's body is bash; :mod:`nnunetv2_druwas.grid.scripts` wraps it into a script.
"""
from __future__ import annotations

import shlex
import shutil
import sys
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Iterable, Sequence

from nnunetv2_druwas import env, plans
from nnunetv2_druwas.errors import DruwasError
from nnunetv2_druwas.folds import FoldState, fold_state
from nnunetv2_druwas.grid.selection import Run, Selection, array_name, run_folder
from nnunetv2_druwas.variants import REFERENCES, continued_trainer, lookup_trainer, split_repeat

TABLES_JOB = "tables"  # the name of the last job, python -m analysis.tables


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
