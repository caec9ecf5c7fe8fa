"""BI-RADS -> cancer transfer (paper IV-C): copy the ResNet-22 columns, heads start fresh."""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn as nn

from mammokit.errors import InputFileError
from mammokit.utils.log import get_logger

log = get_logger(__name__)

COLUMN_PREFIX = "columns."
FIRST_KERNEL = "first_conv.weight"


def column_state(model: nn.Module) -> dict[str, torch.Tensor]:
    """The ResNet-22 column tensors (parameters and batch-norm buffers) of a breast-level model."""
    return {k: v for k, v in model.state_dict().items() if k.startswith(COLUMN_PREFIX)}


def load_columns(model: nn.Module, source: nn.Module | dict[str, torch.Tensor], where: str = "init") -> int:
    """Copy every column tensor of ``source`` into ``model``, exactly; returns how many.

    The first kernel of a 1-channel source going into a 3-channel model (image + heatmaps) is
    duplicated across the input channels ``[16, 1, 7, 7] -> [16, 3, 7, 7]`` (paper: "the first
    kernel's weights are duplicated across the new channels"). Any other mismatch, or a column
    tensor missing on either side, is an error: a partial transfer must never pass silently.
    Heads (``fc1_*``, ``output_layer_*``) are left as initialised.
    """
    src = column_state(source) if isinstance(source, nn.Module) else dict(source)
    dst = model.state_dict()
    dst_cols = {k for k in dst if k.startswith(COLUMN_PREFIX)}
    missing = sorted(dst_cols - set(src))
    unexpected = sorted(set(src) - dst_cols)
    if missing or unexpected:
        raise InputFileError(f"{where}: column weights do not match (missing {missing[:4]}, unexpected {unexpected[:4]})")
    with torch.no_grad():
        for key in sorted(dst_cols):
            value = src[key]
            target = dst[key]
            if value.shape != target.shape:
                if key.endswith(FIRST_KERNEL) and value.shape[1] == 1 and target.shape[1] > 1 \
                        and value.shape[0] == target.shape[0] and value.shape[2:] == target.shape[2:]:
                    value = value.repeat(1, target.shape[1], 1, 1)
                else:
                    raise InputFileError(f"{where}: {key} has shape {tuple(value.shape)}, model needs {tuple(target.shape)}")
            target.copy_(value.to(target.dtype))
    log.info("initialised %d column tensors from %s", len(dst_cols), where)
    return len(dst_cols)


def init_from_checkpoint(model: nn.Module, path: str | Path) -> dict:
    """Initialise ``model``'s columns from a mammokit breast-level checkpoint (a BI-RADS run's
    ``best.safetensors``, or any breast-level model); returns the source's metadata."""
    from mammokit.models.checkpoint import load_model

    path = Path(path)
    if path.is_dir():  # a run folder: its best checkpoint
        path = path / "best.safetensors"
    source, meta = load_model(path)
    if not hasattr(source, "columns"):
        raise InputFileError(f"{path}: not a breast-level model checkpoint (arch {meta.get('arch')!r}); --init needs one")
    load_columns(model, source, where=str(path))
    return meta
