"""The preprocessing preset a checkpoint was trained at, and ``--preset auto``.

Every mammokit trainer records the work folder's preset (:class:`mammokit.config.Preset` as a
dict) in the checkpoint's ``preset`` metadata; :func:`mammokit.models.convert` records ``paper``
for the authors' weights, and the authors' pickled patch model (``.p``) is taken as ``paper``.

:func:`resolve_preset` turns what the user asked for into one preset:

* ``"auto"`` (the default of ``preprocess``, ``heatmaps``, ``predict`` and ``run``): the preset the
  given checkpoints record. They must agree (on :data:`mammokit.config.MATCHING_FIELDS`); a
  checkpoint without a recorded preset is ignored; none at all is an error naming what to pass,
  unless the caller has a fallback (a work folder's own preset).
* anything else (a name, ``scale:F``, a TOML file: :func:`mammokit.config.get_preset`): that
  preset; a checkpoint recorded at another preset gets a warning (the user asked for it).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from mammokit.config import (
    PRESET_SPEC_HELP,
    Preset,
    PresetMismatchError,
    check_same_preset,
    describe_preset,
    get_preset,
    preset_differences,
    preset_of,
)
from mammokit.errors import UsageError
from mammokit.utils.log import get_logger

log = get_logger(__name__)

AUTO = "auto"

__all__ = ["AUTO", "checkpoint_preset", "resolve_preset", "check_against_workdir"]


def checkpoint_preset(path: str | Path) -> Preset | None:
    """The preset recorded in a checkpoint's metadata (None when it records none).

    Reads the safetensors header only (no tensors). The authors' pickled weight files are at the
    paper's resolution, so they give ``paper``.

    Raises:
        MissingFileError / CheckpointError: no such file, not a checkpoint.
    """
    import json

    from mammokit.models.checkpoint import CheckpointError, _sniff

    path = Path(path)
    try:
        _sniff(path)
    except CheckpointError as exc:
        if "PyTorch pickle" in str(exc):  # torch.save file: the authors' weights, full resolution
            return get_preset("paper")
        raise
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt", device="cpu") as f:
            raw = (f.metadata() or {}).get("preset")
    except Exception as exc:  # a damaged header: safetensors raises its own error types
        raise CheckpointError(f"{path}: unreadable safetensors file ({exc})") from None
    if raw is None:
        return None
    try:
        return preset_of(json.loads(raw))
    except (json.JSONDecodeError, TypeError, ValueError) as exc:
        raise CheckpointError(f"{path}: unreadable preset in the checkpoint metadata ({exc})") from None


def resolve_preset(
    spec: str | Preset | None,
    checkpoints: Sequence[str | Path] = (),
    *,
    fallback: Preset | None = None,
    fallback_where: str = "",
    what: str = "--model / --patch-model",
) -> Preset:
    """The preset to run at (see the module docstring).

    Args:
        spec: ``"auto"`` / None, or a preset (name, ``scale:F``, TOML file, :class:`Preset`).
        checkpoints: the model files whose recorded presets ``auto`` reads.
        fallback: used by ``auto`` when no checkpoint records a preset (e.g. the work folder's).
        fallback_where: what ``fallback`` is, for the log.
        what: the options that give checkpoints, for the error message.

    Raises:
        PresetMismatchError: two checkpoints recorded at different presets (names both).
        UsageError: ``auto`` with nothing to read a preset from.
    """
    recorded = [(str(p), checkpoint_preset(p)) for p in checkpoints]
    recorded = [(p, q) for p, q in recorded if q is not None]
    if spec is not None and spec != AUTO:
        preset = get_preset(spec)
        for path, q in recorded:
            diff = preset_differences(preset, q)
            if diff:
                log.warning(
                    "%s was trained at preset %s, but --preset %s was asked for (%s): its inputs will not "
                    "look like its training data", path, describe_preset(q), preset.name, "; ".join(diff),
                )
        return preset
    if not recorded:
        if fallback is not None:
            log.info("--preset auto: no checkpoint records a preset; using %s's, %s", fallback_where or "the work folder",
                     describe_preset(fallback))
            return fallback
        given = ", ".join(str(p) for p in checkpoints)
        raise UsageError(
            ("--preset auto: " + (f"{given} record(s) no preset" if given else f"no model given ({what})"))
            + f"; give the model(s) trained for these images with {what}, or --preset as {PRESET_SPEC_HELP}"
        )
    first_path, first = recorded[0]
    for path, q in recorded[1:]:
        diff = preset_differences(first, q)
        if diff:
            raise PresetMismatchError(
                f"{first_path} was trained at preset {describe_preset(first)} but {path} at preset "
                f"{describe_preset(q)} ({'; '.join(diff)}): use models trained at one preset"
            )
    log.info("--preset auto: %s (from %s)", describe_preset(first), first_path)
    return first


def check_against_workdir(
    spec: str | Preset | None,
    work: Preset,
    work_where: str,
    recorded: Sequence[tuple[str, Preset | None]],
) -> Preset:
    """Check a work folder's preset against what the user asked for and what the models record.

    Args:
        spec: ``"auto"`` / None: every model that records a preset must match the work folder;
            otherwise the asked-for preset must match the work folder (models recorded at another
            preset then only get a warning).
        work: the work folder's preset (``exams.json``).
        work_where: e.g. ``"work folder W"``, for messages.
        recorded: ``(model description, its recorded preset or None)``.

    Returns:
        ``work`` (the preset the work folder's windows were computed for).

    Raises:
        PresetMismatchError: naming the work folder and the model (or ``--preset``) that differ.
    """
    if spec is not None and spec != AUTO:
        asked = get_preset(spec)
        check_same_preset(work, work_where, asked, f"--preset {spec if isinstance(spec, str) else asked.name}")
        for where, q in recorded:
            if q is not None and preset_differences(asked, q):
                log.warning("%s was trained at preset %s, not at --preset %s: its inputs will not look like its "
                            "training data", where, describe_preset(q), asked.name)
        return work
    for where, q in recorded:
        if q is not None:
            check_same_preset(work, work_where, q, where)
    return work
