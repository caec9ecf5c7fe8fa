"""Build any registered network by name: :func:`create_model`, :func:`list_models`.

Importing this module imports the modules whose builders register the built-in models
(:mod:`.breast`, :mod:`.patch`), so every name is known before the first lookup.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch.nn as nn

from mammokit.errors import UsageError
from mammokit.models import breast, patch  # noqa: F401 - registers the built-in models
from mammokit.models._registry import registered

__all__ = ["create_model", "list_models", "model_entrypoint"]


def list_models() -> list[str]:
    """Registered model names, sorted."""
    return sorted(registered())


def model_entrypoint(name: str) -> Callable[..., nn.Module]:
    """The builder registered as ``name``; an unknown name lists the known ones."""
    try:
        return registered()[name]
    except KeyError:
        raise UsageError(f"unknown model {name!r}; known models: {', '.join(list_models())}") from None


def create_model(name: str, **kwargs: Any) -> nn.Module:
    """Build the model registered as ``name`` with the builder's keyword arguments.

    Breast-level models (``view_wise``, ``image_wise``, ``breast_wise``, ``joint``) take
    ``in_channels`` (1 or 3), ``task`` ("cancer" | "birads") and ``input_noise_std``; patch
    classifiers (``densenet121_patch``, ``patchnet_small``) take ``num_classes`` and ``in_chans``.
    """
    return model_entrypoint(name)(**kwargs)
