"""The complexity table: size, compute and memory of every DRUwAS variant against nnU-Net's networks.

Run::

    python -m nnunetv2_druwas.benchmarks.complexity [--out DIR] [--no-timing] [--device cpu|cuda]

writes ``complexity.csv``, ``complexity.md`` and ``complexity.tex`` to ``DIR`` (default: the current
folder), one row per model: the variants (``baseline`` ... ``full``, ``swish``) and nnU-Net's own
networks, ``nnunet_default`` (``PlainConvUNet``) and ``nnunet_resenc_m`` (ResEnc M,
``ResidualEncoderUNet``).

The plans are nnU-Net's, made by its own planners (``nnUNetv2_plan_experiment -pl ExperimentPlanner``
and ``-pl nnUNetPlannerResEncM``) from a synthetic dataset fingerprint of BraTS 2020
(:func:`brats_plans`): 369 cases of 240 x 240 x 155 voxels at 1 mm, 4 channels, 3 regions, of which
nnU-Net's crop to the non-zero region keeps the brain's bounding box (median 138 x 170 x 138 voxels,
z-y-x, as nnU-Net's fingerprints of BraTS-sized brain-tumour data report). Both planners then
choose a 128^3 patch, batch 2, 6 stages (32-64-128-256-320-320). The DRUwAS networks are built from
the default plan by :func:`~nnunetv2_druwas.network.druwas_from_plans` (the paper's widths), as
their trainers build them.

Deterministic columns (the same on any machine; counted on PyTorch's ``meta`` device, which
allocates nothing and computes nothing):

* ``gflops_forward_128``: one forward pass at 128^3, batch 1, deep supervision off, counted by
  ``torch.utils.flop_counter.FlopCounterMode`` (convolutions and matrix products; a multiply-add
  is 2 FLOPs; normalisation, activations and pooling are not counted).
* ``saved_for_backward_mib_128_b2``: the tensors the forward pass at 128^3, batch 2, deep
  supervision on, fp32, keeps for the backward pass (``torch.autograd.graph.saved_tensors_hooks``),
  each storage once, parameters excluded (they exist anyway).
  ``..._checkpointing``: the same with the DRUwAS memory switch on (``DRUwASUNet.checkpointing``;
  during the backward pass one stage at a time is recomputed on top of this).

Timed columns (unless ``--no-timing``), named ``<device>_...``: one training step (forward, a
mean-square loss over every deep-supervision output, backward; under nnU-Net's autocast on CUDA)
at ``--patch`` (default 64^3 on the CPU, where 128^3 takes minutes per step; 128^3 on CUDA) and
batch 2, median of ``--repeats`` runs that alternate between the models, with and without
checkpointing, and its ratio to ``nnunet_default``; on CUDA also ``torch.cuda.max_memory_allocated``
over the step minus what was allocated before it. Inference: seconds for one synthetic full-size
case (:func:`nnunetv2_druwas.data.synth.synthesize_case`, 240 x 240 x 155, zero outside the brain)
through nnU-Net's ``nnUNetPredictor.predict_single_npy_array`` (preprocessing, sliding window with
step 0.5 and Gaussian weighting, export to a segmentation), one run per model in
``--inference-models``, without and, with ``--mirroring``, also with test-time mirroring.
"""
from __future__ import annotations

import argparse
import json
import math
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from nnunetv2_druwas.env import child_environment
from nnunetv2_druwas.errors import DruwasError
from nnunetv2_druwas.files import replaced_together

if TYPE_CHECKING:
    from nnunetv2_druwas.variants import Variant

NNUNET_MODELS = {"nnunet_default": "ExperimentPlanner", "nnunet_resenc_m": "nnUNetPlannerResEncM"}
REFERENCE = "nnunet_default"          # timing ratios are to this model
CONFIGURATION = "3d_fullres"

