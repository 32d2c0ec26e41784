"""Tests of the memory switch (DRUwASUNet.checkpointing) and the complexity table
(nnunetv2_druwas.benchmarks.complexity). Tiny networks on the CPU; the table on the meta device."""
from __future__ import annotations

import copy
import math

import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn

from nnunetv2_druwas.benchmarks import complexity
from nnunetv2_druwas.network import DRUwASUNet
from nnunetv2_druwas.variants import ABLATION_VARIANTS, variant_by_key

IN_CHANNELS, NUM_CLASSES = 4, 3


pytestmark = pytest.mark.usefixtures("one_thread")


def tiny_net(variant_kwargs: dict, checkpointing: bool = False) -> DRUwASUNet:
    torch.manual_seed(0)
    net = DRUwASUNet(IN_CHANNELS, NUM_CLASSES, 3, [8, 16, 32], nn.Conv3d, 3, [1, 2, 2], deep_supervision=True,
                     checkpointing=checkpointing, **variant_kwargs)
    net.apply(net.initialize)
    return net


def outputs_and_gradients(net: nn.Module, x: torch.Tensor, run: nn.Module | None = None
                          ) -> tuple[list[torch.Tensor], dict[str, torch.Tensor]]:
    """Outputs of ``run`` (default ``net``, e.g. its compiled wrapper) and the gradients of ``net``'s
    parameters under a loss that weights every output voxel differently."""
    net.zero_grad(set_to_none=True)
    outputs = (net if run is None else run)(x)
    sum((o.float() * torch.linspace(-1, 1, o.numel()).view_as(o)).sum() for o in outputs).backward()
    return [o.detach() for o in outputs], {n: p.grad.clone() for n, p in net.named_parameters()}


def assert_same(a: tuple, b: tuple) -> None:
    for x, y in zip(a[0], b[0], strict=True):
        torch.testing.assert_close(x, y, rtol=1e-5, atol=1e-6)
    assert a[1].keys() == b[1].keys()
    for name in a[1]:
        torch.testing.assert_close(a[1][name], b[1][name], rtol=1e-5, atol=1e-6, msg=name)


# --- the memory switch ----------------------------------------------------------------------

@pytest.mark.parametrize("variant", ABLATION_VARIANTS, ids=lambda v: v.key)
def test_checkpointing_keeps_outputs_gradients_and_state_dict(variant):
    x = torch.randn(2, IN_CHANNELS, 8, 8, 8, generator=torch.Generator().manual_seed(1))
    plain, switched = tiny_net(variant.network_kwargs), tiny_net(variant.network_kwargs, checkpointing=True)
    assert switched.checkpointing and switched.encoder.checkpointing and switched.decoder.checkpointing
    assert not plain.checkpointing
    # same parameters and buffers, names and values: the switch is not part of the state_dict
    state, switched_state = plain.state_dict(), switched.state_dict()
    assert list(state) == list(switched_state)
    assert all(torch.equal(state[k], switched_state[k]) for k in state)

    reference = outputs_and_gradients(plain, x)
    assert len(reference[0]) == 2  # deep supervision on: one output per decoder stage
    assert_same(outputs_and_gradients(switched, x), reference)
    # switched at run time on the same module, as the trainer does
    plain.checkpointing = True
    assert_same(outputs_and_gradients(plain, x), reference)
    # prediction (no gradients, deep supervision off) is unaffected
    fresh = tiny_net(variant.network_kwargs)
    fresh.decoder.deep_supervision = switched.decoder.deep_supervision = False
    with torch.no_grad():
        torch.testing.assert_close(switched.eval()(x), fresh.eval()(x), rtol=0, atol=0)


