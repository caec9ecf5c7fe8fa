"""The four screening views and the one place that knows how to read and orient them.

A view name is ``"<laterality>-<kind>"``: laterality ``L`` or ``R``, kind ``CC`` (cranio-caudal)
or ``MLO`` (medio-lateral oblique). Every module parses view names through :func:`parse_view`
(strict) or :func:`normalise_view_name` (lenient, for user files), and decides mirroring through
:meth:`View.needs_flip`.

Orientation (the reference implementation's convention): with ``horizontal_flip = "NO"`` a
left-breast image shows the chest wall on the left and a right-breast image on the right. The
models see every image in the *model frame*, chest wall on the left: right-breast images are
mirrored, and an exam stored mirrored (``horizontal_flip = "YES"``) inverts that rule.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from mammokit.errors import UsageError

__all__ = [
    "VIEWS",
    "SIDES",
    "KINDS",
    "View",
    "ViewError",
    "parse_view",
    "view_kind",
    "needs_flip",
    "chest_wall_side",
    "normalise_view_name",
    "check_horizontal_flip",
]

VIEWS: tuple[str, ...] = ("L-CC", "R-CC", "L-MLO", "R-MLO")
"""The four standard screening views, in the order used everywhere (tensors, files, tables)."""

SIDES: tuple[str, ...] = ("L", "R")
KINDS: tuple[str, ...] = ("CC", "MLO")
FLIP_VALUES: tuple[str, ...] = ("NO", "YES")

_LENIENT = re.compile(r"\s*([LR])[\s_\-]*(CC|MLO)\s*")


class ViewError(UsageError):
    """An unknown view name or orientation flag (a user error: printed as one line)."""


@dataclass(frozen=True, order=True)
class View:
    """One screening view: ``laterality`` ``"L"``/``"R"`` and ``kind`` ``"CC"``/``"MLO"``."""

    laterality: str
    kind: str

    def __post_init__(self) -> None:
        if self.laterality not in SIDES or self.kind not in KINDS:
            raise ViewError(f"unknown view {self.laterality}-{self.kind}; expected one of {', '.join(VIEWS)}")

    @classmethod
    def parse(cls, value: str | View) -> View:
        """``"L-CC"`` -> ``View("L", "CC")``; a View is returned as is; anything else raises
        :class:`ViewError` naming the value and the four allowed names."""
        if isinstance(value, View):
            return value
        parts = str(value).split("-")
        if len(parts) != 2 or parts[0] not in SIDES or parts[1] not in KINDS:
            raise ViewError(f"unknown view {value!r}; expected one of {', '.join(VIEWS)}")
        return cls(parts[0], parts[1])

    @property
    def name(self) -> str:
        """``"L-CC"``."""
        return f"{self.laterality}-{self.kind}"

    @property
    def stem(self) -> str:
        """``"L_CC"``: the form used in file names (``<exam>_L_CC.png``)."""
        return f"{self.laterality}_{self.kind}"

    @property
    def breast(self) -> str:
        """``"left"`` or ``"right"`` (the prefix of the label columns)."""
        return "left" if self.laterality == "L" else "right"

    def chest_wall_side(self, horizontal_flip: str = "NO") -> str:
        """Side (``"left"``/``"right"``) of the chest wall in the stored image."""
        left = (self.laterality == "L") != (check_horizontal_flip(horizontal_flip) == "YES")
        return "left" if left else "right"

    def needs_flip(self, horizontal_flip: str = "NO") -> bool:
        """Whether the stored image is mirrored to reach the model frame (chest wall left)."""
        return self.chest_wall_side(horizontal_flip) == "right"

    def __str__(self) -> str:
        return self.name


def check_horizontal_flip(value: str) -> str:
    """``"YES"`` / ``"NO"`` as given; anything else raises :class:`ViewError`."""
    if value not in FLIP_VALUES:
        raise ViewError(f"horizontal_flip must be 'YES' or 'NO', got {value!r}")
    return value


def parse_view(value: str | View) -> View:
    """Strict parse of a view name (see :meth:`View.parse`)."""
    return View.parse(value)


def view_kind(value: str | View) -> str:
    """``"CC"`` or ``"MLO"`` for a view name such as ``"L-CC"``, or a bare ``"CC"`` / ``"MLO"``."""
    if isinstance(value, str) and value in KINDS:
        return value
    return View.parse(value).kind


def needs_flip(view: str | View, horizontal_flip: str = "NO") -> bool:
    """Whether an image of ``view`` is mirrored for the model (see :meth:`View.needs_flip`)."""
    return View.parse(view).needs_flip(horizontal_flip)


def chest_wall_side(view: str | View, horizontal_flip: str = "NO") -> str:
    """Side of the chest wall in the stored image (see :meth:`View.chest_wall_side`)."""
    return View.parse(view).chest_wall_side(horizontal_flip)


def normalise_view_name(value: object) -> str | None:
    """Lenient parse for user files: ``'L-CC'``, ``'l_cc'``, ``'LCC'``, ``'L CC'`` -> ``'L-CC'``;
    None when the value is not one of the four standard views."""
    m = _LENIENT.fullmatch(str(value).upper())
    return f"{m.group(1)}-{m.group(2)}" if m else None