# The synthetic BraTS 2020 dataset the plans are made for (shapes z, y, x as nnU-Net reads a
# 240 x 240 x 155 NIfTI image).
BRATS_CASES = 369
BRATS_SHAPE = (155, 240, 240)
BRATS_BRAIN_SHAPE = (138, 170, 138)    # median size after nnU-Net's crop to the non-zero region
BRATS_CHANNELS = {"0": "T1", "1": "T1ce", "2": "T2", "3": "FLAIR"}
BRATS_LABELS = {"background": 0, "whole tumor": [1, 2, 3], "tumor core": [2, 3], "enhancing tumor": 3}
DATASET_ID = 999
DATASET_NAME = f"Dataset{DATASET_ID}_BraTSComplexity"

COUNT_PATCH, COUNT_BATCH = 128, 2
MIB = 2 ** 20


@dataclass(frozen=True)
class Model:
    """One row of the table: a network built from an nnU-Net plan."""

    name: str
    plans: dict                    # the whole nnU-Net plans dict it is built from
    dataset_json: dict
    variant: Variant | None = None   # the variant of a DRUwAS row, None for nnU-Net's networks

    @property
    def input_channels(self) -> int:
        return len(self.dataset_json["channel_names"])

    @property
    def architecture(self) -> dict:
        return self.plans["configurations"][CONFIGURATION]["architecture"]

    @property
    def network_class(self) -> str:
        return "DRUwASUNet" if self.variant else self.architecture["network_class_name"].rsplit(".", 1)[-1]

    def build(self, deep_supervision: bool = True):
        """The network, He-initialised like its trainer's, on the current default device."""
        from nnunetv2.utilities.get_network_from_plans import get_network_from_plans

        from nnunetv2_druwas.network import druwas_from_plans

        arch = self.architecture
        n_in, n_out = self.input_channels, len(self.dataset_json["labels"]) - 1  # regions: labels but background
        if self.variant is not None:
            return druwas_from_plans(arch["arch_kwargs"], arch["_kw_requires_import"], n_in, n_out,
                                     deep_supervision, **self.variant.network_kwargs)
        return get_network_from_plans(arch["network_class_name"], arch["arch_kwargs"], arch["_kw_requires_import"],
                                      n_in, n_out, allow_init=True, deep_supervision=deep_supervision)


# --------------------------------------------------------------------------- the plans

def write_brats_fingerprint(raw: Path, preprocessed: Path) -> None:
    """The synthetic BraTS dataset nnU-Net's planners read: ``dataset.json``, a fingerprint, one image.

    The fingerprint has what ``nnUNetv2_extract_fingerprint`` would write for :data:`BRATS_CASES`
    skull-stripped cases of :data:`BRATS_SHAPE` at 1 mm whose brain spans :data:`BRATS_BRAIN_SHAPE`.
    The planners open one image only to choose nnU-Net's image reader: a 4^3 case is written.

    Args:
        raw: the ``nnUNet_raw`` folder to create the dataset in.
        preprocessed: the ``nnUNet_preprocessed`` folder for the fingerprint (and the plans).
    """
    import nibabel as nib
    import numpy as np

    folder = raw / DATASET_NAME
    (folder / "imagesTr").mkdir(parents=True)
    (folder / "labelsTr").mkdir()
    (preprocessed / DATASET_NAME).mkdir(parents=True)
    for channel in BRATS_CHANNELS:
        nib.save(nib.Nifti1Image(np.ones((4, 4, 4), np.float32), np.eye(4)),
                 folder / "imagesTr" / f"BRATS_000_{int(channel):04d}.nii.gz")
    nib.save(nib.Nifti1Image(np.zeros((4, 4, 4), np.uint8), np.eye(4)), folder / "labelsTr" / "BRATS_000.nii.gz")
    (folder / "dataset.json").write_text(json.dumps({
        "channel_names": BRATS_CHANNELS, "labels": BRATS_LABELS, "regions_class_order": [1, 2, 3],
        "numTraining": BRATS_CASES, "file_ending": ".nii.gz"}, indent=2))
    intensities = {"max": 4.0, "mean": 1.0, "median": 1.0, "min": 0.0, "percentile_00_5": 0.1,
                   "percentile_99_5": 3.0, "std": 0.5}   # z-score normalisation: not used by the planners
    (preprocessed / DATASET_NAME / "dataset_fingerprint.json").write_text(json.dumps({
        "spacings": [[1.0, 1.0, 1.0]] * BRATS_CASES,
        "shapes_after_crop": [list(BRATS_BRAIN_SHAPE)] * BRATS_CASES,
        "foreground_intensity_properties_per_channel": {c: intensities for c in BRATS_CHANNELS},
        "median_relative_size_after_cropping": math.prod(BRATS_BRAIN_SHAPE) / math.prod(BRATS_SHAPE),
    }, indent=2))


