"""``nnunetv2_druwas convert-brats``: a brain-tumour release as an nnU-Net raw dataset.

Releases: BraTS 2018-2021 and 2023 glioma (``--year``) and the Medical Segmentation Decathlon's
Task01_BrainTumour (``--msd``); what differs between them is one row of
:data:`nnunetv2_druwas.data.brats.RELEASES`. Every release becomes the same dataset: channels T1,
T1ce, T2, FLAIR; labels 1 edema, 2 necrosis/non-enhancing core, 3 enhancing tumor; region-based.

Example::

    export nnUNet_raw=/data/nnUNet_raw nnUNet_preprocessed=/data/nnUNet_preprocessed
    nnunetv2_druwas convert-brats MICCAI_BraTS2020_TrainingData --year 2020 \\
        --validation MICCAI_BraTS2020_ValidationData --split paper --seed 0
    # -> $nnUNet_raw/Dataset500_BraTS2020/{imagesTr,labelsTr,imagesTs,imagesTs_paper_test,labelsTs_paper_test}
    nnunetv2_druwas convert-brats Task01_BrainTumour --msd      # -> Dataset505_MSDBrainTumour

Every case is read once and checked (files present and unique, readable, same shape
and affine across modalities, labels of the release) while it is written into a hidden
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
    CHANNEL_NAMES, DECATHLON, DECATHLON_FOLDERS, DECATHLON_LABEL_NAMES, REGION_LABELS, REGIONS_CLASS_ORDER,
    RELEASES, VOLUME, YEARS, Release, ReleaseCase, get_release, scan_release, to_nnunet_labels,
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
#: where ``--test`` puts a separate labelled release held out for testing (never planned or trained on).
TEST_IMAGES = "imagesTs_test"
TEST_LABELS = "labelsTs_test"
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
    release: Release
    case: ReleaseCase
    images_dir: Path
    labels_dir: Path | None


def _check_case(release: Release, case: ReleaseCase, files: dict[str, NiftiFile]) -> list[str]:
    """Shape, affine and finiteness problems of one case's files (already read)."""
    import numpy as np

    problems = []
    reference_role = next(iter(files))
    reference = files[reference_role]
    for role, f in files.items():
        where = f"case {case.case}: {f.path}"
        if role == VOLUME:
            channels = release.volume_channels
            if f.array.ndim != 4 or f.array.shape[3] != len(channels):
                problems.append(f"{where} has shape {f.array.shape}; expected a 4-D image of {len(channels)} "
                                f"volumes ({', '.join(channels)}): a modality is missing or extra")
                continue
        elif f.array.ndim != 3:
            problems.append(f"{where} is {f.array.ndim}-D with shape {f.array.shape}; expected a 3-D volume")
            continue
        if role != reference_role:
            if f.array.shape[:3] != reference.array.shape[:3]:
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

    case, release = job.case, job.release
    files: dict[str, NiftiFile] = {}
    problems = []
    roles = list(case.images.items())
    if job.labels_dir is not None:
        roles.append(("seg", case.seg))
    for role, path in roles:
        try:
            files[role] = NiftiFile(path)
        except DruwasError as e:
            problems.append(f"case {case.case}: {e}")
    if problems:
        return problems
    problems = _check_case(release, case, files)
    labels = None
    if job.labels_dir is not None:
        labels, bad = to_nnunet_labels(files["seg"].array, release)
        if bad:
            problems.append(f"case {case.case}: {files['seg'].path} has label values {bad}; "
                            f"{release.title} segmentations hold only {release.label_values}")
    if problems:
        return problems
    for channel, modality in enumerate(release.modalities):
        data = files[VOLUME].volume_gz_bytes(release.volume_channels.index(modality)) if VOLUME in files \
            else files[modality].gz_bytes
        (job.images_dir / f"{case.case}_{channel:04d}{FILE_ENDING}").write_bytes(data)
    if job.labels_dir is not None:
        seg = files["seg"]
        image = nib.Nifti1Image(labels, seg.image.affine, seg.image.header)
        image.set_data_dtype(np.uint8)
        image.header.set_slope_inter(1, 0)
        (job.labels_dir / f"{case.case}{FILE_ENDING}").write_bytes(nifti_gz_bytes(image))
    return []


