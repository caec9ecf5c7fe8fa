"""Registry-wide model tests: shapes, no NaN, gradients, parameter counts, weight sharing."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from mammokit.config import LABEL_COLUMNS, VIEWS
from mammokit.models import create_model, list_models, register_model
from mammokit.models.breast import VARIANTS

BREAST = list(VARIANTS)
PATCH = ["densenet121_patch", "patchnet_small"]


def _views(c=1, b=2, seed=0, cc=(96, 80), mlo=(104, 72)):
    g = torch.Generator().manual_seed(seed)
    return {v: torch.randn(b, c, *(cc if v.endswith("CC") else mlo), generator=g) for v in VIEWS}


def test_registry_lists_every_model():
    assert set(BREAST + PATCH) <= set(list_models())


def test_duplicate_and_unknown_names_are_errors():
    with pytest.raises(ValueError, match="already registered"):

        @register_model
        def view_wise():  # noqa: F811
            return None

    with pytest.raises(ValueError, match="known models: .*view_wise"):
        create_model("resnet50")


@pytest.mark.parametrize("in_channels,expected", [(1, 6_132_592), (3, 6_135_728)])
def test_view_wise_parameter_count_matches_paper(in_channels, expected):
    model = create_model("view_wise", in_channels=in_channels)
    assert sum(p.numel() for p in model.parameters() if p.requires_grad) == expected


@pytest.mark.parametrize("variant", BREAST)
def test_every_variant_has_1024_hidden_units(variant):
    model = create_model(variant).eval()
    hidden = model.forward_hidden(_views(b=1))
    assert sum(h.shape[1] for h in hidden.values()) == 1024


def test_column_output_size_at_paper_windows():
    # Paper: 42 x 31 x 256 (CC 2677 x 1942) and 47 x 28 x 256 (MLO 2974 x 1748). Meta tensors: no compute.
    model = create_model("view_wise").to("meta")
    assert model.columns["cc"](torch.empty(1, 1, 2677, 1942, device="meta")).shape == (1, 256, 42, 31)
    assert model.columns["mlo"](torch.empty(1, 1, 2974, 1748, device="meta")).shape == (1, 256, 47, 28)


@pytest.mark.parametrize("task", ["cancer", "birads"])
@pytest.mark.parametrize("in_channels", [1, 3])
@pytest.mark.parametrize("variant", BREAST)
def test_breast_model_outputs(variant, in_channels, task):
    torch.manual_seed(0)
    model = create_model(variant, in_channels=in_channels, task=task).eval()
    views = _views(c=in_channels)
    out = model(views)
    k = 3 if task == "birads" else 2
    assert set(out) == set(model.output_labels)
    for group, logits in out.items():
        assert logits.shape == (2, len(model.output_labels[group]), k)
        assert torch.isfinite(logits).all()
    labels = [lab for labs in model.output_labels.values() for lab in labs]
    if task == "cancer":
        assert set(labels) == set(LABEL_COLUMNS)
    else:
        assert set(labels) == {"birads"}
    proba = model.predict_proba(views)
    assert proba.shape == (2, 3 if task == "birads" else 4)
    assert torch.isfinite(proba).all() and (proba >= 0).all() and (proba <= 1).all()
    if task == "birads":
        torch.testing.assert_close(proba.sum(1), torch.ones(2))
    feats = model.forward_features(views)
    assert set(feats) == set(VIEWS) and all(f.shape == (2, 256) for f in feats.values())


def test_view_wise_predict_proba_averages_cc_and_mlo():
    torch.manual_seed(1)
    model = create_model("view_wise").eval()
    views = _views()
    out = model(views)
    # Independent: column 1 of the 2-way softmax, label order = LABEL_COLUMNS, mean of CC and MLO.
    expected = (F.softmax(out["CC"], -1)[..., 1] + F.softmax(out["MLO"], -1)[..., 1]) / 2
    torch.testing.assert_close(model.predict_proba(views), expected)


def test_image_wise_scores_a_breast_from_the_views_present():
    torch.manual_seed(2)
    model = create_model("image_wise").eval()
    views = _views()
    full = model(views)
    partial = {v: views[v] for v in ("L-CC", "L-MLO")}
    proba = model.predict_proba(partial)
    # left_benign = mean over L-CC and L-MLO groups of softmax row 0 (benign) column 1.
    lb = (F.softmax(full["L-CC"], -1)[:, 0, 1] + F.softmax(full["L-MLO"], -1)[:, 0, 1]) / 2
    lm = (F.softmax(full["L-CC"], -1)[:, 1, 1] + F.softmax(full["L-MLO"], -1)[:, 1, 1]) / 2
    torch.testing.assert_close(proba[:, 0], lb)
    torch.testing.assert_close(proba[:, 2], lm)
    assert torch.isnan(proba[:, 1]).all() and torch.isnan(proba[:, 3]).all()
    only_rcc = model.predict_proba({"R-CC": views["R-CC"]})
    torch.testing.assert_close(only_rcc[:, 1], F.softmax(full["R-CC"], -1)[:, 0, 1])


def test_view_wise_with_a_missing_view_follows_the_documented_rule():
    torch.manual_seed(6)
    model = create_model("view_wise").eval()
    views = _views()
    partial = {v: x for v, x in views.items() if v != "R-MLO"}
    with torch.no_grad():
        f = {v: model.columns["cc" if v.endswith("CC") else "mlo"](views[v]).mean(dim=(2, 3)) for v in partial}
        zero = torch.zeros_like(f["L-MLO"])
        cc = model.output_layer_cc(F.relu(model.fc1_cc(torch.cat([f["L-CC"], f["R-CC"]], 1))))
        mlo = model.output_layer_mlo(F.relu(model.fc1_mlo(torch.cat([f["L-MLO"], zero], 1))))
    p_cc, p_mlo = F.softmax(cc, -1)[..., 1], F.softmax(mlo, -1)[..., 1]  # [B, 4] in LABEL_COLUMNS order
    # Left labels: both heads see a left view. Right labels: only the CC head sees R-CC.
    expected = torch.stack([(p_cc[:, 0] + p_mlo[:, 0]) / 2, p_cc[:, 1], (p_cc[:, 2] + p_mlo[:, 2]) / 2, p_cc[:, 3]], 1)
    torch.testing.assert_close(model.predict_proba(partial), expected)


@pytest.mark.parametrize("variant, expected", [
    # only L-CC available: the (group, label) pairs predicted, labels in each group's order
    # (view_wise / joint: left_benign, right_benign, left_malignant, right_malignant)
    ("view_wise", {"CC": [True, False, True, False], "MLO": [False, False, False, False]}),
    ("image_wise", {"L-CC": [True, True], "R-CC": [False, False], "L-MLO": [False, False], "R-MLO": [False, False]}),
    ("breast_wise", {"L": [True, True], "R": [False, False]}),
    ("joint", {"joint": [True, False, True, False]}),
])
def test_label_mask_rule(variant, expected):
    model = create_model(variant)
    avail = torch.tensor([[True, False, False, False]])
    mask = model.label_mask(avail)
    assert {g: m[0].tolist() for g, m in mask.items()} == expected
    full = model.label_mask(torch.ones(1, 4, dtype=torch.bool))
    assert all(m.all() for m in full.values())


@pytest.mark.parametrize("variant", BREAST)
def test_a_batch_mask_equals_leaving_the_view_out(variant):
    torch.manual_seed(7)
    model = create_model(variant).eval()
    views = _views(b=2)
    present = torch.tensor([[True] * 4, [True, True, False, True]])  # exam 1 lacks L-MLO
    batch = model.predict_proba(views, present)
    alone0 = model.predict_proba({v: x[:1] for v, x in views.items()})
    alone1 = model.predict_proba({v: x[1:] for v, x in views.items() if v != "L-MLO"})
    torch.testing.assert_close(batch[:1], alone0)
    torch.testing.assert_close(batch[1:], alone1, equal_nan=True)


def test_a_breast_without_views_has_no_prediction():
    model = create_model("view_wise").eval()
    views = _views()
    proba = model.predict_proba({"L-CC": views["L-CC"], "L-MLO": views["L-MLO"]})
    assert torch.isnan(proba[:, [1, 3]]).all() and torch.isfinite(proba[:, [0, 2]]).all()


def test_masked_loss_counts_only_the_predicted_labels():
    from mammokit.training.losses import breast_loss

    logits = {"g": torch.randn(3, 2, 2, generator=torch.Generator().manual_seed(8))}
    targets = {"a": torch.tensor([0, 1, 1]), "b": torch.tensor([1, 0, 1])}
    mask = {"g": torch.tensor([[True, False], [True, True], [False, True]])}
    got, _ = breast_loss(logits, {"g": ("a", "b")}, targets, mask)
    ce = lambda j, t: F.cross_entropy(logits["g"][:, j], t, reduction="none")  # noqa: E731
    want = (ce(0, targets["a"]) * mask["g"][:, 0]).sum() / 3 + (ce(1, targets["b"]) * mask["g"][:, 1]).sum() / 3
    torch.testing.assert_close(got, want)
    full, _ = breast_loss(logits, {"g": ("a", "b")}, targets, {"g": torch.ones(3, 2, dtype=torch.bool)})
    plain, _ = breast_loss(logits, {"g": ("a", "b")}, targets)
    torch.testing.assert_close(full, plain)


def test_wrong_channels_is_a_clear_error():
    model = create_model("view_wise", in_channels=3).eval()
    with pytest.raises(ValueError, match="view L-CC: expected a \\[B, 3, H, W\\]"):
        model(_views(c=1))


@pytest.mark.parametrize("variant", BREAST)
def test_gradients_reach_every_parameter(variant):
    torch.manual_seed(3)
    model = create_model(variant, in_channels=3).train()
    out = model(_views(c=3, b=2))
    loss = sum(F.cross_entropy(x.flatten(0, 1), torch.ones(x.shape[0] * x.shape[1], dtype=torch.long)) for x in out.values())
    loss.backward()
    for name, p in model.named_parameters():
        assert p.grad is not None, name
        assert torch.isfinite(p.grad).all() and p.grad.abs().sum() > 0, name


def test_cc_columns_share_weights_and_mlo_columns_do_not_share_with_cc():
    torch.manual_seed(4)
    model = create_model("view_wise").eval()
    x = torch.randn(1, 1, 96, 80)
    feats = model.forward_features({v: x for v in VIEWS})
    torch.testing.assert_close(feats["L-CC"], feats["R-CC"])
    torch.testing.assert_close(feats["L-MLO"], feats["R-MLO"])
    assert not torch.allclose(feats["L-CC"], feats["L-MLO"])
    # One tensor per shared column: the state dict holds exactly two first convs.
    assert [k for k in model.state_dict() if k.endswith("first_conv.weight")] == [
        "columns.cc.first_conv.weight",
        "columns.mlo.first_conv.weight",
    ]


def test_input_noise_only_in_training():
    torch.manual_seed(5)
    views = _views(b=2)
    noisy = create_model("view_wise", input_noise_std=0.01).train()
    a, b = noisy.forward_features(views)["L-CC"], noisy.forward_features(views)["L-CC"]
    assert not torch.equal(a, b)
    quiet = create_model("view_wise", input_noise_std=0.0).train()
    assert torch.equal(quiet.forward_features(views)["L-CC"], quiet.forward_features(views)["L-CC"])
    noisy.eval()
    assert torch.equal(noisy.forward_features(views)["L-CC"], noisy.forward_features(views)["L-CC"])


@pytest.mark.parametrize("name,size", [("densenet121_patch", 64), ("patchnet_small", 32)])
@pytest.mark.parametrize("num_classes", [3, 4])
def test_patch_models(name, size, num_classes):
    torch.manual_seed(6)
    model = create_model(name, num_classes=num_classes).train()
    x = torch.randn(2, 1, size, size)
    out = model(x)
    assert out.shape == (2, num_classes) and torch.isfinite(out).all()
    out.logsumexp(1).sum().backward()
    assert all(p.grad is not None for p in model.parameters())


def test_patchnet_small_is_small():
    n = sum(p.numel() for p in create_model("patchnet_small").parameters())
    assert 100_000 < n < 1_000_000


def test_birads_columns_initialise_a_heatmap_cancer_model():
    from mammokit.models import init_columns_from

    torch.manual_seed(7)
    birads = create_model("view_wise", task="birads", in_channels=1)
    cancer = create_model("view_wise", task="cancer", in_channels=3)
    head_before = cancer.fc1_cc.weight.clone()
    init_columns_from(cancer, birads)
    w1 = birads.columns["cc"].first_conv.weight
    w3 = cancer.columns["cc"].first_conv.weight
    assert w3.shape == (16, 3, 7, 7) and all(torch.equal(w3[:, i], w1[:, 0]) for i in range(3))
    assert torch.equal(cancer.columns["mlo"].final_bn.running_var, birads.columns["mlo"].final_bn.running_var)
    assert torch.equal(cancer.fc1_cc.weight, head_before)
