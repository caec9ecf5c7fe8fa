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


# ------------------------------------------------------------------ boxes and missing masks


def _mask_boxes(masks_dir, exams, labels_for=("malignant", "benign")):
    """boxes.csv rows: the bounding box (original pixels, x1/y1 exclusive) of every non-empty mask."""
    from mammokit.data.images import read_png8

    rows = []
    for exam in exams:
        for view in ("L-CC", "R-CC", "L-MLO", "R-MLO"):
            for name in exam.get(view, []):
                for cls in labels_for:
                    path = masks_dir / f"{name}_{cls}.png"
                    if not path.exists():
                        continue
                    m = read_png8(path) > 127
                    if m.any():
                        ys, xs = np.nonzero(m)
                        rows.append(f"{exam['exam_id']},{view},{cls},{xs.min()},{ys.min()},{xs.max() + 1},{ys.max() + 1}")
    return rows


def test_boxes_land_on_the_lesions_of_preprocessed_images(tmp_path):
    """Synthetic exams through real preprocessing (crop, flip): a box drawn around each lesion
    mask in the ORIGINAL image covers exactly the bounding box of the cropped, flipped mask."""
    from mammokit.config import preset_for_scale
    from mammokit.data.boxes import read_boxes
    from mammokit.data.examlist import load_exams
    from mammokit.data.images import read_image
    from mammokit.preprocess.pipeline import preprocess
    from mammokit.synth import generate
    from mammokit.training.patches import load_patch_image

    generate(tmp_path / "data", n_exams=3, seed=2, scale=0.0625, cancer_rate=0.7, benign_rate=0.7,
             occult_rate_malignant=0.0, occult_rate_benign=0.0)
    preprocess(tmp_path / "data" / "manifest.csv", tmp_path / "work", preset=preset_for_scale(0.0625))
    exams, _ = load_exams(tmp_path / "work" / "exams.json")
    # The synthetic masks are named after the source stems; the boxes only need exam and view.
    stems = {(e["exam_id"], v): __import__("pathlib").Path(e["source_paths"][v][0]).stem for e in exams for v in
             ("L-CC", "R-CC", "L-MLO", "R-MLO") if e.get(v)}
    renamed = [{**e, **{v: [stems[e["exam_id"], v]] for v in ("L-CC", "R-CC", "L-MLO", "R-MLO") if e.get(v)}}
               for e in exams]
    (tmp_path / "boxes.csv").write_text("exam_id,view,label,x0,y0,x1,y1\n"
                                        + "\n".join(_mask_boxes(tmp_path / "data" / "masks", renamed)) + "\n")
    boxes = read_boxes(tmp_path / "boxes.csv")
    checked = 0
    for exam in exams:
        for v, shapes in exam["source_shape"].items():  # preprocessing recorded the original sizes
            assert shapes == [list(read_image(exam["source_paths"][v][0]).shape)]
        for view in ("L-CC", "R-CC", "L-MLO", "R-MLO"):
            if (exam["exam_id"], view) not in boxes:
                continue
            from_masks = load_patch_image(tmp_path / "work", exam, view, 0, tmp_path / "data" / "masks")
            from_boxes = load_patch_image(tmp_path / "work", exam, view, 0, None, boxes=boxes[exam["exam_id"], view])
            for box in boxes[exam["exam_id"], view]:
                mask = getattr(from_masks, box.label)
                ys, xs = np.nonzero(mask)
                expected = np.zeros_like(mask)
                expected[ys.min():ys.max() + 1, xs.min():xs.max() + 1] = True
                np.testing.assert_array_equal(from_boxes.boxed & expected, expected)
                # The lesion region of a box is its breast-tissue part.
                region = getattr(from_boxes, box.label)
                assert not (region & ~from_boxes.tissue).any() and region[mask].all()
                checked += 1
    assert checked >= 3


