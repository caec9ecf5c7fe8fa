"""`mammokit evaluate`, `reader-study`, `embed`, `report`: thin wrappers over mammokit.evaluation."""

from __future__ import annotations

import argparse

from mammokit.errors import UsageError

ORDER = 70


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "evaluate",
        help="breast-level ROC/PR AUC with bootstrap CIs (Table III style)",
        description="Breast-level ROC AUC and PR AUC (malignant, benign) of one or more predictions "
        "files, with 95%% CIs from bootstrapping exams. Labels: give --labels LABELS, or put the "
        "labels file LAST among the positional files (`mammokit evaluate PREDICTIONS LABELS`); "
        "with --labels every positional file is a predictions file.",
    )
    p.add_argument("files", nargs="+", metavar="PREDICTIONS", help="predictions CSV(s); one model each")
    p.add_argument("--labels", help="labels CSV (default: the last positional file)")
    p.add_argument("--population", choices=("screening", "biopsied", "all"), default="screening",
                   help="screening: all exams; biopsied: biopsied == 1 (or any positive label when there is "
                   "no biopsied column); all: both (default: screening)")
    p.add_argument("--bootstrap", type=int, default=2000, help="bootstrap replicates (0: no CIs; default 2000)")
    p.add_argument("--seed", type=int, default=0, help="bootstrap seed (default 0)")
    p.add_argument("--by", metavar="COLUMN", help="also report per value of this labels column (density, ...)")
    p.add_argument("--split", help="evaluate only the labels rows with this split")
    p.add_argument("--name", action="append", metavar="NAME", help="model name, once per predictions file, in order")
    p.add_argument("-o", "--out", metavar="OUTDIR", help="write evaluation.json/.md and curve PNGs here")
    p.set_defaults(func=_evaluate)

    p = subparsers.add_parser(
        "reader-study",
        help="readers vs model vs hybrids (paper Figs 8-9)",
        description="Per-reader and model ROC/PR AUC, reader-model hybrids "
        "lambda*reader + (1-lambda)*model at lambda=0.5 and swept over [0, 1]. Either --readers, "
        "--model and --labels, or the paper's published wide CSV with --nyu-csv.",
    )
    p.add_argument("--readers", help="readers CSV: reader_id,exam_id,breast,probability")
    p.add_argument("--model", help="predictions CSV (malignant columns) or exam_id,breast,probability")
    p.add_argument("--labels", help="labels CSV (left_malignant, right_malignant)")
    p.add_argument("--nyu-csv", help="the paper's wide CSV (case_ID,side,label,Reader01_POM,...)")
    p.add_argument("--model-column", default="AI_DMVCNN_POM", help="model column of --nyu-csv (default AI_DMVCNN_POM)")
    p.add_argument("--scale", type=float, choices=(1.0, 100.0),
                   help="readers' probability scale, 1 or 100 (default: detect when unambiguous)")
    p.add_argument("--lambda", dest="lam", type=float, default=0.5, help="hybrid weight of the reader (default 0.5)")
    p.add_argument("-o", "--out", metavar="OUTDIR", help="write reader_study.json/.md and figures here")
    p.set_defaults(func=_reader_study)

    p = subparsers.add_parser(
        "embed",
        help="UMAP of the model's representations (paper Fig. 10); needs mammokit[umap]",
        description="Column outputs (4 x 256) and first-FC activations (2 x 512) per exam, saved as "
        ".npz and projected with UMAP, coloured by labels or the readers' mean probability.",
    )
    p.add_argument("workdir", metavar="WORKDIR", help="preprocessed work folder (exams.json, cropped/)")
    p.add_argument("--model", required=True, metavar="CKPT", help="breast-level model checkpoint")
    p.add_argument("--labels", help="labels CSV (colour by malignant/benign label)")
    p.add_argument("--readers", help="readers CSV (colour and size by the readers' mean probability)")
    p.add_argument("--scale", type=float, choices=(1.0, 100.0), help="readers' probability scale")
    p.add_argument("--device", default="cpu", help="torch device (default cpu)")
    p.add_argument("--seed", type=int, default=0, help="UMAP seed (default 0)")
    p.add_argument("-o", "--out", metavar="OUTDIR", help="output folder (default WORKDIR/embed)")
    p.set_defaults(func=_embed)

    p = subparsers.add_parser(
        "report",
        help="one self-contained HTML page: views, heatmaps, predictions, metrics",
        description="A single HTML file (images embedded, no network) with each exam's views, heatmap "
        "overlays, predictions and labels, and an evaluation folder's tables and plots.",
    )
    p.add_argument("workdir", metavar="WORKDIR", help="work folder (exams.json, cropped/, heatmaps/)")
    p.add_argument("-o", "--out", required=True, metavar="HTML", help="output HTML file")
    p.add_argument("--predictions", help="predictions CSV")
    p.add_argument("--labels", help="labels CSV")
    p.add_argument("--eval", dest="eval_dir", metavar="DIR", help="folder written by `mammokit evaluate -o`")
    p.add_argument("--max-exams", type=int, default=50, help="exams shown (default 50)")
    p.set_defaults(func=_report)


def _evaluate(args: argparse.Namespace) -> int:
    from mammokit.evaluation.evaluate import evaluate
    from mammokit.evaluation.tables import evaluation_markdown

    files = list(args.files)
    labels = args.labels
    if labels is None:
        if len(files) < 2:
            raise UsageError("no labels: give --labels LABELS or PREDICTIONS... LABELS (labels last)")
        labels = files.pop()
    result = evaluate(
        files, labels, population=args.population, bootstrap=args.bootstrap, seed=args.seed,
        by=args.by, out_dir=args.out, names=args.name, split=args.split,
    )
    print(evaluation_markdown(result))
    if args.out:
        print(f"wrote {args.out}")
    return 0


def _reader_study(args: argparse.Namespace) -> int:
    from mammokit.evaluation.reader_study import reader_study, reader_study_markdown

    if args.nyu_csv is None and not (args.readers and args.model and args.labels):
        raise UsageError("give --readers, --model and --labels, or --nyu-csv")
    result = reader_study(
        args.readers, args.model, args.labels, nyu_csv=args.nyu_csv, model_column=args.model_column,
        scale=args.scale, lam=args.lam, out_dir=args.out,
    )
    print(reader_study_markdown(result))
    return 0


def _embed(args: argparse.Namespace) -> int:
    from mammokit.evaluation.embed import embed

    res = embed(args.workdir, args.model, labels=args.labels, readers=args.readers, out_dir=args.out,
                device=args.device, seed=args.seed, scale=args.scale)
    for k, v in res.outputs.items():
        print(f"{k}: {v}")
    return 0


def _report(args: argparse.Namespace) -> int:
    from mammokit.report.html import write_report

    path = write_report(args.workdir, args.out, predictions=args.predictions, labels=args.labels,
                        eval_dir=args.eval_dir, max_exams=args.max_exams)
    print(f"wrote {path}")
    return 0