def brats_plans() -> tuple[dict[str, dict], dict]:
    """nnU-Net's plans for the synthetic BraTS fingerprint, made by nnU-Net's own planners.

    Returns:
        ``{planner class name: plans dict}`` for the planners in :data:`NNUNET_MODELS`, and the
        dataset.json.

    Raises:
        DruwasError: a planner failed (its output is quoted).
    """
    with tempfile.TemporaryDirectory(prefix="druwas_complexity_") as tmp:
        tmp = Path(tmp)
        folders = {name: tmp / name for name in ("nnUNet_raw", "nnUNet_preprocessed", "nnUNet_results")}
        for folder in folders.values():
            folder.mkdir()
        env = child_environment({name: str(folder) for name, folder in folders.items()})
        write_brats_fingerprint(tmp / "nnUNet_raw", tmp / "nnUNet_preprocessed")
        plans = {}
        for planner in NNUNET_MODELS.values():
            command = ["nnUNetv2_plan_experiment", "-d", str(DATASET_ID), "-pl", planner]
            try:
                done = subprocess.run(command, env=env, capture_output=True, text=True)
            except FileNotFoundError:
                raise DruwasError(f"{command[0]} is not on PATH: run this in the Python environment where "
                                  f"nnunetv2 is installed") from None
            written = sorted((tmp / "nnUNet_preprocessed" / DATASET_NAME).glob("*Plans.json"))
            known = {json.loads(p.read_text())["experiment_planner_used"]: p for p in written}
            if done.returncode or planner not in known:
                raise DruwasError(f"{' '.join(command)} failed ({done.returncode}):\n{done.stdout[-2000:]}"
                                  f"\n{done.stderr[-2000:]}")
            plans[planner] = json.loads(known[planner].read_text())
        dataset_json = json.loads((tmp / "nnUNet_raw" / DATASET_NAME / "dataset.json").read_text())
    return plans, dataset_json


def model_names() -> list[str]:
    """The table's rows in order: the variant keys, then :data:`NNUNET_MODELS`."""
    from nnunetv2_druwas.variants import ABLATION_VARIANTS

    return [v.key for v in ABLATION_VARIANTS] + list(NNUNET_MODELS)


def table_models(plans: dict[str, dict], dataset_json: dict) -> list[Model]:
    """The rows: every variant (built from the default plan), then nnU-Net's networks."""
    from nnunetv2_druwas.variants import ABLATION_VARIANTS

    default = plans[NNUNET_MODELS[REFERENCE]]
    models = [Model(v.key, default, dataset_json, v) for v in ABLATION_VARIANTS]
    return models + [Model(name, plans[planner], dataset_json) for name, planner in NNUNET_MODELS.items()]


# --------------------------------------------------------------------------- deterministic counts

def forward_flops(network, x) -> int:
    """FLOPs of one forward pass of ``network`` on ``x`` (``FlopCounterMode``; no gradients recorded).

    Args:
        network: the network, on ``x``'s device (``meta`` counts without computing).
        x: the input batch.
    """
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    counter = FlopCounterMode(display=False)
    with counter, torch.no_grad():
        network(x)
    return counter.get_total_flops()


