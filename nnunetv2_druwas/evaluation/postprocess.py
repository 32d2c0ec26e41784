"""nnU-Net's BraTS postprocessing: a small predicted enhancing tumor becomes non-enhancing core.

nnU-Net's BraTS 2020 entry (nnU-Net v1, ``nnunet/dataset_conversion/Task082_BraTS_2020.py``:
``apply_brats_threshold``, ``determine_brats_postprocessing``, ``collect_and_prepare``) replaces a
case's whole predicted enhancing tumor (ET, nnU-Net label 3) by necrosis/non-enhancing tumor
(label 2) when it has fewer voxels than a threshold: BraTS scores an ET predicted where the
reference has none with Dice 0, so a few spurious ET voxels cost a whole case. The tumor core
(labels 2 and 3) and the whole tumor do not change.

The threshold is chosen per run on its cross-validation predictions, as the script does: the
candidates are 0, 10, ..., 750 voxels (``np.arange(0, 760, 10)``), each case's ET Dice is computed
at every candidate, and the candidate with the highest mean over all validation cases of all folds
wins (the smallest on ties, ``np.argmax``). Two details:

- Dice follows BraTS's empty-mask convention: 1 when prediction and reference hold no ET. nnU-Net's
  search scored a case the threshold leaves unchanged with medpy's ``dc``, which is 0 when both are
  empty, so a case without any ET counted 0 at threshold 0 and 1 at every other threshold; here it
  counts 1 everywhere, the value BraTS reports, and only real changes move the mean.
- The cap: when applying a run's threshold to new predictions the script replaced a threshold above
  1000 by 750 ("don't make it too big!"), a line from its earlier candidate list (up to 10000) that
  cannot fire on the 0-750 search. :func:`read_threshold` applies it all the same, so a threshold
  written by hand above 1000 acts as 750, as it would have in the script.

Example::

    nnunetv2_druwas postprocess $nnUNet_results/Dataset500_BraTS2020/nnUNetTrainerDRUwAS__nnUNetPlans__3d_fullres
    # -> .../brats_postprocessing.json  {"threshold": 40, "mean_et_dice": {"0": 0.771, "10": 0.774, ...}, ...}
    nnunetv2_druwas export-brats pred_val submission --postprocess \\
        $nnUNet_results/Dataset500_BraTS2020/nnUNetTrainerDRUwAS__nnUNetPlans__3d_fullres
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Sequence

import numpy as np

from nnunetv2_druwas import env
from nnunetv2_druwas.data.brats import LABEL_CONVENTIONS, REGIONS, REGIONS_CLASS_ORDER, is_converted_dataset
from nnunetv2_druwas.errors import DruwasError
from nnunetv2_druwas.files import write_text

#: the nnU-Net label of enhancing tumor, and the label its voxels get (necrosis/non-enhancing core:
#: the label nnU-Net gives the tumor core's own voxels), both from the BraTS label table.
(ET_LABEL,) = LABEL_CONVENTIONS["nnunet"]["ET"]
REPLACE_WITH = REGIONS_CLASS_ORDER[REGIONS.index("TC")]
#: the thresholds searched (voxels), as ``collect_and_prepare``: 0, 10, ..., 750.
CANDIDATES = tuple(range(0, 751, 10))
#: a threshold above this acts as :data:`CAPPED` (the script's cap when applying).
CAP_ABOVE, CAPPED = 1000, 750
POSTPROCESSING_FILE = "brats_postprocessing.json"
SOURCE = "nnU-Net's BraTS 2020 entry (nnU-Net v1, nnunet/dataset_conversion/Task082_BraTS_2020.py)"


def apply_threshold(labels: np.ndarray, threshold: int) -> np.ndarray:
    """A label map with its enhancing tumor turned into non-enhancing core when it is smaller than ``threshold``.

    Args:
        labels: an nnU-Net label map of a converted BraTS dataset (3 enhancing, 2 necrosis/non-enhancing).
        threshold: the smallest ET (voxels) that is kept; 0 keeps every ET.

    Returns:
        ``labels`` itself when nothing changes, otherwise a changed copy (the input is never modified).
    """
    et = labels == ET_LABEL
    if not 0 < np.count_nonzero(et) < threshold:
        return labels
    changed = labels.copy()
    changed[et] = REPLACE_WITH
    return changed


def applied_threshold(threshold: int) -> int:
    """The threshold the script applies for a chosen one: :data:`CAPPED` above :data:`CAP_ABOVE`."""
    return CAPPED if threshold > CAP_ABOVE else int(threshold)


def mean_et_dice(cases: Sequence[tuple[int, int, float]], candidates: Sequence[int] = CANDIDATES) -> list[float]:
    """The mean ET Dice over ``cases`` at every threshold in ``candidates``.

    Args:
        cases: per case ``(n_pred, n_ref, dice)``: predicted and reference ET voxels and the ET Dice of
            the unchanged prediction (BraTS: 1 when both are empty).
        candidates: the thresholds.
    """
    n_pred, n_ref, dice = (np.array(column, float) for column in zip(*cases))
    removed_dice = np.where(n_ref == 0, 1.0, 0.0)   # no predicted ET left: BraTS's empty-mask Dice
    return [float(np.mean(np.where(n_pred < t, removed_dice, dice))) for t in candidates]


def _case_et(job: tuple[str, Path, Path]) -> tuple[int, int, float]:
    """``(n_pred, n_ref, dice)`` of one case's ET (see :func:`mean_et_dice`)."""
    from nnunetv2_druwas.evaluation.evaluate import read_segmentation
    from nnunetv2_druwas.evaluation.metrics import dice

    case, pred_path, gt_path = job
    pred, _ = read_segmentation(pred_path)
    ref, _ = read_segmentation(gt_path)
    if pred.shape != ref.shape:
        raise DruwasError(f"case {case}: prediction {pred_path} has shape {pred.shape}, its ground truth "
                          f"{gt_path} {ref.shape}")
    pred_et, ref_et = pred == ET_LABEL, ref == ET_LABEL
    return int(np.count_nonzero(pred_et)), int(np.count_nonzero(ref_et)), dice(pred_et, ref_et)


