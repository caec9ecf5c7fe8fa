"""Patch classifier trainer: label rule, mask alignment, learning, checkpoints, resume."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from mammokit.training.patches import (
    BENIGN,
    MALIGNANT,
    NORMAL,
    PatchImage,
    patch_label,
    sample_patches,
)
from tests.helpers.training_toy import make_toy_workdir


@pytest.fixture(scope="module")
def toy(tmp_path_factory):
    return make_toy_workdir(tmp_path_factory.mktemp("ptoy"), n_train=9, n_val=9, seed=4, scale=0.1)


def _image(h=40, w=40):
    z = np.zeros((h, w), bool)
    return PatchImage("x", "e", np.zeros((h, w), np.float32), z.copy(), z.copy(), np.ones((h, w), bool))


def test_label_rule():
    im = _image()
    # 16x16 patch at (10, 10): centre region rows/cols 14..21 (8x8 = 64 px).
    assert patch_label(im, 10, 10, 16, 0.1, 0.5) == NORMAL
    im.malignant[14:16, 14:18] = True  # 8 px = 12.5% of the centre
    assert patch_label(im, 10, 10, 16, 0.1, 0.5) == MALIGNANT
    im.malignant[:] = False
    im.benign[14:15, 14:18] = True  # 4 px = 6.25%: a lesion rim, ambiguous
    assert patch_label(im, 10, 10, 16, 0.1, 0.5) is None
    im.benign[14:16, 14:18] = True
    assert patch_label(im, 10, 10, 16, 0.1, 0.5) == BENIGN
    im.benign[:] = False
    im.benign[0:3, 0:3] = True  # lesion outside the centre region: still normal
    assert patch_label(im, 0, 0, 16, 0.1, 0.5) == NORMAL
    # Background: a patch hanging mostly outside the image / off the breast is rejected.
    assert patch_label(im, 30, 30, 16, 0.1, 0.5) is None
    im.tissue[:, 20:] = False
    assert patch_label(im, 10, 14, 16, 0.1, 0.5) is None  # 6/16 columns of tissue


def test_sampling_is_balanced_labelled_and_seeded():
    im = _image(60, 60)
    im.malignant[10:20, 10:20] = True
    im.benign[40:50, 40:50] = True
    items = sample_patches([im], 30, 16, np.random.default_rng(0))
    counts = np.bincount([it[3] for it in items], minlength=3)
    assert counts.tolist() == [30, 30, 30]
    for _, y0, x0, label in items:
        assert patch_label(im, y0, x0, 16, 0.1, 0.5) == label
    assert items == sample_patches([im], 30, 16, np.random.default_rng(0))


def test_mask_index_is_nonzero_order():
    """The k-th True pixel (row-major, as np.nonzero lists them), found without listing them."""
    from mammokit.training.patches import _MaskIndex

    rng = np.random.default_rng(3)
    mask = rng.random((37, 23)) < 0.2
    mask[5:9] = False  # empty rows
    mask[-1] = False
    ys, xs = np.nonzero(mask)
    where = _MaskIndex(mask)
    assert where.count == len(ys)
    assert [where.pixel(k) for k in range(len(ys))] == list(zip(ys.tolist(), xs.tolist()))


def test_sampling_draws_match_listing_every_mask_pixel():
    """The sampler's draws are those of the plain algorithm (np.nonzero of the mask per draw),
    so results of earlier versions are reproduced exactly."""
    from mammokit.training.patches import MAX_TRIES

    rng = np.random.default_rng(5)
    images = []
    for _ in range(3):
        im = _image(70, 64)
        im.tissue[:, 50:] = False
        y, x = rng.integers(10, 40, 2)
        im.malignant[y:y + 12, x:x + 9] = True
        im.benign[y + 20:y + 24, 5:14] = rng.random((4, 9)) < 0.7
        images.append(im)

    def plain(per_class, size, rng, lesion_fraction=0.1, min_tissue_fraction=0.5):
        pools = {MALIGNANT: [i for i, im in enumerate(images) if im.malignant.any()],
                 BENIGN: [i for i, im in enumerate(images) if im.benign.any()],
                 NORMAL: [i for i, im in enumerate(images) if im.tissue.any()]}
        out, jitter = [], size // 8
        for cls, pool in pools.items():
            got = 0
            for _ in range(per_class * MAX_TRIES):
                if got == per_class:
                    break
                i = int(pool[rng.integers(len(pool))])
                im = images[i]
                mask = im.malignant if cls == MALIGNANT else im.benign if cls == BENIGN else im.tissue
                ys, xs = np.nonzero(mask)
                k = int(rng.integers(len(ys)))
                dy, dx = rng.integers(-jitter, jitter + 1, size=2)
                y0, x0 = int(ys[k] + dy - size // 2), int(xs[k] + dx - size // 2)
                if patch_label(im, y0, x0, size, lesion_fraction, min_tissue_fraction) == cls:
                    out.append((i, y0, x0, cls))
                    got += 1
        order = rng.permutation(len(out))
        return [out[j] for j in order]

    got = sample_patches(images, 25, 16, np.random.default_rng(11))
    assert len(got) > 40
    assert got == plain(25, 16, np.random.default_rng(11))


def test_masks_are_cropped_and_flipped_like_the_image(toy):
    from mammokit.data.examlist import load_exams
    from mammokit.training.patches import load_patch_image

    exams, _ = load_exams(toy.workdir / "exams.json")
    # Toy findings are bright (malignant) / dark (benign) discs drawn into the image: the cropped,
    # flipped masks must sit exactly on those pixels.
    seen = set()
    for exam in exams:
        for view in ("L-CC", "R-CC", "L-MLO", "R-MLO"):
            im = load_patch_image(toy.workdir, exam, view, 0, toy.masks)
            for mask, sign in ((im.malignant, 1), (im.benign, -1)):
                if mask.any():
                    inside = im.image[mask].mean()
                    outside = im.image[im.tissue & ~mask].mean()
                    assert sign * (inside - outside) > 1.0
                    seen.add((sign, view[0]))
    assert seen == {(1, "L"), (1, "R"), (-1, "L"), (-1, "R")}


def test_patch_trainer_learns_and_resumes(toy, tmp_path):
    from mammokit.models.checkpoint import load_model
    from mammokit.training.patch import resume_patch, train_patch

    torch.set_num_threads(1)
    kw = dict(epochs=2, seed=1, patches_per_class=48, val_patches_per_class=24, batch_size=16, lr=1e-3, device="cpu",
              arch="patchnet_small", save_every=2)
    full = train_patch(toy.workdir, toy.masks, toy.labels, tmp_path / "full", **kw)
    h = full["history"]
    assert h[-1]["train_loss"] < h[0]["train_loss"]
    for cls in ("malignant", "benign", "normal"):
        assert h[-1][f"val_auc_{cls}"] > 0.85
    model, meta = load_model(tmp_path / "full" / "best.safetensors")
    assert meta["arch"] == "patchnet_small" and meta["extra"]["classes"] == ["malignant", "benign", "normal"]
    assert model(torch.zeros(2, 1, toy.preset.patch_size, toy.preset.patch_size)).shape == (2, 3)
    # Stopped mid-epoch and resumed: same weights and metrics as the uninterrupted run.
    part = train_patch(toy.workdir, toy.masks, toy.labels, tmp_path / "part", stop_after_steps=5, **kw)
    assert part["stopped"]
    resumed = resume_patch(tmp_path / "part")
    strip = lambda rows: [{k: v for k, v in r.items() if "time" not in k and "per_s" not in k} for r in rows]
    assert strip(resumed["history"]) == strip(h)
    a, _ = load_model(tmp_path / "full" / "last.safetensors")
    b, _ = load_model(tmp_path / "part" / "last.safetensors")
    for (k, x), (_, y) in zip(a.state_dict().items(), b.state_dict().items()):
        assert torch.equal(x, y), k
    conf = json.loads((tmp_path / "full" / "config.json").read_text())
    assert conf["_resolved"]["patch_size"] == toy.preset.patch_size


def test_patch_trainer_clear_errors(toy, tmp_path):
    from mammokit.training.patch import train_patch

    with pytest.raises(FileNotFoundError, match="masks folder"):
        train_patch(toy.workdir, tmp_path / "nope", toy.labels, tmp_path / "r", epochs=1)
