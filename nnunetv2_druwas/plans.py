"""Plans of nnU-Net's own reference trainings (``grid --reference``), made when a grid needs them.

A reference such as ResEnc M trains under its own plans file (``nnUNetResEncUNetMPlans.json``),
which ``nnUNetv2_plan_experiment -d ID -pl nnUNetPlannerResEncM`` writes from the dataset's
fingerprint. Its ``2d`` and ``3d_fullres`` configurations reuse the default preprocessed data
(data identifier ``nnUNetPlans_<configuration>``: nnU-Net's ResEnc planners keep the default
spacing); other configurations (``3d_lowres``) have their own data identifier and need
``nnUNetv2_preprocess``. The grid writes one job per dataset and plans that are not ready
(:func:`missing`), and the arrays of those plans wait for it::

    python -m nnunetv2_druwas.plans Dataset500_BraTS2020 resenc-m -c 3d_fullres

plans only what is missing and preprocesses only configurations whose data folder does not exist
(``nnUNetv2_preprocess`` would otherwise delete and rewrite data other trainings read).
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path
from typing import Sequence

from nnunetv2_druwas import env
from nnunetv2_druwas.errors import DruwasError
from nnunetv2_druwas.variants import REFERENCES, Reference


def plans_file(dataset: str, plans: str, preprocessed: Path | None = None) -> Path:
    """``$nnUNet_preprocessed/<dataset>/<plans>.json``.

    Args:
        dataset: the dataset folder name (``Dataset500_BraTS2020``).
        plans: the plans identifier.
        preprocessed: nnU-Net's preprocessed folder; None reads ``nnUNet_preprocessed``.
    """
    return Path(preprocessed or env.require("nnUNet_preprocessed")) / dataset / f"{plans}.json"


def missing(dataset: str, plans: str, configurations: Sequence[str], preprocessed: Path | None = None) -> list[str]:
    """What a training under ``plans`` still needs: ``["plans"]`` when the plans file is missing, else
    the configurations whose preprocessed data folder does not exist; ``[]`` when ready.

    Args:
        dataset: the dataset folder name.
        plans: the plans identifier.
        configurations: the configurations to train.
        preprocessed: nnU-Net's preprocessed folder; None reads ``nnUNet_preprocessed``.

    Raises:
        DruwasError: the plans file is unreadable or lacks a configuration.
    """
    path = plans_file(dataset, plans, preprocessed)
    if not path.is_file():
        return ["plans"]
    try:
        known = json.loads(path.read_text())["configurations"]
    except (OSError, ValueError, KeyError) as e:
        raise DruwasError(f"{path}: not a readable nnU-Net plans file ({e}); delete it to plan again") from None
    absent = [c for c in configurations if c not in known]
    if absent:
        raise DruwasError(f"{path} has no configuration {', '.join(absent)} (it has {', '.join(known)})")
    return [c for c in configurations if not (path.parent / _data_identifier(known, c)).is_dir()]


def _data_identifier(configurations: dict, name: str) -> str:
    """The data folder of a configuration, following ``inherits_from`` as nnU-Net does."""
    configuration = configurations[name]
    while "data_identifier" not in configuration and "inherits_from" in configuration:
        configuration = configurations[configuration["inherits_from"]]
    return configuration["data_identifier"]


def prepare(dataset: str, reference: Reference, configurations: Sequence[str]) -> None:
    """Plan (``nnUNetv2_plan_experiment``) and preprocess (``nnUNetv2_preprocess``) what :func:`missing` lists.

    Args:
        dataset: the dataset folder name.
        reference: the reference whose plans are needed (its planner and plans identifier).
        configurations: the configurations to train.

    Raises:
        DruwasError: a command failed (its exit status), or the plans still lack something.
    """
    dataset_id = dataset[len("Dataset"):len("Dataset") + 3]
    todo = missing(dataset, reference.plans, configurations)
    if todo == ["plans"]:
        _run(["nnUNetv2_plan_experiment", "-d", dataset_id, "-pl", reference.planner])
        todo = missing(dataset, reference.plans, configurations)
    if todo:
        _run(["nnUNetv2_preprocess", "-d", dataset_id, "-plans_name", reference.plans, "-c", *todo])
    if missing(dataset, reference.plans, configurations):
        raise DruwasError(f"{plans_file(dataset, reference.plans)} is still not ready for {', '.join(configurations)}")
    print(f"{reference.plans} of {dataset} ready for {', '.join(configurations)}", flush=True)


def _run(command: list[str]) -> None:
    from nnunetv2_druwas.grid import executable

    print(f"running: {' '.join(command)}", flush=True)
    if subprocess.run([executable(command[0]), *command[1:]]).returncode != 0:
        raise DruwasError(f"`{' '.join(command)}` failed; its output is above")


def build_parser() -> argparse.ArgumentParser:
    """The parser of ``python -m nnunetv2_druwas.plans``."""
    parser = argparse.ArgumentParser(prog="python -m nnunetv2_druwas.plans",
                                     description="Plan and preprocess what a reference training needs.")
    parser.add_argument("dataset", help="dataset folder name, e.g. Dataset500_BraTS2020")
    parser.add_argument("reference", choices=list(REFERENCES), help="the reference (grid --reference)")
    parser.add_argument("-c", "--configurations", nargs="+", required=True, metavar="CONFIG")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        prepare(args.dataset, REFERENCES[args.reference], args.configurations)
    except DruwasError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
