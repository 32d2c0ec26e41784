"""The official current BraTS metrics: lesion-wise Dice, NSD and HD95, as `brats-evaluation` 0.0.10 computes them.

The official BraTS evaluation package ``brats-evaluation`` 0.0.10 (its ``gli`` configuration,
``brats_evaluation/configs/config_gli.yaml``) runs panoptica (2.1.x) on each case and turns the
result into a table with ``brats_evaluation/metrics_parser.py:parse_seg_results``. This module
computes the same numbers with numpy and scipy alone (that package pins numpy<2.3 and pandas<3, so it
cannot be a dependency). ``tests/reference/brats_evaluation_reference.py`` runs the package itself and
``tests/test_lesionwise.py`` checks every value against it to 1e-6.

What the package does for one case and one region (file and function in the package; panoptica paths
are relative to the ``panoptica`` package):

1. **Region masks.** WT, TC and ET are ``LabelMergeGroup``/``LabelGroup`` entries of
   ``config_gli.yaml`` (labels 1 NETC, 2 SNFH, 3 ET: WT = {1, 2, 3}, TC = {1, 3}, ET = {3}); each
   turns the label map into a binary mask (``utils/label_group.py:LabelGroup.extract_label``). There
   is no dilation, no erosion and no minimum lesion size: every connected component counts, down to
   one voxel.
2. **Lesions** are the connected components of each mask with ``cc3d.connected_components`` (default
   26-connectivity in 3D; ``_functionals.py:_connected_components``; 2D arrays use
   ``scipy.ndimage.label``, 4-connectivity). Components are numbered in C-order raster scan order
   (the order of ``scipy.ndimage.label``); the numbering decides ties in step 3.
3. **Matching** (``instance_matcher.py:MaxBipartiteMatching``): for every overlapping pair the Dice
   ``2|P and R| / (|P| + |R|)`` (``_functionals.py:_calc_count_matching_metric_of_overlapping_labels``);
   a cost matrix (rows: reference lesions, columns: predicted lesions, both in label order) holds
   ``1 - Dice`` where Dice >= 1e-6 and ``1 + 1e-6`` elsewhere; ``scipy.optimize.linear_sum_assignment``
   solves it and every assigned pair with cost < 1 is a match. So a match needs overlap *and* a Dice
   of at least 1e-6: a single reference voxel inside a predicted blob of 2,000,000 voxels is not
   matched (a false positive plus a false negative).
4. **Counts**: ``lesion_tp`` = matches, ``lesion_fp`` = predicted lesions - matches, ``lesion_fn`` =
   reference lesions - matches (``panoptica_result.py:fp``, ``fn``).
5. **Lesion-wise means** (panoptica's ``sq_dsc``, ``sq_nsd``, ``sq_hd95``; the package's
   ``lesionwise_dsc_mean``, ``lesionwise_nsd_mean``, ``lesionwise_hd95_mean``) are means over the
   *matched* lesions only (``metrics/metrics.py:Evaluation_List_Metric``): unmatched lesions (false
   positives and false negatives) do not lower them, they only show in the counts. Each matched pair is
   scored on its own two masks with the voxel spacing (``instance_evaluator.py:_evaluate_instance``):

   - Dice as in step 3;
   - HD95: surfaces are mask minus its erosion by the 6-connected cross; distances from every surface
     voxel of each mask to the nearest surface voxel of the other, in mm, pooled, 95th percentile
     with ``np.percentile``'s linear interpolation (``metrics/_surface_distances.py:_hd95_from_pair``,
     as medpy's ``hd95``);
   - NSD at a tolerance of the smallest voxel spacing (1 mm for BraTS), as the *mean of the two
     directed fractions* of surface voxels within the tolerance, ``(f_pred + f_ref) / 2``, not the
     usual count-weighted surface Dice (``metrics/_surface_distances.py:_nsd_from_pair``).

   With no match (``utils/edge_case_handling.py``, the ``listmetric_zeroTP_handling`` of
   ``config_gli.yaml``): NaN if there is no lesion in either mask, else Dice 0, NSD 0, HD95 inf.
   The package keeps that inf (``parse_seg_results`` does not replace it), and so does this module.
6. **Global metrics** (``global_bin_dsc``, ``global_bin_nsd``, ``global_bin_hd95``;
   ``panoptica_result.py:PanopticaResult.__init__`` and ``_calc_global_bin_metric``) compare the
   whole region masks, *without the voxel spacing*: the metric is called without it, so HD95 is in
   voxels and the NSD tolerance is panoptica's default of 0.5 voxel (only surface voxels that lie on
   the other surface count). If the masks share no voxel, the zero-TP handling of step 5 applies:
   NaN when both are empty, else Dice 0, NSD 0 and HD95 inf, which ``parse_seg_results`` writes as
   373 (:data:`LESIONWISE_INF_HD95`). So both masks empty gives NaN, not the Dice 1 of BraTS 2018-2020.

Reading NIfTI files, the package uses SimpleITK (``utils/input_check_and_conversion/sanity_checker.py``
tries it before nibabel): its arrays are in (z, y, x) order while the spacing it passes along stays in
(x, y, z) order. On 1 mm isotropic data (every BraTS release) only the component numbering changes,
which matters only for exactly tied matchings. To reproduce the package on files exactly, pass
nibabel's arrays transposed with nibabel's zooms unchanged: ``lesionwise_case_metrics(pred.T, ref.T,
zooms, regions)``; the test checks both ways against the package. ``nnunetv2_druwas evaluate --protocol
lesionwise`` does not: it passes nibabel's arrays and zooms as they are (the correct physics), so on
anisotropic NIfTI files its values are the package's values on the arrays, not on the files; on 1 mm
BraTS data the two agree. A missing prediction gets the package's values for a missing case
(``brats_evaluation/metrics_parser.py``, ``_handle_missing_data``, lines 20-37): 373 for ``hd95`` and
``global_hd95``, 0 for everything else, the lesion counts included.

Surfaces are taken on the bounding box of the masks and nearest surface voxels come from a KD-tree,
then each distance is computed from the integer voxel offset times the spacing, as panoptica's
distance transform does, so a distance equal to the NSD tolerance is not lost to rounding.

Example:
    >>> import numpy as np
    >>> ref = np.zeros((20, 20, 20), np.uint8); ref[2:6, 2:6, 2:6] = 3; ref[12:15, 12:15, 12:15] = 2
    >>> pred = np.zeros_like(ref); pred[2:6, 2:6, 3:7] = 3
    >>> rows = lesionwise_case_metrics(pred, ref, (1.0, 1.0, 1.0), {"WT": (1, 2, 3), "ET": (3,)})
    >>> [(r["region"], r["dice"], r["lesion_tp"], r["lesion_fn"]) for r in rows]
    [('WT', 0.75, 1, 1), ('ET', 0.75, 1, 0)]
"""
from __future__ import annotations

