"""What the project knows about BraTS releases, in one place.

Modalities and their nnU-Net channels, the label maps both ways, the region
definition of the converted dataset, the folder layouts of the 2018, 2019 and
2020 releases (including the 2020 segmentation file with a foreign name), the
default dataset IDs and the file names the online evaluation portal expects.
:mod:`~nnunetv2_druwas.data.convert`, :mod:`~nnunetv2_druwas.data.export` and
:mod:`~nnunetv2_druwas.data.synth` read all of this from here.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from nnunetv2_druwas.errors import DruwasError

YEARS = (2018, 2019, 2020)

#: BraTS file suffix of each modality, in nnU-Net channel order (_0000 .. _0003).
MODALITIES = ("t1", "t1ce", "t2", "flair")
CHANNEL_NAMES = {"0": "T1", "1": "T1ce", "2": "T2", "3": "FLAIR"}
#: suffixes that name a segmentation: ``_seg``, and ``_Segm`` for the one 2020 case below.
SEG_SUFFIXES = ("seg", "segm")

#: The BraTS label table, the one place that states labels and regions (everything below and the
#: evaluation's label conventions derive from it). One row per tumor sub-region: its BraTS label,
#: its nnU-Net label (as nnU-Net's own Dataset137_BraTS21 conversion), its name, and the evaluation
#: regions it belongs to, listed from the outermost (whole tumor) inwards.
LABEL_TABLE = (
    (1, 2, "necrotic and non-enhancing tumor core", ("WT", "TC")),
    (2, 1, "peritumoral edema", ("WT",)),
    (4, 3, "enhancing tumor", ("WT", "TC", "ET")),
)
#: the BraTS evaluation regions: whole tumor, tumor core, enhancing tumor.
REGIONS = ("WT", "TC", "ET")
REGION_NAMES = {"WT": "whole tumor", "TC": "tumor core", "ET": "enhancing tumor"}

#: BraTS labels: 1 necrosis / non-enhancing core, 2 edema, 4 enhancing tumor (0 background).
BRATS_LABELS = (0, *sorted(brats for brats, *_ in LABEL_TABLE))
BRATS_TO_NNUNET = {0: 0, **{brats: nnunet for brats, nnunet, *_ in LABEL_TABLE}}
NNUNET_TO_BRATS = {v: k for k, v in BRATS_TO_NNUNET.items()}


def region_labels(convention: str) -> dict[str, tuple[int, ...]]:
    """Region (WT/TC/ET) -> the labels it is made of, in the ``brats`` or ``nnunet`` labels.

    Args:
        convention: ``"brats"`` (the releases: 1, 2, 4) or ``"nnunet"`` (a converted dataset: 1-3).
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

DEFAULT_DATASET_IDS = {2020: 500, 2019: 501, 2018: 502}
REFERENCES = {
    2018: "https://www.med.upenn.edu/sbia/brats2018/data.html",
    2019: "https://www.med.upenn.edu/cbica/brats2019/data.html",
    2020: "https://www.med.upenn.edu/cbica/brats2020/data.html",
}

#: 2018 and 2019 training releases sort cases into these folders; 2020 and all validation
#: releases are one flat folder of case folders.
GRADE_FOLDERS = ("HGG", "LGG")
#: how the case identifiers of each year's releases begin (compared case-insensitively).
CASE_PREFIXES = {2018: "Brats18_", 2019: "BraTS19_", 2020: "BraTS20_"}
#: case folder names of (training, validation) releases, as ``name.format(i)``; real 2018/2019
#: names carry institution codes (``Brats18_CBICA_AAB_1``), the synthetic ones ``SYN`` (training) and
#: ``SYNVAL`` (validation), so that a synthetic validation release converts beside the training one.
CASE_NAMES = {
    2018: (f"{CASE_PREFIXES[2018]}SYN_{{:03d}}_1", f"{CASE_PREFIXES[2018]}SYNVAL_{{:03d}}_1"),
    2019: (f"{CASE_PREFIXES[2019]}SYN_{{:03d}}_1", f"{CASE_PREFIXES[2019]}SYNVAL_{{:03d}}_1"),
    2020: (f"{CASE_PREFIXES[2020]}Training_{{:03d}}", f"{CASE_PREFIXES[2020]}Validation_{{:03d}}"),
}
#: the 2020 training release names the segmentation of case 355 ``W39_1998.09.19_Segm.nii``.
QUIRK_2020_CASE = "BraTS20_Training_355"
QUIRK_2020_SEG = "W39_1998.09.19_Segm.nii"
NAME_MAPPING_2020 = ("name_mapping.csv", "name_mapping_validation_data.csv")

