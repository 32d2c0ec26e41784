"""Scoring trained folds where they lie: ``nnunetv2_druwas evaluate-results`` and :func:`score_fold`.

Every fold of an nnU-Net results tree (``$nnUNet_results/<Dataset>/<Trainer>__<Plans>__<Config>/fold_N``)
that has its final validation (``fold_N/validation/``) can be scored under any protocol without
retraining: its validation cases (from ``$nnUNet_preprocessed/<Dataset>/splits_final.json``) against
``$nnUNet_preprocessed/<Dataset>/gt_segmentations``, written into the fold as
``<protocol>_metrics.csv`` (:func:`nnunetv2_druwas.evaluation.protocols.metrics_file_name`). The DRUwAS
trainers do this at the end of training; nnU-Net's own trainers (reference rows) are scored by this
command or by the analysis.

Example::

    nnunetv2_druwas evaluate-results -d 500            # every fold of Dataset500 that lacks brats_metrics.csv
    nnunetv2_druwas evaluate-results --fold-dir $nnUNet_results/Dataset500_BraTS2020/nnUNetTrainer__nnUNetPlans__3d_fullres/fold_0
"""
from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path
from typing import Sequence

from nnunetv2_druwas import env
from nnunetv2_druwas.errors import DruwasError
from nnunetv2_druwas.evaluation.protocols import DEFAULT_PROTOCOL, PROTOCOLS, check_protocol, metrics_file_name

_FOLD = re.compile(r"^fold_(\d+)$")
_DATASET = re.compile(r"^Dataset(\d{3})_")


def fold_parts(fold_dir: Path) -> tuple[str, int]:
    """(dataset folder name, fold number) of ``<results>/<Dataset>/<Trainer>__<Plans>__<Config>/fold_N``.

    Args:
        fold_dir: a fold folder of an nnU-Net results tree.
    """
    fold_dir = Path(fold_dir)
    match = _FOLD.match(fold_dir.name)
    dataset = fold_dir.parent.parent.name
    if match is None or fold_dir.parent.name.count("__") != 2 or not _DATASET.match(dataset):
        raise DruwasError(f"{fold_dir} is not an nnU-Net fold folder "
                          f"(<results>/DatasetXXX_Name/<Trainer>__<Plans>__<Configuration>/fold_N)")
    return dataset, int(match.group(1))


def validation_cases(fold_dir: Path, preprocessed: Path | None = None) -> list[str]:
    """The validation cases of a fold: ``splits_final.json`` of its dataset, as nnU-Net trained it.

    Args:
        fold_dir: the fold folder.
        preprocessed: nnU-Net's preprocessed folder; None reads ``nnUNet_preprocessed``.

    Raises:
        DruwasError: without a splits file that has this fold (the message says where it looked).
    """
    dataset, fold = fold_parts(fold_dir)
    splits_file = Path(preprocessed or env.require("nnUNet_preprocessed")) / dataset / "splits_final.json"
    try:
        splits = json.loads(splits_file.read_text())
    except (OSError, ValueError) as e:
        raise DruwasError(f"cannot read the cross-validation split {splits_file} ({e}); the validation cases of "
                          f"{fold_dir} are listed there (nnUNet_preprocessed must be the folder it was trained "
                          f"with)") from None
    if not 0 <= fold < len(splits):
        raise DruwasError(f"{splits_file} has {len(splits)} fold(s), not fold {fold} of {fold_dir}")
    return sorted(splits[fold]["val"])