def run_folds(run_folder: Path) -> list[Path]:
    """The numbered folds (``fold_N``) of a run that have their final validation (``validation/``).

    Args:
        run_folder: ``<results>/DatasetXXX_Name/<trainer>__<plans>__<configuration>``.
    """
    from nnunetv2_druwas.evaluation.results import fold_parts

    run_folder = Path(run_folder)
    if not run_folder.is_dir():
        raise DruwasError(f"{run_folder} is not a folder; pass a run folder "
                          f"($nnUNet_results/DatasetXXX_Name/<trainer>__<plans>__<configuration>)")
    folds = sorted((p for p in run_folder.glob("fold_*") if p.name[5:].isdigit() and (p / "validation").is_dir()),
                   key=lambda p: int(p.name[5:]))
    if not folds:
        raise DruwasError(f"no fold of {run_folder} has its validation predictions (fold_N/validation/); "
                          f"train a fold to the end (or run nnUNetv2_train ... --val) first")
    fold_parts(folds[0])   # the folder is a run folder of a results tree
    return folds


def choose_threshold(run_folder: str | Path, *, preprocessed: str | Path | None = None, num_processes: int = 2,
                     progress: bool = False, overwrite: bool = False) -> dict:
    """Choose a run's threshold on its cross-validation predictions; write ``RUN/brats_postprocessing.json``.

    Every numbered fold with ``validation/`` takes part with its validation cases (its split in
    ``$nnUNet_preprocessed/<Dataset>/splits_final.json``), scored against
    ``$nnUNet_preprocessed/<Dataset>/gt_segmentations``.

    Args:
        run_folder: ``<results>/DatasetXXX_Name/<trainer>__<plans>__<configuration>``.
        preprocessed: nnU-Net's preprocessed folder; None reads ``nnUNet_preprocessed``.
        num_processes: worker processes reading cases.
        progress: show a progress bar.
        overwrite: choose again when the run already has the file (otherwise it is read and returned).

    Returns:
        What the file holds: ``threshold``, ``mean_et_dice`` (candidate -> mean ET Dice),
        ``mean_et_dice_chosen``, ``mean_et_dice_without`` (threshold 0), ``cases_changed``, ``folds``,
        ``n`` (cases), ``dataset``, ``run``, ``label``, ``replaced_with``, ``candidates``, ``source``.

    Raises:
        DruwasError: no fold with validation predictions, a missing prediction or ground truth, another
            dataset than a converted BraTS one, or a shape mismatch (each naming the case or file).
    """
    from nnunetv2_druwas.evaluation.evaluate import match_cases
    from nnunetv2_druwas.evaluation.results import fold_parts, validation_cases
    from nnunetv2_druwas.parallel import parallel_map

    run_folder = Path(run_folder)
    output = run_folder / POSTPROCESSING_FILE
    if output.is_file() and not overwrite:
        return _read(output)
    folds = run_folds(run_folder)
    dataset, _ = fold_parts(folds[0])
    preprocessed = Path(preprocessed or env.require("nnUNet_preprocessed"))
    _check_dataset(preprocessed / dataset / "dataset.json")
    gt_dir = preprocessed / dataset / "gt_segmentations"
    if not gt_dir.is_dir():
        raise DruwasError(f"{gt_dir} does not exist; nnUNet_preprocessed must be the folder {run_folder} was "
                          f"trained with")
    jobs, missing = [], []
    for fold in folds:
        pairs, _ = match_cases(fold / "validation", gt_dir, validation_cases(fold, preprocessed))
        missing += [f"{fold / 'validation'}: no prediction of case {case}" for case, (pred, _) in pairs.items()
                    if pred is None]
        jobs += [(case, pred, gt) for case, (pred, gt) in pairs.items() if pred is not None]
    if missing:
        raise DruwasError(f"{len(missing)} validation prediction(s) missing; finish the folds' validation "
                          f"(nnUNetv2_train ... --val):\n" + "\n".join(f"  - {m}" for m in missing[:20]))
    cases = parallel_map(_case_et, jobs, num_processes, desc="ET per case", progress=progress, min_jobs_per_worker=8)
    means = mean_et_dice(cases)
    best = int(np.argmax(means))
    threshold = CANDIDATES[best]
    result = {
        "threshold": threshold,
        "mean_et_dice_chosen": means[best],
        "mean_et_dice_without": means[0],
        "cases_changed": sum(1 for n_pred, _, _ in cases if 0 < n_pred < threshold),
        "n": len(cases),
        "folds": [int(f.name[5:]) for f in folds],
        "dataset": dataset,
        "run": run_folder.name,
        "label": ET_LABEL,
        "replaced_with": REPLACE_WITH,
        "criterion": "mean ET Dice over the folds' validation cases (BraTS: 1 when prediction and reference "
                     "have no ET); the smallest threshold on ties",
        "candidates": f"{CANDIDATES[0]}-{CANDIDATES[-1]} voxels in steps of {CANDIDATES[1] - CANDIDATES[0]}",
        "mean_et_dice": {str(t): m for t, m in zip(CANDIDATES, means)},
        "source": SOURCE,
    }
    write_text(output, json.dumps(result, indent=2) + "\n")
    return result


