"""The ``nnunetv2_druwas env`` subcommand: the environment nnU-Net needs to find the DRUwAS trainers.

nnU-Net finds trainer classes outside its own package through the environment variable
``nnUNet_extTrainer`` (a list of folders, separated like ``PATH``). The DRUwAS trainers live in
the repository's ``trainers/`` folder, beside the ``nnunetv2_druwas`` package, so the one step for
a user is::

    eval "$(nnunetv2_druwas env)"

which exports ``nnUNet_extTrainer`` (keeping any other folders already listed in it) and reports
nnU-Net's three data folders as found or missing. Training (``nnUNetv2_train``) and prediction
(``nnUNetv2_predict``) both need the variable.
"""
from __future__ import annotations

import os
import shlex
from pathlib import Path

from nnunetv2_druwas.errors import DruwasError

EXT_TRAINER_VARIABLE = "nnUNet_extTrainer"
DATA_VARIABLES = ("nnUNet_raw", "nnUNet_preprocessed", "nnUNet_results")


def trainers_dir() -> Path:
    """The absolute path of the ``trainers/`` folder that ``nnUNet_extTrainer`` must name.

    It sits beside the ``nnunetv2_druwas`` package in the source tree, so it exists for an
    editable install (``pip install -e .``) or a checkout on ``PYTHONPATH``.

    Raises:
        DruwasError: when the folder is not there (e.g. after a non-editable install).
    """
    folder = Path(__file__).resolve().parent.parent / "trainers"
    if not (folder / "druwas.py").is_file():
        raise DruwasError(
            f"the DRUwAS trainer folder {folder} (with druwas.py) does not exist; install the project "
            f"editable from its source tree (pip install -e <checkout>) so that trainers/ sits beside "
            f"the nnunetv2_druwas package")
    return folder


def ext_trainer_value(current: str | None = None) -> str:
    """The value ``nnUNet_extTrainer`` should have: the DRUwAS trainer folder first.

    Args:
        current: the variable's present value (folders separated by ``os.pathsep``); folders in it
            other than the DRUwAS one are kept after it, in their order. None or "" for none.
    """
    ours = str(trainers_dir())
    others = [p for p in (current or "").split(os.pathsep)
              if p.strip() and os.path.abspath(p) != ours]
    return os.pathsep.join([ours, *others])


def environment_lines(environ: dict[str, str] | None = None) -> list[str]:
    """Shell lines: an ``export`` of ``nnUNet_extTrainer``, then one line per nnU-Net data folder.

    Data folders that are set and exist are re-exported unchanged; the others become comments
    saying what is missing, so the output is safe to ``eval``.

    Args:
        environ: the environment to report on; None reads this process's environment.
    """
    environ = dict(os.environ) if environ is None else environ
    lines = [f"export {EXT_TRAINER_VARIABLE}={shlex.quote(ext_trainer_value(environ.get(EXT_TRAINER_VARIABLE)))}"]
    for name in DATA_VARIABLES:
        value = environ.get(name)
        if not value:
            lines.append(f"# {name} is not set: export {name}=/path/to/{name} (nnU-Net needs it)")
        elif not Path(value).is_dir():
            lines.append(f"# {name}={shlex.quote(value)} is set but is not a folder: create it or fix the path")
        else:
            lines.append(f"export {name}={shlex.quote(value)}")
    return lines


# --- the `nnunetv2_druwas env` subcommand ------------------------------------------------

def add_arguments(parser) -> None:
    parser.add_argument("--trainers-dir", action="store_true",
                        help="print only the absolute path of the trainers/ folder")


def run(args) -> int:
    if args.trainers_dir:
        print(trainers_dir())
    else:
        print("\n".join(environment_lines()))
    return 0
