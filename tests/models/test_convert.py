"""Converting the authors' weight files: fixtures in their layout (documented keys and shapes,
random values), expected outputs from an independent functional forward on the raw state dict."""

from __future__ import annotations

import datetime
import pickle

import pytest
import torch
import torch.nn.functional as F
import torchvision

from mammokit.cli import main
from mammokit.config import VIEWS
from mammokit.models import load_model
from mammokit.models.convert import ConversionError, import_weights, reference_model

STRIDES = (1, 2, 2, 2, 2)


def _bn(sd, p, c, g):
    sd[p + "weight"] = 1 + 0.1 * torch.randn(c, generator=g)
    sd[p + "bias"] = 0.1 * torch.randn(c, generator=g)
    sd[p + "running_mean"] = 0.1 * torch.randn(c, generator=g)
    sd[p + "running_var"] = 0.5 + torch.rand(c, generator=g)
    sd[p + "num_batches_tracked"] = torch.tensor(7)


def _conv(o, i, k, g):
    return torch.randn(o, i, k, k, generator=g) * (2.0 / (i * k * k)) ** 0.5


def _column(c, g):
    sd = {"first_conv.weight": _conv(16, c, 7, g)}
    for i in range(5):
        planes, inplanes = 16 * 2**i, (16 if i == 0 else 8 * 2**i)
        for j in range(2):
            cin = inplanes if j == 0 else planes
            p = f"layer_list.{i}.{j}."
            _bn(sd, p + "bn1.", cin, g)
            sd[p + "conv1.weight"] = _conv(planes, cin, 3, g)
            _bn(sd, p + "bn2.", planes, g)
            sd[p + "conv2.weight"] = _conv(planes, planes, 3, g)
            if j == 0:
                sd[p + "downsample.0.weight"] = _conv(planes, inplanes, 1, g)
    _bn(sd, "final_bn.", 256, g)
    return sd


def authors_breast_sd(kind, c, seed=0, out_rows=None):
    g = torch.Generator().manual_seed(seed)
    sd = {}
    for angle in ("cc", "mlo"):
        col = _column(c, g)
        names = (angle, f"l_{angle}", f"r_{angle}")
        for name in names:
            sd.update({f"four_view_resnet.{name}.{k}": v for k, v in col.items()})
    heads = ("cc", "mlo") if kind == "view_wise" else ("lcc", "rcc", "lmlo", "rmlo")
    width = 512 if kind == "view_wise" else 256
    rows = out_rows or (8 if kind == "view_wise" else 4)
    for h in heads:
        sd[f"fc1_{h}.weight"] = torch.randn(width, width, generator=g) / width**0.5
        sd[f"fc1_{h}.bias"] = 0.1 * torch.randn(width, generator=g)
        sd[f"output_layer_{h}.fc_layer.weight"] = torch.randn(rows, width, generator=g) / width**0.5
        sd[f"output_layer_{h}.fc_layer.bias"] = 0.1 * torch.randn(rows, generator=g)
    return sd


def _f_bn(x, sd, p):
    return F.batch_norm(x, sd[p + "running_mean"], sd[p + "running_var"], sd[p + "weight"], sd[p + "bias"], False, 0.0, 1e-5)


def f_column(sd, p, x):
    """ResNet-22 (v2) from the raw authors' keys with torch.nn.functional only."""
    h = F.max_pool2d(F.conv2d(x, sd[p + "first_conv.weight"], stride=2), 3, 2)
    for i, stride in enumerate(STRIDES):
        for j in range(2):
            b, s = f"{p}layer_list.{i}.{j}.", (stride if j == 0 else 1)
            a = F.relu(_f_bn(h, sd, b + "bn1."))
            res = F.conv2d(a, sd[b + "downsample.0.weight"], stride=s) if j == 0 else h
            out = F.conv2d(a, sd[b + "conv1.weight"], stride=s, padding=1)
            out = F.conv2d(F.relu(_f_bn(out, sd, b + "bn2.")), sd[b + "conv2.weight"], padding=1)
            h = out + res
    return F.relu(_f_bn(h, sd, p + "final_bn.")).mean(dim=(2, 3))


