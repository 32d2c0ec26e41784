"""``nnunetv2_druwas demo``: the whole harness end to end on synthetic data, on the CPU.

synthetic BraTS-like training release and a separate labelled test release -> ``convert-brats --test``
-> ``nnUNetv2_plan_and_preprocess`` -> ``nnUNetv2_train`` (seeded) for the seven Table 4 variants (the
Swish run continues the ReLU run) and nnU-Net's own network (the reference row) -> ``nnUNetv2_predict`` of
the test set by every trained model -> ``nnunetv2_druwas evaluate`` of those predictions under the
protocols of :data:`TEST_PROTOCOLS` -> ``python -m analysis.tables`` on the test set.

Everything lives under one work folder (default ``./druwas_demo``); the user's own
``nnUNet_*`` folders are never read or written. The test set's predictions and metrics form a results
tree of their own (``test_set/Dataset500_BraTS2020/<trainer>__nnUNetPlans__3d_fullres/fold_0/``: the
fold-0 model of each trainer, ``predictions/`` and one ``<protocol>_metrics.csv`` per protocol), which
is what the printed tables are built from; the folds' own validation metrics stay in ``nnUNet_results``.

A rerun resumes: every step whose output is complete is skipped (preprocessing only once
``nnUNetv2_plan_and_preprocess`` succeeded for every case: killed at any moment, it is redone from the
start; a test-set prediction only once every case was predicted: it is written to ``predictions.partial``
and renamed when complete), and each training does what its fold's state
(:func:`nnunetv2_druwas.folds.fold_state`) asks for: nothing when done, ``--c`` when interrupted (during
the training, or during the final validation and evaluation, which ``--c`` redoes without training
again). ``--fresh`` deletes the work folder first, which it only does for a folder it created itself.

Reproducible: ``--seed`` seeds the synthetic data and every training (``DRUWAS_SEED``: the network's
initialisation, the data loading and each augmentation worker; :mod:`nnunetv2_druwas.training`), so the
same command on the same machine gives the same tables.
"""
from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

from nnunetv2_druwas import env
from nnunetv2_druwas.errors import DruwasError
from nnunetv2_druwas.files import write_text
from nnunetv2_druwas.folds import fold_state, resume_arguments
from nnunetv2_druwas.variants import VARIANTS

MARKER = ".druwas_demo"
#: written into the preprocessed dataset folder once ``nnUNetv2_plan_and_preprocess`` has succeeded.
PREPROCESSED_MARKER = ".druwas_demo_preprocessed.json"
DATASET_ID = 500
YEAR = 2020
CONFIGURATION = "3d_fullres"
PLANS = "nnUNetPlans"
FOLD = 0
#: the protocols the test set is scored under (README, Protocols): the printed tables use ``brats``,
#: the protocol table sets the others beside it (``authors`` on the volumes zero-padded to BraTS size).
TEST_PROTOCOLS = ("brats", "eq2", "authors")
#: the results tree of the test set, under the work folder.
TEST_SET = "test_set"


