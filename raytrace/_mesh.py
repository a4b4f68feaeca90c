"""Triangle meshes with a differentiable pose, intersected through a BVH.

Rays are taken into the mesh's object space (inverse of its Transform) for
the BVH traversal, so the BVH (built on the object-space vertices) stays
valid under any pose.  The traversal only answers which triangle is hit
(no gradient); depth, point and normal are then recomputed differentiably
from that triangle's world-space vertices, so a gradient costs about one
extra shading pass, not the reverse of the traversal loop.
"""

from __future__ import annotations

from typing import ClassVar

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from . import _bvh
from ._checks import as_float, check_range, check_triangles, concrete
from ._geometry import Vec3, cross, dot, ray_shape, safe_div, safe_norm, smooth_coverage, triangle_layer
from ._objects import AbstractObject, Material

# Rays are traced in chunks so that the BVH while_loop of a chunk only waits
# for the slowest ray of that chunk, not of the whole image.
BVH_CHUNK = 2048


def _rotation_matrix(rotation):
    """(3, 3) rotation from a rotation vector (3,) (axis times angle, radians)
    or a quaternion (4,) (w, x, y, z), any nonzero length.  Smooth everywhere:
    the rotation vector's sin(t)/t and (1 - cos(t))/t^2 use their Taylor
    series near t = 0 (double where), so the gradient at zero rotation is finite."""
    if rotation.shape == (4,):
        w, x, y, z = rotation / jnp.sqrt(jnp.sum(rotation**2))
        return jnp.array([[1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y)],
                          [2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x)],
                          [2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)]])
    t2 = jnp.sum(rotation**2)
    small = t2 < jnp.sqrt(jnp.finfo(rotation.dtype).eps)
    t2s = jnp.where(small, 1.0, t2)
    t = jnp.sqrt(t2s)
    a = jnp.where(small, 1 - t2 / 6 + t2 * t2 / 120, jnp.sin(t) / t)
    b = jnp.where(small, 0.5 - t2 / 24 + t2 * t2 / 720, (1 - jnp.cos(t)) / t2s)
    x, y, z = rotation
    k = jnp.array([[0.0, -z, y], [z, 0.0, -x], [-y, x, 0.0]], rotation.dtype)
    return jnp.eye(3, dtype=rotation.dtype) + a * k + b * (k @ k)


class Transform(eqx.Module):
    """Pose of a mesh: world = R (scale * local) + translation.

    translation (3,) world units; rotation (3,) rotation vector (axis times
    angle in radians) or (4,) quaternion (w, x, y, z), normalised here;
    scale () or (3,) > 0 (per axis).  All differentiable."""

    translation: jax.Array
    rotation: jax.Array
    scale: jax.Array

    def __init__(self, translation=(0.0, 0.0, 0.0), rotation=(0.0, 0.0, 0.0), scale=1.0):
        self.translation = as_float(translation, (3,), "Transform translation")
        self.rotation = as_float(rotation, None, "Transform rotation")
        self.scale = as_float(scale, None, "Transform scale")
        if self.rotation.shape not in ((3,), (4,)):
            raise ValueError(f"Transform rotation must be a rotation vector (3,) or a quaternion (4,) "
                             f"(w, x, y, z), got shape {self.rotation.shape}")
        if self.scale.shape not in ((), (3,)):
            raise ValueError(f"Transform scale must be a number or (3,) per axis, got shape {self.scale.shape}")
        check_range(self.scale, "Transform scale", 0.0)
        s, q = concrete(self.scale), concrete(self.rotation)
        if s is not None and not np.all(s > 0):
            raise ValueError(f"Transform scale must be positive, got {s.tolist()}")
        if q is not None and q.shape == (4,) and not np.linalg.norm(q) > 0:
            raise ValueError("Transform quaternion is zero; the identity rotation is (1, 0, 0, 0).")

    def apply(self, v):
        """World positions (N, 3) of object-space points v (N, 3)."""
        return (v * self.scale) @ _rotation_matrix(self.rotation).T + self.translation

    def to_local(self, o, d):
        """Rays (Vec3s) in object space; d keeps the ray parameter t (not unit length)."""
        rt_ = _rotation_matrix(self.rotation).T  # inverse rotation
        t = Vec3.of(self.translation)

        def local(v):
            x, y, z = (rt_[i, 0] * v.x + rt_[i, 1] * v.y + rt_[i, 2] * v.z for i in range(3))
            return Vec3(x, y, z) / Vec3.of(jnp.broadcast_to(self.scale, (3,)))

        return local(o - t), local(d)


