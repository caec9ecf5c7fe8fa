"""Networks of Wu et al. (2019) and their checkpoints.

``create_model(name, **kwargs)`` builds any registered network (``list_models()``):
breast-level ``view_wise``, ``image_wise``, ``breast_wise``, ``joint`` (ResNet-22 columns) and
patch classifiers ``densenet121_patch``, ``patchnet_small``. ``save_checkpoint`` / ``load_model``
read and write self-describing safetensors checkpoints; ``mammokit.models.convert`` imports the
authors' published weight files.
"""

from mammokit.models._factory import create_model, list_models, model_entrypoint
from mammokit.models._registry import register_model
from mammokit.models.breast import (
    BreastModel,
    init_columns_from,
    probabilities_from_logits,
)
from mammokit.models.checkpoint import (
    CheckpointError,
    Ensemble,
    load_model,
    read_checkpoint,
    save_checkpoint,
    save_ensemble,
)
from mammokit.models.patch import PatchDenseNet121, PatchNetSmall
from mammokit.models.presets import checkpoint_preset, resolve_preset
from mammokit.models.resnet22 import ResNet22

__all__ = [
    "BreastModel",
    "CheckpointError",
    "Ensemble",
    "PatchDenseNet121",
    "PatchNetSmall",
    "ResNet22",
    "checkpoint_preset",
    "init_columns_from",
    "create_model",
    "list_models",
    "load_model",
    "model_entrypoint",
    "probabilities_from_logits",
    "read_checkpoint",
    "register_model",
    "resolve_preset",
    "save_checkpoint",
    "save_ensemble",
]
