"""An analytic dynamic cardiac phantom: one short-axis bSSFP cine slice with multi-coil sensitivities.

The phantom is the project's own (not Shepp–Logan) and is the embedded default for the demo and the tests.

Geometry and conventions
------------------------
* Images are ``(frames, H, W)`` complex64, ``[..., y, x]``: rows run top to bottom (anterior to posterior), columns
  left to right (patient right to patient left, radiological view), so the RV lies left of the LV and the spine at
  the bottom.
* Pixels are square. Shapes are drawn in *unit coordinates*: the pixel grid centre is the origin and one unit is
  ``min(H, W) / 2`` pixels, so the thorax fills the smaller side and a wider matrix adds air at the sides.
* Every shape is a (super-)ellipse drawn with an analytic partial-volume edge (a one-pixel linear ramp of the signed
  distance, which is what box-filtering the ideal shape gives for a locally straight edge): the image is not
  pathologically aliased yet stays as sharp as a real cine.
* Frame ``f`` of ``F`` lies at cardiac phase ``t = f / F`` over exactly one cycle; the contraction
  ``c(t) = (1 - cos 2πt) / 2`` is 0 at frame 0 (end-diastole) and 1 at mid-cycle (end-systole). The LV blood pool
  shrinks with ``c``, while the myocardial area is conserved, so the wall thickens in systole; the RV crescent
  narrows, the heart twists and shifts a little, and the descending aorta pulses.
* Contrast is bSSFP-like: bright blood and fat, darker myocardium and muscle, near-black lungs with a few small
  pulmonary vessels (sub-pixel to two pixels wide at 128², fine detail for a reconstruction to resolve).
* A smooth complex phase (quadratic polynomial, a few radians across the field of view, varying slightly over the
  cycle) multiplies the magnitude; ``max |images| == 1``.
* ``seed`` jitters the size of the body, the position/size/orientation of the heart, the ejection fraction, the
  intensities, the phase and the coil layout; the same seed gives identical arrays.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

#: Labels of :attr:`PhantomCine.tissue`.
TISSUE_LABELS: dict[int, str] = {
    0: "air",
    1: "body",
    2: "fat",
    3: "myocardium",
    4: "LV blood",
    5: "RV blood",
    6: "lung",
    7: "spine",
    8: "papillary muscle",
    9: "aortic blood",
}
AIR, BODY, FAT, MYOCARDIUM, LV_BLOOD, RV_BLOOD, LUNG, SPINE, PAPILLARY, AORTA = range(10)


@dataclass
class PhantomCine:
    """A simulated cine slice and what it is made of.

    Attributes
    ----------
    images:
        ``(frames, H, W)`` complex64 ground-truth cine, ``max |images| == 1``.
    coil_maps:
        ``(coils, H, W)`` complex64 sensitivities with ``sum_c |S_c|^2 == 1`` at every pixel.
    tissue:
        ``(frames, H, W)`` uint8 label map, see :data:`TISSUE_LABELS` (0 air, 1 body, 2 fat, 3 myocardium, 4 LV blood,
        5 RV blood, 6 lung, 7 spine, 8 papillary muscle, 9 aortic blood). A pixel takes the label of the shape that
        covers its centre.
    """

    images: np.ndarray
    coil_maps: np.ndarray
    tissue: np.ndarray


# --------------------------------------------------------------------------------------------------------- geometry

def _unit_grid(h: int, w: int) -> tuple[np.ndarray, np.ndarray, float]:
    """Pixel-centre coordinates ``(x, y)`` (each ``(H, W)``) in unit coordinates, and the pixel size in units."""
    unit = min(h, w) / 2.0
    y = (np.arange(h) - (h - 1) / 2.0) / unit
    x = (np.arange(w) - (w - 1) / 2.0) / unit
    yy, xx = np.meshgrid(y, x, indexing="ij")
    return xx, yy, 1.0 / unit


def _superellipse_distance(x: np.ndarray, y: np.ndarray, cx: float, cy: float, a: float, b: float,
                           angle: float = 0.0, p: float = 2.0) -> np.ndarray:
    """Approximate signed distance (units, negative inside) to the superellipse ``|u/a|^p + |v/b|^p = 1``.

    ``(u, v)`` are the coordinates relative to ``(cx, cy)`` rotated by ``-angle`` (radians, x towards y). The
    first-order estimate ``g / |grad g|`` is exact on the boundary to first order, which is all the one-pixel edge
    ramp needs; deep inside or far outside only its sign matters.
    """
    dx, dy = x - cx, y - cy
    c, s = np.cos(angle), np.sin(angle)
    u = (c * dx + s * dy) / a
    v = (-s * dx + c * dy) / b
    au, av = np.abs(u), np.abs(v)
    g = au ** p + av ** p - 1.0
    gu = p * au ** (p - 1.0) / a
    gv = p * av ** (p - 1.0) / b
    grad = np.sqrt(gu * gu + gv * gv)
    return g / np.maximum(grad, 1e-12)


def _coverage(distance: np.ndarray, pixel: float) -> np.ndarray:
    """Fraction of a pixel covered by the shape, from the signed distance of its centre (one-pixel linear ramp)."""
    return np.clip(0.5 - distance / pixel, 0.0, 1.0)


class _Canvas:
    """Painter's-algorithm compositing of partial-volume shapes into a magnitude image and a label map."""

    def __init__(self, x: np.ndarray, y: np.ndarray, pixel: float) -> None:
        self.x, self.y, self.pixel = x, y, pixel
        self.magnitude = np.zeros(x.shape, dtype=np.float64)
        self.labels = np.zeros(x.shape, dtype=np.uint8)

    def copy(self) -> "_Canvas":
        other = _Canvas(self.x, self.y, self.pixel)
        other.magnitude = self.magnitude.copy()
        other.labels = self.labels.copy()
        return other

    def paint(self, value: float, label: int, cx: float, cy: float, a: float, b: float,
              angle: float = 0.0, p: float = 2.0) -> None:
        alpha = _coverage(_superellipse_distance(self.x, self.y, cx, cy, a, b, angle, p), self.pixel)
        self.magnitude += alpha * (value - self.magnitude)
        self.labels[alpha >= 0.5] = label