import sys
from typing import Sequence

import numpy as np
from scipy.ndimage import find_objects, generate_binary_structure, label
from scipy.optimize import linear_sum_assignment
from scipy.spatial import cKDTree

from nnunetv2_druwas.evaluation.metrics import bounding_box, surfaces

# parse_seg_results writes an infinite global HD95 as 373 ("diameter of the cube in SRI space").
LESIONWISE_INF_HD95 = 373.0
# MaxBipartiteMatching of config_gli.yaml: matching_threshold 0.000001 on the Dice.
MATCHING_DICE_THRESHOLD = 1e-6
# Panoptica's NSD tolerance when it gets no spacing (its global metrics), in voxels.
GLOBAL_NSD_TOLERANCE = 0.5
ROW_KEYS = ("region", "dice", "hd95", "nsd", "global_dice", "global_nsd", "global_hd95",
            "lesion_tp", "lesion_fp", "lesion_fn")


def lesionwise_case_metrics(pred: np.ndarray, ref: np.ndarray, spacing: Sequence[float],
                            regions: dict[str, tuple[int, ...]]) -> list[dict]:
    """The lesion-wise and global metrics of ``brats-evaluation`` 0.0.10 for one case, one row per region.

    Args:
        pred: the predicted label map (2D or 3D integer array).
        ref: the reference label map, same shape.
        spacing: voxel size along each array axis in mm; scales the lesion-wise HD95 and sets the
            lesion-wise NSD tolerance (its smallest value). The global metrics ignore it, as the
            package does.
        regions: region name -> the label values it is made of, e.g. ``{"WT": (1, 2, 3), "TC": (2, 3),
            "ET": (3,)}`` for a region-based nnU-Net dataset (``metrics.LABEL_CONVENTIONS``). Labels in
            no region are background.

    Returns:
        one dict per region, in the order of ``regions``, with the keys of :data:`ROW_KEYS`:
        ``dice``, ``nsd``, ``hd95`` (mm) are the lesion-wise means over matched lesions (the package's
        ``lesionwise_dsc_mean``, ``lesionwise_nsd_mean``, ``lesionwise_hd95_mean``; NaN when neither
        mask has a lesion, 0, 0 and inf when no lesion is matched); ``global_dice``, ``global_nsd``,
        ``global_hd95`` (voxels; 373 where the package gives 373) compare the whole masks;
        ``lesion_tp``, ``lesion_fp``, ``lesion_fn`` count matched, unmatched predicted and unmatched
        reference lesions.

    Raises:
        ValueError: if the shapes differ, the arrays are not 2D or 3D, or ``spacing`` does not give
            one positive value per axis.
    """
    if pred.shape != ref.shape:
        raise ValueError(f"prediction shape {pred.shape} differs from reference shape {ref.shape}")
    if pred.ndim not in (2, 3):
        raise ValueError(f"lesion-wise metrics need 2D or 3D label maps, got {pred.ndim} dimensions")
    spacing = tuple(float(s) for s in spacing)
    if len(spacing) != pred.ndim or min(spacing) <= 0:
        raise ValueError(f"spacing {spacing} must give one positive value per axis of shape {pred.shape}")
    return [{"region": name, **lesionwise_region_metrics(np.isin(pred, labels), np.isin(ref, labels), spacing)}
            for name, labels in regions.items()]