def test_box_supervised_patch_training_end_to_end(toy, tmp_path, capsys):
    """`train-patch --boxes` without masks: patches inside the boxes are lesions, normal patches
    stay clear of every box, and the classifier learns the toy lesions."""
    from mammokit.cli import main
    from mammokit.data.boxes import read_boxes
    from mammokit.data.examlist import load_exams
    from mammokit.training.patch import load_patch_images

    exams, _ = load_exams(toy.workdir / "exams.json")
    boxes_csv = tmp_path / "boxes.csv"
    boxes_csv.write_text("exam_id,view,label,x0,y0,x1,y1\n" + "\n".join(_mask_boxes(toy.masks, exams)) + "\n")
    images, excluded = load_patch_images(exams, toy.workdir, None, "cropped", read_boxes(boxes_csv))
    assert not excluded and any(im.malignant.any() for im in images) and any(im.benign.any() for im in images)
    items = sample_patches(images, 40, toy.preset.patch_size, np.random.default_rng(0))
    size = toy.preset.patch_size
    for i, y0, x0, label in items:
        im = images[i]
        boxed = im.boxed if im.boxed is not None else np.zeros(im.tissue.shape, bool)
        window = np.zeros_like(boxed)
        window[max(y0, 0):y0 + size, max(x0, 0):x0 + size] = True
        if label == NORMAL:
            assert not (window & boxed).any()
        else:
            q = size // 4
            centre = np.zeros_like(boxed)
            centre[max(y0 + q, 0):y0 + size - q, max(x0 + q, 0):x0 + size - q] = True
            assert (centre & (im.malignant if label == MALIGNANT else im.benign)).any()
    torch.set_num_threads(1)
    rc = main(["train-patch", str(toy.workdir), "--boxes", str(boxes_csv), "--labels", str(toy.labels),
               "--out", str(tmp_path / "run"), "--epochs", "2", "--seed", "1", "--patches-per-class", "48",
               "--val-patches-per-class", "24", "--batch-size", "16", "--lr", "1e-3", "--device", "cpu"])
    assert rc == 0
    history = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert history[-1]["val_auc_malignant"] > 0.8
    conf = json.loads((tmp_path / "run" / "config.json").read_text())
    assert conf["boxes"] == str(boxes_csv) and conf["masks_dir"] is None
    assert conf["_resolved"]["unlocalised_malignant_breasts"] == 0
    assert main(["train-patch", str(toy.workdir), "--labels", str(toy.labels), "--out", str(tmp_path / "r2")]) == 2
    assert "--masks and / or --boxes" in capsys.readouterr().err


def test_missing_masks_are_errors_or_counted_by_the_label(toy, tmp_path, caplog):
    import csv
    import logging
    import shutil

    from mammokit.data.examlist import load_exams
    from mammokit.data.manifest import read_labels
    from mammokit.training.patch import load_patch_images
    from mammokit.training.patches import load_patch_image

    masks = tmp_path / "masks"
    shutil.copytree(toy.masks, masks)
    exams, _ = load_exams(toy.workdir / "exams.json")
    labels = read_labels(toy.labels)
    rows = {r["exam_id"]: r for r in csv.DictReader(open(toy.labels))}
    malignant = [e for e in exams if rows[e["exam_id"]]["left_malignant"] == "1"][:2]
    assert len(malignant) == 2
    a, b = malignant
    # a: its left MLO mask is missing (CC still localised); b: no mask of its left breast at all.
    (masks / f"{a['L-MLO'][0]}_malignant.png").unlink()
    for view in ("L-CC", "L-MLO"):
        (masks / f"{b[view][0]}_malignant.png").unlink()
    counts: dict = {}
    with caplog.at_level(logging.WARNING, logger="mammokit"):
        images, excluded = load_patch_images([a, b], toy.workdir, masks, "cropped", labels=labels, counts=counts)
    left_out = sorted(r["image"] for r in excluded)
    assert left_out == sorted([a["L-MLO"][0], b["L-CC"][0], b["L-MLO"][0]])
    assert all("left breast labelled malignant but no malignant mask or box" in r["reason"] for r in excluded)
    assert counts == {"unlocalised_malignant_breasts": 1, "unlocalised_benign_breasts": 0, "unlocalised_images": 3}
    assert len(images) == 5 and "1 malignant and 0 benign breast(s) have no mask or box at all" in caplog.text
    # An explicit mask path that does not exist: an error naming it, unless the label says no lesion.
    exam = dict(a, mask_malignant={"L-CC": [str(tmp_path / "gone.png")], "R-CC": [str(tmp_path / "gone_r.png")]})
    with pytest.raises(FileNotFoundError, match=r"gone\.png: malignant mask of .* not found"):
        load_patch_image(toy.workdir, exam, "L-CC", 0, masks, labels=labels[a["exam_id"]])
    right = load_patch_image(toy.workdir, exam, "R-CC", 0, masks, labels=labels[a["exam_id"]])
    assert not right.malignant.any()  # right breast labelled 0: the missing mask is not needed
