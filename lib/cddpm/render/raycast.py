"""Analytic ray casting of CLEVR-style scenes with numpy: spheres, cubes and cylinders on a floor. Only screen tiles an
object or its shadow can touch are cast; every per-pixel step is IEEE-exact (+ - * / sqrt min max, no BLAS, no
exp/pow), so the pixels are bit-identical on any machine, thread count or batch split."""
from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np

SPHERE, CUBE, CYLINDER = 0, 1, 2
NONE = -1
SLOTS = 3  # objects per image at most
SAMPLES = 4  # rays per pixel side: 16 rays per pixel, one towards each cell of the area light
EPS = np.float32(1e-3)
INF = np.float32(np.inf)
F32 = np.float32

# camera: looks at TARGET from 35 degrees above the floor (direction 0, -1, 0.7), 4:3 frustum squashed
# into a square image like the course's 320x240 -> 64x64 resize; the narrow field of view frames the
# objects about as large as i-CLEVR does: a small object is ~8 px tall at 64, a large one ~17 px
TARGET = np.array([0.0, 0.4, 0.3])
CAMERA_DISTANCE = 10.0
TAN_V = 0.22
TAN_H = TAN_V * 4 / 3
KEY = np.array([-1.0, -0.55, 1.5])  # towards the key light: upper left, slightly in front
FILL = np.array([1.0, -0.4, 0.35])  # towards a low fill light on the right (no shadows)
BACK = np.array([0.0, 0.45, 1.0])  # where CLEVR's back lamp is (behind the scene, high); here only its jitter counts
POOL = (-0.5, -1.0)  # floor point under the key light's broad pool of light
LIGHT_RADIUS = 0.18  # half-width of the square area light around KEY, for soft shadows
LIGHT_GRID = 4  # the light is split into LIGHT_GRID**2 cells; a pixel's rays aim at different cells
FLOOR = F32(0.36)  # linear albedo of the floor
MIRRORED = F32(0.7)  # --realistic: brightness of an object mirrored in metal, times its albedo


def _unit(v: np.ndarray) -> np.ndarray:
    return v / np.sqrt((v * v).sum(-1, keepdims=True))


