"""``mammokit import FORMAT ROOT --out DIR``: a public data set, as downloaded, to a manifest."""

from __future__ import annotations

import argparse
import sys

ORDER = 5


def register(subparsers) -> None:
    from mammokit.data.importers.base import FORMATS

    p = subparsers.add_parser(
        "import",
        help="import a public data set (CBIS-DDSM, VinDr-Mammo, RSNA, INbreast, CMMD, EMBED) as downloaded",
        description="Read a public data set's folder exactly as downloaded (tables + DICOM files; headers "
        "only, in parallel, resumable) and write DIR/manifest.csv, DIR/labels.csv, DIR/masks/*.png, "
        "DIR/boxes.csv and DIR/import_report.json (every rejected file or row with its reason). "
        "A wrong FORMAT or a ROOT without that layout is a one-line error, exit status 1.",
    )
    p.add_argument("format", metavar="FORMAT", help=f"one of {', '.join(FORMATS)}")
    p.add_argument("root", metavar="ROOT", help="the data set's folder as downloaded")
    p.add_argument("--out", "-o", required=True, metavar="DIR", help="output folder")
    p.add_argument("--workers", "-j", type=int, default=1, metavar="N",
                   help="processes reading DICOM headers (default 1)")
    p.add_argument("--seed", type=int, default=0, help="seed of the patient-level split where the set has none")
    p.add_argument("--strict", action="store_true", help="an unreadable or missing file is fatal")
    p.add_argument("--no-resume", action="store_true", help="re-read every header (ignore DIR/.import_cache.jsonl)")
    p.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    from mammokit.cli import one_line
    from mammokit.data.importers import ImportFormatError, run_import
    from mammokit.data.importers.run import format_summary

    try:
        result = run_import(args.format, args.root, args.out, workers=args.workers, seed=args.seed,
                            strict=args.strict, resume=not args.no_resume)
    except ImportFormatError as exc:
        # The contract: wrong FORMAT / ROOT layout is exit status 1 (other user errors 2).
        print(f"mammokit import: error: {one_line(exc)}", file=sys.stderr)
        return exc.exit_code
    print(format_summary(result.report))
    return 0