def _views(c, seed=1):
    g = torch.Generator().manual_seed(seed)
    return {v: torch.randn(1, c, 160, 120, generator=g) for v in VIEWS}


def _save(tmp_path, name, obj):
    path = tmp_path / name
    torch.save(obj, path)
    return path


def test_fixture_has_the_documented_794_keys():
    assert len(authors_breast_sd("view_wise", 1)) == 794


@pytest.mark.parametrize("c", [1, 3])
def test_view_wise_conversion_matches_functional_forward(tmp_path, c):
    sd = authors_breast_sd("view_wise", c, seed=c)
    src = _save(tmp_path, "sample_model.p", {"model": sd})
    summary = import_weights(src, tmp_path / "vw.safetensors")
    assert summary["arch"] == "view_wise" and summary["model_args"] == {"in_channels": c}
    assert summary["parameters"] == (6_132_592 if c == 1 else 6_135_728)
    model, meta = load_model(tmp_path / "vw.safetensors")
    assert meta["extra"]["source_file"] == "sample_model.p"
    views = _views(c)
    with torch.no_grad():
        feats = {v: f_column(sd, f"four_view_resnet.{v.split('-')[1].lower()}.", views[v]) for v in VIEWS}
        probs = []
        for angle, (a, b) in (("cc", ("L-CC", "R-CC")), ("mlo", ("L-MLO", "R-MLO"))):
            h = F.relu(F.linear(torch.cat([feats[a], feats[b]], 1), sd[f"fc1_{angle}.weight"], sd[f"fc1_{angle}.bias"]))
            out = F.linear(h, sd[f"output_layer_{angle}.fc_layer.weight"], sd[f"output_layer_{angle}.fc_layer.bias"])
            probs.append(F.log_softmax(out.view(1, 4, 2), -1).exp()[..., 1])
        expected = (probs[0] + probs[1]) / 2
    got = model.predict_proba(views)
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(model.forward_features(views)["R-MLO"], feats["R-MLO"], atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("rows", [4, 8])
def test_image_wise_conversion_matches_functional_forward(tmp_path, rows):
    sd = authors_breast_sd("image_wise", 1, seed=5, out_rows=rows)
    src = _save(tmp_path, "ImageOnly__ModeImage_weights.p", {"model": sd})
    model, arch, args = reference_model(src)
    assert arch == "image_wise" and args == {"in_channels": 1}
    views = _views(1, seed=2)
    with torch.no_grad():
        p = {}
        for v in VIEWS:
            key = v.replace("-", "").lower()
            h = F.relu(F.linear(f_column(sd, f"four_view_resnet.{v.split('-')[1].lower()}.", views[v]), sd[f"fc1_{key}.weight"], sd[f"fc1_{key}.bias"]))
            w, b = sd[f"output_layer_{key}.fc_layer.weight"][:4], sd[f"output_layer_{key}.fc_layer.bias"][:4]
            p[v] = F.softmax(F.linear(h, w, b).view(1, 2, 2), -1)[..., 1]  # rows benign, malignant
        expected = torch.stack([
            (p["L-CC"][:, 0] + p["L-MLO"][:, 0]) / 2, (p["R-CC"][:, 0] + p["R-MLO"][:, 0]) / 2,
            (p["L-CC"][:, 1] + p["L-MLO"][:, 1]) / 2, (p["R-CC"][:, 1] + p["R-MLO"][:, 1]) / 2,
        ], 1)
    torch.testing.assert_close(model.predict_proba(views), expected, atol=1e-5, rtol=1e-4)


def test_patch_conversion_matches_tf_same_densenet(tmp_path):
    torch.manual_seed(3)
    tv = torchvision.models.densenet121(weights=None, num_classes=4).eval()
    src = _save(tmp_path, "sample_patch_model.p", tv.state_dict())
    assert main(["import-weights", str(src), "-o", str(tmp_path / "patch.safetensors")]) == 0
    model, meta = load_model(tmp_path / "patch.safetensors")
    assert meta["arch"] == "densenet121_patch"
    assert meta["model_args"] == {"num_classes": 4, "in_chans": 1, "tf_same_padding": True}
    assert meta["preset"]["patch_size"] == 256
    x = torch.randn(2, 1, 64, 64)
    with torch.no_grad():
        f = tv.features
        x3 = x.repeat(1, 3, 1, 1)  # the reference repeats the grayscale channel
        h = F.relu(f.norm0(F.conv2d(F.pad(x3, (2, 3, 2, 3)), f.conv0.weight, stride=2)))
        h = F.max_pool2d(F.pad(h, (0, 1, 0, 1), value=float("-inf")), 3, 2)
        for name in ["denseblock1", "transition1", "denseblock2", "transition2", "denseblock3", "transition3", "denseblock4", "norm5"]:
            h = getattr(f, name)(h)
        expected = tv.classifier(F.adaptive_avg_pool2d(F.relu(h), 1).flatten(1))
        torch.testing.assert_close(model(x), expected, atol=1e-4, rtol=1e-4)


def test_alias_mismatch_is_rejected(tmp_path):
    sd = authors_breast_sd("view_wise", 1)
    sd["four_view_resnet.r_cc.final_bn.bias"] = sd["four_view_resnet.r_cc.final_bn.bias"] + 1
    src = _save(tmp_path, "bad_alias.p", {"model": sd})
    with pytest.raises(ConversionError, match="bad_alias.p: four_view_resnet.r_cc.final_bn.bias differs from four_view_resnet.cc.final_bn.bias"):
        reference_model(src)


def test_missing_unknown_and_misshapen_keys_are_listed(tmp_path):
    sd = authors_breast_sd("view_wise", 1)
    del sd["fc1_mlo.bias"]
    src = _save(tmp_path, "missing.p", {"model": sd})
    with pytest.raises(ConversionError, match=r"missing.p: .*1 missing keys \(fc1_mlo.bias\)"):
        reference_model(src)
    sd = authors_breast_sd("view_wise", 1)
    sd["extra_head.weight"] = torch.zeros(3)
    with pytest.raises(ConversionError, match=r"unknown.p: 1 unexpected keys \(extra_head.weight\)"):
        reference_model(_save(tmp_path, "unknown.p", {"model": sd}))
    sd = authors_breast_sd("view_wise", 1)
    sd["fc1_cc.weight"] = torch.zeros(512, 256)
    with pytest.raises(ConversionError, match=r"shape.p: .*fc1_cc.weight: file \(512, 256\) vs model \(512, 512\)"):
        reference_model(_save(tmp_path, "shape.p", {"model": sd}))


def test_files_that_are_not_state_dicts_are_rejected(tmp_path):
    p = tmp_path / "object.p"
    p.write_bytes(pickle.dumps(datetime.date(2019, 1, 1), protocol=2))  # a pickle of a non-tensor class
    with pytest.raises(ConversionError, match="object.p: not a PyTorch state dict that can be loaded safely"):
        reference_model(p)
    with pytest.raises(ConversionError, match="list.p: expected a state dict .* got list"):
        reference_model(_save(tmp_path, "list.p", [torch.zeros(1)]))
    from safetensors.torch import save_file

    save_file({"a": torch.zeros(1)}, str(tmp_path / "w.safetensors"))
    with pytest.raises(ConversionError, match="w.safetensors: a safetensors file"):
        reference_model(tmp_path / "w.safetensors")
    with pytest.raises(ConversionError, match="odd.p: cannot tell which authors' model"):
        reference_model(_save(tmp_path, "odd.p", {"a.weight": torch.zeros(1)}))
    # CLI: one clear line, exit code 2.
    assert main(["import-weights", str(tmp_path / "odd.p"), "-o", str(tmp_path / "x.safetensors")]) == 2
    assert not (tmp_path / "x.safetensors").exists()
