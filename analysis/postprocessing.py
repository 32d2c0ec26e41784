"""nnU-Net's BraTS postprocessing as an axis of the tables: every run with and without it.

For every run (trainer folder) with evaluated folds:

1. Its threshold: the run's ``brats_postprocessing.json`` (written by ``nnunetv2_druwas postprocess
   RUN_FOLDER``); a run without one gets one chosen on its cross-validation predictions and cached there
   (:func:`nnunetv2_druwas.evaluation.postprocess.choose_threshold`, worker processes over runs), applied
   as :func:`~nnunetv2_druwas.evaluation.postprocess.read_threshold` applies it. A run whose folds lack
   their ``validation/`` predictions (or ``$nnUNet_preprocessed``'s ground truths and splits) gets none:
   noted in ``postprocessing.csv``, never fatal.
2. Its per-case values with postprocessing, per fold: :func:`score_postprocessed_fold` applies the
   threshold to each prediction of ``fold_N/validation/`` whose case the fold's ``<protocol>_metrics.csv``
   lists (only those whose predicted ET the fold's ``brats_metrics.csv`` counts below the threshold are
   read, where it counts them); the cases it changes are written to a temporary folder and scored by the
   evaluation's own per-case scoring (:func:`nnunetv2_druwas.evaluation.evaluate.evaluate_folder`, the
   table's protocol), the unchanged cases keep their rows of ``<protocol>_metrics.csv`` (the same
   prediction scores the same).
   The result is cached in the fold as ``<protocol>_postprocessed_metrics.csv``
   (:func:`postprocessed_metrics_name`; columns of the metrics file plus ``postprocessed``, whether the
   case changed, and ``threshold``), and scored again when the run's threshold differs from the one it
   records or the fold's ``<protocol>_metrics.csv`` is newer.
3. :func:`postprocess` returns a :class:`~analysis.collect.Collection` of the postprocessed values (the
   tidy table of the same runs, folds and cases; the tables' ``+ postprocessing`` rows and the paired
   tests with vs without come from it) and ``postprocessing.csv``: one row per run (:data:`COLUMNS`).

The threshold is chosen on the very cases it is then evaluated on, as nnU-Net chose it for its BraTS 2020
entry: the ``+ postprocessing`` rows are optimistic by that selection.
"""
from __future__ import annotations

import tempfile
from pathlib import Path

import pandas as pd

from analysis.collect import CSV_COLUMNS, RUN_KEYS, Collection, read_metrics
from nnunetv2_druwas import env
from nnunetv2_druwas.errors import DruwasError
from nnunetv2_druwas.evaluation.protocols import DEFAULT_PROTOCOL, metrics_file_name

#: ``postprocessing.csv``: per run its threshold, where it came from (``found``: the run had it; ``chosen``:
#: chosen now), the cases and folds it was chosen on, the cases it changed there and the mean ET Dice there
#: without and with it (BraTS's empty-mask convention: the choice's criterion), then under the table's
#: protocol: the folds postprocessed, the cases, and the run's mean ET Dice without and with it over those
#: cases; ``issues``: why a run has no postprocessed values (or fewer folds), '' when none.
COLUMNS = ["dataset", "trainer", "plans", "configuration", "variant", "recipe", "repeat", "release", "threshold",
           "threshold_from", "chosen_on_folds", "chosen_on_n", "cases_changed", "mean_et_dice_without",
           "mean_et_dice_with", "protocol", "folds", "n_cases", "et_dice_without", "et_dice_with", "issues"]
_VALUES = [c for c in CSV_COLUMNS if c not in ("case", "region", "protocol")]


def postprocessed_metrics_name(protocol: str) -> str:
    """The per-fold file of postprocessed values under ``protocol``: ``<protocol>_postprocessed_metrics.csv``.

    Args:
        protocol: a key of :data:`nnunetv2_druwas.evaluation.protocols.PROTOCOLS`.
    """
    return metrics_file_name(protocol).removesuffix("_metrics.csv") + "_postprocessed_metrics.csv"


