"""``mammokit heatmaps``: patch-classifier heatmaps for every image of a work folder."""

from __future__ import annotations

import argparse

ORDER = 30


def _heatmaps(args: argparse.Namespace) -> int:
    from mammokit.inference.heatmaps import make_heatmaps

    summary = make_heatmaps(
        args.workdir, args.patch_model, stride=args.stride, batch_size=args.batch_size, device=args.device,
        dtype=args.dtype, reference_layout=args.reference_layout, seed=args.seed, strict=args.strict,
        compile={"auto": "auto", "on": True, "off": False}[args.compile], shard=args.shard, preset=args.preset,
    )
    rate = summary["patches"] / summary["seconds"] if summary["seconds"] > 0 else 0.0
    where = f"heatmaps shard {summary['shard']}" if summary["shard"] else "heatmaps"
    print(
        f"{where}: {summary['done']} images done, {summary['skipped']} already there, {summary['failed']} failed "
        f"({summary['patches']} patches of {summary['patch_size']} px, stride {summary['stride']}, "
        f"precision {summary['precision']}, {rate:.1f} patches/s)"
    )
    if summary["shard"]:
        missing = summary["missing_shards"]
        print(f"waiting for shard(s) {', '.join(map(str, missing))} to merge" if missing else "all shards done: merged")
    return 1 if summary["failed"] else 0


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "heatmaps",
        help="patch-classifier heatmaps (malignant, benign) for a preprocessed work folder",
        description="Slide the patch classifier over every cropped image of WORKDIR (exams.json) and "
        "write WORKDIR/heatmaps/{malignant,benign}/<name>.png (16-bit, p * 65535). Resumable.",
    )
    p.add_argument("workdir", help="work folder made by `mammokit preprocess`")
    p.add_argument("--patch-model", required=True,
                   help="patch classifier: mammokit checkpoint, or the authors' sample_patch_model.p")
    p.add_argument("--preset", default="auto",
                   help="auto (default): the patch model's recorded preset, which must match the work folder's; "
                   "or a preset (name, scale:F, TOML file) that must match the work folder's")
    p.add_argument("--stride", type=int, default=None, help="sliding-window stride (default: the preset's; paper 70)")
    p.add_argument("--batch-size", type=int, default=None,
                   help="patches per forward pass (bounds memory; default 512 on CUDA, 4 for DenseNet-121 on the CPU)")
    p.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto")
    p.add_argument("--dtype", choices=["auto", "fp32", "bf16", "fp16"], default="auto",
                   help="auto: fp16 autocast on CUDA (overflowing patches redone in fp32); on the CPU bf16 "
                        "where it has bf16 hardware (AMX / AVX512-BF16), else fp32")
    p.add_argument("--reference-layout", action="store_true",
                   help="also write heatmap_{malignant,benign}/<name>.hdf5 (the authors' layout)")
    p.add_argument("--seed", type=int, default=0, help="seed of the shortened-stride placement")
    p.add_argument("--strict", action="store_true", help="stop at the first failing image")
    p.add_argument("--compile", nargs="?", const="on", default="auto", choices=["auto", "on", "off"],
                   help="torch.compile the patch classifier: 1.3x (CPU) to 2x (GPU) more patches/s after "
                        "1-2 minutes of compiling. auto (default): when the job is big enough to pay "
                        "(DenseNet-121; >= 8,000 patches on the CPU, 1,000,000 on CUDA), falling back to "
                        "eager if compiling fails; --compile alone = on")
    add_shard_arg(p)
    p.set_defaults(func=_heatmaps)


def add_shard_arg(p: argparse.ArgumentParser) -> None:
    """``--shard i/N``, shared by heatmaps, predict and run."""
    p.add_argument("--shard", default=None, metavar="I/N",
                   help="do only shard I of N (0-based; SLURM: --shard $SLURM_ARRAY_TASK_ID/N): exams are "
                        "split by a hash of their id, each shard writes a part under .shards/, and the shard "
                        "that completes the set writes the same outputs one process writes; re-running "
                        "redoes only unfinished shards. Under torchrun each rank is a shard by itself")
