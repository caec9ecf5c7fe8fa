"""Heatmap files and the work-folder run (`mammokit heatmaps`)."""

from __future__ import annotations

import random

import h5py
import numpy as np
import pytest
import torch

from mammokit.cli import main
from mammokit.config import VIEWS
from mammokit.data.examlist import load_exams, save_exams
from mammokit.data.heatmap_io import read_heatmap, write_heatmap
from mammokit.data.images import write_png16
from mammokit.heatmaps import compute_heatmaps
from mammokit.inference.heatmaps import make_heatmaps
from mammokit.models import create_model, save_checkpoint
from mammokit.transforms import standardize_image
from mammokit.utils.seed import derive_seed


def test_png_round_trip(tmp_path):
    hm = np.random.default_rng(0).random((40, 30)).astype(np.float32)
    hm[0, 0], hm[0, 1] = 0.0, 1.0
    write_heatmap(tmp_path / "a.png", hm)
    back = read_heatmap(tmp_path / "a.png")
    assert back.shape == (40, 30) and back.dtype == np.float32
    np.testing.assert_allclose(back, np.rint(hm * 65535) / 65535, atol=1e-7)
    assert back[0, 0] == 0 and back[0, 1] == 1


def test_hdf5_is_the_authors_layout(tmp_path):
    hm = np.random.default_rng(1).random((40, 30)).astype(np.float32)
    write_heatmap(tmp_path / "a.hdf5", hm)
    with h5py.File(tmp_path / "a.hdf5", "r") as f:
        ds = f["image"]
        assert ds.shape == (30, 40) and ds.dtype == np.float32 and ds.compression == "lzf"
        np.testing.assert_array_equal(ds[()], hm.T)
    np.testing.assert_array_equal(read_heatmap(tmp_path / "a.hdf5"), hm)


def test_bad_heatmaps_are_rejected(tmp_path):
    with pytest.raises(ValueError, match="x.png: heatmap values must be probabilities"):
        write_heatmap(tmp_path / "x.png", np.full((4, 4), 1.5))
    with pytest.raises(ValueError, match="x.npy: unknown heatmap format"):
        write_heatmap(tmp_path / "x.npy", np.zeros((4, 4)))
    (tmp_path / "bad.hdf5").write_bytes(b"nope")
    with pytest.raises(ValueError, match="bad.hdf5: not a readable HDF5 file"):
        read_heatmap(tmp_path / "bad.hdf5")


def _workdir(tmp_path, flip="NO"):
    wd = tmp_path / "work"
    rs = np.random.default_rng(0)
    exam = {"exam_id": "e1", "horizontal_flip": flip}
    for v in VIEWS:
        name = f"e1_{v.replace('-', '_')}"
        exam[v] = [name]
        write_png16(wd / "cropped" / f"{name}.png", rs.integers(0, 4096, size=(50, 44)).astype(np.uint16))
    save_exams(wd / "exams.json", [exam], preset="tiny", image_dir="cropped")
    torch.manual_seed(0)
    model = create_model("patchnet_small", width=4).eval()
    ckpt = tmp_path / "patch.safetensors"
    save_checkpoint(ckpt, model, arch="patchnet_small", model_args={"width": 4}, preset="tiny")
    return wd, ckpt, model


def test_make_heatmaps_writes_flipped_back_maps_and_resumes(tmp_path):
    wd, ckpt, model = _workdir(tmp_path)
    summary = make_heatmaps(wd, ckpt, batch_size=16, device="cpu", reference_layout=True, seed=4)
    assert summary["done"] == 4 and summary["failed"] == 0 and summary["patch_size"] == 32 and summary["stride"] == 9
    exams, meta = load_exams(wd / "exams.json")
    assert meta["preset"] == "tiny"
    assert exams[0]["heatmap_malignant"]["R-CC"] == ["heatmaps/malignant/e1_R_CC.png"]
    # Independent: R image flipped for the model, maps flipped back; stride placement seeded by (seed, name).
    from mammokit.data.images import read_image

    raw = read_image(wd / "cropped" / "e1_R_CC.png")
    x = standardize_image(np.ascontiguousarray(raw[:, ::-1]))
    maps = compute_heatmaps(x, model, 32, 9, device="cpu", rng=random.Random(derive_seed(4, "e1_R_CC"))).numpy()[:, :, ::-1]
    np.testing.assert_allclose(read_heatmap(wd / "heatmaps/malignant/e1_R_CC.png"), maps[0], atol=1 / 65535)
    np.testing.assert_allclose(read_heatmap(wd / "heatmaps/benign/e1_R_CC.png"), maps[1], atol=1 / 65535)
    np.testing.assert_allclose(read_heatmap(wd / "heatmap_benign/e1_R_CC.hdf5"), maps[1], atol=1e-6)
    # Resume: nothing recomputed; a temporary left by a killed write (atomic_path's name) is
    # cleared, the finished maps are kept as they were.
    stale = wd / "heatmaps/benign/.e1_L_MLO.tmp-abc123.png"
    stale.write_bytes(b"half a png")
    before = (wd / "heatmaps/benign/e1_R_CC.png").read_bytes()
    again = make_heatmaps(wd, ckpt, device="cpu", reference_layout=True, seed=4)
    assert again["done"] == 0 and again["skipped"] == 4
    assert not stale.exists() and (wd / "heatmaps/benign/e1_R_CC.png").read_bytes() == before


