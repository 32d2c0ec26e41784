"""The state of one trained fold (``$nnUNet_results/<Dataset>/<Trainer>__<Plans>__<Config>/fold_N``),
decided here and nowhere else: the grid (its planning, its status and its job scripts), the demo and
the analysis all ask :func:`fold_state`.

=====================  ==========================================================  ======================
state                  files in the fold folder                                    ``nnUNetv2_train``
=====================  ==========================================================  ======================
``none``               no checkpoint                                               from scratch
``training``           ``checkpoint_latest.pth`` or ``checkpoint_best.pth``,       ``--c`` (continues)
                       no ``checkpoint_final.pth``
``trained``            ``checkpoint_final.pth``, no BraTS metrics                  ``--c`` (redoes only
                       (killed during the final validation or evaluation)          the final validation)
``evaluation-failed``  ``checkpoint_final.pth`` and ``brats_metrics_error.txt``     ``--c`` (after a fix)
``done``               ``brats_metrics.csv`` (``checkpoint_latest.pth`` without    nothing
                       ``checkpoint_final.pth`` means a new training is running)
=====================  ==========================================================  ======================

nnU-Net deletes ``checkpoint_latest.pth`` once ``checkpoint_final.pth`` is written, and writes it only
every 50 epochs; ``--c`` continues from ``checkpoint_final.pth``, else ``checkpoint_latest.pth``, else
``checkpoint_best.pth`` (written after every epoch that improved the validation pseudo Dice).

The job scripts of the grid call this module::

    python -m nnunetv2_druwas.folds FOLD_DIR                          # prints the state
    python -m nnunetv2_druwas.folds FOLD_DIR -- nnUNetv2_train ARGS   # runs what the state asks for

The second form prints ``fold ... is already done`` for a done fold, else ``running: <command>`` and
runs the command, with ``--c`` added when the state asks for it (its exit status is the command's).
"""
from __future__ import annotations

import argparse
import os
import shlex
import sys
from enum import Enum
from pathlib import Path

METRICS_FILE = "brats_metrics.csv"
#: written by a DRUwAS trainer whose BraTS evaluation failed (the error message), removed on success.
EVALUATION_ERROR_FILE = "brats_metrics_error.txt"
FINAL, LATEST, BEST = "checkpoint_final.pth", "checkpoint_latest.pth", "checkpoint_best.pth"
#: written by every DRUwAS training when it starts: seed, repeat, settings, batch size, schedule.
RUN_RECORD = "druwas_run.json"


class FoldState(str, Enum):
    """What a fold folder holds (see the module docstring); compares equal to its value."""
    NONE = "none"
    TRAINING = "training"
    TRAINED = "trained"
    EVALUATION_FAILED = "evaluation-failed"
    DONE = "done"

    def __str__(self) -> str:
        return self.value


def fold_state(fold_dir: str | Path) -> FoldState:
    """The state of a fold folder (see the module docstring).

    Args:
        fold_dir: nnU-Net's ``fold_N`` folder of a run; it need not exist.
    """
    fold_dir = Path(fold_dir)
    has = {name: (fold_dir / name).is_file() for name in (FINAL, LATEST, BEST, METRICS_FILE, EVALUATION_ERROR_FILE)}
    if not has[FINAL] and has[LATEST]:
        return FoldState.TRAINING
    if has[METRICS_FILE]:
        return FoldState.DONE
    if has[FINAL]:
        return FoldState.EVALUATION_FAILED if has[EVALUATION_ERROR_FILE] else FoldState.TRAINED
    return FoldState.TRAINING if has[BEST] else FoldState.NONE


def resume_arguments(state: FoldState) -> list[str] | None:
    """The arguments ``nnUNetv2_train`` needs beyond the run's own for a fold in ``state``:
    None for a done fold (nothing to run), ``[]`` to train from scratch, ``["--c"]`` to continue.

    Args:
        state: :func:`fold_state` of the fold.
    """
    if state == FoldState.DONE:
        return None
    return [] if state == FoldState.NONE else ["--c"]


def evaluation_error(fold_dir: str | Path) -> str | None:
    """The message a DRUwAS trainer recorded when the fold's BraTS evaluation failed, else None.

    Args:
        fold_dir: the fold folder.
    """
    path = Path(fold_dir) / EVALUATION_ERROR_FILE
    try:
        return path.read_text(errors="replace").strip() or "(no message)"
    except FileNotFoundError:
        return None


def describe(fold_dir: str | Path) -> str:
    """One line for status reports and footnotes: the state and what it means.

    Args:
        fold_dir: the fold folder.
    """
    state = fold_state(fold_dir)
    return {
        FoldState.NONE: "not trained (no checkpoint)",
        FoldState.TRAINING: "training not finished (no checkpoint_final.pth)",
        FoldState.TRAINED: f"checkpoint_final.pth but no {METRICS_FILE}",
        FoldState.EVALUATION_FAILED: f"BraTS evaluation failed: {evaluation_error(fold_dir)}",
        FoldState.DONE: "done",
    }[state]


def build_parser() -> argparse.ArgumentParser:
    """The parser of ``python -m nnunetv2_druwas.folds``."""
    parser = argparse.ArgumentParser(
        prog="python -m nnunetv2_druwas.folds",
        description="Print the state of an nnU-Net fold folder, or run nnUNetv2_train as the state requires "
                    "(nothing when done, --c when there is a checkpoint).")
    parser.add_argument("fold_dir", type=Path, help="nnU-Net's fold_N folder of a run")
    parser.add_argument("command", nargs=argparse.REMAINDER,
                        help="after --: the nnUNetv2_train command to run for this fold")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    state = fold_state(args.fold_dir)
    if not command:
        print(state)
        return 0
    extra = resume_arguments(state)
    if extra is None:
        print(f"fold {args.fold_dir.name.removeprefix('fold_')} is already done: {args.fold_dir}", flush=True)
        return 0
    command = [*command, *extra]
    print(f"fold state: {state}", flush=True)
    print(f"running: {' '.join(shlex.quote(c) for c in command)}", flush=True)
    os.execvp(command[0], command)
    return 1   # not reached


if __name__ == "__main__":
    from nnunetv2_druwas.errors import report_errors

    sys.exit(report_errors(main))
