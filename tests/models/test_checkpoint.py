"""Checkpoints: round trips for every registered model, ensembles, clear errors on bad files."""

from __future__ import annotations

import json
import pickle

import pytest
import torch

from mammokit.config import PRESETS, VIEWS, preset_from_dict
from mammokit.models import (
    CheckpointError,
    Ensemble,
    create_model,
    list_models,
    load_model,
    read_checkpoint,
    save_checkpoint,
    save_ensemble,
)

SMALL_ARGS = {
    "view_wise": {"in_channels": 3},
    "image_wise": {"task": "birads"},
    "breast_wise": {},
    "joint": {"in_channels": 3, "input_noise_std": 0.0},
    "densenet121_patch": {"num_classes": 4, "tf_same_padding": True},
    "patchnet_small": {"num_classes": 3, "width": 8},
}


def _views(c, seed=0):
    g = torch.Generator().manual_seed(seed)
    return {v: torch.randn(1, c, 80, 64, generator=g) for v in VIEWS}


def _perturb_bn(model):
    # Non-default running stats so the round trip checks buffers too.
    g = torch.Generator().manual_seed(9)
    for name, buf in model.named_buffers():
        if buf.is_floating_point():
            buf.add_(torch.rand(buf.shape, generator=g) * 0.1)


@pytest.mark.parametrize("arch", sorted(SMALL_ARGS))
def test_round_trip_every_model(arch, tmp_path):
    assert arch in list_models()
    torch.manual_seed(0)
    model = create_model(arch, **SMALL_ARGS[arch]).eval()
    _perturb_bn(model)
    path = tmp_path / f"{arch}.safetensors"
    save_checkpoint(path, model, arch=arch, model_args=SMALL_ARGS[arch], preset=PRESETS["small"], extra={"epoch": 3, "auc": 0.75})
    loaded, meta = load_model(path)
    assert meta["arch"] == arch and meta["model_args"] == SMALL_ARGS[arch] and meta["kind"] == "model"
    assert meta["preset"]["name"] == "small" and meta["extra"] == {"epoch": 3, "auc": 0.75}
    assert not loaded.training
    for k, v in model.state_dict().items():
        assert torch.equal(loaded.state_dict()[k], v), k
    if arch in ("densenet121_patch", "patchnet_small"):
        x = torch.randn(2, 1, 32, 32)
        torch.testing.assert_close(loaded(x), model(x))
    else:
        views = _views(model.in_channels)
        torch.testing.assert_close(loaded.predict_proba(views), model.predict_proba(views))
    assert [p.name for p in tmp_path.iterdir()] == [path.name]  # no temporary left behind


def test_load_with_dtype(tmp_path):
    model = create_model("patchnet_small", width=8)
    save_checkpoint(tmp_path / "m.safetensors", model, arch="patchnet_small", model_args={"width": 8})
    loaded, _ = load_model(tmp_path / "m.safetensors", dtype=torch.float64)
    assert all(p.dtype == torch.float64 for p in loaded.parameters())


def test_shared_tensors_survive(tmp_path):
    # A module whose two attributes hold the same Parameter: safetensors refuses aliasing;
    # the save clones, the model's own structure re-ties on load.
    model = create_model("patchnet_small", width=8)
    model.extra_head = model.classifier  # same module twice -> aliased keys in the state dict
    save_checkpoint(tmp_path / "tied.safetensors", model, arch="patchnet_small", model_args={"width": 8})
    tensors, _ = read_checkpoint(tmp_path / "tied.safetensors")
    assert torch.equal(tensors["extra_head.weight"], tensors["classifier.weight"])


def test_ensemble_averages_members(tmp_path):
    torch.manual_seed(1)
    members = [create_model("view_wise").eval() for _ in range(3)]
    path = tmp_path / "ens.safetensors"
    save_ensemble(path, members, arch="view_wise", model_args={}, preset="small", extra={"seeds": [0, 1, 2]})
    ens, meta = load_model(path)
    assert isinstance(ens, Ensemble) and meta["kind"] == "ensemble" and len(meta["members"]) == 3
    assert preset_from_dict(meta["preset"]) == PRESETS["small"]  # a name is stored as every size
    views = _views(1)
    expected = torch.stack([m.predict_proba(views) for m in members]).mean(0)
    torch.testing.assert_close(ens.predict_proba(views), expected)
    # forward: logits whose softmax is the members' mean probability.
    out = ens(views)
    mean_cc = torch.stack([m(views)["CC"].softmax(-1) for m in members]).mean(0)
    torch.testing.assert_close(out["CC"].softmax(-1), mean_cc)
    assert ens.output_labels == members[0].output_labels
    assert ens.forward_features(views)["L-CC"].shape == (1, 768)


