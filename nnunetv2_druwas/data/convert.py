"""``nnunetv2_druwas convert-brats``: a BraTS 2018/2019/2020 release as an nnU-Net raw dataset.

Example::

    export nnUNet_raw=/data/nnUNet_raw nnUNet_preprocessed=/data/nnUNet_preprocessed
    nnunetv2_druwas convert-brats MICCAI_BraTS2020_TrainingData --year 2020 \\
        --validation MICCAI_BraTS2020_ValidationData --split paper --seed 0
    # -> $nnUNet_raw/Dataset500_BraTS2020/{imagesTr,labelsTr,imagesTs,imagesTs_paper_test,labelsTs_paper_test}

Every case is read once and checked (files present and unique, readable, same shape
and affine across modalities, labels in 0/1/2/4) while it is written into a hidden
folder inside ``$nnUNet_raw``; the dataset appears under its final name only when
every case passed, otherwise all problems are reported and nothing is left behind.
"""
from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping, Sequence

from nnunetv2_druwas import env
from nnunetv2_druwas.data import NiftiFile, nifti_gz_bytes, raise_problems
from nnunetv2_druwas.data.brats import (
    BRATS_LABELS, CHANNEL_NAMES, DEFAULT_DATASET_IDS, MODALITIES, REFERENCES, REGION_LABELS,
    REGIONS_CLASS_ORDER, ReleaseCase, check_year, dataset_name, scan_release,
    to_nnunet_labels,
)
from nnunetv2_druwas.errors import DruwasError
from nnunetv2_druwas.files import recover, replaced_together
from nnunetv2_druwas.parallel import parallel_map

FILE_ENDING = ".nii.gz"
#: the paper's split: 70 % training, 10 % validation (nnU-Net fold 0), 20 % held-out test.
PAPER_FRACTIONS = {"train": 0.7, "val": 0.1, "test": 0.2}
#: where ``--split paper`` puts the test cases, so nnU-Net never plans or trains on them.
PAPER_TEST_IMAGES = "imagesTs_paper_test"
PAPER_TEST_LABELS = "labelsTs_paper_test"
PAPER_SPLIT_FILE = "paper_split.json"
SPLITS = ("paper",)
#: tolerance for "same affine" across the modalities of a case (mm).
AFFINE_ATOL = 1e-4


def paper_split(cases: Sequence[str], seed: int = 0) -> dict[str, list[str]]:
    """The paper's 70/20/10 split of ``cases`` into train / test / val, seeded.

    Test and validation sizes are rounded (half up) and at least one case each;
    training gets the rest. The same cases and seed always give the same split.

    Args:
        cases: case identifiers (order does not matter).
        seed: seed of the shuffle.

    Returns:
        ``{"train": [...], "val": [...], "test": [...]}``, each sorted.
    """
    import numpy as np

    n = len(cases)
    n_test = max(1, int(n * PAPER_FRACTIONS["test"] + 0.5))
    n_val = max(1, int(n * PAPER_FRACTIONS["val"] + 0.5))
    n_train = n - n_test - n_val
    if n_train < 1:
        raise DruwasError(f"the paper split needs at least 3 cases, the release has {n}")
    order = [str(c) for c in np.random.default_rng(seed).permutation(sorted(cases))]
    return {"train": sorted(order[:n_train]), "val": sorted(order[n_train:n_train + n_val]),
            "test": sorted(order[n_train + n_val:])}


@dataclass
class _CaseJob:
    case: ReleaseCase
    images_dir: Path
    labels_dir: Path | None


