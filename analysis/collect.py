"""Find the evaluated folds under an nnU-Net results folder and build the one tidy table.

Layout read (nnU-Net's)::

    <results>/DatasetXXX_Name/<Trainer>__<Plans>__<Configuration>/fold_N/<protocol>_metrics.csv

``<protocol>_metrics.csv`` (:func:`nnunetv2_druwas.evaluation.protocols.metrics_file_name`;
``brats_metrics.csv`` for the default ``brats`` protocol) holds one row per case x region. The
tidy table :func:`collect` returns has one row per dataset x trainer x plans x configuration x
fold x case x region, the metrics as columns, and the dataset's BraTS year, the ablation variant
key, the training recipe, the repeat and the protocol. Tables, statistics and plots are all
computed from it.

Scoring on demand: a fold that lacks the protocol's file but has its final validation
(``fold_N/validation/``, nnU-Net's predictions of the fold's validation cases) is scored by
:func:`nnunetv2_druwas.evaluation.results.score_fold` (worker processes over folds, a progress
bar) and the file is cached in the fold. This is how nnU-Net's own trainers (reference rows)
and any protocol besides the one the trainers wrote get their numbers (a fold whose BraTS evaluation
failed during training is not scored again for ``brats``: its recorded reason is reported). A fold that cannot be
scored (e.g. the ``authors`` protocol on volumes that are not 240 x 240 x 155) makes its run
incomplete, with the reason, and never stops the analysis.

Repeats and references: a trainer named ``<trainer>_repeat<k>`` is repeat k of ``<trainer>``
(:func:`nnunetv2_druwas.variants.split_repeat`): its own run (``trainer``), one measured row with
the others (``base_trainer``, ``repeat``). A trainer that is not a DRUwAS variant (``variant``
empty, e.g. ``nnUNetTrainer``) is a reference run.

The release and BraTS year of a dataset come from, in this order: an override (a year:
``{500: 2020}`` or ``{"Dataset500_BraTS2020": 2020}``), the keys ``release`` and ``brats_year`` of
``$nnUNet_raw/<dataset>/dataset.json``, of ``$nnUNet_preprocessed/<dataset>/dataset.json``,
or of the ``dataset.json`` nnU-Net copies into each trainer folder
(:func:`nnunetv2_druwas.data.brats.release_of_dataset`: ``"2020"``, ``"2021"``, ``"2023"``, ``"msd"``, ...;
the Decathlon's ``msd`` has no BraTS year). Datasets without either stay in the tidy table
(``release`` and ``brats_year`` empty) but in no table.

Completeness (decision): the expected folds of a run are the union of the folds
(``fold_<int>`` folders) that any trainer folder of the same dataset and
configuration has. A run is incomplete when it lacks one of them, when a fold is not
done (still training: :func:`nnunetv2_druwas.folds.fold_state`; or no metrics file of the
protocol and nothing to score it from, or its scoring failed: the issue says which and why),
or when its CSVs contain rows with ``missing`` true (a prediction that was not there). Those rows
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
from nnunetv2_druwas.data.brats import REGIONS, release_of_dataset
from nnunetv2_druwas.errors import DruwasError
from nnunetv2_druwas.evaluation.protocols import DEFAULT_PROTOCOL, check_protocol, metrics_file_name
from nnunetv2_druwas.folds import FoldState, describe, fold_state
from nnunetv2_druwas.variants import lookup_trainer, split_repeat

#: Columns every metrics file must have; the others are filled in when a protocol does not write them.
REQUIRED_COLUMNS = ("case", "region", "dice", "hd95")
OPTIONAL_COLUMNS = {"sensitivity": float("nan"), "specificity": float("nan"), "n_pred": float("nan"),
                    "n_ref": float("nan"), "missing": False, "hd95_definition": ""}
CSV_COLUMNS = (*REQUIRED_COLUMNS, *OPTIONAL_COLUMNS, "protocol")
#: One run: one trainer folder (a repeat is a run of its own).
RUN_KEYS = ["dataset", "trainer", "plans", "configuration"]
#: One measured row of the tables: the repeats of a trainer together (``base_trainer`` without ``_repeat<k>``).
ROW_KEYS = ["dataset", "base_trainer", "plans", "configuration"]
_DATASET_DIR = re.compile(r"^Dataset(\d{3})_(.+)$")
_FOLD_DIR = re.compile(r"^fold_(\d+)$")
#: the values a metric may take in a metrics file (empty cells are allowed: e.g. the specificity of a
#: missing prediction); anything else is an error naming the file and line.
METRIC_RANGES = {"dice": (0.0, 1.0), "sensitivity": (0.0, 1.0), "specificity": (0.0, 1.0),
                 "hd95": (0.0, float("inf"))}
#: how far past a range's ends a value may lie: the authors' Dice adds 1e-9 to its numerator, so their
#: perfect case scores 1 + 1e-9 / (|A| + |B|) (README, Protocols).
RANGE_TOLERANCE = 1e-6


@dataclass
class Collection:
    """What was found under a results folder.

    Attributes:
        per_case: the tidy table (one row per dataset x trainer x plans x configuration x fold x case x region).
        runs: one row per trainer folder: the run keys, ``dataset_id``, ``brats_year``, ``release``, ``base_trainer``,
            ``repeat``, ``variant``, ``recipe``, ``protocol``, ``folds`` (evaluated folds, comma separated),
            ``complete`` and ``issues`` (why it is incomplete, '' when complete).
        notes: remarks for the footnotes (skipped folders, datasets without a year).
        protocol: the evaluation protocol of every number in it.
    """
    per_case: pd.DataFrame
    runs: pd.DataFrame
    notes: list[str] = field(default_factory=list)
    protocol: str = DEFAULT_PROTOCOL


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


def _release_from(path: Path) -> tuple[str | None, int | None]:
    """(release key, BraTS year) a dataset.json records (:func:`nnunetv2_druwas.data.brats.release_of_dataset`;
    a release this version does not convert keeps the name it records); (None, None) without either."""
    if not path.is_file():
        return None, None
    try:
        info = json.loads(path.read_text())
        year = info.get("brats_year")
        year = None if year is None else int(year)
    except (json.JSONDecodeError, OSError, AttributeError, TypeError, ValueError) as exc:
        raise DruwasError(f"{path}: not a readable dataset.json ({exc}); fix it or pass --year-override") from exc
    try:
        release = release_of_dataset(info)
    except DruwasError:
        release = None
    if release is not None:
        return release.key, year if year is not None else release.year
    recorded = info.get("release", year)
    return (None if recorded is None else str(recorded).strip().lower()), year


def dataset_release(dataset_dir: Path, overrides: dict[str | int, int] | None = None) -> tuple[str | None, int | None]:
    """The release (``"2020"``, ``"2021"``, ``"msd"``, ...) and BraTS year of one results dataset folder
    (see the module docstring for the order); (None, None) when nothing records them.

    Args:
        dataset_dir: ``<results>/DatasetXXX_Name``.
        overrides: dataset id or folder name -> year; these win over every dataset.json.
    """
    overrides = overrides or {}
    name = dataset_dir.name
    match = _DATASET_DIR.match(name)
    for key in (name, int(match.group(1)) if match else None):
        if key in overrides:
            return str(overrides[key]), overrides[key]
    candidates = [Path(folder) / name / "dataset.json"
                  for folder in (env.value("nnUNet_raw"), env.value("nnUNet_preprocessed")) if folder]
    candidates += sorted(dataset_dir.glob("*__*__*/dataset.json"))
    for path in candidates:
        release, year = _release_from(path)
        if release is not None:
            return release, year
    return None, None


def read_metrics(path: Path, protocol: str | None = None) -> pd.DataFrame:
    """One ``<protocol>_metrics.csv``, checked: the required columns, regions WT/TC/ET only, and the
    protocol it names (where it has a ``protocol`` column); columns a protocol does not write are filled in.

    Args:
        path: the CSV file.
        protocol: the protocol the file must hold; None: whatever it says (``brats`` when it says nothing).
    """
    try:
        frame = pd.read_csv(path, dtype={"case": str})
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise DruwasError(f"{path}: not a readable CSV ({exc}); re-run `nnunetv2_druwas evaluate`") from exc
    absent = [c for c in REQUIRED_COLUMNS if c not in frame.columns]
    if absent:
        raise DruwasError(f"{path}: missing column(s) {', '.join(absent)}; re-run `nnunetv2_druwas evaluate`")
    unknown = sorted(set(frame["region"].astype(str)) - set(REGIONS))
    if unknown:
        raise DruwasError(f"{path}: unknown region(s) {', '.join(unknown)}; expected {', '.join(REGIONS)}")
    named = sorted(set(frame["protocol"].dropna().astype(str))) if "protocol" in frame else []
    if protocol is not None and named and named != [protocol]:
        raise DruwasError(f"{path}: holds protocol {', '.join(named)}, not {protocol}; score the fold again "
                          f"(nnunetv2_druwas evaluate-results --protocol {protocol} --overwrite --fold-dir ...)")
    for column, default in OPTIONAL_COLUMNS.items():
        if column not in frame:
            frame[column] = default
    frame["protocol"] = protocol or (named[0] if len(named) == 1 else DEFAULT_PROTOCOL)
    frame = frame[list(CSV_COLUMNS)].copy()
    frame["missing"] = frame["missing"].map(lambda v: str(v).strip().lower() in ("true", "1", "1.0"))
    for column, (low, high) in METRIC_RANGES.items():
        values = pd.to_numeric(frame[column], errors="coerce")
        text = values.isna() & frame[column].notna()
        outside = ~values.between(low - RANGE_TOLERANCE, high + RANGE_TOLERANCE) & values.notna()
        for bad, what in ((text, "is not a number"), (outside, f"is outside [{low}, {high}]")):
            if bad.any():
                row = int(bad.to_numpy().argmax())
                raise DruwasError(f"{path}: line {row + 2} (case {frame['case'].iloc[row]}, region "
                                  f"{frame['region'].iloc[row]}): {column} {frame[column].iloc[row]} {what}; "
                                  f"re-run `nnunetv2_druwas evaluate` or correct the file")
        frame[column] = values
    return frame


def collect(results: Path | str | None, year_overrides: dict[str | int, int] | None = None,
            protocol: str = DEFAULT_PROTOCOL, *, score: bool = True, num_processes: int = 2,
            progress: bool = False) -> Collection:
    """Read every evaluated fold under ``results`` into the tidy table, scoring folds that lack ``protocol``.

    Args:
        results: the nnU-Net results folder (``$nnUNet_results``); None or an empty folder gives
            empty tables (the published rows are then all there is).
        year_overrides: dataset id or folder name -> BraTS year, winning over every dataset.json.
        protocol: the evaluation protocol whose per-fold files are read
            (:data:`nnunetv2_druwas.evaluation.protocols.PROTOCOLS`).
        score: score a fold that lacks the protocol's file from its ``validation/`` predictions
            (cached in the fold; needs ``nnUNet_preprocessed``); False: such a fold is not done.
        num_processes: worker processes over the folds to score.
        progress: show a progress bar while scoring.
    """
    check_protocol(protocol)
    name = metrics_file_name(protocol)
    notes: list[str] = []
    runs, frames = [], []
    results = Path(results) if results is not None else None
    if results is not None and not results.is_dir():
        raise DruwasError(f"{results}: results folder not found; pass --results or set nnUNet_results")
    dataset_dirs = sorted(p for p in results.iterdir() if p.is_dir() and _DATASET_DIR.match(p.name)) \
        if results is not None else []
    found = {dataset_dir: _find_runs(dataset_dir, notes, name) for dataset_dir in dataset_dirs}
    errors = _score_folds([fold for dataset_runs in found.values() for *_, folds in dataset_runs
                           for fold in folds.values() if _to_score(fold, protocol)] if score else [],
                          protocol, num_processes, progress)
    for dataset_dir, dataset_runs in found.items():
        if not dataset_runs:
            continue
        release, year = dataset_release(dataset_dir, year_overrides)
        if release is None and any((f / name).is_file() for *_, folds in dataset_runs for f in folds.values()):
            notes.append(f"{dataset_dir.name} has no brats_year (or release) in its dataset.json: it is in "
                         f"per_case.csv and the statistics but in no table; pass --year-override "
                         f"{dataset_dir.name[7:10]}=YEAR to place it.")
        expected: dict[str, set[int]] = {}
        for _, _, configuration, folds in dataset_runs:
            expected.setdefault(configuration, set()).update(folds)
        for trainer, plans, configuration, folds in dataset_runs:
            keys = dict(dataset=dataset_dir.name, trainer=trainer, plans=plans, configuration=configuration)
            run, run_frames = _read_run(keys, folds, expected[configuration], protocol, errors)
            base, repeat = split_repeat(trainer)
            variant = lookup_trainer(base)
            runs.append(dict(**keys, dataset_id=int(dataset_dir.name[7:10]), brats_year=year, release=release,
                             base_trainer=base, repeat=repeat, variant=variant[0].key if variant else None,
                             recipe=variant[1] if variant else None, protocol=protocol, **run))
            frames += run_frames
    described = ["dataset_id", "brats_year", "release", "base_trainer", "repeat", "variant", "recipe", "protocol"]
    run_table = pd.DataFrame(runs, columns=RUN_KEYS + described + ["folds", "complete", "issues"])
    run_table["brats_year"] = run_table["brats_year"].astype("Int64")
    per_case = pd.concat(frames, ignore_index=True) if frames else \
        pd.DataFrame(columns=["fold", *CSV_COLUMNS, *RUN_KEYS])
    per_case = per_case.drop(columns="protocol").merge(run_table[RUN_KEYS + described + ["complete"]],
                                                       on=RUN_KEYS, how="left")
    columns = ["dataset", "dataset_id", "brats_year", "release", "trainer", "base_trainer", "repeat", "plans",
               "configuration", "variant", "recipe", "protocol", "complete", "fold", *CSV_COLUMNS[:-1]]
    per_case = per_case[columns].astype({"fold": int, "dataset_id": int, "repeat": int})
    if results is not None and run_table.empty:
        notes.append(f"No runs were found in {results} (it has no Dataset*/<trainer>__<plans>__<configuration>/"
                     f"fold_N folders): the tables hold the published rows only; check --results.")
    return Collection(per_case=per_case, runs=run_table, notes=notes, protocol=protocol)


def _find_runs(dataset_dir: Path, notes: list[str], name: str) -> list[tuple[str, str, str, dict[int, Path]]]:
    """(trainer, plans, configuration, fold -> fold folder) of every trainer folder with folds."""
    found = []
    for run_dir in sorted(p for p in dataset_dir.iterdir() if p.is_dir() and p.name.count("__") == 2):
        trainer, plans, configuration = run_dir.name.split("__")
        folds: dict[int, Path] = {}
        for fold_dir in sorted(p for p in run_dir.iterdir() if p.is_dir() and p.name.startswith("fold_")):
            match = _FOLD_DIR.match(fold_dir.name)
            if match:
                folds[int(match.group(1))] = fold_dir
            elif (fold_dir / name).is_file():
                notes.append(f"{fold_dir} skipped: not a cross-validation fold.")
        if folds:
            found.append((trainer, plans, configuration, folds))
    return found


def _to_score(fold_dir: Path, protocol: str) -> bool:
    """Whether a fold lacks the protocol's metrics file but has its final validation to score it from (a fold
    whose BraTS evaluation failed in training keeps that state and its recorded reason for ``brats``)."""
    state = fold_state(fold_dir)
    return not (fold_dir / metrics_file_name(protocol)).is_file() and (fold_dir / "validation").is_dir() \
        and state != FoldState.TRAINING \
        and not (protocol == DEFAULT_PROTOCOL and state == FoldState.EVALUATION_FAILED)


def _score_job(job: tuple[Path, str]) -> str | None:
    """Score one fold (in a worker process); the error message when it cannot be scored, else None."""
    from nnunetv2_druwas.evaluation.results import score_fold

    fold_dir, protocol = job
    try:
        score_fold(fold_dir, protocol, num_processes=1, progress=False)
    except DruwasError as exc:
        return str(exc)
    return None


def _score_folds(folds: list[Path], protocol: str, num_processes: int, progress: bool) -> dict[Path, str]:
    """Score ``folds`` under ``protocol`` (worker processes over folds); fold -> error for those that failed."""
    if not folds:
        return {}
    from nnunetv2_druwas.parallel import parallel_map

    outcomes = parallel_map(_score_job, [(fold, protocol) for fold in folds], num_processes,
                            desc=f"score folds ({protocol})", unit="fold", progress=progress, min_jobs_per_worker=2)
    return {fold: error for fold, error in zip(folds, outcomes) if error is not None}


def _fold_issue(fold_dir: Path, protocol: str, errors: dict[Path, str]) -> str | None:
    """Why a fold has no numbers under ``protocol`` (None when it has its metrics file)."""
    name = metrics_file_name(protocol)
    if fold_state(fold_dir) == FoldState.TRAINING:
        return describe(fold_dir)
    if fold_dir in errors:
        return f"{protocol} scoring failed: {errors[fold_dir]}"
    if (fold_dir / name).is_file():
        return None
    if protocol == DEFAULT_PROTOCOL:
        return describe(fold_dir)
    return f"no {name} and no validation/ predictions to score it from"


def _read_run(keys: dict[str, str], folds: dict[int, Path], expected: set[int], protocol: str,
              errors: dict[Path, str]) -> tuple[dict, list[pd.DataFrame]]:
    """One run's ``folds`` (evaluated folds), ``complete`` and ``issues``, and the per-case frames of
    its evaluated folds."""
    issues, evaluated, frames = [], [], []
    absent = sorted(expected - set(folds))
    if absent:
        issues.append(f"fold(s) {', '.join(map(str, absent))} absent")
    for fold, fold_dir in sorted(folds.items()):
        issue = _fold_issue(fold_dir, protocol, errors)
        if issue is not None:
            issues.append(f"fold {fold}: {issue}")
            continue
        frame = read_metrics(fold_dir / metrics_file_name(protocol), protocol)
        n_missing = int(frame["missing"].sum())
        if n_missing:
            issues.append(f"fold {fold}: {n_missing} of {len(frame)} case-region rows without prediction")
        frame.insert(0, "fold", fold)
        frames.append(frame.assign(**keys))
        evaluated.append(fold)
    return dict(folds=",".join(map(str, evaluated)), complete=not issues, issues="; ".join(issues)), frames
