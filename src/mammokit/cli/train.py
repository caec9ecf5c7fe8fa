"""`mammokit train-patch` (patch classifier) and `mammokit train` (breast-level models).

Multi-GPU / multi-node: launch under torchrun, e.g.
``torchrun --nproc_per_node 4 -m mammokit train WORKDIR --labels L.csv --out RUN``.
"""

from __future__ import annotations

import argparse

ORDER = 60


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--epochs", type=int, help="maximum epochs (early stopping usually ends sooner)")
    p.add_argument("--batch-size", type=int, help="minibatch (exams / patches) over all processes")
    p.add_argument("--lr", type=float, help="Adam learning rate")
    p.add_argument("--weight-decay", type=float, help="L2 coefficient on weights (paper 10^-4.5)")
    p.add_argument("--patience", type=int, help="early-stopping patience in epochs")
    p.add_argument("--val-fraction", type=float, help="hold out this fraction of patients when the labels have no split")
    p.add_argument("--seed", type=int, help="seed of every random choice (default 0)")
    p.add_argument("--device", help="cpu, cuda, cuda:1 (default: CUDA when available)")
    p.add_argument("--no-amp", dest="amp", action="store_false", default=None, help="no bf16 autocast on CUDA")
    p.add_argument("--save-every", type=int, help="write the resumable state every N steps")
    p.add_argument("--stop-after-steps", type=int, help="stop after N steps (state saved; continue with --resume)")
    p.add_argument("--deterministic", action="store_true", default=None, help="deterministic algorithms (bit-identical resume)")
    p.add_argument("--resume", metavar="RUN", help="continue the run in RUN (its config.json; given options override)")


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "train-patch",
        help="train the patch classifier (malignant / benign / normal) from lesion masks or boxes",
        description="Train the patch classifier on patches sampled from the cropped images using "
        "the pixel-level lesion masks and / or lesion boxes (class 0 malignant, 1 benign, 2 normal). "
        "Images of a breast labelled malignant (benign) without a mask or box of that class are left "
        "out (counted in the log and in excluded_images.csv).",
    )
    p.add_argument("workdir", nargs="?", help="preprocessed work folder")
    p.add_argument("--masks", dest="masks_dir",
                   help="folder of <image>_malignant.png / <image>_benign.png masks (original image size)")
    p.add_argument("--boxes", help="boxes CSV exam_id,view,label,x0,y0,x1,y1 (original image pixels, label "
                   "malignant|benign; the importers write it): positive patches inside the boxes, normal ones "
                   "away from them. With --masks, both are used")
    p.add_argument("--labels", help="labels CSV (its split column selects train / val exams)")
    p.add_argument("--arch", choices=("densenet121_patch", "patchnet_small"), help="default: the preset's")
    p.add_argument("--imagenet-weights", help="local torchvision DenseNet-121 ImageNet weights file")
    p.add_argument("--patch-size", type=int, help="default: the preset's patch size")
    p.add_argument("--patches-per-class", type=int, help="training patches per class per epoch")
    p.add_argument("--val-patches-per-class", type=int, help="validation patches per class")
    p.add_argument("--out", help="run folder")
    _common(p)
    p.set_defaults(func=_train_patch)

    p = subparsers.add_parser(
        "train",
        help="train a breast-level model (cancer or BI-RADS pretraining), optionally an ensemble",
        description="Train a four-view breast-level model (paper defaults: Adam lr 1e-5, batch 4 "
        "exams (24 for BI-RADS), L2 10^-4.5, early stopping after 20 epochs).",
    )
    p.add_argument("workdir", nargs="?", help="preprocessed work folder")
    p.add_argument("--labels", help="labels CSV")
    p.add_argument("--task", choices=("cancer", "birads"))
    p.add_argument("--variant", choices=("view-wise", "image-wise", "breast-wise", "joint"))
    p.add_argument("--heatmaps", action="store_true", default=None, help="image + heatmaps inputs (3 channels)")
    p.add_argument("--init", help="checkpoint (or run folder) whose ResNet-22 columns initialise the model")
    p.add_argument("--ensemble", type=int, help="train K members (heads from different seeds)")
    p.add_argument("--workers", dest="num_workers", type=int, help="DataLoader worker processes")
    p.add_argument("--out", help="run folder")
    _common(p)
    p.set_defaults(func=_train)


_PATCH_KEYS = ("workdir", "masks_dir", "boxes", "labels", "out", "arch", "imagenet_weights", "patch_size", "patches_per_class",
               "val_patches_per_class", "epochs", "batch_size", "lr", "weight_decay", "patience", "val_fraction",
               "seed", "device", "amp", "save_every", "stop_after_steps", "deterministic")
_TRAIN_KEYS = ("workdir", "labels", "out", "task", "variant", "heatmaps", "init", "ensemble", "num_workers", "epochs",
               "batch_size", "lr", "weight_decay", "patience", "val_fraction", "seed", "device", "amp", "save_every",
               "stop_after_steps", "deterministic")


def _given(args, keys) -> dict:
    return {k: getattr(args, k) for k in keys if getattr(args, k, None) is not None}


def _report(summary: dict, what: str) -> int:
    from mammokit.utils.log import get_logger

    log = get_logger("mammokit.cli.train")
    if summary.get("stopped"):
        log.info("%s stopped early as asked; continue with --resume", what)
    else:
        log.info("%s done: best validation score %.4f; checkpoint %s", what, summary.get("best_score", float("nan")),
                 summary.get("checkpoint"))
    return 0


def _train(args) -> int:
    from mammokit.errors import UsageError
    from mammokit.training.breast import resume_breast, train_breast
    from mammokit.training.config import TrainConfig

    given = _given(args, _TRAIN_KEYS)
    if args.resume:
        overrides = {k: v for k, v in given.items() if k in ("device", "num_workers", "stop_after_steps", "epochs", "save_every", "patience")}
        return _report(resume_breast(args.resume, **overrides), "training")
    missing = [f"--{k}" if k != "workdir" else "WORKDIR" for k in ("workdir", "labels", "out") if k not in given]
    if missing:
        raise UsageError(f"missing {', '.join(missing)} (or --resume RUN)")
    return _report(train_breast(TrainConfig(**given)), "training")


def _train_patch(args) -> int:
    from mammokit.errors import UsageError
    from mammokit.training.config import PatchTrainConfig
    from mammokit.training.patch import resume_patch, train_patch_config

    given = _given(args, _PATCH_KEYS)
    if args.resume:
        overrides = {k: v for k, v in given.items() if k in ("device", "stop_after_steps", "epochs", "save_every", "patience")}
        return _report(resume_patch(args.resume, **overrides), "patch training")
    flags = {"workdir": "WORKDIR", "labels": "--labels", "out": "--out"}
    missing = [flag for k, flag in flags.items() if k not in given]
    if "masks_dir" not in given and "boxes" not in given:
        missing.append("--masks and / or --boxes")
    if missing:
        raise UsageError(f"missing {', '.join(missing)} (or --resume RUN)")
    given.setdefault("masks_dir", None)  # boxes only
    return _report(train_patch_config(PatchTrainConfig(**given)), "patch training")
