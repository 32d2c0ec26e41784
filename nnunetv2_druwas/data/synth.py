"""``nnunetv2_druwas synth``: synthetic BraTS-like releases for the demo and the tests.

Every release the project converts (:data:`~nnunetv2_druwas.data.brats.RELEASES`: BraTS
2018-2021, 2023 glioma, the Decathlon's Task01_BrainTumour) can be written in its own layout,
file names and labels, from the same synthetic cases.

Each case is a skull-stripped ellipsoidal "brain" (white matter, a cortical grey
matter shell, CSF at the surface and in two ventricles, a wobbly outline) with a
glioma: peritumoral edema around a tumor core that is, in high-grade cases, a
contrast-enhancing rim around a necrotic centre and, in low-grade cases (a quarter
by default), a non-enhancing core. Every tissue has the relative intensity it has
in T1, T1ce, T2 and FLAIR (edema bright in T2/FLAIR, the rim bright in T1ce, CSF
dark in FLAIR...), multiplied by a smooth bias field per modality, plus noise.
Tumor size, shape, orientation and position are random. A case depends only on
``(seed, case number, shape)``, so arrays are identical run to run.

Example::

    nnunetv2_druwas synth /tmp/synth_brats --cases 10 --shape 64 64 48 --seed 0
    nnunetv2_druwas convert-brats /tmp/synth_brats --year 2020
    nnunetv2_druwas synth /tmp/Task01_BrainTumour --msd --cases 10 --test-cases 2
"""
from __future__ import annotations

import argparse
import csv
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from nnunetv2_druwas.data import nifti_gz_bytes
from nnunetv2_druwas.data.brats import (
    DECATHLON, DECATHLON_FOLDERS, DECATHLON_LABEL_NAMES, GRADE_FOLDERS, GRADED, MODALITIES, Release, get_release,
    to_brats_labels, to_nnunet_labels,
)
from nnunetv2_druwas.errors import DruwasError
from nnunetv2_druwas.files import staged_folder
from nnunetv2_druwas.parallel import parallel_map

DEFAULT_SHAPE = (64, 64, 48)
DEFAULT_CASES = 10

# tissue codes of the synthetic anatomy
BACKGROUND, CSF, GM, WM, EDEMA, NECROSIS, ENHANCING, NON_ENHANCING = range(8)
#: relative intensity of each tissue (rows in the order of the codes above) per modality.
CONTRAST = np.array([
    # t1    t1ce   t2    flair
    [0.00, 0.00, 0.00, 0.00],  # background (skull-stripped: exactly 0)
    [0.35, 0.35, 1.80, 0.30],  # CSF: dark in T1, bright in T2, suppressed in FLAIR
    [0.70, 0.72, 1.10, 0.90],  # grey matter
    [1.00, 1.00, 0.70, 0.75],  # white matter
    [0.60, 0.62, 1.50, 1.60],  # edema: bright in T2 and FLAIR
    [0.40, 0.45, 1.70, 1.10],  # necrosis
    [0.75, 1.70, 1.10, 1.30],  # enhancing rim: bright in T1ce
    [0.55, 0.58, 1.50, 1.50],  # non-enhancing core of low-grade tumors
], np.float32)
#: BraTS label of each tissue code.
TISSUE_TO_BRATS = np.array([0, 0, 0, 0, 2, 1, 4, 1], np.uint8)
NOISE = 0.03          # noise standard deviation, relative to the modality's white-matter intensity
BIAS = 0.15           # amplitude of the log bias field
LGG_FRACTION = 0.25   # share of cases without enhancing tumor


def _outer_sum(terms_x: np.ndarray, terms_y: np.ndarray, terms_z: np.ndarray) -> np.ndarray:
    """``sum_k terms_x[k, :, None, None] * terms_y[k, None, :, None] * terms_z[k, None, None, :]``.

    One matrix product, so a 240 x 240 x 155 field costs one pass over the volume.
    """
    xy = (terms_x[:, :, None] * terms_y[:, None, :]).reshape(len(terms_x), -1)
    out = xy.T.astype(np.float32) @ terms_z.astype(np.float32)
    return out.reshape(terms_x.shape[1], terms_y.shape[1], terms_z.shape[1])


