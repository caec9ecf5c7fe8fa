"""``mammokit predict WORKDIR`` and ``mammokit run MANIFEST``: breast-level predictions."""

from __future__ import annotations

import argparse

from mammokit.cli.heatmaps import add_shard_arg

ORDER = 50


def _add_inference_args(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--model", "-m", action="append", required=True, metavar="CKPT", dest="models",
        help="breast-level checkpoint; repeat for an ensemble (predictions averaged over models)",
    )
    p.add_argument("--tta", type=int, default=10, help="random windows per exam, averaged (default 10, "
                   "the paper's); 0 = the deterministic window at the optimal centre")
    p.add_argument("--seed", type=int, default=0, help="test-time augmentation seed (default 0)")
    p.add_argument("--device", default="auto", help="auto (CUDA if available), cpu, cuda or cuda:N")
    p.add_argument("--dtype", default="auto", choices=["auto", "fp32", "bf16", "fp16"],
                   help="precision of the breast-level models: auto = bf16 autocast on CUDA and on CPUs with "
                        "bf16 hardware (AMX / AVX512-BF16), else fp32")
    p.add_argument("--batch-size", type=int, default=None, metavar="N",
                   help="most TTA draws per forward pass (default: all draws of an exam at once)")
    p.add_argument("--strict", action="store_true", help="an exam that cannot be scored is an error")
    add_shard_arg(p)


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "predict",
        help="predict benign / malignant per breast for a preprocessed work folder",
        description="Score every exam of a work folder with one or more breast-level models "
        "(test-time augmentation as the paper: 10 random windows per view, averaged; several "
        "--model = an ensemble). Writes a CSV exam_id,left_benign,right_benign,left_malignant,"
        "right_malignant,views (the views each row used: exams missing views are scored from the "
        "views they have; a breast with no view has empty cells) and <name>.skipped.csv listing "
        "exams that could not be scored (unreadable images, missing heatmaps).",
    )
    p.add_argument("workdir", help="work folder from `mammokit preprocess` (+ `mammokit heatmaps`)")
    _add_inference_args(p)
    p.add_argument("--output", "-o", default=None, help="predictions CSV (default WORKDIR/predictions.csv)")
    p.add_argument("--workers", "-j", type=int, default=None,
                   help="image-decoding threads (default min(8, CPU count)); results do not depend on it")
    p.add_argument("--preset", default="auto",
                   help="auto (default): each model's recorded preset must match the work folder's; or a preset "
                   "(name, scale:F, TOML file) that must match the work folder's")
    p.add_argument("--split", default=None, help="score only exams of this split (manifest column), e.g. test")
    p.set_defaults(func=_predict)

    r = subparsers.add_parser(
        "run",
        help="raw images to predictions in one command (preprocess, heatmaps, predict)",
        description="Run every stage from a manifest of raw images (PNG or DICOM) to "
        "OUT/predictions.csv: preprocess, heatmaps (when a model uses them) and predict. Each "
        "stage resumes, so re-running after an interruption redoes only what is missing.",
    )
    r.add_argument("manifest", help="manifest CSV (exam_id,view,path[,patient_id,horizontal_flip])")
    r.add_argument("--out", required=True, metavar="DIR", help="output / work folder")
    r.add_argument("--patch-model", default=None, metavar="CKPT",
                   help="patch classifier for the heatmaps (needed by image+heatmaps models)")
    r.add_argument("--preset", default="auto",
                   help="auto (default): the preset the --model / --patch-model checkpoints record (they must agree); "
                   "or a name (paper, half, small, tiny), scale:F or a TOML file")
    r.add_argument("--workers", "-j", type=int, default=1, help="preprocessing processes (default 1)")
    r.add_argument("--heatmap-dtype", default="auto", choices=["auto", "fp32", "bf16", "fp16"],
                   help="precision of the heatmaps, separate from --dtype: auto = fp16 on CUDA (within 1e-3 "
                   "of fp32; bf16 is not, 0.0135); on the CPU bf16 with bf16 hardware, else fp32")
    r.add_argument("--heatmap-batch-size", type=int, default=None, metavar="N",
                   help="patches per forward pass of the heatmaps (default: 512 on CUDA, 4 DenseNet / 256 small on the CPU)")
    _add_inference_args(r)
    r.set_defaults(func=_run)


def _summary(result, output) -> str:
    from mammokit.inference.predict import skipped_path

    n, k = len(result.exam_ids), len(result.skipped)
    if result.shard is not None:
        text = f"shard {result.shard}: {n} exam(s) scored"
        if k:
            text += f", {k} skipped"
        missing = result.missing_shards
        return text + (f"; waiting for shard(s) {', '.join(map(str, missing))} to merge into {output}" if missing
                       else f"; all shards done: merged -> {output}")
    text = f"{n} exam(s) scored -> {output}"
    if k:
        text += f"; {k} skipped (see {result.skipped_output or skipped_path(output)})"
    return text


def _predict(args: argparse.Namespace) -> int:
    from pathlib import Path

    from mammokit.inference.predict import predict

    output = args.output or str(Path(args.workdir) / "predictions.csv")
    result = predict(
        args.workdir, args.models, tta=args.tta, seed=args.seed, device=args.device, dtype=args.dtype,
        batch_size=args.batch_size, output=output, strict=args.strict, workers=args.workers, split=args.split,
        shard=args.shard, preset=args.preset,
    )
    print(_summary(result, output))
    return 0 if result.exam_ids or not result.skipped else 1


def _run(args: argparse.Namespace) -> int:
    from mammokit.inference.run import run

    result = run(
        args.manifest, args.out, models=args.models, patch_model=args.patch_model, preset=args.preset,
        tta=args.tta, seed=args.seed, workers=args.workers, device=args.device, dtype=args.dtype,
        batch_size=args.batch_size, strict=args.strict, heatmap_dtype=args.heatmap_dtype,
        heatmap_batch_size=args.heatmap_batch_size, shard=args.shard,
    )
    from pathlib import Path

    print(_summary(result.predictions, result.output or Path(args.out) / "predictions.csv"))
    return 0 if result.predictions.exam_ids or not result.predictions.skipped else 1
