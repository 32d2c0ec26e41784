"""Writing a grid's job scripts: SLURM batch scripts or, for one machine, the same plus ``run_all.sh``.

:func:`write_grid` writes ``OUT/jobs/<job>.sh`` for every job of
:func:`~nnunetv2_druwas.grid.jobs.plan_jobs` (with an ``#SBATCH`` header for ``--format slurm``,
:func:`sbatch_header`), ``OUT/run_all.sh`` for ``--format shell`` (:func:`render_run_all`) and
``OUT/grid.json`` (the selection, so later commands need nothing else), all replaced together
(:func:`nnunetv2_druwas.files.replaced_together`). Every script starts with the ``export`` lines of
:func:`environment_exports` and writes a start and an end line marked :data:`LOG_MARK` to its log.
"""
from __future__ import annotations

import json
import shlex
import sys
from dataclasses import asdict
from pathlib import Path
from typing import Mapping, Sequence

from nnunetv2_druwas import env
from nnunetv2_druwas.errors import DruwasError
from nnunetv2_druwas.files import replaced_together
from nnunetv2_druwas.grid.jobs import Job, JobSettings, plan_jobs
from nnunetv2_druwas.grid.selection import Selection

LOG_MARK = "[druwas-grid]"  # prefix of the start / end lines every job writes to its log


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
