"""Model-input windows: the reference augmentation as boxes, and a torch crop/resize to cut them.

The reference implementation samples a window around ``best_center`` and cuts + resizes it on the
CPU in one step. Here the two are split so that windows can be *sampled* cheaply on the CPU (a few
random numbers per draw) and *cut* on whatever device holds the image (GPU during training and
test-time augmentation):

* :func:`sample_window` reproduces the reference's window sampling exactly: the same padding rules
  (CC: pad top and bottom equally, MLO: bottom only, both: right), the shift of the window inside
  the (padded) image, the uniform shift of up to ``max_crop_noise`` towards the side that has room,
  the independent move of the four borders (horizontal moves scaled by the window's aspect ratio),
  the same order of random draws and the same integer rounding (``np.round``, half to even). The
  zero padding is not materialised: the returned :class:`Window` is in the coordinates of the
  unpadded image and may extend past it; whatever lies outside the image reads as zero.
* :func:`crop_windows` cuts the windows (zeros outside the image) and resizes each to the model
  input size with bicubic interpolation. The reference uses ``cv2.resize(..., INTER_CUBIC)``:
  Keys' cubic kernel with a = -0.75, pixel-centre alignment (``align_corners=False``), source
  indices clamped at the crop's border and no antialiasing. ``torch.nn.functional.interpolate(
  mode="bicubic", align_corners=False)`` is the same function (measured: max abs difference
  ~2e-6 of the signal range in float32). As in the reference, a window that already has the
  output size is copied unchanged.

Passing ``rng=None`` gives the reference's evaluation window (``augmentation=False``): the window
at ``best_center`` with no noise, padded and shifted inside the image by the same rules.

``rng`` may be a ``numpy.random.Generator`` (what mammokit uses, seeded per exam) or a legacy
``numpy.random.RandomState``; with ``RandomState(seed)`` and the reference's draw order the windows
are exactly the reference's.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Union

import numpy as np

from mammokit.views import view_kind

if TYPE_CHECKING:  # torch is imported lazily so that sampling stays importable without it
    import torch

RandomSource = Union[np.random.Generator, np.random.RandomState]

__all__ = ["Window", "sample_window", "crop_windows", "window_noise"]


@dataclass(frozen=True)
class Window:
    """A crop box ``[top, bottom) x [left, right)`` in image coordinates (flipped frame).

    The box may extend past the image (negative ``top``/``left``, ``bottom``/``right`` beyond the
    image size): those pixels are zero padding, as in the reference's padded image.
    """

    top: int
    bottom: int
    left: int
    right: int

    @property
    def height(self) -> int:
        return self.bottom - self.top

    @property
    def width(self) -> int:
        return self.right - self.left

    @property
    def box(self) -> tuple[int, int, int, int]:
        """``(top, bottom, left, right)``, the reference's ``borders`` order."""
        return (self.top, self.bottom, self.left, self.right)


def window_noise(preset) -> dict:
    """The augmentation noise of a :class:`~mammokit.config.Preset` as keyword arguments of
    :func:`sample_window` (``max_crop_noise`` (y, x), ``max_crop_size_noise``)."""
    return {
        "max_crop_noise": (preset.max_crop_noise, preset.max_crop_noise),
        "max_crop_size_noise": preset.max_crop_size_noise,
    }


def _pad_and_align(image_size: int, input_size: int, margin: int, both_sides: bool) -> tuple[int, int, int]:
    """Zero padding for an axis shorter than ``input_size + margin`` (on each padded side).

    Returns ``(start, pad_front, pad_back)`` in padded coordinates: with padding on both sides
    the window starts ``margin`` pixels in (room for noise either way); on one side it starts at 0.
    """
    pad = input_size - image_size + margin * (2 if both_sides else 1)
    if both_sides:
        front = pad // 2
        start = margin
    else:
        front, start = 0, 0
    return start, front, pad - front


def _shift_inside(start: int, end: int, size: int, length: int) -> tuple[int, int]:
    """Move a window of ``length`` so it lies inside ``[0, size)`` (left/top edge first)."""
    if start < 0:
        return 0, length
    if end > size:
        return size - length, size
    return start, end


