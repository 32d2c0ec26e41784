"""Benchmark: ``evaluate_folder`` against a straightforward medpy evaluation of the same cases.

Writes synthetic 240 x 240 x 155 BraTS-sized cases (irregular tumours with edema,
necrosis and enhancing rim; the prediction is the ground truth perturbed, some with
a false-positive blob or a missed region), then times, alternating and repeated:

- ours: :func:`nnunetv2_druwas.evaluation.evaluate_folder` (the whole command: reading,
  all metrics, CSV writing);
- medpy: per case, the same file reading, then ``medpy.metric.binary.dc`` and ``hd95``
  on the full volume per region, with the same empty-mask conventions.

Both with 1 and with 2 processes over cases; the medians are reported, and the
values of the two are compared.

    python -m nnunetv2_druwas.benchmarks.evaluate [--cases 6] [--repeats 3]
"""
from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from pathlib import Path

import numpy as np

from nnunetv2_druwas.evaluation.evaluate import find_cases, read_segmentation
from nnunetv2_druwas.evaluation.metrics import BRATS_EMPTY_HD95, LABEL_CONVENTIONS

SHAPE = (240, 240, 155)


def synthetic_tumour(center: np.ndarray, radius: float, noise: np.ndarray) -> np.ndarray:
    """A label map (1 edema, 2 necrosis, 3 enhancing) of an irregular tumour.

    Args:
        center: tumour centre in voxels.
        radius: mean whole-tumour radius in voxels.
        noise: smooth field of SHAPE that makes the outline irregular.
    """
    from scipy.ndimage import binary_dilation

    grid = np.ogrid[tuple(slice(0, n) for n in SHAPE)]
    r = np.sqrt(sum((g - c) ** 2 for g, c in zip(grid, center)))
    value = 1.0 - r / radius + noise
    seg = np.zeros(SHAPE, np.uint8)
    seg[value > 0] = 1
    core = value > 0.3
    seg[core] = 3
    seg[core & ~binary_dilation(~core, iterations=3)] = 2  # enhancing rim 3 voxels thick
    return seg


def smooth_field(rng: np.random.Generator, amplitude: float) -> np.ndarray:
    """A smooth random field of SHAPE (coarse noise, linearly upsampled)."""
    from scipy.ndimage import zoom

    coarse = rng.normal(0, amplitude, (13, 13, 9))
    return zoom(coarse, [s / c for s, c in zip(SHAPE, coarse.shape)], order=1)[: SHAPE[0], : SHAPE[1], : SHAPE[2]]


def write_cases(folder: Path, n_cases: int, seed: int = 0) -> tuple[Path, Path]:
    """Write ``n_cases`` ground truths and perturbed predictions; returns (pred_dir, gt_dir)."""
    import nibabel as nib

    rng = np.random.default_rng(seed)
    pred_dir, gt_dir = folder / "pred", folder / "gt"
    pred_dir.mkdir(parents=True)
    gt_dir.mkdir()
    affine = np.eye(4)
    for i in range(n_cases):
        center = rng.uniform([80, 80, 50], [160, 160, 105])
        radius = rng.uniform(26, 38)
        noise = smooth_field(rng, 0.25)
        gt = synthetic_tumour(center, radius, noise)
        pred = synthetic_tumour(center + rng.normal(0, 1.0, 3), radius * rng.uniform(0.95, 1.05),
                                noise + smooth_field(rng, 0.04))
        if i % 3 == 1:  # a false-positive blob far from the tumour
            blob_center = np.where(center < 120, center + 60, center - 60)
            pred = np.maximum(pred, synthetic_tumour(blob_center, 4.0, np.zeros(SHAPE)))
        if i % 3 == 2:  # the prediction misses the enhancing tumour
            pred[pred == 3] = 2
        nib.save(nib.Nifti1Image(gt, affine), gt_dir / f"CASE_{i:03d}.nii.gz")
        nib.save(nib.Nifti1Image(pred, affine), pred_dir / f"CASE_{i:03d}.nii.gz")
    return pred_dir, gt_dir


