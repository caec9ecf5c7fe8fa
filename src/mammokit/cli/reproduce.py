"""``mammokit reproduce table3 --out DIR [--scale demo|quarter] [--exams N] [--members K]``."""

from __future__ import annotations

import argparse

ORDER = 2


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "reproduce",
        help="reproduce a table of the paper on synthetic data (table3: every model variant)",
        description="Reproduce one of the paper's results end to end on synthetic data.",
    )
    sub = p.add_subparsers(dest="what", metavar="WHAT")
    t = sub.add_parser(
        "table3",
        help="every row of Table III: 4 variants x image-only / image+heatmaps, K-member ensembles, "
        "with and without BI-RADS pretraining, screening and biopsied populations",
        description="Generate (or reuse) synthetic data, train and evaluate every row of the paper's "
        "Table III, and write table3.md/.csv/.json and table3.png with the paper's values beside ours "
        "and paired bootstrap CIs of each claim. Resumable: a re-run skips the finished stages.",
    )
    t.add_argument("--out", required=True, help="output folder")
    t.add_argument("--scale", default="demo", choices=("demo", "quarter"),
                   help="demo: 1/16 scale, 700 exams, about an hour on 2 CPU cores; quarter: 1/4 scale")
    t.add_argument("--exams", type=int, default=None, help="synthetic exams (48%% go to the test split)")
    t.add_argument("--members", type=int, default=None, help="models per ensemble, K (default 3)")
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--device", default="auto", help="auto (CUDA if available), cpu or cuda")
    t.add_argument("--workers", "-j", type=int, default=None, help="processes for data generation / preprocessing")
    t.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    t.set_defaults(func=run)
    p.set_defaults(func=lambda args: (p.print_help(), 2)[1])


def run(args: argparse.Namespace) -> int:
    from mammokit.workflows.reproduce import run_table3

    run_table3(args.out, scale=args.scale, exams=args.exams, members=args.members, seed=args.seed, device=args.device,
               workers=args.workers, threads=args.threads)
    return 0
