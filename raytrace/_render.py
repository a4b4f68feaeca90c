"""Whitted-style renderer: primary rays, shadow rays, mirror reflections.

All rays of the image are traced together as one batch in structure-of-arrays
form (see `_geometry`): each stage is elementwise over arrays with the pixels
on the last axis, and each object kind is intersected by broadcasting the
rays against its packed arrays (object axis first).  There is no Python loop
over pixels or objects; the only Python loops are over the lights and the
static reflection depth.

Performance notes (XLA on CPU fuses elementwise code into loops and
recomputes cheap producers inside every loop that reads them; a reduction's
result is always stored):
- The nearest hit is picked by one variadic reduction over the candidates
  (`_nearest`), so shading and its reverse-mode kernels read the chosen point
  and normal instead of recomputing every object's intersection.
- Shading terms are summed by a reduction (`_sum`), so the channels of the
  (H, W, 3) image are computed once, not once per interleaved output element.
- Per-object values (materials) are looked up per object, not per pixel, and
  picked with selects (`_pick`), whose reverse mode is selects, not scatters.

Soft visibility (softness > 0, world units): each analytic object (sphere,
triangle, plane) covers a ray with a coverage alpha that ramps from 0 to 1
across a band of half-width `softness` around its silhouette; the camera ray's
colour is the front-to-back composite of all objects, and a shadow ray's
transmittance is the product of (1 - alpha) of the occluders.  As softness -> 0
this is the hard render; for softness > 0 it is differentiable w.r.t. edge
positions.  Mirror rays and meshes keep hard visibility.
"""
from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

from . import _bvh
from ._geometry import (
    EPS,
    Layer,
    Surface,
    Vec3,
    cross,
    dot,
    plane_layer,
    safe_norm,
    safe_normalize,
    safe_pow,
    sphere_layer,
    triangle_layer,
    vwhere,
)

# Rays are traced in chunks so that the BVH while_loop of a chunk only waits
# for the slowest ray of that chunk, not of the whole image.
BVH_CHUNK = 2048


def _surface(materials, index):
    """The materials' fields at an int array of (valid) material indices."""
    take = lambda x: jnp.take(x, index, axis=0, mode="clip")  # noqa: E731
    m = materials
    return Surface(Vec3.of(take(m.color)), take(m.ambient), take(m.diffuse), take(m.specular),
                   take(m.shininess), take(m.reflection))


def _ray_shape(o, d):
    """Batch shape S of rays (origins and directions may be broadcast, e.g. the
    one direction of a distant light's shadow rays)."""
    return jnp.broadcast_shapes(*(jnp.shape(x) for x in (o.x, o.y, o.z, d.x, d.y, d.z)))


def _kinds(scene):
    """(layer function, packed objects) of each analytic object kind present."""
    kinds = ((sphere_layer, scene.spheres), (triangle_layer, scene.triangles), (plane_layer, scene.planes))
    return [(layer, pack) for layer, pack in kinds if pack is not None]


def _objects(scene, pack):
    """A kind's per-object geometry arguments and materials, leaves (K,).

    Looking materials up per object (not per pixel) keeps gathers out of the
    per-pixel code."""
    arrays = [Vec3.of(x) if x.ndim == 2 else x for x in pack.arrays]
    return (*arrays, _surface(scene.materials, pack.mat))


def _analytic_layers(scene, o, d, softness):
    """Layers of spheres, single triangles and planes: one Layer per kind,
    fields (K, *S) for a ray batch of shape S."""
    # Object axis first, then the rays' axes.  Broadcast explicitly, once: in
    # reverse mode each field's cotangent is then summed over the rays by one
    # reduction, not by one per use of the field (each a separate kernel).
    shape = _ray_shape(o, d)

    def expand(x):  # (K,) -> (K, *S)
        return jnp.broadcast_to(x.reshape(x.shape + (1,) * len(shape)), x.shape + shape)

    return [layer(o, d, *jax.tree_util.tree_map(expand, _objects(scene, pack)), softness)
            for layer, pack in _kinds(scene)]


def _layers(scene, boxes, o, d, softness):
    """All candidate surfaces along the rays, one Layer per object kind."""
    out = _analytic_layers(scene, o, d, softness)
    if scene.mesh is not None:
        out.append(_mesh_layer(scene, boxes, o, d))
    return out


