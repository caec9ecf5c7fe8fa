"""Import the authors' published weight files (nyukat/breast_cancer_classifier) as mammokit
checkpoints.

Sources (``torch.save`` pickles, read with ``weights_only=True``):

* ``patch``: bare state dict of torchvision ``densenet121(num_classes=4)``, ported from
  TensorFlow (needs TF "SAME" padding) -> ``densenet121_patch(num_classes=4, in_chans=1,
  tf_same_padding=True)``; the first kernel is folded to one grayscale channel (exactly the
  reference's repeated channel).
* ``view_wise``: ``{"model": sd}`` with ``four_view_resnet.{cc,mlo}.*`` columns, their aliases
  ``four_view_resnet.{l_cc,r_cc,l_mlo,r_mlo}.*`` (verified identical), heads ``fc1_{cc,mlo}``,
  ``output_layer_{cc,mlo}.fc_layer`` -> ``view_wise(in_channels=C)``.
* ``image_wise``: ``{"model": sd}`` with the same columns and heads ``fc1_{lcc,rcc,lmlo,rmlo}``,
  ``output_layer_<v>.fc_layer`` [4, 256] (or [8, 256], of which the reference's single-image
  loader uses the first 4 rows) -> ``image_wise(in_channels=C)``.

One explicit key-renaming function per source; every key must be accounted for.
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn

from mammokit.config import PRESETS
from mammokit.errors import MissingFileError, UsageError
from mammokit.models.checkpoint import (
    CheckpointError,
    build_fitting_model,
    save_checkpoint,
)
from mammokit.models.patch import _fix_densenet_keys, fold_input_channels
from mammokit.utils.log import get_logger

log = get_logger(__name__)

KINDS = ("patch", "view_wise", "image_wise")
SOURCE = "nyukat/breast_cancer_classifier"
_ALIASES = {"l_cc": "cc", "r_cc": "cc", "l_mlo": "mlo", "r_mlo": "mlo"}


class ConversionError(CheckpointError):
    """A foreign weight file that cannot be converted (names the file and the problem)."""


def load_reference_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """Read an authors' weight file safely; unwrap ``{"model": sd}``; strip a leading ``module.``.

    Raises :class:`ConversionError` for anything that is not a tensor state dict (a safetensors
    file, a pickle of other objects, a truncated file...).
    """
    path = Path(path)
    if not path.is_file():
        raise MissingFileError(f"{path}: weight file not found")
    with open(path, "rb") as f:
        head = f.read(9)
    if len(head) == 9 and head[8:9] == b"{":
        raise ConversionError(f"{path}: a safetensors file, not an authors' torch.save weight file "
                              "(mammokit checkpoints need no conversion)")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # UnpicklingError, RuntimeError (zip), EOFError...
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ConversionError(f"{path}: not a PyTorch state dict that can be loaded safely ({first})") from None
    if isinstance(obj, dict) and "model" in obj and isinstance(obj["model"], dict):
        obj = obj["model"]
    if not isinstance(obj, dict) or not obj or not all(
        isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in obj.items()
    ):
        raise ConversionError(f"{path}: expected a state dict (names -> tensors), got {type(obj).__name__}")
    # Prefixes added by DataParallel / torch.compile, only at the start of a key.
    return {re.sub(r"^(module\.|_orig_mod\.)+", "", k): v for k, v in obj.items()}


def detect_kind(sd: dict[str, torch.Tensor], where: str = "weights") -> str:
    """``patch`` / ``view_wise`` / ``image_wise`` from the keys of an authors' state dict."""
    if "features.conv0.weight" in sd and "classifier.weight" in sd:
        return "patch"
    if "four_view_resnet.cc.first_conv.weight" in sd:
        if "fc1_cc.weight" in sd:
            return "view_wise"
        if "fc1_lcc.weight" in sd:
            return "image_wise"
    raise ConversionError(
        f"{where}: cannot tell which authors' model this is (keys start {sorted(sd)[:4]}); "
        "pass --kind patch|view_wise|image_wise"
    )


def _rename_columns(sd: dict[str, torch.Tensor], where: str) -> tuple[dict[str, torch.Tensor], set[str]]:
    """``four_view_resnet.{cc,mlo}.X`` -> ``columns.{cc,mlo}.X``; aliases must equal their column."""
    out, used = {}, set()
    for key, value in sd.items():
        m = re.match(r"^four_view_resnet\.(cc|mlo)\.(.+)$", key)
        if m:
            out[f"columns.{m.group(1)}.{m.group(2)}"] = value
            used.add(key)
    for key, value in sd.items():
        m = re.match(r"^four_view_resnet\.(l_cc|r_cc|l_mlo|r_mlo)\.(.+)$", key)
        if not m:
            continue
        target = f"four_view_resnet.{_ALIASES[m.group(1)]}.{m.group(2)}"
        if target not in sd:
            raise ConversionError(f"{where}: alias {key} has no column key {target}")
        if sd[target].shape != value.shape or not torch.equal(sd[target], value):
            raise ConversionError(f"{where}: {key} differs from {target} (the shared column must be identical)")
        used.add(key)
    return out, used