def _rotate(dx: float, dy: float, angle: float) -> tuple[float, float]:
    c, s = np.cos(angle), np.sin(angle)
    return c * dx - s * dy, s * dx + c * dy


# ---------------------------------------------------------------------------------------------------- parameters

@dataclass
class _Anatomy:
    """Seed-jittered anatomy, in unit coordinates and radians."""

    body_a: float
    body_b: float
    fat_front: float
    fat_side: float
    lung_shift: tuple[float, float]
    heart_x: float
    heart_y: float
    heart_angle: float
    heart_scale: float
    ejection_fraction: float
    twist: float
    intensity: dict[str, float]
    phase_coeffs: np.ndarray       # (6,) for 1, x, y, x², xy, y²
    phase_dynamic: np.ndarray      # (3,) amplitude, x and y weights of the time-varying part
    lung_vessels: np.ndarray       # (n, 4) lung (0 right, 1 left), radius and angle inside the lung, vessel radius


_NOMINAL_INTENSITY = {
    "fat": 0.85, "body": 0.36, "lung": 0.04, "myocardium": 0.27, "papillary": 0.30, "lv_blood": 1.0,
    "rv_blood": 0.93, "aorta": 0.88, "marrow": 0.55, "cortex": 0.07, "csf": 0.80, "cord": 0.42,
    "vessel": 0.30,
}


def _anatomy(rng: np.random.Generator) -> _Anatomy:
    def jitter(scale: float) -> float:
        return float(rng.uniform(-scale, scale))

    intensity = {k: v * (1.0 + jitter(0.08)) for k, v in _NOMINAL_INTENSITY.items()}
    n_vessels = 14
    vessels = np.stack([np.arange(n_vessels) % 2, np.sqrt(rng.uniform(0.05, 0.75, n_vessels)),
                        rng.uniform(0.0, 2.0 * np.pi, n_vessels), rng.uniform(0.010, 0.022, n_vessels)], axis=1)
    # a linear gradient of 0.9-1.6 rad/unit in a random direction (1.5-3 rad across the body) plus quadratic terms
    slope, direction = rng.uniform(0.9, 1.6), rng.uniform(0.0, 2.0 * np.pi)
    phase = np.array([rng.uniform(-np.pi, np.pi), slope * np.cos(direction), slope * np.sin(direction),
                      jitter(0.6), jitter(0.6), jitter(0.6)])
    return _Anatomy(
        body_a=0.90 * (1.0 + jitter(0.04)), body_b=0.66 * (1.0 + jitter(0.05)),
        fat_front=0.055 * (1.0 + jitter(0.25)), fat_side=0.04 * (1.0 + jitter(0.25)),
        lung_shift=(jitter(0.02), jitter(0.02)),
        heart_x=0.04 + jitter(0.03), heart_y=-0.06 + jitter(0.03),
        heart_angle=np.deg2rad(jitter(12.0)), heart_scale=1.0 + jitter(0.08),
        ejection_fraction=0.60 + jitter(0.08), twist=np.deg2rad(3.0 + jitter(1.5)),
        intensity=intensity, phase_coeffs=phase,
        phase_dynamic=np.array([0.15 + jitter(0.05), jitter(1.0), jitter(1.0)]),
        lung_vessels=vessels,
    )


