"""The paper's Table III (values from the paper's text) and the writers of ``table3.{md,csv,json}``
and ``table3.png`` for :mod:`mammokit.workflows.reproduce`.

Rows: input (image-only, image+heatmaps) x variant (view-wise, view-wise without BI-RADS
pretraining, image-wise, breast-wise, joint). Columns: population (screening, biopsied) x
single model (mean +- std over K members) / K-member ensemble x task (malignant, benign).
"""

from __future__ import annotations

from pathlib import Path

INPUTS = ("image-only", "image+heatmaps")
VARIANTS = ("view-wise", "view-wise*", "image-wise", "breast-wise", "joint")
"""``view-wise*``: without BI-RADS pretraining (the paper's asterisk)."""
POPULATIONS = ("screening", "biopsied")
TASKS = ("malignant", "benign")

# Wu et al. 2019, Table III: per (input, variant), per population,
# (single malignant mean, std, single benign mean, std, ensemble malignant, ensemble benign).
PAPER_TABLE3 = {
    ("image-only", "view-wise"): {"screening": (0.827, 0.008, 0.731, 0.004, 0.840, 0.743),
                                  "biopsied": (0.781, 0.006, 0.673, 0.003, 0.791, 0.682)},
    ("image-only", "view-wise*"): {"screening": (0.687, 0.009, 0.657, 0.006, 0.703, 0.669),
                                   "biopsied": (0.693, 0.006, 0.564, 0.006, 0.709, 0.571)},
    ("image-only", "image-wise"): {"screening": (0.830, 0.006, 0.759, 0.002, 0.841, 0.766),
                                   "biopsied": (0.740, 0.007, 0.638, 0.001, 0.749, 0.642)},
    ("image-only", "breast-wise"): {"screening": (0.821, 0.012, 0.757, 0.002, 0.836, 0.768),
                                    "biopsied": (0.726, 0.009, 0.639, 0.002, 0.738, 0.645)},
    ("image-only", "joint"): {"screening": (0.822, 0.008, 0.737, 0.004, 0.831, 0.746),
                              "biopsied": (0.780, 0.006, 0.682, 0.001, 0.787, 0.688)},
    ("image+heatmaps", "view-wise"): {"screening": (0.886, 0.003, 0.747, 0.002, 0.895, 0.756),
                                      "biopsied": (0.843, 0.004, 0.690, 0.002, 0.850, 0.696)},
    ("image+heatmaps", "view-wise*"): {"screening": (0.856, 0.007, 0.701, 0.004, 0.868, 0.708),
                                       "biopsied": (0.828, 0.008, 0.633, 0.006, 0.841, 0.640)},
    ("image+heatmaps", "image-wise"): {"screening": (0.875, 0.001, 0.765, 0.003, 0.885, 0.774),
                                       "biopsied": (0.812, 0.001, 0.653, 0.003, 0.821, 0.658)},
    ("image+heatmaps", "breast-wise"): {"screening": (0.876, 0.004, 0.764, 0.004, 0.889, 0.779),
                                        "biopsied": (0.805, 0.004, 0.652, 0.004, 0.818, 0.661)},
    ("image+heatmaps", "joint"): {"screening": (0.860, 0.008, 0.745, 0.002, 0.876, 0.763),
                                  "biopsied": (0.817, 0.008, 0.696, 0.005, 0.830, 0.709)},
}


def paper_value(inputs: str, variant: str, population: str, kind: str, task: str) -> tuple[float, float | None]:
    """(value, std or None) of the paper for one cell; ``kind`` single / ensemble."""
    v = PAPER_TABLE3[(inputs, variant)][population]
    if kind == "single":
        return (v[0], v[1]) if task == "malignant" else (v[2], v[3])
    return (v[4], None) if task == "malignant" else (v[5], None)


def row_key(inputs: str, variant: str) -> str:
    """Folder-safe key: ``image_only__view_wise``, ``image_heatmaps__view_wise_nobirads``."""
    i = "image_only" if inputs == "image-only" else "image_heatmaps"
    v = variant.replace("-", "_").replace("*", "_nobirads")
    return f"{i}__{v}"


def _fmt(x, std=None) -> str:
    if x is None:
        return "n/a"
    return f"{x:.3f}" if std is None else f"{x:.3f} ± {std:.3f}"