def _smooth_field(rng: np.random.Generator, axes: Sequence[np.ndarray], frequency: float,
                  waves: int = 4) -> np.ndarray:
    """A smooth random field on the grid (about -1..1): a sum of separable cosine products.

    ``axes`` are the three coordinate vectors (mm); ``frequency`` is in cycles per mm.
    """
    f = rng.normal(0, frequency, (3, waves)) * 2 * np.pi
    p = rng.uniform(0, 2 * np.pi, (3, waves))
    x, y, z = (np.cos(f[i][:, None] * a[None, :] + p[i][:, None]) for i, a in enumerate(axes))
    return _outer_sum(x, y, z) / np.float32(np.sqrt(waves / 2))


def _ellipsoid_radius(axes: Sequence[np.ndarray], center: np.ndarray, semi_axes: np.ndarray,
                      rotation: np.ndarray | None = None) -> np.ndarray:
    """Normalized ellipsoid radius (1 on the surface) of every voxel; optional rotation.

    The squared radius is the quadratic form ``v^T A v`` of the voxel offset ``v``,
    written as a sum of separable products (9 terms) for :func:`_outer_sum`.
    """
    rotation = np.eye(3) if rotation is None else rotation
    m = rotation / np.asarray(semi_axes, float)[:, None]  # rows: rotated axes scaled by 1/semi-axis
    a = m.T @ m
    x, y, z = (np.asarray(ax, float) - c for ax, c in zip(axes, center))
    one = [np.ones_like(x), np.ones_like(y), np.ones_like(z)]
    coords = [x, y, z]
    terms = [[], [], []]
    for i in range(3):
        for j in range(3):
            factors = [o.copy() for o in one]
            factors[i] = factors[i] * coords[i]
            factors[j] = factors[j] * coords[j]
            factors[0] = factors[0] * a[i, j]
            for k in range(3):
                terms[k].append(factors[k])
    r2 = _outer_sum(*(np.stack(t) for t in terms))
    return np.sqrt(np.maximum(r2, 0, out=r2), out=r2)


def _random_rotation(rng: np.random.Generator) -> np.ndarray:
    q, r = np.linalg.qr(rng.normal(size=(3, 3)))
    return q * np.sign(np.diag(r))


def _check_shape(shape: Sequence[int]) -> tuple[int, int, int]:
    shape = tuple(int(s) for s in shape)
    if len(shape) != 3 or min(shape) < 8:
        raise DruwasError(f"shape {shape} is not usable; give three sizes of at least 8 voxels")
    return shape


@dataclass
class SyntheticCase:
    """One synthetic case: the four modalities (int16), the BraTS segmentation, the affine."""

    images: dict[str, np.ndarray]
    seg: np.ndarray
    affine: np.ndarray
    low_grade: bool


def synthesize_case(shape: Sequence[int] = DEFAULT_SHAPE, seed: int = 0, index: int = 1, *,
                    lgg_fraction: float = LGG_FRACTION) -> SyntheticCase:
    """Draw one synthetic case (1 mm isotropic voxels).

    Args:
        shape: volume size in voxels (e.g. ``(240, 240, 155)`` for BraTS size).
        seed: release seed; with ``index`` it fixes the case completely.
        index: case number within the release.
        lgg_fraction: probability that the case is low-grade (no enhancing tumor, no necrosis).
    """
    shape = _check_shape(shape)
    rng = np.random.default_rng([int(seed), int(index)])
    low_grade = bool(rng.random() < lgg_fraction)
    anatomy = _brain(rng, shape)
    _add_tumor(rng, anatomy, low_grade)
    images = _render(rng, anatomy, shape)
    seg = np.zeros(shape, np.uint8)
    seg[anatomy.box] = TISSUE_TO_BRATS[anatomy.tissue]
    affine = np.diag([-1.0, -1.0, 1.0, 1.0])
    affine[1, 3] = shape[1] - 1  # as in the BraTS releases: LPS-like axes, 1 mm voxels
    return SyntheticCase(images, seg, affine, low_grade)


