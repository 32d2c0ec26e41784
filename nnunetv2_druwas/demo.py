"""``nnunetv2_druwas demo``: the whole harness end to end on synthetic data, on the CPU.

synthetic BraTS-like release -> ``convert-brats`` -> ``nnUNetv2_plan_and_preprocess`` ->
``nnUNetv2_train`` for the seven Table 4 variants (the Swish run continues the ReLU run)
-> BraTS evaluation (written by the trainers into each fold) -> ``python -m analysis.tables``.

Everything lives under one work folder (default ``./druwas_demo``); the user's own
``nnUNet_*`` folders are never read or written. A rerun resumes: every step whose
output is complete is skipped (preprocessing only once ``nnUNetv2_plan_and_preprocess``
succeeded for every case: killed at any moment, it is redone from the start), and each
training does what its fold's state (:func:`nnunetv2_druwas.folds.fold_state`) asks for:
nothing when done, ``--c`` when interrupted (during the training, or during the final
validation and evaluation, which ``--c`` redoes without training again). ``--fresh``
deletes the work folder first, which it only does for a folder it created itself.
"""
from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from nnunetv2_druwas import env
from nnunetv2_druwas.errors import DruwasError
from nnunetv2_druwas.files import write_text
from nnunetv2_druwas.folds import fold_state, resume_arguments

MARKER = ".druwas_demo"
#: written into the preprocessed dataset folder once ``nnUNetv2_plan_and_preprocess`` has succeeded.
PREPROCESSED_MARKER = ".druwas_demo_preprocessed.json"
DATASET_ID = 500
YEAR = 2020
CONFIGURATION = "3d_fullres"
FOLD = 0


@dataclass(frozen=True)
class DemoSettings:
    """What the demo trains on and for how long (defaults fit 10 minutes on 2 cores).

    Args:
        cases: number of synthetic cases (fold 0 of nnU-Net's 5-fold split validates on a fifth).
        shape: size of each synthetic volume in voxels (1 mm isotropic).
        epochs: ``DRUWAS_EPOCHS`` for every variant (the Swish continuation included).
        iters: ``DRUWAS_ITERS``, training iterations per epoch.
        lr: ``DRUWAS_LR``, the initial learning rate of every variant. The paper's 5e-4 is
            made for 100 epochs of 250 iterations; a demo of 80 iterations per variant needs a
            larger step to show a real signal (measured: whole-tumor pseudo Dice 0.91 after 48
            iterations at 5e-3, 0.05 at 5e-4).
        seed: seed of the synthetic data.
    """
    cases: int = 15
    shape: tuple[int, int, int] = (40, 40, 32)
    epochs: int = 8
    iters: int = 10
    lr: float = 5e-3
    seed: int = 0