NIFTI_ENDINGS = (".nii.gz", ".nii")
_IGNORED_FOLDERS = ("__MACOSX",)


def dataset_name(year: int) -> str:
    """``BraTS2020`` for 2020: the name part of ``Dataset500_BraTS2020``."""
    return f"BraTS{year}"


def check_year(year: int) -> int:
    """``year`` as an int, or a :class:`DruwasError` for a release the project does not know."""
    if int(year) not in YEARS:
        raise DruwasError(f"BraTS year {year} is not supported; use one of {', '.join(map(str, YEARS))}")
    return int(year)


def portal_file_name(case: str, year: int) -> str:
    """The file name the BraTS 2018-2020 online evaluation (CBICA IPP) expects for a case.

    The portal matched each uploaded segmentation to a case by its file name, the
    case identifier followed by ``.nii.gz`` (e.g. ``BraTS20_Validation_001.nii.gz``);
    the same rule held for 2018 and 2019.
    """
    check_year(year)
    return f"{case}.nii.gz"


def _lookup_table(mapping: dict[int, int]) -> np.ndarray:
    table = np.full(max(mapping) + 1, _INVALID, np.uint8)
    for src, dst in mapping.items():
        table[src] = dst
    return table


_INVALID = 255
_TO_NNUNET = _lookup_table(BRATS_TO_NNUNET)
_TO_BRATS = _lookup_table(NNUNET_TO_BRATS)


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


def to_nnunet_labels(brats: np.ndarray) -> tuple[np.ndarray | None, list]:
    """BraTS labels (0, 1, 2, 4) -> nnU-Net labels (0-3), uint8; or ``None`` and the bad values."""
    return _remap(brats, _TO_NNUNET)


def to_brats_labels(nnunet: np.ndarray) -> tuple[np.ndarray | None, list]:
    """nnU-Net labels (0-3) -> BraTS labels (0, 1, 2, 4), uint8; or ``None`` and the bad values."""
    return _remap(nnunet, _TO_BRATS)


@dataclass
class ReleaseCase:
    """One case folder of a release: its modality files and (training) segmentation."""

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


def _file_role(stem: str) -> str | None:
    """The modality (``t1`` ...) or ``seg`` a file stem names by its last ``_`` part."""
    suffix = stem.rsplit("_", 1)[-1].lower() if "_" in stem else ""
    if suffix in MODALITIES:
        return suffix
    if suffix in SEG_SUFFIXES:
        return "seg"
    return None


