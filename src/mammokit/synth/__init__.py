"""Synthetic screening mammograms: the project's embedded data set (``mammokit synth``).

``generate(out, n_exams, seed, scale=...)`` writes four-view exams with pixel masks of their
findings, a manifest, labels (per-breast benign / malignant, noisy BI-RADS, density) and the
findings' positions. Lower-level pieces: ``plan_dataset`` (labels and findings without pixels),
``render_view`` / ``render_exam`` (pixels of one view / exam).
"""

from mammokit.synth.config import SynthConfig
from mammokit.synth.generator import SynthResult, generate, render_exam
from mammokit.synth.plan import ExamPlan, plan_dataset, plan_exam
from mammokit.synth.render import ViewRender, render_view

__all__ = [
    "ExamPlan",
    "SynthConfig",
    "SynthResult",
    "ViewRender",
    "generate",
    "plan_dataset",
    "plan_exam",
    "render_exam",
    "render_view",
]
