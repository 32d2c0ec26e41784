"""``nnunetv2_druwas export-brats``: nnU-Net predictions back to BraTS labels for the online evaluation.

Example::

    nnUNetv2_predict -d 500 -i $nnUNet_raw/Dataset500_BraTS2020/imagesTs -o preds -c 3d_fullres ...
    nnunetv2_druwas export-brats preds submission/
    # submission/BraTS20_Validation_001.nii.gz ... : labels 0/1/2/4, uint8, geometry of each prediction

nnU-Net writes predictions in the dataset's labels (0-3, after ``regions_class_order``)
with the geometry of the input image, and puts ``dataset.json`` and ``plans.json``
beside them. Export maps 1 -> 2, 2 -> 1, 3 -> 4, keeps header and affine, and names
each file as the BraTS 2018-2020 portal expects (``<case>.nii.gz``). Every file is
checked before the output folder appears: a folder that is not a prediction of a
converted BraTS dataset, a foreign file, or a label above 3 is an error.
"""
from __future__ import annotations

import argparse
import json
from dataclasses import dataclass
from pathlib import Path

from nnunetv2_druwas.data import NiftiFile, nifti_gz_bytes, raise_problems
from nnunetv2_druwas.data.brats import (
    CASE_PREFIXES, DEFAULT_DATASET_IDS, REGION_LABELS, REGIONS_CLASS_ORDER, check_year,
    portal_file_name, to_brats_labels,
)
from nnunetv2_druwas.errors import DruwasError
from nnunetv2_druwas.files import staged_folder
from nnunetv2_druwas.parallel import parallel_map

#: files nnU-Net writes into a prediction folder besides the segmentations.
PREDICTION_SIDECARS = ("dataset.json", "plans.json", "predict_from_raw_data_args.json", "summary.json")
SIDECAR_SUFFIXES = (".npz", ".pkl")


@dataclass
class _ExportJob:
    source: Path
    target: Path


def _export_case(job: _ExportJob) -> list[str]:
    """Check one prediction and write it with BraTS labels; returns its problems."""
    import nibabel as nib
    import numpy as np

    try:
        pred = NiftiFile(job.source)
    except DruwasError as e:
        return [str(e)]
    if pred.array.ndim != 3:
        return [f"{job.source} is {pred.array.ndim}-D; a prediction is one 3-D label volume"]
    labels, bad = to_brats_labels(pred.array)
    if bad:
        return [f"{job.source} has label values {bad}; nnU-Net predictions of a converted BraTS dataset hold "
                f"only 0-3 (is it already in BraTS labels, or from another dataset?)"]
    image = nib.Nifti1Image(labels, pred.image.affine, pred.image.header)
    image.set_data_dtype(np.uint8)
    image.header.set_slope_inter(1, 0)
    job.target.write_bytes(nifti_gz_bytes(image))
    return []


def _prediction_year(pred_dir: Path, year: int | None) -> tuple[int, str]:
    """The BraTS year of a prediction folder (from its dataset.json and/or ``year``) and its file ending."""
    dataset_file = pred_dir / "dataset.json"
    if not dataset_file.is_file():
        if year is None:
            raise DruwasError(f"{pred_dir} has no dataset.json (nnU-Net writes one beside its predictions); "
                              f"pass --year to say which BraTS release the predictions are for")
        return check_year(year), ".nii.gz"
    try:
        dataset = json.loads(dataset_file.read_text())
    except (OSError, ValueError) as e:
        raise DruwasError(f"{dataset_file} cannot be read as JSON ({e})") from None
    labels = {k: (list(v) if isinstance(v, (list, tuple)) else v) for k, v in dataset.get("labels", {}).items()}
    if labels != REGION_LABELS or list(dataset.get("regions_class_order", [])) != REGIONS_CLASS_ORDER:
        raise DruwasError(f"{dataset_file} is not the dataset.json of a BraTS dataset made by convert-brats "
                          f"(labels {dataset.get('labels')}); these are predictions of another dataset")
    recorded = dataset.get("brats_year")
    if recorded is None and year is None:
        raise DruwasError(f"{dataset_file} does not record a BraTS year; pass --year")
    if recorded is not None and year is not None and int(recorded) != int(year):
        raise DruwasError(f"the predictions in {pred_dir} are of a BraTS {recorded} dataset, not {year}; "
                          f"drop --year or fix it")
    return check_year(year if recorded is None else recorded), dataset.get("file_ending", ".nii.gz")


