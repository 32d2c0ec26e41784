"""The environment variables of the harness, read in this one module, and the ``nnunetv2_druwas env`` subcommand.

Every variable the project reads is one row of :data:`VARIABLES`: its name, its kind (how its value
is checked and converted) and what it does. Code reads them only through :func:`read` (typed,
``None`` when unset), :func:`require` (an error when unset) or :func:`value` (the text), so a new
variable is one more row. The grid's job scripts carry every row marked ``job`` that is set
(:func:`job_exports`), and child processes get their environment from :func:`child_environment`.

Example::

    from nnunetv2_druwas import env

    results = env.require("nnUNet_results")     # a Path to an existing folder, or a DruwasError
    epochs = env.read("DRUWAS_EPOCHS")          # an int >= 1, or None when unset

nnU-Net finds trainer classes outside its own package through ``nnUNet_extTrainer`` (a list of
folders, separated like ``PATH``). The DRUwAS trainers live in the repository's ``trainers/``
folder, beside the ``nnunetv2_druwas`` package; an install (``pip install .``, a wheel) copies them
into the package as ``nnunetv2_druwas/_trainers/`` (:func:`trainers_dir` finds either), so the one
step for a user is::

    eval "$(nnunetv2_druwas env)"

which exports ``nnUNet_extTrainer`` (keeping any other folders already listed in it) and reports
nnU-Net's three data folders as found or missing. Training (``nnUNetv2_train``) and prediction
(``nnUNetv2_predict``) both need the variable.
"""
from __future__ import annotations

import math
import os
import shlex
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping

from nnunetv2_druwas.errors import DruwasError

#: How a value is checked and what :func:`read` returns for it.
KINDS = {
    "folder": "an existing folder (a Path)",
    "file": "an existing file (a Path)",
    "positive_int": "a whole number >= 1",
    "count": "a whole number >= 0",
    "positive_float": "a number > 0",
    "flag": "true or false (1/0, yes/no, on/off, t/f)",
    "text": "any text",
}
_TRUE, _FALSE = ("1", "true", "t", "yes", "y", "on"), ("0", "false", "f", "no", "n", "off")


@dataclass(frozen=True)
class Variable:
    """One environment variable of the harness.

    Args:
        name: the variable's name.
        kind: a key of :data:`KINDS`: how :func:`read` checks and converts the value.
        meaning: what it does, in a few words (used in error messages and the README).
        job: whether the grid's job scripts carry it (as an ``export`` line) when it is set here.
    """
    name: str
    kind: str
    meaning: str
    job: bool = True


VARIABLES: dict[str, Variable] = {v.name: v for v in (
    Variable("nnUNet_raw", "folder", "nnU-Net's raw datasets"),
    Variable("nnUNet_preprocessed", "folder", "nnU-Net's preprocessed datasets"),
    Variable("nnUNet_results", "folder", "nnU-Net's trained models"),
    Variable("nnUNet_extTrainer", "text", "folders nnU-Net searches for trainer classes (see `nnunetv2_druwas env`)"),
    Variable("nnUNet_def_n_proc", "positive_int", "nnU-Net's default number of processes"),
    Variable("nnUNet_n_proc_DA", "count", "nnU-Net's data augmentation workers"),
    Variable("nnUNet_compile", "flag", "whether nnU-Net compiles the network with torch.compile"),
    Variable("nnUNet_keep_files_open", "flag", "whether nnU-Net keeps preprocessed files open"),
    Variable("OMP_NUM_THREADS", "positive_int", "CPU threads per process"),
    Variable("DRUWAS_EPOCHS", "positive_int", "epochs of every DRUwAS trainer"),
    Variable("DRUWAS_ITERS", "positive_int", "training iterations per epoch of every DRUwAS trainer"),
    Variable("DRUWAS_LR", "positive_float", "initial learning rate of every DRUwAS trainer"),
    Variable("DRUWAS_CHECKPOINTING", "flag", "activation checkpointing of the DRUwAS network while training"),
    Variable("DRUWAS_PROTOCOLS", "text", "evaluation protocols each DRUwAS fold writes besides brats after "
             "training, comma separated (e.g. eq2,authors)"),
    Variable("DRUWAS_SEED", "count", "seed of repeat 0 of every seeded training (repeat k: DRUWAS_SEED + k; default 0)"),
    # one checkpoint for one run: the grid's Swish folds continue their own ReLU folds instead
    Variable("DRUWAS_INIT_CHECKPOINT", "file", "the checkpoint a Swish continuation starts from", job=False),
)}
DATA_VARIABLES = ("nnUNet_raw", "nnUNet_preprocessed", "nnUNet_results")
EXT_TRAINER_VARIABLE = "nnUNet_extTrainer"


