"""What the project knows about brain-tumour releases, in one place.

Modalities and their nnU-Net channels, the label table and the region definition of a converted
dataset, and :data:`RELEASES`: one :class:`Release` record per release the project reads (BraTS
2018, 2019, 2020, 2021, 2023 glioma, and the Medical Segmentation Decathlon's Task01_BrainTumour)
with its folder layout, file names, modality names, labels, case names, default dataset ID, the
file name its online evaluation expects and its reference. :mod:`~nnunetv2_druwas.data.convert`,
:mod:`~nnunetv2_druwas.data.export` and :mod:`~nnunetv2_druwas.data.synth` read every
release-specific fact from here; a new release is one more row.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

import numpy as np

from nnunetv2_druwas.errors import DruwasError

#: BraTS 2018-2021 file suffix of each modality, in nnU-Net channel order (_0000 .. _0003); the
#: synthetic cases of :mod:`~nnunetv2_druwas.data.synth` use these names for their arrays.
MODALITIES = ("t1", "t1ce", "t2", "flair")
CHANNEL_NAMES = {"0": "T1", "1": "T1ce", "2": "T2", "3": "FLAIR"}

#: The BraTS label table, the one place that states labels and regions (everything below and the
#: evaluation's label conventions derive from it). One row per tumor sub-region: its BraTS 2018-2021
#: label, its nnU-Net label (as nnU-Net's own Dataset137_BraTS21 conversion), its name, and the
#: evaluation regions it belongs to, listed from the outermost (whole tumor) inwards. Each
#: :class:`Release` gives its own label of every row.
LABEL_TABLE = (
    (1, 2, "necrotic and non-enhancing tumor core", ("WT", "TC")),
    (2, 1, "peritumoral edema", ("WT",)),
    (4, 3, "enhancing tumor", ("WT", "TC", "ET")),
)
#: the BraTS evaluation regions: whole tumor, tumor core, enhancing tumor.
REGIONS = ("WT", "TC", "ET")
REGION_NAMES = {"WT": "whole tumor", "TC": "tumor core", "ET": "enhancing tumor"}

#: BraTS 2018-2021 labels: 1 necrosis / non-enhancing core, 2 edema, 4 enhancing tumor (0 background).
BRATS_LABELS = (0, *sorted(brats for brats, *_ in LABEL_TABLE))
BRATS_TO_NNUNET = {0: 0, **{brats: nnunet for brats, nnunet, *_ in LABEL_TABLE}}
NNUNET_TO_BRATS = {v: k for k, v in BRATS_TO_NNUNET.items()}


def region_labels(convention: str) -> dict[str, tuple[int, ...]]:
    """Region (WT/TC/ET) -> the labels it is made of, in the ``brats`` or ``nnunet`` labels.

    Args:
        convention: ``"brats"`` (the 2018-2021 releases: 1, 2, 4) or ``"nnunet"`` (a converted dataset: 1-3).
    """
    column = {"brats": 0, "nnunet": 1}[convention]
    return {region: tuple(sorted(row[column] for row in LABEL_TABLE if region in row[3])) for region in REGIONS}


#: the labels of each region per label convention (see :func:`region_labels`).
LABEL_CONVENTIONS: dict[str, dict[str, tuple[int, ...]]] = {c: region_labels(c) for c in ("nnunet", "brats")}
#: region-based training: the ``labels`` of a converted dataset.json (nnU-Net labels).
REGION_LABELS = {"background": 0, **{REGION_NAMES[region]: list(labels) if len(labels) > 1 else labels[0]
                                     for region, labels in LABEL_CONVENTIONS["nnunet"].items()}}
#: the label each region's voxels get when nnU-Net turns regions back into labels: the label of
#: the sub-region whose innermost region it is (edema for WT, necrosis for TC, enhancing for ET).
REGIONS_CLASS_ORDER = [next(nnunet for _, nnunet, _, regions in LABEL_TABLE if regions[-1] == region)
                       for region in REGIONS]

#: folder layouts: 2018/2019 training releases sort case folders into HGG/ and LGG/; the other BraTS
#: releases (and every validation release) are one folder of case folders, one file per modality;
#: a Decathlon task holds imagesTr/ (one 4-D file per case), labelsTr/ and imagesTs/.
GRADED, CASE_FOLDERS, DECATHLON = "graded", "case folders", "decathlon"
GRADE_FOLDERS = ("HGG", "LGG")
#: the Decathlon's folders of training images, their labels and the test images.
DECATHLON_FOLDERS = ("imagesTr", "labelsTr", "imagesTs")
#: the role of a Decathlon case's one 4-D image file in :attr:`ReleaseCase.images`.
VOLUME = "volume"


@dataclass(frozen=True)
class Release:
    """Everything release-specific the converters need: one row of :data:`RELEASES`.

    Args:
        key: what selects it: the year (``"2021"``; ``--year 2021``) or ``"msd"`` (``--msd``).
        title: how messages name it (``"BraTS 2023 glioma (GLI)"``).
        dataset_name: the name part of ``Dataset<ID>_<name>`` and of dataset.json's ``name``.
        default_id: the nnU-Net dataset ID ``convert-brats`` uses without ``-d``.
        reference: where the release is described (dataset.json ``reference``).
        layout: :data:`GRADED`, :data:`CASE_FOLDERS` or :data:`DECATHLON`.
        modalities: the release's names of T1, T1ce, T2 and FLAIR (nnU-Net channels 0-3): the file
            suffixes, or for a Decathlon task the names its dataset.json gives the channels.
        labels: the release's label of each :data:`LABEL_TABLE` row (necrosis/non-enhancing core,
            edema, enhancing tumor); background is 0 everywhere.
        case_pattern: a regular expression every case name of the release matches (case-insensitive).
        case_example: one real case name, for messages.
        synthetic_names: ``str.format`` patterns of the case names ``synth`` writes for a training
            and a validation (Decathlon: test) release, numbered from 1.
        year: the BraTS year (dataset.json ``brats_year``); None for a release that is no BraTS release.
        separator: what separates case name and modality in a file name (``_`` or ``-``).
        seg_suffixes: file suffixes that name a segmentation (compared case-insensitively).
        volume_channels: Decathlon: the modality names in the order of the 4-D volume's channels.
        synthetic_ending: the file ending ``synth`` writes (the release's own).
        quirk_seg: (case, file name) of a segmentation the release names differently, as ``synth`` writes it.
        name_mapping: the CSV files beside the cases of a training and a validation release, if any.
        portal_name: ``str.format`` pattern (``{case}``) of the file name the challenge's online evaluation expects.
        licence: dataset.json ``licence``.
    """

    key: str
    title: str
    dataset_name: str
    default_id: int
    reference: str
    layout: str
    modalities: tuple[str, ...]
    labels: tuple[int, ...]
    case_pattern: str
    case_example: str
    synthetic_names: tuple[str, str]
    year: int | None = None
    separator: str = "_"
    seg_suffixes: tuple[str, ...] = ("seg",)
    volume_channels: tuple[str, ...] = ()
    synthetic_ending: str = ".nii.gz"
    quirk_seg: tuple[str, str] | None = None
    name_mapping: tuple[str, str] | None = None
    portal_name: str = "{case}.nii.gz"
    licence: str | None = None

    @property
    def to_nnunet(self) -> dict[int, int]:
        """Release label -> nnU-Net label (background included)."""
        return {0: 0, **{label: row[1] for label, row in zip(self.labels, LABEL_TABLE)}}

    @property
    def label_values(self) -> list[int]:
        """Every label a segmentation of the release may hold, sorted."""
        return sorted(self.to_nnunet)

    @property
    def label_mapping(self) -> str:
        """The label map to nnU-Net as text (``"2->1, 1->2, 4->3"``), for dataset.json and messages."""
        return ", ".join(f"{label}->{row[1]}" for label, row in sorted(zip(self.labels, LABEL_TABLE),
                                                                       key=lambda p: p[1][1]))

    @cached_property
    def _tables(self) -> tuple[np.ndarray, np.ndarray]:
        forward = self.to_nnunet
        return _lookup_table(forward), _lookup_table({v: k for k, v in forward.items()})

    def matches(self, case: str) -> bool:
        """Whether ``case`` is a case name of this release (:attr:`case_pattern`, case-insensitive)."""
        return re.fullmatch(self.case_pattern, case, re.IGNORECASE) is not None

    def portal_file_name(self, case: str) -> str:
        """The file name the release's online evaluation expects for a case.

        BraTS 2018-2020 (CBICA IPP) and 2021/2023 (Synapse) match an uploaded segmentation to its
        case by the name ``<case>.nii.gz`` (``BraTS20_Validation_001.nii.gz``,
        ``BraTS-GLI-00001-000.nii.gz``); the Decathlon's submissions name each file as its test image.
        """
        return self.portal_name.format(case=case)


def _lookup_table(mapping: dict[int, int]) -> np.ndarray:
    table = np.full(max(mapping) + 1, _INVALID, np.uint8)
    for src, dst in mapping.items():
        table[src] = dst
    return table


_INVALID = 255
_BRATS = ("t1", "t1ce", "t2", "flair")   # the BraTS 2018-2021 file suffixes (= MODALITIES)
_UPENN = "https://www.med.upenn.edu/{}/brats{}/data.html"

#: every release the project converts, by key (``--year`` value or ``msd``).
RELEASES: dict[str, Release] = {r.key: r for r in (
    Release("2018", "BraTS 2018", "BraTS2018", 502, _UPENN.format("sbia", 2018), GRADED, _BRATS, (1, 2, 4),
            r"Brats18_.+", "Brats18_CBICA_AAB_1", ("Brats18_SYN_{:03d}_1", "Brats18_SYNVAL_{:03d}_1"), 2018),
    Release("2019", "BraTS 2019", "BraTS2019", 501, _UPENN.format("cbica", 2019), GRADED, _BRATS, (1, 2, 4),
            r"BraTS19_.+", "BraTS19_CBICA_AAB_1", ("BraTS19_SYN_{:03d}_1", "BraTS19_SYNVAL_{:03d}_1"), 2019),
    Release("2020", "BraTS 2020", "BraTS2020", 500, _UPENN.format("cbica", 2020), CASE_FOLDERS, _BRATS, (1, 2, 4),
            r"BraTS20_.+", "BraTS20_Training_001", ("BraTS20_Training_{:03d}", "BraTS20_Validation_{:03d}"), 2020,
            seg_suffixes=("seg", "segm"), synthetic_ending=".nii",
            quirk_seg=("BraTS20_Training_355", "W39_1998.09.19_Segm.nii"),
            name_mapping=("name_mapping.csv", "name_mapping_validation_data.csv")),
    Release("2021", "BraTS 2021", "BraTS2021", 503, "https://www.synapse.org/#!Synapse:syn25829067/wiki/610863",
            CASE_FOLDERS, _BRATS, (1, 2, 4), r"BraTS2021_\d+", "BraTS2021_00000",
            ("BraTS2021_{:05d}", "BraTS2021_9{:04d}"), 2021),
    Release("2023", "BraTS 2023 glioma (GLI)", "BraTS2023GLI", 504,
            "https://www.synapse.org/#!Synapse:syn51156910/wiki/622351", CASE_FOLDERS, ("t1n", "t1c", "t2w", "t2f"),
            (1, 2, 3), r"BraTS-GLI-\d+-\d+", "BraTS-GLI-00000-000",
            ("BraTS-GLI-{:05d}-000", "BraTS-GLI-9{:04d}-000"), 2023, separator="-"),
    Release("msd", "Medical Segmentation Decathlon Task01_BrainTumour", "MSDBrainTumour", 505,
            "http://medicaldecathlon.com/", DECATHLON, ("T1w", "t1gd", "T2w", "FLAIR"), (2, 1, 3),
            r"BRATS_\d+", "BRATS_001", ("BRATS_{:03d}", "BRATS_9{:02d}"),
            volume_channels=("FLAIR", "T1w", "t1gd", "T2w"), licence="CC-BY-SA 4.0"),
)}
#: the BraTS years the project converts (``--year``).
YEARS = tuple(r.year for r in RELEASES.values() if r.year is not None)
DEFAULT_DATASET_IDS = {r.key: r.default_id for r in RELEASES.values()}
#: the Decathlon's names of its labels (its dataset.json), per nnU-Net label.
DECATHLON_LABEL_NAMES = {"0": "background", "1": "edema", "2": "non-enhancing tumor", "3": "enhancing tumour"}

NIFTI_ENDINGS = (".nii.gz", ".nii")
_IGNORED_FOLDERS = ("__MACOSX",)


def get_release(release: int | str | Release) -> Release:
    """The :class:`Release` of a key (``2021``, ``"2021"``, ``"msd"``), or a :class:`DruwasError`.

    Args:
        release: a BraTS year, ``"msd"``, or a :class:`Release` (returned as is).
    """
    if isinstance(release, Release):
        return release
    key = str(release).strip().lower()
    if key not in RELEASES:
        raise DruwasError(f"release {release} is not supported; use a BraTS year "
                          f"({', '.join(map(str, YEARS))}) or msd (the Decathlon's Task01_BrainTumour)")
    return RELEASES[key]


def is_converted_dataset(info: dict) -> bool:
    """Whether a parsed dataset.json has the labels and region order of a dataset made by convert-brats."""
    labels = {k: (list(v) if isinstance(v, (list, tuple)) else v) for k, v in info.get("labels", {}).items()}
    return labels == REGION_LABELS and list(info.get("regions_class_order", [])) == REGIONS_CLASS_ORDER


def release_of_dataset(info: dict) -> Release | None:
    """The release a converted dataset.json records (``release``, or ``brats_year`` of older
    conversions); None when it records neither.

    Args:
        info: the parsed dataset.json.
    """
    if info.get("release") is not None:
        return get_release(info["release"])
    if info.get("brats_year") is not None:
        return get_release(info["brats_year"])
    return None


def _remap(array: np.ndarray, table: np.ndarray) -> tuple[np.ndarray | None, list]:
    """``table[array]`` as uint8, or ``None`` and the values the table does not map.

    Label images may be stored as floats; values must then be integral. Non-integral
    values are reported rounded to 3 digits.
    """
    data = np.asanyarray(array)
    if not np.issubdtype(data.dtype, np.integer):
        as_int = np.rint(data)
        not_integral = as_int != data
        if not_integral.any():
            return None, [float(v) for v in np.unique(np.round(data[not_integral], 3))[:8]]
        data = as_int
    lo, hi = data.min(), data.max()
    if lo < 0 or hi >= len(table):
        values = np.unique(data)
        return None, [int(v) for v in values if not 0 <= v < len(table) or table[int(v)] == _INVALID][:8]
    mapped = table[data.astype(np.intp, copy=False) if data.dtype.kind == "f" else data]
    invalid = mapped == _INVALID
    if invalid.any():
        return None, [int(v) for v in np.unique(data[invalid])[:8]]
    return mapped, []


def to_nnunet_labels(labels: np.ndarray, release: int | str | Release = "2020") -> tuple[np.ndarray | None, list]:
    """A release's labels (BraTS 2018-2021: 0, 1, 2, 4) -> nnU-Net labels (0-3), uint8; or ``None``
    and the values that are no label of the release.

    Args:
        labels: a segmentation as released.
        release: the release whose labels ``labels`` holds.
    """
    return _remap(labels, get_release(release)._tables[0])


def to_brats_labels(nnunet: np.ndarray, release: int | str | Release = "2020") -> tuple[np.ndarray | None, list]:
    """nnU-Net labels (0-3) -> the release's labels (BraTS 2018-2021: 0, 1, 2, 4), uint8; or ``None``
    and the values that are no nnU-Net label.

    Args:
        nnunet: a label map of a converted dataset (or a prediction of it).
        release: the release whose labels to write.
    """
    return _remap(nnunet, get_release(release)._tables[1])


@dataclass
class ReleaseCase:
    """One case of a release: its image files (by the release's modality name, or :data:`VOLUME`
    for a Decathlon case's 4-D file) and (training) segmentation."""

    case: str
    folder: Path
    images: dict[str, Path] = field(default_factory=dict)
    seg: Path | None = None
    grade: str | None = None


def strip_nifti_ending(name: str) -> str | None:
    """``name`` without ``.nii``/``.nii.gz``, or ``None`` when it is no NIfTI file."""
    for ending in NIFTI_ENDINGS:
        if name.lower().endswith(ending):
            return name[: -len(ending)]
    return None


def _file_role(stem: str, release: Release) -> str | None:
    """The modality (release name, ``t1`` ...) or ``seg`` a file stem names by its last part."""
    suffix = stem.rsplit(release.separator, 1)[-1].lower() if release.separator in stem else ""
    for modality in release.modalities:
        if suffix == modality.lower():
            return modality
    if suffix in release.seg_suffixes:
        return "seg"
    return None


def _nifti_files(folder: Path) -> list[tuple[Path, str]]:
    """(file, name without ending) of every NIfTI file in ``folder`` (hidden files such as macOS's
    ``._`` copies skipped)."""
    files = []
    for path in sorted(folder.iterdir()):
        stem = strip_nifti_ending(path.name)
        if stem is not None and not path.name.startswith(".") and path.is_file():
            files.append((path, stem))
    return files


def scan_case(folder: Path, release: int | str | Release = "2020", *, training: bool,
              grade: str | None = None) -> tuple[ReleaseCase, list[str]]:
    """Find the files of one case folder without reading them.

    A file belongs to a modality by its suffix (``<case>_t1ce.nii.gz``, 2023:
    ``<case>-t1c.nii.gz``), in either ending; a segmentation ends in ``_seg`` or, like case 355
    of the 2020 release (``W39_1998.09.19_Segm.nii``), in ``_Segm``. Non-NIfTI files are ignored.

    Args:
        folder: the case folder; its name is the case identifier.
        release: the release (its modality names, separator and segmentation suffixes).
        training: whether a segmentation is required (validation releases have none,
            and a segmentation there is not read).
        grade: ``HGG``/``LGG`` when the release sorts cases by grade.

    Returns:
        The case and the list of problems found (missing, duplicate or unexpected files).
    """
    release = get_release(release)
    case = ReleaseCase(folder.name, folder, grade=grade)
    found: dict[str, list[Path]] = {}
    problems = []
    sep = release.separator
    for path, stem in _nifti_files(folder):
        role = _file_role(stem, release)
        if role is None:
            problems.append(f"case {case.case}: unexpected image file {path} (expected "
                            f"{case.case}{sep}{{{','.join(release.modalities)},seg}}.nii[.gz]); remove or rename it")
            continue
        found.setdefault(role, []).append(path)
    if not found and not problems:
        return case, [f"case {case.case}: {folder} holds no .nii/.nii.gz files"]
    for role in (*release.modalities, "seg") if training else release.modalities:
        paths = found.get(role, [])
        if not paths:
            what = "segmentation" if role == "seg" else f"{role} image"
            problems.append(f"case {case.case}: missing {what} ({folder / f'{case.case}{sep}{role}.nii.gz'} "
                            f"or .nii not found)")
        elif len(paths) > 1:
            problems.append(f"case {case.case}: duplicate {role} files {', '.join(map(str, paths))}; keep one")
        elif role == "seg":
            case.seg = paths[0]
        else:
            case.images[role] = paths[0]
    return case, problems


def _case_folders(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir()
                  if p.is_dir() and not p.name.startswith(".") and p.name not in _IGNORED_FOLDERS)


def _scan_decathlon(src: Path, release: Release, training: bool) -> tuple[list[ReleaseCase], list[str]]:
    """The cases of a Decathlon task: ``imagesTr/<case>.nii.gz`` with ``labelsTr/<case>.nii.gz``
    (training) or ``imagesTs/<case>.nii.gz`` (test)."""
    images_dir, labels_dir, test_dir = (src / name for name in DECATHLON_FOLDERS)
    folder = images_dir if training else test_dir
    images, problems = _files_by_case(folder)
    cases = [ReleaseCase(stem, folder, images={VOLUME: path}) for stem, path in images.items()]
    if training:
        labels, label_problems = _files_by_case(labels_dir)
        problems += label_problems
        for case in cases:
            case.seg = labels.pop(case.case, None)
            if case.seg is None:
                problems.append(f"case {case.case}: missing segmentation ({labels_dir / case.case}.nii.gz "
                                f"or .nii not found)")
        problems += [f"case {stem}: {path} has no image in {images_dir}" for stem, path in labels.items()]
    return cases, problems


def _files_by_case(folder: Path) -> tuple[dict[str, Path], list[str]]:
    """Case name -> its one NIfTI file in ``folder``, and a problem for each case with two."""
    files: dict[str, Path] = {}
    problems = []
    for path, stem in _nifti_files(folder):
        if stem in files:
            problems.append(f"case {stem}: duplicate files {files[stem]}, {path}; keep one")
        files.setdefault(stem, path)
    return files, problems


def _check_layout(src: Path, release: Release, training: bool) -> None:
    """Refuse a folder whose layout is another release's (the message says which option fits)."""
    kind = "training" if training else "validation"
    decathlon = all((src / name).is_dir() for name in DECATHLON_FOLDERS[:2])
    if release.layout == DECATHLON and not decathlon:
        raise DruwasError(f"{src} has no imagesTr/ and labelsTr/ folders: it is not a Decathlon task folder "
                          f"(Task01_BrainTumour); for a BraTS release use --year instead of --msd")
    if release.layout != DECATHLON and decathlon:
        raise DruwasError(f"{src} has imagesTr/ and labelsTr/, the layout of a Medical Segmentation Decathlon "
                          f"task, not of a {release.title} {kind} release; use --msd")
    graded = any((src / g).is_dir() for g in GRADE_FOLDERS)
    if training and release.layout == GRADED and not graded:
        raise DruwasError(f"{src} has no HGG/ or LGG/ folder: the {release.title} training release sorts cases "
                          f"into HGG/ and LGG/; is this the right folder and year?")
    if graded and (release.layout != GRADED or not training):
        raise DruwasError(f"{src} has HGG/ and LGG/ folders, the layout of a 2018/2019 training release, "
                          f"but a {release.title} {kind} release is one folder of case folders; check --year")


def scan_release(src: Path, release: int | str | Release, *, training: bool = True
                 ) -> tuple[list[ReleaseCase], list[str]]:
    """Find every case of a release folder as released, without reading image data.

    Layouts: 2018 and 2019 training releases hold ``HGG/<case>/`` and ``LGG/<case>/``
    folders of ``.nii.gz`` files; the 2020, 2021 and 2023 training releases and every validation
    release hold the case folders directly (2020 as ``.nii``, with ``name_mapping.csv``); a
    Decathlon task holds ``imagesTr/``, ``labelsTr/`` and ``imagesTs/``. Either file ending is
    accepted in every layout.

    Args:
        src: the release folder (the one holding ``HGG``/``LGG``, the case folders, or ``imagesTr``).
        release: the release (a year, ``"msd"`` or a :class:`Release`); the folder must have its layout.
        training: a training release (segmentations required) or a validation release
            (Decathlon: the test images of ``src/imagesTs``).

    Returns:
        The cases (sorted by identifier) and the list of problems found.

    Raises:
        DruwasError: ``src`` is no folder, holds no cases, or has another release's layout or case names.
    """
    release = get_release(release)
    src = Path(src)
    if not src.is_dir():
        raise DruwasError(f"{src} is not a folder; pass the folder of the {release.title} release")
    _check_layout(src, release, training)
    kind = "training" if training else "validation"
    if release.layout == DECATHLON:
        cases, problems = _scan_decathlon(src, release, training)
        names = [c.case for c in cases]
        where = src / DECATHLON_FOLDERS[0 if training else 2]
    else:
        graded = [src / g for g in GRADE_FOLDERS if (src / g).is_dir()]
        folders = [(p, g.name) for g in graded for p in _case_folders(g)] if graded else \
            [(p, None) for p in _case_folders(src)]
        names = [folder.name for folder, _ in folders]
        where = src
    if not names:
        raise DruwasError(f"no cases found in {where}; pass the {release.title} {kind} release folder "
                          f"(the one holding the case {'files' if release.layout == DECATHLON else 'folders'})")
    for other in RELEASES.values():
        if other is not release and all(other.matches(n) for n in names):
            raise DruwasError(f"{src} holds {other.title} cases (names like {other.case_example}), not "
                              f"{release.title} cases (names like {release.case_example}); check --year/--msd")
    if release.layout != DECATHLON:
        cases, problems = [], []
        for folder, grade in folders:
            case, case_problems = scan_case(folder, release, training=training, grade=grade)
            cases.append(case)
            problems += case_problems
        if all(not c.images and c.seg is None for c in cases):
            raise DruwasError(f"no case folder with images in {src}; pass the {release.title} {kind} release "
                              f"folder itself (the one holding the case folders)")
    seen: dict[str, Path] = {}
    for case in cases:
        if case.case in seen:
            problems.append(f"case {case.case}: two folders with this name, {seen[case.case]} and {case.folder}")
        seen[case.case] = case.folder
    return sorted(cases, key=lambda c: c.case), problems
