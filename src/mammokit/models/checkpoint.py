"""Self-describing checkpoints: safetensors weights + metadata to rebuild the model.

Metadata (all strings, as safetensors requires): ``format`` ("mammokit.checkpoint"), ``version``,
``kind`` ("model" | "ensemble"), ``arch`` (registry name), ``model_args`` (JSON), ``preset``
(JSON: the preprocessing preset as a dict of every size, see :mod:`mammokit.models.presets`;
null when unknown), ``extra`` (JSON: epoch, metrics, provenance...). An
ensemble stores its members' tensors as ``member{i}.<key>`` and ``members`` (JSON list of
``{"arch", "model_args"}``).

safetensors refuses tensors that share storage; mammokit models register each shared column
once, and any other sharing is broken by cloning on save (and restored by the module's own
structure on load, since tying lives in the module, not in the file).
"""

from __future__ import annotations

import json
import struct
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn

from mammokit.errors import InputFileError, MammokitError, MissingFileError
from mammokit.models._factory import create_model
from mammokit.utils.io import atomic_path

FORMAT = "mammokit.checkpoint"
FORMAT_VERSION = 1


class CheckpointError(InputFileError):
    """A checkpoint that cannot be read or does not fit its model (names the file and the problem)."""


def _preset_json(preset: Any) -> Any:
    """The preset as a full dict (every size, so the checkpoint describes itself even if a named
    preset's definition changes later); a dict is stored as given."""
    from mammokit.config import get_preset

    if preset is None or isinstance(preset, dict):
        return preset
    if isinstance(preset, str):
        return get_preset(preset).to_dict()
    if hasattr(preset, "to_dict"):
        return preset.to_dict()
    raise TypeError(f"preset must be a name, a dict or a Preset, got {type(preset).__name__}")


def _tensors_for_file(state: dict[str, torch.Tensor], prefix: str = "") -> dict[str, torch.Tensor]:
    out, seen = {}, set()
    for key, t in state.items():
        t = t.detach().cpu().contiguous()
        ptr = (t.untyped_storage().data_ptr(), t.storage_offset(), t.numel())
        # safetensors refuses aliasing tensors; a clone stores the shared values twice.
        if ptr in seen or t.untyped_storage().nbytes() != t.numel() * t.element_size():
            t = t.clone()
        seen.add(ptr)
        out[prefix + key] = t
    return out


def _write(path: str | Path, tensors: dict[str, torch.Tensor], metadata: dict[str, str]) -> None:
    from safetensors.torch import save_file

    with atomic_path(path) as tmp:
        save_file(tensors, str(tmp), metadata=metadata)


def save_checkpoint(
    path: str | Path,
    model: nn.Module,
    *,
    arch: str,
    model_args: dict | None = None,
    preset: Any = None,
    extra: dict | None = None,
) -> None:
    """Write ``model``'s state dict and how to rebuild it (``create_model(arch, **model_args)``)
    to a safetensors file, atomically."""
    metadata = {
        "format": FORMAT,
        "version": str(FORMAT_VERSION),
        "kind": "model",
        "arch": arch,
        "model_args": json.dumps(model_args or {}),
        "preset": json.dumps(_preset_json(preset)),
        "extra": json.dumps(extra or {}, default=_json_default),
    }
    _write(path, _tensors_for_file(model.state_dict()), metadata)


def save_ensemble(
    path: str | Path,
    models: Sequence[nn.Module],
    *,
    arch: str | Sequence[str],
    model_args: dict | Sequence[dict] | None = None,
    preset: Any = None,
    extra: dict | None = None,
) -> None:
    """Write K models as one ensemble file (``member{i}.*`` tensors). ``arch`` / ``model_args``
    are shared by all members or given per member."""
    k = len(models)
    if k == 0:
        raise ValueError("an ensemble needs at least one model")
    archs = [arch] * k if isinstance(arch, str) else list(arch)
    args = [model_args or {}] * k if model_args is None or isinstance(model_args, dict) else list(model_args)
    if len(archs) != k or len(args) != k:
        raise ValueError(f"got {k} models but {len(archs)} archs and {len(args)} model_args")
    tensors: dict[str, torch.Tensor] = {}
    for i, m in enumerate(models):
        tensors.update(_tensors_for_file(m.state_dict(), prefix=f"member{i}."))
    metadata = {
        "format": FORMAT,
        "version": str(FORMAT_VERSION),
        "kind": "ensemble",
        "arch": archs[0] if len(set(archs)) == 1 else "ensemble",
        "members": json.dumps([{"arch": a, "model_args": m} for a, m in zip(archs, args)]),
        "model_args": json.dumps(args[0]),
        "preset": json.dumps(_preset_json(preset)),
        "extra": json.dumps(extra or {}, default=_json_default),
    }
    _write(path, tensors, metadata)