# ------------------------------------------------------------------------------------------------------- drawing

def _draw_static(canvas: _Canvas, an: _Anatomy) -> None:
    """Thorax, fat rim, lungs and spine: everything that does not beat."""
    i = an.intensity
    by = 0.02  # the patient lies on the table: body centre slightly posterior
    canvas.paint(i["fat"], FAT, 0.0, by, an.body_a, an.body_b, p=2.4)
    # thicker fat anteriorly than posteriorly: shift the inner contour down a little
    canvas.paint(i["body"], BODY, 0.0, by + 0.3 * (an.fat_front - an.fat_side),
                 an.body_a - an.fat_side, an.body_b - 0.5 * (an.fat_front + an.fat_side), p=2.4)
    lx, ly = an.lung_shift
    lungs = ((-0.45 + lx, 0.02 + ly, 0.26, 0.40, np.deg2rad(12.0)), (0.47 + lx, 0.04 + ly, 0.24, 0.38, np.deg2rad(-12.0)))
    for cx, cy, a, b, ang in lungs:
        canvas.paint(i["lung"], LUNG, cx, cy, a, b, angle=ang, p=2.2)
    # pulmonary vessels: small bright-ish dots, fine detail for the reconstruction to resolve
    for which, rho, theta, radius in an.lung_vessels:
        cx, cy, a, b, ang = lungs[int(which)]
        dx, dy = _rotate(rho * a * np.cos(theta), rho * b * np.sin(theta), ang)
        canvas.paint(i["vessel"], LUNG, cx + dx, cy + dy, radius, radius)
    # vertebra: dark cortical shell, bright marrow, posterior arch, spinal canal (CSF) with the cord
    sy = by + an.body_b - 0.30
    canvas.paint(i["cortex"], SPINE, 0.0, sy, 0.115, 0.095, p=2.6)
    canvas.paint(i["marrow"], SPINE, 0.0, sy, 0.095, 0.077, p=2.6)
    canvas.paint(i["cortex"], SPINE, 0.0, sy + 0.15, 0.085, 0.065)
    canvas.paint(i["csf"], SPINE, 0.0, sy + 0.14, 0.045, 0.04)
    canvas.paint(i["cord"], SPINE, 0.0, sy + 0.14, 0.022, 0.02)


