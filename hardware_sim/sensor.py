"""The camera sensor: colour response, Bayer mosaic, shot and read noise, ADC.

Signal chain for one pixel of CFA colour c (camera RGB), exposure t seconds:

    e_expected = K · t · τ_cam · g_c(x, y) · (M · radiance)_c          photoelectrons
    e          = min(Poisson(e_expected) + N(0, σ_read), full_well)     shot and read noise, clip
    DN         = clip(round(G · e + black), 0, 2^bits − 1)

with M the linear-sRGB → camera-RGB matrix, g the beam splitter's cast and brightness, τ_cam
the ND filter in front of the camera (1 for S), K the scene's illumination in electrons per
second per unit radiance, and G = (2^bits − 1 − black) / full_well · 10^(gain_dB/20) the
conversion gain (DN per electron). At 0 dB the full well maps to the white level, so
overexposed highlights read exactly the white level, flat and noiseless, as saturated pixels
do on real cameras (whose ADC range ends at the well's capacity).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from core.dng import cfa_index_map
from hardware_sim.spec import SensorSpec

# CIE XYZ (D65) → linear sRGB, IEC 61966-2-1.
XYZ_TO_SRGB = np.array(
    [[3.2404542, -1.5371385, -0.4985314], [-0.9692660, 1.8760108, 0.0415560], [0.0556434, -0.2040259, 1.0572252]]
)


@dataclass(frozen=True)
class SensorModel:
    spec: SensorSpec

    @property
    def white_level(self) -> int:
        return 2**self.spec.bits - 1

    @property
    def conversion_gain(self) -> float:
        """G (DN per electron) at the spec's gain."""
        return self.conversion_gain_at(self.spec.gain_db)

    def conversion_gain_at(self, gain_db: float) -> float:
        """G (DN per electron) at an analogue gain (dB ≥ 0)."""
        s = self.spec
        return (self.white_level - s.black_level) / s.full_well_e * 10 ** (gain_db / 20.0)

    @property
    def camera_matrix(self) -> np.ndarray:
        return np.asarray(self.spec.camera_matrix, dtype=np.float64)

    @property
    def color_matrix_1(self) -> tuple[tuple[float, ...], ...]:
        """DNG ColorMatrix1: CIE XYZ (D65) → camera RGB, 3×3 (camera_matrix maps linear sRGB)."""
        m = self.camera_matrix @ XYZ_TO_SRGB
        return tuple(tuple(float(v) for v in row) for row in m)

    @property
    def white_response(self) -> np.ndarray:
        """Camera RGB (3,) of a white (radiance 1,1,1) surface, unscaled."""
        return self.camera_matrix @ np.ones(3)

    @property
    def as_shot_neutral(self) -> tuple[float, float, float]:
        """DNG AsShotNeutral under the scene's D65 light: the white response, green-normalised."""
        w = self.white_response
        return tuple(float(v) for v in w / w[1])

    def expected_electrons(self, radiance: np.ndarray, gain: np.ndarray, scale: float) -> np.ndarray:
        """Noise-free photoelectrons on the CFA (H, W) float64.

        radiance: (H, W, 3) linear sRGB; gain: (H, W, 3) camera-RGB transmission (cast and
        brightness); scale: K · t · τ (electrons per unit camera response).
        """
        h, w = radiance.shape[:2]
        out = np.empty((h, w), np.float64)
        cfa = cfa_index_map(self.spec.cfa_pattern)
        m = self.camera_matrix
        for dy in (0, 1):
            for dx in (0, 1):
                c = int(cfa[dy, dx])
                site = radiance[dy::2, dx::2].astype(np.float64)
                out[dy::2, dx::2] = (site @ m[c]) * gain[dy::2, dx::2, c] * scale
        return out

    def digitise(
        self, electrons: np.ndarray, rng: np.random.Generator | None, gain_db: float | None = None
    ) -> np.ndarray:
        """Photoelectrons (H, W) → uint16 DN with shot noise, read noise and clipping.

        rng=None gives the noise-free quantised signal (for tests and ground truth);
        gain_db (default: the spec's) sets the conversion gain.
        """
        s = self.spec
        lam = np.maximum(electrons, 0.0)
        if rng is not None:
            e = rng.poisson(lam).astype(np.float32)  # exact Poisson shot noise
            if s.read_noise_e > 0:
                e += np.float32(s.read_noise_e) * rng.standard_normal(e.shape, dtype=np.float32)
        else:
            e = lam.astype(np.float32)
        gain = self.conversion_gain if gain_db is None else self.conversion_gain_at(gain_db)
        np.minimum(e, np.float32(s.full_well_e), out=e)  # the well, then the ADC, saturate
        e *= np.float32(gain)
        e += np.float32(s.black_level)
        np.rint(e, out=e)
        np.clip(e, 0, self.white_level, out=e)
        return e.astype(np.uint16)

    def noise_variance_dn(self, mean_dn: np.ndarray | float) -> np.ndarray | float:
        """The model's temporal variance (DN²) at a mean level: shot + read + quantisation."""
        g = self.conversion_gain
        signal_e = (np.asarray(mean_dn, np.float64) - self.spec.black_level) / g
        return g * g * (signal_e + self.spec.read_noise_e**2) + 1.0 / 12.0
