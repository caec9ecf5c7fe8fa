"""README figure: one synthetic exam's four views above their lesion masks.

    python -m mammokit.synth.figure docs/images/synthetic_exam.png --seed 4 --scale 0.25

The exam shown is the first of the seed's data set that holds a visible malignant and a visible
benign finding (searched over plans only, so it is cheap), rendered exactly as ``generate`` does.
"""

from __future__ import annotations

import argparse
import io
from pathlib import Path

import numpy as np

from mammokit.config import VIEWS
from mammokit.synth.config import SynthConfig
from mammokit.synth.plan import plan_dataset
from mammokit.synth.render import render_view
from mammokit.utils.io import write_bytes_atomic


def make_figure(out: str | Path, seed: int = 4, scale: float = 0.25, dpi: int = 80) -> Path:
    """Draw the figure into ``out`` (PNG). Returns the path."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cfg = SynthConfig(scale=scale, cancer_rate=0.5, benign_rate=0.5)
    plan = next(
        (p for p in plan_dataset(200, seed, cfg)
         if {f.cls for f in p.findings if not f.occult and f.kind in ("mass", "distortion")} >= {"malignant"}
         and any(f.cls == "benign" and not f.occult for f in p.findings)),
        None,
    )
    if plan is None:
        raise ValueError(f"seed {seed}: no exam with visible malignant and benign findings among 200")
    renders = {view: render_view(plan, view, cfg) for view in VIEWS}
    fig, axes = plt.subplots(2, 4, figsize=(10, 6.6))
    for col, view in enumerate(VIEWS):
        r = renders[view]
        axes[0, col].imshow(r.image, cmap="gray", vmin=0, vmax=4095)
        axes[0, col].set_title(view)
        overlay = np.zeros(r.image.shape + (3,), np.float32)
        overlay[..., 1] = 0.25 * r.breast
        overlay[r.malignant] = (1.0, 0.2, 0.2)
        overlay[r.benign] = (0.3, 0.6, 1.0)
        axes[1, col].imshow(overlay)
        axes[1, col].set_title("masks: malignant red, benign blue", fontsize=7)
        for ax in axes[:, col]:
            ax.set_axis_off()
    fig.suptitle(f"mammokit synth: exam {plan.exam_id} ({plan.finding_types}), density {plan.density}", fontsize=9)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi)
    plt.close(fig)
    write_bytes_atomic(out, buf.getvalue())
    return Path(out)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", help="output PNG")
    parser.add_argument("--seed", type=int, default=4)
    parser.add_argument("--scale", type=float, default=0.25)
    parser.add_argument("--dpi", type=int, default=80)
    args = parser.parse_args(argv)
    print(make_figure(args.out, args.seed, args.scale, args.dpi))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