def _draw_heart(canvas: _Canvas, an: _Anatomy, contraction: float) -> None:
    """Heart (RV, LV, papillary muscles, epicardial fat) and the descending aorta at contraction ``c`` in [0, 1]."""
    i, s, c = an.intensity, an.heart_scale, contraction
    # the heart twists and moves slightly towards the apex (out of plane: seen as a small in-plane shift)
    rot = an.heart_angle + an.twist * c
    hx, hy = an.heart_x + 0.012 * c, an.heart_y + 0.010 * c

    def place(dx: float, dy: float) -> tuple[float, float]:
        rx, ry = _rotate(dx * s, dy * s, rot)
        return hx + rx, hy + ry

    # LV: blood-pool area scales by (1 - EF·c); myocardial area is conserved, so the wall thickens in systole
    r_endo_ed, wall_ed = 0.16, 0.062
    r_endo = r_endo_ed * np.sqrt(1.0 - an.ejection_fraction * c)
    r_epi = np.sqrt(r_endo ** 2 + (r_endo_ed + wall_ed) ** 2 - r_endo_ed ** 2)
    lvx, lvy = place(0.08, 0.0)

    # epicardial fat in the anterior and inferior interventricular grooves
    for ang in (-2.05, 2.15):
        fx, fy = place(0.08 + (r_epi + 0.015) * np.cos(ang), (r_epi + 0.015) * np.sin(ang))
        canvas.paint(i["fat"], FAT, fx, fy, 0.05 * s, 0.03 * s, angle=rot + ang)

    # RV crescent: a tall ellipse centred on the LV's septal edge, so that the LV covers its right half and the rest
    # wraps around the septum; the free wall moves towards the septum in systole
    rvx, rvy = place(0.08 - r_epi + 0.01, -0.03)
    rv_a, rv_b = 0.17 * (1.0 - 0.35 * c), 0.29 * (1.0 - 0.08 * c)
    rv_angle = rot + np.deg2rad(-15.0)
    rv_wall = 0.022
    canvas.paint(i["myocardium"], MYOCARDIUM, rvx, rvy, (rv_a + rv_wall) * s, (rv_b + rv_wall) * s, rv_angle)
    canvas.paint(i["rv_blood"], RV_BLOOD, rvx, rvy, rv_a * s, rv_b * s, rv_angle)

    # LV myocardium and blood pool (slightly elliptical)
    canvas.paint(i["myocardium"], MYOCARDIUM, lvx, lvy, r_epi * 1.03 * s, r_epi * 0.97 * s, rot)
    canvas.paint(i["lv_blood"], LV_BLOOD, lvx, lvy, r_endo * 1.05 * s, r_endo * 0.95 * s, rot)

    # anterolateral and posteromedial papillary muscles, attached to the wall, thicker in systole
    r_pap = 0.03 * (1.0 + 0.25 * c)
    for ang in (np.deg2rad(-50.0), np.deg2rad(115.0)):
        d = r_endo - 0.7 * r_pap
        px, py = place(0.08 + d * np.cos(ang), d * np.sin(ang))
        canvas.paint(i["papillary"], PAPILLARY, px, py, r_pap * s, 0.8 * r_pap * s, rot + ang)

    # descending aorta, left-anterior of the spine, distends slightly in systole
    r_ao = 0.052 * (1.0 + 0.08 * c)
    canvas.paint(i["myocardium"], BODY, 0.14, 0.30, r_ao + 0.012, r_ao + 0.012)   # vessel wall
    canvas.paint(i["aorta"], AORTA, 0.14, 0.30, r_ao, r_ao)


def _phase(x: np.ndarray, y: np.ndarray, an: _Anatomy, t: float) -> np.ndarray:
    """Smooth phase (radians): quadratic in x, y plus a slowly varying linear term over the cycle."""
    p = an.phase_coeffs
    static = p[0] + p[1] * x + p[2] * y + p[3] * x * x + p[4] * x * y + p[5] * y * y
    amp, wx, wy = an.phase_dynamic
    return static + amp * np.sin(2.0 * np.pi * t) * (1.0 + wx * x + wy * y)


# ------------------------------------------------------------------------------------------------------ public API

def analytic_coil_maps(shape: tuple[int, int], coils: int, seed: int = 0) -> np.ndarray:
    """Smooth analytic receive sensitivities of loop coils around the thorax.

    The coils sit evenly on an ellipse around the body (seed-jittered rotation, spacing and radii). Each has a
    Biot–Savart-like on-axis fall-off ``(R² / (R² + d²))^{3/2}`` with ``d`` the distance from the coil centre, times a
    smooth linear phase of its own. The maps are then normalised so that ``sum_c |S_c|² == 1``; since every magnitude is
    strictly positive this is well defined everywhere, in the air too.

    Parameters
    ----------
    shape:
        ``(H, W)`` image matrix (rows, columns).
    coils:
        Number of coils, ≥ 1. One coil gives a map of ones.
    seed:
        Jitter of the coil layout and phases.

    Returns
    -------
    ``(coils, H, W)`` complex64.
    """
    h, w = int(shape[0]), int(shape[1])
    if h < 1 or w < 1:
        raise ValueError(f"coil map shape must be positive, got {tuple(shape)}")
    if coils < 1:
        raise ValueError(f"coils must be >= 1, got {coils}")
    if coils == 1:
        return np.ones((1, h, w), dtype=np.complex64)
    x, y, _ = _unit_grid(h, w)
    rng = np.random.default_rng([int(seed) % 2**64, 0xC011])
    start = rng.uniform(0.0, 2.0 * np.pi)
    angles = start + 2.0 * np.pi * (np.arange(coils) + rng.uniform(-0.15, 0.15, coils)) / coils
    ra, rb = 1.02 * (1.0 + rng.uniform(-0.05, 0.05)), 0.80 * (1.0 + rng.uniform(-0.05, 0.05))
    loop_radius = 0.45 * (1.0 + rng.uniform(-0.1, 0.1))
    maps = np.empty((coils, h, w), dtype=np.complex128)
    for k, ang in enumerate(angles):
        cx, cy = ra * np.cos(ang), rb * np.sin(ang)
        d2 = (x - cx) ** 2 + (y - cy) ** 2
        magnitude = (loop_radius ** 2 / (loop_radius ** 2 + d2)) ** 1.5
        direction = rng.uniform(0.0, 2.0 * np.pi)
        slope = rng.uniform(0.3, 1.0)
        phase = rng.uniform(-np.pi, np.pi) + slope * (np.cos(direction) * x + np.sin(direction) * y)
        maps[k] = magnitude * np.exp(1j * phase)
    maps /= np.sqrt(np.sum(np.abs(maps) ** 2, axis=0))
    return maps.astype(np.complex64)