def _mesh_index(scene, boxes, o, d, tmax, any_hit):
    """Index of the mesh triangle hit within (EPS, tmax) along each ray, or -1.

    The BVH code traces one ray at a time (arrays (3,)); vmap runs it over the
    flattened batch.  No gradient flows through the index."""
    a, b, c = scene.mesh.arrays
    shape = _ray_shape(o, d)
    o, d = (v.map(lambda x: jnp.broadcast_to(x, shape)).stack().reshape(-1, 3) for v in (o, d))
    tmax = jnp.broadcast_to(jax.lax.stop_gradient(tmax), shape).reshape(-1)
    if scene.bvh is not None:
        fn = functools.partial(_bvh.traverse, scene.bvh, boxes, a, b, c, any_hit=any_hit)
    else:
        fn = functools.partial(_bvh.brute_force, a, b, c)
    return jax.vmap(fn)(o, d, tmax).reshape(shape)


def _mesh_layer(scene, boxes, o, d):
    i = _mesh_index(scene, boxes, o, d, jnp.inf, any_hit=False)
    found = i >= 0
    k = jnp.maximum(i, 0)
    a, b, c = (Vec3.of(x[k]) for x in scene.mesh.arrays)
    # Recomputed from the hit triangle's vertices so that depth, point and
    # normal carry gradients; visibility itself stays the discrete BVH answer.
    lay = triangle_layer(o, d, a, b, c, _surface(scene.materials, scene.mesh.mat[k]), 0.0)
    lay = lay._replace(alpha=found.astype(lay.depth.dtype))
    return jax.tree_util.tree_map(lambda x: x[None], lay)


def _transmittance(scene, boxes, o, l, tmax, softness):
    """Fraction of light reaching o from direction l over distance tmax."""
    trans = jnp.ones((), o.x.dtype)
    layers = _analytic_layers(scene, o, l, softness)
    if layers:
        # One product over all occluders: a reduction, whose result XLA
        # stores instead of recomputing every shadow ray's intersections in
        # each kernel that reads the visibility.
        alpha = jnp.concatenate([lay.alpha * (lay.depth < tmax) for lay in layers])
        trans = jnp.prod(1.0 - alpha, axis=0)
    if scene.mesh is not None:
        blocked = _mesh_index(scene, boxes, o, l, tmax, any_hit=True) >= 0
        trans = trans * (1.0 - blocked.astype(o.x.dtype))
    return trans


def _shade(scene, boxes, lay, d, bounces, softness):
    """Radiance (Vec3) leaving the surfaces `lay` towards -d."""
    m = lay.mat
    color = m.color
    p, n = lay.point, lay.normal
    # Secondary rays start slightly off the surface, on the viewer's side.
    po = p + n * EPS
    terms = [color * m.ambient]

    def direct(l, dist, irradiance):
        vis = _transmittance(scene, boxes, po, l, dist, softness)
        ndl = dot(n, l)
        lit = ndl > 0
        h = safe_normalize(l - d)
        spec = safe_pow(jnp.maximum(dot(n, h), 0.0), m.shininess) * lit
        return irradiance * (color * (m.diffuse * jnp.maximum(ndl, 0.0)) + m.specular * spec) * vis

    # A static loop over the (few) lights keeps each light's work elementwise.
    if scene.point_lights is not None:
        for pos, inten, lcol in zip(*scene.point_lights):
            to = Vec3.of(pos) - p
            dist = safe_norm(to)
            l = to / jnp.where(dist > 0, dist, 1.0)
            irr = Vec3.of(lcol) * (inten / (4.0 * jnp.pi * jnp.where(dist > 0, dist * dist, 1.0)))
            terms.append(direct(l, dist, irr))
    if scene.distant_lights is not None:
        for direction, inten, lcol in zip(*scene.distant_lights):
            l = -safe_normalize(Vec3.of(direction))
            terms.append(direct(l, jnp.asarray(jnp.inf, p.x.dtype), Vec3.of(lcol) * inten))
    if bounces > 0:
        r = d - n * (2.0 * dot(d, n))
        terms.append(_radiance(scene, boxes, po, r, bounces - 1, 0.0) * m.reflection)
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


def _closest(scene, boxes, o, d):
    """The nearest surface along each ray (hard visibility), a Layer of fields S."""
    lay = jax.tree_util.tree_map(lambda *xs: jnp.concatenate(xs), *_layers(scene, boxes, o, d, 0.0))
    key = jnp.where(lay.alpha > 0, lay.depth, jnp.inf)
    i, (depth, alpha, point, normal) = _nearest(key, (lay.depth, lay.alpha, lay.point, lay.normal))
    # Materials are per-object values broadcast over the rays: cheap to select.
    mat = jax.tree_util.tree_map(lambda x: _pick(x, i), lay.mat)
    return Layer(depth, alpha, point, normal, mat)