@pytest.mark.parametrize("variant", ABLATION_VARIANTS, ids=lambda v: v.key)
def test_checkpointing_saves_fewer_bytes_for_the_backward_pass(variant):
    x = torch.randn(2, IN_CHANNELS, 16, 16, 16)
    net = tiny_net(variant.network_kwargs).train()
    plain = complexity.saved_for_backward_bytes(net, x)
    net.checkpointing = True
    switched = complexity.saved_for_backward_bytes(net, x)
    assert switched < plain / 3
    # with checkpointing, only the stages' inputs and outputs are kept: the input, every encoder stage's
    # output (8, 16, 32 channels at 16^3, 8^3, 4^3) and every decoder stage's output (16 at 8^3, 8 at 16^3)
    voxels = [16 ** 3, 8 ** 3, 4 ** 3]
    kept = IN_CHANNELS * voxels[0] + 8 * voxels[0] + 16 * voxels[1] + 32 * voxels[2] + 16 * voxels[1] + 8 * voxels[0]
    assert switched == 2 * kept * 4  # batch 2, fp32
    # deterministic: the meta device (no memory, no compute) counts exactly the same
    with torch.device("meta"):
        meta = copy.deepcopy(net).to("meta")
        assert complexity.saved_for_backward_bytes(meta, torch.empty(2, IN_CHANNELS, 16, 16, 16)) == switched
        meta.checkpointing = False
        assert complexity.saved_for_backward_bytes(meta, torch.empty(2, IN_CHANNELS, 16, 16, 16)) == plain


def test_checkpointing_under_autocast_gives_the_same_result():
    kwargs = variant_by_key("swish").network_kwargs
    x = torch.randn(1, IN_CHANNELS, 8, 8, 8, generator=torch.Generator().manual_seed(2))
    results = []
    for checkpointing in (False, True):
        net = tiny_net(kwargs, checkpointing)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            results.append(outputs_and_gradients(net, x))
    assert results[0][0][0].dtype == torch.bfloat16  # autocast was on, also while recomputing
    assert_same(results[1], results[0])


def test_checkpointing_under_torch_compile_traces_whole_and_keeps_gradients():
    # aot_eager: Dynamo and AOTAutograd (forward and backward graphs) as nnU-Net's default inductor
    # backend runs them, without the minutes of C++ compilation that inductor needs on 2 CPU cores
    kwargs = variant_by_key("full").network_kwargs
    x = torch.randn(1, IN_CHANNELS, 8, 8, 8, generator=torch.Generator().manual_seed(3))
    reference = outputs_and_gradients(tiny_net(kwargs), x)
    net = tiny_net(kwargs, checkpointing=True)
    compiled = torch.compile(net, backend="aot_eager", fullgraph=True)
    assert_same(outputs_and_gradients(net, x, compiled), reference)


# --- the counts -------------------------------------------------------------------------------

def conv_flops(c_in: int, c_out: int, kernel_voxels: int, out_voxels: int) -> int:
    """A convolution's multiply-adds times 2 (no bias), as FlopCounterMode counts them."""
    return 2 * out_voxels * c_in * c_out * kernel_voxels


def test_forward_flops_match_a_hand_count_of_the_layers():
    x = torch.zeros(1, IN_CHANNELS, 8, 8, 8)
    full, half = 8 ** 3, 4 ** 3          # voxels of the two stages
    k3 = 27
    # every stage has two blocks. baseline: blocks of two 3x3x3 convolutions; transposed conv 2x2x2
    # stride 2; 1x1x1 head
    baseline = (conv_flops(4, 8, k3, full) + conv_flops(8, 8, k3, full) + 2 * conv_flops(8, 8, k3, full)
                + conv_flops(8, 16, k3, half) + conv_flops(16, 16, k3, half) + 2 * conv_flops(16, 16, k3, half)
                + conv_flops(16, 8, 1, full)  # transposed, kernel = stride: each output voxel gets one tap
                + conv_flops(16, 8, k3, full) + conv_flops(8, 8, k3, full) + 2 * conv_flops(8, 8, k3, full)
                + conv_flops(8, 3, 1, full))
    # full: residual blocks (3x3x3, 1x1x1, and a 1x1x1 projection where the width changes),
    # attention gate (two 1x1x1 to 4 channels, psi to 1), spatial attention (1x1x1 to 1 channel)
    residual = (conv_flops(4, 8, k3, full) + conv_flops(8, 8, 1, full) + conv_flops(4, 8, 1, full)
                + conv_flops(8, 8, k3, full) + conv_flops(8, 8, 1, full)
                + conv_flops(8, 16, k3, half) + conv_flops(16, 16, 1, half) + conv_flops(8, 16, 1, half)
                + conv_flops(16, 16, k3, half) + conv_flops(16, 16, 1, half)
                + conv_flops(16, 8, 1, full)
                + conv_flops(8, 4, 1, full) + conv_flops(8, 4, 1, full) + conv_flops(4, 1, 1, full)
                + conv_flops(16, 1, 1, full)
                + conv_flops(16, 8, k3, full) + conv_flops(8, 8, 1, full) + conv_flops(16, 8, 1, full)
                + conv_flops(8, 8, k3, full) + conv_flops(8, 8, 1, full)
                + conv_flops(8, 3, 1, full))
    for key, expected in (("baseline", baseline), ("full", residual)):
        net = DRUwASUNet(IN_CHANNELS, NUM_CLASSES, 2, [8, 16], nn.Conv3d, 3, [1, 2],
                         **variant_by_key(key).network_kwargs)
        assert complexity.forward_flops(net, x) == expected, key
        with torch.device("meta"):
            assert complexity.forward_flops(copy.deepcopy(net).to("meta"), torch.empty(x.shape)) == expected
        assert complexity.forward_flops(net, torch.zeros(3, IN_CHANNELS, 8, 8, 8)) == 3 * expected


