"""The model registry: every network is registered by name, once.

Each named variant is a small builder function decorated with :func:`register_model`; its name
is the function name. A duplicate name is an error (as torchvision's ``_api.py``), never a silent
override, so two modules cannot fight over a name. Lookup and construction live in
:mod:`mammokit.models._factory`, which imports the modules that register the built-in models
(this module imports none of them, so the registry has no import cycle).
"""

from __future__ import annotations

from collections.abc import Callable

import torch.nn as nn

__all__ = ["register_model", "registered"]

_MODELS: dict[str, Callable[..., nn.Module]] = {}


def register_model(fn: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
    """Register ``fn`` (a builder ``fn(**kwargs) -> nn.Module``) under ``fn.__name__``."""
    name = fn.__name__
    if name in _MODELS:
        raise ValueError(f"model {name!r} is already registered (by {_MODELS[name].__module__})")
    _MODELS[name] = fn
    return fn


def registered() -> dict[str, Callable[..., nn.Module]]:
    """The registry itself (name -> builder), as registered so far."""
    return _MODELS