def _dataset_json(release: Release, num_training: int, src: Path, validation: Path | None,
                  split_info: dict | None, test: Path | None, num_test: int) -> dict:
    info = {
        "name": release.dataset_name,
        "description": f"{release.title} training release converted by nnunetv2_druwas convert-brats "
                       f"(labels to nnU-Net, numbered as its Dataset137_BraTS21: {release.label_mapping})",
        "reference": release.reference,
        "licence": release.licence or f"see {release.reference}",
        "channel_names": dict(CHANNEL_NAMES),
        "labels": dict(REGION_LABELS),
        "regions_class_order": list(REGIONS_CLASS_ORDER),
        "numTraining": num_training,
        "file_ending": FILE_ENDING,
        "release": release.key,
        **({"brats_year": release.year} if release.year is not None else {}),
        "source": str(src.resolve()),
    }
    if validation is not None:
        info["validation_source"] = str(validation.resolve())
    if split_info is not None:
        info["paper_split"] = split_info
    if test is not None:
        info["test_set"] = {"source": str(test.resolve()), "cases": num_test, "images": TEST_IMAGES,
                            "labels": TEST_LABELS}
    return info


def convert_brats(src: str | Path, release: int | str | Release, dataset_id: int | None = None, *,
                  validation: str | Path | None = None, test: str | Path | None = None,
                  split: str | None = None, seed: int = 0, overwrite: bool = False, num_processes: int = 2, progress: bool = True,
                  environ: Mapping[str, str] | None = None) -> Path:
    """Convert a release to ``$nnUNet_raw/Dataset<ID>_<name>`` (``Dataset500_BraTS2020``).

    Args:
        src: the training release folder as downloaded (2018/2019: holding ``HGG/`` and
            ``LGG/``; 2020, 2021, 2023: holding the case folders; the Decathlon: ``Task01_BrainTumour``
            with ``imagesTr/``, ``labelsTr/`` and ``imagesTs/``).
        release: a BraTS year (2018, 2019, 2020, 2021, 2023) or ``"msd"``; sets the layout, the
            labels, the default ID, the name, and ``release`` (and ``brats_year``) in dataset.json.
        dataset_id: nnU-Net dataset ID; default 500 (2020), 501 (2019), 502 (2018), 503 (2021),
            504 (2023), 505 (MSD).
        validation: a validation release folder (no segmentations); its cases go to ``imagesTs``.
            The Decathlon's test images (``src/imagesTs``) go there without it.
        test: a second labelled release of the same layout, held out as a test set: its cases go to
            ``imagesTs_test`` and ``labelsTs_test`` (never planned or trained on; predict them with
            ``nnUNetv2_predict`` and score them with ``evaluate``). Case names must differ from ``src``'s.
        split: ``"paper"``: the 70/20/10 split. Its 20 % test cases go to ``imagesTs_paper_test``
            and ``labelsTs_paper_test`` (never planned or trained on); ``splits_final.json`` with
            one fold (70 % train, 10 % val) is written into the dataset and into
            ``$nnUNet_preprocessed/Dataset<ID>_<name>/``. ``None``: all cases in ``imagesTr``,
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
    release = get_release(release)
    dataset_id = release.default_id if dataset_id is None else int(dataset_id)
    if not 1 <= dataset_id <= 999:
        raise DruwasError(f"dataset ID {dataset_id} is out of range; nnU-Net IDs are 1-999")
    if split not in (None, *SPLITS):
        raise DruwasError(f"unknown split {split!r}; use one of {', '.join(SPLITS)} (or none)")
    src = Path(src)
    raw = env.require("nnUNet_raw", environ)
    name = f"Dataset{dataset_id:03d}_{release.dataset_name}"
    recover([raw / name])   # a killed earlier conversion: finish its swap, remove its staging folder
    existing = sorted(p for p in raw.glob(f"Dataset{dataset_id:03d}_*") if p.is_dir())
    if existing and not overwrite:
        raise DruwasError(f"{existing[0]} already exists (dataset ID {dataset_id}); pass --overwrite to "
                          f"replace it, or choose another ID with -d")
    splits_file = env.require("nnUNet_preprocessed", environ) / name / "splits_final.json" if split else None

    cases, validation_cases, validation, test_cases = _scan_sources(src, release, validation, test)
    parts = paper_split([c.case for c in cases], seed) if split else None
    folds = [{"train": parts["train"], "val": parts["val"]}] if parts else None
    if splits_file is not None and splits_file.exists() and not overwrite \
            and json.loads(splits_file.read_text()) != folds:
        raise DruwasError(f"{splits_file} already exists with another split; pass --overwrite to replace it")

    with replaced_together() as group:   # the dataset and its preprocessed splits_final.json, together
        staging = group.folder(raw / name, replace=existing)
        _write_dataset(staging, release, src, cases, validation, validation_cases, parts, seed, num_processes,
                       progress, test, test_cases)
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


def _scan_sources(src: Path, release: Release, validation: str | Path | None, test: str | Path | None = None
                  ) -> tuple[list[ReleaseCase], list[ReleaseCase], Path | None, list[ReleaseCase]]:
    """The cases of the training release, of the validation release (if any; the Decathlon's
    ``imagesTs``), the validation folder and the cases of the labelled test release (if any), or one
    error listing every problem found in all of them."""
    if release.layout == DECATHLON:
        if validation is not None:
            raise DruwasError(f"--validation does not apply to the Decathlon: its test images are "
                              f"{src / DECATHLON_FOLDERS[2]} and are converted with the task")
        _check_decathlon_json(src / "dataset.json", release)
        images_ts = src / DECATHLON_FOLDERS[2]
        validation = images_ts if images_ts.is_dir() and any(images_ts.iterdir()) else None
    cases, problems = scan_release(src, release, training=True)
    validation_cases: list[ReleaseCase] = []
    if validation is not None:
        validation = Path(validation)
        validation_cases, validation_problems = scan_release(
            src if release.layout == DECATHLON else validation, release, training=False)
        problems += validation_problems
    test_cases: list[ReleaseCase] = []
    if test is not None:
        test_cases, test_problems = scan_release(Path(test), release, training=True)
        problems += test_problems
    named = [(src, cases), (validation, validation_cases), (test, test_cases)]
    for i, (first, first_cases) in enumerate(named):
        for second, second_cases in named[i + 1:]:
            clashes = sorted({c.case for c in first_cases} & {c.case for c in second_cases})
            problems += [f"case {c}: in both {first} and {second}" for c in clashes]
    by_lower_name: dict[str, list[ReleaseCase]] = {}
    for case in [*cases, *validation_cases, *test_cases]:
        by_lower_name.setdefault(case.case.lower(), []).append(case)
    problems += [f"case folders {', '.join(str(c.folder) for c in same)} differ only in capitals: one patient "
                 f"twice? keep one (a case-insensitive file system would also mix them)"
                 for same in by_lower_name.values() if len({c.case for c in same}) > 1]
    raise_problems(problems, f"{release.title} release {src}")
    return cases, validation_cases, validation, test_cases


def _check_decathlon_json(path: Path, release: Release) -> None:
    """A Decathlon task's dataset.json, when there, must list the brain-tumour task's channels (in the
    order the 4-D images hold them) and labels; anything else would be converted wrongly."""
    if not path.is_file():
        return
    try:
        info = json.loads(path.read_text())
        channels = [str(info["modality"][str(i)]) for i in range(len(info["modality"]))]
        labels = {str(k): str(v).lower() for k, v in info["labels"].items()}
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as e:
        raise DruwasError(f"{path} is not a readable Decathlon dataset.json ({type(e).__name__}: {e})") from None
    if [c.lower() for c in channels] != [c.lower() for c in release.volume_channels] \
            or labels != DECATHLON_LABEL_NAMES:
        raise DruwasError(f"{path} lists channels {channels} and labels {info['labels']}, but "
                          f"{release.title} has channels {list(release.volume_channels)} and labels "
                          f"{DECATHLON_LABEL_NAMES}; is this Task01_BrainTumour?")


def _write_dataset(staging: Path, release: Release, src: Path, cases: list[ReleaseCase], validation: str | Path | None,
                   validation_cases: list[ReleaseCase], parts: dict[str, list[str]] | None, seed: int,
                   num_processes: int, progress: bool, test: str | Path | None = None,
                   test_cases: list[ReleaseCase] = ()) -> None:
    """Convert every case into the (staged) dataset folder and write its dataset.json (and the paper
    split's case lists); raises, listing every problem, when a case fails its checks."""
    folders = {"imagesTr": staging / "imagesTr", "labelsTr": staging / "labelsTr"}
    if validation_cases:
        folders["imagesTs"] = staging / "imagesTs"
    if parts:
        folders["test_images"] = staging / PAPER_TEST_IMAGES
        folders["test_labels"] = staging / PAPER_TEST_LABELS
    if test_cases:
        folders[TEST_IMAGES] = staging / TEST_IMAGES
        folders[TEST_LABELS] = staging / TEST_LABELS
    for folder in folders.values():
        folder.mkdir()
    held_out = set(parts["test"]) if parts else set()
    jobs = [_CaseJob(release, c, folders["test_images"], folders["test_labels"]) if c.case in held_out
            else _CaseJob(release, c, folders["imagesTr"], folders["labelsTr"]) for c in cases]
    jobs += [_CaseJob(release, c, folders["imagesTs"], None) for c in validation_cases]
    jobs += [_CaseJob(release, c, folders[TEST_IMAGES], folders[TEST_LABELS]) for c in test_cases]
    results = parallel_map(_convert_case, jobs, num_processes, desc=f"convert {release.title}", progress=progress)
    raise_problems([p for r in results for p in r], f"{release.title} release {src}")

    split_info = None
    if parts:
        split_info = {"seed": seed, **{k: len(v) for k, v in parts.items()},
                      "test_images": PAPER_TEST_IMAGES, "test_labels": PAPER_TEST_LABELS,
                      "cases": PAPER_SPLIT_FILE}
        (staging / PAPER_SPLIT_FILE).write_text(json.dumps({"seed": seed, **parts}, indent=2))
    (staging / "dataset.json").write_text(json.dumps(
        _dataset_json(release, len(cases) - len(held_out), src, None if validation is None else Path(validation),
                      split_info, None if test is None else Path(test), len(test_cases)), indent=2))


def add_release_arguments(parser: argparse.ArgumentParser, *, required: bool, what: str) -> None:
    """``--year Y`` or ``--msd``, into ``args.release`` (a year or ``"msd"``); shared by convert-brats,
    export-brats and synth.

    Args:
        parser: the subcommand's parser.
        required: whether one of the two must be given.
        what: the end of both help texts (what the release decides).
    """
    group = parser.add_mutually_exclusive_group(required=required)
    group.add_argument("--year", type=int, dest="release", choices=YEARS, help=f"BraTS release year; {what}")
    group.add_argument("--msd", dest="release", action="store_const", const="msd",
                       help=f"the Medical Segmentation Decathlon's Task01_BrainTumour; {what}")


def default_ids_text() -> str:
    """``2020 -> 500, ...``: the default dataset IDs, for help texts."""
    return ", ".join(f"{key} -> {r.default_id}" for key, r in RELEASES.items())


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("src", type=Path, help="the training release folder (2018/2019: with HGG/ and LGG/; "
                                               "MSD: Task01_BrainTumour with imagesTr/)")
    add_release_arguments(parser, required=True, what="sets the layout, labels and default ID")
    parser.add_argument("-d", "--dataset-id", type=int, default=None,
                        help=f"nnU-Net dataset ID (default: {default_ids_text()})")
    parser.add_argument("--validation", type=Path, default=None,
                        help="a validation release folder (no segmentations), written as imagesTs "
                             "(MSD: SRC/imagesTs is converted without it)")
    parser.add_argument("--test", type=Path, default=None,
                        help=f"a second labelled release of the same layout held out as a test set, written as "
                             f"{TEST_IMAGES} and {TEST_LABELS} (never planned or trained on)")
    parser.add_argument("--split", choices=SPLITS, default=None,
                        help="paper: 70/20/10 train/test/val; test cases go to imagesTs_paper_test and "
                             "labelsTs_paper_test, splits_final.json holds the train/val fold")
    parser.add_argument("--seed", type=int, default=0, help="seed of the split (default 0)")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace an existing dataset with the same ID once the new one is complete")
    parser.add_argument("-np", "--num-processes", type=int, default=2, help="worker processes (default 2)")


def run(args: argparse.Namespace) -> int:
    target = convert_brats(args.src, args.release, args.dataset_id, validation=args.validation, test=args.test,
                           split=args.split,
                           seed=args.seed, overwrite=args.overwrite, num_processes=args.num_processes)
    dataset = json.loads((target / "dataset.json").read_text())
    held_out = f", {dataset['test_set']['cases']} test cases" if "test_set" in dataset else ""
    print(f"wrote {target} ({dataset['numTraining']} training cases{held_out})")
    return 0
