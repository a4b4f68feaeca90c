"""Whitted-style renderer: primary rays, shadow rays, mirror reflections.

All rays of the image are traced together as one batch in structure-of-arrays
form (see `_geometry`): each stage is elementwise over arrays with the pixels
on the last axis, and each group of objects (one kind, stacked) is
intersected by its own `intersect` method, broadcasting the rays against its
object axis.  There is no Python loop over pixels or objects; the only
Python loops are over the object groups, the lights and the static
reflection depth.

Performance notes (XLA on CPU fuses elementwise code into loops and
recomputes cheap producers inside every loop that reads them; a reduction's
result is always stored):
- The nearest hit is picked by one variadic reduction over the candidates
  (`_nearest`), so shading and its reverse-mode kernels read the chosen point
  and normal instead of recomputing every object's intersection.
- Shading terms are summed by a reduction (`_sum`), so the channels of the
  (H, W, 3) image are computed once, not once per interleaved output element.
- Per-object values (materials) are broadcast per object, not gathered per
  pixel, and picked with selects (`_pick`), whose reverse mode is selects.

Soft visibility (softness > 0, world units, a traced value): each analytic
object with a silhouette (sphere, triangle) covers a ray with a coverage
alpha that ramps from 0 to 1 across a band of half-width `softness` around
its silhouette; the camera ray's colour is the front-to-back composite of all
candidates, and a shadow ray's transmittance is the product of (1 - alpha) of
the occluders.  As softness -> 0 this is the hard render; for softness > 0 it
is differentiable w.r.t. edge positions.  Meshes ramp their coverage inside
their silhouette edges (see `Mesh`).  Mirror rays keep hard visibility unless
`soft_mirrors=True` (costlier: see `render`).

Self-intersection: secondary rays start `hit_offset` (relative to the hit
point's size and distance, see `_geometry`) off the surface and ignore hits
nearer than that, so renders do not depend on the scene's scale.
"""
from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

from ._geometry import Layer, Vec3, cross, dot, hit_offset, safe_normalize, safe_pow, vwhere


def _layers(scene, o, d, tmin, softness):
    """All candidate surfaces along the rays, one Layer (K, *S) per object group."""
    return [g.intersect(o, d, tmin, softness) for g in scene.groups]


def _transmittance(scene, o, l, tmin, tmax, softness):
    """Fraction of light reaching o from direction l over distance tmax."""
    trans = jnp.ones((), o.x.dtype)
    for g in scene.groups:
        trans = trans * g.occlude(o, l, tmin, tmax, softness)
    return trans


def _shade(scene, lay, d, bounces, softness, soft_mirrors=False):
    """Radiance (Vec3) leaving the surfaces `lay` towards -d."""
    m = lay.mat
    color = m.color
    p, n = lay.point, lay.normal
    # Secondary rays start slightly off the surface, on the viewer's side.
    eps = hit_offset(p, lay.depth)
    po = p + n * eps
    terms = [color * m.ambient]
    # A static loop over the (few) lights keeps each light's work elementwise.
    for light in scene.lights:
        l, dist, irradiance = light.illuminate(p)
        vis = _transmittance(scene, po, l, eps, dist, softness)
        ndl = dot(n, l)
        lit = ndl > 0
        h = safe_normalize(l - d)
        spec = safe_pow(jnp.maximum(dot(n, h), 0.0), m.shininess) * lit
        terms.append(irradiance * (color * (m.diffuse * jnp.maximum(ndl, 0.0)) + m.specular * spec) * vis)
    if bounces > 0:
        r = d - n * (2.0 * dot(d, n))
        mirror_softness = softness if soft_mirrors else None
        terms.append(_radiance(scene, po, r, eps, bounces - 1, mirror_softness, soft_mirrors) * m.reflection)
    return _sum(terms)


def _sum(terms):
    """Sum of Vec3 terms, as one reduction over a stacked (T, 3, *S) array.

    XLA stores a reduction's result, so the channels are computed once, as
    planes; summed with adds, the whole shading would be fused into the copy
    that interleaves the channels into the (H, W, 3) image, and run three
    times per pixel, element by element (several times slower)."""
    stacked = jnp.stack([jnp.stack(jnp.broadcast_arrays(t.x, t.y, t.z)) for t in terms])
    total = jnp.sum(stacked, axis=0)
    return Vec3(total[0], total[1], total[2])


def _pick(x, k):
    """x[k] along the leading (object) axis of x (K, ...), for an int array k
    that broadcasts against x[0]; out of range: x[0].

    A chain of selects: elementwise, so it fuses into the per-pixel code, and
    its reverse mode is selects too, where a gather would scatter."""
    out = x[0]
    for j in range(1, x.shape[0]):
        out = jnp.where(k == j, x[j], out)
    return out


