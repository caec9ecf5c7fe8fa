"""``mammokit synth OUT --exams N --seed S``: generate the synthetic data set."""

from __future__ import annotations

import argparse

ORDER = 5


def _fraction(text: str) -> float:
    value = float(text)
    if not 0 <= value <= 1:
        raise argparse.ArgumentTypeError(f"expected a value in [0, 1], got {text}")
    return value


def _splits(text: str) -> tuple[float, float, float]:
    try:
        parts = tuple(float(p) for p in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected three comma-separated fractions, got {text!r}") from None
    if len(parts) != 3:
        raise argparse.ArgumentTypeError(f"expected train,val,test fractions, got {text!r}")
    return parts  # type: ignore[return-value]


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "synth",
        help="generate synthetic screening exams (images, masks, manifest, labels)",
        description="Generate synthetic four-view screening mammograms with lesion masks, a "
        "manifest, per-breast labels, noisy BI-RADS and the findings' positions.",
    )
    p.add_argument("out", help="output folder")
    p.add_argument("--exams", type=int, required=True, help="number of exams")
    p.add_argument("--seed", type=int, default=0, help="data-set seed (same seed, same files)")
    p.add_argument("--scale", type=float, default=1.0,
                   help="pixel scale in (0, 1]: 1.0 = 85 um, 3328x2560 (0.5, 0.25, 0.125 for the CPU)")
    p.add_argument("--cancer-rate", type=_fraction, default=0.25, help="share of exams with cancer")
    p.add_argument("--benign-rate", type=_fraction, default=0.25, help="share of exams with a benign finding")
    p.add_argument("--occult-rate-malignant", type=_fraction, default=0.13, help="share of occult malignant findings")
    p.add_argument("--occult-rate-benign", type=_fraction, default=0.43, help="share of occult benign findings")
    p.add_argument("--splits", type=_splits, default=(0.6, 0.2, 0.2), help="train,val,test fractions per patient")
    p.add_argument("--workers", type=int, default=1, help="processes (output does not depend on it)")
    p.add_argument("--dicom", action="store_true", help="also write dicom/<exam>/<view>.dcm (MG DICOM)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from mammokit.synth import generate

    result = generate(
        args.out,
        n_exams=args.exams,
        seed=args.seed,
        scale=args.scale,
        cancer_rate=args.cancer_rate,
        benign_rate=args.benign_rate,
        occult_rate_malignant=args.occult_rate_malignant,
        occult_rate_benign=args.occult_rate_benign,
        workers=args.workers,
        dicom=args.dicom,
        splits=args.splits,
    )
    print(
        f"{result.n_images} images of {result.n_exams} exams in {result.out} "
        f"({result.malignant_breasts} malignant, {result.benign_breasts} benign breasts; {result.seconds:.1f} s)"
    )
    return 0
