"""Synthetic chest anatomy for the demo generator: body, lungs, vessels, bone, in HU.

Split from ``generate_demo`` so lesion design (the findings the diagnosis relies on) and
dataset writing stay readable on their own. Arrays are ``(Z, Y, X)``; sizes in mm.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

HU_AIR, HU_FAT, HU_SOFT, HU_LUNG, HU_VESSEL = -1000.0, -100.0, 40.0, -850.0, 40.0
HU_SPINE, HU_RIB, HU_STERNUM = 700.0, 600.0, 500.0
NOISE_SD, TEXTURE_SD = 20.0, 20.0


@dataclass(frozen=True)
class Grid:
    """Voxel-centre coordinates in mm, centred on the volume, one 1D array per axis."""

    z: np.ndarray
    y: np.ndarray
    x: np.ndarray

    @classmethod
    def make(cls, shape: tuple[int, int, int], spacing: tuple[float, float, float]) -> Grid:
        axes = [
            ((np.arange(n) - (n - 1) / 2) * s).astype(np.float32)
            for n, s in zip(shape, spacing, strict=True)
        ]
        return cls(*axes)

    def box(self, lo: np.ndarray, hi: np.ndarray) -> tuple[slice, slice, slice]:
        """Index box of the voxels whose centres lie in ``[lo, hi]`` (mm, zyx)."""
        z, y, x = (
            slice(int(np.searchsorted(a, l_, "left")), int(np.searchsorted(a, h, "right")))
            for a, l_, h in zip((self.z, self.y, self.x), lo, hi, strict=True)
        )
        return z, y, x

    def sub(self, box: tuple[slice, ...]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Broadcastable coordinates of a box, so shapes are built without a voxel loop."""
        return (self.z[box[0], None, None], self.y[None, box[1], None], self.x[None, None, box[2]])

    def snap(self, p: np.ndarray) -> tuple[np.ndarray, tuple[int, int, int]]:
        """Nearest voxel centre, so every lesion covers at least its own centre voxel."""
        axes = (self.z, self.y, self.x)
        iz, iy, ix = (int(np.abs(a - v).argmin()) for a, v in zip(axes, p, strict=True))
        return np.array([self.z[iz], self.y[iy], self.x[ix]]), (iz, iy, ix)


@dataclass(frozen=True)
class Lung:
    """An elliptic cylinder tapered to a dome at the apex; ``s`` runs 0 (base) to 1 (apex)."""

    name: str
    cx: float
    cy: float
    ax: float
    ay: float
    z0: float
    z1: float

    def taper(self, z: np.ndarray | float) -> np.ndarray:
        """In-plane radius factor per height: flat diaphragm base, dome-shaped apex."""
        s = (np.asarray(z, np.float64) - self.z0) / (self.z1 - self.z0)
        apex = np.sqrt(np.clip(1 - ((s - 0.5) / 0.5) ** 2, 0, 1))
        base = 0.75 + 0.25 * np.sqrt(np.clip(s / 0.5, 0, 1))
        return np.where((s < 0) | (s > 1), 0.0, np.where(s > 0.5, apex, base))

    def point(self, rho: float, theta: float, s: float) -> np.ndarray:
        z = self.z0 + s * (self.z1 - self.z0)
        f = float(self.taper(z))
        return np.array(
            [
                z,
                self.cy + rho * f * self.ay * np.sin(theta),
                self.cx + rho * f * self.ax * np.cos(theta),
            ]
        )

    def rho(self, p: np.ndarray) -> float:
        """Normalised radial position in the slice (0 centre, 1 pleura)."""
        f = float(self.taper(p[0]))
        q = ((p[2] - self.cx) / self.ax) ** 2 + ((p[1] - self.cy) / self.ay) ** 2
        return float(np.sqrt(q) / f) if f > 0 else np.inf


def smooth_field(
    shape: tuple[int, ...], cell: tuple[float, ...], rng: np.random.Generator
) -> np.ndarray:
    """Unit-variance smooth noise: coarse Gaussian noise upsampled by separable matmuls.

    Matrix products (BLAS) are far faster than a full-volume Gaussian filter, which keeps
    a real-size 567x567x300 case within a few seconds.
    """
    coarse = [int(np.ceil(n / max(c, 1.0))) + 2 for n, c in zip(shape, cell, strict=True)]
    field = rng.standard_normal(coarse, dtype=np.float32)
    for axis in (2, 1, 0):
        n, m = shape[axis], coarse[axis]
        pos = (np.arange(n) + 0.5) * (m - 1) / n
        w = np.exp(-0.5 * ((pos[:, None] - np.arange(m)[None, :]) / 0.8) ** 2)
        w = (w / w.sum(axis=1, keepdims=True)).astype(np.float32)
        field = np.moveaxis(np.tensordot(w, field, axes=([1], [axis])), 0, axis)
    field = np.ascontiguousarray(field)
    field /= max(float(field[::3, ::3, ::3].std()), 1e-6)
    return field


