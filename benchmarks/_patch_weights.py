"""A DenseNet-121 patch classifier with trained-like statistics, in the authors' file format.

No trained patch weights can be obtained here (the authors' ``sample_patch_model.p`` is a Git LFS
object not in the public snapshot; no network), and random initialisation is a poor stand-in
when comparing precisions or speed: its activations do not have the scale a trained network's
have. So the benchmarks use a random DenseNet-121 whose batch-norm statistics are re-estimated on
real mammogram patches (every layer then sees standardised activations, as in a trained network)
and whose classifier is scaled so patch probabilities spread over (0, 1) instead of sitting at
1/4. It is *not* a trained classifier; it is trained-like in its numerics only.

Saved as the authors' ``.p`` (a ``torch.save``'d torchvision ``densenet121`` state dict, 4
classes), so the authors' ``load_model`` and ``mammokit heatmaps --patch-model`` read the same file.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch


def trained_like_state_dict(calibration_images: list[np.ndarray], seed: int = 0, patches: int = 96) -> dict:
    """State dict (torchvision keys, 3 input channels, 4 classes, TF "SAME" padding semantics as
    the authors' model) calibrated on ``patches`` patches of 256 px drawn inside the breast of the
    given standardised images ``[H, W]`` (model frame)."""
    from mammokit.models.patch import PatchDenseNet121

    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    model = PatchDenseNet121(num_classes=4, in_chans=3, tf_same_padding=True)
    batch = []
    for k in range(patches):
        img = calibration_images[k % len(calibration_images)]
        H, W = img.shape
        for _ in range(100):  # a patch mostly inside the breast (background is the minimum)
            y, x = int(rng.integers(0, H - 256)), int(rng.integers(0, W - 256))
            p = img[y:y + 256, x:x + 256]
            if (p > p.min()).mean() > 0.5:
                break
        batch.append(p)
    x = torch.from_numpy(np.stack(batch)).float()[:, None].repeat(1, 3, 1, 1)
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.reset_running_stats()
            m.momentum = None  # cumulative average over the calibration batches
    model.train()
    with torch.no_grad():
        for chunk in x.split(16):
            model(chunk)
        model.eval()
        logits = torch.cat([model(chunk) for chunk in x.split(16)])
        # Spread the classifier's logits to a standard deviation of 2 (probabilities well inside (0, 1)).
        scale = 2.0 / max(float(logits.std()), 1e-6)
        model.classifier.weight.mul_(scale)
        model.classifier.bias.zero_()
    sd = {k: v.clone() for k, v in model.state_dict().items()}
    return sd


def write_authors_patch_model(path: str | Path, calibration_images: list[np.ndarray], seed: int = 0) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(trained_like_state_dict(calibration_images, seed), path)
    return path


def calibration_images(real_dir: str | Path, names=("2_L_CC.png", "2_R_CC.png", "1_L_CC.png")) -> list[np.ndarray]:
    """Standardised crops (paper preset, model frame) of the named real views."""
    from mammokit.data.images import read_image
    from mammokit.preprocess.pipeline import preprocess_image
    from mammokit.transforms import standardize_image, to_model_frame

    out = []
    for name in names:
        view = "R-CC" if "_R_" in name else "L-CC"
        crop = preprocess_image(read_image(Path(real_dir) / name), view, "NO", preset="paper").cropped
        out.append(standardize_image(np.ascontiguousarray(to_model_frame(crop, view))).numpy())
    return out
