"""Evaluation protocols: the ``authors`` protocol against an independent implementation of its rules.

The expected values here are computed from the rules as issue 11 states them (the authors' ADRUwAMS
code, read as a specification): a full-volume zero-filled shift by slicing, the fixed crop, Dice
with its 1e-9, and HD95 from exact Euclidean distance transforms of the cropped masks
(``scipy.ndimage.distance_transform_edt``), none of which the production code uses.
"""
from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.ndimage import distance_transform_edt, gaussian_filter, label

from nnunetv2_druwas.errors import DruwasError
from nnunetv2_druwas.evaluation.authors import authors_case_metrics, centring_offset

SHAPE = (240, 240, 155)
BRATS_REGIONS = {"WT": (1, 2, 4), "TC": (1, 4), "ET": (4,)}
NNUNET_REGIONS = {"WT": (1, 2, 3), "TC": (2, 3), "ET": (3,)}
BRATS_TO_NNUNET = np.array([0, 2, 1, 0, 3], np.uint8)   # index: BraTS value (3 is unused)
NNUNET_TO_BRATS = np.array([0, 2, 1, 4], np.uint8)
EMPTY_HD95 = math.sqrt(128 ** 2 + 128 ** 2)


# --- the rules, written out independently -----------------------------------------------------

def expected_offset(brats: np.ndarray) -> np.ndarray:
    """shape // 2 minus the rounded (half to even) label-value-weighted centre of mass."""
    weights = brats.astype(np.float64)
    total = weights.sum()
    if total == 0:
        return np.zeros(3, int)
    centre = [np.dot(weights.sum(axis=tuple(a for a in range(3) if a != axis)), np.arange(brats.shape[axis]))
              / total for axis in range(3)]
    return np.array(SHAPE) // 2 - np.array([round(c) for c in centre])   # Python's round: half to even


def shift_full_volume(volume: np.ndarray, offset: np.ndarray) -> np.ndarray:
    """Voxel i moves to i + offset; what leaves the volume is dropped, what enters is 0."""
    out = np.zeros_like(volume)
    src, dst = [], []
    for o, n in zip(offset, volume.shape):
        src.append(slice(max(0, -o), n - max(0, o)))
        dst.append(slice(max(0, o), n - max(0, -o)))
    out[tuple(dst)] = volume[tuple(src)]
    return out


def expected_rows(pred_brats: np.ndarray, ref_brats: np.ndarray) -> dict[str, dict]:
    """The protocol on BraTS values: shift, crop, Dice and HD95 per region."""
    offset = expected_offset(ref_brats)
    crop = (slice(56, 184), slice(56, 184), slice(13, 141))
    ref_c, pred_c = shift_full_volume(ref_brats, offset)[crop], shift_full_volume(pred_brats, offset)[crop]
    rows = {}
    for name, labels in BRATS_REGIONS.items():
        a, b = np.isin(pred_c, labels), np.isin(ref_c, labels)
        n_a, n_b, n_ab = int(a.sum()), int(b.sum()), int((a & b).sum())
        if n_a == 0 and n_b == 0:
            dice, hd95 = 1.0, 0.0
        elif n_a == 0 or n_b == 0:
            dice, hd95 = 1e-9 / (n_a + n_b), EMPTY_HD95
        else:
            # distance_transform_edt(~b) is, at every voxel, the distance to the nearest voxel of b
            pooled = np.concatenate([distance_transform_edt(~b)[a], distance_transform_edt(~a)[b]])
            dice, hd95 = (2 * n_ab + 1e-9) / (n_a + n_b), float(np.percentile(pooled, 95))
        rows[name] = dict(dice=dice, hd95=hd95, n_pred=n_a, n_ref=n_b, n_tp=n_ab)
    return rows


# --- seeded random BraTS label maps -----------------------------------------------------------

def add_tumour(seg: np.ndarray, rng: np.random.Generator, centre, radii, *, enhancing: bool = True) -> None:
    """An irregular tumour (edema 2 around enhancing 4 around necrosis 1), clipped to the volume."""
    centre, radii = np.asarray(centre, float), np.asarray(radii, float)
    low = np.maximum(np.floor(centre - 1.5 * radii), 0).astype(int)
    high = np.minimum(np.ceil(centre + 1.5 * radii), seg.shape).astype(int)
    grids = np.ogrid[tuple(slice(lo, hi) for lo, hi in zip(low, high))]
    r = np.sqrt(sum(((g - c) / s) ** 2 for g, c, s in zip(grids, centre, radii)))
    r = r + 0.5 * gaussian_filter(rng.normal(size=r.shape), 3)
    box = seg[tuple(slice(lo, hi) for lo, hi in zip(low, high))]
    box[r < 1.0] = 2
    if enhancing:
        box[r < 0.6] = 4
    box[r < 0.35] = 1