@dataclass
class _Anatomy:
    """The tissue codes inside the brain's bounding box ``box`` of the volume, and its geometry."""
    box: tuple[slice, ...]        # the brain's bounding box in the volume; outside it everything is 0
    axes: list[np.ndarray]        # voxel coordinates (mm from the volume centre) along each axis of the box
    brain_axes: np.ndarray        # semi-axes of the brain ellipsoid (mm)
    tissue: np.ndarray            # tissue code per voxel of the box
    brain: np.ndarray             # inside the brain, per voxel of the box


def _brain(rng: np.random.Generator, shape: tuple[int, int, int]) -> _Anatomy:
    """A wobbly ellipsoidal brain filling most of the volume: CSF rim, grey matter shell, white
    matter, two lateral ventricles."""
    brain_axes = np.array(shape) * 0.5 * np.array([0.80, 0.84, 0.86]) * rng.uniform(0.9, 1.0, 3)
    # everything happens inside the brain's bounding box (with room for the wobble); outside is 0
    wobble, waves = 0.04, 4
    reach = brain_axes / (1 - wobble * np.sqrt(2 * waves)) + 1
    box = tuple(slice(max(0, int((n - 1) / 2 - e)), min(n, int(np.ceil((n - 1) / 2 + e)) + 1))
                for n, e in zip(shape, reach))
    axes = [np.arange(s.start, s.stop, dtype=np.float64) - (n - 1) / 2 for s, n in zip(box, shape)]
    inner = tuple(s.stop - s.start for s in box)

    r = _ellipsoid_radius(axes, np.zeros(3), brain_axes)
    field = _smooth_field(rng, axes, 1.5 / brain_axes.min(), waves)
    field *= wobble
    field += 1
    r *= field
    tissue = np.full(inner, BACKGROUND, np.uint8)
    tissue[r < 1] = CSF
    tissue[r < 0.96] = GM
    field = _smooth_field(rng, axes, 3.0 / brain_axes.min())
    field *= 0.06
    field += 0.80
    tissue[r < field] = WM
    brain = r < 1
    tissue[~brain] = BACKGROUND
    for side in (-1, 1):  # lateral ventricles
        center = np.array([side * 0.18, 0.05, 0.05]) * brain_axes
        ventricle = _ellipsoid_radius(axes, center, brain_axes * np.array([0.10, 0.35, 0.22]))
        tissue[ventricle < 1] = CSF
    return _Anatomy(box, axes, brain_axes, tissue, brain)


def _add_tumor(rng: np.random.Generator, anatomy: _Anatomy, low_grade: bool) -> None:
    """Edema around a core inside the brain; the core is an enhancing rim around necrosis, or
    non-enhancing when ``low_grade``."""
    axes, brain_axes, tissue = anatomy.axes, anatomy.brain_axes, anatomy.tissue
    size = rng.uniform(0.25, 0.5) * brain_axes.min()
    direction = rng.normal(size=3)
    center = direction / np.linalg.norm(direction) * rng.uniform(0, 0.55) * brain_axes
    d = _ellipsoid_radius(axes, center, size * rng.uniform(0.75, 1.25, 3), _random_rotation(rng))
    field = _smooth_field(rng, axes, 1.0 / size)
    field *= 0.15
    field += 1
    d *= field
    d[~anatomy.brain] = np.inf
    core_fraction = rng.uniform(0.45, 0.7) if not low_grade else rng.uniform(0.35, 0.6)
    tissue[d < 1] = EDEMA
    if low_grade:
        tissue[d < core_fraction] = NON_ENHANCING
    else:
        tissue[d < core_fraction] = ENHANCING
        tissue[d < core_fraction * rng.uniform(0.4, 0.7)] = NECROSIS