def _variable(name: str) -> Variable:
    try:
        return VARIABLES[name]
    except KeyError:
        raise KeyError(f"{name} is not in nnunetv2_druwas.env.VARIABLES; add a row for it") from None


def value(name: str, environ: Mapping[str, str] | None = None) -> str | None:
    """The text of a variable of :data:`VARIABLES`, stripped; None when it is unset or empty.

    Args:
        name: the variable (a key of :data:`VARIABLES`).
        environ: the environment to read; None reads this process's.
    """
    _variable(name)
    text = (os.environ if environ is None else environ).get(name, "").strip()
    return text or None


def read(name: str, environ: Mapping[str, str] | None = None) -> Path | int | float | bool | str | None:
    """A variable's value, checked and converted by its kind (:data:`KINDS`); None when unset or empty.

    Args:
        name: the variable (a key of :data:`VARIABLES`).
        environ: the environment to read; None reads this process's.

    Raises:
        DruwasError: when the value is not of its kind (the message names the variable and value).
    """
    variable = _variable(name)
    text = value(name, environ)
    if text is None:
        return None
    kind = variable.kind
    if kind in ("folder", "file"):
        path = Path(text).expanduser()
        if not (path.is_dir() if kind == "folder" else path.is_file()):
            raise DruwasError(f"{name}={text} is not an existing {kind} ({variable.meaning}); "
                              f"create it or fix the variable")
        return path
    if kind == "flag":
        if text.lower() in _TRUE + _FALSE:
            return text.lower() in _TRUE
    elif kind in ("positive_int", "count", "positive_float"):
        try:
            number = float(text) if kind == "positive_float" else int(text)
        except ValueError:
            number = -1
        if math.isfinite(number) and (number > 0 or (kind == "count" and number == 0)):
            return number
    else:
        return text
    example = {"flag": "1", "positive_float": "0.5"}.get(kind, "5")
    raise DruwasError(f"{name}={text!r} is not {KINDS[kind]} ({variable.meaning}); unset it or set e.g. "
                      f"{name}={example}")


def require(name: str, environ: Mapping[str, str] | None = None) -> Path | int | float | bool | str:
    """:func:`read`, with an error that says what to export when the variable is unset.

    Args:
        name: the variable (a key of :data:`VARIABLES`).
        environ: the environment to read; None reads this process's.

    Raises:
        DruwasError: when the variable is unset or its value is not of its kind.
    """
    result = read(name, environ)
    if result is None:
        variable = VARIABLES[name]
        placeholder = "/path/to/folder" if variable.kind == "folder" else "VALUE"
        raise DruwasError(f"{name} is not set: export {name}={placeholder} ({variable.meaning})")
    return result


def child_environment(changes: Mapping[str, str | None] | None = None) -> dict[str, str]:
    """A copy of this process's environment for a child process, with ``changes`` applied.

    Args:
        changes: variable -> new value; None removes the variable.
    """
    environ = dict(os.environ)
    for name, new in (changes or {}).items():
        if new is None:
            environ.pop(name, None)
        else:
            environ[name] = str(new)
    return environ