def export_brats(pred_dir: str | Path, out_dir: str | Path, year: int | None = None, *,
                 overwrite: bool = False, num_processes: int = 2, progress: bool = True) -> Path:
    """Write BraTS-labelled copies of nnU-Net predictions, named for the BraTS portal.

    Args:
        pred_dir: an ``nnUNetv2_predict`` output folder of a dataset made by ``convert-brats``.
        out_dir: the folder to create for the submission files.
        year: the BraTS release; read from ``pred_dir/dataset.json`` when there (and then
            only checked against it).
        overwrite: replace an existing non-empty ``out_dir`` (once the new one is complete).
        num_processes: worker processes (0/1: this process).
        progress: show a progress bar.

    Returns:
        ``out_dir``.

    Raises:
        DruwasError: not a prediction folder of a BraTS dataset, foreign files, labels above 3,
            case names of another release, or a refused overwrite.
    """
    pred_dir, out_dir = Path(pred_dir), Path(out_dir)
    if not pred_dir.is_dir():
        raise DruwasError(f"{pred_dir} is not a folder; pass the output folder of nnUNetv2_predict")
    if out_dir.resolve() == pred_dir.resolve():
        raise DruwasError("the output folder must differ from the prediction folder")
    year, ending = _prediction_year(pred_dir, year)
    exists = out_dir.exists() and (not out_dir.is_dir() or any(out_dir.iterdir()))
    if exists and not overwrite:
        raise DruwasError(f"{out_dir} already exists and is not empty; choose another folder or pass --overwrite")

    jobs, problems = [], []
    prefix = CASE_PREFIXES[year]
    for path in sorted(pred_dir.iterdir()):
        if path.name in PREDICTION_SIDECARS or path.suffix in SIDECAR_SUFFIXES or path.name.startswith("."):
            continue
        if not path.is_file() or not path.name.endswith(ending):
            problems.append(f"{path} is not an nnU-Net prediction ({ending} file); move it out of {pred_dir}")
            continue
        case = path.name[: -len(ending)]
        if not case.lower().startswith(prefix.lower()):
            problems.append(f"{path}: case {case} is not a BraTS {year} case (names start with {prefix}); "
                            f"is --year right?")
            continue
        jobs.append(_ExportJob(path, Path(portal_file_name(case, year))))
    if not jobs and not problems:
        problems.append(f"{pred_dir} holds no predictions ({ending} files)")
    raise_problems(problems, f"predictions {pred_dir}")

    out_dir.parent.mkdir(parents=True, exist_ok=True)
    with staged_folder(out_dir, replace=[out_dir] if out_dir.exists() else []) as staging:
        for job in jobs:
            job.target = staging / job.target
        results = parallel_map(_export_case, jobs, num_processes, desc="export BraTS", progress=progress)
        raise_problems([p for r in results for p in r], f"predictions {pred_dir}")
    return out_dir


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("pred_dir", type=Path, help="nnUNetv2_predict output folder")
    parser.add_argument("out_dir", type=Path, help="folder to create with the BraTS-labelled files")
    parser.add_argument("--year", type=int, default=None, choices=sorted(DEFAULT_DATASET_IDS),
                        help="BraTS release (default: from PRED_DIR/dataset.json)")
    parser.add_argument("--overwrite", action="store_true", help="replace OUT_DIR if it exists")
    parser.add_argument("-np", "--num-processes", type=int, default=2, help="worker processes (default 2)")


def run(args: argparse.Namespace) -> int:
    out = export_brats(args.pred_dir, args.out_dir, args.year, overwrite=args.overwrite,
                       num_processes=args.num_processes)
    print(f"wrote {sum(1 for _ in out.iterdir())} BraTS segmentations to {out}")
    return 0