def _render(rng: np.random.Generator, anatomy: _Anatomy, shape: tuple[int, int, int]) -> dict[str, np.ndarray]:
    """The four modalities (int16): each tissue's contrast times a smooth bias field, plus noise."""
    contrast = CONTRAST * rng.uniform(0.92, 1.08, CONTRAST.shape).astype(np.float32)
    images = {}
    for m, modality in enumerate(MODALITIES):
        gain = np.float32(rng.uniform(400, 1200))
        value = _smooth_field(rng, anatomy.axes, 0.6 / anatomy.brain_axes.min(), waves=3)  # log bias field
        value *= BIAS
        np.exp(value, out=value)
        value *= contrast[:, m][anatomy.tissue]
        noise = rng.standard_normal(anatomy.tissue.shape, dtype=np.float32)
        noise *= NOISE
        noise *= anatomy.brain
        value += noise
        np.clip(value, 0, None, out=value)
        value *= gain
        images[modality] = np.zeros(shape, np.int16)
        images[modality][anatomy.box] = np.rint(value, out=value)
    return images


@dataclass
class _CaseJob:
    folder: Path
    case: str
    index: int
    shape: tuple[int, int, int]
    seed: int
    release: Release
    training: bool
    lgg_fraction: float


def _write_case(job: _CaseJob) -> tuple[str, str]:
    """Write one case's files in the release's layout, names and labels; returns (case, grade)."""
    import nibabel as nib

    release = job.release
    case = synthesize_case(job.shape, job.seed, job.index, lgg_fraction=job.lgg_fraction)
    grade = GRADE_FOLDERS[1] if case.low_grade else GRADE_FOLDERS[0]
    images = {name: case.images[ours] for name, ours in zip(release.modalities, MODALITIES)}
    labels = to_brats_labels(to_nnunet_labels(case.seg, "2020")[0], release)[0]
    if release.layout == DECATHLON:   # one 4-D float32 image in the task's channel order, labels beside it
        volume = np.stack([images[name] for name in release.volume_channels], axis=-1).astype(np.float32)
        images_dir, labels_dir, test_dir = DECATHLON_FOLDERS
        files = {Path(images_dir if job.training else test_dir, f"{job.case}.nii.gz"): volume}
        if job.training:
            files[Path(labels_dir, f"{job.case}.nii.gz")] = labels
    else:
        folder = Path(grade, job.case) if release.layout == GRADED and job.training else Path(job.case)
        ending, sep = release.synthetic_ending, release.separator
        files = {folder / f"{job.case}{sep}{name}{ending}": array for name, array in images.items()}
        if job.training:
            quirk = release.quirk_seg
            files[folder / (quirk[1] if quirk and quirk[0] == job.case else f"{job.case}{sep}seg{ending}")] = labels
    for name, array in files.items():
        image = nib.Nifti1Image(array, case.affine)
        image.header.set_xyzt_units("mm", "sec")
        path = job.folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(image.to_bytes() if path.name.endswith(".nii") else nifti_gz_bytes(image))
    return job.case, grade


