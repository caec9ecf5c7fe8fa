"""The model registry: every network is built by name through :func:`create_model`.

Each named variant is a small builder function decorated with :func:`register_model`; its name
is the function name. A duplicate name is an error (as torchvision's ``_api.py``), never a silent
override, so two modules cannot fight over a name.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch.nn as nn

_MODELS: dict[str, Callable[..., nn.Module]] = {}


def register_model(fn: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
    """Register ``fn`` (a builder ``fn(**kwargs) -> nn.Module``) under ``fn.__name__``."""
    name = fn.__name__
    if name in _MODELS:
        raise ValueError(f"model {name!r} is already registered (by {_MODELS[name].__module__})")
    _MODELS[name] = fn
    return fn


def list_models() -> list[str]:
    """Registered model names, sorted."""
    _ensure_builtin()
    return sorted(_MODELS)


def model_entrypoint(name: str) -> Callable[..., nn.Module]:
    """The builder registered as ``name``; an unknown name lists the known ones."""
    _ensure_builtin()
    try:
        return _MODELS[name]
    except KeyError:
        raise ValueError(f"unknown model {name!r}; known models: {', '.join(sorted(_MODELS))}") from None


def create_model(name: str, **kwargs: Any) -> nn.Module:
    """Build the model registered as ``name`` with the builder's keyword arguments.

    Breast-level models (``view_wise``, ``image_wise``, ``breast_wise``, ``joint``) take
    ``in_channels`` (1 or 3), ``task`` ("cancer" | "birads") and ``input_noise_std``; patch
    classifiers (``densenet121_patch``, ``patchnet_small``) take ``num_classes`` and ``in_chans``.
    """
    return model_entrypoint(name)(**kwargs)


def _ensure_builtin() -> None:
    # The builders register themselves on import; importing here lets ``_registry`` be used
    # directly without first importing ``mammokit.models``.
    from mammokit.models import breast, patch  # noqa: F401