def table_rows(result: dict) -> list[dict]:
    """Flat rows (one per input, variant, population, model kind, task) with ours and the paper's."""
    out = []
    for row in result["rows"]:
        for pop in POPULATIONS:
            for kind in ("single", "ensemble"):
                for task in TASKS:
                    ours = row[pop][task][kind]
                    pv, ps = paper_value(row["input"], row["variant"], pop, kind, task)
                    out.append({
                        "input": row["input"], "variant": row["variant"], "bi_rads_pretraining": row["pretrained"],
                        "population": pop, "model": kind, "task": task, "auc": ours["auc"],
                        "std": ours.get("std"), "ci_low": ours.get("ci", [None, None])[0],
                        "ci_high": ours.get("ci", [None, None])[1], "paper_auc": pv, "paper_std": ps,
                    })
    return out


def table_markdown(result: dict) -> str:
    """``table3.md``: our Table III beside the paper's, then the paired-CI comparisons."""
    s = result["settings"]
    lines = [
        "# Table III, reproduced on synthetic data",
        "",
        f"mammokit `reproduce table3 --scale {result['scale']}`: {s['n_exams']} synthetic exams at scale "
        f"{s['scale']:g}, test split {result['test_split']['n_exams']} exams "
        f"({result['test_split']['n_biopsied_exams']} biopsied), K = {s['ensemble']} members per model, "
        f"{s['cancer_epochs']} epochs, TTA {s['tta']}, seed {result['seed']}; "
        f"{result['seconds'] / 60:.1f} min on {result['machine']['cpus']} CPUs. Breast-level ROC AUC: single = mean ± "
        f"std over the K members; ensemble = the K members' mean probability. * = no BI-RADS pretraining. "
        "The paper's values (Wu et al. 2019, Table III, real data, 5 members) are the shape to compare, not a "
        "target: synthetic findings at 1/16 scale are easier and different.",
        "",
    ]
    for pop in POPULATIONS:
        lines += [f"## {pop} population", "",
                  "| input | variant | single malignant | (paper) | single benign | (paper) | ensemble malignant | "
                  "(paper) | ensemble benign | (paper) |",
                  "|---|---|---|---|---|---|---|---|---|---|"]
        for row in result["rows"]:
            cells = []
            for kind in ("single", "ensemble"):
                for task in TASKS:
                    ours = row[pop][task][kind]
                    pv, ps = paper_value(row["input"], row["variant"], pop, kind, task)
                    cells += [_fmt(ours["auc"], ours.get("std")), _fmt(pv, ps)]
            lines.append(f"| {row['input']} | {row['variant']} | " + " | ".join(cells) + " |")
        lines.append("")
    lines += ["## Claims: paired exam-bootstrap 95 % CIs of the AUC difference (screening population)", "",
              "| comparison | task | difference | 95 % CI | verdict |", "|---|---|---|---|---|"]
    for c in result["comparisons"]:
        lo, hi = c["ci"]
        ci = "n/a" if lo is None else f"[{lo:+.3f}, {hi:+.3f}]"
        lines.append(f"| {c['comparison']} | {c['task']} | {c['delta']:+.3f} | {ci} | {c['verdict']} |")
    lines.append("")
    return "\n".join(lines)


def plot_table3(result: dict, path: Path) -> Path:
    """``table3.png``: ensemble AUC per row, ours (dots) against the paper's (crosses), screening."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = result["rows"]
    labels = [f"{r['input']} {r['variant']}" for r in rows]
    fig, axes = plt.subplots(1, 2, figsize=(11, 0.45 * len(rows) + 1.5), sharey=True)
    for ax, task in zip(axes, TASKS):
        for i, r in enumerate(rows):
            ours = r["screening"][task]["ensemble"]
            single = r["screening"][task]["single"]
            paper = paper_value(r["input"], r["variant"], "screening", "ensemble", task)[0]
            if ours["auc"] is not None:
                lo, hi = ours["ci"]
                if lo is not None:
                    ax.plot([lo, hi], [i, i], color="tab:blue", lw=1.5)
                ax.plot(ours["auc"], i, "o", color="tab:blue", label="ours, ensemble (95% CI)" if i == 0 else None)
            if single["auc"] is not None:
                ax.plot(single["auc"], i, "s", mfc="none", color="tab:green", label="ours, single (mean)" if i == 0 else None)
            ax.plot(paper, i, "x", color="tab:red", label="paper, 5x ensemble" if i == 0 else None)
        ax.set_title(f"{task}, screening population")
        ax.set_xlabel("breast-level ROC AUC")
        ax.grid(alpha=0.3)
    axes[0].set_yticks(range(len(rows)))
    axes[0].set_yticklabels(labels)
    axes[0].invert_yaxis()
    axes[1].legend(loc="lower left", fontsize=8)
    fig.tight_layout()
    path = Path(path)
    tmp = path.with_suffix(".tmp.png")
    fig.savefig(tmp, dpi=110)
    plt.close(fig)
    tmp.replace(path)
    return path