def _radiance(scene, boxes, o, d, bounces, softness):
    """Radiance (Vec3) arriving at o from direction -d, for a batch of rays."""
    background = Vec3.of(scene.background.astype(o.x.dtype))
    if softness == 0:
        one = _closest(scene, boxes, o, d)
        return vwhere(one.alpha > 0, _shade(scene, boxes, one, d, bounces, softness), background)
    lay = jax.tree_util.tree_map(lambda *xs: jnp.concatenate(xs), *_layers(scene, boxes, o, d, softness))
    present = lay.alpha > 0
    alpha = jnp.where(present, lay.alpha, 0.0)
    depth = jnp.where(present, lay.depth, jnp.inf)
    colors = _shade(scene, boxes, lay, d, bounces, softness)
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


def _sample_offsets(spp, dtype):
    """Deterministic sub-pixel offsets in [0, 1)^2: the pixel centre for one
    sample, else the R2 low-discrepancy sequence (even coverage, no RNG)."""
    if spp == 1:
        return np.full((1, 2), 0.5)
    g = 1.32471795724474602596  # plastic number
    k = np.arange(spp)[:, None]
    return np.mod(0.5 + k * np.array([1 / g, 1 / g**2]), 1.0)


def _camera_rays(cam, spp):
    """Ray origins and unit directions, Vec3s of shape (height, width, spp)."""
    dtype = jnp.result_type(cam.lookfrom, cam.lookat, cam.vup, cam.vfov)
    look = lambda v: Vec3.of(jnp.asarray(v, dtype))  # noqa: E731
    fwd = safe_normalize(look(cam.lookat) - look(cam.lookfrom))
    right = safe_normalize(cross(fwd, look(cam.vup)))
    up = cross(right, fwd)
    half_h = jnp.tan(jnp.deg2rad(cam.vfov) / 2)
    half_w = half_h * cam.width / cam.height
    off = jnp.asarray(_sample_offsets(spp, dtype), dtype)
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


@functools.partial(jax.jit, static_argnames=("softness", "spp", "max_bounces"))
def _render(scene, cam, softness, spp, max_bounces):
    # The camera's float dtype is the image's; scene values given as Python
    # numbers (float64 under x64) would otherwise promote a float32 render.
    dtype = jnp.result_type(cam.lookfrom, cam.lookat, cam.vup, cam.vfov)
    scene = jax.tree_util.tree_map(
        lambda x: x.astype(dtype) if jnp.issubdtype(x.dtype, jnp.floating) else x, scene
    )
    boxes = None
    if scene.bvh is not None:
        boxes = _bvh.refit(scene.bvh, *scene.mesh.arrays)
    o, d = _camera_rays(cam, spp)
    shape = d.x.shape
    o, d = (v.map(lambda x: x.reshape(-1)) for v in (o, d))
    n = d.x.shape[0]

    def trace(o, d):
        return _radiance(scene, boxes, o, d, max_bounces, softness)

    if scene.bvh is not None and n > BVH_CHUNK:
        pad = (-n) % BVH_CHUNK

        def chunks(x):  # (n,) -> (n_chunks, BVH_CHUNK), padded with the first ray
            return jnp.concatenate([x, jnp.broadcast_to(x[:1], (pad,))]).reshape(-1, BVH_CHUNK)

        col = jax.lax.map(lambda od: trace(*od), (o.map(chunks), d.map(chunks)))
        col = col.map(lambda x: x.reshape(-1)[:n])
    else:
        col = trace(o, d)
    col = col.map(lambda x: x.reshape(shape).mean(axis=2))
    return col.stack()


def render(scene, cam, *, softness=0.0, spp=1, max_bounces=2):
    """Render `scene` seen by `cam` to a (height, width, 3) linear RGB image.

    softness: width (world units) of smooth visibility at silhouettes and
        shadow edges of spheres, triangles and planes; 0 gives hard edges.
        Use > 0 to differentiate w.r.t. geometry whose edges move, or a light
        position that moves shadows.
    spp: samples per pixel (deterministic low-discrepancy sub-pixel offsets).
    max_bounces: mirror-reflection depth (0: no reflection rays).

    jit-compiled; differentiable (jax.grad, jax.jacfwd) in every float field of
    scene and camera.  The image has the camera's float dtype (float32 or
    float64); scene values are cast to it.
    """
    softness = float(softness)
    if not softness >= 0:
        raise ValueError(f"softness must be >= 0 (world units), got {softness}")
    if int(spp) != spp or spp < 1:
        raise ValueError(f"spp must be a positive integer, got {spp}")
    if int(max_bounces) != max_bounces or max_bounces < 0:
        raise ValueError(f"max_bounces must be a non-negative integer, got {max_bounces}")
    return _render(scene, cam, softness, int(spp), int(max_bounces))