@dataclass(frozen=True)
class DemoSettings:
    """What the demo trains and tests on and for how long (the defaults took 19 min 50 s on 2 quiet cores).

    Args:
        cases: synthetic training cases (fold 0 of nnU-Net's 5-fold split validates on a fifth).
        test_cases: synthetic test cases (numbered after the training cases), never planned or
            trained on; every trained model predicts them and the printed tables are built from them.
        shape: size of each synthetic volume in voxels (1 mm isotropic).
        epochs: ``DRUWAS_EPOCHS`` for every trainer (the Swish continuation included).
        iters: ``DRUWAS_ITERS``, training iterations per epoch.
        lr: ``DRUWAS_LR``, the initial learning rate of every trainer. The paper's 5e-4 is
            made for 100 epochs of 250 iterations; a demo of 80 iterations per variant needs a
            larger step to show a real signal (measured: whole-tumor pseudo Dice 0.91 after 48
            iterations at 5e-3, 0.05 at 5e-4).
        seed: seed of the synthetic data and of every training (``DRUWAS_SEED``).
        variants: keys of the variants to train (default: every Table 4 variant and the reference
            network); a continuation needs the variant it continues (``swish`` needs ``full``).
    """
    cases: int = 15
    test_cases: int = 20
    shape: tuple[int, int, int] = (40, 40, 32)
    epochs: int = 8
    iters: int = 10
    lr: float = 5e-3
    seed: int = 0
    variants: tuple[str, ...] = tuple(v.key for v in VARIANTS)

    def selected(self) -> tuple:
        """The :class:`~nnunetv2_druwas.variants.Variant` objects of ``variants``, in the table's order.

        Raises:
            DruwasError: an unknown key, or a continuation without the variant it continues.
        """
        keys = [v.key for v in VARIANTS]
        unknown = sorted(set(self.variants) - set(keys))
        if unknown:
            raise DruwasError(f"--variants: unknown {', '.join(unknown)}; choose from {' '.join(keys)}")
        chosen = tuple(v for v in VARIANTS if v.key in self.variants)
        for v in chosen:
            if v.continues and v.continues not in self.variants:
                raise DruwasError(f"--variants: {v.key} continues the run of {v.continues}; add {v.continues}")
        return chosen


def demo_environment(workdir: Path, settings: DemoSettings) -> dict[str, str]:
    """The environment of the demo's commands: every nnU-Net folder inside ``workdir``, the training
    length and seed of ``settings``, and no ``DRUWAS_INIT_CHECKPOINT`` (the Swish run must continue the demo's
    own ReLU run)."""
    return env.work_environment(workdir, {
        "DRUWAS_EPOCHS": str(settings.epochs),
        "DRUWAS_ITERS": str(settings.iters),
        "DRUWAS_LR": str(settings.lr),
        "DRUWAS_SEED": str(settings.seed),
        "DRUWAS_INIT_CHECKPOINT": None,
    })


