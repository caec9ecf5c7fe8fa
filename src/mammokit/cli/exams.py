"""``mammokit exams import|export``: convert between the authors' pickled exam lists and
``WORKDIR/exams.json``."""

from __future__ import annotations

import argparse

ORDER = 90


def _import(args: argparse.Namespace) -> int:
    from mammokit.data.examlist import import_reference_exam_list

    out = import_reference_exam_list(args.exam_list, args.images, args.output, preset=args.preset)
    print(f"wrote {out}")
    return 0


def _export(args: argparse.Namespace) -> int:
    from mammokit.data.examlist import export_reference_exam_list

    n = export_reference_exam_list(args.workdir, args.output)
    print(f"wrote {n} exams -> {args.output}")
    return 0


def register(subparsers) -> None:
    p = subparsers.add_parser("exams", help="import / export the reference implementation's exam lists")
    sub = p.add_subparsers(dest="exams_command", metavar="ACTION", required=True)

    imp = sub.add_parser(
        "import",
        help="reference exam list (.pkl) -> WORKDIR/exams.json",
        description="Read a pickled exam list safely (plain data only) and write WORKDIR/exams.json whose "
        "image folder is DIR (the reference's cropped PNGs).",
    )
    imp.add_argument("exam_list", metavar="LIST.pkl")
    imp.add_argument("--images", required=True, metavar="DIR", help="folder holding <name>.png of the exam list")
    imp.add_argument("-o", "--output", required=True, metavar="WORKDIR", help="work folder to create")
    imp.add_argument("--preset", default="paper", help="preset recorded in exams.json (default: paper)")
    imp.set_defaults(func=_import)

    exp = sub.add_parser(
        "export",
        help="WORKDIR/exams.json -> reference exam list (.pkl)",
        description="Write the exam list in the reference implementation's pickle format (protocol 2).",
    )
    exp.add_argument("workdir", metavar="WORKDIR")
    exp.add_argument("-o", "--output", required=True, metavar="LIST.pkl")
    exp.set_defaults(func=_export)
