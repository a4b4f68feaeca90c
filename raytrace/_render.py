"""Whitted-style renderer: primary rays, shadow rays, mirror reflections.

One function traces one ray; `jax.vmap` runs it over every pixel and sample,
and per-kind `vmap`s run each ray against all objects, so there is no Python
loop over pixels or objects.  The only Python loop is the static unrolling of
the reflection depth.

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
    plane_layer,
    safe_norm,
    safe_normalize,
    safe_pow,
    sphere_layer,
    triangle_layer,
)

# Rays are traced in chunks so that the BVH while_loop of a chunk only waits
# for the slowest ray of that chunk, not of the whole image.
BVH_CHUNK = 2048


def _analytic_layers(scene, o, d, softness):
    """Layers of spheres, single triangles and planes, one array group per kind."""
    out = []
    if scene.spheres is not None:
        (center, radius), mat = scene.spheres.arrays, scene.spheres.mat
        out.append(jax.vmap(sphere_layer, (None, None, 0, 0, 0, None))(o, d, center, radius, mat, softness))
    if scene.triangles is not None:
        (a, b, c), mat = scene.triangles.arrays, scene.triangles.mat
        out.append(jax.vmap(triangle_layer, (None, None, 0, 0, 0, 0, None))(o, d, a, b, c, mat, softness))
    if scene.planes is not None:
        (p, n), mat = scene.planes.arrays, scene.planes.mat
        out.append(jax.vmap(plane_layer, (None, None, 0, 0, 0, None))(o, d, p, n, mat, softness))
    return out


def _layers(scene, boxes, o, d, softness):
    """All candidate surfaces along a ray, stacked to Layer fields of leading axis K."""
    out = _analytic_layers(scene, o, d, softness)
    if scene.mesh is not None:
        out.append(_mesh_layer(scene, boxes, o, d, jnp.inf, any_hit=False))
    return jax.tree_util.tree_map(lambda *xs: jnp.concatenate(xs), *out)


def _mesh_index(scene, boxes, o, d, tmax, any_hit):
    a, b, c = scene.mesh.arrays
    if scene.bvh is not None:
        return _bvh.traverse(scene.bvh, boxes, a, b, c, o, d, tmax, any_hit=any_hit)
    return _bvh.brute_force(a, b, c, o, d, tmax)


def _mesh_layer(scene, boxes, o, d, tmax, any_hit):
    i = _mesh_index(scene, boxes, o, d, tmax, any_hit)
    found = i >= 0
    k = jnp.maximum(i, 0)
    a, b, c = (x[k] for x in scene.mesh.arrays)
    # Recomputed from the hit triangle's vertices so that depth, point and
    # normal carry gradients; visibility itself stays the discrete BVH answer.
    lay = triangle_layer(o, d, a, b, c, scene.mesh.mat[k], 0.0)
    lay = lay._replace(alpha=found.astype(lay.depth.dtype))
    return jax.tree_util.tree_map(lambda x: x[None], lay)


def _transmittance(scene, boxes, o, l, tmax, softness):
    """Fraction of light reaching o from direction l over distance tmax."""
    trans = jnp.ones((), o.dtype)
    parts = _analytic_layers(scene, o, l, softness)
    for lay in parts:
        alpha = lay.alpha * (lay.depth < tmax)
        trans = trans * jnp.prod(1.0 - alpha)
    if scene.mesh is not None:
        blocked = _mesh_index(scene, boxes, o, l, tmax, any_hit=True) >= 0
        trans = trans * (1.0 - blocked.astype(o.dtype))
    return trans


def _shade(scene, boxes, lay, d, bounces, softness):
    """Radiance leaving surface `lay` towards -d (3,)."""
    m = jax.tree_util.tree_map(lambda x: x[lay.mat], scene.materials)
    p, n = lay.point, lay.normal
    # Secondary rays start slightly off the surface, on the viewer's side.
    po = p + EPS * n
    col = m.color * m.ambient

    def direct(l, dist, irradiance):
        vis = _transmittance(scene, boxes, po, l, dist, softness)
        ndl = jnp.dot(n, l)
        lit = ndl > 0
        h = safe_normalize(l - d)
        spec = safe_pow(jnp.maximum(jnp.dot(n, h), 0.0), m.shininess) * lit
        return irradiance * vis * (m.diffuse * m.color * jnp.maximum(ndl, 0.0) + m.specular * spec)

    if scene.point_lights is not None:
        pos, inten, lcol = scene.point_lights

        def point(pos, inten, lcol):
            to = pos - p
            dist = safe_norm(to)
            l = to / jnp.where(dist > 0, dist, 1.0)
            irr = inten * lcol / (4.0 * jnp.pi * jnp.where(dist > 0, dist * dist, 1.0))
            return direct(l, dist, irr)

        col = col + jnp.sum(jax.vmap(point)(pos, inten, lcol), axis=0)
    if scene.distant_lights is not None:
        dirs, inten, lcol = scene.distant_lights

        def distant(direction, inten, lcol):
            l = -safe_normalize(direction)
            return direct(l, jnp.asarray(jnp.inf, p.dtype), inten * lcol)

        col = col + jnp.sum(jax.vmap(distant)(dirs, inten, lcol), axis=0)
    if bounces > 0:
        r = d - 2.0 * jnp.dot(d, n) * n
        col = col + m.reflection * _radiance(scene, boxes, po, r, bounces - 1, 0.0)
    return col


def _radiance(scene, boxes, o, d, bounces, softness):
    """Radiance (3,) arriving at o from direction -d."""
    lay = _layers(scene, boxes, o, d, softness)
    present = lay.alpha > 0
    depth = jnp.where(present, lay.depth, jnp.inf)
    if softness == 0:
        i = jnp.argmin(depth)
        one = jax.tree_util.tree_map(lambda x: x[i], lay)
        return jnp.where(present[i], _shade(scene, boxes, one, d, bounces, softness), scene.background.astype(o.dtype))
    # Front-to-back compositing of all K candidates.
    order = jnp.argsort(depth)
    lay = jax.tree_util.tree_map(lambda x: x[order], lay)
    alpha = jnp.where(present[order], lay.alpha, 0.0)
    colors = jax.vmap(lambda one: _shade(scene, boxes, one, d, bounces, softness))(lay)
    out = jnp.zeros(3, o.dtype)
    trans = jnp.ones((), o.dtype)
    for k in range(alpha.shape[0]):
        out = out + trans * alpha[k] * colors[k]
        trans = trans * (1.0 - alpha[k])
    return out + trans * scene.background.astype(o.dtype)


def _sample_offsets(spp, dtype):
    """Deterministic sub-pixel offsets in [0, 1)^2: the pixel centre for one
    sample, else the R2 low-discrepancy sequence (even coverage, no RNG)."""
    if spp == 1:
        return np.full((1, 2), 0.5)
    g = 1.32471795724474602596  # plastic number
    k = np.arange(spp)[:, None]
    return np.mod(0.5 + k * np.array([1 / g, 1 / g**2]), 1.0)


def camera_rays(cam, spp=1):
    """Ray origins and unit directions, each (height, width, spp, 3)."""
    dtype = jnp.result_type(cam.lookfrom, cam.lookat, cam.vup, cam.vfov)
    fwd = safe_normalize(cam.lookat - cam.lookfrom)
    right = safe_normalize(jnp.cross(fwd, cam.vup))
    up = jnp.cross(right, fwd)
    half_h = jnp.tan(jnp.deg2rad(cam.vfov) / 2)
    half_w = half_h * cam.width / cam.height
    off = jnp.asarray(_sample_offsets(spp, dtype), dtype)
    cols = jnp.arange(cam.width, dtype=dtype)[None, :, None] + off[None, None, :, 0]
    rows = jnp.arange(cam.height, dtype=dtype)[:, None, None] + off[None, None, :, 1]
    x = (2 * cols / cam.width - 1) * half_w
    y = (1 - 2 * rows / cam.height) * half_h
    dirs = fwd + x[..., None] * right + y[..., None] * up
    dirs = safe_normalize(dirs)
    origins = jnp.broadcast_to(cam.lookfrom, dirs.shape)
    return origins, dirs


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
    o, d = camera_rays(cam, spp)
    shape = o.shape
    o, d = o.reshape(-1, 3), d.reshape(-1, 3)
    trace = jax.vmap(lambda o, d: _radiance(scene, boxes, o, d, max_bounces, softness))
    n = o.shape[0]
    if scene.bvh is not None and n > BVH_CHUNK:
        pad = (-n) % BVH_CHUNK
        o = jnp.concatenate([o, jnp.broadcast_to(o[:1], (pad, 3))]).reshape(-1, BVH_CHUNK, 3)
        d = jnp.concatenate([d, jnp.broadcast_to(d[:1], (pad, 3))]).reshape(-1, BVH_CHUNK, 3)
        col = jax.lax.map(lambda od: trace(*od), (o, d)).reshape(-1, 3)[:n]
    else:
        col = trace(o, d)
    return col.reshape(shape).mean(axis=2)


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
