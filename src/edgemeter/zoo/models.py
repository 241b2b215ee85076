"""Family builders (torch). A variant dict's keys are the keyword arguments of these functions;
:mod:`edgemeter.zoo.families` holds each family's published default and its sampling space.

Lists are per stage: ``channels`` = [stem, stage 1, ..., stage n] output widths, and ``depths``,
``strides``, ``kernels``, ``expansions``, ``se`` have one entry per stage. Only the first block of a
stage strides or changes the width.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import nn

from edgemeter.zoo import blocks
from edgemeter.zoo.blocks import ConvBNAct, Classifier


def _stages(make_block: Callable[..., nn.Module], cin: int, channels: Sequence[int],
            depths: Sequence[int], strides: Sequence[int], **per_stage: Sequence) -> nn.Sequential:
    """Stack ``depths[i]`` blocks per stage; ``per_stage`` lists become each block's kwargs."""
    stages = []
    for i, (cout, depth, stride) in enumerate(zip(channels, depths, strides)):
        kwargs = {key: values[i] for key, values in per_stage.items()}
        stage = [make_block(cin if j == 0 else cout, cout, stride=stride if j == 0 else 1, **kwargs)
                 for j in range(depth)]
        stages.append(nn.Sequential(*stage))
        cin = cout
    return nn.Sequential(*stages)


def _features_shape(features: nn.Module, resolution: int) -> torch.Size:
    with torch.no_grad():
        return features.eval()(torch.zeros(1, 3, resolution, resolution)).shape


# --- mobile families: MobileNetV1/V2/V3, MnasNet, ProxylessNAS, EfficientNet, GhostNet -------

MOBILE_BLOCKS: dict[str, Callable[..., nn.Module]] = {
    "separable": blocks.DepthwiseSeparable,
    "mbconv": blocks.InvertedResidual,
    "ghost": blocks.GhostBottleneck,
}


def mobile_net(channels: list[int], depths: list[int], strides: list[int], kernels: list[int],
               block: str = "mbconv", act: str = "relu6", acts: list[str] | None = None,
               expansions: list[float] | None = None, se: list[float] | None = None,
               se_gate: str = "sigmoid", head: int = 0, hidden: int = 0,
               classes: int = 1000) -> nn.Sequential:
    """Stem conv, stages of one block type, optional 1x1 head conv, classifier. ``acts``
    overrides ``act`` per stage (MobileNetV3: ReLU early, h-swish late)."""
    per_stage: dict[str, Sequence] = {"kernel": kernels, "act": acts or [act] * len(depths)}
    if expansions is not None:
        per_stage["expansion"] = expansions
    if se is not None:
        per_stage["se"] = se
        make_block = lambda *a, **k: MOBILE_BLOCKS[block](*a, se_gate=se_gate, **k)  # noqa: E731
    else:
        make_block = MOBILE_BLOCKS[block]
    layers = [ConvBNAct(3, channels[0], 3, 2, act=act),
              _stages(make_block, channels[0], channels[1:], depths, strides, **per_stage)]
    if head:
        layers.append(ConvBNAct(channels[-1], head, 1, act=act))
    layers.append(Classifier(head or channels[-1], classes, hidden, act))
    return nn.Sequential(*layers)


# --- residual families: ResNet, ResNeXt, RegNet -----------------------------------------------