def lesionwise_region_metrics(pred: np.ndarray, ref: np.ndarray, spacing: Sequence[float]) -> dict:
    """The package's metrics of one region: :func:`lesionwise_case_metrics` without the region split.

    Args:
        pred: boolean prediction mask (2D or 3D).
        ref: boolean reference mask, same shape.
        spacing: voxel size along each axis in mm.

    Returns:
        the row of :func:`lesionwise_case_metrics` without ``region``.
    """
    box = bounding_box(pred | ref)
    if box is None:  # no lesion anywhere: every metric NaN
        return {"dice": np.nan, "hd95": np.nan, "nsd": np.nan, "global_dice": np.nan, "global_nsd": np.nan,
                "global_hd95": np.nan, "lesion_tp": 0, "lesion_fp": 0, "lesion_fn": 0}
    pred, ref = np.ascontiguousarray(pred[box]), np.ascontiguousarray(ref[box])
    structure = generate_binary_structure(pred.ndim, pred.ndim if pred.ndim >= 3 else 1)
    pred_lesions, n_pred = label(pred, structure=structure)
    ref_lesions, n_ref = label(ref, structure=structure)
    matches = match_lesions(pred_lesions, n_pred, ref_lesions, n_ref)

    if matches:
        pred_boxes, ref_boxes = find_objects(pred_lesions), find_objects(ref_lesions)
        scores = [_pair_metrics(pred_lesions, p, pred_boxes[p - 1], ref_lesions, r, ref_boxes[r - 1], spacing)
                  for r, p in matches]
        dice, nsd, hd95 = (float(np.average(column)) for column in zip(*scores))
    else:  # panoptica's zero-TP edge case (config_gli.yaml: "normal", empty prediction or reference)
        dice, nsd, hd95 = 0.0, 0.0, np.inf

    if (pred & ref).any():
        global_dice = _dice(pred, ref)
        global_nsd, global_hd95 = _surface_metrics(pred, ref, spacing=(1.0,) * pred.ndim,
                                                   tolerance=GLOBAL_NSD_TOLERANCE)
    else:  # zero-TP edge case of the global metrics; parse_seg_results writes inf as 373
        global_dice, global_nsd, global_hd95 = 0.0, 0.0, LESIONWISE_INF_HD95
    tp = len(matches)
    return {"dice": dice, "hd95": hd95, "nsd": nsd, "global_dice": global_dice, "global_nsd": global_nsd,
            "global_hd95": global_hd95, "lesion_tp": tp, "lesion_fp": n_pred - tp, "lesion_fn": n_ref - tp}