def demo_environment(workdir: Path, settings: DemoSettings) -> dict[str, str]:
    """The environment of the demo's commands: every nnU-Net folder inside ``workdir``, the training
    length of ``settings``, and no ``DRUWAS_INIT_CHECKPOINT`` (the Swish run must continue the demo's
    own ReLU run)."""
    return env.work_environment(workdir, {
        "DRUWAS_EPOCHS": str(settings.epochs),
        "DRUWAS_ITERS": str(settings.iters),
        "DRUWAS_LR": str(settings.lr),
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
        except (ValueError, KeyError):
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
    matches = sorted(results.glob(f"Dataset{DATASET_ID:03d}_*/{trainer}__nnUNetPlans__{CONFIGURATION}"))
    return matches[0] if matches else results / "missing" / trainer


def run_demo(workdir: str | Path = "druwas_demo", fresh: bool = False,
             settings: DemoSettings = DemoSettings()) -> Path:
    """Run the whole harness on synthetic data; returns the folder with the tables.

    Args:
        workdir: the one folder everything is written to (created if needed).
        fresh: delete a previous demo folder first instead of resuming it.
        settings: data size and training length (see :class:`DemoSettings`).
    """
    from nnunetv2_druwas.variants import ABLATION_VARIANTS

    workdir = Path(workdir).resolve()
    prepare_workdir(workdir, fresh, settings)
    environ = demo_environment(workdir, settings)
    for name in ("nnUNet_raw", "nnUNet_preprocessed", "nnUNet_results"):
        Path(environ[name]).mkdir(parents=True, exist_ok=True)
    steps = _Steps(total=4 + len(ABLATION_VARIANTS), logs=workdir / "logs")
    _prepare_data(workdir, settings, environ, steps)
    results = Path(environ["nnUNet_results"])
    for variant in ABLATION_VARIANTS:  # the table lists the Swish continuation after the ReLU run it starts from
        _train(variant.trainer, results, settings, environ, steps)

    tables = workdir / "tables"
    steps.begin(f"python -m analysis.tables -> {tables}")
    steps.run([sys.executable, "-m", "analysis.tables", "--results", str(results), "--out", str(tables)],
              environ, "tables")
    _report(workdir, tables, results)
    return tables


def _tool(name: str) -> str:
    """An entry point of this Python environment (beside ``sys.executable``), else the name (PATH)."""
    beside = Path(sys.executable).parent / name
    return str(beside) if beside.exists() else name


def _prepare_data(workdir: Path, settings: DemoSettings, environ: dict[str, str], steps: _Steps) -> None:
    """Synthesize, convert and plan, each unless its output is already complete."""
    from nnunetv2_druwas.data.synth import synthesize

    synth_dir = workdir / "brats2020_synthetic"
    if (synth_dir / "name_mapping.csv").exists():
        steps.skip(f"synthetic BraTS 2020-like release ({settings.cases} cases)")
    else:   # the release appears complete or not at all; overwrite replaces what a killed run left
        steps.begin(f"synthesizing {settings.cases} BraTS-like cases of {settings.shape} voxels -> {synth_dir}")
        synthesize(synth_dir, n_cases=settings.cases, shape=settings.shape, seed=settings.seed, overwrite=True)

    raw_dataset = Path(environ["nnUNet_raw"]) / f"Dataset{DATASET_ID:03d}_BraTS{YEAR}"
    if (raw_dataset / "dataset.json").exists():
        steps.skip("convert-brats")
    else:
        steps.begin(f"convert-brats --year {YEAR} -d {DATASET_ID} -> {raw_dataset}")
        steps.run([sys.executable, "-m", "nnunetv2_druwas", "convert-brats", str(synth_dir), "--year", str(YEAR),
                   "-d", str(DATASET_ID)], environ, "convert_brats")

    preprocessed = Path(environ["nnUNet_preprocessed"]) / raw_dataset.name
    cases = sorted(p.name.removesuffix("_0000.nii.gz") for p in (raw_dataset / "imagesTr").glob("*_0000.nii.gz"))
    done = {"configuration": CONFIGURATION, "cases": cases}
    if _preprocessed(preprocessed, done):
        steps.skip("nnUNetv2_plan_and_preprocess")
        return
    redo = preprocessed.exists()
    steps.begin(f"nnUNetv2_plan_and_preprocess -d {DATASET_ID} -c {CONFIGURATION}"
                + (" (again from the start: the previous run did not finish)" if redo else ""))
    if redo:   # the demo's own folder (see prepare_workdir): what a killed run left goes
        shutil.rmtree(preprocessed)
    steps.run([_tool("nnUNetv2_plan_and_preprocess"), "-d", str(DATASET_ID), "-c", CONFIGURATION,
               "-np", "2", "-npfp", "2", "--verify_dataset_integrity"], environ, "plan_and_preprocess")
    write_text(preprocessed / PREPROCESSED_MARKER, json.dumps(done))


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
                f"({settings.epochs} epochs x {settings.iters} iterations, lr {settings.lr:g}"
                f"{f', resumed: {state}' if resume else ''})")
    steps.run([_tool("nnUNetv2_train"), str(DATASET_ID), CONFIGURATION, str(FOLD), "-tr", trainer,
               "-device", "cpu", *resume], environ, f"train_{trainer}")


def _report(workdir: Path, tables: Path, results: Path) -> None:
    table4 = tables / "table4.md"
    print("\nTable 4 (ablation; published rows next to what this demo measured on synthetic data):\n")
    print(table4.read_text() if table4.exists() else f"(missing: {table4})")
    print(f"Work folder:      {workdir}")
    print(f"Tables and plots: {tables}")
    print(f"Trained folds:    {results}/Dataset{DATASET_ID:03d}_BraTS{YEAR}/<trainer>__nnUNetPlans__"
          f"{CONFIGURATION}/fold_{FOLD} (brats_metrics.csv, checkpoint_final.pth, validation/)")
    print(f"Logs:             {workdir / 'logs'}")


def add_arguments(parser) -> None:
    d = DemoSettings()
    parser.add_argument("--workdir", default="druwas_demo",
                        help="folder for everything the demo writes (default: ./druwas_demo)")
    parser.add_argument("--fresh", action="store_true",
                        help="delete a previous demo folder and start over (default: resume it)")
    parser.add_argument("--cases", type=int, default=d.cases, help=f"synthetic cases (default {d.cases})")
    parser.add_argument("--shape", type=int, nargs=3, default=d.shape, metavar=("X", "Y", "Z"),
                        help=f"voxels per case (default {' '.join(map(str, d.shape))})")
    parser.add_argument("--epochs", type=int, default=d.epochs, help=f"epochs per variant (default {d.epochs})")
    parser.add_argument("--iters", type=int, default=d.iters,
                        help=f"training iterations per epoch (default {d.iters})")
    parser.add_argument("--lr", type=float, default=d.lr,
                        help=f"initial learning rate of every variant (default {d.lr:g}; see README)")
    parser.add_argument("--seed", type=int, default=d.seed, help="seed of the synthetic data")


def run(args) -> int:
    settings = DemoSettings(cases=args.cases, shape=tuple(args.shape), epochs=args.epochs, iters=args.iters,
                            lr=args.lr, seed=args.seed)
    run_demo(args.workdir, fresh=args.fresh, settings=settings)
    return 0