@jax.custom_jvp
def _nearest(depth, payload):
    """Index i of the smallest depth along axis 0 (first one on ties, like
    argmin) and the payload's (K, *S) leaves at i, in one variadic reduction.

    XLA stores a reduction's results; the per-pixel code after it (shading and
    each of its reverse-mode kernels) then reads the chosen point and normal
    instead of recomputing every object's intersection in every kernel.
    Differentiable in the payload (custom JVP); the choice itself is not."""
    leaves, tree = jax.tree_util.tree_flatten(payload)
    index = jax.lax.broadcasted_iota(jnp.int32, depth.shape, 0)

    def nearer(a, b):
        first = (a[0] < b[0]) | ((a[0] == b[0]) & (a[1] < b[1]))
        return tuple(jnp.where(first, x, y) for x, y in zip(a, b))

    init = (jnp.asarray(jnp.inf, depth.dtype), jnp.int32(depth.shape[0]),
            *(jnp.zeros((), x.dtype) for x in leaves))
    _, i, *picked = jax.lax.reduce((depth, index, *leaves), init, nearer, (0,))
    return i, jax.tree_util.tree_unflatten(tree, picked)


@_nearest.defjvp
def _nearest_jvp(primals, tangents):
    i, out = _nearest(*primals)
    # The choice is discrete: tangents follow the chosen candidate.  A masked
    # sum, whose transpose (reverse mode) is a single select per field.
    chosen = jax.lax.broadcasted_iota(jnp.int32, primals[0].shape, 0) == i

    def pick(t):
        return jnp.sum(jnp.where(chosen, t, 0), axis=0)

    t_out = jax.tree_util.tree_map(pick, tangents[1])
    return (i, out), (np.zeros(i.shape, jax.dtypes.float0), t_out)


def _concat(layers):
    return jax.tree_util.tree_map(lambda *xs: jnp.concatenate(xs), *layers)


def _closest(scene, o, d, tmin):
    """The nearest surface along each ray (hard visibility), a Layer of fields S."""
    lay = _concat(_layers(scene, o, d, tmin, None))
    key = jnp.where(lay.alpha > 0, lay.depth, jnp.inf)
    i, (depth, alpha, point, normal) = _nearest(key, (lay.depth, lay.alpha, lay.point, lay.normal))
    # Materials are per-object values broadcast over the rays: cheap to select.
    mat = jax.tree_util.tree_map(lambda x: _pick(x, i), lay.mat)
    return Layer(depth, alpha, point, normal, mat)


def _radiance(scene, o, d, tmin, bounces, softness, soft_mirrors=False):
    """Radiance (Vec3) arriving at o from direction -d, for a batch of rays.

    softness None: hard visibility; else a traced half-width (world units).
    soft_mirrors: mirror rays composite their candidates softly too (each bounce
    multiplies the candidates shaded per ray by their number)."""
    background = Vec3.of(scene.background.astype(o.x.dtype))
    if softness is None:
        one = _closest(scene, o, d, tmin)
        return vwhere(one.alpha > 0, _shade(scene, one, d, bounces, softness), background)
    lay = _concat(_layers(scene, o, d, tmin, softness))
    present = lay.alpha > 0
    alpha = jnp.where(present, lay.alpha, 0.0)
    depth = jnp.where(present, lay.depth, jnp.inf)
    colors = _shade(scene, lay, d, bounces, softness, soft_mirrors)
    # Front-to-back compositing of the K candidates without sorting them:
    # candidate k is seen through every candidate in front of it (nearer, or
    # as near and listed first), the background through all of them.
    order = jax.lax.broadcasted_iota(jnp.int32, depth.shape, 0)
    out = background * jnp.prod(1.0 - alpha, axis=0)
    for k in range(depth.shape[0]):
        front = (depth < depth[k]) | ((depth == depth[k]) & (order < k))
        seen = jnp.prod(jnp.where(front, 1.0 - alpha, 1.0), axis=0)
        out = out + colors.map(lambda x: x[k]) * (alpha[k] * seen)  # noqa: B023
    return out


