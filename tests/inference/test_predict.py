"""`mammokit predict`: parity with the reference computation, TTA, ensembles, missing views."""

from __future__ import annotations

import csv
import dataclasses

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from mammokit.config import LABEL_COLUMNS, PRESETS, PresetMismatchError
from mammokit.data.views import MissingHeatmapsError, load_view
from mammokit.inference.predict import predict
from mammokit.models import create_model, save_checkpoint
from tests.helpers.workdir import MICRO, make_workdir

TINY = PRESETS["tiny"]
VIEWS = ("L-CC", "R-CC", "L-MLO", "R-MLO")


# ----------------------------------------------------------------- authors' weight layout


def authors_state_dict(in_channels: int, seed: int) -> dict[str, torch.Tensor]:
    """A view-wise state dict in the authors' layout (reference-formats.md), random values.

    Columns ``four_view_resnet.{cc,mlo}.*`` aliased as ``l_cc``/``r_cc``/``l_mlo``/``r_mlo``;
    heads ``fc1_{cc,mlo}`` [512, 512], ``output_layer_{cc,mlo}.fc_layer`` [8, 512].
    """
    g = torch.Generator().manual_seed(seed)

    def normal(*shape, scale=1.0):
        return torch.randn(*shape, generator=g) * scale

    def bn(prefix, c, sd):
        sd[f"{prefix}.weight"] = 1 + 0.1 * normal(c)
        sd[f"{prefix}.bias"] = 0.1 * normal(c)
        sd[f"{prefix}.running_mean"] = 0.1 * normal(c)
        sd[f"{prefix}.running_var"] = 1 + 0.2 * normal(c).abs()
        sd[f"{prefix}.num_batches_tracked"] = torch.tensor(100)

    def conv(cout, cin, k):
        return normal(cout, cin, k, k, scale=(2 / (cin * k * k)) ** 0.5)

    sd = {}
    for col in ("cc", "mlo"):
        p = f"four_view_resnet.{col}"
        sd[f"{p}.first_conv.weight"] = conv(16, in_channels, 7)
        cin = 16
        for i, cout in enumerate((16, 32, 64, 128, 256)):
            for b in range(2):
                q = f"{p}.layer_list.{i}.{b}"
                bn(f"{q}.bn1", cin, sd)
                sd[f"{q}.conv1.weight"] = conv(cout, cin, 3)
                bn(f"{q}.bn2", cout, sd)
                sd[f"{q}.conv2.weight"] = conv(cout, cout, 3)
                if b == 0:
                    sd[f"{q}.downsample.0.weight"] = conv(cout, cin, 1)
                cin = cout
        bn(f"{p}.final_bn", 256, sd)
    for alias, col in (("l_cc", "cc"), ("r_cc", "cc"), ("l_mlo", "mlo"), ("r_mlo", "mlo")):
        for k in [k for k in sd if k.startswith(f"four_view_resnet.{col}.")]:
            sd[k.replace(f".{col}.", f".{alias}.", 1)] = sd[k]
    for head in ("cc", "mlo"):
        sd[f"fc1_{head}.weight"] = normal(512, 512, scale=512**-0.5)
        sd[f"fc1_{head}.bias"] = 0.1 * normal(512)
        sd[f"output_layer_{head}.fc_layer.weight"] = normal(8, 512, scale=512**-0.5)
        sd[f"output_layer_{head}.fc_layer.bias"] = 0.1 * normal(8)
    return sd