def _level(fwd: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Right and up unit vectors of a view along unit ``fwd`` with a level horizon (float64, sqrt only)."""
    right = _unit(np.cross(fwd, [0.0, 0.0, 1.0]))
    return right, np.cross(right, fwd)


FWD = -_unit(np.array([0.0, -1.0, 0.7]))
EYE = TARGET - CAMERA_DISTANCE * FWD
RIGHT, UP = _level(FWD)

# --realistic (cddpm.render): CLEVR's camera and lamp jitter at its distances, light per step, grain, mirrored
# metal; the numbers and their sources are in docs/data.md
CLEVR_CAMERA_DISTANCE = 11.26
CLEVR_LAMP_DISTANCE = {"key": 8.26, "fill": 6.86, "back": 6.50}


@dataclass(frozen=True)
class Realism:
    """The strength of each --realistic effect (all per scene, except ``step_light`` and ``grain`` per image)."""

    camera_jitter: float = 0.5 * CAMERA_DISTANCE / CLEVR_CAMERA_DISTANCE  # CLEVR's 0.5: the same angle of view
    light_jitter: float = 1.0  # CLEVR's lamp jitter, scene units
    step_light: float = 0.1    # each image's light is 1 +- this of its scene's (linear): a scene's steps differ
    grain: float = 3.0         # std of per-pixel sample noise, in 8-bit levels (Blender's path-tracing grain)
    reflections: bool = True   # metal mirrors the other objects (colour bleed on metal)


REALISM = Realism()


@dataclass(frozen=True, eq=False)
class View:
    """Camera and lights of an image: :data:`CLEAN` for every clean image, a scene's own with --realistic
    (:func:`jittered`). The gains scale the key light, the fill light and the ambient (sky, floor, environment)."""

    eye: np.ndarray
    right: np.ndarray
    up: np.ndarray
    fwd: np.ndarray
    key: np.ndarray
    fill: np.ndarray
    key_gain: float = 1.0
    fill_gain: float = 1.0
    ambient_gain: float = 1.0
    pool: tuple[float, float] = POOL
    reflections: bool = False


CLEAN = View(EYE, RIGHT, UP, FWD, KEY, FILL)


def jittered(rng: np.random.Generator) -> View:
    """A scene's camera and lights as CLEVR's renderer jitters them (see ``CLEVR_CAMERA_DISTANCE``)."""
    eye = EYE + REALISM.camera_jitter * rng.uniform(-1, 1, 3)
    fwd = _unit(TARGET - eye)
    lamps = {}
    for name, towards in (("key", KEY), ("fill", FILL), ("back", BACK)):
        distance = CLEVR_LAMP_DISTANCE[name]
        moved = distance * _unit(towards) + REALISM.light_jitter * rng.uniform(-1, 1, 3)
        lamps[name] = (moved, float(distance * distance / (moved * moved).sum()))
    key = lamps["key"][0]
    shift = key - CLEVR_LAMP_DISTANCE["key"] * _unit(KEY)
    return View(eye, *_level(fwd), fwd, key=key, fill=lamps["fill"][0], key_gain=lamps["key"][1],
                fill_gain=lamps["fill"][1], ambient_gain=lamps["back"][1],
                pool=(POOL[0] + float(shift[0]), POOL[1] + float(shift[1])), reflections=REALISM.reflections)


def _light_dirs(a: np.ndarray, b: np.ndarray, towards: np.ndarray) -> np.ndarray:
    """(..., 3) unit directions towards points (a, b) in [-1, 1]^2 of the square area light."""
    key = _unit(towards)
    e1, e2 = _level(key)
    return _unit(key + LIGHT_RADIUS * (a[..., None] * e1 + b[..., None] * e2))


def project(x, y, z, size: int, view: View = CLEAN) -> tuple[np.ndarray, np.ndarray]:
    """Pixel coordinates (u right, v down, in [0, size)) of world points."""
    v = np.stack(np.broadcast_arrays(x, y, z), -1) - view.eye
    xc, yc, zc = (v * view.right).sum(-1), (v * view.up).sum(-1), (v * view.fwd).sum(-1)
    return (xc / (zc * TAN_H) + 1) * size / 2, (1 - yc / (zc * TAN_V)) * size / 2


def _tile(size: int) -> int:
    """Tile side: the divisor of ``size`` closest to size / 16."""
    return min((d for d in range(1, size + 1) if size % d == 0), key=lambda d: abs(d - size / 16))


@dataclass
class Scenes:
    """A batch of B images, SLOTS object slots each (``kind`` NONE: empty): kind (B, 3) int; x, y, r (bounding radius),
    cos, sin (cube rotation) (B, 3) float32; colour (B, 3, 3) linear RGB; metal (B, 3) bool."""

    kind: np.ndarray
    x: np.ndarray
    y: np.ndarray
    r: np.ndarray
    cos: np.ndarray
    sin: np.ndarray
    colour: np.ndarray
    metal: np.ndarray

    def __len__(self) -> int:
        return len(self.kind)

    @classmethod
    def empty(cls, batch: int) -> Scenes:
        z = lambda: np.zeros((batch, SLOTS), F32)  # noqa: E731
        return cls(np.full((batch, SLOTS), NONE), z(), z(), z(), z() + 1, z(), np.zeros((batch, SLOTS, 3), F32),
                   np.zeros((batch, SLOTS), bool))


@dataclass
class Result:
    """Per-object ray counts, and when shaded uint8 images and a pixel well inside each object."""

    visible: np.ndarray  # (B, 3) rays whose nearest hit is the object
    covered: np.ndarray  # (B, 3) rays that hit the object at all (its footprint were it alone)
    images: np.ndarray | None = None  # (B, size, size, 3)
    position: np.ndarray | None = None  # (B, 3, 2) pixel (u, v) of the object's best-covered pixel nearest its centroid


def _sphere(o, d, cx, cy, r):
    """Ray distance to spheres resting on the floor (inf on a miss), and the hit normal."""
    ox, oy, oz = o[0] - cx, o[1] - cy, o[2] - r
    b = ox * d[0] + oy * d[1] + oz * d[2]
    disc = b * b - (ox * ox + oy * oy + oz * oz - r * r)
    t = -b - np.sqrt(np.maximum(disc, 0))
    t = np.where((disc >= 0) & (t > EPS), t, INF)

    def normal(t):
        inv = 1 / r
        return (ox + t * d[0]) * inv, (oy + t * d[1]) * inv, (oz + t * d[2]) * inv
    return t, normal


def _cube(o, d, cx, cy, r, cos, sin):
    """Ray distance to rotated cubes (half side r / sqrt 2) resting on the floor, and the normal."""
    h = r * F32(0.70710677)
    ox, oy, oz = o[0] - cx, o[1] - cy, o[2] - h
    lo = (cos * ox + sin * oy, cos * oy - sin * ox, oz)
    ld = (cos * d[0] + sin * d[1], cos * d[1] - sin * d[0], d[2])
    with np.errstate(divide="ignore", invalid="ignore"):
        near, far = [], []
        for a in range(3):
            inv = 1 / ld[a]
            t1, t2 = (-h - lo[a]) * inv, (h - lo[a]) * inv
            near.append(np.minimum(t1, t2))
            far.append(np.maximum(t1, t2))
    tn = np.maximum(np.maximum(near[0], near[1]), near[2])
    tf = np.minimum(np.minimum(far[0], far[1]), far[2])
    t = np.where((tn <= tf) & (tn > EPS), tn, INF)

    def normal(t):
        n = [np.where(t == near[a], -np.sign(ld[a]), F32(0)) for a in range(3)]
        return cos * n[0] - sin * n[1], sin * n[0] + cos * n[1], n[2]
    return t, normal


def _cylinder(o, d, cx, cy, r):
    """Ray distance to upright cylinders (radius r, height 2r) on the floor, and the normal."""
    ox, oy, oz = o[0] - cx, o[1] - cy, o[2]
    a = d[0] * d[0] + d[1] * d[1]
    b = ox * d[0] + oy * d[1]
    disc = b * b - a * (ox * ox + oy * oy - r * r)
    side = (-b - np.sqrt(np.maximum(disc, 0))) / a
    z = oz + side * d[2]
    side = np.where((disc >= 0) & (side > EPS) & (z >= 0) & (z <= 2 * r), side, INF)
    with np.errstate(divide="ignore", invalid="ignore"):
        top = (2 * r - oz) / d[2]
    tx, ty = ox + top * d[0], oy + top * d[1]
    top = np.where((top > EPS) & (tx * tx + ty * ty <= r * r), top, INF)
    t = np.minimum(side, top)

    def normal(t):
        is_top = t == top
        inv = 1 / r
        return (np.where(is_top, F32(0), (ox + t * d[0]) * inv), np.where(is_top, F32(0), (oy + t * d[1]) * inv),
                is_top.astype(F32))
    return t, normal


def _intersect(kind: int, o, d, s: Scenes, rows_b: np.ndarray, j: int):
    p = lambda a: a[rows_b, j, None]  # noqa: E731  (m, 1) parameters of slot j for the selected tiles
    if kind == SPHERE:
        return _sphere(o, d, p(s.x), p(s.y), p(s.r))
    if kind == CUBE:
        return _cube(o, d, p(s.x), p(s.y), p(s.r), p(s.cos), p(s.sin))
    return _cylinder(o, d, p(s.x), p(s.y), p(s.r))


def _groups(s: Scenes, tile_b: np.ndarray):
    """(slot, kind, rows) for every slot and object kind present among the tiles' images."""
    for j in range(SLOTS):
        kinds = s.kind[tile_b, j]
        for kind in (SPHERE, CUBE, CYLINDER):
            rows = np.flatnonzero(kinds == kind)
            if rows.size:
                yield j, kind, rows


def _power(x: np.ndarray, squarings: int) -> np.ndarray:
    for _ in range(squarings):
        x = x * x
    return x


class Renderer:
    """Casts batches of scenes at one image size with ``samples`` x ``samples`` rays per pixel, seen and lit as
    ``view`` says."""

    def __init__(self, size: int, samples: int, view: View = CLEAN):
        self.size, self.samples, self.view = size, samples, view
        self.t = _tile(size)
        self.n = size // self.t
        side = self.t * samples  # rays per tile side
        # sample centres in pixel units, laid out per tile as (tile_y, tile_x, row, column)
        offsets = (np.arange(side) + 0.5) / samples
        grid = np.arange(self.n)[:, None] * self.t + offsets[None, :]  # (n, side)
        u = grid[None, :, None, :]
        v = grid[:, None, :, None]
        dirs = _unit(view.fwd + ((2 * u / size - 1) * TAN_H)[..., None] * view.right
                     + ((1 - 2 * v / size) * TAN_V)[..., None] * view.up)  # (n, n, side, side, 3)
        self.dirs = np.ascontiguousarray(dirs.reshape(self.n, self.n, side * side, 3).transpose(0, 1, 3, 2), F32)
        self.t_floor = (-view.eye[2] / self.dirs[:, :, 2].astype(np.float64)).astype(F32)
        # each ray aims at a random point of one light cell; the rays of a pixel cover the cells evenly
        row, col = np.meshgrid(np.arange(side), np.arange(side), indexing="ij")
        which = (row % samples * samples + col % samples + 5 * (row // samples) + 3 * (col // samples)) % LIGHT_GRID**2
        jitter = np.random.default_rng(0).random((2, self.n, self.n, side * side))
        cell = which.reshape(-1)
        a = (cell // LIGHT_GRID + jitter[0]) / LIGHT_GRID * 2 - 1
        b = (cell % LIGHT_GRID + jitter[1]) / LIGHT_GRID * 2 - 1
        self.light = np.ascontiguousarray(_light_dirs(a, b, view.key).transpose(0, 1, 3, 2), F32)  # (n, n, 3, rays)
        self.corner_lights = _light_dirs(np.array([-1.0, -1, 1, 1]), np.array([-1.0, 1, -1, 1]), view.key)
        self.fill = _unit(view.fill).astype(F32)
        floor = self._cast(Scenes.empty(1), np.nonzero(np.ones((1, self.n, self.n), bool)))[1][0]
        self.floor = floor.reshape(self.n, self.n, 3, self.t, self.t)  # linear colour of the empty floor

    def tiles(self, s: Scenes, shadows: bool = True) -> np.ndarray:
        """(B, n, n) mask of the tiles that an object (or its soft shadow) may touch."""
        x, y, r = s.x[..., None], s.y[..., None], s.r[..., None]
        sx = np.array([-1, 1, -1, 1])
        sy = np.array([-1, -1, 1, 1])
        cx, cy = x + sx * r, y + sy * r  # (B, 3, 4) corners of the bounding square
        top = 2 * r
        pts = [(cx, cy, 0 * cx), (cx, cy, top + 0 * cx)]
        for light in self.corner_lights if shadows else ():  # where the top corners' shadows fall
            k = top / light[2]
            pts.append((cx - k * light[0], cy - k * light[1], 0 * cx))
        u, v = zip(*(project(*p, self.size, self.view) for p in pts))
        u, v = np.concatenate(u, -1), np.concatenate(v, -1)
        t0 = np.clip(np.floor((u.min(-1) - 1) / self.t), 0, self.n - 1).astype(int)
        t1 = np.clip(np.floor((u.max(-1) + 1) / self.t), 0, self.n - 1).astype(int)
        s0 = np.clip(np.floor((v.min(-1) - 1) / self.t), 0, self.n - 1).astype(int)
        s1 = np.clip(np.floor((v.max(-1) + 1) / self.t), 0, self.n - 1).astype(int)
        idx = np.arange(self.n)
        inside = ((idx >= s0[..., None])[..., :, None] & (idx <= s1[..., None])[..., :, None]
                  & (idx >= t0[..., None])[..., None, :] & (idx <= t1[..., None])[..., None, :])
        return (inside & (s.kind != NONE)[..., None, None]).any(1)

    def render(self, s: Scenes, shade: bool = True, rays: int = 65536, gain: np.ndarray | None = None,
               grain: np.ndarray | None = None) -> Result:
        """Cast the active tiles of a batch, about ``rays`` rays at a time (cache-sized arrays), and assemble.
        ``gain`` (B,) scales each image's light; ``grain`` (B, size, size, 3) is added in 8-bit levels before rounding."""
        b_count, n, t = len(s), self.n, self.t
        chunk = max(1, rays // self.dirs.shape[-1])
        active = self.tiles(s, shadows=shade)
        counts = np.zeros((b_count, 2, SLOTS), np.int64)
        if shade:
            colour = np.broadcast_to(self.floor, (b_count,) + self.floor.shape).copy()
            cover = np.zeros((b_count, n, n, SLOTS, t, t), np.int16)
        tb, ty, tx = np.nonzero(active)
        for i in range(0, len(tb), chunk):
            tiles = tb[i:i + chunk], ty[i:i + chunk], tx[i:i + chunk]
            tile_counts, shaded = self._cast(s, tiles, shade)
            np.add.at(counts, tiles[0], tile_counts)
            if shade:
                colour[tiles], cover[tiles] = shaded
        result = Result(counts[:, 0], counts[:, 1])
        if shade:
            lin = colour.transpose(0, 1, 4, 2, 5, 3).reshape(b_count, self.size, self.size, 3)
            if gain is not None:
                lin = lin * gain.astype(F32)[:, None, None, None]
            value = np.sqrt(np.clip(lin, 0, 1)) * F32(255)
            if grain is not None:
                value = value + grain.astype(F32)
            result.images = np.clip(np.floor(value + F32(0.5)), 0, 255).astype(np.uint8)
            result.position = _positions(cover.transpose(0, 3, 1, 4, 2, 5).reshape(b_count, SLOTS, self.size, self.size))
        return result

    def _cast(self, s: Scenes, tiles: tuple[np.ndarray, np.ndarray, np.ndarray], shade: bool = True):
        """Visible and covering ray counts (m, 2, 3) of m tiles (b, y, x), and if ``shade`` their colour
        (m, 3, t, t) and rays per pixel of each object (m, 3, t, t)."""
        tile_b, ty, tx = tiles
        m, t, k = len(tile_b), self.t, self.samples
        d = self.dirs[ty, tx]
        d = (d[:, 0], d[:, 1], d[:, 2])
        best = self.t_floor[ty, tx]
        win = np.full(best.shape, NONE, np.int8)
        eye = tuple(F32(c) for c in self.view.eye)
        normal = [np.zeros_like(best), np.zeros_like(best), np.ones_like(best)]
        counts = np.zeros((m, 2, SLOTS), np.int64)
        for j, kind, rows in _groups(s, tile_b):
            dr = tuple(c[rows] for c in d)
            hit, normal_of = _intersect(kind, eye, dr, s, tile_b[rows], j)
            counts[rows, 1, j] = np.count_nonzero(hit < INF, axis=1)
            closer = hit < best[rows]
            best[rows] = np.where(closer, hit, best[rows])
            win[rows] = np.where(closer, np.int8(j), win[rows])
            if shade:
                for c, nc in zip(normal, normal_of(hit)):
                    c[rows] = np.where(closer, nc, c[rows])
        for j in range(SLOTS):
            counts[:, 0, j] = np.count_nonzero(win == j, axis=1)
        if not shade:
            return counts, None
        per_pixel = win.reshape(m, t, k, t, k).transpose(0, 1, 3, 2, 4).reshape(m, t, t, k * k)
        cover = np.stack([np.count_nonzero(per_pixel == j, axis=-1) for j in range(SLOTS)], 1)
        colour = self._shade(s, (tile_b, ty, tx), d, best, win, normal)
        colour = colour.reshape(m, 3, t, k, t, k)
        total = 0
        for a in range(k):
            for b in range(k):
                total = total + colour[:, :, :, a, :, b]
        return counts, (total * F32(1 / (k * k)), cover)

    def _shade(self, s: Scenes, tiles, d, best, win, normal) -> np.ndarray:
        """Linear RGB (m, 3, R) of each ray: Lambert key light with area-light shadows, sky fill, highlights."""
        tile_b, ty, tx = tiles
        p = [F32(e) + best * c for e, c in zip(self.view.eye, d)]
        nx, ny, nz = normal
        o = (p[0] + EPS * nx, p[1] + EPS * ny, p[2] + EPS * nz)
        light = self.light[ty, tx]
        light = (light[:, 0], light[:, 1], light[:, 2])
        lit = np.ones(best.shape, bool)
        for j, kind, rows in _groups(s, tile_b):
            hit, _ = _intersect(kind, tuple(c[rows] for c in o), tuple(c[rows] for c in light), s, tile_b[rows], j)
            lit[rows] &= (hit == INF) | (win[rows] == j)
        albedo = [np.full(best.shape, FLOOR) for _ in range(3)]
        metal = np.zeros(best.shape, bool)
        for j in range(SLOTS):
            mine = win == j
            for a in range(3):
                albedo[a] = np.where(mine, s.colour[tile_b, j, a][:, None], albedo[a])
            metal |= mine & s.metal[tile_b, j][:, None]
        lam = np.maximum(nx * light[0] + ny * light[1] + nz * light[2], 0) * lit
        v = self.view
        key, fill_gain, ambient = v.key_gain, v.fill_gain, v.ambient_gain  # 1.0 for clean images: exact products
        # floor: a broad pool of light in front of the camera, falling off towards the horizon
        fx, fy = p[0] - F32(v.pool[0]), p[1] - F32(v.pool[1])
        pool = F32(1) / (F32(1) + F32(0.006) * (fx * fx + fy * fy))
        fill = np.maximum(nx * self.fill[0] + ny * self.fill[1] + nz * self.fill[2], 0)
        sky = F32(0.28 * ambient) + F32(0.14 * ambient) * nz + F32(0.25 * fill_gain) * fill
        diffuse = np.where(win == NONE, (F32(0.55 * ambient) + F32(0.75 * key) * lam) * pool,
                           sky + F32(0.95 * key) * lam)
        if (win == NONE).all():  # only the floor: what follows adds exactly 0 to it
            return np.stack([albedo[a] * diffuse for a in range(3)], 1)
        # Blinn-Phong half vector between the view and the key light
        hx, hy, hz = light[0] - d[0], light[1] - d[1], light[2] - d[2]
        inv = F32(1) / np.sqrt(hx * hx + hy * hy + hz * hz)
        nh = np.maximum((nx * hx + ny * hy + nz * hz) * inv, 0) * lit
        # metal mirrors an environment tinted by its colour (dark floor below the horizon, bright sky above,
        # the fill light's glint) over a dim diffuse, plus a sharp white highlight
        dn = 2 * (d[0] * nx + d[1] * ny + d[2] * nz)
        r = (d[0] - dn * nx, d[1] - dn * ny, d[2] - dn * nz)
        below = np.maximum(1 + F32(3) * r[2], 0)
        env = np.where(r[2] < 0, F32(0.05) + F32(0.45) * below * below, F32(0.5) + F32(0.35) * np.minimum(r[2] * 2, 1))
        glint = np.maximum(r[0] * self.fill[0] + r[1] * self.fill[1] + r[2] * self.fill[2], 0)
        env = env * F32(ambient) + F32(1.5 * fill_gain) * _power(glint, 4)
        mirrored = self._mirrored(s, tile_b, o, r, win, metal) if v.reflections and metal.any() else None
        spec_rubber = F32(0.06 * key) * _power(nh, 3)
        spec_metal = F32(1.2 * key) * _power(nh, 6)
        out = []
        for a in range(3):
            seen = env if mirrored is None else np.where(mirrored[0], mirrored[1][a], env)
            rubber = albedo[a] * diffuse + spec_rubber * (win != NONE)
            shiny = albedo[a] * (F32(0.2) * diffuse + F32(1.2) * seen) + spec_metal
            out.append(np.where(metal, shiny, rubber))
        return np.stack(out, 1)

    def _mirrored(self, s: Scenes, tile_b, o, r, win, metal) -> tuple[np.ndarray, list[np.ndarray]]:
        """Where a metal ray's reflection ``r`` from ``o`` meets another object, and that object's colour as
        mirrored (--realistic: colour bleed on metal)."""
        nearest = np.full(win.shape, INF)
        colour = [np.zeros(win.shape, F32) for _ in range(3)]
        shiny = metal.any(1)
        for j, kind, rows in _groups(s, tile_b):
            rows = rows[shiny[rows]]
            if not rows.size:
                continue
            hit, _ = _intersect(kind, tuple(c[rows] for c in o), tuple(c[rows] for c in r), s, tile_b[rows], j)
            closer = (hit < nearest[rows]) & metal[rows] & (win[rows] != j)
            nearest[rows] = np.where(closer, hit, nearest[rows])
            for a in range(3):
                colour[a][rows] = np.where(closer, s.colour[tile_b[rows], j, a][:, None] * MIRRORED, colour[a][rows])
        return nearest < INF, colour


def _positions(cover: np.ndarray) -> np.ndarray:
    """(B, 3, 2) pixel (u, v) among the object's best-covered pixels that is nearest its centroid."""
    b, j, h, w = cover.shape
    v, u = np.mgrid[0:h, 0:w]
    weight = cover.sum((2, 3))
    safe = np.maximum(weight, 1)
    cu = (cover * u).sum((2, 3)) / safe
    cv = (cover * v).sum((2, 3)) / safe
    top = cover.max((2, 3), keepdims=True)
    dist = (u - cu[..., None, None]) ** 2 + (v - cv[..., None, None]) ** 2
    dist = np.where((cover == top) & (top > 0), dist, np.inf).reshape(b, j, -1)
    flat = dist.argmin(-1)
    return np.stack([flat % w, flat // w], -1)


@lru_cache(maxsize=4)
def renderer(size: int, samples: int) -> Renderer:
    """A cached renderer: building the tables once per process and size."""
    return Renderer(size, samples)
