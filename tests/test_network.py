"""Tests of the DRUwAS network family (nnunetv2_druwas.network). Tiny sizes: CPU only, a few seconds."""
from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from nnunetv2.utilities.plans_handling.plans_handler import PlansManager
from torch import nn

from nnunetv2_druwas.network import (
    NONLINEARITIES,
    AttentionGate,
    DoubleConvBlock,
    DRUwASUNet,
    ResidualBlock,
    SpatialAttention,
    druwas_from_plans,
)
from nnunetv2_druwas.variants import ABLATION_VARIANTS, variant_by_key

# name -> (conv_op, strides, input spatial size); anisotropic = nnU-Net's typical [1, 2, 2] first pooling
GEOMETRIES = {
    "2d": (nn.Conv2d, [[1, 1], [2, 2], [2, 2]], (16, 16)),
    "3d": (nn.Conv3d, [[1, 1, 1], [2, 2, 2], [2, 2, 2]], (8, 8, 8)),
    "3d_aniso": (nn.Conv3d, [[1, 1, 1], [1, 2, 2], [2, 2, 2]], (4, 8, 8)),
}
FEATURES = [8, 16, 32]
IN_CHANNELS, NUM_CLASSES = 4, 3


pytestmark = pytest.mark.usefixtures("one_thread")


def tiny_net(variant_kwargs: dict, geometry: str = "3d", deep_supervision: bool = True, **overrides) -> DRUwASUNet:
    conv_op, strides, _ = GEOMETRIES[geometry]
    kwargs = dict(variant_kwargs, deep_supervision=deep_supervision, **overrides)
    torch.manual_seed(0)
    net = DRUwASUNet(IN_CHANNELS, NUM_CLASSES, len(strides), FEATURES, conv_op, 3, strides, **kwargs)
    net.apply(net.initialize)
    return net


def tiny_input(geometry: str, batch: int = 2) -> torch.Tensor:
    torch.manual_seed(1)
    return torch.randn(batch, IN_CHANNELS, *GEOMETRIES[geometry][2])


def count(net: nn.Module, kind: type) -> int:
    return sum(isinstance(m, kind) for m in net.modules())


def brats_like_plans() -> dict:
    """A plans dict shaped like nnU-Net 2.x's nnUNetPlans.json (3d_fullres with 6 stages and an
    anisotropic [1, 2, 2] first pooling, plus a 2d configuration)."""
    def architecture(conv: str, norm: str, features: list[int], kernels: list, strides: list) -> dict:
        return {
            "network_class_name": "dynamic_network_architectures.architectures.unet.PlainConvUNet",
            "arch_kwargs": {
                "n_stages": len(features), "features_per_stage": features, "conv_op": conv,
                "kernel_sizes": kernels, "strides": strides, "n_conv_per_stage": [2] * len(features),
                "n_conv_per_stage_decoder": [2] * (len(features) - 1), "conv_bias": True, "norm_op": norm,
                "norm_op_kwargs": {"eps": 1e-05, "affine": True}, "dropout_op": None, "dropout_op_kwargs": None,
                "nonlin": "torch.nn.LeakyReLU", "nonlin_kwargs": {"inplace": True},
            },
            "_kw_requires_import": ["conv_op", "norm_op", "dropout_op", "nonlin"],
        }
    return {
        "dataset_name": "Dataset990_Tiny", "plans_name": "nnUNetPlans",
        "configurations": {
            "3d_fullres": {
                "patch_size": [64, 160, 160], "batch_size": 2,
                "architecture": architecture(
                    "torch.nn.modules.conv.Conv3d", "torch.nn.modules.instancenorm.InstanceNorm3d",
                    [32, 64, 128, 256, 320, 320], [[1, 3, 3]] + [[3, 3, 3]] * 5,
                    [[1, 1, 1], [1, 2, 2], [2, 2, 2], [2, 2, 2], [2, 2, 2], [2, 2, 2]]),
            },
            "2d": {
                "patch_size": [192, 160], "batch_size": 12,
                "architecture": architecture(
                    "torch.nn.modules.conv.Conv2d", "torch.nn.modules.instancenorm.InstanceNorm2d",
                    [32, 64, 128], [[3, 3]] * 3, [[1, 1], [2, 2], [2, 2]]),
            },
        },
    }


