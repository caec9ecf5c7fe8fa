"""Patch classifier details: folded grayscale channel, TensorFlow SAME padding, ImageNet init."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
import torchvision

from mammokit.models import create_model
from mammokit.models.patch import Conv2dSame, MaxPool2dSame, tf_same_pad


def test_folded_grayscale_equals_repeated_channel():
    torch.manual_seed(0)
    rgb = create_model("densenet121_patch", num_classes=4, in_chans=3).eval()
    gray = create_model("densenet121_patch", num_classes=4, in_chans=1).eval()
    sd = rgb.state_dict()
    sd["features.conv0.weight"] = sd["features.conv0.weight"].sum(1, keepdim=True)
    gray.load_state_dict(sd)
    x = torch.randn(2, 1, 64, 64)
    torch.testing.assert_close(gray(x), rgb(x.repeat(1, 3, 1, 1)), atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize(
    "size,k,s,expected", [(256, 7, 2, (2, 3)), (255, 7, 2, (3, 3)), (128, 3, 2, (0, 1)), (5, 3, 2, (1, 1)), (9, 3, 1, (1, 1)), (8, 1, 1, (0, 0))]
)
def test_tf_same_pad(size, k, s, expected):
    assert tf_same_pad(size, k, s) == expected


def _tf_same_conv_numpy(x, w, stride):
    """TensorFlow SAME conv (cross-correlation) by explicit loops: output size ceil(n / s)."""
    n_h, n_w = x.shape
    k = w.shape[0]
    out_h, out_w = -(-n_h // stride), -(-n_w // stride)
    pad_h = max((out_h - 1) * stride + k - n_h, 0)
    pad_w = max((out_w - 1) * stride + k - n_w, 0)
    xp = np.pad(x, ((pad_h // 2, pad_h - pad_h // 2), (pad_w // 2, pad_w - pad_w // 2)))
    return np.array([[(xp[i * stride:i * stride + k, j * stride:j * stride + k] * w).sum() for j in range(out_w)] for i in range(out_h)])


@pytest.mark.parametrize("shape", [(12, 12), (11, 14)])
def test_conv2d_same_matches_tensorflow_definition(shape):
    torch.manual_seed(1)
    conv = Conv2dSame(1, 1, 7, stride=2, bias=False)
    x = torch.randn(1, 1, *shape)
    expected = _tf_same_conv_numpy(x[0, 0].double().numpy(), conv.weight[0, 0].detach().double().numpy(), 2)
    np.testing.assert_allclose(conv(x)[0, 0].detach().numpy(), expected, atol=1e-5)


def test_maxpool_same_ignores_padding():
    x = -1.0 - torch.rand(1, 1, 8, 8)  # all negative: a zero pad would win
    out = MaxPool2dSame(3, 2)(x)
    assert out.shape == (1, 1, 4, 4)
    # Last row/col windows cover rows 6..7 (+1 padded): TF takes the max of the real cells.
    assert out[0, 0, 3, 3] == x[0, 0, 6:8, 6:8].max()
    assert (out < 0).all()


def test_tf_same_model_changes_only_the_stem_padding():
    torch.manual_seed(2)
    plain = create_model("densenet121_patch", num_classes=4, in_chans=3).eval()
    same = create_model("densenet121_patch", num_classes=4, in_chans=3, tf_same_padding=True).eval()
    same.load_state_dict(plain.state_dict())  # identical keys
    x = torch.randn(1, 3, 64, 64)
    # Independent: pad the input as TF would for conv0 (2, 3) and run the stem with padding 0,
    # then TF pool0 padding (0, 1) with -inf, then the torchvision remainder.
    f = plain.features
    h = F.conv2d(F.pad(x, (2, 3, 2, 3)), f.conv0.weight, stride=2)
    h = F.relu(f.norm0(h))
    h = F.max_pool2d(F.pad(h, (0, 1, 0, 1), value=float("-inf")), 3, 2)
    for name in ["denseblock1", "transition1", "denseblock2", "transition2", "denseblock3", "transition3", "denseblock4", "norm5"]:
        h = getattr(f, name)(h)
    expected = plain.classifier(F.adaptive_avg_pool2d(F.relu(h), 1).flatten(1))
    torch.testing.assert_close(same(x), expected, atol=1e-5, rtol=1e-4)
    assert not torch.allclose(plain(x), expected, atol=1e-4)


def test_imagenet_init_from_local_file(tmp_path):
    torch.manual_seed(3)
    tv = torchvision.models.densenet121(weights=None)
    sd = tv.state_dict()
    # torchvision's published file uses the old "norm.1" key spelling; accept it.
    old = {k.replace("denselayer1.norm1.", "denselayer1.norm.1."): v for k, v in sd.items()}
    path = tmp_path / "densenet121-imagenet.pth"
    torch.save(old, path)
    model = create_model("densenet121_patch", num_classes=3, in_chans=1, imagenet_weights=str(path))
    got = model.state_dict()
    torch.testing.assert_close(got["features.conv0.weight"], sd["features.conv0.weight"].sum(1, keepdim=True))
    torch.testing.assert_close(got["features.denseblock4.denselayer16.conv2.weight"], sd["features.denseblock4.denselayer16.conv2.weight"])
    assert got["classifier.weight"].shape == (3, 1024)


def test_imagenet_init_rejects_other_files(tmp_path):
    path = tmp_path / "bad.pth"
    torch.save({"conv.weight": torch.zeros(2)}, path)
    with pytest.raises(ValueError, match="bad.pth: not torchvision densenet121 weights"):
        create_model("densenet121_patch", imagenet_weights=str(path))