def rename_view_wise_keys(sd: dict[str, torch.Tensor], where: str = "weights") -> dict[str, torch.Tensor]:
    """Authors' view-wise (SplitBreastModel) keys -> ``view_wise`` keys."""
    out, used = _rename_columns(sd, where)
    for key, value in sd.items():
        if re.match(r"^(fc1_(cc|mlo)|output_layer_(cc|mlo)\.fc_layer)\.(weight|bias)$", key):
            out[key] = value
            used.add(key)
    _no_leftovers(sd, used, where)
    return out


def rename_image_wise_keys(sd: dict[str, torch.Tensor], where: str = "weights") -> dict[str, torch.Tensor]:
    """Authors' image-wise (ImageBreastModel) keys -> ``image_wise`` keys.

    Output layers of 8 rows are cut to their first 4, as the reference's single-image loader.
    """
    out, used = _rename_columns(sd, where)
    for key, value in sd.items():
        if re.match(r"^fc1_(lcc|rcc|lmlo|rmlo)\.(weight|bias)$", key):
            out[key] = value
            used.add(key)
        elif re.match(r"^output_layer_(lcc|rcc|lmlo|rmlo)\.fc_layer\.(weight|bias)$", key):
            if value.shape[0] == 8:
                value = value[:4].clone()
            out[key] = value
            used.add(key)
    _no_leftovers(sd, used, where)
    return out


def rename_patch_keys(sd: dict[str, torch.Tensor], in_chans: int = 1, where: str = "weights") -> dict[str, torch.Tensor]:
    """Authors' patch classifier (torchvision densenet121 keys) -> ``densenet121_patch`` keys;
    the first kernel folded to ``in_chans`` channels."""
    out = _fix_densenet_keys(sd)
    if "features.conv0.weight" not in out:
        raise ConversionError(f"{where}: no features.conv0.weight: not a densenet121 state dict")
    out["features.conv0.weight"] = fold_input_channels(out["features.conv0.weight"], in_chans)
    return out


def _no_leftovers(sd: dict, used: set[str], where: str) -> None:
    left = sorted(set(sd) - used)
    if left:
        raise ConversionError(
            f"{where}: {len(left)} unexpected keys ({', '.join(left[:6])}{' ...' if len(left) > 6 else ''})"
        )


def reference_model(
    src: str | Path, kind: str = "auto", in_chans: int = 1
) -> tuple[nn.Module, str, dict[str, Any]]:
    """Build the mammokit model equivalent to an authors' weight file.

    Returns ``(model in eval mode, arch, model_args)``. ``in_chans`` applies to the patch model
    (1: folded grayscale kernel; 3: the original kernel, for a repeated channel).
    """
    where = str(src)
    sd = load_reference_state_dict(src)
    if kind == "auto":
        kind = detect_kind(sd, where)
    if kind not in KINDS:
        raise UsageError(f"unknown weight kind {kind!r}; choose one of {KINDS} or auto")
    if kind == "patch":
        if "classifier.weight" not in sd:
            raise ConversionError(f"{where}: no classifier.weight: not a densenet121 state dict")
        args = {"num_classes": int(sd["classifier.weight"].shape[0]), "in_chans": in_chans, "tf_same_padding": True}
        state = rename_patch_keys(sd, in_chans, where)
        arch = "densenet121_patch"
    else:
        first = sd.get("four_view_resnet.cc.first_conv.weight")
        if first is None:
            raise ConversionError(f"{where}: no four_view_resnet.cc.first_conv.weight: not a breast-level model")
        args = {"in_channels": int(first.shape[1])}
        state = (rename_view_wise_keys if kind == "view_wise" else rename_image_wise_keys)(sd, where)
        arch = kind
    try:
        # Built on the meta device and checked against the file's tensors first, so a file whose
        # shapes imply a huge model (e.g. classifier rows = 10**9) is refused before allocating.
        model = build_fitting_model(arch, args, state, where)
    except CheckpointError as exc:
        raise ConversionError(str(exc)) from None
    return model.eval(), arch, args


def import_weights(src: str | Path, dst: str | Path, kind: str = "auto", in_chans: int = 1) -> dict[str, Any]:
    """Convert an authors' weight file to a mammokit checkpoint at ``dst`` (written atomically).

    Returns a summary: arch, model_args, number of tensors and parameters, source sha256.
    """
    src = Path(src)
    model, arch, args = reference_model(src, kind, in_chans)
    sha = hashlib.sha256(src.read_bytes()).hexdigest()
    extra = {"source": SOURCE, "source_file": src.name, "source_sha256": sha}
    save_checkpoint(dst, model, arch=arch, model_args=args, preset=PRESETS["paper"].to_dict(), extra=extra)
    n_params = sum(p.numel() for p in model.parameters())
    log.info("converted %s (%s) -> %s: %d parameters", src, arch, dst, n_params)
    return {"arch": arch, "model_args": args, "parameters": n_params, "tensors": len(model.state_dict()),
            "source_sha256": sha, "path": str(dst)}
