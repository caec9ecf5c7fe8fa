"""The one device / dtype resolver, and what happens when the GPU runs out of memory."""

from __future__ import annotations

import pytest
import torch

from mammokit.errors import MammokitError, ResourceError, UsageError
from mammokit.utils.device import autocast, dtype_name, resolve_device, resolve_dtype

CPU, CUDA = torch.device("cpu"), torch.device("cuda")


def test_resolve_device():
    assert resolve_device("cpu") == CPU
    expected = torch.device("cuda:0") if torch.cuda.is_available() else CPU
    assert resolve_device("auto") == expected and resolve_device(None) == expected
    with pytest.raises(UsageError, match="unknown device 'gpu7'"):
        resolve_device("gpu7")
    if not torch.cuda.is_available():
        with pytest.raises(UsageError, match="CUDA is not available"):
            resolve_device("cuda")


@pytest.mark.parametrize("purpose, cuda_auto", [("heatmaps", torch.float16), ("models", torch.bfloat16),
                                                ("training", torch.bfloat16)])
def test_dtype_defaults_per_purpose(purpose, cuda_auto, monkeypatch):
    import mammokit.utils.device as D

    # Heatmaps default to fp16 on CUDA (within 1e-3 of fp32, bf16 is not). On the CPU inference
    # takes bf16 only with bf16 hardware; training stays fp32.
    assert resolve_dtype("auto", CUDA, purpose) == cuda_auto
    monkeypatch.setattr(D, "cpu_has_fast_bf16", lambda: False)
    assert resolve_dtype(None, CPU, purpose) == torch.float32
    monkeypatch.setattr(D, "cpu_has_fast_bf16", lambda: True)
    assert resolve_dtype("auto", CPU, purpose) == (torch.float32 if purpose == "training" else torch.bfloat16)
    assert resolve_dtype("fp32", CPU, purpose) == torch.float32
    assert resolve_dtype("bf16", CPU, purpose) == torch.bfloat16
    assert resolve_dtype("float16", CPU, purpose) == torch.float16
    assert resolve_dtype(torch.float32, CUDA, purpose) == torch.float32


def test_bad_dtype_is_a_user_error():
    with pytest.raises(UsageError, match="unknown dtype 'int8'"):
        resolve_dtype("int8", CPU, "heatmaps")
    assert issubclass(UsageError, MammokitError) and issubclass(UsageError, ValueError)


def test_dtype_names_round_trip():
    for name in ("fp32", "bf16", "fp16"):
        assert dtype_name(resolve_dtype(name, CPU, "models")) == name


def test_autocast_fp32_is_exact_and_bf16_is_not():
    x = torch.randn(8, 8, generator=torch.Generator().manual_seed(0))
    with autocast(CPU, torch.float32):
        exact = x @ x
    with autocast(CPU, torch.bfloat16):
        reduced = x @ x
    assert torch.equal(exact, x @ x) and reduced.dtype == torch.bfloat16


class _Limited(torch.nn.Module):
    """Raises CUDA's out-of-memory error on batches larger than ``limit`` (as a GPU would)."""

    in_chans = 1

    def __init__(self, limit: int) -> None:
        super().__init__()
        self.limit, self.shapes = limit, []

    def forward(self, x):
        if x.shape[0] > self.limit:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        self.shapes.append(x.shape[0])
        s = x.flatten(1).sum(1)
        return torch.stack([s, -s, 0 * s], 1)


def test_heatmap_batches_shrink_on_out_of_memory_with_the_same_results():
    from mammokit.heatmaps.patches import run_batches

    data = torch.randn(100, 1, 3, 3, generator=torch.Generator().manual_seed(1))
    want = run_batches(_Limited(10**9), lambda sel: data[sel], 100, 64, CPU, torch.float32)
    model = _Limited(20)
    got = run_batches(model, lambda sel: data[sel], 100, 64, CPU, torch.float32)
    torch.testing.assert_close(got, want, rtol=0, atol=1e-6)
    assert max(model.shapes) == 16 and sum(model.shapes) == 100  # 64 -> 32 -> 16, then all at 16


def test_heatmaps_out_of_memory_at_one_patch_is_a_clear_error():
    from mammokit.heatmaps.patches import run_batches

    data = torch.zeros(4, 1, 3, 3)
    with pytest.raises(ResourceError, match="out of GPU memory .* one patch per forward"):
        run_batches(_Limited(0), lambda sel: data[sel], 4, 4, CPU, torch.float32)


def test_predict_draws_shrink_on_out_of_memory_with_the_same_probabilities():
    from mammokit.inference.predict import LoadedModel, _score

    class Model:
        def __init__(self, limit):
            self.limit, self.sizes = limit, []

        def predict_proba(self, views):
            n = views["L-CC"].shape[0]
            if n > self.limit:
                raise torch.cuda.OutOfMemoryError("CUDA out of memory")
            self.sizes.append(n)
            return torch.sigmoid(views["L-CC"].mean(dim=(1, 2, 3)))[:, None].repeat(1, 4)

    inputs = {"L-CC": torch.randn(10, 1, 4, 4, generator=torch.Generator().manual_seed(2))}
    whole = _score(LoadedModel("m", Model(100), 1, ()), inputs, 10, torch.float32, CPU)
    small = Model(3)
    got = _score(LoadedModel("m", small, 1, ()), inputs, 10, torch.float32, CPU)
    torch.testing.assert_close(got, whole)
    assert small.sizes == [2, 2, 2, 2, 2]  # 10 -> 5 -> 2 draws per forward
    with pytest.raises(ResourceError, match="m: out of GPU memory"):
        _score(LoadedModel("m", Model(0), 1, ()), inputs, 10, torch.float32, CPU)


def test_training_out_of_memory_says_what_to_change():
    from mammokit.training.common import out_of_memory_is_fatal

    with pytest.raises(ResourceError, match="lower --batch-size .* --resume"):
        with out_of_memory_is_fatal(CPU, "exams per step"):
            raise torch.cuda.OutOfMemoryError("CUDA out of memory")
    with pytest.raises(RuntimeError, match="a bug"):  # anything else passes through untouched
        with out_of_memory_is_fatal(CPU, "exams per step"):
            raise RuntimeError("a bug")


def test_bf16_hardware_is_read_from_the_cpu_flags():
    from mammokit.utils.device import cpuinfo_has_bf16

    zen3 = "processor\t: 0\nflags\t\t: fpu sse sse2 avx avx2 fma\nbugs\t: x\n"
    sapphire = "processor\t: 0\nflags\t\t: avx2 avx512f avx512_bf16 amx_bf16 amx_tile\n"
    zen4 = "flags\t: avx2 avx512f avx512_bf16\n"
    assert cpuinfo_has_bf16(zen3) is False
    assert cpuinfo_has_bf16(sapphire) is True and cpuinfo_has_bf16(zen4) is True
    assert cpuinfo_has_bf16("processor\t: 0\n") is None