def make_brats_release(out: str | Path, release: int | str | Release = 2020, n_cases: int = DEFAULT_CASES,
                       shape: Sequence[int] = DEFAULT_SHAPE, seed: int = 0, *, validation: bool = False,
                       test_cases: int = 0, first_case: int = 1, lgg_fraction: float = LGG_FRACTION,
                       overwrite: bool = False, num_processes: int = 1, progress: bool = False) -> Path:
    """Write a synthetic release in the layout of ``release``.

    2018/2019 training: ``HGG/<case>/<case>_{t1,t1ce,t2,flair,seg}.nii.gz`` and ``LGG/...``;
    2020 training: ``BraTS20_Training_XXX/..._{...}.nii`` plus ``name_mapping.csv``, with case
    355's segmentation named ``W39_1998.09.19_Segm.nii`` as in the real release; 2021:
    ``BraTS2021_XXXXX/BraTS2021_XXXXX_{flair,t1,t1ce,t2,seg}.nii.gz`` (labels 0/1/2/4); 2023:
    ``BraTS-GLI-XXXXX-000/BraTS-GLI-XXXXX-000-{t1n,t1c,t2w,t2f,seg}.nii.gz`` (labels 0-3);
    validation releases: flat case folders without segmentations. The Decathlon:
    ``imagesTr/BRATS_XXX.nii.gz`` (4-D float32: FLAIR, T1w, t1gd, T2w), ``labelsTr/BRATS_XXX.nii.gz``
    (1 edema, 2 non-enhancing, 3 enhancing), ``imagesTs/`` and its ``dataset.json``.

    Args:
        out: the release folder to create (must not exist, or be empty, unless ``overwrite``).
        release: a BraTS year (2018-2021, 2023) or ``"msd"``: the layout, names and labels.
        n_cases: number of (training) cases, numbered from ``first_case``.
        shape: volume size in voxels.
        seed: seed of the release; the same seed gives identical arrays.
        validation: write a validation release (no segmentations, validation case names); not for
            the Decathlon, whose test images are part of the task folder (``test_cases``).
        test_cases: the Decathlon only: cases in ``imagesTs`` (no labels).
        first_case: number of the first case. The number also seeds the case, so releases of one
            seed with disjoint numbers hold different cases of the same distribution (e.g. a
            held-out test release for ``convert-brats --test``).
        lgg_fraction: share of low-grade cases (no enhancing tumor).
        overwrite: replace an existing non-empty ``out`` (only once the new release is complete).
        num_processes: worker processes (0/1: this process).
        progress: show a progress bar.

    Returns:
        ``out``.
    """
    release = get_release(release)
    out = Path(out)
    if n_cases < 1:
        raise DruwasError(f"--cases must be at least 1, got {n_cases}")
    if first_case < 1:
        raise DruwasError(f"--first-case must be at least 1, got {first_case}")
    decathlon = release.layout == DECATHLON
    if decathlon and validation:
        raise DruwasError("the Decathlon has no separate validation release: its test images are imagesTs/ of "
                          "the task folder; use --test-cases")
    if test_cases and not decathlon:
        raise DruwasError(f"--test-cases is for the Decathlon's imagesTs/ (--msd); a {release.title} validation "
                          f"release is its own folder (--validation)")
    shape = _check_shape(shape)
    existing = out.exists() and (not out.is_dir() or any(out.iterdir()))
    if existing and not overwrite:
        raise DruwasError(f"{out} already exists and is not empty; choose another folder or pass --overwrite")
    out.parent.mkdir(parents=True, exist_ok=True)
    training_names, validation_names = release.synthetic_names
    with staged_folder(out, replace=[out] if out.exists() else []) as staging:
        jobs = [_CaseJob(staging, (validation_names if validation else training_names).format(i), i, shape, seed,
                         release, not validation, lgg_fraction) for i in range(first_case, first_case + n_cases)]
        jobs += [_CaseJob(staging, validation_names.format(i), first_case - 1 + n_cases + i, shape, seed, release,
                          False, lgg_fraction) for i in range(1, test_cases + 1)]
        grades = parallel_map(_write_case, jobs, num_processes, desc="synthesize", progress=progress)
        if release.name_mapping:
            _write_name_mapping(staging / release.name_mapping[1 if validation else 0], grades, validation)
        if decathlon:
            _write_decathlon_json(staging, jobs)
    return out