def match_lesions(pred_lesions: np.ndarray, n_pred: int, ref_lesions: np.ndarray,
                  n_ref: int) -> list[tuple[int, int]]:
    """Panoptica's maximum bipartite matching of lesions by Dice (``MaxBipartiteMatching``, threshold 1e-6).

    Args:
        pred_lesions: predicted lesions labelled 1..n_pred (0 background).
        n_pred: number of predicted lesions.
        ref_lesions: reference lesions labelled 1..n_ref, same shape.
        n_ref: number of reference lesions.

    Returns:
        the matched ``(reference label, predicted label)`` pairs, in reference label order.
    """
    if n_pred == 0 or n_ref == 0:
        return []
    both = (pred_lesions > 0) & (ref_lesions > 0)
    pairs, overlap = np.unique(ref_lesions[both].astype(np.int64) * (n_pred + 1) + pred_lesions[both],
                               return_counts=True)
    pair_ref, pair_pred = pairs // (n_pred + 1), pairs % (n_pred + 1)
    ref_size = np.bincount(ref_lesions.ravel(), minlength=n_ref + 1)
    pred_size = np.bincount(pred_lesions.ravel(), minlength=n_pred + 1)
    dice = 2.0 * overlap / (ref_size[pair_ref] + pred_size[pair_pred])
    cost = np.full((n_ref, n_pred), 1.0 + MATCHING_DICE_THRESHOLD)
    keep = dice >= MATCHING_DICE_THRESHOLD
    cost[pair_ref[keep] - 1, pair_pred[keep] - 1] = 1.0 - dice[keep]
    rows, cols = linear_sum_assignment(cost)
    return [(int(r) + 1, int(c) + 1) for r, c in zip(rows, cols) if cost[r, c] < 1.0]


def _pair_metrics(pred_lesions: np.ndarray, p: int, pred_box: tuple[slice, ...], ref_lesions: np.ndarray,
                  r: int, ref_box: tuple[slice, ...], spacing: tuple[float, ...]) -> tuple[float, float, float]:
    """(Dice, NSD, HD95) of one matched pair, on the union of the two lesions' boxes."""
    box = tuple(slice(min(a.start, b.start), max(a.stop, b.stop)) for a, b in zip(pred_box, ref_box))
    pred, ref = pred_lesions[box] == p, ref_lesions[box] == r
    nsd, hd95 = _surface_metrics(pred, ref, spacing, tolerance=min(spacing))
    return _dice(pred, ref), nsd, hd95


def _dice(pred: np.ndarray, ref: np.ndarray) -> float:
    return 2 * int(np.count_nonzero(pred & ref)) / (int(np.count_nonzero(pred)) + int(np.count_nonzero(ref)))


def _surface_metrics(pred: np.ndarray, ref: np.ndarray, spacing: Sequence[float],
                     tolerance: float) -> tuple[float, float]:
    """Panoptica's NSD at ``tolerance`` (mean of the two directed fractions) and pooled HD95 of two non-empty masks."""
    scale = np.asarray(spacing, dtype=np.float64)
    points = [np.argwhere(s) for s in surfaces(pred, ref)]
    distances = []
    for source, target in ((points[1], points[0]), (points[0], points[1])):  # ref -> pred, pred -> ref
        nearest = cKDTree(target * scale).query(source * scale, k=1)[1]
        # the distance from the integer voxel offset, as panoptica's distance transform computes it
        distances.append(np.sqrt(np.sum(((source - target[nearest]) * scale) ** 2, axis=1)))
    within = [np.count_nonzero(d <= tolerance) / d.size for d in distances]
    beyond = [np.count_nonzero(d > tolerance) / d.size for d in distances]
    nsd = (within[0] + within[1]) / (within[0] + within[1] + beyond[0] + beyond[1] + sys.float_info.min)
    return float(nsd), float(np.percentile(np.concatenate(distances), 95))
