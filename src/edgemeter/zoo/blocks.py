"""Building blocks shared by the zoo's families (torch).

Each block is written once and parametrised, so that e.g. MobileNetV2, MobileNetV3, MnasNet,
ProxylessNAS and EfficientNet differ only in the numbers they pass to :class:`InvertedResidual`.
Every block exports to plain ONNX with ``torch.onnx.export(dynamo=False, opset_version=17)``.
"""
from __future__ import annotations

import torch
from torch import nn

ACTIVATIONS: dict[str, type[nn.Module]] = {
    "relu": nn.ReLU,
    "relu6": nn.ReLU6,
    "hswish": nn.Hardswish,
    "swish": nn.SiLU,
    "gelu": nn.GELU,
    "sigmoid": nn.Sigmoid,
    "hsigmoid": nn.Hardsigmoid,
}


def activation(name: str | None) -> nn.Module:
    return nn.Identity() if name is None else ACTIVATIONS[name]()


def make_divisible(value: float, divisor: int = 8) -> int:
    """Round a channel count to a multiple of ``divisor``, never below it and never more than
    10% down (the MobileNet rule, which keeps widths SIMD-friendly)."""
    rounded = max(divisor, int(value + divisor / 2) // divisor * divisor)
    return rounded + divisor if rounded < 0.9 * value else rounded


class ConvBNAct(nn.Sequential):
    """Conv2d (no bias) + BatchNorm + activation; exported, BatchNorm folds into the Conv."""

    def __init__(self, cin: int, cout: int, kernel: int = 3, stride: int = 1, groups: int = 1,
                 act: str | None = "relu"):
        super().__init__(
            nn.Conv2d(cin, cout, kernel, stride, kernel // 2, groups=groups, bias=False),
            nn.BatchNorm2d(cout),
            activation(act),
        )


class DepthwiseSeparable(nn.Sequential):
    """MobileNetV1: depthwise kxk + act, then pointwise 1x1 + act."""

    def __init__(self, cin: int, cout: int, kernel: int, stride: int, act: str = "relu"):
        super().__init__(ConvBNAct(cin, cin, kernel, stride, groups=cin, act=act),
                         ConvBNAct(cin, cout, 1, act=act))


class SqueezeExcite(nn.Module):
    """Channel attention: global pool → reduce → act → expand → gate → multiply."""

    def __init__(self, channels: int, reduced: int, gate: str = "sigmoid", act: str = "relu"):
        super().__init__()
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.reduce = nn.Conv2d(channels, reduced, 1)
        self.act = activation(act)
        self.expand = nn.Conv2d(reduced, channels, 1)
        self.gate = activation(gate)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.gate(self.expand(self.act(self.reduce(self.pool(x)))))


class InvertedResidual(nn.Module):
    """MBConv: 1x1 expansion → depthwise kxk → optional SE → 1x1 linear projection, with a
    residual Add when shapes allow. Expansion 1 skips the expansion conv (MobileNetV2's first
    block, MnasNet's separable conv)."""

    def __init__(self, cin: int, cout: int, kernel: int, stride: int, expansion: float,
                 act: str = "relu6", se: float = 0.0, se_gate: str = "sigmoid"):
        super().__init__()
        hidden = make_divisible(cin * expansion) if expansion != 1 else cin
        layers: list[nn.Module] = []
        if hidden != cin:
            layers.append(ConvBNAct(cin, hidden, 1, act=act))
        layers.append(ConvBNAct(hidden, hidden, kernel, stride, groups=hidden, act=act))
        if se:
            # SE width is a share of the block input (EfficientNet) rounded like any channel count
            layers.append(SqueezeExcite(hidden, make_divisible(cin * se), se_gate))
        layers.append(ConvBNAct(hidden, cout, 1, act=None))
        self.body = nn.Sequential(*layers)
        self.residual = stride == 1 and cin == cout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.body(x)
        return x + y if self.residual else y


class GhostModule(nn.Module):
    """GhostNet: half the outputs from a 1x1 conv, the other half from a cheap depthwise conv on
    them, concatenated."""

    def __init__(self, cin: int, cout: int, act: str | None = "relu"):
        super().__init__()
        self.primary = ConvBNAct(cin, cout // 2, 1, act=act)  # zoo widths are multiples of 8
        self.cheap = ConvBNAct(cout // 2, cout // 2, 3, groups=cout // 2, act=act)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.primary(x)
        return torch.cat([y, self.cheap(y)], dim=1)


class GhostBottleneck(nn.Module):
    """Ghost module → (strided depthwise) → optional SE → ghost module, plus a shortcut that is a
    depthwise + pointwise conv when the shape changes."""

    def __init__(self, cin: int, cout: int, kernel: int, stride: int, expansion: float,
                 act: str = "relu", se: float = 0.0, se_gate: str = "hsigmoid"):
        super().__init__()
        hidden = make_divisible(cin * expansion)
        layers: list[nn.Module] = [GhostModule(cin, hidden, act)]
        if stride > 1:
            layers.append(ConvBNAct(hidden, hidden, kernel, stride, groups=hidden, act=None))
        if se:
            layers.append(SqueezeExcite(hidden, make_divisible(hidden * se), se_gate))
        layers.append(GhostModule(hidden, cout, act=None))
        self.body = nn.Sequential(*layers)
        self.shortcut = (nn.Identity() if stride == 1 and cin == cout else nn.Sequential(
            ConvBNAct(cin, cin, kernel, stride, groups=cin, act=None),
            ConvBNAct(cin, cout, 1, act=None)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x) + self.shortcut(x)


class ResidualBlock(nn.Module):
    """ResNet basic block (two kxk convs), or with ``width`` a bottleneck (1x1 → grouped kxk →
    1x1: ResNet-50, ResNeXt, RegNet) with optional SE (RegNetY); a projection shortcut when the
    shape changes; Add then ReLU."""

    def __init__(self, cin: int, cout: int, stride: int, kernel: int = 3,
                 width: int | None = None, groups: int = 1, se: float = 0.0):
        super().__init__()
        if width is None:
            layers = [ConvBNAct(cin, cout, kernel, stride), ConvBNAct(cout, cout, kernel, act=None)]
        else:
            width = max(groups, round(width / groups) * groups)  # grouped conv: multiple of groups
            layers = [ConvBNAct(cin, width, 1), ConvBNAct(width, width, kernel, stride, groups)]
            if se:
                layers.append(SqueezeExcite(width, make_divisible(cin * se)))
            layers.append(ConvBNAct(width, cout, 1, act=None))
        self.body = nn.Sequential(*layers)
        self.shortcut = (nn.Identity() if stride == 1 and cin == cout
                         else ConvBNAct(cin, cout, 1, stride, act=None))
        self.act = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.body(x) + self.shortcut(x))


def channel_shuffle(x: torch.Tensor, groups: int) -> torch.Tensor:
    """ShuffleNet's shuffle as exported models carry it: Reshape → Transpose → Reshape."""
    b, c, h, w = x.shape
    return x.reshape(b, groups, c // groups, h, w).transpose(1, 2).reshape(b, c, h, w)


class ShuffleUnit(nn.Module):
    """ShuffleNetV2 unit: stride 1 splits the channels in half and transforms one half; stride 2
    transforms the whole input in two branches. Concat, then channel shuffle."""

    def __init__(self, cin: int, cout: int, kernel: int, stride: int):
        super().__init__()
        half = cout // 2
        self.halves = [cin // 2, cin - cin // 2]
        branch_in = cin if stride > 1 else cin // 2
        self.main = nn.Sequential(
            ConvBNAct(branch_in, half, 1),
            ConvBNAct(half, half, kernel, stride, groups=half, act=None),
            ConvBNAct(half, half, 1))
        self.side = nn.Sequential(
            ConvBNAct(cin, cin, kernel, stride, groups=cin, act=None),
            ConvBNAct(cin, half, 1)) if stride > 1 else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.side is None:
            keep, transform = x.split(self.halves, dim=1)  # static sizes export as one Split
            y = torch.cat([keep, self.main(transform)], dim=1)
        else:
            y = torch.cat([self.side(x), self.main(x)], dim=1)
        return channel_shuffle(y, 2)


class DenseLayer(nn.Module):
    """DenseNet: BN-ReLU-1x1 (bottleneck) → BN-ReLU-kxk producing ``growth`` channels, which are
    concatenated to the input."""

    def __init__(self, cin: int, growth: int, kernel: int = 3, bottleneck: int = 4):
        super().__init__()
        self.body = nn.Sequential(
            nn.BatchNorm2d(cin), nn.ReLU(), nn.Conv2d(cin, bottleneck * growth, 1, bias=False),
            nn.BatchNorm2d(bottleneck * growth), nn.ReLU(),
            nn.Conv2d(bottleneck * growth, growth, kernel, padding=kernel // 2, bias=False))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([x, self.body(x)], dim=1)


class Inception(nn.Module):
    """GoogLeNet module: 1x1 | 1x1→3x3 | 1x1→kxk | maxpool→1x1 branches, concatenated."""

    def __init__(self, cin: int, widths: list[int], kernel: int = 3):
        super().__init__()
        c1, c3r, c3, ckr, ck, cp = widths
        self.branches = nn.ModuleList([
            ConvBNAct(cin, c1, 1),
            nn.Sequential(ConvBNAct(cin, c3r, 1), ConvBNAct(c3r, c3, 3)),
            nn.Sequential(ConvBNAct(cin, ckr, 1), ConvBNAct(ckr, ck, kernel)),
            nn.Sequential(nn.MaxPool2d(3, 1, 1), ConvBNAct(cin, cp, 1)),
        ])
        self.cout = c1 + c3 + ck + cp

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([branch(x) for branch in self.branches], dim=1)


class Fire(nn.Module):
    """SqueezeNet: 1x1 squeeze, then 1x1 and kxk expand branches concatenated (convs with bias,
    no BatchNorm, as published)."""

    def __init__(self, cin: int, squeeze: int, expand: int, kernel: int = 3):
        super().__init__()
        self.squeeze = nn.Sequential(nn.Conv2d(cin, squeeze, 1), nn.ReLU())
        self.expand1 = nn.Sequential(nn.Conv2d(squeeze, expand, 1), nn.ReLU())
        self.expandk = nn.Sequential(nn.Conv2d(squeeze, expand, kernel, padding=kernel // 2),
                                     nn.ReLU())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = self.squeeze(x)
        return torch.cat([self.expand1(s), self.expandk(s)], dim=1)


class Attention(nn.Module):
    """Multi-head self-attention written out (Linear, Reshape/Transpose, MatMul, Softmax, MatMul)
    the way exported transformer graphs carry it."""

    def __init__(self, dim: int, heads: int):
        super().__init__()
        self.heads, self.scale = heads, (dim // heads) ** -0.5
        self.qkv = nn.Linear(dim, dim * 3)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, c = x.shape
        q, k, v = self.qkv(x).reshape(b, n, 3, self.heads, c // self.heads).permute(2, 0, 3, 1, 4)
        attn = (q @ k.transpose(-2, -1) * self.scale).softmax(dim=-1)
        return self.proj((attn @ v).transpose(1, 2).reshape(b, n, c))


class TransformerBlock(nn.Module):
    """Pre-norm encoder block: x + Attention(LN(x)); x + MLP(LN(x)) with GELU."""

    def __init__(self, dim: int, heads: int, mlp_ratio: float = 4.0, act: str = "gelu"):
        super().__init__()
        hidden = int(dim * mlp_ratio)
        self.norm1, self.attn = nn.LayerNorm(dim), Attention(dim, heads)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = nn.Sequential(nn.Linear(dim, hidden), activation(act), nn.Linear(hidden, dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class MobileViTBlock(nn.Module):
    """MobileViT: local kxk + 1x1 convs, unfold into 2x2 patches, transformer blocks across
    patches, fold back, 1x1 conv, concat with the input and fuse with a kxk conv."""

    def __init__(self, channels: int, dim: int, depth: int, heads: int, kernel: int = 3,
                 patch: int = 2, mlp_ratio: float = 2.0):
        super().__init__()
        self.patch = patch
        self.local = nn.Sequential(ConvBNAct(channels, channels, kernel, act="swish"),
                                   nn.Conv2d(channels, dim, 1, bias=False))
        self.transformer = nn.Sequential(
            *[TransformerBlock(dim, heads, mlp_ratio, act="swish") for _ in range(depth)],
            nn.LayerNorm(dim))
        self.project = ConvBNAct(dim, channels, 1, act="swish")
        self.fuse = ConvBNAct(2 * channels, channels, kernel, act="swish")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.local(x)
        b, d, h, w = y.shape
        p = self.patch
        # (B, D, H, W) → (B·p·p, H/p·W/p, D): each pixel position within a patch is one sequence
        y = y.reshape(b, d, h // p, p, w // p, p).permute(0, 3, 5, 2, 4, 1)
        y = self.transformer(y.reshape(b * p * p, (h // p) * (w // p), d))
        y = y.reshape(b, p, p, h // p, w // p, d).permute(0, 5, 3, 1, 4, 2).reshape(b, d, h, w)
        return self.fuse(torch.cat([x, self.project(y)], dim=1))


class Classifier(nn.Sequential):
    """Global average pool → flatten → optional hidden Linear+act (MobileNetV3) → Linear."""

    def __init__(self, cin: int, classes: int, hidden: int = 0, act: str = "hswish"):
        layers: list[nn.Module] = [nn.AdaptiveAvgPool2d(1), nn.Flatten()]
        if hidden:
            layers += [nn.Linear(cin, hidden), activation(act)]
            cin = hidden
        super().__init__(*layers, nn.Linear(cin, classes))
