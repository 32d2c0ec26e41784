"""``nnunetv2_druwas evaluate``: BraTS-convention Dice and HD95 per case and region for a folder.

Predictions and ground truths are NIfTI files (``.nii.gz`` or ``.nii``) matched by
case id (the file name without its ending); spacing comes from the image headers.
A ground-truth case without a prediction is scored as a failure (``missing``),
predictions without ground truth are reported and not scored.

Example:
    nnunetv2_druwas evaluate fold_0/validation $nnUNet_preprocessed/Dataset500_BraTS2020/gt_segmentations \\
        -o fold_0/brats_metrics.csv

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
from nnunetv2_druwas.evaluation.metrics import (BRATS_EMPTY_HD95, HD95_DEFINITIONS, LABEL_CONVENTIONS,
                                                bounding_box, region_metrics)
from nnunetv2_druwas.files import replaced_together
from nnunetv2_druwas.parallel import parallel_map

SPACING_TOLERANCE = 1e-4
# dataset.json region names (lower case, "_" or " ": "whole tumor", "wt", ...) -> WT / TC / ET
DATASET_REGION_NAMES = {**{name: key for key, name in REGION_NAMES.items()}, **{key.lower(): key for key in REGIONS}}
SUMMARY_METRICS = ("dice", "hd95")
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
                  hd95_definition: str, empty_hd95: float) -> list[dict]:
    """One row per region for one case; a missing prediction scores Dice 0 and HD95 ``empty_hd95``.

    Args:
        case: the case id, written into the rows and error messages.
        pred_path: the prediction file, or None when there is none.
        gt_path: the ground-truth file.
        regions: region name -> labels that make it up.
        hd95_definition: ``"brats"`` or ``"max_directed"`` (see :func:`metrics.hd95`).
        empty_hd95: HD95 when exactly one mask is empty, and for a missing prediction.
    """
    gt, gt_spacing = read_segmentation(gt_path)
    base = {"case": case, "hd95_definition": hd95_definition}
    if pred_path is None:
        _check_labels(case, "ground truth", gt_path, gt, regions)
        return [{**base, "region": name, "dice": 0.0, "hd95": float(empty_hd95), "sensitivity": 0.0,
                 "specificity": float("nan"), "n_pred": 0, "n_ref": int(np.isin(gt, labels).sum()),
                 "n_tp": 0, "missing": True} for name, labels in regions.items()]
    pred, pred_spacing = read_segmentation(pred_path)
    if pred.shape != gt.shape:
        raise DruwasError(f"case {case}: prediction {pred_path} has shape {pred.shape} but the ground truth "
                          f"{gt_path} has {gt.shape}; predict on the same images")
    if not np.allclose(pred_spacing, gt_spacing, rtol=0, atol=SPACING_TOLERANCE):
        raise DruwasError(f"case {case}: prediction {pred_path} has spacing {pred_spacing} but the ground "
                          f"truth {gt_path} has {gt_spacing}; predict on the same images")
    # every region lies inside the box of all tumour labels, so work on that crop only
    total = gt.size
    box = bounding_box((pred != 0) | (gt != 0)) or tuple(slice(0, 0) for _ in gt.shape)
    pred, gt = pred[box], gt[box]
    for what, path, seg in (("ground truth", gt_path, gt), ("prediction", pred_path, pred)):
        _check_labels(case, what, path, seg, regions)  # on the crop: every nonzero voxel is inside it
    rows = []
    for name, labels in regions.items():
        metrics = region_metrics(np.isin(pred, labels), np.isin(gt, labels), gt_spacing,
                                 hd95_definition=hd95_definition, empty_hd95=empty_hd95,
                                 total=total)
        rows.append({**base, "region": name, **metrics, "missing": False})
    return rows


def _check_labels(case: str, what: str, path: Path, seg: np.ndarray, regions: dict[str, tuple[int, ...]]) -> None:
    """Refuse a label map with labels that no region uses: the sign of the wrong label convention
    (BraTS' enhancing 4 read as nnU-Net's labels would silently drop out of every region)."""
    used = {0, *(label for labels in regions.values() for label in labels)}
    unknown = sorted(set(np.unique(seg).tolist()) - used)
    if unknown:
        described = ", ".join(f"{name} {list(labels)}" for name, labels in regions.items())
        raise DruwasError(f"case {case}: {what} {path} has label(s) {unknown} that no region uses ({described}); "
                          "check --labels (nnunet: 1 edema, 2 necrosis, 3 enhancing; brats: 1, 2, 4)")


def evaluate_folder(pred_dir: str | Path, gt_dir: str | Path, output_csv: str | Path | None = None, *,
                    labels: str | None = None, dataset_json: str | Path | None = None, hd95: str = "brats",
                    empty_hd95: float = BRATS_EMPTY_HD95, num_processes: int = 2, progress: bool = True,
                    cases: Sequence[str] | None = None, protocol: str | None = None) -> pd.DataFrame:
    """Score every ground-truth case of ``gt_dir`` against its prediction in ``pred_dir``.

    Args:
        pred_dir: folder of predicted label maps (e.g. nnU-Net's ``fold_N/validation``
            or an ``nnUNetv2_predict`` output); non-NIfTI files in it are ignored.
        gt_dir: folder of ground-truth label maps (e.g. ``$nnUNet_preprocessed/DatasetXXX/gt_segmentations``).
        output_csv: where to write the per-case table; a summary goes to
            ``<stem>_summary.csv`` beside it. Both are replaced together
            (:func:`nnunetv2_druwas.files.replaced_together`). None: write nothing.
        labels: ``"nnunet"`` (1 edema, 2 necrosis, 3 enhancing), ``"brats"`` (1, 2, 4) or
            None to take the regions from a region-based dataset.json (see :func:`resolve_regions`).
        dataset_json: the dataset.json to read when ``labels`` is None.
        hd95: ``"brats"`` (medpy's pooled 95th percentile, the BraTS 2018-2020 evaluation)
            or ``"max_directed"`` (the larger directed 95th percentile: the paper's Eq. 2, MONAI).
        empty_hd95: HD95 when exactly one mask is empty or the prediction is missing (mm).
        num_processes: worker processes over cases (:func:`nnunetv2_druwas.parallel.parallel_map`,
            at least :data:`MIN_CASES_PER_WORKER` cases each); 1 runs in this process.
        progress: show a tqdm progress bar and print the summary table.
        cases: score only these case ids (e.g. a fold's validation cases when ``gt_dir``
            holds the whole training set); each must have a ground truth. None: every
            ground-truth case in ``gt_dir``.
        protocol: an evaluation protocol (:data:`nnunetv2_druwas.evaluation.protocols.PROTOCOLS`);
            ``brats`` and ``eq2`` set ``hd95`` (``brats`` / ``max_directed``). None: ``hd95`` decides.

    Returns:
        One row per case x region (WT, TC, ET) with columns case, region, dice, hd95,
        sensitivity, specificity, n_pred, n_ref, n_tp, missing, hd95_definition.
        ``df.attrs["extra_predictions"]`` lists predictions without ground truth (not scored;
        predictions of ground-truth cases left out by ``cases`` are ignored silently).
    """
    import pandas as pd

    if protocol is not None:
        hd95 = _protocol_hd95(protocol)
    pred_dir, gt_dir = Path(pred_dir), Path(gt_dir)
    for name, folder in (("prediction", pred_dir), ("ground-truth", gt_dir)):
        if not folder.is_dir():
            raise DruwasError(f"{name} folder {folder} does not exist")
    if pred_dir.resolve() == gt_dir.resolve():
        print(f"warning: the prediction and ground-truth folders are the same folder ({gt_dir}): every case "
              "scores perfectly", file=sys.stderr)
    if hd95 not in HD95_DEFINITIONS:
        raise DruwasError(f"unknown HD95 definition {hd95!r}; choose one of {HD95_DEFINITIONS}")
    regions = resolve_regions(labels, dataset_json, pred_dir, gt_dir)
    pairs, extra = match_cases(pred_dir, gt_dir, cases)
    jobs = [(case, pred, gt, regions, hd95, empty_hd95) for case, (pred, gt) in pairs.items()]
    scored = parallel_map(_evaluate_job, jobs, num_processes, desc="evaluate", progress=progress,
                          min_jobs_per_worker=MIN_CASES_PER_WORKER)
    df = pd.DataFrame([row for case_rows in scored for row in case_rows],
                      columns=["case", "region", "dice", "hd95", "sensitivity", "specificity",
                               "n_pred", "n_ref", "n_tp", "missing", "hd95_definition"])
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
        print(f"{df['case'].nunique()} cases, HD95 definition {hd95!r}, "
              f"{int(df.groupby('case')['missing'].any().sum())} missing prediction(s)")
        print(summary.to_string(index=False, float_format=lambda v: f"{v:.4f}"))
    return df


def _protocol_hd95(protocol: str) -> str:
    from nnunetv2_druwas.evaluation.protocols import check_protocol

    definitions = {"brats": "brats", "eq2": "max_directed"}
    if check_protocol(protocol) not in definitions:
        raise DruwasError(f"the {protocol} protocol is not wired into evaluate_folder yet")
    return definitions[protocol]


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
    """Mean, std, median and quartiles of Dice and HD95 per region, with the count of missing cases.

    Args:
        df: the table :func:`evaluate_folder` returns.
    """
    long = df.melt(id_vars=["region", "missing"], value_vars=list(SUMMARY_METRICS), var_name="metric")
    grouped = long.groupby(["region", "metric"], sort=False)
    summary = grouped["value"].agg(n="count", mean="mean", std="std", median="median",
                                   q25=lambda v: v.quantile(0.25), q75=lambda v: v.quantile(0.75))
    summary["n_missing"] = grouped["missing"].sum().astype(int)
    return summary.reset_index()


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("pred_dir", type=Path, help="folder of predicted label maps (.nii.gz/.nii)")
    parser.add_argument("gt_dir", type=Path, help="folder of ground-truth label maps, matched by case id")
    parser.add_argument("-o", "--output", type=Path, required=True,
                        help="per-case CSV to write; the summary goes to <stem>_summary.csv beside it")
    parser.add_argument("--labels", choices=sorted(LABEL_CONVENTIONS), default=None,
                        help="label convention: nnunet (1 edema, 2 necrosis, 3 enhancing) or brats (1, 2, 4); "
                             "default: the regions of a region-based dataset.json")
    parser.add_argument("--dataset-json", type=Path, default=None,
                        help="dataset.json to take the regions from (default: looked up beside the folders)")
    parser.add_argument("--hd95", choices=HD95_DEFINITIONS, default="brats",
                        help="brats: pooled 95th percentile as medpy/BraTS 2018-2020 (default); "
                             "max_directed: larger directed 95th percentile (paper Eq. 2, MONAI)")
    parser.add_argument("--empty-hd95", type=float, default=BRATS_EMPTY_HD95,
                        help=f"HD95 when exactly one mask is empty or a prediction is missing "
                             f"(default {BRATS_EMPTY_HD95} mm)")
    parser.add_argument("--cases", nargs="+", default=None, metavar="CASE",
                        help="score only these case ids (default: every ground-truth case)")
    parser.add_argument("--num-processes", type=int, default=2, help="worker processes over cases (default 2)")


def run(args: argparse.Namespace) -> int:
    evaluate_folder(args.pred_dir, args.gt_dir, args.output, labels=args.labels, dataset_json=args.dataset_json,
                    hd95=args.hd95, empty_hd95=args.empty_hd95, num_processes=args.num_processes,
                    cases=args.cases)
    return 0
