"""Training of every stage: patch classifier, BI-RADS pretraining, breast-level models, ensembles.

Entry points: :func:`train_breast` / :func:`resume_breast` (``mammokit train``) and
:func:`train_patch` / :func:`resume_patch` (``mammokit train-patch``), configured by
:class:`TrainConfig` / :class:`PatchTrainConfig` (paper defaults). Runs are resumable at any step
(``state.pt``) and run multi-process under torchrun (DistributedDataParallel).
"""

from mammokit.training.config import PatchTrainConfig, TrainConfig

__all__ = ["TrainConfig", "PatchTrainConfig", "train_breast", "resume_breast", "train_patch", "resume_patch"]


def __getattr__(name: str):
    # Trainers import torch; load them on first use so `import mammokit.training` stays light.
    if name in ("train_breast", "resume_breast"):
        from mammokit.training import breast

        return getattr(breast, name)
    if name in ("train_patch", "resume_patch"):
        from mammokit.training import patch

        return getattr(patch, name)
    raise AttributeError(name)