def _check_case(case: ReleaseCase, files: dict[str, NiftiFile]) -> list[str]:
    """Shape, affine and finiteness problems of one case's files (already read)."""
    import numpy as np

    problems = []
    reference_role = next(iter(files))
    reference = files[reference_role]
    for role, f in files.items():
        where = f"case {case.case}: {f.path}"
        if f.array.ndim != 3:
            problems.append(f"{where} is {f.array.ndim}-D with shape {f.array.shape}; expected a 3-D volume")
            continue
        if role != reference_role:
            if f.array.shape != reference.array.shape:
                problems.append(f"{where} has shape {f.array.shape}, but {reference.path.name} has "
                                f"{reference.array.shape}; all modalities must be co-registered")
            elif not np.allclose(f.image.affine, reference.image.affine, atol=AFFINE_ATOL):
                problems.append(f"{where} has a different affine (voxel-to-world matrix) than "
                                f"{reference.path.name}; all modalities must share one geometry")
        if role != "seg" and np.issubdtype(f.array.dtype, np.floating) and not np.isfinite(f.array).all():
            problems.append(f"{where} contains NaN or infinite values")
    return problems


def _convert_case(job: _CaseJob) -> list[str]:
    """Read, check and write one case; returns its problems (nothing written if any)."""
    import nibabel as nib
    import numpy as np

    case = job.case
    files: dict[str, NiftiFile] = {}
    problems = []
    roles = [(m, case.images[m]) for m in MODALITIES]
    if job.labels_dir is not None:
        roles.append(("seg", case.seg))
    for role, path in roles:
        try:
            files[role] = NiftiFile(path)
        except DruwasError as e:
            problems.append(f"case {case.case}: {e}")
    if problems:
        return problems
    problems = _check_case(case, files)
    labels = None
    if job.labels_dir is not None:
        labels, bad = to_nnunet_labels(files["seg"].array)
        if bad:
            problems.append(f"case {case.case}: {files['seg'].path} has label values {bad}; "
                            f"BraTS segmentations hold only {list(BRATS_LABELS)}")
    if problems:
        return problems
    for channel, modality in enumerate(MODALITIES):
        (job.images_dir / f"{case.case}_{channel:04d}{FILE_ENDING}").write_bytes(files[modality].gz_bytes)
    if job.labels_dir is not None:
        seg = files["seg"]
        image = nib.Nifti1Image(labels, seg.image.affine, seg.image.header)
        image.set_data_dtype(np.uint8)
        image.header.set_slope_inter(1, 0)
        (job.labels_dir / f"{case.case}{FILE_ENDING}").write_bytes(nifti_gz_bytes(image))
    return []


def _dataset_json(year: int, num_training: int, src: Path, validation: Path | None,
                  split_info: dict | None) -> dict:
    info = {
        "name": dataset_name(year),
        "description": f"BraTS {year} training release converted by nnunetv2_druwas convert-brats "
                       f"(labels as nnU-Net's Dataset137_BraTS21: BraTS 2->1, 1->2, 4->3)",
        "reference": REFERENCES[year],
        "licence": f"see {REFERENCES[year]}",
        "channel_names": dict(CHANNEL_NAMES),
        "labels": dict(REGION_LABELS),
        "regions_class_order": list(REGIONS_CLASS_ORDER),
        "numTraining": num_training,
        "file_ending": FILE_ENDING,
        "brats_year": year,
        "source": str(src.resolve()),
    }
    if validation is not None:
        info["validation_source"] = str(validation.resolve())
    if split_info is not None:
        info["paper_split"] = split_info
    return info