def prepare_workdir(workdir: Path, fresh: bool, settings: DemoSettings) -> None:
    """Create (or with ``fresh`` wipe and recreate) the work folder; refuse folders that are not ours.

    The marker file records the settings, so a resumed run cannot mix data or training lengths.
    """
    marker = workdir / MARKER
    if workdir.exists() and not workdir.is_dir():
        raise DruwasError(f"--workdir {workdir} is a file, not a folder; choose another --workdir (nothing was "
                          f"changed)")
    if workdir.exists() and any(workdir.iterdir()) and not marker.exists():
        raise DruwasError(f"{workdir} exists, is not empty and was not made by the demo; "
                          f"choose another --workdir (nothing was changed)")
    wanted = json.loads(json.dumps(asdict(settings)))  # tuples as lists, as read back from JSON
    if marker.exists() and not fresh:
        try:
            previous = json.loads(marker.read_text())["settings"]
            previous.setdefault("variants", list(DemoSettings().variants))   # made before --variants: all
        except (ValueError, KeyError, AttributeError):
            previous = None
        if previous != wanted:
            raise DruwasError(f"{workdir} holds a demo run with other settings ({previous}); resume it with "
                              f"those settings, or add --fresh to delete it and start over")
    if fresh and workdir.exists():
        shutil.rmtree(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    write_text(marker, json.dumps({"made_by": "nnunetv2_druwas demo (safe to delete)", "settings": wanted}))


class _Steps:
    """Numbered progress lines with elapsed time; the output of each command goes to a log file."""

    def __init__(self, total: int, logs: Path):
        self.total, self.done, self.logs, self.start = total, 0, logs, time.monotonic()
        logs.mkdir(parents=True, exist_ok=True)

    def begin(self, what: str) -> None:
        self.done += 1
        print(f"[{self.done}/{self.total}] {time.monotonic() - self.start:6.0f}s  {what}", flush=True)

    def skip(self, what: str) -> None:
        self.begin(f"{what}: already done, skipped")

    def run(self, cmd: list[str], env: dict[str, str], log_name: str) -> None:
        log = self.logs / f"{log_name}.log"
        with open(log, "w") as f:
            proc = subprocess.run(cmd, env=env, stdout=f, stderr=subprocess.STDOUT)
        if proc.returncode != 0:
            tail = "".join(log.read_text(errors="replace").splitlines(keepends=True)[-25:])
            raise DruwasError(f"`{' '.join(cmd)}` failed with exit code {proc.returncode}; its log is {log}. "
                              f"Last lines:\n{tail}\nRerun the demo to resume, or add --fresh to start over.")


def _run_dir(results: Path, trainer: str) -> Path:
    matches = sorted(results.glob(f"Dataset{DATASET_ID:03d}_*/{trainer}__{PLANS}__{CONFIGURATION}"))
    return matches[0] if matches else results / "missing" / trainer


def run_demo(workdir: str | Path = "druwas_demo", fresh: bool = False,
             settings: DemoSettings = DemoSettings()) -> Path:
    """Run the whole harness on synthetic data; returns the folder with the tables.

    Args:
        workdir: the one folder everything is written to (created if needed).
        fresh: delete a previous demo folder first instead of resuming it.
        settings: data size, training length and seed (see :class:`DemoSettings`).
    """
    variants = settings.selected()
    settings = replace(settings, variants=tuple(v.key for v in variants))   # the table's order, as recorded
    workdir = Path(workdir).resolve()
    prepare_workdir(workdir, fresh, settings)
    environ = demo_environment(workdir, settings)
    for name in ("nnUNet_raw", "nnUNet_preprocessed", "nnUNet_results"):
        Path(environ[name]).mkdir(parents=True, exist_ok=True)
    steps = _Steps(total=5 + 2 * len(variants), logs=workdir / "logs")
    raw_dataset = _prepare_data(workdir, settings, environ, steps)
    results = Path(environ["nnUNet_results"])
    for variant in variants:  # the table lists the Swish continuation after the ReLU run it starts from
        _train(variant.trainer, results, settings, environ, steps)
    test_results = workdir / TEST_SET
    for variant in variants:
        _test(variant.trainer, raw_dataset, test_results / raw_dataset.name, environ, steps)

    tables = workdir / "tables"
    steps.begin(f"python -m analysis.tables --results {test_results} -> {tables}")
    steps.run([sys.executable, "-m", "analysis.tables", "--results", str(test_results), "--out", str(tables),
               "--compare-protocols", *TEST_PROTOCOLS, "--no-postprocessing"], environ, "tables")
    _report(workdir, tables, results, settings)
    return tables


def _tool(name: str) -> str:
    """An entry point of this Python environment (beside ``sys.executable``), else the name (PATH)."""
    beside = Path(sys.executable).parent / name
    return str(beside) if beside.exists() else name


def _prepare_data(workdir: Path, settings: DemoSettings, environ: dict[str, str], steps: _Steps) -> Path:
    """Synthesize, convert and plan, each unless its output is already complete; returns the raw dataset."""
    from nnunetv2_druwas.data.synth import synthesize

    releases = {"training": (workdir / "brats2020_synthetic", settings.cases, 1),
                "test": (workdir / "brats2020_synthetic_test", settings.test_cases, settings.cases + 1)}
    for what, (folder, n, first) in releases.items():
        if (folder / "name_mapping.csv").exists():
            steps.skip(f"synthetic BraTS 2020-like {what} release ({n} cases)")
        else:   # the release appears complete or not at all; overwrite replaces what a killed run left
            steps.begin(f"synthesizing {n} BraTS-like {what} cases of {settings.shape} voxels -> {folder}")
            synthesize(folder, n_cases=n, shape=settings.shape, seed=settings.seed, first_case=first,
                       overwrite=True, progress=False)

    raw_dataset = Path(environ["nnUNet_raw"]) / f"Dataset{DATASET_ID:03d}_BraTS{YEAR}"
    if (raw_dataset / "dataset.json").exists():
        steps.skip("convert-brats")
    else:
        steps.begin(f"convert-brats --year {YEAR} -d {DATASET_ID} --test <test release> -> {raw_dataset}")
        steps.run([sys.executable, "-m", "nnunetv2_druwas", "convert-brats", str(releases["training"][0]),
                   "--year", str(YEAR), "-d", str(DATASET_ID), "--test", str(releases["test"][0])],
                  environ, "convert_brats")

    preprocessed = Path(environ["nnUNet_preprocessed"]) / raw_dataset.name
    cases = sorted(p.name.removesuffix("_0000.nii.gz") for p in (raw_dataset / "imagesTr").glob("*_0000.nii.gz"))
    done = {"configuration": CONFIGURATION, "cases": cases}
    if _preprocessed(preprocessed, done):
        steps.skip("nnUNetv2_plan_and_preprocess")
        return raw_dataset
    redo = preprocessed.exists()
    steps.begin(f"nnUNetv2_plan_and_preprocess -d {DATASET_ID} -c {CONFIGURATION}"
                + (" (again from the start: the previous run did not finish)" if redo else ""))
    if redo:   # the demo's own folder (see prepare_workdir): what a killed run left goes
        shutil.rmtree(preprocessed)
    steps.run([_tool("nnUNetv2_plan_and_preprocess"), "-d", str(DATASET_ID), "-c", CONFIGURATION,
               "-np", "2", "-npfp", "2", "--verify_dataset_integrity"], environ, "plan_and_preprocess")
    write_text(preprocessed / PREPROCESSED_MARKER, json.dumps(done))
    return raw_dataset


def _preprocessed(folder: Path, done: dict) -> bool:
    """Whether ``nnUNetv2_plan_and_preprocess`` finished for every case: the demo's marker (written only
    once the command succeeded) names the configuration and the cases of the raw dataset, the plans
    are readable and have the configuration, and every case has its preprocessed properties and its
    ground truth. Anything less (a kill at any moment) means: redo the step from the start."""
    try:
        marker = json.loads((folder / PREPROCESSED_MARKER).read_text())
        plans = json.loads((folder / "nnUNetPlans.json").read_text())
        data = folder / plans["configurations"][CONFIGURATION]["data_identifier"]
    except (OSError, ValueError, KeyError, TypeError):
        return False
    return marker == done and all((data / f"{case}.pkl").is_file() and
                                  (folder / "gt_segmentations" / f"{case}.nii.gz").is_file()
                                  for case in done["cases"])


def _train(trainer: str, results: Path, settings: DemoSettings, environ: dict[str, str], steps: _Steps) -> None:
    """Train fold 0 of one trainer as its fold's state asks: skip, continue (``--c``) or start."""
    fold_dir = _run_dir(results, trainer) / f"fold_{FOLD}"
    state = fold_state(fold_dir)
    resume = resume_arguments(state)
    if resume is None:
        steps.skip(f"nnUNetv2_train -tr {trainer}")
        return
    steps.begin(f"nnUNetv2_train {DATASET_ID} {CONFIGURATION} {FOLD} -tr {trainer} "
                f"({settings.epochs} epochs x {settings.iters} iterations, lr {settings.lr:g}, seed {settings.seed}"
                f"{f', resumed: {state}' if resume else ''})")
    steps.run([_tool("nnUNetv2_train"), str(DATASET_ID), CONFIGURATION, str(FOLD), "-tr", trainer,
               "-device", "cpu", *resume], environ, f"train_{trainer}")


def _test(trainer: str, raw_dataset: Path, test_results: Path, environ: dict[str, str], steps: _Steps) -> None:
    """Predict the test set with the trainer's fold-0 model (``nnUNetv2_predict``) and score it under every
    protocol of :data:`TEST_PROTOCOLS` (what ``nnunetv2_druwas evaluate`` does, called in this process),
    each unless already complete.

    The predictions go to ``predictions.partial`` first and are renamed once every case is there, so a
    killed prediction is redone; each metrics file is written atomically by ``evaluate``."""
    from nnunetv2_druwas.data.convert import TEST_IMAGES, TEST_LABELS
    from nnunetv2_druwas.evaluation.evaluate import evaluate_folder
    from nnunetv2_druwas.evaluation.protocols import metrics_file_name

    fold_dir = test_results / f"{trainer}__{PLANS}__{CONFIGURATION}" / f"fold_{FOLD}"
    predictions, labels = fold_dir / "predictions", raw_dataset / TEST_LABELS
    scored = [fold_dir / metrics_file_name(protocol) for protocol in TEST_PROTOCOLS]
    if predictions.is_dir() and all(path.is_file() for path in scored):
        steps.skip(f"test set: nnUNetv2_predict -tr {trainer} and evaluate")
        return
    steps.begin(f"test set: nnUNetv2_predict -tr {trainer} -f {FOLD}, then nnunetv2_druwas evaluate --protocol "
                f"{' / '.join(TEST_PROTOCOLS)} (authors: --pad-to-brats) -> {fold_dir}")
    if not predictions.is_dir():
        partial = fold_dir / "predictions.partial"
        if partial.exists():   # the demo's own folder: what a killed prediction left goes
            shutil.rmtree(partial)
        steps.run([_tool("nnUNetv2_predict"), "-i", str(raw_dataset / TEST_IMAGES), "-o", str(partial),
                   "-d", str(DATASET_ID), "-c", CONFIGURATION, "-f", str(FOLD), "-tr", trainer, "-p", PLANS,
                   "-device", "cpu", "-npp", "1", "-nps", "1", "--disable_progress_bar"],
                  environ, f"predict_{trainer}")
        partial.rename(predictions)
    for protocol, path in zip(TEST_PROTOCOLS, scored):
        if not path.is_file():   # what `nnunetv2_druwas evaluate` runs, in this process (one start-up)
            evaluate_folder(predictions, labels, path, protocol=protocol, dataset_json=raw_dataset / "dataset.json",
                            pad_to_brats=protocol == "authors", num_processes=2, progress=False)


def _report(workdir: Path, tables: Path, results: Path, settings: DemoSettings) -> None:
    """Print Table 4, the paired tests and the protocol comparison (all on the test set), and where
    every output is."""
    print(f"\nTable 4 (ablation): the published rows next to what this demo measured on its "
          f"{settings.test_cases} synthetic test cases (fold-0 models, seed {settings.seed}, brats protocol):\n")
    for name in ("table4.md", "protocols.md"):
        path = tables / name
        print(path.read_text() if path.exists() else f"(missing: {path})")
    print(statistics_summary(tables))
    print(f"Work folder:      {workdir}")
    print(f"Tables and plots: {tables} (everything on one page: {tables / 'report.html'})")
    print(f"Test set:         {workdir / TEST_SET}/Dataset{DATASET_ID:03d}_BraTS{YEAR}/<trainer>__{PLANS}__"
          f"{CONFIGURATION}/fold_{FOLD} (predictions/, <protocol>_metrics.csv)")
    print(f"Trained folds:    {results}/Dataset{DATASET_ID:03d}_BraTS{YEAR}/<trainer>__{PLANS}__"
          f"{CONFIGURATION}/fold_{FOLD} (checkpoint_final.pth, validation/ and brats_metrics.csv of the fold's "
          f"validation cases)")
    print(f"Logs:             {workdir / 'logs'}")


def statistics_summary(tables: Path) -> str:
    """The paired tests (``statistics.csv``) and bootstrap intervals (``bootstrap_ci.csv``) of the Dice
    as two Markdown tables: variant minus reference per region (mean difference, Holm-corrected p, n
    matched cases), and each model's mean with its 95 % interval.

    Args:
        tables: the output folder of ``python -m analysis.tables``.
    """
    import pandas as pd

    from analysis.display import short_label
    from nnunetv2_druwas.data.brats import REGIONS

    tests = pd.read_csv(tables / "statistics.csv")
    tests = tests[(tests["family"] == "variants") & (tests["metric"] == "dice")]
    lines = [f"Paired Wilcoxon signed-rank tests of the Dice ({tests['protocol'].iloc[0] if len(tests) else 'brats'} "
             f"protocol, test cases; variant minus reference: mean difference, Holm-corrected p, n matched cases):",
             "", f"| variant | reference | n | {' | '.join(REGIONS)} |", "|---|---|---|" + "---|" * len(REGIONS)]
    for (variant, reference), group in tests.groupby(["variant", "reference"], sort=False):
        by_region = group.set_index("region")
        cells = [f"{by_region.at[r, 'mean_difference']:+.3f} (p {by_region.at[r, 'p_holm']:.2g})"
                 if r in by_region.index else "" for r in REGIONS]
        lines.append(f"| {short_label(variant, variant)} | {short_label(reference, reference)} | "
                     f"{int(group['n'].max())} | {' | '.join(cells)} |")
    intervals = pd.read_csv(tables / "bootstrap_ci.csv")
    intervals = intervals[intervals["metric"] == "dice"]
    lines += ["", "Mean Dice with its 95 % bootstrap interval (test cases):", "",
              f"| model | n | {' | '.join(REGIONS)} |", "|---|---|" + "---|" * len(REGIONS)]
    order = {v.trainer: i for i, v in enumerate(VARIANTS)}
    for trainer, group in sorted(intervals.groupby("trainer", sort=False), key=lambda item: order.get(item[0], 99)):
        by_region = group.set_index("region")
        cells = [f"{by_region.at[r, 'mean']:.3f} [{by_region.at[r, 'ci_low']:.3f}, {by_region.at[r, 'ci_high']:.3f}]"
                 if r in by_region.index else "" for r in REGIONS]
        variant = group["variant"].iloc[0]
        lines.append(f"| {short_label(variant, trainer)} | {int(group['n'].max())} | {' | '.join(cells)} |")
    return "\n".join(lines) + "\n"


def add_arguments(parser) -> None:
    d = DemoSettings()
    parser.add_argument("--workdir", default="druwas_demo",
                        help="folder for everything the demo writes (default: ./druwas_demo)")
    parser.add_argument("--fresh", action="store_true",
                        help="delete a previous demo folder and start over (default: resume it)")
    parser.add_argument("--cases", type=int, default=d.cases, help=f"synthetic training cases (default {d.cases})")
    parser.add_argument("--test-cases", type=int, default=d.test_cases,
                        help=f"synthetic test cases, predicted by every trained model (default {d.test_cases})")
    parser.add_argument("--shape", type=int, nargs=3, default=d.shape, metavar=("X", "Y", "Z"),
                        help=f"voxels per case (default {' '.join(map(str, d.shape))})")
    parser.add_argument("--epochs", type=int, default=d.epochs, help=f"epochs per variant (default {d.epochs})")
    parser.add_argument("--iters", type=int, default=d.iters,
                        help=f"training iterations per epoch (default {d.iters})")
    parser.add_argument("--lr", type=float, default=d.lr,
                        help=f"initial learning rate of every variant (default {d.lr:g}; see README)")
    parser.add_argument("--seed", type=int, default=d.seed, help=f"seed of the synthetic data and of every training (default {d.seed})")
    parser.add_argument("--variants", nargs="+", default=list(d.variants), metavar="KEY",
                        help=f"variants to train, of {' '.join(d.variants)} (default: all; swish needs full)")


def run(args) -> int:
    settings = DemoSettings(cases=args.cases, test_cases=args.test_cases, shape=tuple(args.shape),
                            epochs=args.epochs, iters=args.iters, lr=args.lr, seed=args.seed,
                            variants=tuple(args.variants))
    run_demo(args.workdir, fresh=args.fresh, settings=settings)
    return 0
