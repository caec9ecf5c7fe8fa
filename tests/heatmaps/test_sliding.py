"""Sliding-window heatmaps against a slow, independent loop over the reference's patch layout."""

from __future__ import annotations

import random

import numpy as np
import pytest
import torch
import torch.nn as nn

from mammokit.heatmaps import compute_heatmaps, patch_starts, stride_list
from mammokit.models import create_model
from mammokit.transforms import standardize_image


def ref_strides(length, patch, stride, rnd):
    """The reference's fixed-stride layout, re-derived: last patch ends at the image edge."""
    n_lo = (length - patch) // stride + 1
    left = (length - patch) % stride
    if left == 0:
        return [stride] * (n_lo - 1)
    overlap = stride - left
    steps = n_lo
    out = [stride - overlap // steps] * steps
    for k in rnd.sample(range(steps), overlap % steps):
        out[k] -= 1
    return out


def slow_heatmaps(image, patch_fn, patch, stride, seed):
    """Reference-style loop: rows then columns strides from one Random; float64 sums and counts."""
    rnd = random.Random(seed)
    h, w = image.shape
    ys = np.cumsum([0] + ref_strides(h, patch, stride, rnd))
    xs = np.cumsum([0] + ref_strides(w, patch, stride, rnd))
    prob = np.zeros((2, h, w))
    count = np.zeros((h, w))
    for y in ys:
        for x in xs:
            p = patch_fn(image[y:y + patch, x:x + patch])
            prob[:, y:y + patch, x:x + patch] += np.asarray(p[:2])[:, None, None]
            count[y:y + patch, x:x + patch] += 1
    return prob / count


class MeanModel(nn.Module):
    """Logits that are known functions of the patch mean: softmax([2m, -m, 0.5])."""

    in_chans = 1
    num_classes = 3

    def __init__(self):
        super().__init__()
        self.max_batch = 0
        self.seen = 0

    def forward(self, x):
        self.max_batch = max(self.max_batch, x.shape[0])
        self.seen += x.shape[0]
        m = x.double().mean(dim=(1, 2, 3))
        return torch.stack([2 * m, -m, torch.full_like(m, 0.5)], 1)


def mean_model_np(p):
    m = p.mean()
    z = np.array([2 * m, -m, 0.5])
    e = np.exp(z - z.max())
    return e / e.sum()


def test_stride_list_reaches_both_edges():
    s = stride_list(300, 64, 18, random.Random(0))
    # 300 - 64 = 236 = 13 * 18 + 2: 14 steps of 17, two of them 16 (overlap 16 = 14 + 2).
    assert len(s) == 14 and sum(s) == 236 and sorted(set(s)) == [16, 17] and s.count(16) == 2
    assert [i for i, v in enumerate(s) if v == 16] == sorted(random.Random(0).sample(range(14), 2))
    assert stride_list(64 + 3 * 18, 64, 18, random.Random(0)) == [18, 18, 18]
    assert stride_list(64, 64, 18, random.Random(0)) == []
    assert list(patch_starts(82, 64, 18, random.Random(0))) == [0, 18]
    assert list(patch_starts(70, 64, 18, random.Random(0))) == [0, 6]
    with pytest.raises(ValueError, match="smaller than the patch size"):
        stride_list(50, 64, 18, random.Random(0))


@pytest.mark.parametrize("shape,patch,stride", [((150, 110), 32, 20), ((97, 64), 32, 13), ((64, 40), 40, 7)])
def test_matches_slow_reference_loop(shape, patch, stride):
    rs = np.random.default_rng(0)
    image = standardize_image(rs.integers(0, 65535, size=shape).astype(np.uint16))
    expected = slow_heatmaps(image.double().numpy(), mean_model_np, patch, stride, seed=3)
    got = compute_heatmaps(image, MeanModel(), patch, stride, batch_size=16, device="cpu", dtype="fp32", rng=3)
    assert got.shape == (2, *shape) and got.dtype == torch.float32
    np.testing.assert_allclose(got.numpy(), expected, atol=1e-6)


def test_batch_size_bounds_memory_and_does_not_change_results():
    image = torch.randn(120, 100)
    results = []
    for bs in (1, 7, 64, 10_000):
        model = MeanModel()
        results.append(compute_heatmaps(image, model, 32, 15, batch_size=bs, device="cpu", rng=1))
        n = len(patch_starts(120, 32, 15, random.Random(1))) * len(patch_starts(100, 32, 15, random.Random(1)))
        assert model.seen == n and model.max_batch == min(bs, n)
    for r in results[1:]:
        assert torch.equal(r, results[0])


def test_real_network_patch_by_patch():
    torch.manual_seed(0)
    model = create_model("patchnet_small", num_classes=3, width=4).eval()
    image = standardize_image(np.random.default_rng(1).normal(size=(70, 60)))

    def fn(p):
        with torch.no_grad():
            return torch.softmax(model(torch.from_numpy(np.ascontiguousarray(p)).float()[None, None]), 1)[0].double().numpy()

    expected = slow_heatmaps(image.numpy(), fn, 32, 12, seed=5)
    got = compute_heatmaps(image, model, 32, 12, batch_size=5, device="cpu", rng=5)
    np.testing.assert_allclose(got.numpy(), expected, atol=1e-5)
    assert float(got.min()) >= 0 and float(got.max()) <= 1


def test_three_channel_model_sees_the_repeated_channel():
    class Three(MeanModel):
        in_chans = 3

        def forward(self, x):
            assert x.shape[1] == 3 and torch.equal(x[:, 0], x[:, 2])
            return super().forward(x[:, :1])

    image = torch.randn(50, 40)
    a = compute_heatmaps(image, Three(), 32, 8, device="cpu", rng=0)
    b = compute_heatmaps(image, MeanModel(), 32, 8, device="cpu", rng=0)
    assert torch.equal(a, b)


def test_bf16_autocast_runs_on_cpu():
    torch.manual_seed(0)
    model = create_model("patchnet_small", width=4)
    image = torch.randn(48, 40)
    fp32 = compute_heatmaps(image, model, 32, 8, device="cpu", dtype="fp32", rng=0)
    bf16 = compute_heatmaps(image, model, 32, 8, device="cpu", dtype="bf16", rng=0)
    assert (fp32 - bf16).abs().max() < 0.05


def test_standardize_image_matches_numpy():
    x = np.random.default_rng(2).integers(0, 4000, size=(30, 20)).astype(np.uint16)
    ref = (x.astype(float) - x.mean()) / max(x.std(), 1e-5)
    np.testing.assert_allclose(standardize_image(x).numpy(), ref, rtol=1e-6, atol=1e-6)
    assert torch.equal(standardize_image(np.zeros((5, 5))), torch.zeros(5, 5))


def test_bad_inputs():
    with pytest.raises(ValueError, match="smaller than the 64 x 64 patch"):
        compute_heatmaps(torch.zeros(40, 100), MeanModel(), 64, 10, device="cpu")
    with pytest.raises(ValueError, match="expected an \\[H, W\\] image"):
        compute_heatmaps(torch.zeros(1, 40, 100), MeanModel(), 16, 10, device="cpu")


@pytest.mark.parametrize("stride", [0, 65])
def test_a_stride_that_leaves_pixels_uncovered_is_a_user_error(stride):
    from mammokit.errors import UsageError

    with pytest.raises(UsageError, match="stride must be between 1 and the patch size 64"):
        stride_list(300, 64, stride, random.Random(0))
