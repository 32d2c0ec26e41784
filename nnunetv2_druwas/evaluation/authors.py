"""The ``authors`` evaluation protocol: one case scored the way the authors' public code scores it.

The 3D-DRUwAS paper does not publish its evaluation code. Its authors' later model, ADRUwAMS, does:
https://github.com/myaghoubisuraki/ADRUwAMS, read at commit ``3e2109b1e23073d01e26f6c9ddbcf3b6defb8649``
(the three files below are unchanged since their upload in ``0a14b46``, 16 April 2024). This module
re-implements its rules for label maps on disk (it shares no code with that repository):

1. **Centring shift.** ``DataLoaders.py`` lines 30-32 load the reference segmentation as stored
   (``load_img``, lines 89-92: the BraTS values 0/1/2/4) and compute the shift from it;
   ``calculate_shift_for_centering`` (lines 65-69) is
   ``shape // 2 - np.round(scipy.ndimage.center_of_mass(seg)).astype(int)``: the centre of mass of
   the label map *weighted by label value*, rounded half to even (``np.round``). ``apply_shift``
   (lines 71-86) translates by that offset into a zero-filled array; lines 36-39 and 47 apply the
   same offset to the four images and the mask. Here both the prediction and the reference get it.
2. **Crop.** ``center_crop`` (lines 99-101, applied in lines 40 and 48): ``[56:184, 56:184, 13:141]``,
   128^3 of a 240 x 240 x 155 BraTS volume. Any other shape is refused here.
3. **Regions.** ``preprocess_mask_labels`` (lines 104-122): WT = {1, 2, 4}, TC = {1, 4}, ET = {4}.
4. **Dice.** ``Metrics.py``, ``dice_coef_metric_per_classes`` (lines 93-118): ``(2|A and B| + eps) /
   (|A| + |B|)`` with ``eps = 1e-9`` (line 96) added to the numerator only, and 1 when both masks are
   empty (lines 113-114). So a prediction of an absent region scores 1e-9 / |A|, not 0, and a perfect
   one 1 + 1e-9 / (2|A|).
5. **HD95.** ``Evaluations.py``: ``image_to_coordinates`` (lines 10-11) takes *every* voxel of a mask
   (not its surface); ``calculate_hd95`` (lines 14-19) pools the nearest-neighbour distances of both
   directions (KD-trees) and takes ``np.percentile(..., 95)`` (linear interpolation), in voxels.
   ``hausdorff_coef_metric_per_classes`` (lines 23-49): 0 when both masks are empty (lines 40-41);
   ``sqrt(shape[2]^2 + shape[3]^2)`` of the (batch, region, 128, 128, 128) array, i.e.
   sqrt(128^2 + 128^2) = 181.02, when exactly one is (lines 33, 42-43).

Decisions where the code says nothing or cannot apply:

- **The reference's BraTS values** come from its regions, so any label convention works: a voxel in
  ET is 4, in TC but not ET 1, in WT but not TC 2 (for nnU-Net's labels 1/2/3 this equals
  :func:`nnunetv2_druwas.data.brats.to_brats_labels`). Labels that are in no region count as background
  (:func:`nnunetv2_druwas.evaluation.evaluate.evaluate_case` refuses such label maps before scoring).
- **A reference without any tumour** is not shifted. The authors' code would take the centre of mass
  of an all-zero array (NaN) and fail or shift arbitrarily; every BraTS 2018-2020 training case has a
  tumour.
- **Sensitivity and specificity** are not reported (NaN in ``nnunetv2_druwas evaluate``'s CSV): the paper's
  tables give Dice and HD95 only, and the code's ``spf_coef_metric_per_classes`` (``Metrics.py`` lines
  120-142) computes ``(|A and B| + eps) / |A|``, the precision, under the name specificity.
- **Missing predictions** score Dice 0 and HD95 sqrt(128^2 + 128^2) in every region (a failure, as
  BraTS scores one), counted in the crop of the shifted reference.
- **Volumes of another size** are refused; ``--pad-to-brats`` (:func:`pad_to_authors_shape`) is an
  explicit opt-in that zero-pads smaller ones symmetrically to 240 x 240 x 155 first (the demo's
  40 x 40 x 32 cases). The spacing is never used: HD95 is in voxels, as in the authors' code.
- **Predictions are label maps of the full volume**, shifted and cropped after prediction. In the
  authors' pipeline the network only ever sees the reference-centred crop (the ground truth steers
  the input), and its output is thresholded there: ``compute_scores_per_classes`` (lines 53-93) passes
  the raw logits (the network has no sigmoid: ``Models/ADRUwAMS.py`` lines 163 and 196-199) to metric
  functions that threshold at 0.5, i.e. sigmoid >= 0.62, not 0.5. Neither can be reproduced from
  label maps; both only change which voxels are predicted, not how a prediction is scored.

Example:
    >>> import numpy as np
    >>> ref = np.zeros((240, 240, 155), np.uint8); ref[20:30, 20:30, 20:30] = 2; ref[23:27, 23:27, 23:27] = 4
    >>> rows = authors_case_metrics(ref, ref, {"WT": (1, 2, 4), "TC": (1, 4), "ET": (4,)}, "case_1")
    >>> [(r["region"], round(r["dice"], 6), r["hd95"], r["n_ref"]) for r in rows]
    [('WT', 1.0, 0.0, 1000), ('TC', 1.0, 0.0, 64), ('ET', 1.0, 0.0, 64)]
"""
from __future__ import annotations

