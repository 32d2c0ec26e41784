"""``nnunetv2_druwas evaluate``: Dice and HD95 per case and region for a folder, under an evaluation protocol.

Predictions and ground truths are NIfTI files (``.nii.gz`` or ``.nii``) matched by
case id (the file name without its ending); spacing comes from the image headers.
The protocol (:data:`nnunetv2_druwas.evaluation.protocols.PROTOCOLS`) decides how a case is scored:
``brats`` (default; BraTS 2018-2020, medpy's HD95), ``eq2`` (the paper's Eq. 2), ``authors`` (the
authors' public code, :mod:`nnunetv2_druwas.evaluation.authors`) or ``lesionwise`` (the official BraTS
2023+ package, :mod:`nnunetv2_druwas.evaluation.lesionwise`). Everything else is the same for every
protocol, in :func:`evaluate_case`: the checks (shape, spacing, labels) come first, a ground-truth case
without a prediction is scored as a failure (``missing``; :func:`missing_values`), predictions without
ground truth are reported and not scored, and every per-case CSV has the columns :data:`COLUMNS`.

Example:
    nnunetv2_druwas evaluate fold_0/validation $nnUNet_preprocessed/Dataset500_BraTS2020/gt_segmentations \\
        -o fold_0/eq2_metrics.csv --protocol eq2

    >>> df = evaluate_folder("fold_0/validation", "gt_segmentations", "fold_0/brats_metrics.csv")
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Sequence

import numpy as np

from nnunetv2_druwas.data.brats import NIFTI_ENDINGS, REGION_NAMES, REGIONS
from nnunetv2_druwas.errors import DruwasError
from nnunetv2_druwas.evaluation.metrics import (BRATS_EMPTY_HD95, LABEL_CONVENTIONS, bounding_box,
                                                region_metrics, voxel_counts)
from nnunetv2_druwas.evaluation.protocols import DEFAULT_PROTOCOL, PROTOCOLS, check_protocol
from nnunetv2_druwas.files import replaced_together
from nnunetv2_druwas.parallel import parallel_map

SPACING_TOLERANCE = 1e-4
# dataset.json region names (lower case, "_" or " ": "whole tumor", "wt", ...) -> WT / TC / ET
DATASET_REGION_NAMES = {**{name: key for key, name in REGION_NAMES.items()}, **{key.lower(): key for key in REGIONS}}
#: The columns of every per-case CSV, whatever its protocol; a column the protocol does not define is NaN
#: (README, section Protocols): ``protocol`` names the protocol (the unit of ``hd95`` is its ``hd95_unit``),
#: ``nsd`` to ``lesion_fn`` are lesionwise only, ``padded_from`` is the original shape of an ``authors``
#: case zero-padded to 240 x 240 x 155 (``--pad-to-brats``).
COLUMNS = ("case", "region", "protocol", "dice", "hd95", "sensitivity", "specificity", "n_pred", "n_ref", "n_tp",
           "missing", "hd95_definition", "nsd", "global_dice", "global_nsd", "global_hd95",
           "lesion_tp", "lesion_fp", "lesion_fn", "padded_from")
#: The ``hd95_definition`` column per protocol (``brats`` and ``max_directed`` as in :func:`metrics.hd95`).
PROTOCOL_HD95_DEFINITION = {"brats": "brats", "eq2": "max_directed", "authors": "authors", "lesionwise": "lesionwise"}
#: The former ``--hd95`` values and the protocols they are now.
HD95_OPTION_PROTOCOLS = {"brats": "brats", "max_directed": "eq2"}
#: The metrics the summary describes, per protocol (default: Dice and HD95).
SUMMARY_METRICS = {"lesionwise": ("dice", "hd95", "nsd", "global_dice", "global_nsd", "global_hd95")}
#: A spawned worker costs about as much to start as scoring several full-size cases (see the
#: benchmark), so small folders such as one fold's validation cases are scored in this process.
MIN_CASES_PER_WORKER = 8

if TYPE_CHECKING:  # pandas is imported where it is used, so worker processes start faster
    import pandas as pd


def find_cases(folder: Path) -> dict[str, Path]:
    """Case id -> NIfTI file for every ``.nii.gz``/``.nii`` file directly in ``folder``.

    Args:
        folder: the folder to list; other files (summary.json, .npz, ...) are ignored.
    """
    cases: dict[str, Path] = {}
    for path in sorted(folder.iterdir()):
        ending = next((e for e in NIFTI_ENDINGS if path.name.endswith(e)), None)
        if ending is None or not path.is_file():
            continue
        case = path.name[: -len(ending)]
        if case in cases:
            raise DruwasError(f"case {case} has two files in {folder}: {cases[case].name} and {path.name}; "
                              "keep one")
        cases[case] = path
    return cases


def read_segmentation(path: Path) -> tuple[np.ndarray, tuple[float, ...]]:
    """A label map as an integer array and its voxel spacing in mm (from the NIfTI header).

    Args:
        path: a ``.nii.gz`` or ``.nii`` file.
    """
    import nibabel as nib

    try:
        image = nib.load(str(path))
        data = np.asanyarray(image.dataobj)
    except Exception as e:  # nibabel raises many types for broken files
        raise DruwasError(f"cannot read {path}: {e}") from e
    if not np.issubdtype(data.dtype, np.integer):
        if not np.isfinite(data).all():
            raise DruwasError(f"{path} holds NaN or infinite values; a label map holds whole numbers "
                              "(check how this case was predicted or converted)")
        data = np.rint(data).astype(np.int16)
    spacing = tuple(float(z) for z in image.header.get_zooms()[: data.ndim])
    return data, spacing


def regions_from_dataset_json(path: Path) -> dict[str, tuple[int, ...]]:
    """Region name (WT/TC/ET) -> labels, from a region-based nnU-Net dataset.json.

    Args:
        path: the dataset.json; it must have ``regions_class_order`` and labels named
            whole tumor / tumor core / enhancing tumor (or WT / TC / ET).
    """
    try:
        spec = json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise DruwasError(f"cannot read {path}: {e}") from e
    if "regions_class_order" not in spec:
        raise DruwasError(f"{path} is not region-based (no regions_class_order); pass --labels brats or nnunet")
    regions = {}
    for name, value in spec.get("labels", {}).items():
        key = DATASET_REGION_NAMES.get(name.lower().replace("_", " "))
        if key is not None:
            regions[key] = tuple(sorted(int(v) for v in np.atleast_1d(value)))
    if set(regions) != set(REGIONS):
        raise DruwasError(f"{path} does not name the regions whole tumor, tumor core and enhancing tumor "
                          f"(found labels {list(spec.get('labels', {}))}); pass --labels brats or nnunet")
    return {name: regions[name] for name in REGIONS}


def resolve_regions(labels: str | None, dataset_json: str | Path | None, pred_dir: Path,
                    gt_dir: Path) -> dict[str, tuple[int, ...]]:
    """The regions to score: from ``labels`` if given, else from the first dataset.json found.

    Args:
        labels: ``"nnunet"``, ``"brats"`` or None.
        dataset_json: a dataset.json to read when ``labels`` is None; if None too, the
            one in ``pred_dir`` (nnUNetv2_predict writes it), two levels above it (the
            trainer folder of ``fold_N/validation``) or beside ``gt_dir`` (nnU-Net's
            preprocessed dataset folder) is used.
        pred_dir: the prediction folder.
        gt_dir: the ground-truth folder.
    """
    if labels is not None:
        if labels not in LABEL_CONVENTIONS:
            raise DruwasError(f"unknown label convention {labels!r}; choose one of {sorted(LABEL_CONVENTIONS)}")
        return LABEL_CONVENTIONS[labels]
    if dataset_json is not None:
        if not Path(dataset_json).is_file():
            raise DruwasError(f"dataset.json {dataset_json} does not exist")
        return regions_from_dataset_json(Path(dataset_json))
    candidates = [pred_dir / "dataset.json", pred_dir.parent.parent / "dataset.json", gt_dir.parent / "dataset.json"]
    for candidate in candidates:
        if candidate.is_file():
            return regions_from_dataset_json(candidate)
    raise DruwasError("no label convention given and no dataset.json found (looked at "
                      f"{', '.join(map(str, candidates))}); pass --labels brats or nnunet, or --dataset-json")


def evaluate_case(case: str, pred_path: Path | None, gt_path: Path, regions: dict[str, tuple[int, ...]],
                  protocol: str = DEFAULT_PROTOCOL, empty_hd95: float = BRATS_EMPTY_HD95,
                  pad_to_brats: bool = False) -> list[dict]:
    """One row per region for one case under ``protocol``, with the keys of :data:`COLUMNS` it defines.

    The same steps for every protocol: read both maps; a prediction must have the ground truth's shape
    and spacing, and both may hold only labels that a region uses; then the protocol scores the case
    (:func:`score_case`). A missing prediction is scored as an empty one and then given the protocol's
    failure values (:func:`missing_values`), with ``missing`` True.

    Args:
        case: the case id, written into the rows and error messages.
        pred_path: the prediction file, or None when there is none.
        gt_path: the ground-truth file.
        regions: region name -> labels that make it up.
        protocol: a key of :data:`nnunetv2_druwas.evaluation.protocols.PROTOCOLS`.
        empty_hd95: ``brats``/``eq2``: HD95 when exactly one mask is empty, and for a missing prediction.
        pad_to_brats: ``authors``: zero-pad volumes smaller than 240 x 240 x 155 first
            (:func:`nnunetv2_druwas.evaluation.authors.pad_to_authors_shape`).
    """
    gt, spacing = read_segmentation(gt_path)
    if pred_path is None:
        pred = np.zeros_like(gt)
    else:
        pred, pred_spacing = read_segmentation(pred_path)
        if pred.shape != gt.shape:
            raise DruwasError(f"case {case}: prediction {pred_path} has shape {pred.shape} but the ground truth "
                              f"{gt_path} has {gt.shape}; predict on the same images")
        if not np.allclose(pred_spacing, spacing, rtol=0, atol=SPACING_TOLERANCE):
            raise DruwasError(f"case {case}: prediction {pred_path} has spacing {pred_spacing} but the ground "
                              f"truth {gt_path} has {spacing}; predict on the same images")
    # every region lies inside the box of all tumour labels: the label checks (and most protocols) use that crop
    box = bounding_box((pred != 0) | (gt != 0)) or tuple(slice(0, 0) for _ in gt.shape)
    for what, path, seg in (("ground truth", gt_path, gt), ("prediction", pred_path, pred)):
        if path is not None:
            _check_labels(case, what, path, seg[box], regions)
    rows = score_case(protocol, case, pred, gt, box, spacing, regions, empty_hd95, pad_to_brats)
    failure = missing_values(protocol, empty_hd95) if pred_path is None else {}
    padded_from = "x".join(map(str, gt.shape)) if protocol == "authors" and pad_to_brats else None
    base = {"case": case, "protocol": protocol, "hd95_definition": PROTOCOL_HD95_DEFINITION[protocol],
            "missing": pred_path is None, "padded_from": padded_from}
    return [{**row, **base, **failure} for row in rows]


def score_case(protocol: str, case: str, pred: np.ndarray, gt: np.ndarray, box: tuple[slice, ...],
               spacing: Sequence[float], regions: dict[str, tuple[int, ...]], empty_hd95: float,
               pad_to_brats: bool) -> list[dict]:
    """The metrics of one checked case under ``protocol``, one dict per region (with ``region``).

    Args:
        protocol: ``brats`` / ``eq2`` (:func:`metrics.region_metrics` with the ``brats`` / ``max_directed``
            HD95, in mm), ``authors`` (:func:`authors.authors_case_metrics`, HD95 in voxels; the spacing
            is not used) or ``lesionwise`` (:func:`lesionwise.lesionwise_case_metrics` with the spacing
            of the NIfTI header, plus voxel counts).
        case: the case id (for error messages).
        pred: the full predicted label map.
        gt: the full ground-truth label map of the same shape.
        box: a box that holds every nonzero voxel of both maps.
        spacing: voxel size per array axis in mm, from the ground truth's header.
        regions: region name -> labels.
        empty_hd95: see :func:`evaluate_case`.
        pad_to_brats: see :func:`evaluate_case`.
    """
    if protocol == "authors":
        from nnunetv2_druwas.evaluation.authors import authors_case_metrics, pad_to_authors_shape

        if pad_to_brats:
            pred, gt = pad_to_authors_shape(pred, case, "prediction"), pad_to_authors_shape(gt, case, "ground truth")
        return authors_case_metrics(pred, gt, regions, case)
    total = gt.size   # specificity counts the negatives of the full volume
    pred, gt = pred[box], gt[box]
    masks = {name: (np.isin(pred, labels), np.isin(gt, labels)) for name, labels in regions.items()}
    if protocol == "lesionwise":
        from nnunetv2_druwas.evaluation.lesionwise import lesionwise_case_metrics

        return [{**row, **voxel_counts(*masks[row["region"]])}
                for row in lesionwise_case_metrics(pred, gt, spacing, regions)]
    return [{"region": name, **region_metrics(p, r, spacing, hd95_definition=PROTOCOL_HD95_DEFINITION[protocol],
                                              empty_hd95=empty_hd95, total=total)}
            for name, (p, r) in masks.items()]


def missing_values(protocol: str, empty_hd95: float = BRATS_EMPTY_HD95) -> dict[str, float | int]:
    """The values a missing prediction gets under ``protocol``: a failure, whatever the reference holds.

    ``brats``/``eq2``: Dice 0, HD95 ``empty_hd95``, sensitivity 0, specificity NaN (BraTS 2018-2020).
    ``authors``: Dice 0, HD95 sqrt(128^2 + 128^2) voxels (the authors' value for an empty mask).
    ``lesionwise``: the package's values for a missing case (``brats_evaluation/metrics_parser.py``,
    ``_handle_missing_data``, lines 20-37): 373 for every HD95, 0 for everything else, lesion counts too.

    Args:
        protocol: a key of :data:`nnunetv2_druwas.evaluation.protocols.PROTOCOLS`.
        empty_hd95: the ``brats``/``eq2`` HD95 of a missing prediction.
    """
    if protocol == "authors":
        from nnunetv2_druwas.evaluation.authors import AUTHORS_EMPTY_HD95

        return {"dice": 0.0, "hd95": AUTHORS_EMPTY_HD95}
    if protocol == "lesionwise":
        from nnunetv2_druwas.evaluation.lesionwise import LESIONWISE_INF_HD95, ROW_KEYS

        return {key: LESIONWISE_INF_HD95 if "hd95" in key else 0 if key.startswith("lesion_") else 0.0
                for key in ROW_KEYS if key != "region"}
    return {"dice": 0.0, "hd95": float(empty_hd95), "sensitivity": 0.0, "specificity": float("nan")}


def _check_labels(case: str, what: str, path: Path, seg: np.ndarray, regions: dict[str, tuple[int, ...]]) -> None:
    """Refuse a label map with labels that no region uses: the sign of the wrong label convention
    (BraTS' enhancing 4 read as nnU-Net's labels would silently drop out of every region)."""
    used = {0, *(label for labels in regions.values() for label in labels)}
    unknown = sorted(set(np.unique(seg).tolist()) - used)
    if unknown:
        described = ", ".join(f"{name} {list(labels)}" for name, labels in regions.items())
        raise DruwasError(f"case {case}: {what} {path} has label(s) {unknown} that no region uses ({described}); "
                          "check --labels (nnunet: 1 edema, 2 necrosis, 3 enhancing; brats: 1, 2, 4)")


def resolve_protocol(protocol: str | None, hd95: str | None = None) -> str:
    """The protocol to score with: ``protocol``, or the one the former ``hd95`` option names.

    ``--hd95`` is folded into ``--protocol``: ``brats`` is ``--protocol brats`` and ``max_directed`` (the
    paper's Eq. 2) is ``--protocol eq2``; it still works and says so on stderr.

    Args:
        protocol: a key of :data:`nnunetv2_druwas.evaluation.protocols.PROTOCOLS`, or None.
        hd95: ``brats``, ``max_directed`` or None.

    Raises:
        DruwasError: an unknown name, or ``hd95`` naming another protocol than ``protocol``.
    """
    if hd95 is None:
        return check_protocol(protocol or DEFAULT_PROTOCOL)
    if hd95 not in HD95_OPTION_PROTOCOLS:
        raise DruwasError(f"unknown HD95 definition {hd95!r}; choose one of {', '.join(HD95_OPTION_PROTOCOLS)}, "
                          f"or better --protocol {' / '.join(PROTOCOLS)}")
    implied = HD95_OPTION_PROTOCOLS[hd95]
    if protocol is not None and check_protocol(protocol) != implied:
        raise DruwasError(f"--hd95 {hd95} is the {implied} protocol, but --protocol {protocol} was given; "
                          f"leave out --hd95")
    print(f"note: --hd95 {hd95} is --protocol {implied}; use --protocol {implied} (--hd95 is kept for old scripts)",
          file=sys.stderr)
    return implied


def evaluate_folder(pred_dir: str | Path, gt_dir: str | Path, output_csv: str | Path | None = None, *,
                    protocol: str | None = None, labels: str | None = None, dataset_json: str | Path | None = None,
                    hd95: str | None = None, empty_hd95: float | None = None, pad_to_brats: bool = False,
                    num_processes: int = 2, progress: bool = True,
                    cases: Sequence[str] | None = None) -> pd.DataFrame:
    """Score every ground-truth case of ``gt_dir`` against its prediction in ``pred_dir`` under a protocol.

    Args:
        pred_dir: folder of predicted label maps (e.g. nnU-Net's ``fold_N/validation``
            or an ``nnUNetv2_predict`` output); non-NIfTI files in it are ignored.
        gt_dir: folder of ground-truth label maps (e.g. ``$nnUNet_preprocessed/DatasetXXX/gt_segmentations``).
        output_csv: where to write the per-case table; a summary goes to
            ``<stem>_summary.csv`` beside it. Both are replaced together
            (:func:`nnunetv2_druwas.files.replaced_together`). None: write nothing.
        protocol: an evaluation protocol (:data:`nnunetv2_druwas.evaluation.protocols.PROTOCOLS`):
            ``brats`` (default), ``eq2``, ``authors`` or ``lesionwise`` (module docstring, README).
        labels: ``"nnunet"`` (1 edema, 2 necrosis, 3 enhancing), ``"brats"`` (1, 2, 4) or
            None to take the regions from a region-based dataset.json (see :func:`resolve_regions`).
        dataset_json: the dataset.json to read when ``labels`` is None.
        hd95: the former way to choose between ``brats`` and ``eq2``: ``"brats"`` or ``"max_directed"``
            (:func:`resolve_protocol`); None: ``protocol`` decides.
        empty_hd95: ``brats``/``eq2`` only: HD95 when exactly one mask is empty or the prediction is
            missing (mm); None: 373.13. The other protocols have their own values.
        pad_to_brats: ``authors`` only: zero-pad volumes smaller than 240 x 240 x 155 symmetrically
            before the authors' rules (an explicit opt-in for data such as the demo's; the original shape
            goes into ``padded_from``); larger volumes are refused.
        num_processes: worker processes over cases (:func:`nnunetv2_druwas.parallel.parallel_map`,
            at least :data:`MIN_CASES_PER_WORKER` cases each); 1 runs in this process.
        progress: show a tqdm progress bar and print the summary table.
        cases: score only these case ids (e.g. a fold's validation cases when ``gt_dir``
            holds the whole training set); each must have a ground truth. None: every
            ground-truth case in ``gt_dir``.

    Returns:
        One row per case x region (WT, TC, ET) with the columns :data:`COLUMNS`.
        ``df.attrs["extra_predictions"]`` lists predictions without ground truth (not scored;
        predictions of ground-truth cases left out by ``cases`` are ignored silently).
    """
    import pandas as pd

    protocol = resolve_protocol(protocol, hd95)
    if empty_hd95 is not None and protocol not in ("brats", "eq2"):
        raise DruwasError(f"--empty-hd95 applies to the brats and eq2 protocols; the {protocol} protocol has its "
                          f"own values for empty masks (README, section Protocols)")
    if pad_to_brats and protocol != "authors":
        raise DruwasError(f"--pad-to-brats applies to the authors protocol only, not to {protocol}")
    empty_hd95 = BRATS_EMPTY_HD95 if empty_hd95 is None else float(empty_hd95)
    pred_dir, gt_dir = Path(pred_dir), Path(gt_dir)
    for name, folder in (("prediction", pred_dir), ("ground-truth", gt_dir)):
        if not folder.is_dir():
            raise DruwasError(f"{name} folder {folder} does not exist")
    if pred_dir.resolve() == gt_dir.resolve():
        print(f"warning: the prediction and ground-truth folders are the same folder ({gt_dir}): every case "
              "scores perfectly", file=sys.stderr)
    regions = resolve_regions(labels, dataset_json, pred_dir, gt_dir)
    pairs, extra = match_cases(pred_dir, gt_dir, cases)
    jobs = [(case, pred, gt, regions, protocol, empty_hd95, pad_to_brats) for case, (pred, gt) in pairs.items()]
    scored = parallel_map(_evaluate_job, jobs, num_processes, desc=f"evaluate ({protocol})", progress=progress,
                          min_jobs_per_worker=MIN_CASES_PER_WORKER)
    df = pd.DataFrame([row for case_rows in scored for row in case_rows], columns=list(COLUMNS))
    df["region"] = pd.Categorical(df["region"], categories=list(regions), ordered=True)
    df = df.sort_values(["case", "region"], ignore_index=True)
    df["region"] = df["region"].astype(str)
    df.attrs["extra_predictions"] = extra
    summary = summarize(df)
    if output_csv is not None:
        output_csv = Path(output_csv)
        with replaced_together() as group:
            group.makedirs(output_csv.parent)
            df.to_csv(group.path(output_csv), index=False)
            summary.to_csv(group.path(summary_path(output_csv)), index=False)
    if progress:
        padded = ", zero-padded to 240 x 240 x 155" if pad_to_brats else ""
        print(f"protocol {protocol} (HD95 in {PROTOCOLS[protocol].hd95_unit}{padded}): {df['case'].nunique()} "
              f"cases, {int(df.groupby('case')['missing'].any().sum())} missing prediction(s)")
        print(summary.to_string(index=False, float_format=lambda v: f"{v:.4f}"))
    return df


def match_cases(pred_dir: Path, gt_dir: Path, cases: Sequence[str] | None = None
                ) -> tuple[dict[str, tuple[Path | None, Path]], list[str]]:
    """The cases to score, each with its prediction (None when missing) and ground truth, and the
    predictions without ground truth (warned about on stderr, not scored).

    Args:
        pred_dir: the prediction folder.
        gt_dir: the ground-truth folder.
        cases: only these case ids (each must have a ground truth); None: every ground-truth case.
    """
    gt_cases, pred_cases = find_cases(gt_dir), find_cases(pred_dir)
    if not gt_cases:
        raise DruwasError(f"no .nii.gz or .nii ground-truth files in {gt_dir}")
    extra = sorted(set(pred_cases) - set(gt_cases))
    if cases is not None:
        unknown = sorted(set(cases) - set(gt_cases))
        if unknown:
            raise DruwasError(f"no ground truth in {gt_dir} for case(s) {', '.join(unknown)}")
        if not cases:
            raise DruwasError("the list of cases to score is empty")
        gt_cases = {case: gt_cases[case] for case in sorted(set(cases))}
    if extra:
        print(f"warning: {len(extra)} prediction(s) in {pred_dir} have no ground truth and are not scored: "
              f"{', '.join(extra)}", file=sys.stderr)
    return {case: (pred_cases.get(case), gt) for case, gt in gt_cases.items()}, extra


def _evaluate_job(job: tuple) -> list[dict]:
    return evaluate_case(*job)


def summary_path(output_csv: Path) -> Path:
    """``<stem>_summary.csv`` beside ``output_csv``."""
    return output_csv.with_name(f"{output_csv.name.removesuffix('.csv')}_summary.csv")


def summarize(df: pd.DataFrame) -> pd.DataFrame:
    """Mean, std, median and quartiles of each metric per protocol and region, with the count of missing cases.

    The metrics are Dice and HD95, and for ``lesionwise`` also NSD and the global values
    (:data:`SUMMARY_METRICS`); NaN values are left out of ``n`` and the statistics, inf is kept.

    Args:
        df: the table :func:`evaluate_folder` returns (one protocol).
    """
    metrics = SUMMARY_METRICS.get(str(df["protocol"].iloc[0]), ("dice", "hd95")) if len(df) else ("dice", "hd95")
    long = df.melt(id_vars=["protocol", "region", "missing"], value_vars=list(metrics), var_name="metric")
    long["value"] = long["value"].astype(float)
    grouped = long.groupby(["protocol", "region", "metric"], sort=False)
    summary = grouped["value"].agg(n="count", mean="mean", std="std", median="median",
                                   q25=lambda v: _quantile(v, 0.25), q75=lambda v: _quantile(v, 0.75))
    summary["n_missing"] = grouped["missing"].sum().astype(int)
    return summary.reset_index()


def _quantile(values: pd.Series, q: float) -> float:
    """``values.quantile(q)`` (linear), also where it interpolates towards an infinite value (lesion-wise
    HD95 without a matched lesion): numpy's interpolation gives NaN there, the limit is inf."""
    with np.errstate(invalid="ignore"):
        result = values.quantile(q)
    if np.isnan(result) and values.notna().any():
        result = values.quantile(q, interpolation="higher")
    return float(result)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("pred_dir", type=Path, help="folder of predicted label maps (.nii.gz/.nii)")
    parser.add_argument("gt_dir", type=Path, help="folder of ground-truth label maps, matched by case id")
    parser.add_argument("-o", "--output", type=Path, required=True,
                        help="per-case CSV to write; the summary goes to <stem>_summary.csv beside it")
    parser.add_argument("--protocol", choices=list(PROTOCOLS), default=None,
                        help=f"evaluation protocol (default {DEFAULT_PROTOCOL}): "
                             + "; ".join(f"{p.name}: HD95 in {p.hd95_unit}" for p in PROTOCOLS.values()))
    parser.add_argument("--labels", choices=sorted(LABEL_CONVENTIONS), default=None,
                        help="label convention: nnunet (1 edema, 2 necrosis, 3 enhancing) or brats (1, 2, 4); "
                             "default: the regions of a region-based dataset.json")
    parser.add_argument("--dataset-json", type=Path, default=None,
                        help="dataset.json to take the regions from (default: looked up beside the folders)")
    parser.add_argument("--hd95", choices=list(HD95_OPTION_PROTOCOLS), default=None,
                        help="former option, kept for old scripts: brats is --protocol brats, max_directed "
                             "(the paper's Eq. 2) is --protocol eq2")
    parser.add_argument("--empty-hd95", type=float, default=None,
                        help=f"brats and eq2: HD95 when exactly one mask is empty or a prediction is missing "
                             f"(default {BRATS_EMPTY_HD95} mm)")
    parser.add_argument("--pad-to-brats", action="store_true",
                        help="authors protocol: zero-pad volumes smaller than 240 x 240 x 155 symmetrically "
                             "before scoring (recorded in the padded_from column); default: such volumes are an "
                             "error")
    parser.add_argument("--cases", nargs="+", default=None, metavar="CASE",
                        help="score only these case ids (default: every ground-truth case)")
    parser.add_argument("--num-processes", type=int, default=2, help="worker processes over cases (default 2)")


def run(args: argparse.Namespace) -> int:
    evaluate_folder(args.pred_dir, args.gt_dir, args.output, protocol=args.protocol, labels=args.labels,
                    dataset_json=args.dataset_json, hd95=args.hd95, empty_hd95=args.empty_hd95,
                    pad_to_brats=args.pad_to_brats, num_processes=args.num_processes, cases=args.cases)
    return 0
