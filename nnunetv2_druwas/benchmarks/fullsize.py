"""Full-size BraTS cases end to end on the CPU: wall time and peak memory of every step.

Run::

    python -m nnunetv2_druwas.benchmarks.fullsize [--cases 4] [--out DIR] [--workdir DIR]
        [--shape X Y Z] [--validation-shape X Y Z] [--seed S]

writes ``fullsize.csv`` and ``fullsize.md`` to ``DIR`` (default: the current folder), one row per
step, rewritten (each file whole) after every step, so a run stopped early keeps what it measured.
Every command runs as it would for a user, in a work folder that holds all of nnU-Net's folders
(``--workdir``, which must be new or empty and is kept; default: a temporary folder, deleted at the
end); the user's ``nnUNet_*`` folders are never read or written. The steps:

1. ``synth``: ``nnunetv2_druwas synth`` of ``--cases`` synthetic cases of ``--shape`` (240 x 240 x
   155, the BraTS size) in the BraTS 2020 layout; ``synth_validation``: one more case of
   ``--validation-shape`` (default 64 x 64 x 48).
2. ``convert`` / ``convert_validation``: ``nnunetv2_druwas convert-brats`` of each; the small case
   joins the dataset (its files are copied in, ``numTraining`` counts it).
3. ``plan_and_preprocess``: ``nnUNetv2_plan_and_preprocess -c 3d_fullres -np 2 -npfp 2``: nnU-Net's
   real plan for this size. Then ``splits_final.json`` (fold 0): the full-size cases but the last
   train, the small case validates, the last full-size case is held out for prediction.
4. ``train_druwas`` / ``train_nnunet``: ``nnUNetv2_train ... 0 -device cpu`` of one epoch of two
   training iterations (``DRUWAS_EPOCHS=1``, ``DRUWAS_ITERS=2``; validation iterations scale down
   to 1) for ``nnUNetTrainerDRUwAS`` (the paper's recipe and batch size) and for nnU-Net's own
   network of the plan under the same recipe and schedule (``nnUNetTrainerDRUwAS_nnUNetNetwork``).
   Each ends with nnU-Net's final validation of the fold's validation case (a sliding window with
   test-time mirroring) and the BraTS evaluation of it. That validation case is small on purpose:
   at full size it is the same computation as the mirrored prediction below, which would double
   the bill (about 15 minutes for DRUwAS and 40 for nnU-Net's network on 2 shared cores).
5. ``predict_*``: ``nnUNetv2_predict`` of the held-out full-size case with each model, without
   (``--disable_tta``) and, for DRUwAS, with test-time mirroring (8 passes per window).
6. ``evaluate_*``: ``nnunetv2_druwas evaluate`` of each prediction (BraTS protocol).

Measured per step: wall time; peak memory of the step's process tree, sampled every
:data:`SAMPLE_INTERVAL` s from ``/proc`` (summed RSS, and summed PSS, which counts pages shared
between processes once: the memory the step needs), and the largest peak RSS of any one process
(the kernel's ``VmHWM``, its peak since exec, sampled with the tree). Training: seconds
per iteration from nnU-Net's log (the epoch time over the training iterations; the epoch also holds
its validation iteration, forward only, and nnU-Net's end-of-epoch bookkeeping) and the final
validation's seconds (log timestamps). Inference: the command's wall time for its one case.
One run of each step (no repeats); the machine may be shared, so the load average is recorded at
the start and the end.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import platform
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from datetime import datetime
from pathlib import Path
from typing import Callable, Sequence

from nnunetv2_druwas import env
from nnunetv2_druwas.errors import DruwasError
from nnunetv2_druwas.files import replaced_together, write_text
from nnunetv2_druwas.folds import RUN_RECORD

DATASET_ID = 500              # convert-brats' ID for BraTS 2020; the work folder is the benchmark's own
VALIDATION_ID = 999           # the small validation case's own conversion, merged into DATASET_ID
YEAR = 2020
CONFIGURATION = "3d_fullres"
FOLD = 0
EPOCHS, ITERATIONS = 1, 2
FULL_SHAPE = (240, 240, 155)
VALIDATION_SHAPE = (64, 64, 48)
#: model key -> variant key of nnunetv2_druwas.variants (its trainer under the paper's recipe)
MODELS = {"druwas": "full", "nnunet": "nnunet"}
#: the predictions of the held-out case: (model, test-time mirroring), in the order they run
PREDICTIONS = (("druwas", False), ("druwas", True), ("nnunet", False))
SAMPLE_INTERVAL = 0.5         # seconds between memory samples
MIB = 2 ** 20
REGIONS = ("WT", "TC", "ET")


# --------------------------------------------------------------------------- measuring one command

def _process_tree(root: int) -> list[int]:
    """``root`` and every process below it (from the parent ids in ``/proc/<pid>/stat``)."""
    children: dict[int, list[int]] = {}
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            try:
                stat = Path(entry.path, "stat").read_text()
            except OSError:   # the process has ended
                continue
            parent = int(stat.rsplit(")", 1)[1].split()[1])   # after "(comm)": state, ppid
            children.setdefault(parent, []).append(int(entry.name))
    tree, todo = [], [root]
    while todo:
        pid = todo.pop()
        tree.append(pid)
        todo += children.get(pid, [])
    return tree


def _resident(pid: int) -> tuple[int, int, int]:
    """(RSS, PSS, peak RSS) of one process in bytes; zeros once it has ended.

    The peak is the kernel's high-water mark of the process's memory since its last exec (``VmHWM``);
    not ``wait4``'s ``ru_maxrss``, which also counts the parent's pages a child held between fork and exec.
    """
    try:
        rss = int(Path(f"/proc/{pid}/statm").read_text().split()[1]) * os.sysconf("SC_PAGE_SIZE")
        pss = rss
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            if line.startswith("Pss:"):
                pss = int(line.split()[1]) * 1024
                break
        hwm = rss
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                hwm = int(line.split()[1]) * 1024
                break
    except (OSError, ValueError, IndexError):
        return 0, 0, 0
    return rss, pss, hwm


class TreePeak:
    """The peak summed RSS and PSS of a process and its descendants, and the largest peak RSS of any
    one of them, sampled in a thread.

    Args:
        pid: the root process.
        interval: seconds between samples.
    """

    def __init__(self, pid: int, interval: float = SAMPLE_INTERVAL):
        self.pid, self.interval = pid, interval
        self.rss = self.pss = self.process_rss = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while True:
            sizes = [_resident(pid) for pid in _process_tree(self.pid)]
            self.rss = max(self.rss, sum(rss for rss, _, _ in sizes))
            self.pss = max(self.pss, sum(pss for _, pss, _ in sizes))
            self.process_rss = max([self.process_rss] + [hwm for _, _, hwm in sizes])
            if self._stop.wait(self.interval):
                return

    def __enter__(self) -> TreePeak:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()


def measure(command: Sequence[str], environ: dict[str, str], log: Path, interval: float = SAMPLE_INTERVAL) -> dict:
    """Run ``command`` with its output in ``log``; its wall time and peak memory.

    Args:
        command: the command and its arguments.
        environ: its environment.
        log: file for its stdout and stderr.
        interval: seconds between memory samples of its process tree.

    Returns:
        ``wall_s``, ``peak_tree_pss_mib``, ``peak_tree_rss_mib`` (the process tree's sums, sampled)
        and ``peak_process_rss_mib`` (the largest peak RSS of any one of its processes, the kernel's ``VmHWM``, sampled).

    Raises:
        DruwasError: the command failed (naming its log and quoting its end).
    """
    with open(log, "w") as output:
        start = time.perf_counter()
        try:
            process = subprocess.Popen(list(command), env=environ, stdout=output, stderr=subprocess.STDOUT)
        except FileNotFoundError:
            raise DruwasError(f"{command[0]} is not installed: run this in the environment of nnunetv2") from None
        with TreePeak(process.pid, interval) as peak:
            _, status, _ = os.wait4(process.pid, 0)
        wall = time.perf_counter() - start
    process.returncode = os.waitstatus_to_exitcode(status)
    if process.returncode:
        tail = "".join(log.read_text(errors="replace").splitlines(keepends=True)[-25:])
        raise DruwasError(f"`{shlex.join(command)}` failed with exit code {process.returncode}; its log is {log}. "
                          f"Last lines:\n{tail}")
    return {"wall_s": wall, "peak_tree_pss_mib": peak.pss / MIB, "peak_tree_rss_mib": peak.rss / MIB,
            "peak_process_rss_mib": peak.process_rss / MIB}


# --------------------------------------------------------------------------- reading nnU-Net's outputs

def training_figures(fold: Path) -> dict:
    """Batch size, iterations, seconds per iteration and final-validation seconds of a trained fold.

    From ``druwas_run.json`` (what the DRUwAS trainers record) and nnU-Net's ``training_log_*.txt``:
    ``epoch_s`` is its ``Epoch time``, ``s_per_iteration`` that over the training iterations,
    ``s_per_sample`` that over the batch size, ``final_validation_s`` the time from the end of the
    (last) epoch to the last line of the log (checkpoint, final validation, BraTS evaluation).

    Args:
        fold: the ``fold_<N>`` folder.
    """
    record = json.loads((fold / RUN_RECORD).read_text())
    logs = sorted(fold.glob("training_log_*.txt"))
    if not logs:
        raise DruwasError(f"{fold} has no training_log_*.txt")
    stamped = []
    for line in logs[-1].read_text().splitlines():
        match = re.match(r"(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d(?:\.\d+)?): (.*)", line)
        if match:
            stamped.append((datetime.fromisoformat(match[1]), match[2]))
    epochs = [(stamp, float(m[1])) for stamp, text in stamped if (m := re.match(r"Epoch time: ([\d.]+) s", text))]
    if not epochs:
        raise DruwasError(f"{logs[-1]} has no 'Epoch time' line: the training did not finish an epoch")
    epoch_end, epoch_s = epochs[-1]
    iterations, batch = record["num_iterations_per_epoch"], record["batch_size"]
    return {"batch_size": batch, "iterations": iterations,
            "validation_iterations": record["num_val_iterations_per_epoch"], "epoch_s": epoch_s,
            "s_per_iteration": epoch_s / iterations, "s_per_sample": epoch_s / iterations / batch,
            "final_validation_s": (stamped[-1][0] - epoch_end).total_seconds()}


def region_metrics(metrics_csv: Path) -> dict:
    """``dice_<region>`` and ``hd95_<region>`` (mean over cases) of an ``evaluate`` table."""
    import pandas as pd

    table = pd.read_csv(metrics_csv)
    means = table.groupby("region")[["dice", "hd95"]].mean()
    return {f"{metric}_{region}": means.loc[region, metric] for metric in ("dice", "hd95") for region in REGIONS}


# --------------------------------------------------------------------------- the data

def add_case(dataset: Path, source: Path, case: str) -> None:
    """Copy the one case of the converted dataset ``source`` into ``dataset`` as ``case``.

    Args:
        dataset: the nnU-Net raw dataset that gains the case (its ``numTraining`` is counted up).
        source: a raw dataset with exactly one training case.
        case: the case's new identifier.
    """
    (label,) = (source / "labelsTr").glob("*.nii.gz")
    old = label.name.removesuffix(".nii.gz")
    for image in sorted((source / "imagesTr").glob(f"{old}_*.nii.gz")):
        shutil.copy(image, dataset / "imagesTr" / image.name.replace(old, case, 1))
    shutil.copy(label, dataset / "labelsTr" / f"{case}.nii.gz")
    info = json.loads((dataset / "dataset.json").read_text())
    info["numTraining"] += 1
    write_text(dataset / "dataset.json", json.dumps(info, indent=2))


def _shape_text(shape: Sequence[int]) -> str:
    return "x".join(map(str, shape))


# --------------------------------------------------------------------------- the benchmark

class Benchmark:
    """The steps, run one after the other in ``workdir``; every step's row is written to ``out`` at once.

    Args:
        workdir: the work folder (every nnU-Net folder, the logs, the predictions).
        out: the folder for ``fullsize.csv`` and ``fullsize.md``.
        cases: full-size cases (the last one is held out for prediction; at least 2).
        shape: their size in voxels.
        validation_shape: the size of the fold's validation case.
        seed: seed of the synthetic cases (the validation case: ``seed + 1``).
    """

    def __init__(self, workdir: Path, out: Path, cases: int, shape: Sequence[int], validation_shape: Sequence[int],
                 seed: int = 0):
        if cases < 2:
            raise DruwasError(f"--cases must be at least 2 (training cases and one held-out case), got {cases}")
        self.workdir, self.out = workdir, out
        self.cases, self.shape, self.validation_shape, self.seed = cases, tuple(shape), tuple(validation_shape), seed
        self.environ = env.work_environment(workdir, {
            "DRUWAS_EPOCHS": str(EPOCHS), "DRUWAS_ITERS": str(ITERATIONS), **dict.fromkeys(
                ("DRUWAS_LR", "DRUWAS_CHECKPOINTING", "DRUWAS_PROTOCOLS", "DRUWAS_SEED", "DRUWAS_INIT_CHECKPOINT"))})
        self.rows: list[dict] = []
        self.machine = machine(self.environ)
        self.plan: dict = {}
        self.logs = workdir / "logs"

    @property
    def raw(self) -> Path:
        return Path(self.environ["nnUNet_raw"])

    def case(self, index: int) -> str:
        """The identifier of case ``index`` (from 1) of the BraTS 2020 layout."""
        return f"BraTS20_Training_{index:03d}"

    def step(self, name: str, what: str, command: Sequence[str], details: Callable[[dict], dict] | None = None) -> None:
        """Run and measure one command, add its row (``details(row)`` adds columns) and write the tables."""
        print(f"[{time.strftime('%H:%M:%S')}] {name}: {what}", file=sys.stderr, flush=True)
        row = {"step": name, "what": what, **measure(command, self.environ, self.logs / f"{name}.log")}
        row.update(details(row) if details else {})
        row["command"] = shlex.join(command)
        self.rows.append(row)
        write_outputs(self.table(), self.out, self.caption(), self.machine)
        print(f"    {row['wall_s']:.1f} s, peak {row['peak_tree_pss_mib'] / 1024:.2f} GiB (tree PSS)",
              file=sys.stderr, flush=True)

    def run(self) -> None:
        """Every step in turn."""
        druwas = [sys.executable, "-m", "nnunetv2_druwas"]
        for name in env.DATA_VARIABLES:
            Path(self.environ[name]).mkdir(parents=True, exist_ok=True)
        self.logs.mkdir(exist_ok=True)
        release, small = self.workdir / "release", self.workdir / "release_validation"
        shape, small_shape = _shape_text(self.shape), _shape_text(self.validation_shape)
        self.step("synth", f"{self.cases} synthetic cases of {shape}",
                  [*druwas, "synth", str(release), "--cases", str(self.cases), "--shape", *map(str, self.shape),
                   "--seed", str(self.seed), "-np", "2"])
        self.step("synth_validation", f"1 synthetic validation case of {small_shape}",
                  [*druwas, "synth", str(small), "--cases", "1", "--shape", *map(str, self.validation_shape),
                   "--seed", str(self.seed + 1)])
        self.step("convert", f"convert-brats of the {self.cases} cases",
                  [*druwas, "convert-brats", str(release), "--year", str(YEAR), "-d", str(DATASET_ID), "-np", "2"])
        self.step("convert_validation", "convert-brats of the validation case",
                  [*druwas, "convert-brats", str(small), "--year", str(YEAR), "-d", str(VALIDATION_ID), "-np", "1"])
        (dataset,) = self.raw.glob(f"Dataset{DATASET_ID}_*")
        (small_dataset,) = self.raw.glob(f"Dataset{VALIDATION_ID}_*")
        validation_case = self.case(self.cases + 1)
        add_case(dataset, small_dataset, validation_case)
        shutil.rmtree(small_dataset)

        self.step("plan_and_preprocess", f"nnU-Net's {CONFIGURATION} plan and preprocessing of {self.cases + 1} cases",
                  [env_tool("nnUNetv2_plan_and_preprocess"), "-d", str(DATASET_ID), "-c", CONFIGURATION,
                   "-np", "2", "-npfp", "2"], lambda row: self._read_plan(dataset.name))
        training, test_case = [self.case(i) for i in range(1, self.cases)], self.case(self.cases)
        preprocessed = Path(self.environ["nnUNet_preprocessed"]) / dataset.name
        write_text(preprocessed / "splits_final.json", json.dumps([{"train": training, "val": [validation_case]}]))
        self.plan["split"] = (f"fold {FOLD}: {len(training)} full-size training cases, 1 validation case "
                              f"({validation_case}, {small_shape}); {test_case} ({shape}) held out for prediction")

        for model, variant in MODELS.items():
            trainer = trainer_of(variant)
            fold = (Path(self.environ["nnUNet_results"]) / dataset.name / f"{trainer}__nnUNetPlans__{CONFIGURATION}"
                    / f"fold_{FOLD}")
            self.step(f"train_{model}", f"{trainer}: {EPOCHS} epoch of {ITERATIONS} iterations, final validation",
                      [env_tool("nnUNetv2_train"), str(DATASET_ID), CONFIGURATION, str(FOLD), "-tr", trainer,
                       "-device", "cpu"],
                      lambda row, fold=fold, model=model: {"trainer": trainer_of(MODELS[model]),
                                                           "network": self._network(model), **training_figures(fold),
                                                           "final_validation_cases": 1})

        images = self.workdir / "predict_input"
        images.mkdir(exist_ok=True)
        for image in sorted((dataset / "imagesTr").glob(f"{test_case}_*.nii.gz")):
            shutil.copy(image, images / image.name)
        for model, mirroring in PREDICTIONS:
            trainer = trainer_of(MODELS[model])
            name = f"{model}{'_mirrored' if mirroring else ''}"
            predictions = self.workdir / f"predict_{name}"
            self.step(f"predict_{name}", f"{trainer}, {'with' if mirroring else 'without'} test-time mirroring, "
                      f"1 case of {shape}",
                      [env_tool("nnUNetv2_predict"), "-i", str(images), "-o", str(predictions), "-d", str(DATASET_ID),
                       "-c", CONFIGURATION, "-tr", trainer, "-f", str(FOLD), "-device", "cpu", "-npp", "1", "-nps", "1",
                       *([] if mirroring else ["--disable_tta"])],
                      lambda row, trainer=trainer, mirroring=mirroring: {
                          "trainer": trainer, "mirroring": mirroring, "cases": 1, "s_per_case": row["wall_s"]})
            metrics = self.workdir / f"metrics_{name}.csv"
            self.step(f"evaluate_{name}", f"BraTS metrics of predict_{name}",
                      [*druwas, "evaluate", str(predictions), str(dataset / "labelsTr"), "-o", str(metrics),
                       "--cases", test_case, "--protocol", "brats", "--num-processes", "1"],
                      lambda row, trainer=trainer, mirroring=mirroring, metrics=metrics: {
                          "trainer": trainer, "mirroring": mirroring, "cases": 1, **region_metrics(metrics)})
        self.machine["load_end"] = load_average()
        write_outputs(self.table(), self.out, self.caption(), self.machine)

    def _read_plan(self, dataset: str) -> dict:
        plans = json.loads((Path(self.environ["nnUNet_preprocessed"]) / dataset / "nnUNetPlans.json").read_text())
        configuration = plans["configurations"][CONFIGURATION]
        self.plan.update(patch_size=_shape_text(configuration["patch_size"]), batch_size=configuration["batch_size"],
                         median_shape="x".join(f"{s:g}" for s in configuration["median_image_size_in_voxels"]),
                         network=configuration["architecture"]["network_class_name"].rsplit(".", 1)[-1])
        return {"patch_size": self.plan["patch_size"], "batch_size": self.plan["batch_size"]}

    def _network(self, model: str) -> str:
        from nnunetv2_druwas.variants import VARIANTS

        (variant,) = (v for v in VARIANTS if v.key == MODELS[model])
        return self.plan["network"] if variant.network == "plan" else "DRUwASUNet"

    def table(self):
        """The rows measured so far as a DataFrame (a step's columns that do not apply are empty)."""
        import pandas as pd

        frame = pd.DataFrame(self.rows)
        frame["protocol"] = self.caption()
        return frame

    def caption(self) -> str:
        """How every column was measured, with the data, the plan and the schedule."""
        plan = self.plan
        planned = (f"nnU-Net's {CONFIGURATION} plan: patch {plan['patch_size']}, batch {plan['batch_size']} "
                   f"({plan['network']}; median image {plan['median_shape']} after cropping). {plan.get('split', '')}."
                   if plan else "")
        return (f"Full-size run on the CPU: {self.cases} synthetic BraTS 2020-layout cases of {_shape_text(self.shape)} "
                f"(seed {self.seed}) and 1 validation case of {_shape_text(self.validation_shape)}. {planned} "
                f"Training: {EPOCHS} epoch of {ITERATIONS} training iterations (DRUWAS_EPOCHS={EPOCHS}, "
                f"DRUWAS_ITERS={ITERATIONS}), paper recipe; s/iteration = nnU-Net's epoch time / training "
                f"iterations (the epoch also holds its validation iterations, forward only); final validation: "
                f"end of the epoch to the end of the log (mirrored sliding window of the validation case, BraTS "
                f"evaluation). Inference: nnUNetv2_predict of 1 held-out case, step 0.5, Gaussian, wall time of the "
                f"command. Memory: peak of the step's process tree, summed PSS and RSS sampled every "
                f"{SAMPLE_INTERVAL} s from /proc; largest single process: VmHWM from /proc. One run per step, "
                f"no repeats.")


def trainer_of(variant_key: str) -> str:
    """The trainer of a variant under the paper's recipe."""
    from nnunetv2_druwas.variants import VARIANTS

    (variant,) = (v for v in VARIANTS if v.key == variant_key)
    return variant.trainer


def env_tool(name: str) -> str:
    """An nnU-Net entry point of this Python environment."""
    from nnunetv2_druwas.grid import executable

    return executable(name)


def load_average() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def machine(environ: dict[str, str]) -> dict:
    """CPU, cores, memory, versions, the processes of nnU-Net's commands and the load average now (1, 5, 15
    minutes).

    Args:
        environ: the environment of the benchmark's commands.
    """
    from importlib.metadata import version

    cpuinfo = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").exists() else ""
    model = re.search(r"model name\s*:\s*(.*)", cpuinfo)
    meminfo = Path("/proc/meminfo").read_text() if Path("/proc/meminfo").exists() else ""
    memory = re.search(r"MemTotal:\s*(\d+) kB", meminfo)
    return {
        "cpu": model[1].strip() if model else platform.processor() or platform.machine(),
        "cores": f"{os.cpu_count()} logical, {len(os.sched_getaffinity(0))} usable",
        "memory": f"{int(memory[1]) / 2 ** 20:.1f} GiB" if memory else "unknown",
        "versions": f"python {platform.python_version()}, torch {version('torch')}, nnunetv2 {version('nnunetv2')}",
        "processes": ", ".join(f"{name}={env.value(name, environ) or '(unset)'}" for name in
                               ("nnUNet_def_n_proc", "nnUNet_n_proc_DA", "OMP_NUM_THREADS")),
        "load_start": load_average(),
    }


# --------------------------------------------------------------------------- the outputs

def _cell(column: str, value) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    if isinstance(value, float):
        return f"{value:.3f}" if column.startswith("dice") else f"{value:.1f}"
    return str(value)


def detail(row: dict) -> str:
    """What a step's own columns say, in a few words."""
    def has(column: str) -> bool:
        return _cell(column, row.get(column)) != ""

    if has("s_per_iteration"):
        return (f"batch {int(row['batch_size'])}, {int(row['iterations'])} it: {row['s_per_iteration']:.1f} s/it "
                f"({row['s_per_sample']:.1f} s/sample); epoch {row['epoch_s']:.0f} s; final validation "
                f"{row['final_validation_s']:.0f} s")
    if has("dice_WT"):
        return "Dice " + "/".join(f"{row[f'dice_{r}']:.3f}" for r in REGIONS) + " (WT/TC/ET)"
    if has("s_per_case"):
        return f"{row['s_per_case']:.0f} s/case"
    if has("patch_size"):
        return f"patch {row['patch_size']}, batch {int(row['batch_size'])}"
    return ""


def write_outputs(frame, out: Path, caption: str, machine_info: dict) -> list[Path]:
    """``fullsize.csv`` (every column) and ``fullsize.md`` (the machine, then one line per step), together.

    Args:
        frame: :meth:`Benchmark.table`.
        out: the folder (created if missing).
        caption: how the columns were measured.
        machine_info: :func:`machine` (and ``load_end`` once the run is over).
    """
    out.mkdir(parents=True, exist_ok=True)
    rows = frame.to_dict("records")
    peak = max(r["peak_tree_pss_mib"] for r in rows) / 1024
    lines = [f"**Full-size benchmark (CPU).** {caption}", "",
             *(f"- {key.replace('_', ' ')}: {value}" for key, value in machine_info.items()),
             f"- largest step peak (tree PSS): {peak:.1f} GiB"
             + ("" if "load_end" in machine_info else f"; incomplete: {len(rows)} steps so far"), "",
             "| step | what | wall (s) | peak tree PSS (GiB) | peak tree RSS (GiB) | largest process RSS (GiB) "
             "| figures |", "|---|---|---:|---:|---:|---:|---|"]
    for r in rows:
        lines.append(f"| {r['step']} | {r['what']} | {r['wall_s']:.1f} | {r['peak_tree_pss_mib'] / 1024:.2f} "
                     f"| {r['peak_tree_rss_mib'] / 1024:.2f} | {r['peak_process_rss_mib'] / 1024:.2f} | {detail(r)} |")
    paths = [out / "fullsize.csv", out / "fullsize.md"]
    with replaced_together() as group:
        group.write_text(paths[0], frame.to_csv(index=False))
        group.write_text(paths[1], "\n".join(lines) + "\n")
    return paths


def build_parser() -> argparse.ArgumentParser:
    """The parser of ``python -m nnunetv2_druwas.benchmarks.fullsize``."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", type=int, default=4,
                        help="full-size synthetic cases; the last is held out for prediction (default 4)")
    parser.add_argument("--out", type=Path, default=Path("."), help="folder for fullsize.csv/.md (default .)")
    parser.add_argument("--workdir", type=Path, default=None,
                        help="new or empty work folder, kept (default: a temporary folder, deleted at the end)")
    parser.add_argument("--shape", type=int, nargs=3, default=list(FULL_SHAPE), metavar=("X", "Y", "Z"),
                        help="case size in voxels (default 240 240 155, the BraTS size)")
    parser.add_argument("--validation-shape", type=int, nargs=3, default=list(VALIDATION_SHAPE),
                        metavar=("X", "Y", "Z"), help="size of the fold's one validation case (default 64 64 48)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the synthetic cases (default 0)")
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    workdir = args.workdir
    if workdir is not None and workdir.exists() and (not workdir.is_dir() or any(workdir.iterdir())):
        parser.error(f"--workdir {workdir} exists and is not an empty folder; give a new one")
    temporary = None if workdir else tempfile.TemporaryDirectory(prefix="druwas_fullsize_")
    try:
        workdir = Path(temporary.name if temporary else workdir).resolve()
        workdir.mkdir(parents=True, exist_ok=True)
        Benchmark(workdir, args.out, args.cases, args.shape, args.validation_shape, args.seed).run()
    except DruwasError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    finally:
        if temporary:
            temporary.cleanup()
    print((args.out / "fullsize.md").read_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
