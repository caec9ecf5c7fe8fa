"""Speed levers of the heatmaps: exact background dedupe, the opt-in shared-layer approximation."""

import inspect

import pytest
import torch

from mammokit.heatmaps import compute_heatmaps, patch_probabilities_many
from mammokit.models.patch import PatchDenseNet121, patchnet_small


def _image_with_background(seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    img = torch.randn(300, 280, generator=g)
    img[:, 150:] = -1.5  # background: one constant after standardisation
    img[:90, :] = 2.0  # a second constant region
    return img


def test_dedupe_matches_plain_path():
    torch.manual_seed(0)
    model = patchnet_small(3, 1, 8).eval()
    img = _image_with_background()
    plain = compute_heatmaps(img, model, 64, 20, batch_size=7, device="cpu", dedupe=False)
    fast = compute_heatmaps(img, model, 64, 20, batch_size=7, device="cpu")
    # Same function; only the batch composition differs (CPU kernels are not bitwise batch-invariant).
    torch.testing.assert_close(fast, plain, rtol=0, atol=1e-6)


def test_dedupe_evaluates_each_constant_value_once():
    calls = []

    class Counting(torch.nn.Module):
        in_chans = 1

        def forward(self, x):
            calls.append(x.shape[0])
            m = x.mean(dim=(1, 2, 3))
            return torch.stack([m, -m, torch.zeros_like(m)], 1)

    img = torch.zeros(200, 200)
    img[:, :100] = torch.arange(100.0)  # varying columns; the right half is constant 0
    ys = xs = torch.tensor([0, 50, 100, 136])
    probs = patch_probabilities_many([img], Counting(), [(ys, xs)], 64, batch_size=100)[0]
    windows = [img[y:y + 64, x:x + 64] for y in ys for x in xs]
    n_const = sum(int(w.min() == w.max()) for w in windows)
    assert n_const > 1
    assert sum(calls) == len(windows) - n_const + 1
    expected = torch.softmax(torch.stack([torch.stack([w.mean(), -w.mean(), torch.tensor(0.0)]) for w in windows]), 1)
    torch.testing.assert_close(probs.view(-1, 3), expected)


def test_approx_shared_layers_off_by_default():
    from mammokit.heatmaps import compute_heatmaps_many

    assert inspect.signature(compute_heatmaps_many).parameters["approx_shared_layers"].default == 0


@pytest.mark.parametrize("level", [1, 2, 3])
def test_split_is_the_same_function(level):
    torch.manual_seed(0)
    model = PatchDenseNet121(4, 1, tf_same_padding=True).eval()
    trunk, head, stride = model.split(level)
    assert stride == {1: 4, 2: 8, 3: 16}[level]
    x = torch.randn(2, 1, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(head(trunk(x)), model(x), rtol=0, atol=1e-5)


def test_shared_layers_exact_on_a_single_patch_and_bounded_on_a_small_case():
    torch.manual_seed(0)
    model = PatchDenseNet121(4, 1, tf_same_padding=True).eval()
    one = torch.randn(64, 64)
    exact = compute_heatmaps(one, model, 64, 20, batch_size=8, device="cpu", dtype="fp32", rng=0)
    approx = compute_heatmaps(one, model, 64, 20, batch_size=8, device="cpu", dtype="fp32", rng=0, approx_shared_layers=2)
    torch.testing.assert_close(approx, exact, rtol=0, atol=1e-5)
    # Overlapping patches: the approximation differs (border context, start rounding). It is NOT
    # within the 0.01 heatmap bound in general (measured 0.016 here, 0.12-0.2 on real images with
    # a BN-calibrated DenseNet, benchmarks/cpu_heatmaps.py), hence opt-in; small-case bound 0.05.
    img = torch.randn(96, 128)
    exact = compute_heatmaps(img, model, 64, 16, batch_size=8, device="cpu", dtype="fp32", rng=0)
    approx = compute_heatmaps(img, model, 64, 16, batch_size=8, device="cpu", dtype="fp32", rng=0, approx_shared_layers=1)
    diff = (approx - exact).abs().max().item()
    assert 0 < diff <= 0.05


def test_shared_layers_need_a_splittable_model():
    model = patchnet_small(3, 1, 8).eval()
    with pytest.raises(ValueError, match="split"):
        compute_heatmaps(torch.randn(80, 80), model, 64, 16, batch_size=8, device="cpu", rng=0, approx_shared_layers=1)


@pytest.mark.parametrize("level", [0, 1])
def test_all_background_image(level):
    torch.manual_seed(0)
    model = PatchDenseNet121(4, 1, tf_same_padding=True).eval()
    img = torch.full((80, 96), -0.7)
    maps = compute_heatmaps(img, model, 64, 16, batch_size=8, device="cpu", dtype="fp32", rng=0, approx_shared_layers=level)
    with torch.no_grad():
        p = torch.softmax(model(torch.full((1, 1, 64, 64), -0.7)), 1)[0]
    torch.testing.assert_close(maps[:, 0, 0], p[:2], rtol=0, atol=1e-6)
    assert torch.all(maps == maps[:, :1, :1])


def test_static_batch_pads_the_last_batch_and_keeps_results():
    shapes = []

    class Recording(torch.nn.Module):
        in_chans = 1

        def forward(self, x):
            shapes.append(x.shape[0])
            m = x.mean(dim=(1, 2, 3))
            return torch.stack([m, -m, torch.zeros_like(m)], 1)

    img = torch.randn(200, 190, generator=torch.Generator().manual_seed(3))
    plain = compute_heatmaps(img, Recording(), 64, 30, batch_size=7, device="cpu")
    plain_shapes, shapes[:] = list(shapes), []
    static = compute_heatmaps(img, Recording(), 64, 30, batch_size=7, device="cpu", static_batch=True)
    assert plain_shapes[-1] != 7 and set(shapes) == {7}  # every forward sees the fixed batch
    assert sum(plain_shapes) == sum(min(7, s) for s in plain_shapes)
    torch.testing.assert_close(static, plain, rtol=0, atol=1e-7)


def test_static_batch_runs_a_large_batch_tail_in_eighths():
    """Large static batches: full batches, then the tail in pieces of batch/8 (two compiled
    shapes, at most batch/8 - 1 padded patches), results unchanged."""
    from mammokit.heatmaps.patches import run_batches

    shapes = []

    def model(x):
        shapes.append(x.shape[0])
        return torch.stack([x.flatten(1).sum(1), -x.flatten(1).sum(1)], 1)

    data = torch.randn(150, 1, 2, 2, generator=torch.Generator().manual_seed(0))
    got = run_batches(model, lambda sel: data[sel], 150, 64, torch.device("cpu"), torch.float32, None, static_batch=True)
    assert shapes == [64, 64, 8, 8, 8]  # 128 + a tail of 22 in three padded pieces of 8
    want = torch.softmax(torch.stack([data.flatten(1).sum(1), -data.flatten(1).sum(1)], 1), 1)
    torch.testing.assert_close(got, want)


def test_fp16_overflow_is_recomputed_in_fp32():
    """Patches whose fp16 forward overflows (non-finite output) are run again without autocast;
    the others keep their fp16 result."""
    from mammokit.heatmaps.sliding import patch_probabilities_many

    class Overflowing(torch.nn.Module):
        in_chans = 1

        def forward(self, x):
            m = x.mean(dim=(1, 2, 3)).float()
            out = torch.stack([m, -m], 1)
            if torch.is_autocast_enabled("cpu") and torch.get_autocast_dtype("cpu") == torch.float16:
                out[:, 0] += 0.25  # stands for the fp16 result
                out[m > 1.0] = float("inf")  # overflow on bright patches
            return out

    img = torch.zeros(128, 256)
    img[:, :64] = 2.0  # a bright column of patches (constant: one representative)
    img[:, 64:128] = torch.rand(128, 64)
    img[:, 128:] = torch.rand(128, 128) + 5.0  # bright, varying
    grid = (torch.tensor([0, 64]), torch.tensor([0, 64, 128, 192]))
    probs = patch_probabilities_many([img], Overflowing(), [grid], 64, batch_size=3, dtype=torch.float16)[0]
    assert torch.isfinite(probs).all()
    for i, y in enumerate(grid[0].tolist()):
        for j, x in enumerate(grid[1].tolist()):
            m = img[y:y + 64, x:x + 64].mean()
            shift = 0.0 if m > 1.0 else 0.25  # recomputed in fp32 vs kept fp16 result
            want = torch.softmax(torch.stack([m + shift, -m]), 0)
            torch.testing.assert_close(probs[i, j], want)


def test_exam_stream_equals_per_image_heatmaps():
    """compute_heatmaps_many (one patch stream over several images, batches spanning images,
    background shared across images) gives each image's compute_heatmaps result."""
    import random

    from mammokit.heatmaps.sliding import compute_heatmaps_many

    torch.manual_seed(0)
    model = patchnet_small(3, 1, 8).eval()
    imgs = [_image_with_background(s) for s in range(3)]
    imgs[1] = imgs[1][:200, :250].contiguous()  # a different size
    seeds = [3, 4, 5]
    many = compute_heatmaps_many(imgs, model, 64, 20, batch_size=9, device="cpu", dtype="fp32",
                                 rngs=[random.Random(s) for s in seeds])
    assert len(many) == 3
    for img, s, got in zip(imgs, seeds, many):
        want = compute_heatmaps(img, model, 64, 20, batch_size=9, device="cpu", dtype="fp32", rng=random.Random(s))
        assert got.shape == (2, *img.shape)
        torch.testing.assert_close(got, want, rtol=0, atol=1e-6)


def test_exam_stream_evaluates_a_shared_background_once():
    """Two images with the same constant background: the constant patch runs once in total, and
    every forward but the last is a full batch."""
    from mammokit.heatmaps.sliding import patch_probabilities_many

    calls = []

    class Counting(torch.nn.Module):
        in_chans = 1

        def forward(self, x):
            calls.append(x.shape[0])
            m = x.mean(dim=(1, 2, 3))
            return torch.stack([m, -m], 1)

    a = torch.zeros(128, 192)
    a[:, :64] = torch.arange(64.0)  # left third varying, rest 0
    b = torch.zeros(128, 128)
    b[:64, :64] = torch.rand(64, 64)
    grids = [(torch.tensor([0, 64]), torch.tensor([0, 64, 128])), (torch.tensor([0, 64]), torch.tensor([0, 64]))]
    probs = patch_probabilities_many([a, b], Counting(), grids, 64, batch_size=2)
    # a: 2 varying (column 0) + 4 zero patches; b: 1 varying + 3 zero patches -> 3 varying + 1 constant
    assert sum(calls) == 4 and calls == [2, 2]
    for img, (ys, xs), p in zip([a, b], grids, probs):
        assert p.shape == (len(ys), len(xs), 2)
        for i, y in enumerate(ys.tolist()):
            for j, x in enumerate(xs.tolist()):
                m = img[y:y + 64, x:x + 64].mean()
                torch.testing.assert_close(p[i, j], torch.softmax(torch.stack([m, -m]), 0))


def test_dtype_names_and_default_batch():
    from mammokit.heatmaps.sliding import default_batch_size
    from mammokit.utils.device import resolve_dtype

    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    assert resolve_dtype("fp16", cpu, "heatmaps") == torch.float16
    assert resolve_dtype("auto", cpu, "heatmaps") == torch.float32
    assert resolve_dtype("auto", cuda, "heatmaps") == torch.float16  # the measured-accurate GPU default
    assert resolve_dtype("auto", cuda, "models") == torch.bfloat16
    with pytest.raises(ValueError, match="unknown dtype"):
        resolve_dtype("int8", cpu, "heatmaps")
    assert default_batch_size(PatchDenseNet121(num_classes=3), "cpu") == 4
    assert default_batch_size(patchnet_small(3, 1, 8), "cpu") == 256
    assert default_batch_size(patchnet_small(3, 1, 8), "cuda") == 512


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device (run by benchmarks/gpu_check.sh)")
@pytest.mark.parametrize("dtype, atol", [("fp32", 1e-4), ("bf16", 0.1), ("fp16", 0.02)])
def test_cuda_exam_stream_matches_cpu(dtype, atol):
    """The CUDA path (patches cut on the device, channels_last, autocast) computes the CPU fp32
    heatmaps; fp32 with TF32 off within 1e-4, the autocast dtypes within their rounding."""
    import random

    from mammokit.heatmaps.sliding import compute_heatmaps_many

    torch.manual_seed(0)
    model = patchnet_small(3, 1, 8).eval()
    imgs = [_image_with_background(s) for s in range(2)]
    rngs = lambda: [random.Random(s) for s in (1, 2)]  # noqa: E731
    cpu = compute_heatmaps_many(imgs, model, 64, 20, batch_size=16, device="cpu", dtype="fp32", rngs=rngs())
    saved = torch.backends.cudnn.allow_tf32
    torch.backends.cudnn.allow_tf32 = False
    try:
        gpu = compute_heatmaps_many(imgs, model, 64, 20, batch_size=16, device="cuda", dtype=dtype, rngs=rngs())
    finally:
        torch.backends.cudnn.allow_tf32 = saved
    for a, b in zip(cpu, gpu):
        assert b.device.type == "cpu" and b.shape == a.shape
        torch.testing.assert_close(b, a, rtol=0, atol=atol)


@pytest.mark.slow  # one Inductor compile: ~15-60 s on 2 cores
@pytest.mark.skipif(not (__import__("shutil").which("c++") or __import__("shutil").which("g++")),
                    reason="torch.compile on the CPU needs a C++ compiler")
def test_compiled_patch_model_gives_the_eager_heatmaps():
    """compile_patch_model (Inductor, freezing, static shapes) through the exam stream with
    static batches: the eager heatmaps."""
    from mammokit.heatmaps.sliding import compile_patch_model, compute_heatmaps_many

    torch.manual_seed(0)
    model = patchnet_small(3, 1, 4).eval()
    imgs = [_image_with_background(0)[:150, :140].contiguous(), _image_with_background(1)[:130, :160].contiguous()]
    eager = compute_heatmaps_many(imgs, model, 32, 10, batch_size=64, device="cpu", dtype="fp32", rngs=[1, 2])
    compiled = compile_patch_model(model, "cpu")
    fast = compute_heatmaps_many(imgs, compiled, 32, 10, batch_size=64, device="cpu", dtype="fp32", rngs=[1, 2],
                                 channels_last=True, static_batch=True)
    for a, b in zip(eager, fast):
        torch.testing.assert_close(b, a, rtol=0, atol=1e-5)