def from_configuration(configuration: str, **kwargs) -> tuple[DRUwASUNet, object]:
    cm = PlansManager(brats_like_plans()).get_configuration(configuration)
    net = druwas_from_plans(cm.network_arch_init_kwargs, cm.network_arch_init_kwargs_req_import, IN_CHANNELS,
                            NUM_CLASSES, True, **kwargs)
    return net, cm


@pytest.mark.parametrize("geometry", GEOMETRIES)
@pytest.mark.parametrize("variant", ABLATION_VARIANTS, ids=lambda v: v.key)
def test_output_shapes_every_variant(variant, geometry):
    net = tiny_net(variant.network_kwargs, geometry)
    x = tiny_input(geometry)
    size = np.array(x.shape[2:])
    with torch.no_grad():
        outputs = net(x)
        assert isinstance(outputs, list) and len(outputs) == len(FEATURES) - 1
        for out, scale in zip(outputs, net.deep_supervision_scales()):
            assert out.shape == (2, NUM_CLASSES, *np.round(size * np.array(scale)).astype(int))
        net.decoder.deep_supervision = False
        single = net(x)
    assert isinstance(single, torch.Tensor) and single.shape == (2, NUM_CLASSES, *size)
    torch.testing.assert_close(single, outputs[0])


def test_deep_supervision_does_not_change_state_dict():
    on = tiny_net(variant_by_key("full").network_kwargs, deep_supervision=True).state_dict()
    off = tiny_net(variant_by_key("full").network_kwargs, deep_supervision=False).state_dict()
    assert list(on) == list(off)
    assert all(on[k].shape == off[k].shape for k in on)


def test_activations_share_state_dict_and_load_strictly():
    full = variant_by_key("full").network_kwargs
    nets = {name: tiny_net(dict(full, nonlin=name)) for name in NONLINEARITIES}
    reference = nets["relu"].state_dict()
    for name, net in nets.items():
        state = net.state_dict()
        assert list(state) == list(reference), name
        assert all(state[k].shape == reference[k].shape for k in state), name
    swish = nets["swish"]
    swish.load_state_dict(reference, strict=True)
    assert count(swish, nn.SiLU) > 0 and count(swish, nn.ReLU) == 0
    torch.testing.assert_close(swish.state_dict(), reference)


@pytest.mark.parametrize("variant", ABLATION_VARIANTS, ids=lambda v: v.key)
def test_each_switch_adds_or_removes_its_modules(variant):
    net = tiny_net(variant.network_kwargs)
    n = len(FEATURES)
    n_blocks = 2 * n + 2 * (n - 1)  # two per encoder stage (bottleneck included) and per decoder stage
    assert count(net, AttentionGate) == (n - 1 if variant.attention_gate else 0)
    assert count(net, SpatialAttention) == (n - 1 if variant.spatial_attention else 0)
    assert count(net, ResidualBlock) == (n_blocks if variant.residual else 0)
    assert count(net, DoubleConvBlock) == (0 if variant.residual else n_blocks)
    projections = [b for b in net.modules() if isinstance(b, ResidualBlock) and not isinstance(b.shortcut, nn.Identity)]
    # the first block of every stage changes the width: input -> 8, and concat (2 x skip) -> skip in the decoder
    assert len(projections) == (2 * n - 1 if variant.residual else 0)
    assert count(net, NONLINEARITIES[variant.nonlin]) > 0


