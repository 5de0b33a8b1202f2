"""Light, sky and ground: the time-of-day presets and the procedural ground textures.

Colours are display values in [0, 1] (no gamma step), which keeps a named colour's hue exact under the
white noon light. Light tints at sunset and night are kept moderate so the twelve named colours stay
apart; night is moonlit and darker, not black.
"""

from __future__ import annotations

import math

import numpy as np
import torch

# Per time of day: direction toward the sun (or moon), its colour, hemispheric ambient, sky zenith and
# horizon colours (the horizon colour is also the fog colour).
LIGHTS: dict[str, dict[str, tuple[float, float, float]]] = {
    "morning": {"sun": (-0.75, 0.42, 0.45), "sun_rgb": (0.95, 0.88, 0.74), "ambient": (0.40, 0.42, 0.48),
                "zenith": (0.34, 0.55, 0.86), "horizon": (0.93, 0.86, 0.72)},
    "noon": {"sun": (0.3, 1.0, 0.35), "sun_rgb": (0.80, 0.80, 0.80), "ambient": (0.42, 0.42, 0.42),
             "zenith": (0.18, 0.42, 0.88), "horizon": (0.70, 0.82, 0.95)},
    "sunset": {"sun": (0.85, 0.22, -0.45), "sun_rgb": (0.98, 0.70, 0.46), "ambient": (0.36, 0.32, 0.42),
               "zenith": (0.22, 0.20, 0.46), "horizon": (1.00, 0.56, 0.30)},
    "night": {"sun": (-0.45, 0.75, -0.35), "sun_rgb": (0.50, 0.56, 0.74), "ambient": (0.22, 0.24, 0.34),
              "zenith": (0.01, 0.02, 0.07), "horizon": (0.10, 0.13, 0.24)},
}  # fmt: skip
GROUND_IDS = {"checker": 0, "grass": 1, "sand": 2, "tiles": 3, "wood": 4}
FOG_DISTANCE = 45.0  # metres at which fog reaches 1 - 1/e
METAL_DIFFUSE = 0.25  # share of the diffuse light a shiny (metal) surface keeps
METAL_GAIN = 1.3  # mirrored brightness to light: the noon sky's horizon (luminance 0.81) gives 1.05
LUMA = (0.2126, 0.7152, 0.0722)  # Rec. 709 luminance weights


def light_array(time_of_day: str) -> np.ndarray:
    """light_tensors as a read-only float32 array, made once per time of day (the renderer packs one
    per clip)."""
    if time_of_day not in _LIGHT_ARRAYS:
        _LIGHT_ARRAYS[time_of_day] = light_tensors(time_of_day).numpy()
        _LIGHT_ARRAYS[time_of_day].setflags(write=False)
    return _LIGHT_ARRAYS[time_of_day]


_LIGHT_ARRAYS: dict[str, np.ndarray] = {}


def light_tensors(time_of_day: str) -> torch.Tensor:
    """(15,) float: sun direction (unit), sun colour, ambient, zenith, horizon for `time_of_day`."""
    p = LIGHTS[time_of_day]
    sun = torch.tensor(p["sun"], dtype=torch.float64)
    parts = [sun / sun.norm()] + [torch.tensor(p[k], dtype=torch.float64) for k in ("sun_rgb", "ambient")]
    parts += [torch.tensor(p[k], dtype=torch.float64) for k in ("zenith", "horizon")]
    return torch.cat(parts).float()


def hash2(ix: torch.Tensor, iz: torch.Tensor, seed: torch.Tensor) -> torch.Tensor:
    """Deterministic integer hash of a lattice point to [0, 1); int64 wrap-around is the same on CPU
    and CUDA."""
    h = ix * 374761393 + iz * 668265263 + seed * 1442695041
    h = (h ^ (h >> 13)) * 1274126177
    h = h ^ (h >> 16)
    return (h & 0xFFFF).float() / 65536.0