def _sample_offsets(spp):
    """Deterministic sub-pixel offsets (spp, 2) in [0, 1)^2 that average to the
    pixel centre exactly: the centre for one sample, else spp // 2 points of
    the R2 low-discrepancy sequence and their reflections through the centre
    (plus the centre itself for odd spp).  An uncentred R2 set averaged
    (-0.12, -0.15) px off at spp 4 and made spp 4 less accurate than spp 1
    against a pixel-averaged reference (1.21e-3 vs 9.0e-4 mean error)."""
    g = 1.32471795724474602596  # plastic number
    k = np.arange(1, spp // 2 + 1)[:, None]
    half = np.mod(0.5 + k * np.array([1 / g, 1 / g**2]), 1.0)
    centre = np.full((spp % 2, 2), 0.5)
    return np.concatenate([centre, half, 1.0 - half])


def _camera_rays(cam, spp):
    """Ray origins and unit directions, Vec3s of shape (height, width, spp)."""
    dtype = jnp.result_type(cam.lookfrom, cam.lookat, cam.vup, cam.vfov)
    look = lambda v: Vec3.of(jnp.asarray(v, dtype))  # noqa: E731
    fwd = safe_normalize(look(cam.lookat) - look(cam.lookfrom))
    right = safe_normalize(cross(fwd, look(cam.vup)))
    up = cross(right, fwd)
    half_h = jnp.tan(jnp.deg2rad(cam.vfov) / 2)
    half_w = half_h * cam.width / cam.height
    off = jnp.asarray(_sample_offsets(spp), dtype)
    cols = jnp.arange(cam.width, dtype=dtype)[None, :, None] + off[None, None, :, 0]
    rows = jnp.arange(cam.height, dtype=dtype)[:, None, None] + off[None, None, :, 1]
    x = (2 * cols / cam.width - 1) * half_w
    y = (1 - 2 * rows / cam.height) * half_h
    dirs = safe_normalize(fwd + right * x + up * y)
    origins = look(cam.lookfrom).map(lambda c: jnp.broadcast_to(c, dirs.x.shape))
    return origins, dirs


def camera_rays(cam, spp=1):
    """Ray origins and unit directions, each (height, width, spp, 3)."""
    return tuple(v.stack() for v in _camera_rays(cam, spp))


@functools.partial(jax.jit, static_argnames=("soft", "spp", "max_bounces", "soft_mirrors"))
def _render(scene, cam, softness, soft, spp, max_bounces, soft_mirrors):
    # The camera's float dtype is the image's; scene values given as Python
    # numbers (float64 under x64) would otherwise promote a float32 render.
    dtype = jnp.result_type(cam.lookfrom, cam.lookat, cam.vup, cam.vfov)
    scene = jax.tree_util.tree_map(
        lambda x: x.astype(dtype) if jnp.issubdtype(x.dtype, jnp.floating) else x, scene
    )
    o, d = _camera_rays(cam, spp)
    shape = d.x.shape
    o, d = (v.map(lambda x: x.reshape(-1)) for v in (o, d))
    tmin = hit_offset(o, jnp.zeros((), dtype))
    col = _radiance(scene, o, d, tmin, max_bounces, softness if soft else None, soft_mirrors)
    col = col.map(lambda x: x.reshape(shape).mean(axis=2))
    return col.stack()


def render(scene, cam, *, softness=0.0, spp=1, max_bounces=2, soft_mirrors=False):
    """Render `scene` seen by `cam` to a (height, width, 3) linear RGB image.

    softness: half-width (world units) of smooth visibility at silhouettes and
        shadow edges of spheres, triangles and meshes; 0 gives hard edges.  A traced
        value (changing it does not recompile; only 0 versus nonzero does).
        Use > 0 to differentiate w.r.t. geometry whose edges move, or a light
        position that moves shadows.  What works is about 0.25-0.75 of a
        pixel's footprint at the edge (`cam.pixel_size(distance)`): measured
        1-5% gradient error against supersampled finite differences; larger
        values are biased (15-27% at a few pixels).
    spp: samples per pixel (deterministic, centred low-discrepancy sub-pixel offsets).
    max_bounces: mirror-reflection depth (0: no reflection rays).
    soft_mirrors: with softness > 0, mirror rays get soft visibility too, so that
        gradients see silhouettes and shadow edges move in reflections. Off by
        default: each bounce shades every candidate surface of every candidate of
        the bounce before (K objects, max_bounces 2: up to K^3 shadings per pixel,
        where hard mirrors shade K + 2).

    jit-compiled; differentiable (jax.grad, jax.jacfwd) in every float field of
    scene and camera (use equinox.filter_grad for a whole Scene: meshes hold
    integer faces).  The image has the camera's float dtype (float32 or
    float64); scene values are cast to it.
    """
    s = np.asarray(softness) if not isinstance(softness, jax.core.Tracer) else None
    if s is not None and not (s.shape == () and np.isfinite(s) and s >= 0):
        raise ValueError(f"softness must be a finite number >= 0 (world units), got {softness}")
    soft = s is None or float(s) > 0
    if int(spp) != spp or spp < 1:
        raise ValueError(f"spp must be a positive integer, got {spp}")
    if int(max_bounces) != max_bounces or max_bounces < 0:
        raise ValueError(f"max_bounces must be a non-negative integer, got {max_bounces}")
    # A fixed dtype, not weakly typed: every softness value hits one compiled render.
    dtype = jnp.result_type(cam.lookfrom, cam.lookat, cam.vup, cam.vfov)
    if not isinstance(soft_mirrors, bool):
        raise TypeError(f"soft_mirrors must be True or False, got {soft_mirrors!r}")
    return _render(scene, cam, jnp.asarray(softness, dtype), soft, int(spp), int(max_bounces), soft_mirrors)