def reference_forward(sd: dict[str, torch.Tensor], x: dict[str, torch.Tensor]) -> torch.Tensor:
    """The reference SplitBreastModel in eval mode, re-derived with torch.nn.functional.

    x: {view: [B, C, h, w]} -> [B, 4] probabilities (LB, RB, LM, RM), mean of CC and MLO heads.
    """

    def bn(t, p):
        return F.batch_norm(t, sd[f"{p}.running_mean"], sd[f"{p}.running_var"], sd[f"{p}.weight"], sd[f"{p}.bias"],
                            training=False, eps=1e-5)

    def column(t, col):
        p = f"four_view_resnet.{col}"
        h = F.conv2d(t, sd[f"{p}.first_conv.weight"], stride=2)
        h = F.max_pool2d(h, 3, 2)
        for i, stride in enumerate((1, 2, 2, 2, 2)):
            for b in range(2):
                q = f"{p}.layer_list.{i}.{b}"
                out = F.relu(bn(h, f"{q}.bn1"))
                residual = F.conv2d(out, sd[f"{q}.downsample.0.weight"], stride=stride) if b == 0 else h
                out = F.conv2d(out, sd[f"{q}.conv1.weight"], stride=stride if b == 0 else 1, padding=1)
                out = F.conv2d(F.relu(bn(out, f"{q}.bn2")), sd[f"{q}.conv2.weight"], padding=1)
                h = out + residual
        return F.relu(bn(h, f"{p}.final_bn")).mean(dim=(2, 3))

    feats = {v: column(x[v], v.split("-")[1].lower()) for v in VIEWS}
    probs = []
    for head, (a, b) in (("cc", ("L-CC", "R-CC")), ("mlo", ("L-MLO", "R-MLO"))):
        h = F.relu(F.linear(torch.cat([feats[a], feats[b]], 1), sd[f"fc1_{head}.weight"], sd[f"fc1_{head}.bias"]))
        logits = F.linear(h, sd[f"output_layer_{head}.fc_layer.weight"], sd[f"output_layer_{head}.fc_layer.bias"])
        probs.append(F.log_softmax(logits.view(-1, 4, 2), -1).exp()[:, :, 1])
    return (probs[0] + probs[1]) / 2


def micro_workdir(root, **kwargs):
    """A work folder at the MICRO preset (CC window 107 x 78): fast model runs."""
    return make_workdir(root, preset="micro", preset_config=MICRO.to_dict(), **kwargs)


