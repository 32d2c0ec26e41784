"""The 3D-DRUwAS network family: one U-Net class with three ablation switches.

:class:`DRUwASUNet` is written in the style of ``dynamic_network_architectures`` (the
library behind nnU-Net's own ``PlainConvUNet``): operation types instead of hard-coded
layers, so one code path serves ``Conv2d`` and ``Conv3d``; an ``encoder`` and a
``decoder``; the decoder owns ``deep_supervision``, which nnU-Net flips at run time;
``compute_conv_feature_map_size`` for nnU-Net's memory estimates; a static
``initialize``.

The switches ``residual``, ``attention_gate`` and ``spatial_attention`` give every row
of the paper's Table 4 (the table of variants is :data:`nnunetv2_druwas.variants.VARIANTS`;
``Variant.network_kwargs`` are keyword arguments of this class and of
:func:`druwas_from_plans`).

Decisions where the paper is silent (SPEC.md "open decisions"):

* Stages (open point 1): ``widths="paper"`` in :func:`druwas_from_plans` builds 5
  resolution stages (8-16-32-64 and a 128-feature bottleneck, 4 downsamplings) using the
  first 5 pooling strides and kernel sizes of the nnU-Net plan, fewer when the plan has
  fewer stages; ``widths="plan"`` follows the plan's stage count and widths.
* Decoder blocks and skip fusion (open point 2): the decoder uses the same block type as
  the encoder (residual blocks when ``residual``, double convolutions otherwise); the
  upsampled feature and the (gated) skip are concatenated, spatial attention acts on the
  concatenation.
* Residual block (open point 3): main path Conv(k) -> GN -> act -> GN -> Conv1x1 -> GN as
  the paper's figure text reads; the shortcut is the identity when the channel count is
  unchanged and a Conv1x1 + GN projection otherwise (blocks never stride: pooling is
  separate); the activation is applied after the addition, as in ResNet and in the
  authors' later public model.
* GroupNorm everywhere: ``min(norm_groups, channels)`` groups (``norm_groups=8`` as in
  the authors' code); the channel count must be divisible by that number, otherwise the
  constructor raises ``ValueError``. The attention gate's psi uses GroupNorm(1, 1).
* The attention gate's intermediate width is half the skip's width (Oktay et al.); its
  activation is the network's activation (so the Swish network is Swish throughout).
* Deep supervision (open point 6): one 1x1 head per decoder stage, all always built so
  that the state_dict is the same with deep supervision on or off.

Activation checkpointing (``checkpointing``, off by default; the trainers switch it on with
``DRUWAS_CHECKPOINTING=1``) is a memory switch, not part of the architecture: with it, each
encoder stage (pooling and its two blocks) and each decoder stage (transposed convolution,
attention gate, concatenation, spatial attention and its two blocks) keeps only its inputs
for the backward pass and is run again there (``torch.utils.checkpoint``, non-reentrant). It
changes no parameter and no output, only memory and time, and acts only while gradients are
recorded, so inference never pays for it.
"""
from __future__ import annotations

import pydoc
from typing import Callable, Sequence, Type, Union

import numpy as np
import torch
from dynamic_network_architectures.building_blocks.helper import (
    convert_conv_op_to_dim,
    get_matching_convtransp,
    get_matching_pool_op,
)
from dynamic_network_architectures.initialization.weight_init import InitWeights_He
from torch import nn
from torch.nn.modules.conv import _ConvNd
from torch.utils.checkpoint import checkpoint

NONLINEARITIES: dict[str, Type[nn.Module]] = {
    "relu": nn.ReLU,
    "swish": nn.SiLU,
    "leakyrelu": nn.LeakyReLU,
    "gelu": nn.GELU,
}

PAPER_N_STAGES = 5        # 4 downsamplings: 8-16-32-64 + 128 bottleneck
PAPER_BASE_FEATURES = 8   # doubling per stage

IntOrSeq = Union[int, Sequence[int]]


# --------------------------------------------------------------------------- helpers

