"""Data in and out: BraTS releases to nnU-Net datasets, predictions back to BraTS, synthetic data.

This module holds the few file mechanics the converters share: reading a NIfTI file
once (bytes kept, so a compressed source is copied without loss) and collected problems
raised as one error. Their output folders appear complete or not at all
(:func:`nnunetv2_druwas.files.staged_folder`); cases run over
:func:`nnunetv2_druwas.parallel.parallel_map`.
"""
from __future__ import annotations

import gzip
import zlib
from pathlib import Path
from typing import Sequence

from nnunetv2_druwas.errors import DruwasError

#: gzip level for files the converters compress (1: fast, about the size nibabel writes).
GZIP_LEVEL = 1
#: how many problems an error message lists before it says "and N more".
MAX_REPORTED = 20


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