def _check_dataset(dataset_json: Path) -> None:
    try:
        info = json.loads(dataset_json.read_text())
    except (OSError, ValueError) as e:
        raise DruwasError(f"cannot read {dataset_json} ({e}); nnUNet_preprocessed must be the folder the run "
                          f"was trained with") from None
    if not is_converted_dataset(info):
        raise DruwasError(f"{dataset_json} is not a BraTS dataset made by convert-brats (labels {info.get('labels')}); "
                          f"the BraTS postprocessing needs its labels (3 enhancing, 2 non-enhancing core)")


def _read(path: Path) -> dict:
    try:
        result = json.loads(path.read_text())
        int(result["threshold"])
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise DruwasError(f"{path} is not a readable postprocessing file ({type(e).__name__}: {e}); "
                          f"choose again with nnunetv2_druwas postprocess --overwrite") from None
    return result


def read_threshold(run_folder: str | Path) -> int:
    """The threshold to apply for a run: its ``brats_postprocessing.json``, capped as the script did.

    Args:
        run_folder: the run folder ``nnunetv2_druwas postprocess`` wrote the file into.

    Raises:
        DruwasError: the run has no (readable) file, or a negative threshold.
    """
    path = Path(run_folder) / POSTPROCESSING_FILE
    if not path.is_file():
        raise DruwasError(f"{path} does not exist; choose the run's threshold first: "
                          f"nnunetv2_druwas postprocess {run_folder}")
    threshold = int(_read(path)["threshold"])
    if threshold < 0:
        raise DruwasError(f"{path}: threshold {threshold} is negative")
    return applied_threshold(threshold)


# --- the `nnunetv2_druwas postprocess` subcommand ----------------------------------------------------

def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("run_folder", type=Path, metavar="RUN_FOLDER",
                        help="a run folder: $nnUNet_results/DatasetXXX_Name/<trainer>__<plans>__<configuration>")
    parser.add_argument("--overwrite", action="store_true", help="choose again when the run already has a threshold")
    parser.add_argument("-np", "--num-processes", type=int, default=2, help="worker processes (default 2)")


def run(args: argparse.Namespace) -> int:
    output = args.run_folder / POSTPROCESSING_FILE
    existed = output.is_file() and not args.overwrite
    result = choose_threshold(args.run_folder, num_processes=args.num_processes, progress=True,
                              overwrite=args.overwrite)
    print(f"{'kept' if existed else 'wrote'} {output}: threshold {result['threshold']} voxels; mean ET Dice "
          f"{result['mean_et_dice_chosen']:.4f} (without: {result['mean_et_dice_without']:.4f}), "
          f"{result['cases_changed']} of n={result['n']} cases changed, folds "
          f"{', '.join(map(str, result['folds']))} (BraTS Dice, cross-validation)")
    return 0