def saved_for_backward_bytes(network, x) -> int:
    """Bytes the forward pass of ``network`` on ``x`` keeps for the backward pass.

    Every tensor autograd saves goes through a ``saved_tensors_hooks`` pack hook; each underlying
    storage is counted once (views and in-place results share one), the network's parameters not at
    all. The count depends on shapes and dtypes only, so it is the same on the ``meta`` device.

    Args:
        network: the network in the mode to count (e.g. ``train()``, deep supervision on).
        x: the input batch, on the network's device.
    """
    import torch

    parameters = {p.untyped_storage()._cdata for p in network.parameters()}
    saved: dict[int, int] = {}

    def pack(tensor):
        storage = tensor.untyped_storage()
        if storage._cdata not in parameters:  # a storage the graph keeps alive: its address is unique
            saved[storage._cdata] = storage.nbytes()
        return tensor

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
        outputs = network(x)
    del outputs
    return sum(saved.values())


def counted_columns(model: Model) -> dict:
    """Parameters, GFLOPs and saved-for-backward MiB of one model (on the ``meta`` device)."""
    import torch

    with torch.device("meta"):
        network = model.build(deep_supervision=True).train()
        one = torch.empty(1, model.input_channels, *[COUNT_PATCH] * 3)
        two = torch.empty(COUNT_BATCH, model.input_channels, *[COUNT_PATCH] * 3)
        network.decoder.deep_supervision = False
        flops = forward_flops(network, one)
        network.decoder.deep_supervision = True
        saved = saved_for_backward_bytes(network, two)
        if model.variant is not None:
            network.checkpointing = True
            saved_checkpointing = saved_for_backward_bytes(network, two) / MIB
        else:
            saved_checkpointing = math.nan
    return {"parameters": sum(p.numel() for p in network.parameters()), "gflops_forward_128": flops / 1e9,
            "saved_for_backward_mib_128_b2": saved / MIB,
            "saved_for_backward_mib_128_b2_checkpointing": saved_checkpointing}


# --------------------------------------------------------------------------- timing

def training_step(network, x, autocast: bool) -> None:
    """Forward (under autocast if asked, as nnU-Net's ``train_step`` on CUDA), a mean-square loss
    over every output, backward."""
    import torch

    network.zero_grad(set_to_none=True)
    with torch.autocast(x.device.type, enabled=autocast):
        outputs = network(x)
        outputs = outputs if isinstance(outputs, (list, tuple)) else [outputs]
        loss = sum(o.float().square().mean() for o in outputs)
    loss.backward()


def step_columns(models: list[Model], device: str, patch: int, batch: int, repeats: int) -> dict[str, dict]:
    """Median training-step seconds (and CUDA peak memory) per model, with and without checkpointing.

    Every repeat runs every (model, checkpointing) setting once, in turn, after one warm-up step each.

    Args:
        models: the rows; DRUwAS rows are also timed with checkpointing.
        device: ``"cpu"`` or ``"cuda"``.
        patch: edge of the cubic patch.
        batch: batch size.
        repeats: timed steps per setting.
    """
    import torch

    cuda = device == "cuda"
    if cuda:
        torch.backends.cudnn.benchmark = True  # as nnUNetv2_train sets it
    torch.manual_seed(0)
    x = torch.randn(batch, models[0].input_channels, patch, patch, patch, device=device)
    settings = [(m.name, False) for m in models] + [(m.name, True) for m in models if m.variant is not None]
    networks = {m.name: m.build(deep_supervision=True).to(device).train() for m in models}
    times: dict[tuple[str, bool], list[float]] = {s: [] for s in settings}
    peaks: dict[tuple[str, bool], float] = {}

    def run(name: str, checkpointing: bool) -> float:
        network = networks[name]
        if hasattr(network, "checkpointing"):
            network.checkpointing = checkpointing
        if cuda:
            torch.cuda.synchronize()
        start = time.perf_counter()
        training_step(network, x, autocast=cuda)
        if cuda:
            torch.cuda.synchronize()
        return time.perf_counter() - start

    for name, checkpointing in settings:   # warm-up; on CUDA also the peak memory of one step
        run(name, checkpointing)
        if cuda:
            networks[name].zero_grad(set_to_none=True)
            before = torch.cuda.memory_allocated()
            torch.cuda.reset_peak_memory_stats()
            run(name, checkpointing)
            peaks[(name, checkpointing)] = (torch.cuda.max_memory_allocated() - before) / MIB
    for r in range(repeats):
        for setting in settings:
            times[setting].append(run(*setting))
        print(f"step timing: repeat {r + 1}/{repeats} done", file=sys.stderr, flush=True)
    reference = statistics.median(times[(REFERENCE, False)])
    stem = f"{device}_step_s_{patch}_b{batch}"
    columns: dict[str, dict] = {m.name: {} for m in models}
    for (name, checkpointing), values in times.items():
        suffix = "_checkpointing" if checkpointing else ""
        seconds = statistics.median(values)
        columns[name][stem + suffix] = seconds
        columns[name][f"{device}_step_ratio_{patch}_b{batch}{suffix}"] = seconds / reference
        if cuda:
            columns[name][f"cuda_max_memory_mib_{patch}_b{batch}{suffix}"] = peaks[(name, checkpointing)]
    return columns


