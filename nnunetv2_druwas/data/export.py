"""``nnunetv2_druwas export-brats``: nnU-Net predictions back to a release's labels for its online evaluation.

Example::

    nnUNetv2_predict -d 500 -i $nnUNet_raw/Dataset500_BraTS2020/imagesTs -o preds -c 3d_fullres ...
    nnunetv2_druwas export-brats preds submission/
    # submission/BraTS20_Validation_001.nii.gz ... : labels 0/1/2/4, uint8, geometry of each prediction
    nnunetv2_druwas export-brats preds submission/ --postprocess $nnUNet_results/Dataset500_BraTS2020/<run>

nnU-Net writes predictions in the dataset's labels (0-3, after ``regions_class_order``)
with the geometry of the input image, and puts ``dataset.json`` and ``plans.json``
beside them. Export maps them to the release's labels (BraTS 2018-2021: 1 -> 2, 2 -> 1,
3 -> 4; 2023: 1 -> 2, 2 -> 1, 3 -> 3; the Decathlon: unchanged), keeps header and affine,
and names each file as the release's evaluation expects (``<case>.nii.gz``). With
``--postprocess RUN`` the run's BraTS postprocessing threshold
(:mod:`nnunetv2_druwas.evaluation.postprocess`) is applied first. Every file is checked
before the output folder appears: a folder that is not a prediction of a converted
dataset, a foreign file, or a label above 3 is an error.
"""
from __future__ import annotations

import argparse
import json
from dataclasses import dataclass
from pathlib import Path

