"""``mammokit preprocess MANIFEST --out WORKDIR``: crop every image and find its window centre."""

from __future__ import annotations

import argparse
import sys

ORDER = 20


def register(subparsers) -> None:
    from mammokit.config import PRESETS

    p = subparsers.add_parser(
        "preprocess",
        help="crop images to the breast and compute optimal window centres",
        description="Crop every image of a manifest to the breast (erosion / largest component / "
        "dilation, as the reference implementation) and compute its optimal model-input window "
        "centre. Writes WORKDIR/cropped/<name>.png, WORKDIR/exams.json and "
        "WORKDIR/preprocess_failures.csv. Bad images are reported and skipped (--strict: fatal). "
        "A re-run resumes: images already done with the same settings are reused.",
    )
    p.add_argument("manifest", help="manifest CSV (exam_id,view,path[,patient_id,horizontal_flip,split])")
    p.add_argument("--out", "-o", required=True, metavar="WORKDIR", help="work folder to write")
    p.add_argument("--preset", default="paper", choices=list(PRESETS), help="resolution preset (default: paper)")
    p.add_argument("--workers", "-j", type=int, default=1, help="parallel processes (default: 1)")
    p.add_argument("--strict", action="store_true", help="stop at the first image that fails")
    p.add_argument(
        "--background-threshold", type=int, default=0, metavar="T",
        help="pixels <= T count as background (default 0, the reference); raise it for images whose "
        "background is near zero rather than exactly zero",
    )
    p.add_argument("--no-resume", action="store_true", help="recompute every image even if already done")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from mammokit.preprocess.pipeline import preprocess

    report = preprocess(
        args.manifest, args.out, preset=args.preset, workers=args.workers, strict=args.strict,
        background_threshold=args.background_threshold, resume=not args.no_resume,
    )
    print(report.summary())
    # Partial success is success (the failures are listed); nothing usable is an error.
    if report.n_images and report.n_ok == 0:
        print(f"mammokit preprocess: error: no image could be preprocessed (see {report.failures_path})", file=sys.stderr)
        return 1
    return 0