def _json_default(obj: Any) -> Any:
    if hasattr(obj, "tolist"):
        return obj.tolist()
    return str(obj)


class Ensemble(nn.Module):
    """K breast-level (or patch) models behind one model's interface.

    ``predict_proba`` averages the members' probabilities; ``forward`` returns per group the log
    of the members' mean probabilities (valid logits: their softmax is that mean);
    ``forward_features`` / ``forward_hidden`` concatenate the members' vectors along dim 1.
    """

    def __init__(self, members: Sequence[nn.Module]) -> None:
        super().__init__()
        if not members:
            raise ValueError("an ensemble needs at least one member")
        self.members = nn.ModuleList(members)
        first = self.members[0]
        for attr in ("output_labels", "task", "in_channels", "num_classes", "prediction_columns"):
            if hasattr(first, attr):
                setattr(self, attr, getattr(first, attr))

    def forward(self, x, *rest):
        outs = [m(x, *rest) for m in self.members]
        if isinstance(outs[0], dict):
            return {g: torch.log(torch.stack([o[g].float().softmax(-1) for o in outs]).mean(0)) for g in outs[0]}
        return torch.log(torch.stack([o.float().softmax(-1) for o in outs]).mean(0))

    @torch.no_grad()
    def predict_proba(self, x, *rest) -> torch.Tensor:
        return torch.stack([m.predict_proba(x, *rest) for m in self.members]).mean(0)

    def forward_features(self, x, *rest):
        outs = [m.forward_features(x, *rest) for m in self.members]
        return {k: torch.cat([o[k] for o in outs], dim=1) for k in outs[0]}

    def forward_hidden(self, x, *rest):
        outs = [m.forward_hidden(x, *rest) for m in self.members]
        return {k: torch.cat([o[k] for o in outs], dim=1) for k in outs[0]}

    def label_mask(self, avail):
        """The members' shared missing-view rule (:meth:`BreastModel.label_mask`)."""
        return self.members[0].label_mask(avail)


def _sniff(path: Path) -> None:
    """Raise a clear error when ``path`` is not a safetensors file (e.g. a torch.save pickle)."""
    if not path.is_file():
        raise MissingFileError(f"{path}: checkpoint not found")
    with open(path, "rb") as f:
        head = f.read(9)
    # safetensors: an 8-byte little-endian header length, then the JSON header. Check this first:
    # the length's first byte can be 0x80, which is also how a pickle starts.
    if len(head) == 9 and head[8:9] == b"{" and struct.unpack("<Q", head[:8])[0] <= path.stat().st_size:
        return
    if head[:2] == b"PK" or head[:1] == b"\x80":
        raise CheckpointError(
            f"{path}: this is a PyTorch pickle (torch.save), not a mammokit checkpoint; "
            "convert the authors' weight files with `mammokit import-weights`"
        )
    raise CheckpointError(f"{path}: not a safetensors file")


def read_checkpoint(path: str | Path) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """``(tensors, meta)`` of a mammokit checkpoint, without building the model.

    ``meta`` has the decoded metadata: format, version, kind, arch, model_args (dict), preset,
    extra (dict), and for ensembles members (list).
    """
    from safetensors import safe_open

    path = Path(path)
    _sniff(path)
    try:
        with safe_open(str(path), framework="pt", device="cpu") as f:
            raw = f.metadata() or {}
            tensors = {k: f.get_tensor(k) for k in f.keys()}
    except Exception as exc:
        raise CheckpointError(f"{path}: unreadable safetensors file ({exc})") from None
    if raw.get("format") != FORMAT:
        raise CheckpointError(f"{path}: safetensors file without mammokit metadata (format {raw.get('format')!r})")
    version = raw.get("version", "0")
    if not version.isascii() or not version.isdigit():
        raise CheckpointError(f"{path}: checkpoint version {version[:20]!r} is not a number")
    if int(version) > FORMAT_VERSION:
        raise CheckpointError(f"{path}: checkpoint version {version} is newer than this mammokit")
    meta: dict[str, Any] = {"format": raw["format"], "version": int(version), "kind": raw.get("kind", "model")}
    meta["arch"] = raw.get("arch")
    try:
        for key in ("model_args", "preset", "extra", "members"):
            if key in raw:
                meta[key] = json.loads(raw[key])
    except json.JSONDecodeError as exc:
        raise CheckpointError(f"{path}: corrupt metadata ({exc})") from None
    meta.setdefault("model_args", {})
    meta.setdefault("extra", {})
    meta.setdefault("preset", None)
    return tensors, meta


def load_state_strict(model: nn.Module, state: dict[str, torch.Tensor], where: str) -> None:
    """``model.load_state_dict(state)`` with one clear error listing missing / unexpected keys and
    wrong shapes (no silent partial loading)."""
    check_state_fits(model, state, where)
    model.load_state_dict(state, strict=True)


