"""Synthetic anatomy for the dummy dataset: CT-like volumes and slices, X-ray-like images.

Shapes are defined in normalized coordinates (``-1..1`` across the field of view on every axis),
so one phantom can be sampled on any grid: a 3D volume ``(X, Y, Z)``, a 2D coronal slice
``(X, Z)`` through it, or a chest radiograph ``(X, Y)``. Axis directions follow the affines that
``data/synthetic/dummy.py`` writes: X runs from the patient's right to left, Y from anterior to posterior
(volumes) or from head to feet (coronal slices and radiographs), Z from feet to head.

CT values are Hounsfield units (air -1000, lung about -850, fat about -100, soft tissue 15..35,
an organ 50..70, bone several hundred), with bowel gas, lung bases and sometimes the arms in view.
The target lesion is 60..100 HU denser than the organ it grows from; its outline is irregular,
the edges are blurred (partial volume) and the noise (8..14 HU) is spatially correlated, so a
threshold gets most of it but not all (mean Dice about 0.85 with the best fixed window on the
default data), while a small 3D U-Net passes 0.85 within a couple of minutes on a CPU.
Radiographs are 12-bit detector values (0..4095, brighter = more attenuation) with lungs, heart,
spine, ribs, collimator edges and a side marker; the finding is a round nodule in a lung.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy import ndimage

AIR_HU = -1000.0
LESION_Z_SCALE = 1.25  # lesions reach further along the body axis (z) than across it
HU_RANGE = (-1024, 3071)  # what a 12-bit CT with intercept -1024 stores
XRAY_RANGE = (0, 4095)  # a 12-bit detector


@dataclass(frozen=True)
class Waves:
    """A smooth random field: a sum of a few plane cosine waves over normalized coordinates."""

    frequencies: tuple[tuple[float, ...], ...]  # one vector (cycles per unit) per wave
    phases: tuple[float, ...]
    amplitudes: tuple[float, ...]

    def __call__(self, *coords: np.ndarray) -> np.ndarray:
        total: np.ndarray | float = 0.0
        for freq, phase, amp in zip(self.frequencies, self.phases, self.amplitudes, strict=True):
            arg = sum(f * c for f, c in zip(freq, coords, strict=False))
            total = total + amp * np.cos(2 * math.pi * arg + phase)
        return np.asarray(total, dtype=np.float32)


def random_waves(rng: np.random.Generator, ndim: int, count: int, amplitude: float) -> Waves:
    """``count`` waves of 0.3..1.5 cycles per unit along random directions in ``ndim`` axes."""
    freqs = []
    for _ in range(count):
        direction = rng.normal(size=ndim)
        direction /= np.linalg.norm(direction) + 1e-12
        freqs.append(tuple(float(v) for v in direction * rng.uniform(0.3, 1.5)))
    return Waves(
        tuple(freqs),
        tuple(float(p) for p in rng.uniform(0, 2 * math.pi, count)),
        tuple(float(a) for a in rng.uniform(0.5, 1.0, count) * amplitude / count),
    )


@dataclass(frozen=True)
class Pose:
    """Where the patient lies in the field of view.

    ``grid = rotate(anatomy, rotation) * scale + shift``, the rotation in the first two axes.
    """

    shift: tuple[float, ...]
    scale: float
    rotation: float = 0.0  # radians

    def to_anatomy(self, *grid: np.ndarray) -> list[np.ndarray]:
        """Map grid coordinates (one array per axis) back to anatomy coordinates."""
        coords = [(g - s) / self.scale for g, s in zip(grid, self.shift, strict=True)]
        if self.rotation:
            cos, sin = math.cos(self.rotation), math.sin(self.rotation)
            coords[0], coords[1] = (
                cos * coords[0] + sin * coords[1],
                -sin * coords[0] + cos * coords[1],
            )
        return coords


def sample_pose(
    rng: np.random.Generator, ndim: int, spread: float = 0.06, rotation: float = 0.0
) -> Pose:
    """A random shift (``+-spread`` of the field of view; twice that along a third axis, the
    table position), scale (+-6%) and rotation (``+-rotation`` radians)."""
    limits = [spread, spread, 2 * spread][:ndim]
    return Pose(
        tuple(float(rng.uniform(-lim, lim)) for lim in limits),
        float(rng.uniform(0.94, 1.06)),
        float(rng.uniform(-rotation, rotation)),
    )


@dataclass(frozen=True)
class Finding:
    """An ellipsoidal lesion (CT) or nodule (radiograph) with an irregular outline.

    Attributes:
        center: in anatomy coordinates, ``(x, y, z)`` for CT, ``(x, y)`` for radiographs.
        radii: semi-axes along the same axes (normalized units).
        angle: rotation in the x-y plane (radians).
        contrast: HU above the surroundings (CT) or detector units (radiograph).
        lobes: ``(order, amplitude, phase)`` radius modulations of the outline.
    """

    center: tuple[float, ...]
    radii: tuple[float, ...]
    angle: float
    contrast: float
    lobes: tuple[tuple[int, float, float], ...]


def _finding_shape(
    finding: Finding, coords: tuple[np.ndarray, ...]
) -> tuple[np.ndarray, np.ndarray]:
    """(normalized radius ``d``, outline radius at that angle) of ``finding`` on ``coords``."""
    d = [c - c0 for c, c0 in zip(coords, finding.center, strict=True)]
    cos, sin = math.cos(finding.angle), math.sin(finding.angle)
    u = (cos * d[0] + sin * d[1]) / finding.radii[0]
    v = (-sin * d[0] + cos * d[1]) / finding.radii[1]
    r2 = u * u + v * v
    for extra, radius in zip(d[2:], finding.radii[2:], strict=True):
        r2 = r2 + (extra / radius) ** 2
    theta = np.arctan2(v, u)
    outline = 1.0 + sum(amp * np.cos(order * theta + phase) for order, amp, phase in finding.lobes)
    return np.sqrt(r2), np.asarray(outline)


def _lobes(rng: np.random.Generator, amplitude: float) -> tuple[tuple[int, float, float], ...]:
    return tuple(
        (order, float(rng.uniform(0.3, 1.0) * amplitude), float(rng.uniform(0, 2 * math.pi)))
        for order in (2, 3, 5)
    )


# --- CT ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class CTAnatomy:
    """One patient's abdomen: body outline, fat layer, lung bases, organ, spine and densities."""

    body_center: tuple[float, float]
    body_radii: tuple[float, float]
    body_taper: float  # relative change of the body outline from feet to head
    fat_thickness: float
    lung_base: float  # z where the lung bases (above the diaphragm) begin
    organ_center: tuple[float, float, float]
    organ_radii: tuple[float, float, float]
    spine_center: tuple[float, float]
    spine_radius: float
    body_hu: float
    fat_hu: float
    organ_hu: float
    spine_hu: float
    texture: Waves


