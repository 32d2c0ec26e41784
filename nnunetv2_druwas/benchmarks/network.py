"""Cost of every DRUwAS variant against nnU-Net's default network on the BraTS 3d_fullres plan.

Run: ``python -m nnunetv2_druwas.benchmarks.network [--patch 64] [--batch 2] [--repeats 3]``

The plan is what nnU-Net's ExperimentPlanner derives for BraTS (1 mm isotropic, 240 x 240 x 155,
patch 128^3): the topology comes from nnU-Net's own ``get_pool_and_conv_props`` (6 stages, strides
[1, 2, 2, 2, 2, 2], 3x3x3 kernels) and the planner's widths (32 doubling, capped at 320).
nnU-Net's network (``PlainConvUNet``) is built from it by nnU-Net's ``get_network_from_plans``, the
DRUwAS variants by :func:`nnunetv2_druwas.network.druwas_from_plans` (paper widths). On the CPU the
step is run on a smaller patch (default 64^3) with that same 128^3 plan; on a GPU the default is 128^3.

Measured per model, deep supervision on (as in training), batch 2:

* time: one training step (forward, a cheap loss over all outputs, backward); every repeat runs
  all models in turn (alternating, so load from other processes hits all models alike); the table
  gives the median and its ratio to PlainConvUNet's median from the same run.
* peak memory: CUDA: ``torch.cuda.max_memory_allocated`` over one step minus the memory allocated
  before it. CPU: one subprocess per model with a fixed glibc mmap threshold (so freed tensors go
  back to the OS); after a warm-up step the kernel's peak-RSS counter (VmHWM) is reset through
  ``/proc/self/clear_refs`` and the peak over one step minus the RSS before it is reported
  (parameters, optimizer-free). Python-level tracers (tracemalloc) do not see torch's allocations.
"""
from __future__ import annotations

import argparse
import gc
import json
import statistics
import subprocess
import sys
import time
from typing import Callable

PLAIN = "PlainConvUNet (nnU-Net default)"
BRATS_PLAN_PATCH = (128, 128, 128)
BRATS_SPACING = (1.0, 1.0, 1.0)


def brats_arch_kwargs() -> tuple[dict, list[str]]:
    """nnU-Net's 3d_fullres ``arch_kwargs`` (and ``_kw_requires_import``) for BraTS."""
    from nnunetv2.experiment_planning.experiment_planners.network_topology import get_pool_and_conv_props

    _, strides, kernels, _, _ = get_pool_and_conv_props(list(BRATS_SPACING), list(BRATS_PLAN_PATCH), 4, 999999)
    n_stages = len(strides)
    return {
        "n_stages": n_stages,
        # ExperimentPlanner: UNet_base_num_features = 32, UNet_max_features_3d = 320
        "features_per_stage": [min(32 * 2 ** i, 320) for i in range(n_stages)],
        "conv_op": "torch.nn.modules.conv.Conv3d",
        "kernel_sizes": [list(k) for k in kernels],
        "strides": [list(s) for s in strides],
        "n_conv_per_stage": [2] * n_stages,
        "n_conv_per_stage_decoder": [2] * (n_stages - 1),
        "conv_bias": True,
        "norm_op": "torch.nn.modules.instancenorm.InstanceNorm3d",
        "norm_op_kwargs": {"eps": 1e-05, "affine": True},
        "dropout_op": None,
        "dropout_op_kwargs": None,
        "nonlin": "torch.nn.LeakyReLU",
        "nonlin_kwargs": {"inplace": True},
    }, ["conv_op", "norm_op", "dropout_op", "nonlin"]


def model_builders(in_channels: int = 4, out_channels: int = 3) -> dict[str, Callable]:
    """Name -> zero-argument builder, nnU-Net's network first, then the variants in table order."""
    from nnunetv2.utilities.get_network_from_plans import get_network_from_plans

    from nnunetv2_druwas.network import druwas_from_plans
    from nnunetv2_druwas.variants import ABLATION_VARIANTS

    arch, req_import = brats_arch_kwargs()
    builders = {PLAIN: lambda: get_network_from_plans(
        "dynamic_network_architectures.architectures.unet.PlainConvUNet", arch, req_import, in_channels,
        out_channels, deep_supervision=True)}
    for v in ABLATION_VARIANTS:
        builders[v.key] = (lambda v=v: druwas_from_plans(arch, req_import, in_channels, out_channels, True,
                                                         **v.network_kwargs))
    return builders


def training_step(model, x) -> None:
    model.zero_grad(set_to_none=True)
    outputs = model(x)
    outputs = outputs if isinstance(outputs, (list, tuple)) else [outputs]
    sum(o.float().square().mean() for o in outputs).backward()


def _proc_status_kib(field: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"{field} not in /proc/self/status")


def cpu_peak_memory_child(name: str, patch: int, batch: int) -> int:
    """Run in a fresh process: peak extra RSS (bytes) of one training step of model ``name``."""
    import torch

    model = model_builders()[name]()
    x = torch.randn(batch, 4, patch, patch, patch)
    training_step(model, x)  # warm-up: one-time allocations (kernel caches) are not the step's cost
    model.zero_grad(set_to_none=True)
    gc.collect()
    before = _proc_status_kib("VmRSS")
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")  # resets VmHWM to the current RSS
    training_step(model, x)
    return (_proc_status_kib("VmHWM") - before) * 1024


