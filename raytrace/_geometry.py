"""Ray-primitive intersections for a single ray; callers vmap them.

Every function here is written so that its gradient is finite for every input,
including rays that miss: square roots and divisions in branches that are
masked out get a harmless stand-in value first (the "double where" pattern),
because `jnp.where` alone would still propagate NaN/inf cotangents from the
unused branch.

A ray is an origin `o` (3,) and a unit direction `d` (3,); distances are in
world units along the ray.
"""

from __future__ import annotations

from typing import NamedTuple

import jax.numpy as jnp

# Minimum hit distance; keeps secondary rays from hitting the surface they
# start on.  Large enough for float32 scenes of size ~10-100 units.
EPS = 1e-3


class Layer(NamedTuple):
    """One surface a ray may see; stacked along a leading axis K for K candidates.

    depth:  () distance along the ray (soft misses: the point of closest approach)
    alpha:  () coverage in [0, 1]; 0/1 for hard visibility
    point:  (3,) surface point used for shading
    normal: (3,) unit normal facing the incoming ray
    mat:    () int32 material index
    """

    depth: jnp.ndarray
    alpha: jnp.ndarray
    point: jnp.ndarray
    normal: jnp.ndarray
    mat: jnp.ndarray


def safe_norm(v):
    sq = jnp.sum(v * v, axis=-1)
    ok = sq > 0
    return jnp.where(ok, jnp.sqrt(jnp.where(ok, sq, 1.0)), 0.0)


def safe_normalize(v):
    n = safe_norm(v)
    return v / jnp.where(n > 0, n, 1.0)[..., None]


def safe_div(a, b):
    ok = b != 0
    return jnp.where(ok, a / jnp.where(ok, b, 1.0), 0.0)


def safe_pow(x, k):
    """x**k for x >= 0 whose gradient w.r.t. k is finite at x = 0."""
    ok = x > 0
    return jnp.where(ok, jnp.exp(k * jnp.log(jnp.where(ok, x, 1.0))), 0.0)


def smooth_coverage(signed_dist, softness):
    """C1 smoothstep from 0 (signed_dist <= -softness) to 1 (>= +softness).

    Compact support, so away from edges the soft render equals the hard one.
    """
    u = jnp.clip((signed_dist + softness) / (2.0 * softness), 0.0, 1.0)
    return u * u * (3.0 - 2.0 * u)


def face_forward(n, d):
    """Flip the unit normal n so that it faces against the ray direction d."""
    return jnp.where(jnp.dot(n, d) > 0, -n, n)


def coverage(hit, signed_dist, valid, softness):
    if softness > 0:
        return smooth_coverage(signed_dist, softness) * valid
    return hit.astype(signed_dist.dtype)


def sphere_layer(o, d, center, radius, mat, softness):
    oc = center - o
    tca = jnp.dot(oc, d)
    dist = safe_norm(oc - tca * d)  # distance from the centre to the ray's line
    disc = radius * radius - dist * dist
    crosses = disc > 0
    s = jnp.where(crosses, jnp.sqrt(jnp.where(crosses, disc, 1.0)), 0.0)
    t0 = tca - s
    t = jnp.where(t0 > EPS, t0, tca + s)  # far root when the origin is inside
    hit = crosses & (t > EPS)
    # A soft miss is shaded at the point of closest approach, which joins the
    # limb continuously as the ray slides off the sphere.
    depth = jnp.where(crosses, t, tca) if softness > 0 else t
    alpha = coverage(hit, radius - dist, depth > EPS, softness)
    p = o + depth * d
    # Outward normal unless the ray starts inside.  (Not face_forward: at a
    # soft miss's closest-approach point n is perpendicular to d, and the sign
    # of n.d would be rounding noise.)
    n = safe_normalize(p - center)
    n = jnp.where(jnp.dot(oc, oc) < radius * radius, -n, n)
    return Layer(depth, alpha, p, n, mat)


def triangle_layer(o, d, a, b, c, mat, softness):
    n = safe_normalize(jnp.cross(b - a, c - a))
    denom = jnp.dot(n, d)
    ok = denom != 0
    t = jnp.where(ok, safe_div(jnp.dot(n, a - o), denom), -1.0)
    p = o + t * d

    def edge(p0, p1):
        inward = safe_normalize(jnp.cross(n, p1 - p0))
        return jnp.dot(inward, p - p0)

    inside = jnp.minimum(jnp.minimum(edge(a, b), edge(b, c)), edge(c, a))
    valid = ok & (t > EPS)
    alpha = coverage(valid & (inside >= 0), inside, valid, softness)
    return Layer(t, alpha, p, face_forward(n, d), mat)


def plane_layer(o, d, point, normal, mat, softness):
    n = safe_normalize(normal)
    denom = jnp.dot(n, d)
    ok = denom != 0
    t = jnp.where(ok, safe_div(jnp.dot(n, point - o), denom), -1.0)
    hit = ok & (t > EPS)
    p = o + t * d
    return Layer(t, hit.astype(t.dtype), p, face_forward(n, d), mat)


def moller_trumbore(o, d, a, b, c):
    """Hit distance of the ray with triangle abc, or +inf; not for gradients."""
    e1 = b - a
    e2 = c - a
    pv = jnp.cross(d, e2)
    det = jnp.dot(e1, pv)
    ok = jnp.abs(det) > 1e-12
    inv = 1.0 / jnp.where(ok, det, 1.0)
    tv = o - a
    u = jnp.dot(tv, pv) * inv
    qv = jnp.cross(tv, e1)
    v = jnp.dot(d, qv) * inv
    t = jnp.dot(e2, qv) * inv
    hit = ok & (u >= 0) & (v >= 0) & (u + v <= 1) & (t > EPS)
    return jnp.where(hit, t, jnp.inf)