def _resolve_nonlin(nonlin: Union[str, Type[nn.Module]]) -> Type[nn.Module]:
    if isinstance(nonlin, str):
        try:
            return NONLINEARITIES[nonlin.lower()]
        except KeyError:
            raise ValueError(f"unknown nonlin {nonlin!r}; choose one of {sorted(NONLINEARITIES)} "
                             f"or pass a torch.nn.Module type") from None
    if isinstance(nonlin, type) and issubclass(nonlin, nn.Module):
        return nonlin
    raise ValueError(f"nonlin must be one of {sorted(NONLINEARITIES)} or a torch.nn.Module type, got {nonlin!r}")


def _groups(channels: int, norm_groups: int) -> int:
    groups = min(norm_groups, channels)
    if channels % groups:
        raise ValueError(f"GroupNorm needs the channel count to be divisible by min(norm_groups, channels) = "
                         f"{groups}, got {channels} channels; choose widths divisible by {norm_groups} "
                         f"or another norm_groups")
    return groups


def group_norm(channels: int, norm_groups: int) -> nn.GroupNorm:
    """GroupNorm with ``min(norm_groups, channels)`` groups (must divide ``channels``)."""
    return nn.GroupNorm(_groups(channels, norm_groups), channels)


def _per_stage(value: Union[IntOrSeq, Sequence[IntOrSeq]], n_stages: int, dim: int, name: str) -> list[list[int]]:
    """Normalise kernel sizes or strides to ``n_stages`` lists of ``dim`` ints."""
    if isinstance(value, int):
        value = [value] * n_stages
    value = list(value)
    if len(value) != n_stages:
        raise ValueError(f"{name} must have one entry per stage (n_stages={n_stages}), got {len(value)}: {value}")
    out = []
    for entry in value:
        entry = [int(entry)] * dim if isinstance(entry, (int, np.integer)) else [int(e) for e in entry]
        if len(entry) != dim or any(e < 1 for e in entry):
            raise ValueError(f"each entry of {name} must be a positive int or {dim} positive ints "
                             f"(the conv_op is {dim}D), got {value}")
        out.append(entry)
    return out


def _voxels(channels: int, size: Sequence[int]) -> np.int64:
    return np.prod([channels, *size], dtype=np.int64)


def _maybe_checkpointed(enabled: bool, function: Callable[..., torch.Tensor], *args) -> torch.Tensor:
    """``function(*args)``, through non-reentrant activation checkpointing when ``enabled`` and
    gradients are being recorded (it would only cost time under ``torch.no_grad``)."""
    if enabled and torch.is_grad_enabled():
        return checkpoint(function, *args, use_reentrant=False)
    return function(*args)


def deep_supervision_scales(strides: Sequence[Sequence[int]]) -> list[list[float]]:
    """nnU-Net's deep-supervision scales for a network with these per-stage strides.

    One entry per output of the decoder, highest resolution first: the inverse of the
    cumulative pooling factor at that output (as ``nnUNetTrainer._get_deep_supervision_scales``
    computes from the plan's ``pool_op_kernel_sizes``).
    """
    return [[float(f) for f in row] for row in 1 / np.cumprod(np.vstack(strides), axis=0)][:-1]


# --------------------------------------------------------------------------- blocks

