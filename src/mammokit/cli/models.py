"""``mammokit import-weights``: the authors' published weight files -> mammokit checkpoints."""

from __future__ import annotations

import argparse

ORDER = 40


def _import_weights(args: argparse.Namespace) -> int:
    from mammokit.models.convert import import_weights

    summary = import_weights(args.src, args.output, kind=args.kind, in_chans=args.in_chans)
    print(f"{summary['path']}: {summary['arch']} {summary['model_args']} ({summary['parameters']:,} parameters)")
    return 0


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "import-weights",
        help="convert the authors' weight files (.p) to mammokit checkpoints",
        description="Convert a weight file of nyukat/breast_cancer_classifier (patch classifier, "
        "view-wise or image-wise model) into a self-describing mammokit safetensors checkpoint. "
        "The file is read with torch.load(weights_only=True); every key must be accounted for.",
    )
    p.add_argument("src", help="authors' weight file (e.g. sample_image_model.p)")
    p.add_argument("-o", "--output", required=True, help="checkpoint to write (.safetensors)")
    p.add_argument("--kind", choices=["auto", "patch", "view_wise", "image_wise"], default="auto",
                   help="which model the file holds (default: detect from its keys)")
    p.add_argument("--in-chans", type=int, choices=[1, 3], default=1,
                   help="patch model input channels: 1 folds the first kernel (same outputs, faster)")
    p.set_defaults(func=_import_weights)