def test_bad_image_is_reported_and_skipped(tmp_path):
    wd, ckpt, _ = _workdir(tmp_path)
    (wd / "cropped" / "e1_L_MLO.png").write_bytes(b"not a png")
    summary = make_heatmaps(wd, ckpt, device="cpu")
    assert summary["done"] == 3 and summary["failed"] == 1
    report = (wd / "heatmap_failures.csv").read_text()
    assert "e1_L_MLO" in report
    exams, _ = load_exams(wd / "exams.json")
    assert exams[0]["heatmap_malignant"]["L-MLO"] == [None]
    with pytest.raises(ValueError, match="e1_L_MLO.png"):
        make_heatmaps(wd, ckpt, device="cpu", strict=True)


def test_cli(tmp_path, capsys):
    wd, ckpt, _ = _workdir(tmp_path, flip="YES")
    assert main(["heatmaps", str(wd), "--patch-model", str(ckpt), "--device", "cpu", "--batch-size", "8"]) == 0
    assert "4 images done" in capsys.readouterr().out
    assert (wd / "heatmaps/benign/e1_L_CC.png").is_file()
    assert main(["heatmaps", str(wd), "--patch-model", str(tmp_path / "none.safetensors")]) == 2
    wd2, ckpt2, _ = _workdir(tmp_path / "b")
    assert main(["heatmaps", str(wd2), "--patch-model", str(ckpt2), "--device", "cpu", "--compile", "off",
                 "--dtype", "fp32"]) == 0
    assert "4 images done" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        main(["heatmaps", str(wd2), "--patch-model", str(ckpt2), "--compile", "sometimes"])


def test_compile_auto_decides_by_job_size_and_model():
    from mammokit.heatmaps import num_patches
    from mammokit.inference.heatmaps import _patches_estimate, should_compile
    from mammokit.models.patch import PatchDenseNet121

    dn = PatchDenseNet121(num_classes=3)
    small = create_model("patchnet_small", width=4)
    assert should_compile(dn, torch.device("cpu"), 8000) and not should_compile(dn, torch.device("cpu"), 7999)
    assert not should_compile(dn, torch.device("cuda"), 999_999) and should_compile(dn, torch.device("cuda"), 10**6)
    assert not should_compile(small, torch.device("cpu"), 10**7)  # not measured: never automatic
    exam = {"window_location": {"L-CC": [(100, 2524, 40, 1202)]}}
    assert _patches_estimate(exam, "L-CC", 0, 256, 70) == num_patches(2424, 1162, 256, 70) == 448
    assert _patches_estimate(exam, "R-CC", 0, 256, 70) == 0  # unknown: not counted


def test_failed_automatic_compile_falls_back_to_eager(tmp_path, monkeypatch, caplog):
    """compile="auto": a compile that fails at its first call is reported and the job goes on
    eager with the same results; compile=True (asked for) fails loudly."""
    import mammokit.inference.heatmaps as run

    class Broken(torch.nn.Module):
        def forward(self, x):
            raise RuntimeError("inductor: no working C++ compiler")

    wd, ckpt, _ = _workdir(tmp_path)
    eager = make_heatmaps(wd, ckpt, device="cpu", seed=4, compile=False)
    want = read_heatmap(wd / "heatmaps" / "malignant" / "e1_L_MLO.png")
    monkeypatch.setattr(run, "should_compile", lambda *a: True)
    monkeypatch.setattr(run, "compile_patch_model", lambda model, dev: Broken())
    wd1, ckpt1, _ = _workdir(tmp_path / "a")
    with pytest.raises(RuntimeError, match="no working C\\+\\+ compiler"):
        make_heatmaps(wd1, ckpt1, device="cpu", seed=4, compile=True, strict=True)
    wd2, ckpt2, _ = _workdir(tmp_path / "b")
    with caplog.at_level("WARNING", logger="mammokit.inference.heatmaps"):
        summary = make_heatmaps(wd2, ckpt2, device="cpu", seed=4, compile="auto")
    assert summary["done"] == eager["done"] == 4 and summary["failed"] == 0
    assert "torch.compile of the patch classifier failed" in caplog.text
    np.testing.assert_array_equal(read_heatmap(wd2 / "heatmaps" / "malignant" / "e1_L_MLO.png"), want)