@dataclass(frozen=True)
class CTVisit:
    """What changes from one scan of a patient to the next: position, arms, bowel gas, noise."""

    pose: Pose
    body_scale: tuple[float, float]  # weight gained or lost since another visit
    arms_down: bool
    lung_shift: float  # breathing: how far the diaphragm moves up or down
    gas: tuple[tuple[tuple[float, float, float], float], ...]  # (center, radius) of gas pockets
    noise_hu: float


def sample_ct_anatomy(rng: np.random.Generator) -> CTAnatomy:
    """A random abdomen that fills most of the field of view."""
    rx, ry = float(rng.uniform(0.6, 0.85)), float(rng.uniform(0.45, 0.72))
    cx, cy = (float(v) for v in rng.uniform(-0.06, 0.06, 2))
    return CTAnatomy(
        body_center=(cx, cy),
        body_radii=(rx, ry),
        body_taper=float(rng.uniform(-0.15, 0.15)),
        fat_thickness=float(rng.uniform(0.04, 0.12)),
        lung_base=float(rng.uniform(0.1, 1.0)),
        organ_center=(
            cx - rx * float(rng.uniform(0.3, 0.45)),
            cy - ry * float(rng.uniform(0.0, 0.25)),
            float(rng.uniform(-0.3, 0.1)),
        ),
        organ_radii=(
            rx * float(rng.uniform(0.4, 0.5)),
            ry * float(rng.uniform(0.45, 0.6)),
            float(rng.uniform(0.6, 0.9)),
        ),
        spine_center=(
            cx + float(rng.uniform(-0.03, 0.03)),
            cy + ry * float(rng.uniform(0.55, 0.7)),
        ),
        spine_radius=float(rng.uniform(0.09, 0.13)),
        body_hu=float(rng.uniform(15, 35)),
        fat_hu=float(rng.uniform(-120, -80)),
        organ_hu=float(rng.uniform(50, 70)),
        spine_hu=float(rng.uniform(400, 700)),
        texture=random_waves(rng, 3, 4, amplitude=10.0),
    )