def medpy_case(pred_path: Path, gt_path: Path) -> list[tuple[float, float]]:
    """(Dice, HD95) per region of one case by medpy on the full volume, BraTS empty conventions."""
    from medpy.metric.binary import dc, hd95

    pred, spacing = read_segmentation(pred_path)
    gt, _ = read_segmentation(gt_path)
    values = []
    for labels in LABEL_CONVENTIONS["nnunet"].values():
        p, g = np.isin(pred, labels), np.isin(gt, labels)
        if p.any() and g.any():
            values.append((dc(p, g), hd95(p, g, voxelspacing=spacing)))
        else:
            values.append((dc(p, g), 0.0 if p.any() == g.any() else BRATS_EMPTY_HD95))
    return values


def medpy_folder(pred_dir: Path, gt_dir: Path, num_processes: int) -> np.ndarray:
    """The medpy evaluation of every case, as an array (case, region, [dice, hd95])."""
    pred_cases, gt_cases = find_cases(pred_dir), find_cases(gt_dir)
    jobs = [(pred_cases[case], gt_cases[case]) for case in gt_cases]
    if num_processes <= 1:
        return np.array([medpy_case(*job) for job in jobs])
    with ProcessPoolExecutor(num_processes, mp_context=get_context("spawn")) as pool:
        return np.array(list(pool.map(medpy_case, *zip(*jobs))))


def ours_folder(pred_dir: Path, gt_dir: Path, num_processes: int) -> np.ndarray:
    """Our whole evaluation (including writing the CSVs), as an array like :func:`medpy_folder`."""
    from nnunetv2_druwas.evaluation import evaluate_folder

    df = evaluate_folder(pred_dir, gt_dir, pred_dir.parent / "metrics.csv", labels="nnunet",
                         num_processes=num_processes, progress=False)
    return df[["dice", "hd95"]].to_numpy().reshape(-1, 3, 2)


def build_parser() -> argparse.ArgumentParser:
    """The parser of ``python -m nnunetv2_druwas.benchmarks.evaluate``."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", type=int, default=6, help="number of synthetic cases (default 6)")
    parser.add_argument("--repeats", type=int, default=3, help="alternating repeats per setting (default 3)")
    parser.add_argument("--processes", type=int, nargs="+", default=[1, 2],
                        help="process counts to compare (default 1 2)")
    return parser


def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        pred_dir, gt_dir = write_cases(Path(tmp), args.cases)
        print(f"{args.cases} synthetic cases of {' x '.join(map(str, SHAPE))}, regions WT/TC/ET, HD95 'brats'; "
              f"median of {args.repeats} alternating runs (all runs in seconds)\n")
        print("| processes | ours (s) | medpy (s) | speed-up | max abs diff Dice | max abs diff HD95 (mm) "
              "| runs ours | runs medpy |")
        print("|---|---|---|---|---|---|---|---|")
        for processes in args.processes:
            times: dict[str, list[float]] = {"ours": [], "medpy": []}
            results: dict[str, np.ndarray] = {}
            for _ in range(args.repeats):
                for name, evaluate in (("ours", ours_folder), ("medpy", medpy_folder)):
                    start = time.perf_counter()
                    results[name] = evaluate(pred_dir, gt_dir, processes)
                    times[name].append(time.perf_counter() - start)
            difference = np.abs(results["ours"] - results["medpy"]).max(axis=(0, 1))
            ours, medpy = statistics.median(times["ours"]), statistics.median(times["medpy"])
            runs = {name: ", ".join(f"{t:.2f}" for t in values) for name, values in times.items()}
            print(f"| {processes} | {ours:.2f} | {medpy:.2f} | {medpy / ours:.1f}x | {difference[0]:.1e} "
                  f"| {difference[1]:.1e} | {runs['ours']} | {runs['medpy']} |", flush=True)


if __name__ == "__main__":
    main()