def inference_seconds(model: Model, case, device: str, mirroring: bool) -> float:
    """Seconds nnU-Net's predictor takes for one case with this network (random weights).

    Args:
        model: the row.
        case: the image, channels first, z-y-x, 1 mm.
        device: ``"cpu"`` or ``"cuda"``.
        mirroring: test-time mirroring along all three axes (8 passes per window).
    """
    import torch
    from nnunetv2.inference.predict_from_raw_data import nnUNetPredictor
    from nnunetv2.utilities.plans_handling.plans_handler import PlansManager

    plans_manager = PlansManager(model.plans)
    network = model.build(deep_supervision=False).to(device).eval()
    predictor = nnUNetPredictor(tile_step_size=0.5, use_gaussian=True, use_mirroring=mirroring,
                                device=torch.device(device), verbose=False, allow_tqdm=False)
    predictor.manual_initialization(network, plans_manager, plans_manager.get_configuration(CONFIGURATION),
                                    [network.state_dict()], model.dataset_json, "complexity", (0, 1, 2))
    start = time.perf_counter()
    segmentation = predictor.predict_single_npy_array(case, {"spacing": [1.0, 1.0, 1.0]})
    if device == "cuda":
        torch.cuda.synchronize()
    seconds = time.perf_counter() - start
    if segmentation.shape != case.shape[1:]:
        raise RuntimeError(f"the prediction of {model.name} has shape {segmentation.shape}, not {case.shape[1:]}")
    return seconds


def full_size_case():
    """One synthetic 240 x 240 x 155 case as nnU-Net's predictor wants it: (4, 155, 240, 240) float32."""
    import numpy as np

    from nnunetv2_druwas.data.brats import MODALITIES
    from nnunetv2_druwas.data.synth import synthesize_case

    case = synthesize_case(BRATS_SHAPE[::-1], seed=0, index=1)
    return np.stack([case.images[m].transpose(2, 1, 0) for m in MODALITIES]).astype(np.float32)


def sliding_windows(case, patch_size: list[int]) -> tuple[tuple[int, ...], int]:
    """The size nnU-Net's crop to the non-zero region leaves of ``case``, and how many windows of
    ``patch_size`` (step 0.5) its sliding window then predicts."""
    from nnunetv2.inference.sliding_window_prediction import compute_steps_for_sliding_window
    from nnunetv2.preprocessing.cropping.cropping import crop_to_nonzero

    cropped, _, _ = crop_to_nonzero(case)
    size = tuple(max(s, p) for s, p in zip(cropped.shape[1:], patch_size))  # smaller images are padded
    return cropped.shape[1:], math.prod(len(steps) for steps in compute_steps_for_sliding_window(size, patch_size, 0.5))


# --------------------------------------------------------------------------- the table

