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
        self._data = data

    @property
    def gz_bytes(self) -> bytes:
        if self._raw is not None:
            return self._raw
        return gzip.compress(self._data, compresslevel=GZIP_LEVEL, mtime=0)

    def volume_gz_bytes(self, channel: int) -> bytes:
        """One 3-D volume of a 4-D image as a ``.nii.gz`` file, without changing its data.

        The header stays byte for byte what it was apart from the 4th dimension (``dim[0]`` becomes
        3, ``dim[4]`` 1); extensions and data type, scaling, affine and units are kept, and the data
        are the volume's bytes as stored (NIfTI stores each volume of a 4-D image contiguously).

        Args:
            channel: the index along the 4th dimension.
        """
        import numpy as np

        header = self.image.header
        shape = self.image.shape
        dim_type = np.dtype(header.endianness + "i2")
        dims = np.frombuffer(self._data, dim_type, count=8, offset=_DIM_OFFSET).copy()
        dims[0], dims[4] = 3, 1
        offset = int(np.frombuffer(self._data, header.endianness + "f4", count=1, offset=_VOX_OFFSET_OFFSET)[0])
        block = int(np.prod(shape[:3])) * header.get_data_dtype().itemsize
        data = b"".join((self._data[:_DIM_OFFSET], dims.tobytes(), self._data[_DIM_OFFSET + dims.nbytes:offset],
                         self._data[offset + channel * block:offset + (channel + 1) * block]))
        return gzip.compress(data, compresslevel=GZIP_LEVEL, mtime=0)


#: where a NIfTI-1 header stores ``dim`` (8 int16: the number of dimensions, then the size of each)
#: and ``vox_offset`` (float32: where the data begin; nibabel's image header no longer has it).
_DIM_OFFSET, _VOX_OFFSET_OFFSET = 40, 108


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