def ellipse_q(
    y: np.ndarray, x: np.ndarray, cy: float, cx: float, ay: float, ax: float
) -> np.ndarray:
    """Squared normalised elliptic radius (<= 1 inside) on a (Y, X) plane."""
    return ((y[:, None] - cy) / ay) ** 2 + ((x[None, :] - cx) / ax) ** 2


def paint_anatomy(
    image: np.ndarray, grid: Grid, r: float, lungs: tuple[Lung, ...], rng: np.random.Generator
) -> np.ndarray:
    """Body, bones, heart and lungs; returns the lung id map (0 none, 1 right, 2 left)."""
    y, x, z = grid.y, grid.x, grid.z
    q_body = ellipse_q(y, x, 0.05 * r, 0.0, 0.62 * r, 0.85 * r)
    image[:, q_body <= 1.0] = HU_FAT
    image[:, q_body <= 0.93**2] = HU_SOFT
    rib_shell = (q_body >= 0.84**2) & (q_body <= 0.90**2)
    rib_shell &= ~((np.abs(x)[None, :] < 0.12 * r) & (y[:, None] < 0))  # costal cartilage
    period = 0.08 * 2 * r
    phase = ((z[:, None] + 0.3 * y[None, :] + rng.uniform(0, period)) / period) % 1.0
    np.copyto(image, HU_RIB, where=(phase < 0.35)[:, :, None] & rib_shell[None])
    image[:, ellipse_q(y, x, 0.47 * r, 0.0, 0.07 * r, 0.075 * r) <= 1] = HU_SPINE
    image[:, ellipse_q(y, x, 0.58 * r, 0.0, 0.06 * r, 0.025 * r) <= 1] = HU_RIB
    image[:, ellipse_q(y, x, -0.50 * r, 0.0, 0.025 * r, 0.06 * r) <= 1] = HU_STERNUM
    lung_id = np.zeros(image.shape, np.uint8)
    for i, lung in enumerate(lungs, start=1):
        f2 = (lung.taper(z) ** 2).astype(np.float32)
        q = ellipse_q(y, x, lung.cy, lung.cx, lung.ay, lung.ax).astype(np.float32)
        lung_id[q[None] <= f2[:, None, None]] = i
    hz = lungs[1].z0 + 0.2 * (lungs[1].z1 - lungs[1].z0)
    c = np.array([hz, -0.12 * r, 0.1 * r])
    radii = np.array([0.2 * (lungs[1].z1 - lungs[1].z0), 0.2 * r, 0.26 * r])
    box = grid.box(c - radii, c + radii)
    zz, yy, xx = grid.sub(box)
    heart = ((zz - c[0]) / radii[0]) ** 2 + ((yy - c[1]) / radii[1]) ** 2 + (
        (xx - c[2]) / radii[2]
    ) ** 2 <= 1
    image[box][heart] = HU_SOFT + 5.0
    lung_id[box][heart] = 0
    np.copyto(image, HU_LUNG, where=lung_id > 0)
    return lung_id


def paint_vessels(
    image: np.ndarray,
    lung_id: np.ndarray,
    grid: Grid,
    lungs: tuple[Lung, ...],
    radius: float,
    rng: np.random.Generator,
) -> None:
    """A few bright branching tubes from each hilum, so lungs are not flat black."""
    segments: list[tuple[np.ndarray, np.ndarray, float]] = []
    for lung in lungs:
        hilum = lung.point(0.5, np.pi if lung.cx > 0 else 0.0, 0.55)
        for _ in range(4):
            theta, s = rng.uniform(0, 2 * np.pi), rng.uniform(0.1, 0.9)
            end = lung.point(0.9, theta, s)
            fork = hilum + rng.uniform(0.4, 0.7) * (end - hilum)
            twig = lung.point(
                0.9,
                theta + rng.uniform(-0.8, 0.8),
                float(np.clip(s + rng.uniform(-0.2, 0.2), 0.05, 0.95)),
            )
            segments += [(hilum, end, radius), (fork, twig, 0.7 * radius)]
    for a, b, rad in segments:
        box = grid.box(np.minimum(a, b) - rad, np.maximum(a, b) + rad)
        if any(s.stop <= s.start for s in box):
            continue
        zz, yy, xx = grid.sub(box)
        d = b - a
        t = np.clip(
            ((zz - a[0]) * d[0] + (yy - a[1]) * d[1] + (xx - a[2]) * d[2])
            / max(float(d @ d), 1e-6),
            0,
            1,
        )
        dist2 = (
            (zz - a[0] - t * d[0]) ** 2 + (yy - a[1] - t * d[1]) ** 2 + (xx - a[2] - t * d[2]) ** 2
        )
        image[box][(dist2 <= rad**2) & (lung_id[box] > 0)] = HU_VESSEL