def reference_inputs(wd, exam, heatmaps: bool, preset) -> dict[str, torch.Tensor]:
    """The reference's evaluation window (no augmentation), computed by hand with numpy:
    zero-pad to the window size when smaller (CC rows: both sides; width: right), window around
    best_center shifted inside the image, image channel standardised, heatmaps untouched."""
    out = {}
    for v in VIEWS:
        img = load_view(wd, exam, v, heatmaps=heatmaps)
        h, w = preset.input_size(v)
        C, H, W = img.shape
        cy, cx = exam["best_center"][v][0]
        pad_top = (h - H) // 2 if H < h and v.endswith("CC") else 0
        pad_bottom = max(h - H, 0) - pad_top
        img = np.pad(img, ((0, 0), (pad_top, pad_bottom), (0, max(w - W, 0))))
        top = 0 if H < h else min(max(cy - h // 2, 0), H - h)
        left = 0 if W < w else min(max(cx - w // 2, 0), W - w)
        win = img[:, top : top + h, left : left + w].copy()
        win[0] = (win[0] - win[0].mean()) / max(win[0].std(), 1e-5)
        out[v] = torch.from_numpy(win)[None]
    return out


@pytest.fixture(scope="module")
def authors_checkpoints(tmp_path_factory):
    """Authors'-format weight files (image-only and image+heatmaps) converted to mammokit."""
    from mammokit.models.convert import import_weights

    d = tmp_path_factory.mktemp("weights")
    out = {}
    for c in (1, 3):
        sd = authors_state_dict(c, seed=c)
        torch.save({"model": sd}, d / f"authors_{c}.p")
        import_weights(d / f"authors_{c}.p", d / f"converted_{c}.safetensors", kind="view_wise")
        out[c] = (sd, d / f"converted_{c}.safetensors")
    return out


def read_predictions(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


# ----------------------------------------------------------------- parity


@pytest.mark.parametrize("channels, preset", [(1, MICRO), (3, MICRO)], ids=["image", "heatmaps"])
def test_deterministic_predictions_match_reference_computation(tmp_path, authors_checkpoints, channels, preset):
    exam_ids = ("e0", "e1")
    wd, exams = make_workdir(
        tmp_path, exam_ids=exam_ids, heatmaps=channels == 3, seed=5, preset=preset.name,
        preset_config=preset.to_dict(),
    )
    sd, ckpt = authors_checkpoints[channels]
    # The authors' weights record the paper preset: running them on this small work folder takes
    # an explicit --preset (a warning), where the default (auto) refuses the mismatch.
    with pytest.raises(PresetMismatchError, match=r"work folder .* preset micro .* paper"):
        predict(wd, [ckpt], tta=0, device="cpu")
    result = predict(wd, [ckpt], tta=0, device="cpu", dtype="fp32", output=tmp_path / "pred.csv", preset=preset)
    assert result.exam_ids == list(exam_ids) and not result.skipped
    for i, exam in enumerate(exams):
        with torch.no_grad():
            expected = reference_forward(sd, reference_inputs(wd, exam, heatmaps=channels == 3, preset=preset))[0].numpy()
        np.testing.assert_allclose(result.probabilities[i], expected, atol=1e-4, rtol=0)
    rows = read_predictions(tmp_path / "pred.csv")
    assert list(rows[0]) == ["exam_id", *LABEL_COLUMNS, "views"]
    assert [r["exam_id"] for r in rows] == list(exam_ids)
    for row, p in zip(rows, result.probabilities):
        assert all(len(row[c].split(".")[1]) == 4 for c in LABEL_COLUMNS)
        np.testing.assert_allclose([float(row[c]) for c in LABEL_COLUMNS], p, atol=5e-5)
    assert read_predictions(tmp_path / "pred.skipped.csv") == []


# ----------------------------------------------------------------- TTA, ensembles


@pytest.fixture(scope="module")
def tiny_models(tmp_path_factory):
    d = tmp_path_factory.mktemp("models")
    paths = {}
    for name, arch, seed in (("vw_a", "view_wise", 0), ("vw_b", "view_wise", 1), ("iw", "image_wise", 2)):
        torch.manual_seed(seed)
        model = create_model(arch, in_channels=1)
        save_checkpoint(d / f"{name}.safetensors", model, arch=arch, model_args={"in_channels": 1}, preset=MICRO)
        paths[name] = d / f"{name}.safetensors"
    return paths


def test_tta_seeded_and_order_independent(tmp_path, tiny_models):
    from mammokit.inference.predict import load_models, predict_exams

    wd, exams = micro_workdir(tmp_path, exam_ids=("e0", "e1"))
    models = load_models([tiny_models["vw_a"]], "cpu")
    a = predict(wd, [tiny_models["vw_a"]], tta=2, seed=0, device="cpu")
    # Same seed, exam scored alone (other order, other neighbours): the same numbers.
    # (batch_size=1: the draws in two forwards, which must not change the result either.)
    alone = predict_exams(wd, [exams[1]], models, MICRO, tta=2, seed=0, batch_size=1)
    np.testing.assert_allclose(alone.probabilities[0], a.probabilities[1], atol=1e-6, rtol=0)
    # Another seed: other windows, other numbers; and TTA differs from the deterministic window.
    other = predict_exams(wd, [exams[0]], models, MICRO, tta=2, seed=1)
    det = predict_exams(wd, [exams[0]], models, MICRO, tta=0)
    assert not np.allclose(other.probabilities[0], a.probabilities[0], atol=1e-7)
    assert not np.allclose(det.probabilities[0], a.probabilities[0], atol=1e-7)


def test_tta1_without_noise_equals_tta0(tmp_path, tiny_models):
    quiet = dataclasses.replace(MICRO, max_crop_noise=0, max_crop_size_noise=0)
    wd, _ = make_workdir(tmp_path, exam_ids=("e0",), preset="micro", preset_config=quiet.to_dict())
    one = predict(wd, [tiny_models["vw_a"]], tta=1, device="cpu")
    zero = predict(wd, [tiny_models["vw_a"]], tta=0, device="cpu")
    np.testing.assert_allclose(one.probabilities, zero.probabilities, atol=1e-6)


def test_ensemble_is_mean_of_members(tmp_path, tiny_models):
    wd, _ = micro_workdir(tmp_path, exam_ids=("e0",))
    a = predict(wd, [tiny_models["vw_a"]], tta=1, device="cpu")
    b = predict(wd, [tiny_models["vw_b"]], tta=1, device="cpu")
    both = predict(wd, [tiny_models["vw_a"], tiny_models["vw_b"]], tta=1, device="cpu")
    np.testing.assert_allclose(both.probabilities, (a.probabilities + b.probabilities) / 2, atol=1e-6)


# ----------------------------------------------------------------- missing inputs


def test_exams_missing_views_are_scored_from_the_views_they_have(tmp_path, tiny_models):
    from mammokit.data.views import load_exam_views, make_model_inputs
    from mammokit.models import load_model

    wd, exams = micro_workdir(
        tmp_path, exam_ids=("full", "noRMLO", "noRight"),
        missing={"noRMLO": ["R-MLO"], "noRight": ["R-CC", "R-MLO"]},
    )
    out = tmp_path / "p.csv"
    for name in ("vw_a", "iw"):
        res = predict(wd, [tiny_models[name]], tta=0, device="cpu", output=out)
        assert res.exam_ids == ["full", "noRMLO", "noRight"] and not res.skipped  # never dropped
        assert res.views == ["L-CC;R-CC;L-MLO;R-MLO", "L-CC;R-CC;L-MLO", "L-CC;L-MLO"]
        # No view of the right breast: no right-breast prediction (empty cells), the left one scored.
        assert np.isnan(res.probabilities[2, [1, 3]]).all() and np.isfinite(res.probabilities[2, [0, 2]]).all()
        assert np.isfinite(res.probabilities[:2]).all()
        rows = read_predictions(out)
        assert rows[2]["right_benign"] == "" and rows[2]["views"] == "L-CC;L-MLO"
        # Each exam's probabilities are the model's rule applied to the views the exam has.
        model, _ = load_model(tiny_models[name])
        for k in (1, 2):
            inputs = make_model_inputs(load_exam_views(wd, exams[k]), exams[k], MICRO, None, 1, augment=False)
            np.testing.assert_allclose(model.predict_proba(inputs)[0].numpy(), res.probabilities[k], atol=1e-6)


def test_missing_heatmaps_is_a_clear_error(tmp_path, authors_checkpoints):
    wd, _ = make_workdir(tmp_path, exam_ids=("e0",))
    with pytest.raises(MissingHeatmapsError, match=r"no heatmaps.*run `mammokit heatmaps"):
        predict(wd, [authors_checkpoints[3][1]], tta=0, device="cpu")


def test_unreadable_image_is_skipped_or_fatal_with_strict(tmp_path, tiny_models):
    wd, _ = micro_workdir(tmp_path, exam_ids=("ok", "bad"))
    (wd / "cropped" / "bad_L_CC.png").write_bytes(b"not a png")
    result = predict(wd, [tiny_models["vw_a"]], tta=0, device="cpu")
    assert result.exam_ids == ["ok"]
    assert result.skipped[0][0] == "bad" and "bad_L_CC.png" in result.skipped[0][1]
    with pytest.raises(ValueError, match=r"exam bad: .*bad_L_CC\.png"):
        predict(wd, [tiny_models["vw_a"]], tta=0, device="cpu", strict=True)


def test_cli_predict_writes_csv(tmp_path, tiny_models):
    from mammokit.cli import main

    wd, _ = micro_workdir(tmp_path, exam_ids=("e0", "e1"), missing={"e1": ["L-CC"]})
    out = tmp_path / "preds.csv"
    rc = main(["predict", str(wd), "--model", str(tiny_models["vw_a"]), "--tta", "0", "--device", "cpu", "-o", str(out)])
    assert rc == 0
    rows = read_predictions(out)
    assert [(r["exam_id"], r["views"]) for r in rows] == [("e0", "L-CC;R-CC;L-MLO;R-MLO"), ("e1", "R-CC;L-MLO;R-MLO")]
    assert read_predictions(tmp_path / "preds.skipped.csv") == []
    assert main(["predict", str(wd), "--model", str(tmp_path / "nope.safetensors")]) == 2


def test_split_selects_exams(tmp_path, tiny_models):
    from mammokit.data.examlist import load_exams, save_exams
    from mammokit.inference.predict import PredictError

    wd, _ = micro_workdir(tmp_path, exam_ids=("e0", "e1", "e2"))
    exams, meta = load_exams(wd / "exams.json")
    for exam, split in zip(exams, ("train", "test", "test")):
        exam["split"] = split
    save_exams(wd / "exams.json", exams, **meta)
    everything = predict(wd, [tiny_models["vw_a"]], tta=1, device="cpu")
    test = predict(wd, [tiny_models["vw_a"]], tta=1, device="cpu", split="test")
    assert test.exam_ids == ["e1", "e2"]
    np.testing.assert_allclose(test.probabilities, everything.probabilities[1:], atol=1e-6, rtol=0)
    with pytest.raises(PredictError, match="no exam has split == 'validation'"):
        predict(wd, [tiny_models["vw_a"]], tta=1, device="cpu", split="validation")