def _cached(output: Path, plain: Path, threshold: int) -> bool:
    """Whether ``output`` holds the postprocessed values of ``plain`` at ``threshold``."""
    if not output.is_file() or not plain.is_file() or output.stat().st_mtime_ns < plain.stat().st_mtime_ns:
        return False
    try:
        recorded = set(pd.read_csv(output, usecols=["threshold"])["threshold"].dropna().astype(int))
    except (ValueError, OSError, pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError):
        return False
    return recorded == {threshold}


def score_postprocessed_fold(fold_dir: str | Path, protocol: str, threshold: int, *,
                             preprocessed: str | Path | None = None) -> Path:
    """Score a fold's validation predictions after nnU-Net's BraTS postprocessing; cache the file in the fold.

    Args:
        fold_dir: the fold folder; it needs ``validation/`` and ``<protocol>_metrics.csv`` (whose cases are
            the ones scored).
        protocol: the evaluation protocol.
        threshold: the threshold to apply (voxels; as :func:`~nnunetv2_druwas.evaluation.postprocess.read_threshold`
            returns it).
        preprocessed: nnU-Net's preprocessed folder (ground truths, dataset.json); None reads ``nnUNet_preprocessed``.

    Returns:
        ``fold_dir/<protocol>_postprocessed_metrics.csv`` (kept when it holds this threshold and is newer than
        the fold's metrics file).

    Raises:
        DruwasError: no ``validation/`` folder or metrics file, an unreadable prediction, or any error of the
            evaluation (each naming the file or case).
    """
    import nibabel as nib
    import numpy as np

    from nnunetv2_druwas.evaluation.evaluate import evaluate_folder, find_cases, read_segmentation
    from nnunetv2_druwas.evaluation.postprocess import apply_threshold
    from nnunetv2_druwas.evaluation.results import fold_parts
    from nnunetv2_druwas.files import write_text

    fold_dir = Path(fold_dir)
    output, plain_path = fold_dir / postprocessed_metrics_name(protocol), fold_dir / metrics_file_name(protocol)
    if not plain_path.is_file():
        raise DruwasError(f"{plain_path} does not exist: the fold is not scored under {protocol}")
    if _cached(output, plain_path, threshold):
        return output
    if not (fold_dir / "validation").is_dir():
        raise DruwasError(f"{fold_dir} has no validation/ predictions to postprocess")
    dataset, _ = fold_parts(fold_dir)
    data = Path(preprocessed or env.require("nnUNet_preprocessed")) / dataset
    try:
        plain = pd.read_csv(plain_path, dtype={"case": str})
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise DruwasError(f"{plain_path}: not a readable CSV ({exc})") from exc
    predictions = find_cases(fold_dir / "validation")
    counts = _et_voxels(fold_dir / metrics_file_name(DEFAULT_PROTOCOL))
    changed = []
    with tempfile.TemporaryDirectory(prefix="druwas_postprocessed_") as tmp:
        for case in sorted(set(plain["case"])):
            if case not in predictions:      # a missing prediction stays missing
                continue
            if case in counts and not 0 < counts[case] < threshold:     # the rule leaves it as it is: not read
                continue
            labels, _ = read_segmentation(predictions[case])
            processed = apply_threshold(labels, threshold)
            if processed is labels:
                continue
            image = nib.load(str(predictions[case]))
            written = nib.Nifti1Image(processed.astype(np.uint8), image.affine, image.header)
            written.set_data_dtype(np.uint8)
            written.header.set_slope_inter(1, 0)
            nib.save(written, str(Path(tmp) / f"{case}.nii.gz"))
            changed.append(case)
        scored = evaluate_folder(tmp, data / "gt_segmentations", None, dataset_json=data / "dataset.json",
                                 protocol=protocol, cases=changed, num_processes=1, progress=False) \
            if changed else plain.iloc[:0]
    frame = pd.concat([plain[~plain["case"].isin(changed)], scored], ignore_index=True)
    frame = frame.reindex(columns=list(dict.fromkeys([*plain.columns, *scored.columns])))
    frame = frame.assign(protocol=protocol, postprocessed=frame["case"].isin(changed), threshold=int(threshold))
    order = {case: k for k, case in enumerate(plain["case"].drop_duplicates())}
    frame = frame.sort_values("case", key=lambda c: c.map(order), kind="stable", ignore_index=True)
    write_text(output, frame.to_csv(index=False))
    return output