def work_environment(workdir: Path, changes: Mapping[str, str | None] | None = None) -> dict[str, str]:
    """The environment of the nnU-Net commands the harness runs in a work folder of its own (the demo,
    the benchmarks): nnU-Net's three data folders inside ``workdir`` (never the user's), the DRUwAS
    trainers found (``nnUNet_extTrainer``), ``nnUNet_def_n_proc`` and ``nnUNet_n_proc_DA`` 2 unless
    set, no ``torch.compile``; then ``changes``. The folders are not created.

    Args:
        workdir: the folder that holds ``nnUNet_raw``, ``nnUNet_preprocessed`` and ``nnUNet_results``.
        changes: further variables (None removes one), applied last.
    """
    processes, augmentation = read("nnUNet_def_n_proc"), read("nnUNet_n_proc_DA")
    return child_environment({
        **{name: str(Path(workdir) / name) for name in DATA_VARIABLES},
        EXT_TRAINER_VARIABLE: str(trainers_dir()),
        "nnUNet_def_n_proc": str(processes or 2),
        "nnUNet_n_proc_DA": str(2 if augmentation is None else augmentation),
        "nnUNet_compile": "false",
        **(changes or {}),
    })


def job_exports(environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """The variables a grid job script exports: every row marked ``job`` that is set (each checked by
    its kind), the data folders required and made absolute, ``nnUNet_extTrainer`` naming the DRUwAS
    trainers first.

    Args:
        environ: the environment to carry; None reads this process's.

    Raises:
        DruwasError: when a data folder is unset or missing, or a set value is not of its kind.
    """
    exports = {}
    for name, variable in VARIABLES.items():
        if name == EXT_TRAINER_VARIABLE:
            exports[name] = ext_trainer_value(value(name, environ))
        elif name in DATA_VARIABLES:
            exports[name] = str(Path(require(name, environ)).resolve())
        elif variable.job and read(name, environ) is not None:
            exports[name] = value(name, environ)
    return exports


def trainers_dir() -> Path:
    """The absolute path of the folder of DRUwAS trainer modules that ``nnUNet_extTrainer`` must name.

    An install (``pip install .``, a wheel) ships them inside the package as
    ``nnunetv2_druwas/_trainers/`` (``setup.py`` maps the repository's ``trainers/`` there); in the
    source tree (an editable install, a checkout on ``PYTHONPATH``) they are ``trainers/`` beside
    the package.

    Raises:
        DruwasError: when neither folder holds ``druwas.py`` (a broken install).
    """
    package = Path(__file__).resolve().parent
    candidates = (package / "_trainers", package.parent / "trainers")
    for folder in candidates:
        if (folder / "druwas.py").is_file():
            return folder
    raise DruwasError(
        f"the DRUwAS trainer module druwas.py is in neither {' nor '.join(map(str, candidates))}; "
        f"reinstall the project (pip install <checkout>, or pip install -e <checkout>)")


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


def environment_lines(environ: Mapping[str, str] | None = None) -> list[str]:
    """Shell lines: an ``export`` of ``nnUNet_extTrainer``, then one line per nnU-Net data folder.

    Data folders that are set and exist are re-exported unchanged; the others become comments
    saying what is missing, so the output is safe to ``eval``.

    Args:
        environ: the environment to report on; None reads this process's.
    """
    lines = [f"export {EXT_TRAINER_VARIABLE}={shlex.quote(ext_trainer_value(value(EXT_TRAINER_VARIABLE, environ)))}"]
    for name in DATA_VARIABLES:
        text = value(name, environ)
        if text is None:
            lines.append(f"# {name} is not set: export {name}=/path/to/{name} (nnU-Net needs it)")
        elif not Path(text).is_dir():
            lines.append(f"# {name}={shlex.quote(text)} is set but is not a folder: create it or fix the path")
        else:
            lines.append(f"export {name}={shlex.quote(text)}")
    return lines


# --- the `nnunetv2_druwas env` subcommand ------------------------------------------------

def add_arguments(parser) -> None:
    parser.add_argument("--trainers-dir", action="store_true",
                        help="print only the absolute path of the trainer folder (trainers/ of a source tree, "
                             "nnunetv2_druwas/_trainers of an installed package)")


def run(args) -> int:
    if args.trainers_dir:
        print(trainers_dir())
    else:
        print("\n".join(environment_lines()))
    return 0