from nnunetv2_druwas.data import NiftiFile, nifti_gz_bytes, raise_problems
from nnunetv2_druwas.data.brats import (
    Release, get_release, is_converted_dataset, release_of_dataset, to_brats_labels,
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
    release: Release
    threshold: int | None


def _export_case(job: _ExportJob) -> list[str]:
    """Check one prediction, postprocess it (with a threshold) and write it with the release's labels;
    returns its problems."""
    import nibabel as nib
    import numpy as np

    from nnunetv2_druwas.evaluation.postprocess import apply_threshold

    try:
        pred = NiftiFile(job.source)
    except DruwasError as e:
        return [str(e)]
    if pred.array.ndim != 3:
        return [f"{job.source} is {pred.array.ndim}-D; a prediction is one 3-D label volume"]
    nnunet = pred.array if job.threshold is None else apply_threshold(pred.array, job.threshold)
    labels, bad = to_brats_labels(nnunet, job.release)
    if bad:
        return [f"{job.source} has label values {bad}; nnU-Net predictions of a converted BraTS dataset hold "
                f"only 0-3 (is it already in BraTS labels, or from another dataset?)"]
    image = nib.Nifti1Image(labels, pred.image.affine, pred.image.header)
    image.set_data_dtype(np.uint8)
    image.header.set_slope_inter(1, 0)
    job.target.write_bytes(nifti_gz_bytes(image))
    return []


def _read_dataset_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise DruwasError(f"{path} cannot be read as JSON ({e})") from None


def _prediction_release(pred_dir: Path, release: int | str | None) -> tuple[Release, str]:
    """The release of a prediction folder (from its dataset.json and/or ``release``) and its file ending."""
    dataset_file = pred_dir / "dataset.json"
    if not dataset_file.is_file():
        if release is None:
            raise DruwasError(f"{pred_dir} has no dataset.json (nnU-Net writes one beside its predictions); "
                              f"pass --year or --msd to say which release the predictions are for")
        return get_release(release), ".nii.gz"
    dataset = _read_dataset_json(dataset_file)
    if not is_converted_dataset(dataset):
        raise DruwasError(f"{dataset_file} is not the dataset.json of a BraTS dataset made by convert-brats "
                          f"(labels {dataset.get('labels')}); these are predictions of another dataset")
    recorded = release_of_dataset(dataset)
    if recorded is None and release is None:
        raise DruwasError(f"{dataset_file} does not record its release; pass --year or --msd")
    given = None if release is None else get_release(release)
    if recorded is not None and given is not None and recorded is not given:
        raise DruwasError(f"the predictions in {pred_dir} are of a {recorded.title} dataset, not {given.title}; "
                          f"drop --year/--msd or fix it")
    return recorded or given, dataset.get("file_ending", ".nii.gz")


def _run_threshold(run_folder: Path, release: Release) -> int:
    """The postprocessing threshold of a run for predictions of ``release`` (a run of another release's
    dataset is refused)."""
    from nnunetv2_druwas.evaluation.postprocess import read_threshold

    threshold = read_threshold(run_folder)
    dataset_file = Path(run_folder) / "dataset.json"
    recorded = release_of_dataset(_read_dataset_json(dataset_file)) if dataset_file.is_file() else None
    if recorded is not None and recorded is not release:
        raise DruwasError(f"{run_folder} was trained on a {recorded.title} dataset; its threshold does not "
                          f"belong to predictions of {release.title}")
    return threshold


def export_brats(pred_dir: str | Path, out_dir: str | Path, release: int | str | None = None, *,
                 postprocess: str | Path | None = None, overwrite: bool = False, num_processes: int = 2,
                 progress: bool = True) -> Path:
    """Write copies of nnU-Net predictions in the release's labels, named for its online evaluation.

    Args:
        pred_dir: an ``nnUNetv2_predict`` output folder of a dataset made by ``convert-brats``.
        out_dir: the folder to create for the submission files.
        release: the release (a BraTS year or ``"msd"``); read from ``pred_dir/dataset.json`` when
            there (and then only checked against it).
        postprocess: a run folder (``<trainer>__<plans>__<configuration>``) whose BraTS postprocessing
            threshold (``brats_postprocessing.json``, from ``nnunetv2_druwas postprocess``) is applied
            to every prediction before its labels are mapped. None: no postprocessing.
        overwrite: replace an existing non-empty ``out_dir`` (once the new one is complete).
        num_processes: worker processes (0/1: this process).
        progress: show a progress bar.

    Returns:
        ``out_dir``.

    Raises:
        DruwasError: not a prediction folder of a converted dataset, foreign files, labels above 3,
            case names of another release, a run without a threshold, or a refused overwrite.
    """
    pred_dir, out_dir = Path(pred_dir), Path(out_dir)
    if not pred_dir.is_dir():
        raise DruwasError(f"{pred_dir} is not a folder; pass the output folder of nnUNetv2_predict")
    if out_dir.resolve() == pred_dir.resolve():
        raise DruwasError("the output folder must differ from the prediction folder")
    release, ending = _prediction_release(pred_dir, release)
    threshold = None if postprocess is None else _run_threshold(Path(postprocess), release)
    exists = out_dir.exists() and (not out_dir.is_dir() or any(out_dir.iterdir()))
    if exists and not overwrite:
        raise DruwasError(f"{out_dir} already exists and is not empty; choose another folder or pass --overwrite")

    jobs, problems = [], []
    for path in sorted(pred_dir.iterdir()):
        if path.name in PREDICTION_SIDECARS or path.suffix in SIDECAR_SUFFIXES or path.name.startswith("."):
            continue
        if not path.is_file() or not path.name.endswith(ending):
            problems.append(f"{path} is not an nnU-Net prediction ({ending} file); move it out of {pred_dir}")
            continue
        case = path.name[: -len(ending)]
        if not release.matches(case):
            problems.append(f"{path}: case {case} is not a {release.title} case (names like "
                            f"{release.case_example}); is --year/--msd right?")
            continue
        jobs.append(_ExportJob(path, Path(release.portal_file_name(case)), release, threshold))
    if not jobs and not problems:
        problems.append(f"{pred_dir} holds no predictions ({ending} files)")
    raise_problems(problems, f"predictions {pred_dir}")

    out_dir.parent.mkdir(parents=True, exist_ok=True)
    with staged_folder(out_dir, replace=[out_dir] if out_dir.exists() else []) as staging:
        for job in jobs:
            job.target = staging / job.target
        results = parallel_map(_export_case, jobs, num_processes, desc=f"export {release.title}", progress=progress)
        raise_problems([p for r in results for p in r], f"predictions {pred_dir}")
    return out_dir


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from nnunetv2_druwas.data.convert import add_release_arguments

    parser.add_argument("pred_dir", type=Path, help="nnUNetv2_predict output folder")
    parser.add_argument("out_dir", type=Path, help="folder to create with the files in the release's labels")
    add_release_arguments(parser, required=False, what="default: from PRED_DIR/dataset.json")
    parser.add_argument("--postprocess", type=Path, default=None, metavar="RUN_FOLDER",
                        help="apply this run's BraTS postprocessing threshold (its brats_postprocessing.json, "
                             "from nnunetv2_druwas postprocess) before mapping the labels")
    parser.add_argument("--overwrite", action="store_true", help="replace OUT_DIR if it exists")
    parser.add_argument("-np", "--num-processes", type=int, default=2, help="worker processes (default 2)")


def run(args: argparse.Namespace) -> int:
    out = export_brats(args.pred_dir, args.out_dir, args.release, postprocess=args.postprocess,
                       overwrite=args.overwrite, num_processes=args.num_processes)
    note = "" if args.postprocess is None else f", postprocessed with the threshold of {args.postprocess}"
    print(f"wrote {sum(1 for _ in out.iterdir())} segmentations to {out}{note}")
    return 0