def cardiac_phantom(matrix: int = 128, frames: int = 20, coils: int = 8, seed: int = 0,
                    matrix_w: int | None = None) -> PhantomCine:
    """Simulate one short-axis bSSFP cine slice over exactly one cardiac cycle.

    Parameters
    ----------
    matrix:
        Image rows H (and columns W unless ``matrix_w`` is given), ≥ 16.
    frames:
        Cardiac phases F ≥ 1, spread evenly over one cycle; frame 0 is end-diastole, frame ``F // 2`` end-systole.
    coils:
        Receive coils ≥ 1 (see :func:`analytic_coil_maps`).
    seed:
        Jitters anatomy, contraction, intensities, phase and coils; the same seed gives identical arrays.
    matrix_w:
        Image columns W ≥ 16 for a non-square matrix (square pixels; the thorax fills the smaller side).

    Returns
    -------
    :class:`PhantomCine` with ``images`` ``(F, H, W)`` complex64, ``coil_maps`` ``(coils, H, W)`` complex64 and
    ``tissue`` ``(F, H, W)`` uint8.
    """
    h = int(matrix)
    w = h if matrix_w is None else int(matrix_w)
    if h < 16 or w < 16:
        raise ValueError(f"phantom matrix must be at least 16x16, got {h}x{w}")
    if frames < 1:
        raise ValueError(f"frames must be >= 1, got {frames}")
    if coils < 1:
        raise ValueError(f"coils must be >= 1, got {coils}")

    anatomy = _anatomy(np.random.default_rng([int(seed) % 2**64, 0xCA4D]))
    x, y, pixel = _unit_grid(h, w)
    static = _Canvas(x, y, pixel)
    _draw_static(static, anatomy)

    magnitude = np.empty((frames, h, w), dtype=np.float64)
    tissue = np.empty((frames, h, w), dtype=np.uint8)
    phase = np.empty((frames, h, w), dtype=np.float64)
    for f in range(frames):
        t = f / frames
        canvas = static.copy()
        _draw_heart(canvas, anatomy, 0.5 * (1.0 - np.cos(2.0 * np.pi * t)))
        magnitude[f], tissue[f] = canvas.magnitude, canvas.labels
        phase[f] = _phase(x, y, anatomy, t)

    magnitude /= magnitude.max()
    images = (magnitude * np.exp(1j * phase)).astype(np.complex64)
    return PhantomCine(images=images, coil_maps=analytic_coil_maps((h, w), coils, seed), tissue=tissue)


@dataclass
class PhantomMotion:
    """The phantom's known in-plane motion, as :func:`cardiac_phantom_motion` gives it.

    Attributes
    ----------
    displacement:
        ``(frames, H, W, 2)`` float32, pixels, components ``(x, y)`` (columns, rows): for the tissue at pixel ``p``
        of frame ``f``, where that tissue lies in frame 0 (end-diastole), minus ``p``. Zero where :attr:`known` is
        False.
    known:
        ``(frames, H, W)`` bool: where the motion is defined by the phantom's construction, i.e. the LV myocardium
        (area-conserving radial thickening in a heart frame that twists and shifts) and the tissue that never moves
        (body, lungs, spine, air, and fat away from the heart); the blood pools, RV, papillary muscles, epicardial
        fat and the aorta are left out (they are drawn, not moved as material).
    myocardium:
        ``(frames, H, W)`` bool: the LV-myocardium part of :attr:`known`.
    """

    displacement: np.ndarray
    known: np.ndarray
    myocardium: np.ndarray


