"""How long ``convert-brats`` takes on full-size BraTS cases, extrapolated to the 369 cases of 2020.

Synthesizes a few 240 x 240 x 155 cases in the 2020 layout (``.nii``, which must be
compressed) and the 2019 layout (``.nii.gz``, copied byte for byte), converts them
with :func:`~nnunetv2_druwas.data.convert.convert_brats` (which also checks every
case) and, side by side, the plain way of nnU-Net's ``Dataset137_BraTS21.py``
(images re-written or copied, labels converted by SimpleITK, one process, no
checks). Prints seconds per case and the extrapolation; nothing is asserted.

Run::

    python -m nnunetv2_druwas.benchmarks.convert [--cases 3] [--shape 240 240 155] [-np 2]
"""
from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Callable

from nnunetv2_druwas.data.brats import MODALITIES, scan_release

FULL_2020 = 369


def _plain_conversion(src: Path, year: int, out: Path) -> None:
    """Dataset137_BraTS21-style: copy (or re-write as .nii.gz) images, convert labels; no checks."""
    import SimpleITK as sitk
    from nnunetv2.dataset_conversion.Dataset137_BraTS21 import copy_BraTS_segmentation_and_convert_labels_to_nnUNet

    (out / "imagesTr").mkdir(parents=True)
    (out / "labelsTr").mkdir()
    cases, _ = scan_release(src, year)
    for case in cases:
        for channel, modality in enumerate(MODALITIES):
            target = out / "imagesTr" / f"{case.case}_{channel:04d}.nii.gz"
            if case.images[modality].name.endswith(".nii.gz"):
                shutil.copy(case.images[modality], target)
            else:
                sitk.WriteImage(sitk.ReadImage(str(case.images[modality])), str(target), useCompression=True)
        copy_BraTS_segmentation_and_convert_labels_to_nnUNet(str(case.seg), str(out / "labelsTr" / f"{case.case}.nii.gz"))


def _timed(function: Callable[[], object]) -> float:
    start = time.perf_counter()
    function()
    return time.perf_counter() - start


def build_parser() -> argparse.ArgumentParser:
    """The parser of ``python -m nnunetv2_druwas.benchmarks.convert``."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", type=int, default=3, help="synthetic cases per layout (default 3)")
    parser.add_argument("--shape", type=int, nargs=3, default=[240, 240, 155], help="case size (BraTS: 240 240 155)")
    parser.add_argument("-np", "--num-processes", type=int, default=2, help="worker processes of convert-brats")
    parser.add_argument("--no-plain", action="store_true", help="skip the Dataset137-style reference conversion")
    return parser


def main(argv: list[str] | None = None) -> None:
    from nnunetv2_druwas.data.convert import convert_brats
    from nnunetv2_druwas.data.synth import make_brats_release

    args = build_parser().parse_args(argv)

    rows = []
    with tempfile.TemporaryDirectory(prefix="druwas_bench_convert_") as tmp:
        tmp = Path(tmp)
        raw = {"nnUNet_raw": str(tmp / "raw")}   # convert-brats writes here, not into the user's folder
        (tmp / "raw").mkdir()
        for year in (2020, 2019):
            src = tmp / f"src{year}"
            seconds = _timed(lambda: make_brats_release(src, year, args.cases, args.shape, seed=0,
                                                        num_processes=1))
            rows.append(("synth (1 process)", year, seconds))
            for processes in sorted({1, args.num_processes}):
                seconds = _timed(lambda: convert_brats(src, year, overwrite=True, num_processes=processes,
                                                       progress=False, environ=raw))
                rows.append((f"convert-brats, checked ({processes} process{'es' * (processes > 1)})",
                             year, seconds))
            if not args.no_plain:
                seconds = _timed(lambda: _plain_conversion(src, year, tmp / f"plain{year}"))
                rows.append(("Dataset137-style plain copy (1 process)", year, seconds))

    shape = "x".join(map(str, args.shape))
    print(f"{args.cases} synthetic cases of {shape} per layout (2020: .nii sources, 2019: .nii.gz sources), "
          f"{os.cpu_count()} CPUs")
    print(f"| step | layout | s/case | {FULL_2020} cases (min) |")
    print("|---|---|---|---|")
    for name, year, seconds in rows:
        per_case = seconds / args.cases
        print(f"| {name} | {year} | {per_case:.2f} | {per_case * FULL_2020 / 60:.1f} |")


if __name__ == "__main__":
    main()