def value_noise(x: torch.Tensor, z: torch.Tensor, seed: int, period: int) -> torch.Tensor:
    """Smooth value noise in [0, 1) with unit lattice spacing, periodic with `period` cells."""
    x0, z0 = torch.floor(x), torch.floor(z)
    fx, fz = x - x0, z - z0
    fx, fz = fx * fx * (3 - 2 * fx), fz * fz * (3 - 2 * fz)
    ix, iz = x0.long() % period, z0.long() % period
    jx, jz = (ix + 1) % period, (iz + 1) % period
    s = torch.full_like(ix, seed)
    a, b = hash2(ix, iz, s), hash2(jx, iz, s)
    c, d = hash2(ix, jz, s), hash2(jx, jz, s)
    return torch.lerp(torch.lerp(a, b, fx), torch.lerp(c, d, fx), fz)


TILE = 8.0  # metres covered by one texture tile (it repeats); every pattern period divides it
TEXELS = 512  # texels per tile side: 1.6 cm each
BLUR = 8  # texels averaged for the coarse level (12.5 cm)


def _mix(a: tuple[float, float, float], b: tuple[float, float, float], w: torch.Tensor) -> torch.Tensor:
    """Per-point blend (..., 3) between two colours, w in [0, 1] of shape (...)."""
    ta = torch.tensor(a)
    return ta + w[..., None] * (torch.tensor(b) - ta)


def _checker(x, z):
    odd = ((torch.floor(x) + torch.floor(z)) % 2).float()
    return _mix((0.80, 0.80, 0.78), (0.34, 0.35, 0.38), odd)


def _grass(x, z):
    coarse = value_noise(x * 0.75, z * 0.75, 1, 6)
    fine = value_noise(x * 6.0, z * 6.0, 2, 48)
    blade = hash2((x * 64).long(), (z * 64).long(), torch.full_like(x.long(), 3))
    w = 0.55 * coarse + 0.3 * fine + 0.15 * blade
    return _mix((0.16, 0.36, 0.08), (0.44, 0.64, 0.20), w)


def _sand(x, z):
    warp = value_noise(x * 0.5, z * 0.5, 4, 4)
    ripple = 0.5 + 0.5 * torch.sin(z * (2 * math.pi * 6 / TILE) + 3.0 * warp)
    grain = hash2((x * 64).long(), (z * 64).long(), torch.full_like(x.long(), 5))
    w = 0.5 * ripple + 0.35 * warp + 0.15 * grain
    return _mix((0.70, 0.58, 0.38), (0.92, 0.82, 0.60), w)


def _tiles(x, z):
    size = 0.8
    tx, tz = torch.floor(x / size), torch.floor(z / size)
    shade = hash2(tx.long() % 10, tz.long() % 10, torch.full_like(tx.long(), 6))
    gx, gz = x / size - tx, z / size - tz
    grout = ((gx < 0.05) | (gz < 0.05)).float()
    tile = _mix((0.62, 0.32, 0.22), (0.80, 0.46, 0.32), shade)
    return torch.lerp(tile, torch.tensor([0.84, 0.80, 0.72]).expand_as(tile), grout[..., None])


def _wood(x, z):
    plank = 0.5
    row = torch.floor(z / plank)
    shade = hash2(row.long() % 16, torch.full_like(row.long(), 3), torch.full_like(row.long(), 7))
    grain = value_noise(x * 1.5, z * 12.0, 8, 12 * 8)
    w = 0.55 * shade + 0.45 * grain
    base = _mix((0.40, 0.24, 0.12), (0.66, 0.44, 0.24), w)
    gap = ((z / plank - row) < 0.04).float()
    return base * (1.0 - 0.6 * gap[..., None])


_TEXTURES = {"checker": _checker, "grass": _grass, "sand": _sand, "tiles": _tiles, "wood": _wood}
_CACHE: dict[str, tuple[torch.Tensor, torch.Tensor, set[str]]] = {}