def complexity_table(timing: bool = True, device: str = "cpu", patch: int | None = None, batch: int = COUNT_BATCH,
                     repeats: int = 3, inference_models: list[str] | None = None, mirroring: bool = False,
                     threads: int | None = None):
    """The complexity table: a pandas DataFrame, one row per model (columns: module docstring).

    Its last column, ``protocol``, holds the same text in every row: how every column was measured
    (the caption of the Markdown and LaTeX tables), so that the CSV describes itself.

    Args:
        timing: also time training steps and inference (else only the deterministic columns).
        device: where to time: ``"cpu"`` or ``"cuda"``.
        patch: edge of the cubic patch of the timed step; None: 128 on CUDA, 64 on the CPU.
        batch: batch size of the timed step.
        repeats: timed steps per model and setting (alternating; the median is reported).
        inference_models: models whose full-size inference is timed; None: every model.
        mirroring: also time inference with test-time mirroring.
        threads: torch CPU threads (None: torch's default).
    """
    import pandas as pd
    import torch

    names = model_names()
    if inference_models is None:
        inference_models = names
    unknown = sorted(set(inference_models) - set(names))
    if unknown:
        raise DruwasError(f"unknown model(s) {unknown} for --inference-models; choose from {', '.join(names)}")
    if threads:
        torch.set_num_threads(threads)
    plans, dataset_json = brats_plans()
    models = table_models(plans, dataset_json)
    rows = []
    for model in models:
        configuration = model.plans["configurations"][CONFIGURATION]
        rows.append({"model": model.name, "network": model.network_class,
                     "plans": f"{model.plans['plans_name']} {CONFIGURATION}",
                     "plan_patch_size": "x".join(map(str, configuration["patch_size"])),
                     "plan_batch_size": configuration["batch_size"], **counted_columns(model)})
        print(f"counted: {model.name}", file=sys.stderr, flush=True)
    frame = pd.DataFrame(rows)
    if not timing:
        frame["protocol"] = protocol(frame, "Timing not run (--no-timing).")
        return frame
    patch = patch or (128 if device == "cuda" else 64)
    steps = step_columns(models, device, patch, batch, repeats)
    frame = frame.join(pd.DataFrame([steps[name] for name in names]))
    case = full_size_case()
    cropped, windows = sliding_windows(case, models[0].plans["configurations"][CONFIGURATION]["patch_size"])
    threads_used = f", {torch.get_num_threads()} torch threads" if device == "cpu" else ", autocast"
    note = (f"Step: forward + mean-square loss over all outputs + backward at {patch}^3, batch {batch}, {device}"
            f"{threads_used}, median of {repeats} alternating repeats (after one warm-up step); ratio to {REFERENCE}. "
            f"Inference: nnUNetPredictor (step 0.5, Gaussian; random weights) on one synthetic 240x240x155 case, "
            f"cropped by nnU-Net to {'x'.join(map(str, cropped))}: {windows} windows; 1 run per model"
            f"{'' if set(inference_models) == set(names) else ' (- : not run)'}. torch {torch.__version__}.")
    for mirrored in (False, True) if mirroring else (False,):
        column = f"{device}_inference_s_case" + ("_mirrored" if mirrored else "")
        frame[column] = math.nan
        for i, model in enumerate(models):
            if model.name in inference_models:
                frame.loc[i, column] = inference_seconds(model, case, device, mirrored)
                print(f"inference timed: {model.name}{' (mirrored)' if mirrored else ''}", file=sys.stderr,
                      flush=True)
    frame["protocol"] = protocol(frame, note)
    return frame


def _formatted(frame) -> list[list[str]]:
    """The table's cells as text: counts with thousands separators, 3 decimals below 10, else 1."""
    cells = []
    for _, row in frame.iterrows():
        line = []
        for column, value in row.items():
            if isinstance(value, str):
                line.append(value)
            elif isinstance(value, float) and math.isnan(value):
                line.append("-")
            elif column in ("parameters", "plan_batch_size"):
                line.append(f"{int(value):,}")
            else:
                line.append(f"{value:,.3f}" if abs(value) < 10 else f"{value:,.1f}")
        cells.append(line)
    return cells


