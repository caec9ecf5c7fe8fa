"""Inference: breast-level predictions with test-time augmentation and ensembles
(:func:`predict`), and the whole pipeline from raw images to predictions (:func:`run`)."""

from mammokit.inference.predict import PredictResult, predict, predict_exams
from mammokit.inference.run import RunResult, run

__all__ = ["PredictResult", "RunResult", "predict", "predict_exams", "run"]