class ConvReluSquare(nn.Module):
    """conv -> relu -> y * y^T: autograd saves x, the weight, and three tensors on relu's one storage."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv3d(2, 3, 3, padding=1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = torch.relu(self.conv(x))
        return y * y.transpose(2, 3)


def test_saved_bytes_count_each_storage_once_and_no_parameters():
    x = torch.randn(1, 2, 4, 4, 4)
    # conv keeps its input (x: 2 x 64 floats) and its weight (a parameter: not counted); relu keeps
    # its output (3 x 64 floats), and mul keeps it twice more (as is and as a transposed view)
    assert complexity.saved_for_backward_bytes(ConvReluSquare(), x) == (2 * 64 + 3 * 64) * 4


# --- the table --------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def planned():
    """nnU-Net's two BraTS plans, made once by nnU-Net's planners."""
    return complexity.brats_plans()


def test_nnunet_plans_the_brats_configuration(planned):
    plans, dataset_json = planned
    default, resenc = plans["ExperimentPlanner"], plans["nnUNetPlannerResEncM"]
    assert (default["plans_name"], resenc["plans_name"]) == ("nnUNetPlans", "nnUNetResEncUNetMPlans")
    for p in (default, resenc):
        configuration = p["configurations"]["3d_fullres"]
        assert configuration["patch_size"] == [128, 128, 128] and configuration["spacing"] == [1.0, 1.0, 1.0]
        assert configuration["architecture"]["arch_kwargs"]["strides"] == [[1, 1, 1]] + [[2, 2, 2]] * 5
        assert configuration["architecture"]["arch_kwargs"]["features_per_stage"] == [32, 64, 128, 256, 320, 320]
    assert resenc["configurations"]["3d_fullres"]["architecture"]["network_class_name"].endswith("ResidualEncoderUNet")
    assert resenc["configurations"]["3d_fullres"]["architecture"]["arch_kwargs"]["n_blocks_per_stage"] == \
        [1, 3, 4, 6, 6, 6]
    assert len(dataset_json["channel_names"]) == 4 and dataset_json["regions_class_order"] == [1, 2, 3]


def test_table_rows_and_columns_without_timing(planned, tmp_path, monkeypatch):
    monkeypatch.setattr(complexity, "brats_plans", lambda: planned)  # planned once per module
    assert complexity.main(["--no-timing", "--out", str(tmp_path)]) == 0
    frame = pd.read_csv(tmp_path / "complexity.csv")
    assert list(frame["model"]) == [v.key for v in ABLATION_VARIANTS] + ["nnunet_default", "nnunet_resenc_m"]
    assert list(frame.columns) == ["model", "network", "plans", "plan_patch_size", "plan_batch_size", "parameters",
                                   "gflops_forward_128", "saved_for_backward_mib_128_b2",
                                   "saved_for_backward_mib_128_b2_checkpointing", "protocol"]
    rows = frame.set_index("model")
    assert list(rows["network"]) == ["DRUwASUNet"] * len(ABLATION_VARIANTS) + ["PlainConvUNet", "ResidualEncoderUNet"]
    assert set(rows["plan_patch_size"]) == {"128x128x128"}
    assert rows["protocol"].nunique() == 1 and "--no-timing" in rows.at["full", "protocol"]
    # the parameters of nnU-Net's network, counted here from its layers: 6 stages of two 3x3x3
    # convolutions with bias and an affine InstanceNorm, transposed convolutions with bias, 5 heads
    widths = [32, 64, 128, 256, 320, 320]
    encoder = sum(c_in * c_out * 27 + c_out + 2 * c_out + c_out * c_out * 27 + c_out + 2 * c_out
                  for c_in, c_out in zip([4] + widths[:-1], widths))
    decoder = sum(below * skip * 8 + skip + 2 * skip * skip * 27 + skip + 2 * skip + skip * skip * 27 + skip + 2 * skip
                  + skip * 3 + 3 for below, skip in zip(widths[:0:-1], widths[-2::-1]))
    assert rows.at["nnunet_default", "parameters"] == encoder + decoder
    # the residual variants have about half the baseline's parameters and a little over half its FLOPs
    assert rows.at["res", "parameters"] < 0.6 * rows.at["baseline", "parameters"]
    assert rows.at["swish", "gflops_forward_128"] == rows.at["full", "gflops_forward_128"]
    assert rows.at["nnunet_resenc_m", "gflops_forward_128"] > rows.at["nnunet_default", "gflops_forward_128"] > \
        10 * rows.at["full", "gflops_forward_128"]
    druwas = rows.loc[[v.key for v in ABLATION_VARIANTS]]
    assert (druwas["saved_for_backward_mib_128_b2_checkpointing"] < druwas["saved_for_backward_mib_128_b2"] / 5).all()
    assert rows.loc[["nnunet_default", "nnunet_resenc_m"], "saved_for_backward_mib_128_b2_checkpointing"].isna().all()
    # SiLU keeps its input for the backward pass where ReLU keeps only its output (shared with the next op)
    assert rows.at["swish", "saved_for_backward_mib_128_b2"] > rows.at["full", "saved_for_backward_mib_128_b2"]
    markdown = (tmp_path / "complexity.md").read_text()
    assert markdown.count("\n| ") == 1 + len(frame) and "| nnunet_resenc_m | ResidualEncoderUNet |" in markdown
    latex = (tmp_path / "complexity.tex").read_text()
    assert latex.count(r" \\") == 1 + len(frame) and r"nnunet\_resenc\_m" in latex and "protocol" not in latex


def test_timing_columns_on_small_settings(planned):
    plans, dataset_json = planned
    models = [m for m in complexity.table_models(plans, dataset_json) if m.name in ("full", "nnunet_default")]
    columns = complexity.step_columns(models, "cpu", patch=64, batch=1, repeats=1)  # nnU-Net needs a 2^3 bottleneck
    assert set(columns["full"]) == {"cpu_step_s_64_b1", "cpu_step_ratio_64_b1", "cpu_step_s_64_b1_checkpointing",
                                    "cpu_step_ratio_64_b1_checkpointing"}
    assert set(columns["nnunet_default"]) == {"cpu_step_s_64_b1", "cpu_step_ratio_64_b1"}
    assert columns["nnunet_default"]["cpu_step_ratio_64_b1"] == 1.0
    assert math.isclose(columns["full"]["cpu_step_ratio_64_b1"],
                        columns["full"]["cpu_step_s_64_b1"] / columns["nnunet_default"]["cpu_step_s_64_b1"])
    # nnU-Net's predictor on a small case, with the plan's patch made small to keep it quick
    small = copy.deepcopy(models[0].plans)
    small["configurations"]["3d_fullres"]["patch_size"] = [32, 32, 32]
    model = complexity.Model("full", small, dataset_json, models[0].variant)
    case = np.zeros((4, 40, 48, 36), np.float32)
    case[:, 4:36, 6:40, 3:30] = np.random.default_rng(0).normal(1, 0.1, (4, 32, 34, 27))
    assert complexity.sliding_windows(case, [32, 32, 32]) == ((32, 34, 27), 2)
    assert complexity.inference_seconds(model, case, "cpu", mirroring=False) > 0


def test_unknown_inference_model_is_an_error_before_any_work(capsys):
    assert complexity.main(["--inference-models", "full", "unet3000"]) == 2
    assert "unknown model(s) ['unet3000']" in capsys.readouterr().err