def protocol(frame, timing_note: str) -> str:
    """One paragraph that says how every column of ``frame`` was measured, ending in ``timing_note``."""
    first = frame.iloc[0]
    return (f"Complexity on nnU-Net's BraTS {CONFIGURATION} plans (planned by nnU-Net from a synthetic fingerprint: "
            f"{BRATS_CASES} cases of 240x240x155 at 1 mm, brain crop {'x'.join(map(str, BRATS_BRAIN_SHAPE))}; patch "
            f"{first['plan_patch_size']}, batch {first['plan_batch_size']}). GFLOPs: one forward pass at 128^3, "
            f"batch 1 (FlopCounterMode). Saved for backward: MiB kept by the forward pass at 128^3, batch 2, "
            f"deep supervision on, fp32, each storage once, without parameters; _checkpointing: with "
            f"DRUwASUNet.checkpointing. {timing_note}")


def write_outputs(frame, out: Path) -> list[Path]:
    """``complexity.csv``, ``.md`` and ``.tex`` in ``out`` (each written whole, then moved into place).

    Args:
        frame: :func:`complexity_table`'s table; its ``protocol`` becomes the caption of the
            Markdown and LaTeX tables.
        out: the folder (created if missing).
    """
    out.mkdir(parents=True, exist_ok=True)
    text = frame["protocol"].iloc[0]
    shown = frame.drop(columns="protocol")
    header = list(shown.columns)
    cells = _formatted(shown)
    markdown = "\n".join([f"**Complexity.** {text}", "", "| " + " | ".join(header) + " |",
                          "|" + "|".join("---" if c in ("model", "network", "plans") else "---:" for c in header)
                          + "|"] + ["| " + " | ".join(line) + " |" for line in cells]) + "\n"

    def tex(value: str) -> str:
        return value.replace("\\", r"\textbackslash{}").replace("_", r"\_").replace("^", r"\^{}").replace("%", r"\%")

    latex = "\n".join([r"\begin{table}[t]", r"\centering", r"\scriptsize", rf"\caption{{{tex(text)}}}",
                       r"\label{tab:druwas-complexity}", r"\resizebox{\linewidth}{!}{%",
                       r"\begin{tabular}{" + "".join("l" if c in ("model", "network", "plans") else "r"
                                                     for c in header) + "}",
                       r"\toprule", " & ".join(tex(c) for c in header) + r" \\", r"\midrule"]
                      + [" & ".join(tex(c) for c in line) + r" \\" for line in cells]
                      + [r"\bottomrule", r"\end{tabular}}", r"\end{table}"]) + "\n"
    written = []
    with replaced_together() as group:
        for name, content in (("complexity.csv", frame.to_csv(index=False)), ("complexity.md", markdown),
                              ("complexity.tex", latex)):
            group.write_text(out / name, content)
            written.append(out / name)
    return written


def build_parser() -> argparse.ArgumentParser:
    """The parser of ``python -m nnunetv2_druwas.benchmarks.complexity``."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("."), help="folder for complexity.csv/.md/.tex (default .)")
    parser.add_argument("--no-timing", action="store_true", help="only the deterministic columns (seconds)")
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu", help="where to time (default cpu)")
    parser.add_argument("--patch", type=int, default=None,
                        help="edge of the timed step's cubic patch (default 128 on cuda, 64 on cpu)")
    parser.add_argument("--batch", type=int, default=COUNT_BATCH, help="batch size of the timed step (default 2)")
    parser.add_argument("--repeats", type=int, default=3, help="timed steps per model, alternating (default 3)")
    parser.add_argument("--inference-models", nargs="*", default=None, metavar="MODEL",
                        help="models whose full-size inference is timed (default all; none: give the option "
                             "without names)")
    parser.add_argument("--mirroring", action="store_true", help="also time inference with test-time mirroring")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    import torch

    if args.device == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda: no CUDA device is visible to torch")
    patch = args.patch or (128 if args.device == "cuda" else 64)
    if patch % 32:
        parser.error("--patch must be a multiple of 32 (the plan pools 5 times by 2)")
    try:
        frame = complexity_table(not args.no_timing, args.device, patch, args.batch, args.repeats,
                                 args.inference_models, args.mirroring, args.threads)
    except DruwasError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    for path in write_outputs(frame, args.out):
        print(f"wrote {path}", file=sys.stderr)
    print((args.out / "complexity.md").read_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
