"""``mammokit demo [--out DIR] [--quick] [--seed S]``: the whole system on synthetic data."""

from __future__ import annotations

import argparse

ORDER = 1


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "demo",
        help="run the whole system end to end on synthetic data (CPU-sized)",
        description="Generate a synthetic screening data set, preprocess it, train the patch "
        "classifier, make heatmaps, pretrain on BI-RADS, train image-only and image+heatmaps "
        "view-wise models (ensembles), predict the test split with test-time augmentation, "
        "evaluate, run a reader study against synthetic readers and write an HTML report. "
        "A re-run skips the stages already done.",
    )
    p.add_argument("--out", default="demo_out", help="output folder (default demo_out)")
    p.add_argument("--quick", action="store_true", help="a small run of a few minutes (what the tests use)")
    p.add_argument("--seed", type=int, default=0, help="seed of everything random (default 0)")
    p.add_argument("--device", default="auto", help="auto (CUDA if available), cpu or cuda")
    p.add_argument("--workers", "-j", type=int, default=None,
                   help="processes for data generation and preprocessing (default: CPUs, at most 4)")
    p.add_argument("--threads", type=int, default=None,
                   help="torch CPU threads (default: one per core; 1 is faster on a busy shared machine)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from mammokit.workflows.demo import run_demo

    run_demo(args.out, quick=args.quick, seed=args.seed, device=args.device, workers=args.workers, threads=args.threads)
    return 0
