"""The ``nnunetv2_druwas grid`` subcommand: its options and what each action calls.

Writes the scripts (:func:`~nnunetv2_druwas.grid.scripts.write_grid`), and with ``--submit``
submits them (:func:`~nnunetv2_druwas.grid.submit.submit`); ``--status`` reports
(:mod:`nnunetv2_druwas.grid.status`), ``--estimate`` prints the cost
(:mod:`nnunetv2_druwas.grid.estimate`).
"""
from __future__ import annotations

import argparse
import json
import shlex
from pathlib import Path

from nnunetv2_druwas.errors import DruwasError
from nnunetv2_druwas.grid.estimate import DEFAULT_TRAIN_CASES, format_gpu_hours, gpu_hours
from nnunetv2_druwas.grid.jobs import JobSettings
from nnunetv2_druwas.grid.scripts import write_grid
from nnunetv2_druwas.grid.selection import RECIPE_CHOICES, Selection, dataset_name, select_trainers
from nnunetv2_druwas.grid.status import format_status, grid_status
from nnunetv2_druwas.grid.submit import submit
from nnunetv2_druwas.variants import REFERENCES


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
                          + (", or an --out folder with a grid.json" if args.status else ""))
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