def sample_ct_visit(rng: np.random.Generator, anatomy: CTAnatomy) -> CTVisit:
    """A scan of ``anatomy``: table position, arms down or up, 2-6 pockets of bowel gas."""
    cx, cy = anatomy.body_center
    rx, ry = anatomy.body_radii
    gas = []
    for _ in range(int(rng.integers(2, 7))):
        center = (
            cx + rx * float(rng.uniform(-0.6, 0.6)),
            cy + ry * float(rng.uniform(-0.6, 0.3)),
            float(rng.uniform(-1.0, 0.5)),
        )
        gas.append((center, float(rng.uniform(0.04, 0.1))))
    return CTVisit(
        pose=sample_pose(rng, 3, spread=0.1, rotation=0.15),
        body_scale=(float(rng.uniform(0.92, 1.08)), float(rng.uniform(0.92, 1.08))),
        arms_down=bool(rng.random() < 0.5),
        lung_shift=float(rng.uniform(-0.15, 0.15)),
        gas=tuple(gas),
        noise_hu=float(rng.uniform(8, 14)),
    )


CT_LESION_CONTRAST_HU = (60.0, 100.0)  # above the organ: a target for segmentation
XRAY_NODULE_CONTRAST = (500.0, 900.0)  # detector units above the lung


def sample_ct_findings(
    rng: np.random.Generator,
    anatomy: CTAnatomy,
    count: int,
    radius: float,
    contrast: tuple[float, float] = CT_LESION_CONTRAST_HU,
) -> list[Finding]:
    """``count`` lesions centered inside the organ, semi-axes ``radius * 0.75..1.3``
    (times ``LESION_Z_SCALE`` along z).

    Args:
        rng: random generator.
        anatomy: the patient the lesions grow in.
        count: number of lesions (0 for a normal study).
        radius: typical semi-axis in normalized units (e.g. 0.25).
        contrast: range of HU above the organ, drawn uniformly per lesion.

    Returns:
        The lesions; each ``contrast`` HU (60..100 by default) brighter than the organ.
    """
    findings = []
    for _ in range(count):
        offset = rng.uniform(-0.4, 0.4, 3)
        center = tuple(
            float(c + o * r)
            for c, o, r in zip(anatomy.organ_center, offset, anatomy.organ_radii, strict=True)
        )
        findings.append(
            Finding(
                center=center,
                radii=tuple(
                    float(radius * scale * rng.uniform(0.75, 1.3))
                    for scale in (1, 1, LESION_Z_SCALE)
                ),
                angle=float(rng.uniform(0, math.pi)),
                contrast=float(rng.uniform(*contrast)),
                lobes=_lobes(rng, 0.08),
            )
        )
    return findings