def convert_brats(src: str | Path, year: int, dataset_id: int | None = None, *,
                  validation: str | Path | None = None, split: str | None = None, seed: int = 0,
                  overwrite: bool = False, num_processes: int = 2, progress: bool = True,
                  environ: Mapping[str, str] | None = None) -> Path:
    """Convert a BraTS release to ``$nnUNet_raw/Dataset<ID>_BraTS<year>``.

    Args:
        src: the training release folder as downloaded (2018/2019: holding ``HGG/`` and
            ``LGG/``; 2020: holding the ``BraTS20_Training_XXX`` folders).
        year: 2018, 2019 or 2020; sets the default ID, the name and ``brats_year`` in dataset.json.
        dataset_id: nnU-Net dataset ID; default 500 (2020), 501 (2019), 502 (2018).
        validation: a validation release folder (no segmentations); its cases go to ``imagesTs``.
        split: ``"paper"``: the 70/20/10 split. Its 20 % test cases go to ``imagesTs_paper_test``
            and ``labelsTs_paper_test`` (never planned or trained on); ``splits_final.json`` with
            one fold (70 % train, 10 % val) is written into the dataset and into
            ``$nnUNet_preprocessed/Dataset<ID>_BraTS<year>/``. ``None``: all cases in ``imagesTr``,
            nnU-Net's own 5-fold cross-validation.
        seed: seed of the paper split.
        overwrite: replace an existing dataset with the same ID (only once the new one is complete)
            and an existing ``splits_final.json``.
        num_processes: worker processes reading and writing cases (0/1: this process).
        progress: show a progress bar.
        environ: the environment holding ``nnUNet_raw`` (and ``nnUNet_preprocessed``); None reads
            this process's.

    Returns:
        The dataset folder.

    Raises:
        DruwasError: bad input (all problems listed, each naming case and file) or a refused overwrite.
    """
    year = check_year(year)
    dataset_id = DEFAULT_DATASET_IDS[year] if dataset_id is None else int(dataset_id)
    if not 1 <= dataset_id <= 999:
        raise DruwasError(f"dataset ID {dataset_id} is out of range; nnU-Net IDs are 1-999")
    if split not in (None, *SPLITS):
        raise DruwasError(f"unknown split {split!r}; use one of {', '.join(SPLITS)} (or none)")
    src = Path(src)
    raw = env.require("nnUNet_raw", environ)
    name = f"Dataset{dataset_id:03d}_{dataset_name(year)}"
    recover([raw / name])   # a killed earlier conversion: finish its swap, remove its staging folder
    existing = sorted(p for p in raw.glob(f"Dataset{dataset_id:03d}_*") if p.is_dir())
    if existing and not overwrite:
        raise DruwasError(f"{existing[0]} already exists (dataset ID {dataset_id}); pass --overwrite to "
                          f"replace it, or choose another ID with -d")
    splits_file = env.require("nnUNet_preprocessed", environ) / name / "splits_final.json" if split else None

    cases, validation_cases = _scan_sources(src, year, validation)
    parts = paper_split([c.case for c in cases], seed) if split else None
    folds = [{"train": parts["train"], "val": parts["val"]}] if parts else None
    if splits_file is not None and splits_file.exists() and not overwrite \
            and json.loads(splits_file.read_text()) != folds:
        raise DruwasError(f"{splits_file} already exists with another split; pass --overwrite to replace it")

    with replaced_together() as group:   # the dataset and its preprocessed splits_final.json, together
        staging = group.folder(raw / name, replace=existing)
        _write_dataset(staging, year, src, cases, validation, validation_cases, parts, seed, num_processes, progress)
        if splits_file is not None:   # nnU-Net 2.8.1's planner copies a raw splits_final.json too
            (staging / "splits_final.json").write_text(json.dumps(folds, indent=2))
            group.makedirs(splits_file.parent)
            group.write_text(splits_file, json.dumps(folds, indent=2))
    if splits_file is None and overwrite:
        preprocessed = env.value("nnUNet_preprocessed", environ)
        stale = Path(preprocessed) / name / "splits_final.json" if preprocessed else None
        if stale is not None and stale.exists():
            print(f"note: {stale} is from an earlier conversion; delete it if the cases changed",
                  file=sys.stderr)
    return raw / name