def cpu_peak_memory(name: str, patch: int, batch: int, threads: int) -> int:
    from nnunetv2_druwas.env import child_environment

    env = child_environment({"MALLOC_MMAP_THRESHOLD_": "65536", "OMP_NUM_THREADS": str(threads)})
    out = subprocess.run([sys.executable, "-m", "nnunetv2_druwas.benchmarks.network", "--child", name,
                          "--patch", str(patch), "--batch", str(batch), "--threads", str(threads)],
                         env=env, capture_output=True, text=True)
    if out.returncode:
        raise RuntimeError(f"memory measurement of {name} failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])["peak_bytes"]


def cuda_peak_memory(model, x) -> int:
    import torch

    training_step(model, x)
    model.zero_grad(set_to_none=True)
    torch.cuda.synchronize()
    before = torch.cuda.memory_allocated()
    torch.cuda.reset_peak_memory_stats()
    training_step(model, x)
    torch.cuda.synchronize()
    return torch.cuda.max_memory_allocated() - before


def benchmark(patch: int, batch: int, repeats: int, device: str, threads: int) -> list[dict]:
    import torch

    torch.set_num_threads(threads)
    builders = model_builders()
    models = {name: build().to(device) for name, build in builders.items()}
    x = torch.randn(batch, 4, patch, patch, patch, device=device)
    rows = {name: {"model": name, "params": sum(p.numel() for p in m.parameters()),
                   "feature_map_size": int(m.compute_conv_feature_map_size([patch] * 3)), "times": []}
            for name, m in models.items()}

    def sync() -> None:
        if device == "cuda":
            torch.cuda.synchronize()

    for name, model in models.items():
        rows[name]["peak_bytes"] = (cuda_peak_memory(model, x) if device == "cuda"
                                    else cpu_peak_memory(name, patch, batch, threads))
        print(f"memory measured: {name}", file=sys.stderr, flush=True)
    for r in range(repeats):
        for name, model in models.items():
            sync()
            start = time.perf_counter()
            training_step(model, x)
            sync()
            rows[name]["times"].append(time.perf_counter() - start)
        print(f"repeat {r + 1}/{repeats} done", file=sys.stderr, flush=True)
    for row in rows.values():
        row["time_s"] = statistics.median(row["times"])
    return list(rows.values())


def markdown(rows: list[dict], patch: int, batch: int, repeats: int, device: str, threads: int) -> str:
    import torch

    plain = next(r for r in rows if r["model"] == PLAIN)
    arch, _ = brats_arch_kwargs()
    lines = [
        f"BraTS 3d_fullres plan (patch {'x'.join(map(str, BRATS_PLAN_PATCH))}, {arch['n_stages']} stages, "
        f"features {'-'.join(map(str, arch['features_per_stage']))}); step measured at patch {patch}^3, "
        f"batch {batch}, deep supervision on, device {device}"
        + (f" ({threads} thread{'s' if threads > 1 else ''})" if device == "cpu" else "")
        + f", torch {torch.__version__}, median of {repeats} alternating repeats.",
        "",
        "| model | parameters | feature-map size | step time (s) | time ratio | peak memory (MiB) | memory ratio |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(f"| {r['model']} | {r['params']:,} | {r['feature_map_size']:,} | {r['time_s']:.3f} | "
                     f"{r['time_s'] / plain['time_s']:.3f} | {r['peak_bytes'] / 2 ** 20:.0f} | "
                     f"{r['peak_bytes'] / plain['peak_bytes']:.3f} |")
    full = next(r for r in rows if r["model"] == "full")
    t, m = full["time_s"] / plain["time_s"], full["peak_bytes"] / plain["peak_bytes"]
    lines += ["", f"Full DRUwAS vs PlainConvUNet: {t:.3f}x time (target <= 0.35: {'met' if t <= 0.35 else 'MISSED'}), "
                  f"{m:.3f}x peak memory (target <= 0.7: {'met' if m <= 0.7 else 'MISSED'})."]
    return "\n".join(lines)


def build_parser() -> argparse.ArgumentParser:
    """The parser of ``python -m nnunetv2_druwas.benchmarks.network``."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--patch", type=int, default=None,
                        help="edge of the cubic patch the step runs on (default 128 on CUDA, 64 on the CPU)")
    parser.add_argument("--batch", type=int, default=2, help="batch size (default 2)")
    parser.add_argument("--repeats", type=int, default=3, help="timed steps per model, alternating (default 3)")
    parser.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    parser.add_argument("--threads", type=int, default=1,
                        help="CPU threads for torch (default 1: steadier on a shared machine)")
    parser.add_argument("--child", help=argparse.SUPPRESS)  # internal: CPU memory of one model
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.child:
        import torch

        torch.set_num_threads(args.threads)
        print(json.dumps({"peak_bytes": cpu_peak_memory_child(args.child, args.patch, args.batch)}))
        return 0
    import torch

    device = ("cuda" if torch.cuda.is_available() else "cpu") if args.device == "auto" else args.device
    patch = args.patch or (128 if device == "cuda" else 64)
    if patch % 32:
        parser.error("--patch must be a multiple of 32 (the plan pools 5 times by 2)")
    rows = benchmark(patch, args.batch, args.repeats, device, args.threads)
    print(markdown(rows, patch, args.batch, args.repeats, device, args.threads))
    return 0


if __name__ == "__main__":
    sys.exit(main())