@pytest.mark.parametrize("variant", ABLATION_VARIANTS, ids=lambda v: v.key)
def test_gradients_reach_every_parameter(variant):
    net = tiny_net(variant.network_kwargs, "3d_aniso")
    outputs = net(tiny_input("3d_aniso"))
    torch.manual_seed(2)
    loss = sum((out * torch.randn_like(out)).sum() for out in outputs)
    loss.backward()
    for name, p in net.named_parameters():
        assert p.grad is not None, f"{name} gets no gradient"
        assert torch.isfinite(p.grad).all() and p.grad.abs().sum() > 0, f"{name} has a zero or non-finite gradient"


@pytest.mark.parametrize("variant", ABLATION_VARIANTS, ids=lambda v: v.key)
@pytest.mark.parametrize("deep_supervision", [True, False])
def test_feature_map_size_counts_every_convolution_output(variant, deep_supervision):
    """compute_conv_feature_map_size equals the measured output voxels of every conv in a forward pass."""
    net = tiny_net(variant.network_kwargs, "3d_aniso", deep_supervision=deep_supervision)
    measured = []
    hooks = [m.register_forward_hook(lambda m, i, o: measured.append(o[0].numel()))
             for m in net.modules() if isinstance(m, (nn.Conv3d, nn.ConvTranspose3d))]
    with torch.no_grad():
        net(tiny_input("3d_aniso", batch=1))
    for h in hooks:
        h.remove()
    assert net.compute_conv_feature_map_size(GEOMETRIES["3d_aniso"][2]) == sum(measured)


def test_feature_map_size_by_hand():
    net = DRUwASUNet(1, 2, 2, [4, 8], nn.Conv2d, 3, [1, 2], residual=False, attention_gate=False,
                     spatial_attention=False)
    # encoder 2 blocks x 2 convs x 4 ch x 64 + 2 x 2 x 8 x 16; decoder: transposed conv 4 x 64,
    # 2 blocks x 2 convs x 4 x 64, head 2 x 64
    assert net.compute_conv_feature_map_size((8, 8)) == 1024 + 512 + 256 + 1024 + 128


BAD_ARGUMENTS = [
    (dict(nonlin="tanhh"), "unknown nonlin 'tanhh'"),
    (dict(nonlin=42), "nonlin must be"),
    (dict(nonlin=nn.PReLU), "has parameters"),
    (dict(nonlin="leakyrelu", nonlin_kwargs={"slope": 0.1}), "cannot build activation"),
    (dict(features_per_stage=[8, 16]), "features_per_stage must have 3"),
    (dict(features_per_stage=[8, 12, 32]), "divisible"),
    (dict(strides=[[1, 1, 1], [2, 2, 2]]), "strides must have one entry per stage"),
    (dict(kernel_sizes=[[3, 3]] * 3), "each entry of kernel_sizes"),
    (dict(strides=[1, 0, 2]), "each entry of strides"),
    (dict(conv_op=nn.Conv1d), "conv_op must be"),
    (dict(n_stages=1, features_per_stage=8, strides=1), "n_stages must be"),
    (dict(num_classes=0), "num_classes must be"),
]


@pytest.mark.parametrize("bad,message", BAD_ARGUMENTS, ids=[m for _, m in BAD_ARGUMENTS])
def test_bad_constructor_arguments_raise_clear_errors(bad, message):
    kwargs = dict(input_channels=IN_CHANNELS, num_classes=NUM_CLASSES, n_stages=3, features_per_stage=FEATURES,
                  conv_op=nn.Conv3d, kernel_sizes=3, strides=[1, 2, 2])
    kwargs.update(bad)
    with pytest.raises(ValueError, match=message):
        DRUwASUNet(**kwargs)


def test_builder_rejects_bad_plans():
    cm = PlansManager(brats_like_plans()).get_configuration("3d_fullres")
    switches = variant_by_key("full").network_kwargs
    with pytest.raises(ValueError, match="widths must be"):
        druwas_from_plans(cm.network_arch_init_kwargs, cm.network_arch_init_kwargs_req_import, 4, 3, True,
                          widths="huge", **switches)
    broken = {k: v for k, v in cm.network_arch_init_kwargs.items() if k != "strides"}
    with pytest.raises(ValueError, match=r"lack \['strides'\]"):
        druwas_from_plans(broken, cm.network_arch_init_kwargs_req_import, 4, 3, True, **switches)