def scan_case(folder: Path, *, training: bool, grade: str | None = None) -> tuple[ReleaseCase, list[str]]:
    """Find the files of one case folder without reading them.

    A file belongs to a modality by its suffix (``<case>_t1ce.nii.gz``), in either
    ending; a segmentation ends in ``_seg`` or, like case 355 of the 2020 release
    (``W39_1998.09.19_Segm.nii``), in ``_Segm``. Non-NIfTI files are ignored.

    Args:
        folder: the case folder; its name is the case identifier.
        training: whether a segmentation is required (validation releases have none,
            and a segmentation there is not read).
        grade: ``HGG``/``LGG`` when the release sorts cases by grade.

    Returns:
        The case and the list of problems found (missing, duplicate or unexpected files).
    """
    case = ReleaseCase(folder.name, folder, grade=grade)
    found: dict[str, list[Path]] = {}
    problems = []
    for path in sorted(folder.iterdir()):
        stem = strip_nifti_ending(path.name)
        if stem is None or path.name.startswith("."):
            continue
        role = _file_role(stem)
        if role is None:
            problems.append(f"case {case.case}: unexpected image file {path} (expected "
                            f"{case.case}_{{{','.join(MODALITIES)},seg}}.nii[.gz]); remove or rename it")
            continue
        found.setdefault(role, []).append(path)
    if not found and not problems:
        return case, [f"case {case.case}: {folder} holds no .nii/.nii.gz files"]
    for role in (*MODALITIES, "seg") if training else MODALITIES:
        paths = found.get(role, [])
        if not paths:
            what = "segmentation" if role == "seg" else f"{role} image"
            problems.append(f"case {case.case}: missing {what} ({folder / f'{case.case}_{role}.nii.gz'} "
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


def scan_release(src: Path, year: int, *, training: bool = True) -> tuple[list[ReleaseCase], list[str]]:
    """Find every case of a release folder as released, without reading image data.

    Layouts: 2018 and 2019 training releases hold ``HGG/<case>/`` and ``LGG/<case>/``
    folders of ``.nii.gz`` files; the 2020 training release and every validation
    release hold the case folders directly (2020 as ``.nii``, with ``name_mapping.csv``).
    Either file ending is accepted in every layout.

    Args:
        src: the release folder (the one holding ``HGG``/``LGG`` or the case folders).
        year: the BraTS year; a training release must have that year's layout.
        training: a training release (segmentations required) or a validation release.

    Returns:
        The cases (sorted by identifier) and the list of problems found.

    Raises:
        DruwasError: ``src`` is no folder, holds no cases, or has another year's layout or case names.
    """
    year = check_year(year)
    src = Path(src)
    if not src.is_dir():
        raise DruwasError(f"{src} is not a folder; pass the folder of the BraTS {year} release")
    graded = [src / g for g in GRADE_FOLDERS if (src / g).is_dir()]
    kind = "training" if training else "validation"
    if training and year in (2018, 2019) and not graded:
        raise DruwasError(f"{src} has no HGG/ or LGG/ folder: the BraTS {year} training release sorts cases "
                          f"into HGG/ and LGG/; is this the right folder and year?")
    if graded and (year == 2020 or not training):
        raise DruwasError(f"{src} has HGG/ and LGG/ folders, the layout of a 2018/2019 training release, "
                          f"but a BraTS {year} {kind} release is one folder of case folders; check --year")
    folders = [(p, g.name) for g in graded for p in _case_folders(g)] if graded else \
        [(p, None) for p in _case_folders(src)]
    if not folders:
        raise DruwasError(f"no case folders found in {src}; pass the BraTS {year} {kind} release folder "
                          f"(the one holding the case folders)")
    names = [folder.name.lower() for folder, _ in folders]
    for other, prefix in CASE_PREFIXES.items():
        if other != year and all(n.startswith(prefix.lower()) for n in names):
            raise DruwasError(f"{src} holds BraTS {other} cases (names start with {prefix}), not BraTS {year} "
                              f"cases; check --year")
    cases, problems = [], []
    for folder, grade in folders:
        case, case_problems = scan_case(folder, training=training, grade=grade)
        cases.append(case)
        problems += case_problems
    if all(not c.images and c.seg is None for c in cases):
        raise DruwasError(f"no case folder with images in {src}; pass the BraTS {year} {kind} release folder "
                          f"itself (the one holding the case folders)")
    seen: dict[str, Path] = {}
    for case in cases:
        if case.case in seen:
            problems.append(f"case {case.case}: two folders with this name, {seen[case.case]} and {case.folder}")
        seen[case.case] = case.folder
    return sorted(cases, key=lambda c: c.case), problems