def res_net(channels: list[int], depths: list[int], strides: list[int], kernels: list[int],
            block: str = "basic", expansion: int = 4, groups: int = 1, group_width: int = 0,
            se: float = 0.0, stem_kernel: int = 7, stem_pool: bool = True,
            classes: int = 1000) -> nn.Sequential:
    """ResNet-style net. For ``block="bottleneck"`` the stage ``channels`` are the inner widths
    and a stage outputs ``expansion`` × that (ResNet-50: 4, ResNeXt: 2, RegNet: 1); the grouped
    conv has ``groups`` groups, or groups of ``group_width`` channels (RegNet)."""
    def make_block(cin: int, cout: int, stride: int, kernel: int) -> nn.Module:
        if block == "basic":
            return blocks.ResidualBlock(cin, cout, stride, kernel)
        width = cout // expansion
        return blocks.ResidualBlock(cin, cout, stride, kernel, width,
                                    max(1, width // group_width) if group_width else groups, se)

    stem = [ConvBNAct(3, channels[0], stem_kernel, 2)] + ([nn.MaxPool2d(3, 2, 1)] * stem_pool)
    outs = [c * (expansion if block == "bottleneck" else 1) for c in channels[1:]]
    return nn.Sequential(*stem, _stages(make_block, channels[0], outs, depths, strides,
                                        kernel=kernels),
                         Classifier(outs[-1], classes))


# --- plain convnets: AlexNet, VGG -------------------------------------------------------------

def plain_net(resolution: int, channels: list[int], depths: list[int], kernels: list[int],
              pools: list[bool], pool: int = 2, stem_stride: int = 1, hidden: int = 4096,
              classes: int = 1000) -> nn.Sequential:
    """Conv+ReLU stacks with max-pooling and a two-hidden-layer MLP classifier on the flattened
    features (AlexNet, VGG). The first conv strides by ``stem_stride`` (AlexNet: 4); a stage
    flagged in ``pools`` ends in a ``pool``x``pool`` max-pool of stride 2."""
    layers: list[nn.Module] = []
    cin = 3
    for i, (cout, depth, kernel, pooled) in enumerate(zip(channels, depths, kernels, pools)):
        for j in range(depth):
            stride = stem_stride if i == j == 0 else 1
            layers += [nn.Conv2d(cin, cout, kernel, stride, kernel // 2), nn.ReLU()]
            cin = cout
        if pooled:
            layers.append(nn.MaxPool2d(pool, 2))
    features = nn.Sequential(*layers, nn.Flatten())
    flat = _features_shape(features, resolution)[1]
    return nn.Sequential(features, nn.Linear(flat, hidden), nn.ReLU(), nn.Linear(hidden, hidden),
                         nn.ReLU(), nn.Linear(hidden, classes))


# --- concatenating families: DenseNet, GoogLeNet, SqueezeNet, ShuffleNetV2 --------------------

def dense_net(channels: list[int], depths: list[int], kernels: list[int], growth: int = 32,
              bottleneck: int = 4, compression: float = 0.5, classes: int = 1000) -> nn.Sequential:
    """DenseNet: stem, dense blocks (each layer concatenates ``growth`` channels), transitions
    (1x1 conv compressing the width, 2x2 average pool)."""
    layers: list[nn.Module] = [ConvBNAct(3, channels[0], 7, 2), nn.MaxPool2d(3, 2, 1)]
    cin = channels[0]
    for i, (depth, kernel) in enumerate(zip(depths, kernels)):
        for _ in range(depth):
            layers.append(blocks.DenseLayer(cin, growth, kernel, bottleneck))
            cin += growth
        if i < len(depths) - 1:
            cout = blocks.make_divisible(cin * compression)
            layers += [nn.BatchNorm2d(cin), nn.ReLU(), nn.Conv2d(cin, cout, 1, bias=False),
                       nn.AvgPool2d(2, 2)]
            cin = cout
    layers += [nn.BatchNorm2d(cin), nn.ReLU(), Classifier(cin, classes)]
    return nn.Sequential(*layers)


def inception_net(channels: list, kernels: list[int], pools: list[bool],
                  classes: int = 1000) -> nn.Sequential:
    """GoogLeNet: stem (7x7/2, pool, 1x1, 3x3, pool), then Inception modules whose six branch
    widths are ``channels[2:]``; ``pools[i]`` max-pools after module i."""
    c0, c1 = channels[0], channels[1]
    layers: list[nn.Module] = [ConvBNAct(3, c0, 7, 2), nn.MaxPool2d(3, 2, 1), ConvBNAct(c0, c0, 1),
                               ConvBNAct(c0, c1, 3), nn.MaxPool2d(3, 2, 1)]
    cin = c1
    for widths, kernel, pool in zip(channels[2:], kernels, pools):
        module = blocks.Inception(cin, widths, kernel)
        layers.append(module)
        cin = module.cout
        if pool:
            layers.append(nn.MaxPool2d(3, 2, 1))
    return nn.Sequential(*layers, Classifier(cin, classes))


def squeeze_net(channels: list, kernels: list[int], pools: list[bool],
                classes: int = 1000) -> nn.Sequential:
    """SqueezeNet 1.1: 3x3/2 stem and pool, Fire modules ([squeeze, expand] in ``channels[1:]``)
    with max-pools after those flagged in ``pools``, and a 1x1 conv classifier."""
    layers: list[nn.Module] = [nn.Conv2d(3, channels[0], 3, 2), nn.ReLU(), nn.MaxPool2d(3, 2)]
    cin = channels[0]
    for (squeeze, expand), kernel, pool in zip(channels[1:], kernels, pools):
        layers.append(blocks.Fire(cin, squeeze, expand, kernel))
        cin = 2 * expand
        if pool:
            layers.append(nn.MaxPool2d(3, 2))
    return nn.Sequential(*layers, nn.Conv2d(cin, classes, 1), nn.ReLU(), nn.AdaptiveAvgPool2d(1),
                         nn.Flatten())


def shuffle_net(channels: list[int], depths: list[int], kernels: list[int], head: int = 1024,
                classes: int = 1000) -> nn.Sequential:
    """ShuffleNetV2: 3x3/2 stem and pool, stages of shuffle units (the first strides), 1x1 head."""
    return nn.Sequential(
        ConvBNAct(3, channels[0], 3, 2), nn.MaxPool2d(3, 2, 1),
        _stages(blocks.ShuffleUnit, channels[0], channels[1:], depths, [2] * len(depths),
                kernel=kernels),
        ConvBNAct(channels[-1], head, 1), Classifier(head, classes))


# --- transformers: ViT/DeiT, MobileViT --------------------------------------------------------

class VisionTransformer(nn.Module):
    """ViT/DeiT: patch-embedding conv, class token (Concat), learned position embedding,
    encoder blocks, final LayerNorm, linear head on the class token."""

    def __init__(self, resolution: int, patch: int, heads: int, head_dim: int, depths: list[int],
                 mlp_ratio: float = 4.0, classes: int = 1000):
        super().__init__()
        dim = heads * head_dim
        self.embed = nn.Conv2d(3, dim, patch, patch)
        self.cls = nn.Parameter(torch.zeros(1, 1, dim))
        self.pos = nn.Parameter(torch.randn(1, (resolution // patch) ** 2 + 1, dim) * 0.02)
        self.blocks = nn.Sequential(*[blocks.TransformerBlock(dim, heads, mlp_ratio)
                                      for _ in range(depths[0])])
        self.norm = nn.LayerNorm(dim)
        self.head = nn.Linear(dim, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.embed(x).flatten(2).transpose(1, 2)
        x = torch.cat([self.cls.expand(x.shape[0], -1, -1), x], dim=1) + self.pos
        return self.head(self.norm(self.blocks(x))[:, 0])


def vit(resolution: int, patch: int, heads: int, head_dim: int, depths: list[int],
        mlp_ratio: float = 4.0, classes: int = 1000) -> VisionTransformer:
    return VisionTransformer(resolution, patch, heads, head_dim, depths, mlp_ratio, classes)


def mobile_vit(channels: list[int], depths: list[int], dims: list[int], vit_depths: list[int],
               kernels: list[int], expansion: float = 2.0, heads: int = 4, head: int = 320,
               classes: int = 1000) -> nn.Sequential:
    """MobileViT: stem, MobileNetV2 stages, then per ViT stage a strided inverted residual and a
    MobileViT block (``dims``/``vit_depths``), 1x1 head conv, classifier. ``channels`` =
    [stem, mv2 stages..., vit stages...]; input sides must be multiples of 64."""
    n_mv2 = len(depths)
    mv2 = _stages(blocks.InvertedResidual, channels[0], channels[1:n_mv2 + 1], depths,
                  [1] + [2] * (n_mv2 - 1), kernel=kernels[:n_mv2], expansion=[expansion] * n_mv2,
                  act=["swish"] * n_mv2)
    layers: list[nn.Module] = [ConvBNAct(3, channels[0], 3, 2, act="swish"), mv2]
    cin = channels[n_mv2]
    for cout, dim, depth, kernel in zip(channels[n_mv2 + 1:], dims, vit_depths, kernels[n_mv2:]):
        layers += [blocks.InvertedResidual(cin, cout, kernel, 2, expansion, act="swish"),
                   blocks.MobileViTBlock(cout, dim, depth, heads, kernel)]
        cin = cout
    return nn.Sequential(*layers, ConvBNAct(cin, head, 1, act="swish"), Classifier(head, classes))


# --- detection: SSD-like head over a mobile backbone ------------------------------------------

class NonMaxSuppression(torch.autograd.Function):
    """Greedy per-class NMS in eager mode; exported as one onnx::NonMaxSuppression node (no
    torchvision here, and a traced loop would not export)."""

    @staticmethod
    def forward(ctx, boxes: torch.Tensor, scores: torch.Tensor, max_per_class: int, iou: float,
                score_threshold: float) -> torch.Tensor:
        selected = []
        for b in range(boxes.shape[0]):
            for c in range(scores.shape[1]):
                order = [i for i in scores[b, c].argsort(descending=True).tolist()
                         if scores[b, c, i] > score_threshold]
                kept: list[int] = []
                while order and len(kept) < max_per_class:
                    best, order = order[0], order[1:]
                    kept.append(best)
                    overlap = _iou(boxes[b, best], boxes[b, order]) if order else []
                    order = [i for i, o in zip(order, overlap) if o <= iou]
                selected += [[b, c, i] for i in kept]
        return torch.tensor(selected, dtype=torch.int64).reshape(-1, 3)

    @staticmethod
    def symbolic(g, boxes, scores, max_per_class, iou, score_threshold):  # noqa: ANN001, ANN205
        def const(value, dtype):  # noqa: ANN001, ANN202
            return g.op("Constant", value_t=torch.tensor([value], dtype=dtype))
        return g.op("NonMaxSuppression", boxes, scores, const(max_per_class, torch.int64),
                    const(iou, torch.float32), const(score_threshold, torch.float32))


def _iou(box: torch.Tensor, others: torch.Tensor) -> list[float]:
    """IoU of one corner box (y1, x1, y2, x2) with each of ``others``."""
    lo, hi = torch.maximum(box[:2], others[:, :2]), torch.minimum(box[2:], others[:, 2:])
    inter = (hi - lo).clamp(min=0).prod(dim=1)
    area = lambda b: (b[..., 2:] - b[..., :2]).prod(dim=-1)  # noqa: E731
    return (inter / (area(box) + area(others) - inter)).tolist()


class SSD(nn.Module):
    """SSDLite-like detector: a mobile backbone tapped at strides 16 and 32, extra strided
    layers, per-level conv heads for box offsets and class scores (Transpose/Reshape/Concat over
    levels), box decoding against fixed anchors, TopK pre-selection, NonMaxSuppression, and a
    post-processing Gather/Concat/Reshape whose size depends on the NMS output."""

    def __init__(self, resolution: int, backbone: nn.Sequential, tap: int, cins: list[int],
                 extras: list[int], anchors: int, classes: int, candidates: int,
                 max_detections: int):
        """``backbone`` is a :func:`mobile_net` (stem, stages, head conv, classifier), tapped
        before stage ``tap`` and after its head conv, whose widths are ``cins``."""
        super().__init__()
        stem, stages, head = backbone[0], backbone[1], backbone[2]
        self.early = nn.Sequential(stem, *stages[:tap])
        self.late = nn.Sequential(*stages[tap:], head)
        cins = list(cins)
        self.extras = nn.ModuleList()
        for cout in extras:
            self.extras.append(nn.Sequential(ConvBNAct(cins[-1], cout // 2, 1, act="relu6"),
                                             ConvBNAct(cout // 2, cout, 3, 2, act="relu6")))
            cins.append(cout)
        self.loc = nn.ModuleList(nn.Conv2d(c, anchors * 4, 3, padding=1) for c in cins)
        self.conf = nn.ModuleList(nn.Conv2d(c, anchors * classes, 3, padding=1) for c in cins)
        self.classes, self.candidates, self.max_detections = classes, candidates, max_detections
        with torch.no_grad():  # eval: BatchNorm cannot train on the 1x1 maps of the last levels
            sizes = [f.shape[-1] for f in self.eval()._levels(torch.zeros(1, 3, resolution,
                                                                           resolution))]
        self.register_buffer("anchors", _anchors(sizes, anchors))

    def _levels(self, x: torch.Tensor) -> list[torch.Tensor]:
        levels = [self.early(x)]
        levels.append(self.late(levels[-1]))
        for extra in self.extras:
            levels.append(extra(levels[-1]))
        return levels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b = x.shape[0]
        levels = self._levels(x)
        loc = torch.cat([h(f).permute(0, 2, 3, 1).reshape(b, -1, 4)
                         for h, f in zip(self.loc, levels)], dim=1)
        conf = torch.cat([h(f).permute(0, 2, 3, 1).reshape(b, -1, self.classes)
                          for h, f in zip(self.conf, levels)], dim=1)
        centers = self.anchors[:, :2] + loc[..., :2] * 0.1 * self.anchors[:, 2:]
        sizes = self.anchors[:, 2:] * torch.exp(loc[..., 2:] * 0.2)
        boxes = torch.cat([centers - sizes / 2, centers + sizes / 2], dim=-1)
        score, label = conf.softmax(dim=-1)[..., 1:].max(dim=-1)  # class 0 is background
        k = min(self.candidates, boxes.shape[1])
        score, index = score.topk(k, dim=1)
        boxes = boxes.gather(1, index.unsqueeze(-1).expand(-1, -1, 4))
        label = label.gather(1, index)
        keep = NonMaxSuppression.apply(boxes, score.unsqueeze(1), self.max_detections, 0.5, 0.01)
        i = keep[:, 2]  # detections of the first image: (y1, x1, y2, x2, score, label)
        det = torch.cat([boxes[0, i], score[0, i, None], label[0, i, None].float()], dim=1)
        return det.reshape(1, i.shape[0], 6)


def _anchors(sizes: list[int], per_cell: int) -> torch.Tensor:
    """(cy, cx, h, w) anchors, normalised, level by level, ``per_cell`` aspect ratios per cell."""
    rows = []
    for level, size in enumerate(sizes):
        scale = 0.2 + 0.7 * level / max(1, len(sizes) - 1)
        ratios = torch.linspace(0.5, 2.0, per_cell)
        centers = (torch.arange(size) + 0.5) / size
        cy, cx = torch.meshgrid(centers, centers, indexing="ij")
        hw = torch.stack([scale / ratios.sqrt(), scale * ratios.sqrt()], dim=1)
        grid = torch.stack([cy, cx], dim=-1).reshape(-1, 1, 2).expand(-1, per_cell, 2)
        rows.append(torch.cat([grid, hw.expand(size * size, -1, -1)], dim=-1).reshape(-1, 4))
    return torch.cat(rows)


def ssd(resolution: int, channels: list[int], depths: list[int], strides: list[int],
        kernels: list[int], expansions: list[float], head: int = 1280,
        extras: Sequence[int] = (512, 256), anchors: int = 6, classes: int = 21,
        candidates: int = 200, max_detections: int = 100) -> SSD:
    backbone = mobile_net(channels, depths, strides, kernels, expansions=expansions, head=head)
    tap = max(i for i, s in enumerate(strides) if s == 2)  # its input has stride 16
    return SSD(resolution, backbone, tap, [channels[tap], head], list(extras), anchors, classes,
               candidates, max_detections)