def sample_window(
    image_shape: Sequence[int],
    view: str,
    best_center: Sequence[int],
    input_size: Sequence[int],
    rng: RandomSource | None = None,
    max_crop_noise: int | Sequence[int] = 0,
    max_crop_size_noise: int = 0,
) -> Window:
    """Sample one model-input window, exactly as the reference augmentation does.

    Args:
        image_shape: ``(H, W)`` of the flipped (chest wall left) cropped image.
        view: ``"L-CC"``, ``"R-MLO"``... (only CC vs MLO matters: the padding rule).
        best_center: ``(y, x)`` window centre from preprocessing (flipped frame).
        input_size: model input ``(h, w)`` for this view (``preset.input_size(view)``).
        rng: random source; ``None`` = no augmentation (noise forced to zero, no draws).
        max_crop_noise: maximum shift of the window, pixels; an int or ``(y, x)``.
        max_crop_size_noise: maximum move of each border, pixels (vertical; horizontal moves are
            scaled by the window's aspect ratio).

    Returns:
        The :class:`Window` in image coordinates (may extend past the image = zero padding).

    Random draws per call (the reference's order): ``uniform(-1, 1, 2)`` for the shift, only when
    ``max_crop_noise`` is non-zero, then ``uniform(-1, 1, 4)`` for the borders, always when an
    ``rng`` is given (the reference draws it even when the size noise is zero).
    """
    H, W = (int(v) for v in tuple(image_shape)[:2])
    h, w = (int(v) for v in input_size)
    if H <= 0 or W <= 0 or h <= 0 or w <= 0:
        raise ValueError(f"sample_window: empty image {image_shape!r} or input size {input_size!r}")
    kind = view_kind(view)
    noise = np.broadcast_to(np.asarray(max_crop_noise, dtype=np.int64), (2,)).copy()
    size_noise = int(max_crop_size_noise)
    if (noise < 0).any() or size_noise < 0:
        raise ValueError(f"sample_window: noise must be >= 0, got {max_crop_noise!r}, {max_crop_size_noise!r}")
    if rng is None:
        noise[:] = 0
        size_noise = 0

    shift_mult = np.zeros(2, dtype=np.float64)
    if noise.any():
        shift_mult = np.asarray(rng.uniform(low=-1.0, high=1.0, size=2), dtype=np.float64)

    cy, cx = (int(v) for v in best_center)
    top = cy - h // 2
    bottom = cy + h - h // 2
    left = cx - w // 2
    right = cx + w - w // 2

    # Pad small images so the window plus its noise margin fits (the padding itself is virtual).
    pad_top = pad_bottom = pad_right = 0
    margin_y = int(noise[0]) + size_noise
    if kind == "CC" and H < h + 2 * margin_y:
        top, pad_top, pad_bottom = _pad_and_align(H, h, margin_y, both_sides=True)
        bottom = top + h
    elif kind == "MLO" and H < h + margin_y:
        # MLO: the breast's lower part matters (pectoral muscle above), so pad the bottom only.
        top, _, pad_bottom = _pad_and_align(H, h, margin_y, both_sides=False)
        bottom = top + h
    margin_x = int(noise[1]) + size_noise
    if W < w + margin_x:
        left, _, pad_right = _pad_and_align(W, w, margin_x, both_sides=False)
        right = left + w
    PH, PW = H + pad_top + pad_bottom, W + pad_right

    top, bottom = _shift_inside(top, bottom, PH, h)
    left, right = _shift_inside(left, right, PW, w)

    # Shift noise only towards a side with room.
    if top == 0:
        shift_mult[0] = abs(shift_mult[0])
    elif bottom == PH:
        shift_mult[0] = -abs(shift_mult[0])
    if left == 0:
        shift_mult[1] = abs(shift_mult[1])
    elif right == PW:
        shift_mult[1] = -abs(shift_mult[1])
    room_y = PH - bottom if shift_mult[0] >= 0 else top
    room_x = PW - right if shift_mult[1] >= 0 else left
    noise[0] = min(noise[0], room_y)
    noise[1] = min(noise[1], room_x)
    dy, dx = np.round(noise * shift_mult).astype(np.int32)
    top, bottom, left, right = top + int(dy), bottom + int(dy), left + int(dx), right + int(dx)

    # Border noise: each border moves independently; never past the padded image.
    if rng is not None:
        border_mult = np.asarray(rng.uniform(low=-1.0, high=1.0, size=4), dtype=np.float64)
        s = min(size_noise, top, PH - bottom, left, PW - right)
        if h >= w:
            s_v, s_h = s, int(np.round(s * (w / h)))
        else:
            s_v, s_h = int(np.round(s * (h / w))), s
        moves = np.round(np.array((s_v, s_v, s_h, s_h), dtype=np.int32) * border_mult).astype(np.int32)
        top, bottom, left, right = (int(a + b) for a, b in zip((top, bottom, left, right), moves))

    if not (0 <= top < bottom <= PH and 0 <= left < right <= PW):  # cannot happen by construction
        raise RuntimeError(
            f"sample_window: window {(top, bottom, left, right)} outside padded image {(PH, PW)} "
            f"(image {(H, W)}, view {view}, best_center {tuple(best_center)}, input {(h, w)})"
        )
    return Window(top - pad_top, bottom - pad_top, left, right)


def crop_windows(images: torch.Tensor, windows: Sequence[Window], out_size: Sequence[int]) -> torch.Tensor:
    """Cut windows from images (zeros outside) and resize each to ``out_size`` (bicubic).

    Args:
        images: ``[C, H, W]`` (every window is cut from this image) or ``[N, C, H, W]`` (window
            ``i`` from image ``i``), any device and float dtype.
        windows: ``N`` windows (image coordinates, possibly extending past the image).
        out_size: ``(h, w)``.

    Returns:
        ``[N, C, h, w]`` on the images' device, float32 (bicubic is computed in float32).
        A window already of size ``(h, w)`` is copied exactly, without interpolation.
    """
    import torch
    import torch.nn.functional as F

    if images.ndim not in (3, 4):
        raise ValueError(f"crop_windows: images must be [C, H, W] or [N, C, H, W], got shape {tuple(images.shape)}")
    if images.ndim == 4 and images.shape[0] != len(windows):
        raise ValueError(f"crop_windows: {images.shape[0]} images for {len(windows)} windows")
    oh, ow = (int(v) for v in out_size)
    C, H, W = images.shape[-3:]
    out = torch.empty((len(windows), C, oh, ow), dtype=torch.float32, device=images.device)
    for i, win in enumerate(windows):
        image = images if images.ndim == 3 else images[i]
        t0, b0 = max(win.top, 0), min(win.bottom, H)
        l0, r0 = max(win.left, 0), min(win.right, W)
        patch = torch.zeros((C, win.height, win.width), dtype=torch.float32, device=images.device)
        if t0 < b0 and l0 < r0:
            patch[:, t0 - win.top : b0 - win.top, l0 - win.left : r0 - win.left] = image[:, t0:b0, l0:r0]
        if (win.height, win.width) == (oh, ow):
            out[i] = patch
        else:
            # Resize the crop alone: the bicubic kernel clamps at the crop's edges, as cv2 does.
            out[i] = F.interpolate(patch[None], size=(oh, ow), mode="bicubic", align_corners=False)[0]
    return out
