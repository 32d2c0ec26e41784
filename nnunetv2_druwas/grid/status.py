"""The state of every run of a grid, from its fold folder and the SLURM queue, and what to do next.

:func:`grid_status` reads each run's fold (:func:`nnunetv2_druwas.folds.fold_state`), the job ids of
``OUT/submitted.json`` and ``squeue`` (:func:`queue_states`); :func:`format_status` prints the rows
as a table with a recommendation (submit again when runs are neither done nor queued) and a count
per state.
"""
from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import Mapping, Sequence

from nnunetv2_druwas import env
from nnunetv2_druwas.folds import FoldState, describe, fold_state
from nnunetv2_druwas.grid.selection import Selection


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