def _et_voxels(path: Path) -> dict[str, int]:
    """case -> predicted ET voxels, from a fold's ``brats_metrics.csv`` (``n_pred`` of its ET rows: the whole
    prediction's count); {} when the file or the column is not there (every prediction is then read)."""
    try:
        frame = pd.read_csv(path, dtype={"case": str})
        rows = frame[(frame["region"] == "ET") & ~frame["missing"].astype(str).str.lower().isin(["true", "1"])]
        counts = pd.to_numeric(rows["n_pred"], errors="raise")
    except (OSError, KeyError, ValueError, pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError):
        return {}
    return {} if counts.isna().any() else dict(zip(rows["case"], counts.astype(int)))


def _threshold_job(run_dir: Path) -> tuple[int | None, dict, str]:
    """A run's threshold as applied, what its file holds (the file chosen now when the run has none; in a
    worker process), or None, {} and the reason it has none."""
    from nnunetv2_druwas.evaluation.postprocess import choose_threshold, read_threshold

    try:
        details = choose_threshold(run_dir, num_processes=1, progress=False)
        return read_threshold(run_dir), details, ""
    except DruwasError as exc:
        return None, {}, str(exc)


def _fold_job(job: tuple[Path, str, int]) -> str:
    """Postprocess and score one fold in a worker process; the error message, or '' when it worked."""
    try:
        score_postprocessed_fold(*job)
    except DruwasError as exc:
        return str(exc)
    return ""


def postprocess(collection: Collection, results: Path | str, *, num_processes: int = 2,
                progress: bool = False) -> tuple[Collection, pd.DataFrame]:
    """Every run of ``collection`` with nnU-Net's BraTS postprocessing (module docstring).

    Args:
        collection: the runs and per-case values without postprocessing (:func:`analysis.collect.collect`).
        results: the results folder the runs lie in.
        num_processes: worker processes (over runs for choosing thresholds, over folds for scoring).
        progress: show progress bars.

    Returns:
        The postprocessed collection (the same columns; a run's ``folds``, ``complete`` and ``issues`` say
        which folds have postprocessed values and why others have none, ``postprocessing_issues`` the part
        of ``issues`` that is the postprocessing's) and ``postprocessing.csv``'s table.
    """
    from nnunetv2_druwas.evaluation.postprocess import POSTPROCESSING_FILE
    from nnunetv2_druwas.parallel import parallel_map

    results = Path(results)
    protocol = collection.protocol
    runs = collection.runs[collection.runs["folds"].fillna("") != ""].reset_index(drop=True)
    run_dirs = [results / row.dataset / f"{row.trainer}__{row.plans}__{row.configuration}"
                for row in runs.itertuples()]
    found = [(folder / POSTPROCESSING_FILE).is_file() for folder in run_dirs]
    outcomes = parallel_map(_threshold_job, run_dirs, 0 if all(found) else num_processes, unit="run",
                            desc="choose postprocessing thresholds", progress=progress and not all(found))
    thresholds = [threshold for threshold, _, _ in outcomes]
    info = [details for _, details, _ in outcomes]
    issues = [[f"no threshold: {issue}"] if issue else [] for _, _, issue in outcomes]
    jobs = [(folder / f"fold_{fold}", protocol, threshold)
            for folder, threshold, row in zip(run_dirs, thresholds, runs.itertuples()) if threshold is not None
            for fold in _folds(row.folds)]
    todo = [job for job in jobs if not _cached(job[0] / postprocessed_metrics_name(protocol),
                                               job[0] / metrics_file_name(protocol), job[2])]
    errors = dict(zip([job[0] for job in todo], parallel_map(_fold_job, todo, num_processes,
                                                             desc=f"postprocess folds ({protocol})", unit="fold",
                                                             progress=progress, min_jobs_per_worker=2)))
    frames, done = [], []
    for k, row in enumerate(runs.itertuples()):
        folds = []
        if thresholds[k] is not None:
            for fold in _folds(row.folds):
                fold_dir = run_dirs[k] / f"fold_{fold}"
                if errors.get(fold_dir):
                    issues[k].append(f"fold {fold}: postprocessing failed: {errors[fold_dir]}")
                    continue
                frame = read_metrics(fold_dir / postprocessed_metrics_name(protocol), protocol)
                frames.append(frame.assign(fold=fold, **{key: getattr(row, key) for key in RUN_KEYS}))
                folds.append(fold)
        done.append(folds)
    keys = [*RUN_KEYS, "fold", "case", "region"]
    values = pd.concat(frames, ignore_index=True)[keys + _VALUES] if frames else \
        pd.DataFrame(columns=keys + _VALUES)
    per_case = collection.per_case
    postprocessed = per_case.drop(columns=_VALUES).merge(values.astype({"fold": int}), on=keys, how="inner")
    postprocessed = postprocessed[list(per_case.columns)]
    processed_runs = runs.assign(
        folds=[",".join(map(str, folds)) for folds in done],
        complete=[bool(c) and not issue for c, issue in zip(runs["complete"], issues)],
        issues=["; ".join(filter(None, [i, *issue])) for i, issue in zip(runs["issues"], issues)],
        postprocessing_issues=["; ".join(issue) for issue in issues])
    pp = Collection(postprocessed, processed_runs, protocol=protocol)
    return pp, _table(runs, thresholds, found, info, done, issues, per_case, postprocessed, protocol)


