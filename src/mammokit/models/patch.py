"""Patch classifiers for the heatmaps: DenseNet-121 (the paper's) and a small CNN for CPU presets.

Interface: ``forward(x [N, in_chans, P, P]) -> logits [N, num_classes]``; class 0 = malignant,
1 = benign (the authors' model has 4 classes; mammokit-trained ones 3: malignant, benign, normal).

Grayscale is handled in the model, not by copying the image into three channels: with
``in_chans=1`` the ImageNet / authors' 3-channel first kernel is summed over its input channels,
which computes exactly the function of the 3-channel model on a repeated channel with a third of
the input bytes and first-conv FLOPs.
"""

from __future__ import annotations

import re
from collections import OrderedDict
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F
from torchvision.models.densenet import DenseNet

from mammokit.errors import InputFileError, MissingFileError, UsageError
from mammokit.models._registry import register_model
from mammokit.utils.log import get_logger

log = get_logger(__name__)


def tf_same_pad(size: int, kernel: int, stride: int) -> tuple[int, int]:
    """TensorFlow "SAME" padding of one axis: ``(before, after)``, the smaller half first."""
    pad = max(kernel - stride, 0) if size % stride == 0 else max(kernel - size % stride, 0)
    return pad // 2, pad - pad // 2


class Conv2dSame(nn.Conv2d):
    """``nn.Conv2d`` with TensorFlow "SAME" padding computed from each input's size.

    Same parameters (and state-dict keys) as ``nn.Conv2d``; its own ``padding`` must be 0.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        (kh, kw), (sh, sw) = self.kernel_size, self.stride
        top, bottom = tf_same_pad(x.shape[-2], kh, sh)
        left, right = tf_same_pad(x.shape[-1], kw, sw)
        return super().forward(F.pad(x, (left, right, top, bottom)))


class MaxPool2dSame(nn.MaxPool2d):
    """``nn.MaxPool2d`` with TensorFlow "SAME" padding (padded cells never win: -inf)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        k, s = _pair(self.kernel_size), _pair(self.stride)
        top, bottom = tf_same_pad(x.shape[-2], k[0], s[0])
        left, right = tf_same_pad(x.shape[-1], k[1], s[1])
        x = F.pad(x, (left, right, top, bottom), value=float("-inf"))
        return F.max_pool2d(x, k, s, 0, self.dilation, self.ceil_mode)


def _pair(v) -> tuple[int, int]:
    return (v, v) if isinstance(v, int) else tuple(v)


