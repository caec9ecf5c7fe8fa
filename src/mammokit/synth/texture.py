"""Parenchymal texture: power-law (1/f^beta) noise, and the tissue composition built on it.

Mammographic background has a radial power spectrum P(f) ~ K / f^beta with beta about 3.1-3.3 on
FFDM (Chen 2012). Synthesis follows Timmer & Koenig: white Gaussian noise, FFT, multiply by
f^(-beta/2) (amplitude, so that the power goes as f^-beta), zero the DC term, inverse FFT.
"""

from __future__ import annotations

import numpy as np
import scipy.fft


def power_law_noise(shape: tuple[int, int], beta: float, rng: np.random.Generator) -> np.ndarray:
    """A zero-mean, unit-std float32 field ``[H, W]`` whose radial power spectrum goes as
    ``1 / f**beta``.

    Uses a real FFT (half spectrum) in float32 with one worker: generation runs inside worker
    processes, so threads would only compete with the other workers.
    """
    h, w = int(shape[0]), int(shape[1])
    if h < 2 or w < 2:
        raise ValueError(f"power_law_noise: shape must be at least 2 x 2, got {shape}")
    white = rng.standard_normal((h, w), dtype=np.float32)
    spectrum = scipy.fft.rfft2(white, workers=1)
    fy = np.fft.fftfreq(h).astype(np.float32)[:, None]
    fx = np.fft.rfftfreq(w).astype(np.float32)[None, :]
    f2 = fy * fy + fx * fx
    f2[0, 0] = 1.0  # avoid 0 ** negative; the DC term is zeroed just below
    # amplitude ~ f^(-beta/2)  <=>  (f^2)^(-beta/4)
    filt = np.power(f2, np.float32(-beta / 4.0), dtype=np.float32)
    filt[0, 0] = 0.0
    spectrum *= filt
    field = scipy.fft.irfft2(spectrum, s=(h, w), workers=1).astype(np.float32, copy=False)
    std = float(field.std())
    if std > 0:
        field /= np.float32(std)
    return field


def dense_tissue_map(
    texture: np.ndarray, prior: np.ndarray, inside: np.ndarray, dense_fraction: float, softness: float = 0.3
) -> np.ndarray:
    """Fraction of fibroglandular tissue per pixel (float32 in [0, 1]).

    ``texture`` (power-law field) plus ``prior`` (where glands sit: away from the skin, behind the
    nipple) is thresholded at the quantile that makes ``dense_fraction`` of the breast dense; the
    soft sigmoid keeps the texture's grey levels rather than a binary map.
    """
    g = texture + prior
    values = g[inside]
    if values.size == 0:
        return np.zeros_like(texture)
    threshold = np.quantile(values, 1.0 - dense_fraction)
    return (1.0 / (1.0 + np.exp(-(g - threshold) / np.float32(softness)))).astype(np.float32)