def score_fold(fold_dir: str | Path, protocol: str = DEFAULT_PROTOCOL, *, preprocessed: Path | None = None,
               cases: Sequence[str] | None = None, num_processes: int = 2, progress: bool = False,
               overwrite: bool = False, pad_to_brats: bool = False) -> Path:
    """Score a fold's final validation under ``protocol`` and cache it in the fold.

    Args:
        fold_dir: the fold folder; its ``validation/`` holds nnU-Net's predictions of the validation cases.
        protocol: a key of :data:`nnunetv2_druwas.evaluation.protocols.PROTOCOLS`.
        preprocessed: nnU-Net's preprocessed folder (ground truths, dataset.json, splits); None reads
            ``nnUNet_preprocessed``.
        cases: the fold's validation cases; None: from the dataset's ``splits_final.json``
            (:func:`validation_cases`).
        num_processes: worker processes over cases.
        progress: show a progress bar and the summary.
        overwrite: score again when the fold already has the file.
        pad_to_brats: ``authors`` only: zero-pad cases smaller than 240 x 240 x 155 first (the opt-in of
            :func:`nnunetv2_druwas.evaluation.evaluate.evaluate_folder`, recorded in ``padded_from``).

    Returns:
        ``fold_dir/<protocol>_metrics.csv`` (written unless it existed and ``overwrite`` is false).

    Raises:
        DruwasError: no ``validation/`` folder, no split, or any error of the evaluation itself.
    """
    from nnunetv2_druwas.evaluation.evaluate import evaluate_folder

    check_protocol(protocol)
    fold_dir = Path(fold_dir)
    output = fold_dir / metrics_file_name(protocol)
    if output.is_file() and not overwrite:
        return output
    dataset, _ = fold_parts(fold_dir)
    preprocessed = Path(preprocessed or env.require("nnUNet_preprocessed"))
    predictions = fold_dir / "validation"
    if not predictions.is_dir():
        raise DruwasError(f"{fold_dir} has no validation/ folder: the fold's final validation has not run "
                          f"(nnUNetv2_train ... --val, or --c to finish the training)")
    evaluate_folder(predictions, preprocessed / dataset / "gt_segmentations", output,
                    dataset_json=preprocessed / dataset / "dataset.json", protocol=protocol,
                    num_processes=num_processes, progress=progress, pad_to_brats=pad_to_brats,
                    cases=validation_cases(fold_dir, preprocessed) if cases is None else list(cases))
    return output


def unscored_folds(results: Path, protocol: str = DEFAULT_PROTOCOL,
                   datasets: Sequence[str] | None = None) -> list[Path]:
    """Every fold under ``results`` that has a final validation but no ``<protocol>_metrics.csv``.

    Args:
        results: nnU-Net's results folder.
        protocol: the protocol whose file is looked for.
        datasets: only these dataset folder names; None: all.
    """
    name = metrics_file_name(protocol)
    folds = []
    for validation in sorted(Path(results).glob("Dataset*/*__*__*/fold_*/validation")):
        fold_dir = validation.parent
        dataset = fold_dir.parent.parent.name
        if _FOLD.match(fold_dir.name) and (datasets is None or dataset in datasets) \
                and not (fold_dir / name).is_file() and validation.is_dir():
            folds.append(fold_dir)
    return folds


# --- the `nnunetv2_druwas evaluate-results` subcommand -----------------------------------

def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--results", type=Path, default=None, help="nnU-Net results folder (default: $nnUNet_results)")
    parser.add_argument("-d", "--datasets", nargs="+", default=None, metavar="ID",
                        help="only these dataset ids or names (default: every dataset)")
    parser.add_argument("--fold-dir", nargs="+", type=Path, default=None, metavar="DIR",
                        help="score these fold folders instead of searching the results folder")
    parser.add_argument("--protocol", choices=list(PROTOCOLS), default=DEFAULT_PROTOCOL,
                        help=f"evaluation protocol (default {DEFAULT_PROTOCOL})")
    parser.add_argument("--pad-to-brats", action="store_true",
                        help="authors protocol: zero-pad cases smaller than 240 x 240 x 155 (e.g. the demo's) first")
    parser.add_argument("--overwrite", action="store_true", help="score folds that already have the metrics again")
    parser.add_argument("-np", "--num-processes", type=int, default=2, help="worker processes (default 2)")


def run(args: argparse.Namespace) -> int:
    from nnunetv2_druwas.grid import dataset_name

    if args.fold_dir:
        folds = list(args.fold_dir)
    else:
        results = args.results or env.require("nnUNet_results")
        datasets = [dataset_name(d) for d in args.datasets] if args.datasets else None
        if args.overwrite:
            folds = sorted(p.parent for p in Path(results).glob("Dataset*/*__*__*/fold_*/validation")
                           if datasets is None or p.parent.parent.parent.name in datasets)
        else:
            folds = unscored_folds(Path(results), args.protocol, datasets)
    if not folds:
        print(f"nothing to score: no fold with a validation/ folder lacks {metrics_file_name(args.protocol)}")
        return 0
    for fold_dir in folds:
        output = score_fold(fold_dir, args.protocol, num_processes=args.num_processes, overwrite=args.overwrite,
                            pad_to_brats=args.pad_to_brats)
        print(f"{output}", file=sys.stdout, flush=True)
    return 0