def ct_coordinates(
    shape: tuple[int, ...], pose: Pose, plane_y: float = 0.0
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Anatomy coordinates ``(x, y, z)`` of every voxel, as arrays that broadcast to ``shape``.

    Args:
        shape: ``(X, Y, Z)`` for a volume, or ``(X, Z)`` for a coronal slice whose second array
            axis runs from head to feet.
        pose: where the patient lies (the grid is mapped back through it).
        plane_y: the anatomy ``y`` of a coronal slice (ignored for volumes).

    Returns:
        ``x, y, z`` float32 arrays.
    """

    def axis(n: int) -> np.ndarray:
        return ((np.arange(n, dtype=np.float32) + 0.5) / n) * 2 - 1

    if len(shape) == 3:
        x, y, z = pose.to_anatomy(
            axis(shape[0])[:, None, None],
            axis(shape[1])[None, :, None],
            axis(shape[2])[None, None, :],
        )
        return x, y, z
    if len(shape) == 2:  # a coronal plane: rotation is about the front-back axis, i.e. in x-z
        z, x = Pose((pose.shift[-1], pose.shift[0]), pose.scale, pose.rotation).to_anatomy(
            -axis(shape[1])[None, :], axis(shape[0])[:, None]
        )
        return x, np.full((1, 1), plane_y, dtype=np.float32), z
    raise ValueError(f"shape must be (X, Y, Z) or (X, Z), got {shape}")


def _ellipsoid(
    coords: tuple[np.ndarray, ...], center: Sequence[float], radii: Sequence[float]
) -> np.ndarray:
    return sum(((c - c0) / r) ** 2 for c, c0, r in zip(coords, center, radii, strict=False)) <= 1


def render_ct(
    shape: tuple[int, ...],
    anatomy: CTAnatomy,
    visit: CTVisit,
    findings: list[Finding],
    rng: np.random.Generator,
    *,
    plane_y: float = 0.0,
) -> tuple[np.ndarray, np.ndarray]:
    """Draw a CT volume ``(X, Y, Z)`` or coronal slice ``(X, Z)`` in Hounsfield units.

    Args:
        shape: output shape (see :func:`ct_coordinates`).
        anatomy, visit, findings: what to draw and where.
        rng: for the noise.
        plane_y: anatomy ``y`` of a coronal slice.

    Returns:
        ``(image, mask)``: int16 HU clipped to ``HU_RANGE``, and the uint8 lesion mask
        (1 inside any finding, within soft tissue).
    """
    x, y, z = ct_coordinates(shape, visit.pose, plane_y)
    a = anatomy
    full = np.broadcast_shapes(x.shape, y.shape, z.shape)

    def fill(where: np.ndarray, value: float | np.ndarray) -> None:
        where = np.broadcast_to(where, full)
        hu[where] = value if np.isscalar(value) else np.broadcast_to(value, full)[where]

    cx, cy = a.body_center
    rx, ry = (r * s for r, s in zip(a.body_radii, visit.body_scale, strict=True))
    taper = 1 + a.body_taper * z
    body_r = np.sqrt(((x - cx) / (rx * taper)) ** 2 + ((y - cy) / (ry * taper)) ** 2)
    body, inner = body_r <= 1, body_r <= 1 - a.fat_thickness / min(rx, ry)
    texture = a.texture(x, y, z)

    hu = np.full(full, AIR_HU, dtype=np.float32)
    if visit.arms_down:
        for side in (-1, 1):
            arm_x = cx + side * (rx + 0.2)
            fill(np.hypot(x - arm_x, y - cy) <= 0.16, a.body_hu)
            fill(np.hypot(x - arm_x, y - cy) <= 0.045, a.spine_hu + 200)
    fill(body, a.fat_hu)
    fill(inner, a.body_hu + texture)
    lungs = np.zeros(full, dtype=bool)
    for side in (-1, 1):
        center = (cx + side * 0.45 * rx, cy + 0.05 * ry, a.lung_base + visit.lung_shift + 0.7)
        lungs |= np.broadcast_to(
            _ellipsoid((x, y, z), center, (0.38 * rx, 0.6 * ry, 0.7)) & inner, full
        )
    fill(lungs, -850.0 + 2 * texture)
    gas = np.zeros(full, dtype=bool)
    for center, radius in visit.gas:
        gas |= np.broadcast_to(_ellipsoid((x, y, z), center, (radius,) * 3) & inner, full)
    fill(gas, -900.0)
    organ = np.broadcast_to(_ellipsoid((x, y, z), a.organ_center, a.organ_radii) & inner, full)
    fill(organ, a.organ_hu + 0.5 * texture)
    spine = np.broadcast_to(
        np.hypot(x - a.spine_center[0], y - a.spine_center[1]) <= a.spine_radius, full
    )
    fill(spine, a.spine_hu)

    # A lesion has its own density, organ + contrast, wherever it reaches inside the body wall
    # (it pushes gas and lung aside, not bone): 60..100 HU above the organ it grows from, more
    # above the soft tissue and fat around the organ.
    mask = np.zeros(full, dtype=bool)
    lesion_hu = np.full(full, -np.inf, dtype=np.float32)
    for finding in findings:
        d, outline = _finding_shape(finding, (x, y, z))
        inside = np.broadcast_to((d <= outline) & inner, full) & ~spine
        mask |= inside
        lesion_hu[inside] = np.maximum(lesion_hu[inside], a.organ_hu + finding.contrast)
    fill(mask, lesion_hu + 0.5 * texture)

    hu = ndimage.gaussian_filter(hu, 0.6)  # partial volume at edges
    noise = ndimage.gaussian_filter(rng.standard_normal(full).astype(np.float32), 0.5)
    hu += noise * (visit.noise_hu / max(float(noise.std()), 1e-6))
    image = np.clip(np.round(hu), *HU_RANGE).astype(np.int16)
    return image, mask.astype(np.uint8)


# --- radiographs ---------------------------------------------------------------------------


@dataclass(frozen=True)
class XrayAnatomy:
    """One patient's chest on a posterior-anterior radiograph."""

    body_width: float
    lung_centers: tuple[tuple[float, float], tuple[float, float]]  # patient right, left
    lung_radii: tuple[float, float]
    heart_center: tuple[float, float]
    heart_radii: tuple[float, float]
    rib_spacing: float
    texture: Waves


@dataclass(frozen=True)
class XrayVisit:
    """One exposure: positioning, collimation, side marker, exposure and noise."""

    pose: Pose
    collimation: tuple[float, float, float, float]  # x from, x to, y from, y to (grid units)
    marker: tuple[float, float]  # center of the side marker (grid units)
    exposure: float  # overall brightness factor
    gradient: tuple[float, float]  # heel effect across the image
    noise: float


def sample_xray_anatomy(rng: np.random.Generator) -> XrayAnatomy:
    """A random chest: lung and heart sizes and rib spacing vary between patients."""
    gap = float(rng.uniform(0.3, 0.44))
    lung_y = float(rng.uniform(-0.18, 0.02))
    return XrayAnatomy(
        body_width=float(rng.uniform(0.7, 0.98)),
        lung_centers=((-gap, lung_y), (gap, lung_y + float(rng.uniform(-0.05, 0.05)))),
        lung_radii=(float(rng.uniform(0.18, 0.3)), float(rng.uniform(0.42, 0.65))),
        heart_center=(float(rng.uniform(0.05, 0.22)), float(rng.uniform(0.18, 0.42))),
        heart_radii=(float(rng.uniform(0.2, 0.36)), float(rng.uniform(0.14, 0.28))),
        rib_spacing=float(rng.uniform(0.1, 0.14)),
        texture=random_waves(rng, 2, 5, amplitude=120.0),
    )


def sample_xray_visit(rng: np.random.Generator) -> XrayVisit:
    """An exposure: shift, scale and rotation of the patient, collimator edges, marker corner."""
    x0, y0 = rng.uniform(-1.0, -0.75, 2)
    x1, y1 = rng.uniform(0.75, 1.0, 2)
    corner = (float(x0 + 0.1) if rng.random() < 0.5 else float(x1 - 0.1), float(y0 + 0.1))
    return XrayVisit(
        pose=sample_pose(rng, 2, spread=0.1, rotation=0.1),
        collimation=(float(x0), float(x1), float(y0), float(y1)),
        marker=corner,
        exposure=float(rng.uniform(0.85, 1.15)),
        gradient=(float(rng.uniform(-300, 300)), float(rng.uniform(-300, 300))),
        noise=float(rng.uniform(30, 50)),
    )


def sample_xray_findings(
    rng: np.random.Generator,
    anatomy: XrayAnatomy,
    count: int,
    radius: float,
    contrast: tuple[float, float] = XRAY_NODULE_CONTRAST,
) -> list[Finding]:
    """``count`` nodules inside the lung fields, radius ``radius * 0.7..1.3``, each ``contrast``
    detector units (drawn uniformly) above the lung."""
    findings = []
    for _ in range(count):
        cx, cy = anatomy.lung_centers[int(rng.integers(2))]
        rx, ry = anatomy.lung_radii
        angle = rng.uniform(0, 2 * math.pi)
        reach = math.sqrt(rng.uniform(0, 0.5))
        r = float(radius * rng.uniform(0.7, 1.3))
        findings.append(
            Finding(
                center=(cx + reach * rx * math.cos(angle), cy + reach * ry * math.sin(angle)),
                radii=(r, r * float(rng.uniform(0.85, 1.15))),
                angle=float(rng.uniform(0, math.pi)),
                contrast=float(rng.uniform(*contrast)),
                lobes=_lobes(rng, 0.05),
            )
        )
    return findings


def render_xray(
    shape: tuple[int, ...],
    anatomy: XrayAnatomy,
    visit: XrayVisit,
    findings: list[Finding],
    rng: np.random.Generator,
) -> np.ndarray:
    """Draw a chest radiograph ``(X, Y)`` (X: patient right to left, Y: head to feet).

    Returns:
        int16 detector values in ``XRAY_RANGE``.
    """
    if len(shape) != 2:
        raise ValueError(f"a radiograph has shape (X, Y), got {shape}")
    gx = ((np.arange(shape[0], dtype=np.float32) + 0.5) / shape[0] * 2 - 1)[:, None]
    gy = ((np.arange(shape[1], dtype=np.float32) + 0.5) / shape[1] * 2 - 1)[None, :]
    x, y = visit.pose.to_anatomy(gx, gy)
    a = anatomy
    full = (shape[0], shape[1])

    value = np.full(full, 150.0, dtype=np.float32)  # direct exposure outside the body
    body = np.broadcast_to(np.abs(x) <= a.body_width * (1 - 0.3 * np.clip(-y - 0.6, 0, None)), full)
    value[body] = 2300.0
    lungs = np.zeros(full, dtype=bool)
    for cx, cy in a.lung_centers:
        lungs |= np.broadcast_to(_ellipsoid((x, y), (cx, cy), a.lung_radii), full)
    mediastinum = np.broadcast_to((np.abs(x - 0.03) <= 0.11) & (y > -0.55), full)
    heart = np.broadcast_to(_ellipsoid((x, y), a.heart_center, a.heart_radii), full)
    value[lungs] = 1100.0
    value[mediastinum | heart] = 2650.0
    value[np.broadcast_to(np.abs(x) <= 0.06, full) & body] += 350.0  # spine
    ribs = np.cos(2 * math.pi * (y - 0.35 * (np.abs(x) - 0.1) ** 2) / a.rib_spacing) > 0.75
    value[lungs & np.broadcast_to(ribs, full)] += 220.0
    value += np.broadcast_to(a.texture(x, y), full) * lungs

    for finding in findings:
        d, outline = _finding_shape(finding, (x, y))
        profile = np.sqrt(np.clip(1 - (d / outline) ** 2, 0, None))  # projection of a ball
        value += finding.contrast * np.broadcast_to(profile, full)

    value = value * visit.exposure + visit.gradient[0] * gx + visit.gradient[1] * gy
    x0, x1, y0, y1 = visit.collimation
    outside = np.broadcast_to((gx < x0) | (gx > x1) | (gy < y0) | (gy > y1), full)
    value[outside] = 3400.0  # behind the collimator blades: unexposed
    mx, my = visit.marker
    value[np.broadcast_to((np.abs(gx - mx) < 0.05) & (np.abs(gy - my) < 0.05), full)] = 4000.0
    value = ndimage.gaussian_filter(value, 1.0)
    value += rng.normal(0, visit.noise, full).astype(np.float32)
    return np.clip(np.round(value), *XRAY_RANGE).astype(np.int16)