def _folds(folds: str) -> list[int]:
    return [int(f) for f in str(folds).split(",") if f.strip()]


def _table(runs: pd.DataFrame, thresholds: list, found: list[bool], info: list[dict], done: list[list[int]],
           issues: list[list[str]], per_case: pd.DataFrame, postprocessed: pd.DataFrame,
           protocol: str) -> pd.DataFrame:
    """``postprocessing.csv`` (:data:`COLUMNS`)."""
    keys = [*RUN_KEYS, "fold", "case"]
    et = [frame[frame["region"] == "ET"][keys + ["dice"]] for frame in (per_case, postprocessed)]
    matched = et[0].merge(et[1], on=keys, suffixes=("_without", "_with"))
    means = matched.groupby(RUN_KEYS)[["dice_without", "dice_with"]].mean()
    counts = matched.groupby(RUN_KEYS).size()
    rows = []
    for k, row in enumerate(runs.itertuples()):
        key = tuple(getattr(row, c) for c in RUN_KEYS)
        details = info[k]
        has = key in means.index
        rows.append(dict(
            **{c: getattr(row, c) for c in ["dataset", "trainer", "plans", "configuration", "variant", "recipe",
                                            "repeat", "release"]},
            threshold=thresholds[k], threshold_from=None if thresholds[k] is None else
            "found" if found[k] else "chosen",
            chosen_on_folds=",".join(map(str, details.get("folds", []))) or None, chosen_on_n=details.get("n"),
            cases_changed=details.get("cases_changed"), mean_et_dice_without=details.get("mean_et_dice_without"),
            mean_et_dice_with=details.get("mean_et_dice_chosen"), protocol=protocol,
            folds=",".join(map(str, done[k])), n_cases=int(counts[key]) if has else 0,
            et_dice_without=means.at[key, "dice_without"] if has else None,
            et_dice_with=means.at[key, "dice_with"] if has else None, issues="; ".join(issues[k])))
    table = pd.DataFrame(rows, columns=COLUMNS)
    return table.astype({"threshold": "Int64", "chosen_on_n": "Int64", "cases_changed": "Int64"})