def _adjacency(faces):
    """neighbors (F, 3) int32: the face across edge k = (faces[:, k], faces[:, k+1]),
    -1 on a boundary; flipped (F, 3) bool: that face is wound the other way
    (its normal points to the other side).  Vectorised: one sort of the edges."""
    f = np.asarray(faces, np.int64)
    a, b = f.reshape(-1), np.roll(f, -1, axis=1).reshape(-1)
    key = np.minimum(a, b) * (f.max() + 1) + np.maximum(a, b)
    order = np.argsort(key, kind="stable")
    pair = key[order[1:]] == key[order[:-1]]
    i, j = order[:-1][pair], order[1:][pair]
    nb = np.full(a.size, -1, np.int64)
    nb[i], nb[j] = j // 3, i // 3
    flip = np.zeros(a.size, bool)
    flip[i] = flip[j] = a[i] == a[j]  # same direction along the shared edge: opposite winding
    return nb.reshape(-1, 3).astype(np.int32), flip.reshape(-1, 3)


def _normal(w, faces, f):
    """Unnormalised normal (Vec3, *S) of faces f (*S) int, as wound."""
    a, b, c = (Vec3.of(w[faces[f, k]]) for k in range(3))
    return cross(b - a, c - a)


def _silhouette_cap(n_faces):
    """Static number of silhouette edges kept: a closed mesh's silhouette has
    about sqrt(F) edges (a torus of F = 2 nu nv triangles about 2 (nu + nv))."""
    return int(min(3 * n_faces, 64 + 16 * np.ceil(np.sqrt(n_faces))))


def _ray_segment_distance(o, d, p0, p1):
    """Distance between the rays' lines (o, d unit) and segments p0-p1, and the
    ray parameter of the closest point (both of the broadcast shape)."""
    e = p1 - p0
    w0 = o - p0
    b, c, dd, ee = dot(d, e), dot(e, e), dot(d, w0), dot(e, w0)
    u = jnp.clip(safe_div(ee - b * dd, c - b * b), 0.0, 1.0)  # closest point on the segment
    q = p0 + e * u
    t = dot(q - o, d)
    return safe_norm(o + d * t - q), t


def _flat(v, shape):
    """Vec3 of batch shape S -> (N, 3) array."""
    return v.map(lambda x: jnp.broadcast_to(x, shape)).stack().reshape(-1, 3)


