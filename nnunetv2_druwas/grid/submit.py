"""Submitting a written grid to SLURM: ``sbatch`` in dependency order, the job ids in ``submitted.json``.

Each job is submitted with the real ids of the jobs it waits for (``--dependency=aftercorr:...,
afterok:...``); ``OUT/submitted.json`` records the ids, also of a submission that stopped half way,
for :func:`nnunetv2_druwas.grid.status.grid_status`.
"""
from __future__ import annotations

import json
import shutil
import subprocess
import time
from pathlib import Path
from typing import Sequence

from nnunetv2_druwas.errors import DruwasError
from nnunetv2_druwas.files import write_text
from nnunetv2_druwas.grid.jobs import Job


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