def convert_to_tf_same(module: nn.Module) -> nn.Module:
    """Give every Conv2d and MaxPool2d of ``module`` TensorFlow "SAME" padding, in place.

    Stride-1 layers with odd kernels pad symmetrically by ``(k - 1) / 2`` under SAME, which a
    static ``padding`` does exactly and faster; only the others get the per-input padding.
    AvgPool2d (DenseNet transitions: 2x2, stride 2) keeps PyTorch's padding-free behaviour, which
    equals SAME on the even sizes that 256 x 256 patches produce.
    """
    for name, child in list(module.named_children()):
        if isinstance(child, nn.Conv2d) and not isinstance(child, Conv2dSame):
            k, s = child.kernel_size, child.stride
            if s == (1, 1) and k[0] % 2 == 1 and k[1] % 2 == 1:
                child.padding = (k[0] // 2, k[1] // 2)
            else:
                new = Conv2dSame(
                    child.in_channels, child.out_channels, k, stride=s, padding=0,
                    dilation=child.dilation, groups=child.groups, bias=child.bias is not None,
                )
                new.weight = child.weight
                if child.bias is not None:
                    new.bias = child.bias
                setattr(module, name, new)
        elif isinstance(child, nn.MaxPool2d) and not isinstance(child, MaxPool2dSame):
            setattr(module, name, MaxPool2dSame(child.kernel_size, child.stride, 0, child.dilation))
        else:
            convert_to_tf_same(child)
    return module


# torchvision's published densenet state dicts use "norm.1" where the module has "norm1".
_OLD_DENSENET_KEY = re.compile(
    r"^(.*denselayer\d+\.(?:norm|relu|conv))\.((?:[12])\.(?:weight|bias|running_mean|running_var|num_batches_tracked))$"
)


def _fix_densenet_keys(state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    out = {}
    for key, value in state_dict.items():
        m = _OLD_DENSENET_KEY.match(key)
        out[m.group(1) + m.group(2) if m else key] = value
    return out


def fold_input_channels(weight: torch.Tensor, in_chans: int) -> torch.Tensor:
    """Adapt a first-layer kernel ``[O, 3, k, k]`` to ``in_chans`` input channels.

    1: sum over the input channels (same function as the 3-channel kernel on a repeated channel);
    3: unchanged. Other counts are not used by the paper's models.
    """
    if weight.shape[1] == in_chans:
        return weight
    if in_chans == 1:
        return weight.sum(dim=1, keepdim=True)
    raise ValueError(f"cannot adapt a {weight.shape[1]}-channel kernel to {in_chans} channels")


class PatchDenseNet121(DenseNet):
    """torchvision's DenseNet-121 as the patch classifier (forward: features -> ReLU -> global
    average pool -> classifier, torchvision's and the reference's).

    Args:
        num_classes: output classes (authors' model 4; mammokit-trained 3).
        in_chans: 1 (grayscale, first kernel folded) or 3 (channel repeated, as the reference).
        tf_same_padding: TensorFlow "SAME" padding in every Conv2d and MaxPool2d (required by the
            authors' weights, which were ported from TensorFlow).
        imagenet_weights: optional local path of torchvision's ``densenet121`` ImageNet state
            dict (loaded with ``weights_only=True``); the classifier is left freshly initialised.

    State-dict keys are torchvision's (``features.conv0.weight``, ..., ``classifier.weight``).
    Shapes: ``[N, in_chans, P, P] -> [N, num_classes]``.
    """

    def __init__(
        self,
        num_classes: int = 3,
        in_chans: int = 1,
        tf_same_padding: bool = False,
        imagenet_weights: str | Path | None = None,
    ) -> None:
        super().__init__(growth_rate=32, block_config=(6, 12, 24, 16), num_init_features=64, num_classes=num_classes)
        if in_chans not in (1, 3):
            raise UsageError(f"in_chans must be 1 or 3, got {in_chans}")
        self.num_classes, self.in_chans = num_classes, in_chans
        if imagenet_weights is not None:
            self._load_imagenet(Path(imagenet_weights))
        if in_chans == 1:
            conv0 = self.features.conv0
            folded = nn.Conv2d(1, conv0.out_channels, 7, stride=2, padding=3, bias=False)
            with torch.no_grad():
                folded.weight.copy_(fold_input_channels(conv0.weight, 1))
            self.features.conv0 = folded
        if tf_same_padding:
            convert_to_tf_same(self.features)

    def split(self, level: int) -> tuple[nn.Module, nn.Module, int]:
        """``(trunk, head, stride)``: ``head(trunk(x))`` equals ``forward(x)`` for one patch ``x``.

        ``level`` k in 1..3 shares the layers up to dense block k plus the next transition's
        norm / ReLU / 1x1 conv (features at ``stride`` = 4, 8, 16 pixels); used by the
        approximate shared-layer heatmaps, which run the trunk once on the whole image and the
        head on each patch's ``[N, C, P / stride, P / stride]`` crop of the trunk's features.
        The modules share this model's parameters.
        """
        return _split_densenet(self, level)

    def _load_imagenet(self, path: Path) -> None:
        if not path.is_file():
            raise MissingFileError(f"{path}: ImageNet weights file not found")
        try:
            sd = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as exc:  # pickle errors of many kinds: name the file
            raise InputFileError(f"{path}: not a loadable PyTorch state dict ({exc})") from None
        if isinstance(sd, dict) and "state_dict" in sd and isinstance(sd["state_dict"], dict):
            sd = sd["state_dict"]
        if not isinstance(sd, dict):
            raise InputFileError(f"{path}: expected a densenet121 state dict, got {type(sd).__name__}")
        sd = {k.removeprefix("module."): v for k, v in _fix_densenet_keys(sd).items()}
        sd = {k: v for k, v in sd.items() if not k.startswith("classifier.")}  # new head
        own = self.state_dict()
        # Files saved before PyTorch 0.4.1 have no num_batches_tracked (unused in eval).
        missing = sorted(
            k for k in own
            if k not in sd and not k.startswith("classifier.") and not k.endswith("num_batches_tracked")
        )
        unexpected = sorted(k for k in sd if k not in own)
        bad = sorted(k for k in sd if k in own and sd[k].shape != own[k].shape)
        if missing or unexpected or bad:
            raise InputFileError(
                f"{path}: not torchvision densenet121 weights (missing {missing[:5]}, "
                f"unexpected {unexpected[:5]}, wrong shapes {bad[:5]})"
            )
        self.load_state_dict(sd, strict=False)
        log.info("loaded ImageNet weights from %s (classifier re-initialised)", path)


class _Head(nn.Module):
    """The layers of a :class:`PatchDenseNet121` after a split point: ``[N, C, p, p] -> [N, classes]``."""

    def __init__(self, rest: nn.Sequential, classifier: nn.Linear) -> None:
        super().__init__()
        self.rest, self.classifier = rest, classifier

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.rest(x))
        return self.classifier(torch.flatten(F.adaptive_avg_pool2d(x, 1), 1))


SPLIT_LEVELS = {1: 4, 2: 8, 3: 16}
"""Split levels of :meth:`PatchDenseNet121.split`: level -> stride (pixels) of the shared features."""


def _split_densenet(model: DenseNet, level: int) -> tuple[nn.Sequential, _Head, int]:
    if level not in SPLIT_LEVELS:
        raise UsageError(f"split level must be one of {sorted(SPLIT_LEVELS)}, got {level}")
    trunk: list[tuple[str, nn.Module]] = []
    rest: list[tuple[str, nn.Module]] = []
    target = f"transition{level}"
    into_rest = False
    for name, module in model.features.named_children():
        if into_rest:
            rest.append((name, module))
        elif name == target:
            # Norm, ReLU and 1x1 conv of the transition are per-pixel or stride 1: shared; its
            # 2x2 average pool runs per patch (so each patch's crop is pooled on its own grid).
            trunk += [(f"{name}_{k}", m) for k, m in module.named_children() if k != "pool"]
            rest.append((f"{name}_pool", module.pool))
            into_rest = True
        else:
            trunk.append((name, module))
    return nn.Sequential(OrderedDict(trunk)), _Head(nn.Sequential(OrderedDict(rest)), model.classifier), SPLIT_LEVELS[level]


@register_model
def densenet121_patch(
    num_classes: int = 3, in_chans: int = 1, tf_same_padding: bool = False, imagenet_weights: str | None = None
) -> PatchDenseNet121:
    """DenseNet-121 patch classifier (the paper's; :class:`PatchDenseNet121`)."""
    return PatchDenseNet121(num_classes, in_chans, tf_same_padding, imagenet_weights)


class PatchNetSmall(nn.Module):
    """A small CNN patch classifier for CPU presets (~0.3 M parameters at width 16), same interface.

    Four stages of [3x3 conv (stride 2 after the first), BN, ReLU, 3x3 conv, BN, ReLU] with
    widths ``width * (1, 2, 4, 8)``, global average pool, linear classifier.
    Shapes: ``[N, in_chans, P, P] -> [N, num_classes]`` for any P >= 8.
    """

    def __init__(self, num_classes: int = 3, in_chans: int = 1, width: int = 16) -> None:
        super().__init__()
        self.num_classes, self.in_chans = num_classes, in_chans
        layers: list[nn.Module] = []
        c_in = in_chans
        for i, mult in enumerate((1, 2, 4, 8)):
            c = width * mult
            layers += [
                nn.Conv2d(c_in, c, 3, stride=1 if i == 0 else 2, padding=1, bias=False),
                nn.BatchNorm2d(c), nn.ReLU(inplace=True),
                nn.Conv2d(c, c, 3, padding=1, bias=False), nn.BatchNorm2d(c), nn.ReLU(inplace=True),
            ]
            c_in = c
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Linear(c_in, num_classes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x).mean(dim=(2, 3)))


@register_model
def patchnet_small(num_classes: int = 3, in_chans: int = 1, width: int = 16) -> PatchNetSmall:
    """Small CNN patch classifier for CPU presets (:class:`PatchNetSmall`)."""
    return PatchNetSmall(num_classes, in_chans, width)


PATCH_MODELS = ("densenet121_patch", "patchnet_small")