def cardiac_phantom_motion(matrix: int = 128, frames: int = 20, seed: int = 0,
                           matrix_w: int | None = None) -> PhantomMotion:
    """The analytic motion of :func:`cardiac_phantom` (same ``matrix``, ``frames``, ``seed``, ``matrix_w``).

    The LV wall is an annulus centred at the LV centre, in a heart frame that rotates by ``twist·c`` and shifts by
    ``(0.012, 0.010)·c`` units with the contraction ``c(t)``; the blood pool's radius follows
    ``r_endo(c) = r_endo_ed·√(1 − EF·c)`` and the myocardial area is conserved, so a wall point at radius ``r``
    (heart-frame units, the small ellipticity of the drawn wall ignored) has ``r² − r_endo(c)²`` constant over the
    cycle at a fixed heart-frame angle. Static tissue does not move. Returns a :class:`PhantomMotion` whose
    displacement points from frame ``f`` to frame 0 (the reconstruction's motion convention,
    :mod:`dainr.recon.motion`).
    """
    h = int(matrix)
    w = h if matrix_w is None else int(matrix_w)
    an = _anatomy(np.random.default_rng([int(seed) % 2**64, 0xCA4D]))
    tissue = cardiac_phantom(matrix=h, frames=frames, coils=1, seed=seed, matrix_w=w).tissue
    x, y, pixel = _unit_grid(h, w)
    s, r_ed = an.heart_scale, 0.16

    def lv_frame(c: float) -> tuple[float, float, float, float]:
        """LV centre (x, y), heart rotation and endocardial radius at contraction ``c``."""
        rot = an.heart_angle + an.twist * c
        dx, dy = _rotate(0.08 * s, 0.0, rot)
        endo = r_ed * np.sqrt(1.0 - an.ejection_fraction * c)
        return an.heart_x + 0.012 * c + dx, an.heart_y + 0.010 * c + dy, rot, endo

    cx0, cy0, rot0, endo0 = lv_frame(0.0)
    epi2 = (r_ed + 0.062) ** 2 - r_ed ** 2  # r_epi² − r_endo², constant over the cycle (myocardial area)
    static = np.isin(tissue, (AIR, BODY, LUNG, SPINE))
    # the fat of the body wall (not the epicardial fat, which moves with the heart) lies far from the heart
    static |= (tissue == FAT) & (np.hypot(x - cx0, y - cy0) > 0.45)
    known = np.zeros(tissue.shape, bool)
    myo = np.zeros(tissue.shape, bool)
    disp = np.zeros(tissue.shape + (2,), np.float32)
    for f in range(frames):
        c = 0.5 * (1.0 - np.cos(2.0 * np.pi * f / frames))
        cx, cy, rot, endo = lv_frame(c)
        # heart-frame coordinates relative to the LV centre, the wall's ellipticity (about ±4 %) divided out
        u, v = _rotate((x - cx) / s, (y - cy) / s, -rot)
        u, v = u / 1.04, v / 0.96
        r = np.hypot(u, v)
        r0 = np.sqrt(np.maximum(r * r - endo * endo + endo0 * endo0, 0.0))
        k = np.divide(r0, r, out=np.ones_like(r), where=r > 0)
        ex, ey = _rotate(u * k * 1.04 * s, v * k * 0.96 * s, rot0)
        wall = (tissue[f] == MYOCARDIUM) & (r > endo) & (r * r < endo * endo + epi2 + 0.01 * endo)
        myo[f] = wall
        known[f] = wall | (static[f] & static[0] & (np.hypot(x - cx, y - cy) > 0.45))
        disp[f, ..., 0] = np.where(wall, (cx0 + ex - x) / pixel, 0.0)
        disp[f, ..., 1] = np.where(wall, (cy0 + ey - y) / pixel, 0.0)
    return PhantomMotion(displacement=disp, known=known, myocardium=myo)
