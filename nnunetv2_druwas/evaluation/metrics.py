"""Overlap and surface-distance metrics for one binary region, with the BraTS conventions.

Everything here works on boolean NumPy arrays of any dimension (2D or 3D) and a
spacing per axis in mm. The masks are cropped to their joint bounding box before
any morphology, and surface distances come from a KD-tree over the surface
voxels, so a tumour in a 240 x 240 x 155 volume costs milliseconds; the values
are those of the full-volume computation (see :func:`surfaces`).

Two HD95 definitions are offered (:data:`HD95_DEFINITIONS`):

- ``"brats"``: the BraTS 2018-2020 evaluation, i.e. ``medpy.metric.binary.hd95``:
  the distances from each surface to the other are pooled and their 95th
  percentile is taken.
- ``"max_directed"``: the paper's Eq. 2 and MONAI's
  ``compute_hausdorff_distance(..., percentile=95)``: the larger of the two
  directed 95th percentiles.

Example:
    >>> import numpy as np
    >>> a = np.zeros((20, 20, 20), bool); a[5:10, 5:10, 5:10] = True
    >>> b = np.roll(a, 2, axis=0)
    >>> round(hd95(a, b, spacing=(1.0, 1.0, 1.0)), 6)
    2.0
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
from scipy.ndimage import binary_erosion, generate_binary_structure
from scipy.spatial import cKDTree

# Region name -> its labels per label convention ("nnunet": a converted dataset, 1 edema, 2 necrosis,
# 3 enhancing; "brats": the releases, 1 necrosis, 2 edema, 4 enhancing), from the BraTS label table.
from nnunetv2_druwas.data.brats import LABEL_CONVENTIONS

HD95_DEFINITIONS = ("brats", "max_directed")
# The diagonal of a 240 x 240 x 155 volume at 1 mm: BraTS' HD95 when exactly one mask is empty.
BRATS_EMPTY_HD95 = 373.13


def bounding_box(mask: np.ndarray) -> tuple[slice, ...] | None:
    """The smallest box (one slice per axis) that holds every true voxel; None if there is none.

    Args:
        mask: an array of any dimension; nonzero counts as inside.
    """
    box = []
    for axis in range(mask.ndim):
        hit = np.flatnonzero(mask.any(axis=tuple(a for a in range(mask.ndim) if a != axis)))
        if hit.size == 0:
            return None
        box.append(slice(int(hit[0]), int(hit[-1]) + 1))
    return tuple(box)


def surfaces(*masks: np.ndarray) -> list[np.ndarray]:
    """The surface voxels of each mask: the mask minus its erosion by the 6-connected cross.

    The masks are cropped to their joint bounding box first and the surfaces are
    returned for that crop (all masks share it). This equals medpy's and MONAI's
    full-volume surface restricted to the box: outside the box every mask is empty,
    and scipy's erosion treats voxels beyond the array as background, so a voxel on
    the crop border is eroded exactly when it would be in the full volume.

    Args:
        masks: boolean arrays of one shape; at least one voxel must be set in one of them.
    """
    box = bounding_box(np.logical_or.reduce(masks))
    if box is None:
        raise ValueError("surfaces() needs at least one non-empty mask")
    structure = generate_binary_structure(masks[0].ndim, 1)
    cropped = [np.ascontiguousarray(m[box], dtype=bool) for m in masks]
    return [m ^ binary_erosion(m, structure=structure) for m in cropped]


def surface_distances(pred: np.ndarray, ref: np.ndarray,
                      spacing: Sequence[float]) -> tuple[np.ndarray, np.ndarray]:
    """Distances in mm from every surface voxel of each mask to the nearest surface voxel of the other.

    Args:
        pred: boolean mask, not empty.
        ref: boolean mask of the same shape, not empty.
        spacing: voxel size along each array axis, in mm.

    Returns:
        ``(pred_to_ref, ref_to_pred)``: one distance per surface voxel of ``pred``
        (resp. ``ref``), as medpy's ``__surface_distances(pred, ref)`` (resp. ``(ref, pred)``).
    """
    scale = np.asarray(spacing, dtype=np.float64)
    points = [np.argwhere(s) * scale for s in surfaces(pred, ref)]
    pred_to_ref = cKDTree(points[1]).query(points[0], k=1)[0]
    ref_to_pred = cKDTree(points[0]).query(points[1], k=1)[0]
    return pred_to_ref, ref_to_pred


def hd95(pred: np.ndarray, ref: np.ndarray, spacing: Sequence[float], definition: str = "brats",
         empty_hd95: float = BRATS_EMPTY_HD95) -> float:
    """The 95th-percentile Hausdorff distance in mm, with BraTS' values for empty masks.

    Args:
        pred: boolean prediction mask.
        ref: boolean reference mask of the same shape.
        spacing: voxel size along each array axis, in mm.
        definition: ``"brats"`` pools the distances of both directions and takes
            their 95th percentile (medpy's ``hd95``); ``"max_directed"`` takes the
            larger of the two directed 95th percentiles (MONAI, the paper's Eq. 2).
        empty_hd95: the value when exactly one of the masks is empty (both empty: 0).
    """
    if definition not in HD95_DEFINITIONS:
        raise ValueError(f"unknown HD95 definition {definition!r}; choose one of {HD95_DEFINITIONS}")
    has_pred, has_ref = bool(pred.any()), bool(ref.any())
    if not has_pred and not has_ref:
        return 0.0
    if has_pred != has_ref:
        return float(empty_hd95)
    pred_to_ref, ref_to_pred = surface_distances(pred, ref, spacing)
    if definition == "brats":
        return float(np.percentile(np.concatenate([pred_to_ref, ref_to_pred]), 95))
    return float(max(np.percentile(pred_to_ref, 95), np.percentile(ref_to_pred, 95)))


def dice(pred: np.ndarray, ref: np.ndarray) -> float:
    """Dice = 2|P and R| / (|P| + |R|); 1 when both masks are empty (BraTS).

    Args:
        pred: boolean prediction mask.
        ref: boolean reference mask of the same shape.
    """
    return _overlap_metrics(pred, ref, total=pred.size)["dice"]


def region_metrics(pred: np.ndarray, ref: np.ndarray, spacing: Sequence[float], *,
                   hd95_definition: str = "brats", empty_hd95: float = BRATS_EMPTY_HD95,
                   total: int | None = None) -> dict[str, float | int]:
    """Dice, HD95, sensitivity, specificity and voxel counts of one region.

    Args:
        pred: boolean prediction mask (may be a crop of the full volume that holds every set voxel).
        ref: boolean reference mask of the same shape.
        spacing: voxel size along each array axis, in mm.
        hd95_definition: see :func:`hd95`.
        empty_hd95: HD95 when exactly one mask is empty.
        total: the number of voxels of the full volume, for specificity when
            ``pred``/``ref`` are crops; defaults to their size.

    Returns:
        dict with ``dice``, ``hd95``, ``sensitivity`` (NaN when the reference is
        empty), ``specificity``, ``n_pred``, ``n_ref`` and ``n_tp`` (voxels in both).
    """
    metrics = _overlap_metrics(pred, ref, total=pred.size if total is None else total)
    metrics["hd95"] = hd95(pred, ref, spacing, hd95_definition, empty_hd95)
    return metrics


def voxel_counts(pred: np.ndarray, ref: np.ndarray) -> dict[str, int]:
    """``n_pred``, ``n_ref`` and ``n_tp``: the voxels of each mask and of both.

    Args:
        pred: boolean prediction mask.
        ref: boolean reference mask of the same shape.
    """
    return {"n_pred": int(np.count_nonzero(pred)), "n_ref": int(np.count_nonzero(ref)),
            "n_tp": int(np.count_nonzero(pred & ref))}


def _overlap_metrics(pred: np.ndarray, ref: np.ndarray, total: int) -> dict[str, float | int]:
    counts = voxel_counts(pred, ref)
    n_pred, n_ref, n_tp = counts["n_pred"], counts["n_ref"], counts["n_tp"]
    n_negative = total - n_ref
    return {
        "dice": 1.0 if n_pred + n_ref == 0 else 2.0 * n_tp / (n_pred + n_ref),
        "sensitivity": n_tp / n_ref if n_ref else float("nan"),
        "specificity": (n_negative - (n_pred - n_tp)) / n_negative if n_negative else float("nan"),
        **counts,
    }