def test_autocast_bf16_forward_and_backward_on_cpu():
    net = tiny_net(variant_by_key("swish").network_kwargs, "3d_aniso")
    with torch.autocast("cpu", dtype=torch.bfloat16):
        outputs = net(tiny_input("3d_aniso", batch=1))
        loss = sum(out.float().square().mean() for out in outputs)
    loss.backward()
    assert outputs[0].dtype == torch.bfloat16 and outputs[0].shape == (1, NUM_CLASSES, 4, 8, 8)
    assert all(torch.isfinite(out.float()).all() for out in outputs)
    assert all(p.grad is not None for p in net.parameters())


def test_torch_compile_traces_without_graph_breaks():
    # fullgraph=True fails on any graph break. The "eager" backend checks Dynamo's tracing only: the default
    # inductor backend also works but needs ~40 s of C++ compilation on 2 CPU cores (see the README).
    net = DRUwASUNet(IN_CHANNELS, NUM_CLASSES, 2, [8, 16], nn.Conv2d, 3, [1, 2], deep_supervision=True)
    x = torch.randn(1, IN_CHANNELS, 8, 8)
    compiled = torch.compile(net, backend="eager", fullgraph=True)
    with torch.no_grad():
        out = compiled(x)
        torch.testing.assert_close(out, net(x))
        net.decoder.deep_supervision = False  # nnU-Net flips it on the original module: Dynamo re-traces
        torch.testing.assert_close(compiled(x), out[0])


def test_builder_paper_widths_from_an_nnunet_plan():
    net, cm = from_configuration("3d_fullres", **variant_by_key("full").network_kwargs)
    assert net.encoder.output_channels == [8, 16, 32, 64, 128]
    assert net.strides == [list(s) for s in cm.pool_op_kernel_sizes[:5]]
    assert net.encoder.kernel_sizes[0] == [1, 3, 3]
    assert net.decoder.deep_supervision is True
    # what a trainer passes to nnU-Net's deep-supervision loss: the trainer's formula on the strides used
    expected = list(list(i) for i in 1 / np.cumprod(np.vstack(net.strides), axis=0))[:-1]
    assert net.deep_supervision_scales() == expected
    assert len(net.deep_supervision_scales()) == len(net(torch.zeros(1, IN_CHANNELS, 8, 16, 16)))
    # He initialisation was applied: conv weights are not PyTorch's default uniform init
    w = net.encoder.stages[0][0].conv1.weight
    assert w.std().item() == pytest.approx(np.sqrt(2 / (1 + 1e-4) / (IN_CHANNELS * 9)), rel=0.2)


def test_builder_plan_widths_and_2d_configuration():
    net, cm = from_configuration("3d_fullres", widths="plan", **variant_by_key("baseline").network_kwargs)
    assert net.encoder.output_channels == cm.network_arch_init_kwargs["features_per_stage"]
    assert net.deep_supervision_scales() == list(
        list(i) for i in 1 / np.cumprod(np.vstack(cm.pool_op_kernel_sizes), axis=0))[:-1]
    # the plan has fewer stages than the paper: the paper widths follow the plan's stage count
    net2d, cm2d = from_configuration("2d", **variant_by_key("swish").network_kwargs)
    assert net2d.encoder.output_channels == [8, 16, 32] and net2d.strides == cm2d.pool_op_kernel_sizes
    with torch.no_grad():
        net2d.decoder.deep_supervision = False
        assert net2d(torch.zeros(1, IN_CHANNELS, 16, 16)).shape == (1, NUM_CLASSES, 16, 16)


