"""``mammokit preprocess MANIFEST --out WORKDIR``: crop every image and find its window centre."""

from __future__ import annotations

import argparse
import sys

ORDER = 20


PRESET_HELP = (
    "resolution preset: auto (default) = the one recorded in the --model / --patch-model checkpoint(s); "
    "or a name (paper, half, small, tiny), scale:F (every size of the paper's times F, e.g. scale:0.25) "
    "or a TOML file (see the README)"
)


def register(subparsers) -> None:
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
    p.add_argument("--preset", default="auto", help=PRESET_HELP)
    p.add_argument("--model", "-m", action="append", default=[], metavar="CKPT", dest="models",
                   help="breast-level checkpoint to be used on this work folder: --preset auto reads its preset "
                   "(repeatable)")
    p.add_argument("--patch-model", default=None, metavar="CKPT",
                   help="patch classifier to be used on this work folder: --preset auto reads its preset")
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
    from mammokit.models.presets import resolve_preset
    from mammokit.preprocess.pipeline import preprocess

    checkpoints = [*args.models, *([args.patch_model] if args.patch_model else [])]
    preset = resolve_preset(args.preset, checkpoints)
    report = preprocess(
        args.manifest, args.out, preset=preset, workers=args.workers, strict=args.strict,
        background_threshold=args.background_threshold, resume=not args.no_resume,
    )
    print(report.summary())
    # Partial success is success (the failures are listed); nothing usable is an error.
    if report.n_images and report.n_ok == 0:
        first = report.failures[0] if report.failures else None
        detail = f"; the first: {first['path']}: {first['reason']}" if first else ""
        print(f"mammokit preprocess: error: no image could be preprocessed{detail} (all in {report.failures_path})",
              file=sys.stderr)
        return 1
    return 0