def jittered(rng: np.random.Generator, centre, radii, shift: float = 3.0, scale: float = 0.1):
    return np.asarray(centre) + rng.uniform(-shift, shift, 3), np.asarray(radii) * rng.uniform(1 - scale, 1 + scale, 3)


def make_case(kind: str, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(pred, ref) in BraTS values for one scenario."""
    rng = np.random.default_rng(seed)
    ref, pred = np.zeros(SHAPE, np.uint8), np.zeros(SHAPE, np.uint8)
    if kind == "corner":   # off-centre: the shift moves the far side of the volume out of it
        centre, radii = (40, 195, 30), (28, 24, 18)
        add_tumour(ref, rng, centre, radii)
        add_tumour(pred, rng, *jittered(rng, centre, radii))
        add_tumour(pred, rng, (215, 30, 140), (8, 8, 6))    # far false positive: shifted out of the volume
        add_tumour(pred, rng, (75, 160, 45), (14, 14, 11))  # false positive inside the crop, > 5 % of voxels
    elif kind == "split":  # two tumours far apart: the centre lies between them, the crop cuts both
        for centre, radii in (((60, 60, 50), (30, 25, 20)), ((170, 180, 100), (35, 30, 25))):
            add_tumour(ref, rng, centre, radii)
            add_tumour(pred, rng, *jittered(rng, centre, radii, shift=5))
    elif kind == "no_et":  # no enhancing tumour in the reference; the prediction has some
        centre, radii = (150, 90, 110), (25, 20, 18)
        add_tumour(ref, rng, centre, radii, enhancing=False)
        add_tumour(pred, rng, *jittered(rng, centre, radii))
    elif kind == "no_et_either":
        centre, radii = (120, 120, 70), (20, 20, 15)
        add_tumour(ref, rng, centre, radii, enhancing=False)
        add_tumour(pred, rng, *jittered(rng, centre, radii), enhancing=False)
    elif kind == "empty_prediction":
        add_tumour(ref, rng, (100, 140, 60), (20, 25, 15))
    elif kind == "empty_reference":   # no tumour at all: not shifted
        add_tumour(pred, rng, (90, 100, 60), (10, 10, 8))
    else:
        raise ValueError(kind)
    return pred, ref


KINDS = ("corner", "split", "no_et", "no_et_either", "empty_prediction", "empty_reference")


@pytest.mark.parametrize("kind", KINDS)
def test_authors_protocol_equals_the_rules(kind):
    pred, ref = make_case(kind, seed=KINDS.index(kind))
    expected = expected_rows(pred, ref)
    for labels, regions, (p, r) in (("brats", BRATS_REGIONS, (pred, ref)),
                                     ("nnunet", NNUNET_REGIONS, (BRATS_TO_NNUNET[pred], BRATS_TO_NNUNET[ref]))):
        rows = authors_case_metrics(p, r, regions, f"case_{kind}")
        assert [row["region"] for row in rows] == ["WT", "TC", "ET"], labels
        for row in rows:
            assert row["case"] == f"case_{kind}"
            want = expected[row["region"]]
            assert {k: row[k] for k in ("n_pred", "n_ref", "n_tp")} == {k: want[k] for k in ("n_pred", "n_ref", "n_tp")}
            assert row["dice"] == pytest.approx(want["dice"], rel=1e-12, abs=0), (labels, row["region"])
            assert row["hd95"] == pytest.approx(want["hd95"], rel=1e-12, abs=1e-12), (labels, row["region"])


def test_the_scenarios_exercise_the_rules():
    """The random cases really push voxels out of the volume, crop tumour away, leave regions empty and
    score a far false positive (otherwise the comparison above proves less than it claims)."""
    crop = (slice(56, 184), slice(56, 184), slice(13, 141))
    pred, ref = make_case("corner", seed=KINDS.index("corner"))
    offset = expected_offset(ref)
    assert np.abs(offset).min() > 40
    shifted = shift_full_volume(pred, offset)
    assert np.count_nonzero(shifted) < np.count_nonzero(pred)                     # pushed out of the volume
    # tumour + two false positives; the far one leaves the volume, the other stays in the crop
    assert label(pred > 0)[1] == 3 and label(shifted[crop] > 0)[1] == 2
    assert expected_rows(pred, ref)["WT"]["hd95"] > 20                            # and dominates HD95
    pred_s, ref_s = make_case("split", seed=KINDS.index("split"))
    cropped = np.count_nonzero(shift_full_volume(ref_s, expected_offset(ref_s))[crop])
    assert 0 < cropped < np.count_nonzero(ref_s)
    no_et = expected_rows(*make_case("no_et", seed=KINDS.index("no_et")))
    assert no_et["ET"]["n_ref"] == 0 < no_et["ET"]["n_pred"] and no_et["ET"]["hd95"] == EMPTY_HD95


def test_centre_of_mass_is_weighted_by_brats_value_and_rounded_half_to_even():
    ref = np.zeros(SHAPE, np.uint8)
    ref[10, 50, 20] = 1          # necrosis, weight 1
    ref[20, 50, 20] = 4          # enhancing, weight 4: centre 18 on axis 0 (unweighted it would be 15)
    assert centring_offset(ref).tolist() == [120 - 18, 120 - 50, 77 - 20]
    block = np.zeros(SHAPE, np.uint8)
    block[100:102, 30:32, 40:42] = 2       # centre (100.5, 30.5, 40.5): half to even -> (100, 30, 40)
    assert centring_offset(block).tolist() == [20, 90, 37]
    block = np.zeros(SHAPE, np.uint8)
    block[101:103, 31:33, 41:43] = 2       # centre (101.5, 31.5, 41.5) -> (102, 32, 42)
    assert centring_offset(block).tolist() == [18, 88, 35]
    assert centring_offset(np.zeros(SHAPE, np.uint8)).tolist() == [0, 0, 0]


def test_nnunet_labels_are_weighted_by_their_brats_values():
    """In nnU-Net's labels necrosis is 2 and edema 1: the shift must still weight necrosis 1 and edema 2,
    so a case whose crop depends on it scores as its BraTS twin does."""
    ref_brats = np.zeros(SHAPE, np.uint8)
    ref_brats[60:80, 100:120, 60:80] = 1     # necrosis block (weight 1)
    ref_brats[160:180, 100:120, 60:80] = 2   # edema block (weight 2)
    # BraTS weights: centre (69.5 + 2 * 169.5) / 3 = 136.17 on axis 0, offset -16, so the crop [56:184]
    # keeps 8 of the necrosis block's 20 slices (44:64 after the shift); the swapped weights would
    # give 102.83, offset +17, and keep all of it
    assert centring_offset(ref_brats).tolist() == [-16, 10, 7]
    assert expected_rows(ref_brats, ref_brats)["TC"]["n_ref"] == 8 * 20 * 20
    rows = {r["region"]: r for r in authors_case_metrics(BRATS_TO_NNUNET[ref_brats], BRATS_TO_NNUNET[ref_brats],
                                                          NNUNET_REGIONS, "c")}
    assert [(rows[k]["n_ref"], rows[k]["n_pred"]) for k in ("WT", "TC", "ET")] == [
        (8 * 20 * 20 + 8000, 8 * 20 * 20 + 8000), (8 * 20 * 20, 8 * 20 * 20), (0, 0)]
    assert NNUNET_TO_BRATS[BRATS_TO_NNUNET[ref_brats]].tolist() == ref_brats.tolist()


def test_other_shapes_are_refused_naming_the_case():
    regions = BRATS_REGIONS
    good = np.zeros(SHAPE, np.uint8)
    with pytest.raises(DruwasError, match=r"case BraTS20_Training_007: the reference has shape \(240, 240, 154\)"):
        authors_case_metrics(np.zeros((240, 240, 154), np.uint8), np.zeros((240, 240, 154), np.uint8), regions,
                             "BraTS20_Training_007")
    with pytest.raises(DruwasError, match=r"case c2: the prediction has shape \(155, 240, 240\).*240 x 240 x 155"):
        authors_case_metrics(np.zeros((155, 240, 240), np.uint8), good, regions, "c2")