def test_torch_pickle_is_rejected_clearly(tmp_path):
    path = tmp_path / "model.p"
    torch.save({"model": create_model("patchnet_small", width=8).state_dict()}, path)
    with pytest.raises(CheckpointError, match="model.p: this is a PyTorch pickle.*import-weights"):
        load_model(path)
    raw = tmp_path / "legacy.pkl"
    raw.write_bytes(pickle.dumps({"a": 1}))
    with pytest.raises(CheckpointError, match="legacy.pkl: this is a PyTorch pickle"):
        load_model(raw)
    junk = tmp_path / "junk.safetensors"
    junk.write_bytes(b"hello world, not weights")
    with pytest.raises(CheckpointError, match="junk.safetensors: not a safetensors file"):
        load_model(junk)
    with pytest.raises(FileNotFoundError, match="nothere.safetensors: checkpoint not found"):
        load_model(tmp_path / "nothere.safetensors")


def test_foreign_safetensors_is_rejected(tmp_path):
    from safetensors.torch import save_file

    save_file({"w": torch.zeros(2)}, str(tmp_path / "foreign.safetensors"))
    with pytest.raises(CheckpointError, match="without mammokit metadata"):
        load_model(tmp_path / "foreign.safetensors")


def test_safetensors_header_length_starting_with_0x80_is_accepted(tmp_path):
    # A safetensors header length whose low byte is 0x80 (here 384 = 0x180) makes the file start
    # with the same byte as a pickle; it must still be read as safetensors.
    from safetensors.torch import load_file

    model = create_model("patchnet_small", width=8)
    path = tmp_path / "m.safetensors"
    save_checkpoint(path, model, arch="patchnet_small", model_args={"width": 8})
    tensors = {k: v.clone() for k, v in load_file(str(path)).items()}  # copy: the file is rewritten
    header = json.loads(path.read_bytes()[8 : 8 + int.from_bytes(path.read_bytes()[:8], "little")])
    body = path.read_bytes()[8 + int.from_bytes(path.read_bytes()[:8], "little") :]
    text = json.dumps(header, separators=(",", ":"))
    target = (len(text) // 256 + 1) * 256 + 128
    padded = text + " " * (target - len(text))
    assert len(padded) % 256 == 128
    path.write_bytes(len(padded).to_bytes(8, "little") + padded.encode() + body)
    assert path.read_bytes()[:1] == b"\x80"
    loaded, meta = load_model(path)
    assert meta["arch"] == "patchnet_small"
    for key, value in loaded.state_dict().items():
        torch.testing.assert_close(value, tensors[key])


def _rewrite(path, out, edit_tensors=None, edit_meta=None):
    from safetensors import safe_open
    from safetensors.torch import save_file

    with safe_open(str(path), framework="pt") as f:
        meta = dict(f.metadata())
        tensors = {k: f.get_tensor(k) for k in f.keys()}
    if edit_tensors:
        edit_tensors(tensors)
    if edit_meta:
        edit_meta(meta)
    save_file(tensors, str(out), metadata=meta)


def test_missing_unexpected_and_wrong_shape_keys_are_listed(tmp_path):
    model = create_model("patchnet_small", width=8)
    good = tmp_path / "good.safetensors"
    save_checkpoint(good, model, arch="patchnet_small", model_args={"width": 8})

    def drop(t):
        del t["classifier.bias"]
        t["stray.weight"] = torch.zeros(1)

    _rewrite(good, tmp_path / "a.safetensors", drop)
    with pytest.raises(CheckpointError, match=r"a.safetensors.*1 missing keys \(classifier.bias\).*1 unexpected keys \(stray.weight\)"):
        load_model(tmp_path / "a.safetensors")

    def reshape(t):
        t["classifier.weight"] = torch.zeros(5, 64)

    _rewrite(good, tmp_path / "b.safetensors", reshape)
    with pytest.raises(CheckpointError, match=r"wrong shapes \(classifier.weight: file \(5, 64\) vs model \(3, 64\)\)"):
        load_model(tmp_path / "b.safetensors")

    def bad_args(m):
        m["model_args"] = json.dumps({"bogus": 1})

    _rewrite(good, tmp_path / "c.safetensors", edit_meta=bad_args)
    with pytest.raises(CheckpointError, match="cannot build model 'patchnet_small'"):
        load_model(tmp_path / "c.safetensors")