def _write_decathlon_json(folder: Path, jobs: list[_CaseJob]) -> None:
    """The task's ``dataset.json`` as the Decathlon writes it (and an ``imagesTs/``, possibly empty)."""
    images_dir, labels_dir, test_dir = DECATHLON_FOLDERS
    (folder / test_dir).mkdir(exist_ok=True)
    release = jobs[0].release
    training = [j.case for j in jobs if j.training]
    test = [j.case for j in jobs if not j.training]
    info = {
        "name": "BRATS",
        "description": "synthetic cases in the layout of the Decathlon's Task01_BrainTumour (nnunetv2_druwas synth)",
        "reference": release.reference,
        "licence": release.licence,
        "tensorImageSize": "4D",
        "modality": {str(i): name for i, name in enumerate(release.volume_channels)},
        "labels": dict(DECATHLON_LABEL_NAMES),
        "numTraining": len(training),
        "numTest": len(test),
        "training": [{"image": f"./{images_dir}/{c}.nii.gz", "label": f"./{labels_dir}/{c}.nii.gz"} for c in training],
        "test": [f"./{test_dir}/{c}.nii.gz" for c in test],
    }
    (folder / "dataset.json").write_text(json.dumps(info, indent=4))


def _write_name_mapping(path: Path, grades: list[tuple[str, str]], validation: bool) -> None:
    """The 2020 release's ``name_mapping.csv`` (grade and case name; other IDs ``NA``)."""
    columns = ["BraTS_2017_subject_ID", "BraTS_2018_subject_ID", "TCGA_TCIA_subject_ID",
               "BraTS_2019_subject_ID", "BraTS_2020_subject_ID"]
    with path.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(columns if validation else ["Grade", *columns])
        for case, grade in grades:
            row = ["NA"] * (len(columns) - 1) + [case]
            writer.writerow(row if validation else [grade, *row])


def synthesize(out_dir: str | Path, n_cases: int = DEFAULT_CASES, shape: Sequence[int] = DEFAULT_SHAPE,
               seed: int = 0, *, first_case: int = 1, lgg_fraction: float = LGG_FRACTION, overwrite: bool = False,
               num_processes: int = 1, progress: bool = True) -> Path:
    """A synthetic BraTS-2020-layout training release (see :func:`make_brats_release`)."""
    return make_brats_release(out_dir, 2020, n_cases, shape, seed, first_case=first_case, lgg_fraction=lgg_fraction,
                              overwrite=overwrite, num_processes=num_processes, progress=progress)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from nnunetv2_druwas.data.convert import add_release_arguments

    parser.add_argument("out", type=Path, help="release folder to create")
    parser.add_argument("--cases", type=int, default=DEFAULT_CASES, help=f"number of cases ({DEFAULT_CASES})")
    parser.add_argument("--shape", type=int, nargs=3, default=list(DEFAULT_SHAPE), metavar=("X", "Y", "Z"),
                        help="volume size in voxels (default %(default)s; BraTS: 240 240 155)")
    parser.add_argument("--seed", type=int, default=0, help="seed (default 0)")
    parser.add_argument("--first-case", type=int, default=1,
                        help="number of the first case (default 1); releases of one seed with disjoint numbers "
                             "hold different cases, e.g. a held-out test release for convert-brats --test")
    add_release_arguments(parser, required=False, what="its layout, file names and labels (default --year 2020)")
    parser.add_argument("--validation", action="store_true", help="a validation release (no segmentations)")
    parser.add_argument("--test-cases", type=int, default=0,
                        help="with --msd: cases in imagesTs/ (no labels; default 0)")
    parser.add_argument("--lgg-fraction", type=float, default=LGG_FRACTION,
                        help=f"share of cases without enhancing tumor (default {LGG_FRACTION})")
    parser.add_argument("--overwrite", action="store_true", help="replace OUT if it exists")
    parser.add_argument("-np", "--num-processes", type=int, default=1, help="worker processes (default 1)")


def run(args: argparse.Namespace) -> int:
    release = get_release(2020 if args.release is None else args.release)
    out = make_brats_release(args.out, release, args.cases, args.shape, args.seed, validation=args.validation,
                             test_cases=args.test_cases, first_case=args.first_case, lgg_fraction=args.lgg_fraction,
                             overwrite=args.overwrite,
                             num_processes=args.num_processes, progress=True)
    print(f"wrote {args.cases + args.test_cases} synthetic {release.title} cases to {out}")
    return 0