class DoubleConvBlock(nn.Module):
    """The plain U-Net block: (Conv(k) -> GroupNorm -> activation) x 2."""

    def __init__(self, conv_op: Type[_ConvNd], input_channels: int, output_channels: int, kernel_size: list[int],
                 nonlin: Type[nn.Module], nonlin_kwargs: dict, norm_groups: int):
        super().__init__()
        padding = [k // 2 for k in kernel_size]
        self.output_channels = output_channels
        self.conv1 = conv_op(input_channels, output_channels, kernel_size, padding=padding, bias=False)
        self.norm1 = group_norm(output_channels, norm_groups)
        self.act1 = nonlin(**nonlin_kwargs)
        self.conv2 = conv_op(output_channels, output_channels, kernel_size, padding=padding, bias=False)
        self.norm2 = group_norm(output_channels, norm_groups)
        self.act2 = nonlin(**nonlin_kwargs)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.act1(self.norm1(self.conv1(x)))
        return self.act2(self.norm2(self.conv2(x)))

    def compute_conv_feature_map_size(self, size: Sequence[int]) -> np.int64:
        return 2 * _voxels(self.output_channels, size)


class ResidualBlock(nn.Module):
    """The paper's ResBlock: Conv(k) -> GN -> act -> GN -> Conv1x1 -> GN, plus shortcut, then act.

    The shortcut is the identity when ``input_channels == output_channels`` and a
    Conv1x1 + GroupNorm projection otherwise. The block never strides (the encoder pools).
    """

    def __init__(self, conv_op: Type[_ConvNd], input_channels: int, output_channels: int, kernel_size: list[int],
                 nonlin: Type[nn.Module], nonlin_kwargs: dict, norm_groups: int):
        super().__init__()
        self.output_channels = output_channels
        self.conv1 = conv_op(input_channels, output_channels, kernel_size, padding=[k // 2 for k in kernel_size],
                             bias=False)
        self.norm1 = group_norm(output_channels, norm_groups)
        self.act1 = nonlin(**nonlin_kwargs)
        self.norm2 = group_norm(output_channels, norm_groups)
        self.conv2 = conv_op(output_channels, output_channels, 1, bias=False)
        self.norm3 = group_norm(output_channels, norm_groups)
        if input_channels == output_channels:
            self.shortcut = nn.Identity()
        else:
            self.shortcut = nn.Sequential(conv_op(input_channels, output_channels, 1, bias=False),
                                          group_norm(output_channels, norm_groups))
        self.act2 = nonlin(**nonlin_kwargs)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.norm2(self.act1(self.norm1(self.conv1(x))))
        out = self.norm3(self.conv2(out))
        return self.act2(out + self.shortcut(x))

    def compute_conv_feature_map_size(self, size: Sequence[int]) -> np.int64:
        n_convs = 2 if isinstance(self.shortcut, nn.Identity) else 3
        return n_convs * _voxels(self.output_channels, size)


class AttentionGate(nn.Module):
    """Additive attention gate (Oktay et al. 2018) with GroupNorm instead of BatchNorm.

    ``alpha = sigmoid(GN(psi(act(GN(W_x x) + GN(W_g g)))))``; returns ``x * alpha``. ``x`` is
    the encoder skip, ``g`` the upsampled decoder feature at the same resolution.
    """

    def __init__(self, conv_op: Type[_ConvNd], skip_channels: int, gating_channels: int, inter_channels: int,
                 nonlin: Type[nn.Module], nonlin_kwargs: dict, norm_groups: int):
        super().__init__()
        self.inter_channels = inter_channels
        self.W_x = nn.Sequential(conv_op(skip_channels, inter_channels, 1, bias=False),
                                 group_norm(inter_channels, norm_groups))
        self.W_g = nn.Sequential(conv_op(gating_channels, inter_channels, 1, bias=False),
                                 group_norm(inter_channels, norm_groups))
        self.act = nonlin(**nonlin_kwargs)
        self.psi = nn.Sequential(conv_op(inter_channels, 1, 1, bias=False), nn.GroupNorm(1, 1), nn.Sigmoid())

    def forward(self, x: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
        return x * self.psi(self.act(self.W_x(x) + self.W_g(g)))

    def compute_conv_feature_map_size(self, size: Sequence[int]) -> np.int64:
        return 2 * _voxels(self.inter_channels, size) + _voxels(1, size)


class SpatialAttention(nn.Module):
    """The paper's spatial attention: ``x * sigmoid(Conv1x1(x))`` with a one-channel map."""

    def __init__(self, conv_op: Type[_ConvNd], channels: int):
        super().__init__()
        self.conv = conv_op(channels, 1, 1, bias=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.sigmoid(self.conv(x))

    def compute_conv_feature_map_size(self, size: Sequence[int]) -> np.int64:
        return _voxels(1, size)


# --------------------------------------------------------------------------- encoder / decoder

class DRUwASEncoder(nn.Module):
    """Stages of two blocks; max pooling (kernel = stride = the stage's stride) before a stage
    whose stride is not 1. The last stage is the bottleneck. Returns every stage's output.

    ``checkpointing`` (read at forward time): each stage is one activation checkpoint."""

    def __init__(self, input_channels: int, features_per_stage: list[int], conv_op: Type[_ConvNd],
                 kernel_sizes: list[list[int]], strides: list[list[int]], block: type,
                 nonlin: Type[nn.Module], nonlin_kwargs: dict, norm_groups: int):
        super().__init__()
        pool_op = get_matching_pool_op(conv_op, pool_type="max")
        pools, stages = [], []
        for features, kernel, stride in zip(features_per_stage, kernel_sizes, strides):
            pools.append(pool_op(stride, stride) if any(s != 1 for s in stride) else nn.Identity())
            stages.append(nn.Sequential(
                block(conv_op, input_channels, features, kernel, nonlin, nonlin_kwargs, norm_groups),
                block(conv_op, features, features, kernel, nonlin, nonlin_kwargs, norm_groups)))
            input_channels = features
        self.pools = nn.ModuleList(pools)
        self.stages = nn.ModuleList(stages)
        self.output_channels = list(features_per_stage)
        self.strides = strides
        self.kernel_sizes = kernel_sizes
        self.conv_op = conv_op
        self.checkpointing = False

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        skips = []
        for s in range(len(self.stages)):
            x = _maybe_checkpointed(self.checkpointing, self._stage, s, x)
            skips.append(x)
        return skips

    def _stage(self, s: int, x: torch.Tensor) -> torch.Tensor:
        return self.stages[s](self.pools[s](x))

    def compute_conv_feature_map_size(self, input_size: Sequence[int]) -> np.int64:
        total = np.int64(0)
        size = list(input_size)
        for stage, stride in zip(self.stages, self.strides):
            size = [i // s for i, s in zip(size, stride)]
            total += sum(block.compute_conv_feature_map_size(size) for block in stage)
        return total


class DRUwASDecoder(nn.Module):
    """Per stage: transposed conv to the skip's resolution and width; attention gate on the
    skip (optional); concatenation; spatial attention (optional); two blocks; a 1x1 head.

    ``deep_supervision`` (read at forward time): a list of outputs, highest resolution
    first, one per decoder stage; otherwise the highest-resolution output only.
    ``checkpointing`` (read at forward time): each stage up to its head is one activation
    checkpoint.
    """

    def __init__(self, encoder: DRUwASEncoder, num_classes: int, block: type, attention_gate: bool,
                 spatial_attention: bool, nonlin: Type[nn.Module], nonlin_kwargs: dict, norm_groups: int,
                 deep_supervision: bool):
        super().__init__()
        self.deep_supervision = deep_supervision
        self.checkpointing = False
        self.num_classes = num_classes
        self.encoder_channels = encoder.output_channels
        self.encoder_strides = encoder.strides
        conv_op = encoder.conv_op
        transpconv_op = get_matching_convtransp(conv_op)
        transpconvs, gates, attentions, stages, seg_layers = [], [], [], [], []
        for s in range(1, len(encoder.output_channels)):
            below = encoder.output_channels[-s]
            skip = encoder.output_channels[-(s + 1)]
            stride = encoder.strides[-s]
            transpconvs.append(transpconv_op(below, skip, stride, stride, bias=False))
            if attention_gate:
                gates.append(AttentionGate(conv_op, skip, skip, max(1, skip // 2), nonlin, nonlin_kwargs,
                                           norm_groups))
            if spatial_attention:
                attentions.append(SpatialAttention(conv_op, 2 * skip))
            kernel = encoder.kernel_sizes[-(s + 1)]
            stages.append(nn.Sequential(
                block(conv_op, 2 * skip, skip, kernel, nonlin, nonlin_kwargs, norm_groups),
                block(conv_op, skip, skip, kernel, nonlin, nonlin_kwargs, norm_groups)))
            seg_layers.append(conv_op(skip, num_classes, 1, bias=True))
        self.transpconvs = nn.ModuleList(transpconvs)
        self.attention_gates = nn.ModuleList(gates) if attention_gate else None
        self.spatial_attentions = nn.ModuleList(attentions) if spatial_attention else None
        self.stages = nn.ModuleList(stages)
        self.seg_layers = nn.ModuleList(seg_layers)

    def forward(self, skips: list[torch.Tensor]) -> Union[torch.Tensor, list[torch.Tensor]]:
        x = skips[-1]
        outputs = []
        last = len(self.stages) - 1
        for s in range(len(self.stages)):
            x = _maybe_checkpointed(self.checkpointing, self._stage, s, x, skips[-(s + 2)])
            if self.deep_supervision or s == last:
                outputs.append(self.seg_layers[s](x))
        outputs = outputs[::-1]
        return outputs if self.deep_supervision else outputs[0]

    def _stage(self, s: int, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        up = self.transpconvs[s](x)
        if self.attention_gates is not None:
            skip = self.attention_gates[s](skip, up)
        x = torch.cat((up, skip), 1)
        if self.spatial_attentions is not None:
            x = self.spatial_attentions[s](x)
        return self.stages[s](x)

    def compute_conv_feature_map_size(self, input_size: Sequence[int]) -> np.int64:
        sizes = []  # resolution of every encoder stage
        size = list(input_size)
        for stride in self.encoder_strides:
            size = [i // s for i, s in zip(size, stride)]
            sizes.append(size)
        total = np.int64(0)
        for s in range(len(self.stages)):
            size = sizes[-(s + 2)]
            skip = self.encoder_channels[-(s + 2)]
            total += _voxels(skip, size)  # transposed conv
            if self.attention_gates is not None:
                total += self.attention_gates[s].compute_conv_feature_map_size(size)
            if self.spatial_attentions is not None:
                total += self.spatial_attentions[s].compute_conv_feature_map_size(size)
            total += sum(block.compute_conv_feature_map_size(size) for block in self.stages[s])
            if self.deep_supervision or s == len(self.stages) - 1:
                total += _voxels(self.num_classes, size)
        return total


# --------------------------------------------------------------------------- network

class DRUwASUNet(nn.Module):
    """3D-DRUwAS: a U-Net with residual blocks, attention gates and spatial attention.

    All three switches off is the plain U-Net baseline (double conv blocks, same widths).
    The activation never changes parameter names or shapes, so a Swish network loads the
    weights of a ReLU network with ``strict=True``.

    Args:
        input_channels: channels of the input image (4 for BraTS: T1, T1ce, T2, FLAIR).
        num_classes: channels of every output (3 BraTS regions); no sigmoid/softmax is applied.
        n_stages: resolution stages including the bottleneck (at least 2).
        features_per_stage: width of each stage (an int for all stages).
        conv_op: ``nn.Conv2d`` or ``nn.Conv3d``; selects 2D or 3D pooling, transposed
            convolutions and all convolutions.
        kernel_sizes: kernel of the blocks' main convolution per stage (an int, or one
            int or list of ints per stage, as in nnU-Net plans).
        strides: pooling factor in front of each stage (nnU-Net plan ``strides``; the first
            is usually 1). Max pooling uses it as kernel and stride, the decoder's transposed
            convolution uses it as kernel and stride, so anisotropic strides like
            ``[1, 2, 2]`` work.
        residual: residual blocks (see :class:`ResidualBlock`) instead of double convolutions,
            in encoder, bottleneck and decoder.
        attention_gate: gate each skip with :class:`AttentionGate` before concatenation.
        spatial_attention: apply :class:`SpatialAttention` to each concatenation.
        nonlin: activation: a key of :data:`NONLINEARITIES` or an ``nn.Module`` type
            without parameters.
        nonlin_kwargs: keyword arguments for the activation (e.g. ``negative_slope``).
        norm_groups: GroupNorm uses ``min(norm_groups, channels)`` groups; it must divide
            the channel count of every normalised feature map.
        deep_supervision: initial value of ``decoder.deep_supervision``.
        checkpointing: initial value of :attr:`checkpointing` (activation checkpointing of
            every stage while training: less memory for the backward pass, one more forward
            pass of compute; same parameters and outputs).

    Example:
        >>> net = DRUwASUNet(4, 3, 5, [8, 16, 32, 64, 128], nn.Conv3d, 3, [1, 2, 2, 2, 2])
        >>> net(torch.zeros(1, 4, 32, 32, 32)).shape
        torch.Size([1, 3, 32, 32, 32])
    """

    def __init__(self, input_channels: int, num_classes: int, n_stages: int,
                 features_per_stage: IntOrSeq, conv_op: Type[_ConvNd],
                 kernel_sizes: Union[IntOrSeq, Sequence[IntOrSeq]], strides: Union[IntOrSeq, Sequence[IntOrSeq]],
                 *, residual: bool = True, attention_gate: bool = True, spatial_attention: bool = True,
                 nonlin: Union[str, Type[nn.Module]] = "relu", nonlin_kwargs: dict | None = None,
                 norm_groups: int = 8, deep_supervision: bool = False, checkpointing: bool = False):
        super().__init__()
        if not (isinstance(conv_op, type) and issubclass(conv_op, (nn.Conv2d, nn.Conv3d))):
            raise ValueError(f"conv_op must be torch.nn.Conv2d or torch.nn.Conv3d, got {conv_op!r}")
        for name, value in (("input_channels", input_channels), ("num_classes", num_classes),
                            ("norm_groups", norm_groups)):
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive int, got {value!r}")
        if not isinstance(n_stages, int) or n_stages < 2:
            raise ValueError(f"n_stages must be an int >= 2 (at least one downsampling), got {n_stages!r}")
        if isinstance(features_per_stage, int):
            features_per_stage = [features_per_stage] * n_stages
        features_per_stage = [int(f) for f in features_per_stage]
        if len(features_per_stage) != n_stages or any(f < 1 for f in features_per_stage):
            raise ValueError(f"features_per_stage must have {n_stages} positive entries (one per stage), "
                             f"got {features_per_stage}")
        dim = convert_conv_op_to_dim(conv_op)
        kernel_sizes = _per_stage(kernel_sizes, n_stages, dim, "kernel_sizes")
        strides = _per_stage(strides, n_stages, dim, "strides")
        nonlin_type = _resolve_nonlin(nonlin)
        nonlin_kwargs = dict(nonlin_kwargs or {})
        try:
            params = list(nonlin_type(**nonlin_kwargs).parameters())
        except TypeError as e:
            raise ValueError(f"cannot build activation {nonlin_type.__name__} with {nonlin_kwargs}: {e}") from None
        if params:
            raise ValueError(f"activation {nonlin_type.__name__} has parameters; DRUwASUNet needs a parameter-free "
                             f"activation so that networks with different activations share their state_dict")
        for f in features_per_stage:
            _groups(f, norm_groups)
            if attention_gate:
                _groups(max(1, f // 2), norm_groups)  # the gate's intermediate width

        self.residual = residual
        self.attention_gate = attention_gate
        self.spatial_attention = spatial_attention
        self.nonlin = nonlin_type
        self.strides = strides
        block = ResidualBlock if residual else DoubleConvBlock
        self.encoder = DRUwASEncoder(input_channels, features_per_stage, conv_op, kernel_sizes, strides, block,
                                     nonlin_type, nonlin_kwargs, norm_groups)
        self.decoder = DRUwASDecoder(self.encoder, num_classes, block, attention_gate, spatial_attention,
                                     nonlin_type, nonlin_kwargs, norm_groups, deep_supervision)
        self.checkpointing = checkpointing

    @property
    def checkpointing(self) -> bool:
        """Activation checkpointing of every encoder and decoder stage (read at forward time, like
        ``decoder.deep_supervision``; set it before ``torch.compile`` traces, or Dynamo re-traces)."""
        return self.encoder.checkpointing

    @checkpointing.setter
    def checkpointing(self, enabled: bool) -> None:
        self.encoder.checkpointing = self.decoder.checkpointing = bool(enabled)

    def forward(self, x: torch.Tensor) -> Union[torch.Tensor, list[torch.Tensor]]:
        return self.decoder(self.encoder(x))

    def deep_supervision_scales(self) -> list[list[float]]:
        """The scales of the deep-supervision outputs, highest resolution first (nnU-Net's format)."""
        return deep_supervision_scales(self.strides)

    def compute_conv_feature_map_size(self, input_size: Sequence[int]) -> np.int64:
        """Sum of the voxel counts (channels x spatial) of every convolution's output for one
        sample of spatial size ``input_size``, as ``PlainConvUNet`` reports it to nnU-Net's planner."""
        if len(input_size) != len(self.strides[0]):
            raise ValueError(f"give the spatial size only ({len(self.strides[0])} numbers), got {input_size}")
        return self.encoder.compute_conv_feature_map_size(input_size) + \
            self.decoder.compute_conv_feature_map_size(input_size)

    @staticmethod
    def initialize(module: nn.Module) -> None:
        """He (Kaiming normal) initialisation of convolutions, as nnU-Net's networks (use with ``net.apply``)."""
        InitWeights_He(1e-2)(module)


# --------------------------------------------------------------------------- builder

def druwas_from_plans(arch_init_kwargs: dict, arch_init_kwargs_req_import: Sequence[str], num_input_channels: int,
                      num_output_channels: int, enable_deep_supervision: bool, *, residual: bool,
                      attention_gate: bool, spatial_attention: bool, nonlin: str = "relu",
                      widths: str = "paper") -> DRUwASUNet:
    """Build and He-initialise a :class:`DRUwASUNet` from an nnU-Net plan's architecture.

    Args:
        arch_init_kwargs: the configuration's ``architecture.arch_kwargs`` from the plans
            (``n_stages``, ``features_per_stage``, ``conv_op``, ``kernel_sizes``, ``strides``;
            other keys such as ``norm_op`` are ignored: DRUwAS uses GroupNorm).
        arch_init_kwargs_req_import: the plan's ``_kw_requires_import``; names whose values are
            import strings (only ``conv_op`` is used).
        num_input_channels: input modalities.
        num_output_channels: output channels (regions or labels).
        enable_deep_supervision: initial ``decoder.deep_supervision``.
        residual, attention_gate, spatial_attention, nonlin: see :class:`DRUwASUNet`
            (``Variant.network_kwargs`` gives them).
        widths: ``"paper"``: 8 features doubling per stage over at most 5 stages (8-16-32-64
            + 128 bottleneck) with the plan's first strides and kernel sizes; ``"plan"``: the
            plan's stage count and ``features_per_stage``.

    The strides actually used are ``network.strides``; ``network.deep_supervision_scales()``
    gives the matching deep-supervision scales.
    """
    if widths not in ("paper", "plan"):
        raise ValueError(f"widths must be 'paper' or 'plan', got {widths!r}")
    missing = [k for k in ("n_stages", "features_per_stage", "conv_op", "kernel_sizes", "strides")
               if k not in arch_init_kwargs]
    if missing:
        raise ValueError(f"the plan's arch_kwargs lack {missing}; is this an nnU-Net v2 plans file?")
    conv_op = arch_init_kwargs["conv_op"]
    if isinstance(conv_op, str) and ("conv_op" in arch_init_kwargs_req_import or "." in conv_op):
        located = pydoc.locate(conv_op)
        if located is None:
            raise ValueError(f"cannot import conv_op {conv_op!r} from the plan")
        conv_op = located
    n_stages = int(arch_init_kwargs["n_stages"])
    kernel_sizes = list(arch_init_kwargs["kernel_sizes"])
    strides = list(arch_init_kwargs["strides"])
    if widths == "paper":
        n_stages = min(PAPER_N_STAGES, n_stages)
        features = [PAPER_BASE_FEATURES * 2 ** i for i in range(n_stages)]
        kernel_sizes, strides = kernel_sizes[:n_stages], strides[:n_stages]  # the plan's lists, one per stage
    else:
        features = arch_init_kwargs["features_per_stage"]
    network = DRUwASUNet(num_input_channels, num_output_channels, n_stages, features, conv_op, kernel_sizes,
                         strides, residual=residual, attention_gate=attention_gate,
                         spatial_attention=spatial_attention, nonlin=nonlin,
                         deep_supervision=enable_deep_supervision)
    network.apply(network.initialize)
    return network
