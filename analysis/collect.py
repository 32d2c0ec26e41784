"""Find the evaluated folds under an nnU-Net results folder and build the one tidy table.

Layout read (nnU-Net's)::

    <results>/DatasetXXX_Name/<Trainer>__<Plans>__<Configuration>/fold_N/brats_metrics.csv

``brats_metrics.csv`` is written by ``nnunetv2_druwas evaluate`` (one row per case x
region). The tidy table :func:`collect` returns has one row per dataset x trainer x
plans x configuration x fold x case x region, the metrics as columns, and the
dataset's BraTS year, the ablation variant key and the training recipe. Tables,
statistics and plots are all computed from it.

The BraTS year of a dataset comes from, in this order: an override
(``{500: 2020}`` or ``{"Dataset500_BraTS2020": 2020}``), the key ``brats_year`` of
``$nnUNet_raw/<dataset>/dataset.json``, of ``$nnUNet_preprocessed/<dataset>/dataset.json``,
or of the ``dataset.json`` nnU-Net copies into each trainer folder. Datasets
without one stay in the tidy table (``brats_year`` empty) but in none of Tables 1-4.

Completeness (decision): the expected folds of a run are the union of the folds
(``fold_<int>`` folders) that any trainer folder of the same dataset and
configuration has. A run is incomplete when it lacks one of them, when a fold is not
done (:func:`nnunetv2_druwas.folds.fold_state`: no ``brats_metrics.csv``; the issue says
whether it is still training, trained but not evaluated, or its BraTS evaluation failed
and why), or when its CSVs contain rows with ``missing`` true (a prediction that was
not there). Those rows
keep whatever values the evaluation gave them. Incomplete runs stay in the tables,
marked and explained in a footnote (``complete`` column), unless the caller drops them.
``fold_all`` folders are not cross-validation folds and are skipped (noted).
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from nnunetv2_druwas import env
from nnunetv2_druwas.data.brats import REGIONS
from nnunetv2_druwas.errors import DruwasError
from nnunetv2_druwas.folds import METRICS_FILE, FoldState, describe, fold_state
from nnunetv2_druwas.variants import lookup_trainer

CSV_COLUMNS = ("case", "region", "dice", "hd95", "sensitivity", "specificity", "n_pred", "n_ref", "missing",
               "hd95_definition")
RUN_KEYS = ["dataset", "trainer", "plans", "configuration"]
_DATASET_DIR = re.compile(r"^Dataset(\d{3})_(.+)$")
_FOLD_DIR = re.compile(r"^fold_(\d+)$")
#: the values a metric may take in a metrics file (empty cells are allowed: e.g. the specificity of a
#: missing prediction); anything else is an error naming the file and line.
METRIC_RANGES = {"dice": (0.0, 1.0), "sensitivity": (0.0, 1.0), "specificity": (0.0, 1.0),
                 "hd95": (0.0, float("inf"))}


@dataclass
class Collection:
    """What was found under a results folder.

    Attributes:
        per_case: the tidy table (one row per dataset x trainer x plans x configuration x fold x case x region).
        runs: one row per trainer folder: the run keys, ``dataset_id``, ``brats_year``, ``variant``,
            ``recipe``, ``folds`` (evaluated folds, comma separated), ``complete`` and ``issues``
            (why it is incomplete, '' when complete).
        notes: remarks for the footnotes (skipped folders, datasets without a year).
    """
    per_case: pd.DataFrame
    runs: pd.DataFrame
    notes: list[str] = field(default_factory=list)


def parse_year_overrides(items: list[str] | None) -> dict[str | int, int]:
    """``["500=2020", "Dataset501_X=2019"]`` -> ``{500: 2020, "Dataset501_X": 2019}``.

    Args:
        items: ``DATASET=YEAR`` strings; DATASET is a dataset id or a full dataset folder name.
    """
    overrides: dict[str | int, int] = {}
    for item in items or []:
        key, sep, year = item.partition("=")
        if not sep or not year.strip().isdigit():
            raise DruwasError(f"--year-override {item!r}: write DATASET=YEAR, e.g. 500=2020")
        key = key.strip()
        overrides[int(key) if key.isdigit() else key] = int(year)
    return overrides


def _brats_year_from(path: Path) -> int | None:
    if not path.is_file():
        return None
    try:
        value = json.loads(path.read_text()).get("brats_year")
    except (json.JSONDecodeError, OSError, AttributeError) as exc:
        raise DruwasError(f"{path}: not a readable dataset.json ({exc}); fix it or pass --year-override") from exc
    return None if value is None else int(value)


def dataset_year(dataset_dir: Path, overrides: dict[str | int, int] | None = None) -> int | None:
    """The BraTS year of one results dataset folder (see the module docstring for the order).

    Args:
        dataset_dir: ``<results>/DatasetXXX_Name``.
        overrides: dataset id or folder name -> year; these win over every dataset.json.
    """
    overrides = overrides or {}
    name = dataset_dir.name
    match = _DATASET_DIR.match(name)
    for key in (name, int(match.group(1)) if match else None):
        if key in overrides:
            return overrides[key]
    candidates = [Path(folder) / name / "dataset.json"
                  for folder in (env.value("nnUNet_raw"), env.value("nnUNet_preprocessed")) if folder]
    candidates += sorted(dataset_dir.glob("*__*__*/dataset.json"))
    for path in candidates:
        year = _brats_year_from(path)
        if year is not None:
            return year
    return None


def read_metrics(path: Path) -> pd.DataFrame:
    """One ``brats_metrics.csv``, checked: the expected columns and regions WT/TC/ET only.

    Args:
        path: the CSV file.
    """
    try:
        frame = pd.read_csv(path, dtype={"case": str})
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise DruwasError(f"{path}: not a readable CSV ({exc}); re-run `nnunetv2_druwas evaluate`") from exc
    absent = [c for c in CSV_COLUMNS if c not in frame.columns]
    if absent:
        raise DruwasError(f"{path}: missing column(s) {', '.join(absent)}; re-run `nnunetv2_druwas evaluate`")
    unknown = sorted(set(frame["region"].astype(str)) - set(REGIONS))
    if unknown:
        raise DruwasError(f"{path}: unknown region(s) {', '.join(unknown)}; expected {', '.join(REGIONS)}")
    frame = frame[list(CSV_COLUMNS)].copy()
    frame["missing"] = frame["missing"].map(lambda v: str(v).strip().lower() in ("true", "1", "1.0"))
    for column, (low, high) in METRIC_RANGES.items():
        values = pd.to_numeric(frame[column], errors="coerce")
        text = values.isna() & frame[column].notna()
        outside = ~values.between(low, high) & values.notna()
        for bad, what in ((text, "is not a number"), (outside, f"is outside [{low}, {high}]")):
            if bad.any():
                row = int(bad.to_numpy().argmax())
                raise DruwasError(f"{path}: line {row + 2} (case {frame['case'].iloc[row]}, region "
                                  f"{frame['region'].iloc[row]}): {column} {frame[column].iloc[row]} {what}; "
                                  f"re-run `nnunetv2_druwas evaluate` or correct the file")
        frame[column] = values
    return frame


def collect(results: Path | str | None, year_overrides: dict[str | int, int] | None = None) -> Collection:
    """Read every evaluated fold under ``results`` into the tidy table.

    Args:
        results: the nnU-Net results folder (``$nnUNet_results``); None or an empty folder gives
            empty tables (the published rows are then all there is).
        year_overrides: dataset id or folder name -> BraTS year, winning over every dataset.json.
    """
    notes: list[str] = []
    runs, frames = [], []
    results = Path(results) if results is not None else None
    if results is not None and not results.is_dir():
        raise DruwasError(f"{results}: results folder not found; pass --results or set nnUNet_results")
    dataset_dirs = sorted(p for p in results.iterdir() if p.is_dir() and _DATASET_DIR.match(p.name)) \
        if results is not None else []
    for dataset_dir in dataset_dirs:
        dataset_runs = _find_runs(dataset_dir, notes)
        if not dataset_runs:
            continue
        year = dataset_year(dataset_dir, year_overrides)
        if year is None and any((f / METRICS_FILE).is_file() for *_, folds in dataset_runs for f in folds.values()):
            notes.append(f"{dataset_dir.name} has no brats_year in its dataset.json: it is in per_case.csv and "
                         f"the statistics but in no table; pass --year-override "
                         f"{dataset_dir.name[7:10]}=YEAR to place it.")
        expected: dict[str, set[int]] = {}
        for _, _, configuration, folds in dataset_runs:
            expected.setdefault(configuration, set()).update(folds)
        for trainer, plans, configuration, folds in dataset_runs:
            keys = dict(dataset=dataset_dir.name, trainer=trainer, plans=plans, configuration=configuration)
            run, run_frames = _read_run(keys, folds, expected[configuration])
            found = lookup_trainer(trainer)
            runs.append(dict(**keys, dataset_id=int(dataset_dir.name[7:10]), brats_year=year,
                             variant=found[0].key if found else None, recipe=found[1] if found else None, **run))
            frames += run_frames
    run_table = pd.DataFrame(runs, columns=RUN_KEYS + ["dataset_id", "brats_year", "variant", "recipe", "folds",
                                                       "complete", "issues"])
    run_table["brats_year"] = run_table["brats_year"].astype("Int64")
    per_case = pd.concat(frames, ignore_index=True) if frames else \
        pd.DataFrame(columns=["fold", *CSV_COLUMNS, *RUN_KEYS])
    per_case = per_case.merge(run_table[RUN_KEYS + ["dataset_id", "brats_year", "variant", "recipe", "complete"]],
                              on=RUN_KEYS, how="left")
    columns = ["dataset", "dataset_id", "brats_year", "trainer", "plans", "configuration", "variant", "recipe",
               "complete", "fold", *CSV_COLUMNS]
    per_case = per_case[columns].astype({"fold": int, "dataset_id": int})
    if results is not None and run_table.empty:
        notes.append(f"No runs were found in {results} (it has no Dataset*/<trainer>__<plans>__<configuration>/"
                     f"fold_N folders): the tables hold the published rows only; check --results.")
    return Collection(per_case=per_case, runs=run_table, notes=notes)


def _find_runs(dataset_dir: Path, notes: list[str]) -> list[tuple[str, str, str, dict[int, Path]]]:
    """(trainer, plans, configuration, fold -> fold folder) of every trainer folder with folds."""
    found = []
    for run_dir in sorted(p for p in dataset_dir.iterdir() if p.is_dir() and p.name.count("__") == 2):
        trainer, plans, configuration = run_dir.name.split("__")
        folds: dict[int, Path] = {}
        for fold_dir in sorted(p for p in run_dir.iterdir() if p.is_dir() and p.name.startswith("fold_")):
            match = _FOLD_DIR.match(fold_dir.name)
            if match:
                folds[int(match.group(1))] = fold_dir
            elif (fold_dir / METRICS_FILE).is_file():
                notes.append(f"{fold_dir} skipped: not a cross-validation fold.")
        if folds:
            found.append((trainer, plans, configuration, folds))
    return found


def _read_run(keys: dict[str, str], folds: dict[int, Path], expected: set[int]) -> tuple[dict, list[pd.DataFrame]]:
    """One run's ``folds`` (evaluated folds), ``complete`` and ``issues``, and the per-case frames of
    its done folds (each fold's state from :func:`nnunetv2_druwas.folds.fold_state`)."""
    issues, evaluated, frames = [], [], []
    absent = sorted(expected - set(folds))
    if absent:
        issues.append(f"fold(s) {', '.join(map(str, absent))} absent")
    for fold, fold_dir in sorted(folds.items()):
        if fold_state(fold_dir) != FoldState.DONE:
            issues.append(f"fold {fold}: {describe(fold_dir)}")
            continue
        frame = read_metrics(fold_dir / METRICS_FILE)
        n_missing = int(frame["missing"].sum())
        if n_missing:
            issues.append(f"fold {fold}: {n_missing} of {len(frame)} case-region rows without prediction")
        frame.insert(0, "fold", fold)
        frames.append(frame.assign(**keys))
        evaluated.append(fold)
    return dict(folds=",".join(map(str, evaluated)), complete=not issues, issues="; ".join(issues)), frames
