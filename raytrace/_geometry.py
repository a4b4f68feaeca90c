"""Ray-primitive intersections on whole batches of rays, structure of arrays.

A 3-vector field is a `Vec3` of three same-shaped arrays.  Rays have a batch
shape S (pixels on the last axis); the arrays of objects of one kind have a
leading object axis K and broadcast against S, so `sphere_layer` and friends
give (K, *S) results with plain elementwise arithmetic.  Keeping the 3 components
apart (instead of (..., 3) arrays under `vmap`) matters on CPU: every vector
operation stays elementwise, so XLA fuses a whole stage into one vectorised
loop, where tiny dot products, sums over the size-3 axis and the
broadcasts/pads of their reverse mode each became a separate, slow kernel.

Every function here is written so that its gradient is finite for every input,
including rays that miss: square roots and divisions in branches that are
masked out get a harmless stand-in value first (the "double where" pattern),
because `jnp.where` alone would still propagate NaN/inf cotangents from the
unused branch.

A ray is an origin `o` and a unit direction `d`; distances are in world units
along the ray.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

# Hit offsets are relative: a secondary ray starts OFFSET times the hit
# point's size (its largest coordinate plus the distance the ray travelled)
# off the surface, and ignores hits nearer than that, so the same scene at any
# scale renders the same image.  1.2e-4 is 1024 float32 ulps (the old
# absolute 1e-3 was 2e-4 of a size-5 scene).  The same factor in float64, so
# that both precisions agree where the offset shows (objects in contact).
OFFSET = 1024 * 2.0**-23


def hit_offset(p, t):
    """Scale-relative self-intersection offset (*S) for hit points p (Vec3) reached at distance t."""
    size = jnp.maximum(jnp.maximum(jnp.abs(p.x), jnp.abs(p.y)), jnp.abs(p.z)) + jnp.abs(t)
    return OFFSET * size  # differentiable: the image depends on it (soft shadows start at it)


def _parts(v):
    """Components of a Vec3, or a scalar field used for all three."""
    return (v.x, v.y, v.z) if isinstance(v, Vec3) else (v, v, v)


@jax.tree_util.register_pytree_node_class
class Vec3:
    """A field of 3-vectors (points, directions, RGB colours) as arrays x, y, z.

    Arithmetic is componentwise with another Vec3 or broadcasts a scalar field
    (an array of the batch shape) over the three components.
    """

    __slots__ = ("x", "y", "z")

    def __init__(self, x, y, z):
        self.x, self.y, self.z = x, y, z

    @classmethod
    def of(cls, a):
        """Vec3 of the last axis (size 3) of array a."""
        a = jnp.asarray(a)
        return cls(a[..., 0], a[..., 1], a[..., 2])

    def stack(self):
        """Array with the components on a new last axis."""
        return jnp.stack(jnp.broadcast_arrays(self.x, self.y, self.z), axis=-1)

    def map(self, f):
        return Vec3(f(self.x), f(self.y), f(self.z))

    def tree_flatten(self):
        return (self.x, self.y, self.z), None

    @classmethod
    def tree_unflatten(cls, _, xs):
        return cls(*xs)

    def _op(self, other, f):
        ox, oy, oz = _parts(other)
        return Vec3(f(self.x, ox), f(self.y, oy), f(self.z, oz))

    def __add__(self, other):
        return self._op(other, lambda a, b: a + b)

    def __sub__(self, other):
        return self._op(other, lambda a, b: a - b)

    def __mul__(self, other):
        return self._op(other, lambda a, b: a * b)

    def __truediv__(self, other):
        return self._op(other, lambda a, b: a / b)

    __radd__ = __add__
    __rmul__ = __mul__

    def __neg__(self):
        return Vec3(-self.x, -self.y, -self.z)


class Surface(NamedTuple):
    """Material fields (see `Material`) of surfaces, broadcastable to the rays."""

    color: Vec3
    ambient: jnp.ndarray
    diffuse: jnp.ndarray
    specular: jnp.ndarray
    shininess: jnp.ndarray
    reflection: jnp.ndarray


class Layer(NamedTuple):
    """The surfaces of K objects along a batch of rays; fields have shape (K, *S).

    depth:  distance along the ray (soft misses: the point of closest approach)
    alpha:  coverage in [0, 1]; 0/1 for hard visibility
    point:  Vec3 surface point used for shading
    normal: Vec3 unit normal facing the incoming ray
    mat:    Surface, its material
    """

    depth: jnp.ndarray
    alpha: jnp.ndarray
    point: Vec3
    normal: Vec3
    mat: Surface


def dot(a, b):
    return a.x * b.x + a.y * b.y + a.z * b.z


def cross(a, b):
    return Vec3(a.y * b.z - a.z * b.y, a.z * b.x - a.x * b.z, a.x * b.y - a.y * b.x)


def vwhere(cond, a, b):
    """jnp.where for Vec3 (or a scalar field broadcast to three components)."""
    (ax, ay, az), (bx, by, bz) = _parts(a), _parts(b)
    return Vec3(jnp.where(cond, ax, bx), jnp.where(cond, ay, by), jnp.where(cond, az, bz))


def safe_norm(v):
    sq = dot(v, v)
    ok = sq > 0
    return jnp.where(ok, jnp.sqrt(jnp.where(ok, sq, 1.0)), 0.0)


def safe_normalize(v):
    n = safe_norm(v)
    return v / jnp.where(n > 0, n, 1.0)


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
    # A traced softness of 0 is a (near) hard edge, not a division by zero.
    softness = jnp.maximum(softness, jnp.finfo(jnp.result_type(softness)).tiny)
    u = jnp.clip((signed_dist + softness) / (2.0 * softness), 0.0, 1.0)
    return u * u * (3.0 - 2.0 * u)


def face_forward(n, d):
    """Flip the unit normal n so that it faces against the ray direction d."""
    return vwhere(dot(n, d) > 0, -n, n)


def coverage(hit, signed_dist, valid, softness):
    """Hard coverage (softness None) or the smooth band of half-width softness
    around signed_dist = 0 (positive inside)."""
    if softness is not None:
        return smooth_coverage(signed_dist, softness) * valid
    return hit.astype(signed_dist.dtype)


def _layer(t, alpha, p, n, mat):
    """Layer with every field broadcast to the full (K, *S) shape."""
    shape = jnp.shape(t)
    full = lambda x: jnp.broadcast_to(x, shape)  # noqa: E731
    return Layer(t, full(alpha), p.map(full), n.map(full), jax.tree_util.tree_map(full, mat))


def sphere_layer(o, d, tmin, center, radius, mat, softness):
    oc = center - o
    tca = dot(oc, d)
    dist = safe_norm(oc - d * tca)  # distance from the centre to the ray's line
    disc = radius * radius - dist * dist
    crosses = disc > 0
    s = jnp.where(crosses, jnp.sqrt(jnp.where(crosses, disc, 1.0)), 0.0)
    t0 = tca - s
    t = jnp.where(t0 > tmin, t0, tca + s)  # far root when the origin is inside
    hit = crosses & (t > tmin)
    # A soft miss is shaded at the point of closest approach, which joins the
    # limb continuously as the ray slides off the sphere.
    depth = t if softness is None else jnp.where(crosses, t, tca)
    alpha = coverage(hit, radius - dist, depth > tmin, softness)
    p = o + d * depth
    # Outward normal unless the ray starts inside.  (Not face_forward: at a
    # soft miss's closest-approach point n is perpendicular to d, and the sign
    # of n.d would be rounding noise.)
    n = safe_normalize(p - center)
    n = vwhere(dot(oc, oc) < radius * radius, -n, n)
    return _layer(depth, alpha, p, n, mat)


def triangle_layer(o, d, tmin, a, b, c, mat, softness):
    n = safe_normalize(cross(b - a, c - a))
    denom = dot(n, d)
    ok = denom != 0
    t = jnp.where(ok, safe_div(dot(n, a - o), denom), -1.0)
    p = o + d * t

    def edge(p0, p1):
        inward = safe_normalize(cross(n, p1 - p0))
        return dot(inward, p - p0)

    inside = jnp.minimum(jnp.minimum(edge(a, b), edge(b, c)), edge(c, a))
    valid = ok & (t > tmin)
    alpha = coverage(valid & (inside >= 0), inside, valid, softness)
    return _layer(t, alpha, p, face_forward(n, d), mat)


def plane_layer(o, d, tmin, point, normal, mat, softness):
    n = safe_normalize(normal)
    denom = dot(n, d)
    ok = denom != 0
    t = jnp.where(ok, safe_div(dot(n, point - o), denom), -1.0)
    hit = ok & (t > tmin)
    p = o + d * t
    return _layer(t, hit.astype(t.dtype), p, face_forward(n, d), mat)


def moller_trumbore(o, d, tmin, a, b, c):
    """Hit distance of one ray (o, d arrays (3,), d of any length) with
    triangle abc, or +inf; not for gradients (BVH traversal).  Exact zero
    determinant only: any threshold would depend on the scene's scale."""
    e1 = b - a
    e2 = c - a
    pv = jnp.cross(d, e2)
    det = jnp.dot(e1, pv)
    ok = det != 0
    inv = 1.0 / jnp.where(ok, det, 1.0)
    tv = o - a
    u = jnp.dot(tv, pv) * inv
    qv = jnp.cross(tv, e1)
    v = jnp.dot(d, qv) * inv
    t = jnp.dot(e2, qv) * inv
    hit = ok & (u >= 0) & (v >= 0) & (u + v <= 1) & (t > tmin)
    return jnp.where(hit, t, jnp.inf)


def ray_shape(o, d):
    """Batch shape S of rays (origins and directions may be broadcast, e.g. the
    one direction of a distant light's shadow rays)."""
    return jnp.broadcast_shapes(*(jnp.shape(x) for x in (o.x, o.y, o.z, d.x, d.y, d.z)))


def along_rays(tree, shape):
    """Per-object leaves of a stacked object group, (K,) or (K, 3), broadcast
    to the rays' batch shape S: (K, *S) arrays, 3-vectors as Vec3s.

    Broadcast explicitly, once: in reverse mode each field's cotangent is then
    summed over the rays by one reduction, not one per use of the field."""

    def expand(x):
        x = jnp.asarray(x)
        if x.ndim == 2 and x.shape[1] == 3:
            return Vec3(*(expand(x[:, k]) for k in range(3)))
        return jnp.broadcast_to(x.reshape(x.shape + (1,) * len(shape)), x.shape + tuple(shape))

    return jax.tree_util.tree_map(expand, tree)