def _scan_sources(src: Path, year: int, validation: str | Path | None) -> tuple[list[ReleaseCase], list[ReleaseCase]]:
    """The cases of the training release and of the validation release (if any), or one error
    listing every problem found in both."""
    cases, problems = scan_release(src, year, training=True)
    validation_cases: list[ReleaseCase] = []
    if validation is not None:
        validation = Path(validation)
        validation_cases, validation_problems = scan_release(validation, year, training=False)
        problems += validation_problems
        clashes = sorted({c.case for c in cases} & {c.case for c in validation_cases})
        problems += [f"case {c}: in both {src} and {validation}" for c in clashes]
    by_lower_name: dict[str, list[ReleaseCase]] = {}
    for case in [*cases, *validation_cases]:
        by_lower_name.setdefault(case.case.lower(), []).append(case)
    problems += [f"case folders {', '.join(str(c.folder) for c in same)} differ only in capitals: one patient "
                 f"twice? keep one (a case-insensitive file system would also mix them)"
                 for same in by_lower_name.values() if len({c.case for c in same}) > 1]
    raise_problems(problems, f"BraTS {year} release {src}")
    return cases, validation_cases


def _write_dataset(staging: Path, year: int, src: Path, cases: list[ReleaseCase], validation: str | Path | None,
                   validation_cases: list[ReleaseCase], parts: dict[str, list[str]] | None, seed: int,
                   num_processes: int, progress: bool) -> None:
    """Convert every case into the (staged) dataset folder and write its dataset.json (and the paper
    split's case lists); raises, listing every problem, when a case fails its checks."""
    folders = {"imagesTr": staging / "imagesTr", "labelsTr": staging / "labelsTr"}
    if validation_cases:
        folders["imagesTs"] = staging / "imagesTs"
    if parts:
        folders["test_images"] = staging / PAPER_TEST_IMAGES
        folders["test_labels"] = staging / PAPER_TEST_LABELS
    for folder in folders.values():
        folder.mkdir()
    test = set(parts["test"]) if parts else set()
    jobs = [_CaseJob(c, folders["test_images"], folders["test_labels"]) if c.case in test
            else _CaseJob(c, folders["imagesTr"], folders["labelsTr"]) for c in cases]
    jobs += [_CaseJob(c, folders["imagesTs"], None) for c in validation_cases]
    results = parallel_map(_convert_case, jobs, num_processes, desc=f"convert BraTS {year}", progress=progress)
    raise_problems([p for r in results for p in r], f"BraTS {year} release {src}")

    split_info = None
    if parts:
        split_info = {"seed": seed, **{k: len(v) for k, v in parts.items()},
                      "test_images": PAPER_TEST_IMAGES, "test_labels": PAPER_TEST_LABELS,
                      "cases": PAPER_SPLIT_FILE}
        (staging / PAPER_SPLIT_FILE).write_text(json.dumps({"seed": seed, **parts}, indent=2))
    (staging / "dataset.json").write_text(json.dumps(
        _dataset_json(year, len(cases) - len(test), src, None if validation is None else Path(validation),
                      split_info), indent=2))


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("src", type=Path, help="the training release folder (2018/2019: with HGG/ and LGG/)")
    parser.add_argument("--year", type=int, required=True, choices=sorted(DEFAULT_DATASET_IDS),
                        help="BraTS release year")
    parser.add_argument("-d", "--dataset-id", type=int, default=None,
                        help="nnU-Net dataset ID (default: 2020 -> 500, 2019 -> 501, 2018 -> 502)")
    parser.add_argument("--validation", type=Path, default=None,
                        help="a validation release folder (no segmentations), written as imagesTs")
    parser.add_argument("--split", choices=SPLITS, default=None,
                        help="paper: 70/20/10 train/test/val; test cases go to imagesTs_paper_test and "
                             "labelsTs_paper_test, splits_final.json holds the train/val fold")
    parser.add_argument("--seed", type=int, default=0, help="seed of the split (default 0)")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace an existing dataset with the same ID once the new one is complete")
    parser.add_argument("-np", "--num-processes", type=int, default=2, help="worker processes (default 2)")


def run(args: argparse.Namespace) -> int:
    target = convert_brats(args.src, args.year, args.dataset_id, validation=args.validation, split=args.split,
                           seed=args.seed, overwrite=args.overwrite, num_processes=args.num_processes)
    dataset = json.loads((target / "dataset.json").read_text())
    print(f"wrote {target} ({dataset['numTraining']} training cases)")
    return 0
