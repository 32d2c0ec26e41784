"""Data in and out: BraTS releases to nnU-Net datasets, predictions back to BraTS, synthetic data.

This module holds the few file mechanics the converters share: reading a NIfTI file
once (bytes kept, so a compressed source is copied without loss), a parallel map
over cases with a progress bar, collected problems raised as one error, and an
output folder that appears complete or not at all.
"""
from __future__ import annotations

import gzip
import os
import shutil
import tempfile
import zlib
from concurrent.futures import ProcessPoolExecutor
from contextlib import contextmanager
from multiprocessing import get_context
from pathlib import Path
from typing import Callable, Iterator, Sequence, TypeVar

from nnunetv2_druwas.errors import DruwasError

#: gzip level for files the converters compress (1: fast, about the size nibabel writes).
GZIP_LEVEL = 1
#: how many problems an error message lists before it says "and N more".
MAX_REPORTED = 20

T = TypeVar("T")
R = TypeVar("R")


class NiftiFile:
    """A NIfTI file read once: its image (header, affine, data) and its bytes.

    ``gz_bytes`` is the file as it should be written with ``.nii.gz``: the original
    bytes when the source was compressed, otherwise the uncompressed bytes gzipped
    (with a fixed timestamp, so conversions are byte-reproducible).
    """

    def __init__(self, path: Path):
        import nibabel as nib
        import numpy as np

        self.path = Path(path)
        try:
            raw = self.path.read_bytes()
        except OSError as e:
            raise DruwasError(f"{self.path} cannot be read ({e.strerror or e})") from None
        compressed = raw[:2] == b"\x1f\x8b"
        try:
            data = gzip.decompress(raw) if compressed else raw
        except (OSError, EOFError, zlib.error) as e:
            raise DruwasError(f"{self.path} is a corrupt gzip file ({e}); download it again") from None
        try:
            self.image = nib.Nifti1Image.from_bytes(data)
            self.array = np.asanyarray(self.image.dataobj)
        except Exception as e:  # nibabel raises many types for damaged headers and short data
            raise DruwasError(f"{self.path} is not a readable NIfTI-1 image ({type(e).__name__}: {e}); "
                              f"download it again") from None
        self._raw = raw if compressed else None
        self._data = None if compressed else data

    @property
    def gz_bytes(self) -> bytes:
        if self._raw is not None:
            return self._raw
        return gzip.compress(self._data, compresslevel=GZIP_LEVEL, mtime=0)


def nifti_gz_bytes(image) -> bytes:
    """A nibabel image serialized as ``.nii.gz`` bytes (fixed timestamp)."""
    return gzip.compress(image.to_bytes(), compresslevel=GZIP_LEVEL, mtime=0)


def raise_problems(problems: Sequence[str], what: str) -> None:
    """Raise one :class:`DruwasError` listing ``problems`` (the first :data:`MAX_REPORTED`)."""
    if not problems:
        return
    lines = [f"  - {p}" for p in problems[:MAX_REPORTED]]
    if len(problems) > MAX_REPORTED:
        lines.append(f"  ... and {len(problems) - MAX_REPORTED} more")
    raise DruwasError(f"{what}: {len(problems)} problem(s), nothing was written\n" + "\n".join(lines))


def parallel_map(function: Callable[[T], R], jobs: Sequence[T], num_processes: int = 2,
                 desc: str = "", progress: bool = True) -> list[R]:
    """``[function(j) for j in jobs]`` over a process pool, in order, with a tqdm bar.

    Args:
        function: a module-level function (it is pickled to the workers).
        jobs: its arguments, one per call.
        num_processes: worker processes; 0 or 1 runs in this process.
        desc: label of the progress bar.
        progress: show the progress bar.
    """
    from tqdm import tqdm

    bar = tqdm(total=len(jobs), desc=desc, disable=not progress, unit="case")
    results: list[R] = []
    with bar:
        if num_processes <= 1 or len(jobs) <= 1:
            for job in jobs:
                results.append(function(job))
                bar.update()
            return results
        with ProcessPoolExecutor(min(num_processes, len(jobs)), mp_context=get_context("spawn")) as pool:
            for result in pool.map(function, jobs):
                results.append(result)
                bar.update()
    return results


@contextmanager
def staged_folder(target: Path, replace: Sequence[Path] = ()) -> Iterator[Path]:
    """A temporary folder beside ``target`` that becomes ``target`` only if the block succeeds.

    On success the folders in ``replace`` (e.g. an existing dataset being overwritten)
    are moved aside, the new folder is renamed into place and the old ones deleted;
    on any exception the temporary folder is removed and nothing else is touched.

    Args:
        target: the final folder; its parent must exist.
        replace: existing folders to remove once the new one is complete.
    """
    target = Path(target)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.partial-", dir=target.parent))
    umask = os.umask(0)
    os.umask(umask)
    staging.chmod(0o777 & ~umask)  # mkdtemp makes it private; the result should not be
    try:
        yield staging
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    trash = []
    for old in replace:
        if old.exists():
            moved = old.parent / f".{old.name}.replaced-{os.getpid()}"
            os.replace(old, moved)
            trash.append(moved)
    os.replace(staging, target)
    for moved in trash:
        shutil.rmtree(moved, ignore_errors=True)