def check_state_fits(model: nn.Module, state: dict[str, torch.Tensor], where: str) -> None:
    """Raise :class:`CheckpointError` listing missing / unexpected keys, wrong shapes and wrong
    dtypes (floating vs integer) of ``state`` for ``model`` (which may live on the meta device)."""
    own = model.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    shapes = [
        f"{k}: file {tuple(state[k].shape)} vs model {tuple(own[k].shape)}"
        for k in own
        if k in state and state[k].shape != own[k].shape
    ] + [
        f"{k}: file dtype {state[k].dtype} vs model {own[k].dtype}"
        for k in own
        if k in state and state[k].dtype.is_floating_point != own[k].dtype.is_floating_point
    ]
    if missing or unexpected or shapes:
        parts = []
        if missing:
            parts.append(f"{len(missing)} missing keys ({', '.join(missing[:6])}{' ...' if len(missing) > 6 else ''})")
        if unexpected:
            parts.append(
                f"{len(unexpected)} unexpected keys ({', '.join(unexpected[:6])}{' ...' if len(unexpected) > 6 else ''})"
            )
        if shapes:
            parts.append(f"{len(shapes)} wrong shapes ({'; '.join(shapes[:4])})")
        raise CheckpointError(f"{where}: weights do not fit the model: " + "; ".join(parts))


def _build(arch: str, args: dict, where: str) -> nn.Module:
    try:
        return create_model(arch, **args)
    except (TypeError, ValueError) as exc:
        raise CheckpointError(f"{where}: cannot build model {arch!r} with {args}: {exc}") from None


def build_fitting_model(arch: object, args: object, state: dict[str, torch.Tensor], where: str) -> nn.Module:
    """``create_model(arch, **args)`` loaded with ``state``, for metadata read from a file.

    The model is first built on the meta device (no memory is allocated) and its parameter
    names and shapes compared with the file's tensors: metadata naming an unknown model, bad
    arguments, or a model far larger than the file (tampered ``model_args`` such as a width of
    10**6) is refused with a :class:`CheckpointError` before anything is allocated.
    """
    if not isinstance(arch, str) or not arch:
        raise CheckpointError(f"{where}: checkpoint metadata has no arch (got {arch!r})")
    if not isinstance(args, dict) or not all(isinstance(k, str) for k in args):
        raise CheckpointError(f"{where}: model_args must be a JSON object, got {type(args).__name__}")
    shown = str(args)[:200]
    try:
        with torch.device("meta"):
            skeleton = create_model(arch, **args)
    except MammokitError as exc:
        raise CheckpointError(f"{where}: {exc}") from None
    except (TypeError, ValueError, RuntimeError, KeyError, AttributeError, OverflowError, IndexError) as exc:
        # Built on the meta device from untrusted metadata: any of these means bad arguments.
        raise CheckpointError(f"{where}: cannot build model {arch!r} with {shown}: {type(exc).__name__}: "
                              f"{' '.join(str(exc).split())[:200]}") from None
    check_state_fits(skeleton, state, where)
    model = _build(arch, args, where)
    load_state_strict(model, state, where)
    return model


def load_model(
    path: str | Path, device: str | torch.device = "cpu", dtype: torch.dtype | None = None
) -> tuple[nn.Module, dict[str, Any]]:
    """Rebuild the model (or :class:`Ensemble`) stored in a mammokit checkpoint.

    Returns ``(model, meta)``: the model in eval mode on ``device`` (cast to ``dtype`` if given)
    and the decoded metadata (see :func:`read_checkpoint`).
    """
    tensors, meta = read_checkpoint(path)
    where = str(path)
    if meta["kind"] == "ensemble":
        members = []
        specs = meta.get("members", [])
        if not isinstance(specs, list):
            raise CheckpointError(f"{where}: ensemble members must be a JSON list, got {type(specs).__name__}")
        for i, spec in enumerate(specs):
            prefix = f"member{i}."
            if not isinstance(spec, dict):
                raise CheckpointError(f"{where}: ensemble member {i} is not a JSON object")
            state = {k[len(prefix):]: v for k, v in tensors.items() if k.startswith(prefix)}
            members.append(build_fitting_model(spec.get("arch"), spec.get("model_args", {}), state,
                                               f"{where} member {i}"))
        n = len(members)
        stray = [k for k in tensors if not any(k.startswith(f"member{i}.") for i in range(n))]
        if stray or not members:
            raise CheckpointError(f"{where}: ensemble tensors do not match its {n} members ({stray[:4]})")
        model: nn.Module = Ensemble(members)
    elif meta["kind"] == "model":
        model = build_fitting_model(meta["arch"], meta["model_args"], tensors, where)
    else:
        raise CheckpointError(f"{where}: unknown checkpoint kind {meta['kind']!r}")
    model = model.to(device=device, dtype=dtype) if dtype is not None else model.to(device)
    return model.eval(), meta