def test_builder_accepts_variant_kwargs_and_does_not_modify_the_plan():
    plans = brats_like_plans()
    arch = plans["configurations"]["3d_fullres"]["architecture"]
    before = copy.deepcopy(arch)
    for variant in ABLATION_VARIANTS:
        net = druwas_from_plans(arch["arch_kwargs"], arch["_kw_requires_import"], 4, 3, False,
                                **variant.network_kwargs)
        assert (net.residual, net.attention_gate, net.spatial_attention) == \
            (variant.residual, variant.attention_gate, variant.spatial_attention)
        assert net.nonlin is NONLINEARITIES[variant.nonlin]
    assert arch == before


def test_residual_block_runs_the_paper_order():
    """Conv(k) -> GN -> act -> GN -> Conv1x1 -> GN, plus the projected shortcut, then act (called in this order)."""
    block = ResidualBlock(nn.Conv3d, 4, 8, [3, 3, 3], nn.ReLU, {}, 8)
    called = []
    for name, module in block.named_modules():
        if name and "." not in name.replace("shortcut.", ""):
            module.register_forward_hook(lambda m, i, o, name=name: called.append(name))
    x = torch.randn(1, 4, 4, 4, 4)
    out = block(x)
    main = ["conv1", "norm1", "act1", "norm2", "conv2", "norm3"]
    assert called[:6] == main and called[-1] == "act2"
    assert called[6:-1] == ["shortcut.0", "shortcut.1", "shortcut"]   # Conv1x1 + GN projection (4 -> 8 channels)
    assert isinstance(block.conv2, nn.Conv3d) and block.conv2.kernel_size == (1, 1, 1)
    torch.testing.assert_close(out, torch.relu(block.norm3(block.conv2(block.norm2(torch.relu(block.norm1(
        block.conv1(x)))))) + block.shortcut(x)))
    assert isinstance(ResidualBlock(nn.Conv3d, 8, 8, [3, 3, 3], nn.ReLU, {}, 8).shortcut, nn.Identity)


def test_decoder_wiring_gate_concatenation_and_spatial_attention():
    """The gate multiplies the encoder skip by a one-channel map computed from (skip, upsampled);
    the concatenation is (upsampled, gated skip); spatial attention acts on it before the blocks."""
    net = tiny_net(variant_by_key("full").network_kwargs, "3d_aniso")
    seen = {}

    def keep(name):
        def hook(module, inputs, output):
            seen[name] = (inputs, output)
        return hook

    net.encoder.stages[-2].register_forward_hook(keep("skip"))         # the skip of the first decoder stage
    net.decoder.transpconvs[0].register_forward_hook(keep("up"))
    net.decoder.attention_gates[0].register_forward_hook(keep("gate"))
    net.decoder.spatial_attentions[0].register_forward_hook(keep("sa"))
    net.decoder.stages[0].register_forward_hook(keep("blocks"))
    with torch.no_grad():
        net(tiny_input("3d_aniso", batch=1))
    skip, up = seen["skip"][1], seen["up"][1]
    (gate_x, gate_g), gated = seen["gate"]
    assert gate_x is skip and gate_g is up and up.shape == skip.shape
    gate = net.decoder.attention_gates[0]
    alpha = gate.psi(gate.act(gate.W_x(skip) + gate.W_g(up)))   # one map in (0, 1) for all channels of the skip
    assert alpha.shape[1] == 1 and torch.all((alpha > 0) & (alpha < 1))
    torch.testing.assert_close(gated, skip * alpha)
    (sa_in,), sa_out = seen["sa"]
    torch.testing.assert_close(sa_in, torch.cat((up, gated), 1))
    sa = net.decoder.spatial_attentions[0]
    assert sa.conv.out_channels == 1 and sa.conv.kernel_size == (1, 1, 1)
    torch.testing.assert_close(sa_out, sa_in * torch.sigmoid(sa.conv(sa_in)))
    assert seen["blocks"][0][0] is sa_out