import math

import numpy as np
from scipy.ndimage import center_of_mass
from scipy.spatial import cKDTree

from nnunetv2_druwas.errors import DruwasError
from nnunetv2_druwas.evaluation.metrics import bounding_box, surfaces

AUTHORS_SHAPE = (240, 240, 155)                                       # BraTS 2018-2020 volumes
AUTHORS_CROP = (slice(56, 184), slice(56, 184), slice(13, 141))       # DataLoaders.py line 101
AUTHORS_DICE_EPS = 1e-9                                               # Metrics.py line 96
AUTHORS_EMPTY_HD95 = math.sqrt(128 ** 2 + 128 ** 2)                   # Evaluations.py line 33
# The BraTS value of a voxel, from the innermost region that holds it (WT > TC > ET, nested).
BRATS_VALUE_OF_REGION = (("WT", 2), ("TC", 1), ("ET", 4))


def pad_to_authors_shape(volume: np.ndarray, case: str, what: str) -> np.ndarray:
    """``volume`` zero-padded to 240 x 240 x 155, ``(target - n) // 2`` zeros before it along each axis and
    the rest after it: the explicit opt-in (``--pad-to-brats``) that lets smaller data, such as the demo's
    40 x 40 x 32 cases, be scored under this protocol. A volume of that shape is returned unchanged.

    Padding is not part of the authors' rules: it places the volume in a BraTS-sized frame (background all
    around), after which the centring shift and the crop act as on BraTS data. Because the shift centres
    the reference's tumour, where the volume sits in the frame matters only through what the shift and the
    crop cut off.

    Args:
        volume: a 3D label map no larger than 240 x 240 x 155 along any axis.
        case: the case id, for error messages.
        what: ``prediction`` or ``ground truth``, for error messages.

    Raises:
        DruwasError: the volume is not 3D or is larger than 240 x 240 x 155 along an axis.
    """
    if volume.ndim != len(AUTHORS_SHAPE) or any(n > t for n, t in zip(volume.shape, AUTHORS_SHAPE)):
        raise DruwasError(f"case {case}: the {what} has shape {volume.shape}; --pad-to-brats only pads volumes "
                          f"up to {' x '.join(map(str, AUTHORS_SHAPE))}, it never crops")
    before = [(t - n) // 2 for n, t in zip(volume.shape, AUTHORS_SHAPE)]
    return np.pad(volume, [(b, t - n - b) for b, n, t in zip(before, volume.shape, AUTHORS_SHAPE)])


def reference_brats_values(ref: np.ndarray, regions: dict[str, tuple[int, ...]]) -> np.ndarray:
    """The reference as BraTS values (0, 1 necrosis, 2 edema, 4 enhancing), from its WT/TC/ET regions.

    Args:
        ref: the reference label map, in any label convention that ``regions`` describes.
        regions: region name -> labels; must name WT, TC and ET.
    """
    missing = [name for name, _ in BRATS_VALUE_OF_REGION if name not in regions]
    if missing:
        raise ValueError(f"the authors protocol needs the regions WT, TC and ET; {missing} not given")
    values = np.zeros(ref.shape, np.uint8)
    for name, value in BRATS_VALUE_OF_REGION:   # inner regions overwrite outer ones
        values[np.isin(ref, regions[name])] = value
    return values


def centring_offset(ref_brats: np.ndarray) -> np.ndarray:
    """The integer shift that moves the value-weighted centre of mass of ``ref_brats`` to ``shape // 2``.

    Rule 1 of the module docstring; zero for a reference without tumour.

    Args:
        ref_brats: the reference label map in BraTS values (0, 1, 2, 4).
    """
    box = bounding_box(ref_brats)
    if box is None:
        return np.zeros(ref_brats.ndim, dtype=int)
    # on the tumour's box (the sums are exact in float64, so the rounding is the full volume's)
    centre = np.asarray(center_of_mass(ref_brats[box]), dtype=np.float64) + [s.start for s in box]
    return np.asarray(ref_brats.shape) // 2 - np.round(centre).astype(int)


def shifted_crop(volume: np.ndarray, offset: np.ndarray) -> np.ndarray:
    """The :data:`AUTHORS_CROP` window of ``volume`` translated by ``offset`` with zero fill.

    Equals shifting the whole volume (voxel ``i`` moves to ``i + offset``, what leaves the volume is
    lost, what enters is 0) and then cropping, without building the shifted volume.

    Args:
        volume: a 240 x 240 x 155 array.
        offset: the shift per axis (:func:`centring_offset`).
    """
    window = np.zeros(tuple(s.stop - s.start for s in AUTHORS_CROP), dtype=volume.dtype)
    source, target = [], []
    for crop, shift, size in zip(AUTHORS_CROP, offset, volume.shape):
        # the crop's voxel j came from volume voxel j - shift, if that exists and lies inside the volume
        start, stop = max(crop.start - shift, 0), min(crop.stop - shift, size)
        if stop <= start:
            return window
        source.append(slice(start, stop))
        target.append(slice(start + shift - crop.start, stop + shift - crop.start))
    window[tuple(target)] = volume[tuple(source)]
    return window


def pooled_distances(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Distances in voxels from every voxel of ``a`` to the nearest voxel of ``b``, and from every
    voxel of ``b`` to the nearest of ``a``, in one array (rule 5; both masks non-empty).

    A voxel in both masks is at distance 0. Any other voxel's nearest voxel of the other mask lies on
    that mask's surface (a voxel whose 6-neighbour towards the query point is outside the mask), so
    the KD-trees hold surface voxels only; the distances equal those of trees over all voxels.

    Args:
        a: boolean mask, not empty.
        b: boolean mask of the same shape, not empty.
    """
    box = bounding_box(a | b)
    a, b = a[box], b[box]
    surface_a, surface_b = surfaces(a, b)
    n_both = int(np.count_nonzero(a & b))
    parts = [np.zeros(2 * n_both)]
    for points, surface in ((a & ~b, surface_b), (b & ~a, surface_a)):
        outside = np.argwhere(points)
        if len(outside):
            parts.append(cKDTree(np.argwhere(surface)).query(outside, k=1)[0])
    return np.concatenate(parts)


def authors_region_metrics(pred: np.ndarray, ref: np.ndarray) -> dict[str, float | int]:
    """Dice and HD95 (rules 4 and 5) of one region's masks, already shifted and cropped.

    Args:
        pred: boolean prediction mask (128^3).
        ref: boolean reference mask of the same shape.

    Returns:
        dict with ``dice``, ``hd95`` (voxels), ``n_pred``, ``n_ref`` and ``n_tp`` (voxels in both).
    """
    n_pred, n_ref = int(np.count_nonzero(pred)), int(np.count_nonzero(ref))
    n_tp = int(np.count_nonzero(pred & ref))
    if n_pred == 0 and n_ref == 0:
        dice, hd95 = 1.0, 0.0
    else:
        dice = (2.0 * n_tp + AUTHORS_DICE_EPS) / (n_pred + n_ref)
        hd95 = (AUTHORS_EMPTY_HD95 if n_pred == 0 or n_ref == 0
                else float(np.percentile(pooled_distances(pred, ref), 95)))
    return {"dice": dice, "hd95": hd95, "n_pred": n_pred, "n_ref": n_ref, "n_tp": n_tp}


def authors_case_metrics(pred: np.ndarray, ref: np.ndarray, regions: dict[str, tuple[int, ...]],
                         case: str) -> list[dict]:
    """One row per region of one case under the ``authors`` protocol (module docstring).

    Args:
        pred: the predicted label map, 240 x 240 x 155, in the labels ``regions`` uses.
        ref: the reference label map of the same shape and labels (nnU-Net's 1 edema, 2 necrosis,
            3 enhancing, or BraTS' 1, 2, 4); the centring shift is computed from its BraTS values
            (:func:`reference_brats_values`) and applied to both maps.
        regions: region name -> labels; must name WT, TC and ET (other regions are scored as well).
        case: the case id, written into the rows and error messages.

    Returns:
        One dict per region, in the order of ``regions``: ``case``, ``region``, ``dice``, ``hd95`` (in
        voxels), ``n_pred``, ``n_ref``, ``n_tp`` (counted in the 128^3 crop).

    Raises:
        DruwasError: a map is not 240 x 240 x 155, or the two shapes differ (naming the case).
    """
    for what, volume in (("reference", ref), ("prediction", pred)):
        if volume.shape != AUTHORS_SHAPE:
            raise DruwasError(
                f"case {case}: the {what} has shape {volume.shape}, but the authors protocol crops "
                f"[56:184, 56:184, 13:141] of a {' x '.join(map(str, AUTHORS_SHAPE))} BraTS volume; score "
                f"other data with another protocol, or zero-pad smaller volumes with --pad-to-brats")
    offset = centring_offset(reference_brats_values(ref, regions))
    pred, ref = shifted_crop(pred, offset), shifted_crop(ref, offset)
    return [{"case": case, "region": name, **authors_region_metrics(np.isin(pred, labels), np.isin(ref, labels))}
            for name, labels in regions.items()]