class Mesh(AbstractObject):
    """Triangle mesh: vertices (V, 3) object-space float (differentiable), faces
    (F, 3) int (0-based, not differentiable), material, transform (a Transform,
    differentiable: the pose), bvh (built here from the vertices, also when
    they are traced inside jit/grad; refit at every render).

    Soft visibility (softness > 0): near a silhouette edge (an edge between
    a face turned towards the ray and one turned away, or a boundary edge)
    the coverage ramps from 0 at the edge to 1 at 2*softness from it,
    distance measured between the ray and the edge (like a sphere's rim).
    The edges looked at are those of the hit triangle and of its three
    neighbours: where the band is wider than that ring (fine meshes, large
    softness) the coverage jumps to 1 at the ring's end.  One-sided (inside
    the outline only), so a ray that misses still costs one BVH query.
    Camera and shadow rays see the mesh's nearest hit only: what lies behind
    a partly covered rim is the other objects, not the same mesh's far side."""

    vertices: jax.Array
    faces: jax.Array
    material: Material
    transform: Transform
    bvh: _bvh.BVH
    neighbors: jax.Array
    flipped: jax.Array
    stackable: ClassVar[bool] = False

    def __init__(self, vertices, faces, material=None, transform=None):
        self.vertices = as_float(vertices, None, "Mesh vertices")
        if self.vertices.ndim != 2 or self.vertices.shape[1] != 3:
            raise ValueError(f"Mesh vertices must have shape (V, 3), got {self.vertices.shape}")
        f = np.asarray(faces)
        if f.ndim != 2 or f.shape[1] != 3 or not np.issubdtype(f.dtype, np.integer):
            raise ValueError(f"Mesh faces must be an integer array of shape (F, 3), got {f.dtype} {f.shape}")
        if f.shape[0] == 0:
            raise ValueError("Mesh has no faces; an OBJ file needs 'f' lines.")
        n = self.vertices.shape[0]
        if f.min() < 0 or f.max() >= n:
            raise ValueError(f"Mesh faces index vertices 0..{n - 1} but contain {f.min()}..{f.max()}; "
                             "faces must be 0-based indices into vertices.")
        self.faces = jnp.asarray(f.astype(np.int32))
        self.material = Material() if material is None else material
        self.transform = Transform() if transform is None else transform
        v = self.vertices
        check_triangles(v[f[:, 0]], v[f[:, 1]], v[f[:, 2]], "Mesh")
        self.bvh = _bvh.build_bvh(v, self.faces)
        nb, flip = _adjacency(f)
        self.neighbors, self.flipped = jnp.asarray(nb), jnp.asarray(flip)

    @classmethod
    def from_obj(cls, path, material=None, dtype=None, transform=None):
        """Load vertices and faces ('v' and 'f' lines) from a Wavefront OBJ file (see `read_obj`)."""
        from ._io import read_obj

        vertices, faces = read_obj(path)
        if dtype is not None:
            vertices = vertices.astype(dtype)
        return cls(vertices, faces, material, transform)

    def world_vertices(self):
        """(V, 3) vertices after the transform (differentiable)."""
        return self.transform.apply(self.vertices)

    def hit_slots(self, o, d, tmin, tmax, any_hit):
        """BVH leaf-order slot (*S) int32 of the triangle hit in (tmin, tmax), or -1. No gradient."""
        o, d, tmin, tmax = jax.lax.stop_gradient((o, d, tmin, tmax))
        mesh = jax.lax.stop_gradient(self)
        shape = ray_shape(o, d)
        lo, ld = mesh.transform.to_local(o, d)
        tris = _bvh.leaf_triangles(mesh.bvh, mesh.vertices, mesh.faces)
        tables = _bvh.pack(mesh.bvh, tris, _bvh.refit(mesh.bvh, *tris))
        rays = (_flat(lo, shape), _flat(ld, shape),
                jnp.broadcast_to(tmin, shape).reshape(-1), jnp.broadcast_to(tmax, shape).reshape(-1))
        rays = tuple(x.astype(mesh.vertices.dtype) for x in rays)
        fn = jax.vmap(lambda o, d, t0, t1: _bvh.traverse(mesh.bvh, tables, o, d, t0, t1, any_hit))
        n = rays[0].shape[0]
        if n <= BVH_CHUNK:
            return fn(*rays).reshape(shape)
        pad = (-n) % BVH_CHUNK
        chunked = tuple(jnp.concatenate([x, jnp.broadcast_to(x[:1], (pad,) + x.shape[1:])])
                        .reshape((-1, BVH_CHUNK) + x.shape[1:]) for x in rays)
        return jax.lax.map(lambda r: fn(*r), chunked).reshape(-1)[:n].reshape(shape)

    def _hit(self, o, d, tmin, tmax, any_hit):
        """Face id (*S) hit by the rays (the nearest, or any one), whether one
        is, and the world vertices (V, 3)."""
        slot = self.hit_slots(o, d, tmin, tmax, any_hit)
        return self.bvh.order[jnp.maximum(slot, 0)], slot >= 0, self.world_vertices()

    def _silhouette(self, w, eye, toward, from_eye):
        """Silhouette edges seen from point `eye` (3,) if from_eye (a traced
        bool), else along direction `toward` (3,): endpoints p0, p1 (K, 3) and
        a mask (K,), K static.

        An edge between a face turned towards the eye and one turned away, or
        a boundary edge.  The choice is discrete (no gradient); the endpoints
        are differentiable."""
        n = jnp.cross(w[self.faces[:, 1]] - w[self.faces[:, 0]], w[self.faces[:, 2]] - w[self.faces[:, 0]])
        view = jnp.where(from_eye, w[self.faces].mean(axis=1) - eye, toward)
        up = jax.lax.stop_gradient(jnp.sum(n * view, axis=-1) > 0)
        nb = self.neighbors
        rim = (nb < 0) | ((up[jnp.maximum(nb, 0)] ^ self.flipped) != up[:, None])
        rim = rim & ((nb < 0) | (jnp.arange(nb.shape[0])[:, None] < nb))  # each shared edge once
        k = _silhouette_cap(nb.shape[0])
        idx = jnp.nonzero(rim.reshape(-1), size=k, fill_value=0)[0]
        valid = jnp.arange(k) < rim.sum()
        f, e = idx // 3, idx % 3
        return w[self.faces[f, e]], w[self.faces[f, (e + 1) % 3]], valid

    def _rim_coverage(self, depth, w, o, d, softness, eye, toward, from_eye=True):
        """Soft coverage (*S) of rays hitting at `depth`: ramps from 0 at the
        nearest silhouette edge near that depth to 1 at 2*softness from it."""
        p0, p1, valid = self._silhouette(w, eye, toward, from_eye)
        shape = jnp.shape(depth)
        col = lambda x: Vec3(*(x[:, k].reshape((-1,) + (1,) * len(shape)) for k in range(3)))  # noqa: E731
        dist, t_edge = _ray_segment_distance(o, d, col(p0), col(p1))
        # Only edges about as deep as the hit bound the surface the ray sees
        # (not a far rim behind it): within the depth a band of 2*softness
        # spans on a surface curved like the whole mesh.
        size = jax.lax.stop_gradient(jnp.max(jnp.abs(w - w.mean(axis=0))))
        window = jnp.sqrt(8.0 * softness * size)
        near = valid.reshape((-1,) + (1,) * len(shape)) & (jnp.abs(t_edge - depth) < window)
        dmin = jnp.min(jnp.where(near, dist, 4.0 * softness), axis=0)  # finite stand-in: no inf - inf
        return smooth_coverage(dmin - softness, softness)

    def _layer(self, face, w, o, d, tmin):
        """Hard Layer (*S) of the hit faces, recomputed differentiably from their world vertices."""
        a, b, c = (Vec3.of(w[self.faces[face, k]]) for k in range(3))
        m = self.material
        return triangle_layer(o, d, tmin, a, b, c, m.surface()._replace(color=Vec3.of(m.color)), None)

    def _depth(self, face, w, o, d, tmin):
        return self._layer(face, w, o, d, tmin).depth

    def intersect(self, o, d, tmin, softness):
        face, found, w = self._hit(o, d, tmin, jnp.inf, any_hit=False)
        lay = self._layer(face, w, o, d, tmin)
        alpha = found.astype(lay.depth.dtype)
        if softness is not None:
            # Camera rays share their origin: the silhouette is the one seen from it.
            eye = jax.lax.stop_gradient(o.map(jnp.mean).stack())
            alpha = alpha * self._rim_coverage(lay.depth, w, o, d, softness, eye, eye)
        return jax.tree_util.tree_map(lambda x: x[None], lay._replace(alpha=alpha))

    def occlude(self, o, d, tmin, tmax, softness):
        # Soft shadows need the nearest blocker's rim coverage; hard ones any blocker.
        face, found, w = self._hit(o, d, tmin, tmax, any_hit=softness is None)
        alpha = found.astype(o.x.dtype)
        if softness is None:
            return 1.0 - alpha
        # Shadow rays of a point light meet at the light (o + d tmax); those of
        # a distant light are parallel: the silhouette is the one seen from there.
        ends = jax.lax.stop_gradient((o + d * tmax).map(lambda x: jnp.mean(jnp.where(jnp.isfinite(x), x, 0.0))))
        finite = jnp.all(jnp.isfinite(jnp.asarray(tmax)))
        toward = jax.lax.stop_gradient(d.map(jnp.mean).stack())
        depth = self._depth(face, w, o, d, tmin)
        return 1.0 - alpha * self._rim_coverage(depth, w, o, d, softness, ends.stack(), toward, finite)