def _box_blur(image: torch.Tensor, width: int) -> torch.Tensor:
    """Box blur (1, C, S, S) -> same shape over a `width` x `width` window, wrapping around (the tile
    repeats); separable, so it costs 2 * width taps per texel instead of width^2."""
    pad = torch.nn.functional.pad(image, (width // 2,) * 4, mode="circular")
    rows = torch.nn.functional.avg_pool2d(pad, (1, width), stride=1)
    return torch.nn.functional.avg_pool2d(rows, (width, 1), stride=1)


def ground_texture(kind: str, device: torch.device | str) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(fine, coarse, mean) for ground `kind`: two (1, 3, TEXELS + 2, TEXELS + 2) images of one tile
    padded by one wrapped texel (so bilinear lookups have no seam) and the mean colour (3,). The coarse
    level is a box blur used where the fine level would alias."""
    atlas, means = ground_atlas(device, (kind,))
    size, gid = TEXELS + 2, GROUND_IDS[kind]
    tile = atlas[:, :, gid * size : (gid + 1) * size].contiguous()
    return tile[:, :3], tile[:, 3:], means[gid]


def ground_atlas(device: torch.device | str, kinds=None) -> tuple[torch.Tensor, torch.Tensor]:
    """(atlas (1, 6, G * (TEXELS + 2), TEXELS + 2), means (G, 3)) for the G ground kinds, stacked
    along the image height in GROUND_IDS order; channels 0-2 are the fine level, 3-5 the coarse one.
    One image for all kinds and both levels lets the renderer texture every ground pixel of a batch
    with a single grid_sample. Kept per device; the tiles of `kinds` (default: all) are made on first
    use, the others stay zero until asked for."""
    key = str(torch.empty(0, device=device).device)  # "cuda" -> "cuda:0", as tensors report it
    if key not in _CACHE:
        size = TEXELS + 2
        # Channels last: the six values a bilinear tap reads sit together in memory (2x faster on CPU).
        atlas = torch.zeros(1, 6, len(GROUND_IDS) * size, size, device=device)
        atlas = atlas.contiguous(memory_format=torch.channels_last)
        _CACHE[key] = (atlas, torch.zeros(len(GROUND_IDS), 3, device=device), set())
    atlas, means, made = _CACHE[key]
    for kind in set(GROUND_IDS if kinds is None else kinds) - made:
        fine, mean = _tile(kind)
        gid, size = GROUND_IDS[kind], TEXELS + 2
        atlas[:, :, gid * size : (gid + 1) * size] = fine.to(atlas.device)
        means[gid] = mean.to(means.device)
        made.add(kind)
    return atlas, means


def _tile(kind: str) -> tuple[torch.Tensor, torch.Tensor]:
    """One padded tile (1, 6, TEXELS + 2, TEXELS + 2) (fine and blurred levels) and its mean (3,)."""
    c = (torch.arange(TEXELS, dtype=torch.float32) + 0.5) * (TILE / TEXELS)
    z, x = torch.meshgrid(c, c, indexing="ij")
    fine = _TEXTURES[kind](x, z).permute(2, 0, 1)[None]  # (1, 3, S, S), rows are z
    both = torch.cat([fine, _box_blur(fine, BLUR + 1)], dim=1)
    return torch.nn.functional.pad(both, (1, 1, 1, 1), mode="circular"), fine.mean(dim=(0, 2, 3))


def ground_albedo(
    x: torch.Tensor, z: torch.Tensor, footprint: torch.Tensor, kind: torch.Tensor
) -> torch.Tensor:
    """Albedo (3, ...) (channels first) of the ground at world points (x, z) (...), each seen by a
    pixel covering `footprint` metres, `kind` (a GROUND_IDS value, broadcastable to x): the fine texture
    close by, its blur further away, its mean colour at the horizon (a two-level mip map, so distant
    ground does not shimmer). The kinds used must have been made with ground_atlas first."""
    atlas, means = ground_atlas(x.device, ())  # the tiles of the kinds in use: see render()
    size, kinds = TEXELS + 2, atlas.shape[2] // (TEXELS + 2)
    # Texel coordinates inside the padded tile (offset by the tile's place in the atlas), mapped to
    # grid_sample's [-1, 1] (align_corners=False).
    u = (torch.remainder(x, TILE) * (TEXELS / TILE) + 1.0) * (2.0 / size) - 1.0
    v = (torch.remainder(z, TILE) * (TEXELS / TILE) + 1.0 + kind * size) * (2.0 / (size * kinds)) - 1.0
    grid = torch.stack(torch.broadcast_tensors(u, v), dim=-1).reshape(1, 1, -1, 2)
    both = torch.nn.functional.grid_sample(atlas, grid, mode="bilinear", align_corners=False)
    both = both.view(6, *x.shape)  # fine rgb, coarse rgb
    w_fine = (1.5 - footprint / (2 * TILE / TEXELS)).clamp(0, 1)
    w_coarse = (1.5 - footprint / (0.35)).clamp(0, 1)
    mean = means[kind].movedim(-1, 0)  # (3, ...) broadcastable
    return torch.lerp(mean.expand_as(both[3:]), torch.lerp(both[3:], both[:3], w_fine), w_coarse)


def sky(d: torch.Tensor, light: torch.Tensor, night: torch.Tensor, stars: bool = True) -> torch.Tensor:
    """Sky colour (..., 3) for unit view directions `d` (..., 3), light (..., 15) and night flag (...)
    broadcastable to them: a horizon-to-zenith gradient, a sun (or moon) disc with glow, stars at night.
    `stars=False` skips the star field (the caller knows no direction is at night)."""
    sun, sun_rgb, zenith, horizon = light[..., 0:3], light[..., 3:6], light[..., 9:12], light[..., 12:15]
    up = d[..., 1:2].clamp_min(0.0).sqrt()
    colour = torch.lerp(horizon.expand_as(d), zenith.expand_as(d), up)
    cos_sun = (d * sun).sum(-1, keepdim=True).clamp_min(0.0)
    disc = ((cos_sun - 0.9993) * 4000).clamp(0, 1)
    glow = cos_sun**48 * torch.where(night[..., None], 0.1, 0.35)
    colour = colour + glow * sun_rgb + disc * (0.9 + 0.1 * sun_rgb - colour)
    if not stars:
        return colour
    cell = torch.floor(d * 300.0).long()
    star = hash2(cell[..., 0] * 977 + cell[..., 2], cell[..., 1], torch.zeros_like(cell[..., 0])) > 0.996
    star = star & night & (d[..., 1] > 0.05)
    return colour + star[..., None].float() * 0.7


def fog(colour: torch.Tensor, dist: torch.Tensor, horizon: torch.Tensor) -> torch.Tensor:
    """Blend toward the horizon colour with distance (...), which also hides the horizon's aliasing."""
    w = 1.0 - torch.exp(-((dist / FOG_DISTANCE) ** 2))
    return colour + w[..., None] * (horizon - colour)


def surface(albedo, n, sun_vis, light, shiny, view, env) -> torch.Tensor:
    """Lit colour (..., 3): the object's colour times hemispheric ambient + Lambert sun light (times
    shadow visibility `sun_vis`). Where `shiny` > 0 a metal tinted by that colour instead: METAL_DIFFUSE
    of the diffuse light plus (1 - METAL_DIFFUSE) * METAL_GAIN * `env` (...), the brightness of what the
    surface mirrors (the sky or the ground, see render._reflected), so its hue stays the named colour's
    while its brightness follows the mirrored world, plus a Blinn-Phong highlight of the sun. `view`
    points from the surface to the eye; `light` is broadcastable (..., 15)."""
    sun, sun_rgb, ambient = light[..., 0:3], light[..., 3:6], light[..., 6:9]
    ndl = (n * sun).sum(-1).clamp_min(0.0) * sun_vis
    sky_light = ambient * (0.7 + 0.3 * n[..., 1:2])
    diffuse = sky_light + ndl[..., None] * sun_rgb
    metal = (1.0 - METAL_DIFFUSE) * (METAL_GAIN * env[..., None] - diffuse)
    diffuse = diffuse + shiny[..., None] * metal
    half = torch.nn.functional.normalize(sun + view, dim=-1)
    spec = (n * half).sum(-1).clamp_min(0.0) ** 60 * sun_vis * shiny
    return albedo * diffuse + 0.9 * spec[..., None] * sun_rgb


def elevation_degrees(time_of_day: str) -> float:
    """Elevation of the sun (or moon) above the horizon, for captions and tests."""
    s = LIGHTS[time_of_day]["sun"]
    return math.degrees(math.atan2(s[1], math.hypot(s[0], s[2])))
