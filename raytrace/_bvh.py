"""Bounding-volume hierarchy over a mesh's triangles, built in JAX.

Build (`build_bvh`): triangles are sorted along a 30-bit Morton curve of
their centroids (one `argsort`) and cut into leaves of LEAF_SIZE consecutive
triangles; the tree over the leaves is the complete binary tree in heap order
(children of node i are 2i+1 and 2i+2), so its topology is implied by the
leaf count alone.  This is plain vectorised JAX: it runs on concrete or on
traced vertices alike, so a Mesh built inside `jit`/`grad` gets its BVH too.
Leaves past the last triangle repeat it (never an empty box).

Refit (`refit`): node boxes from the current vertices, level by level
(vectorised pairwise min/max), at every render; a gradient step that moves
vertices keeps the sort order and only slows traversal if they moved a lot.

Traversal (`traverse`) finds the index of the hit triangle with a per-ray
`while_loop` and a fixed-size stack, on `stop_gradient` inputs: the index is
discrete, and the differentiable hit is recomputed from that triangle.
"""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp

from ._geometry import moller_trumbore

LEAF_SIZE = 4


class BVH(eqx.Module):
    """order: (n_leaves * LEAF_SIZE,) int32 face ids in leaf order (padded by
    repeating the last); depth: static number of inner levels (n_leaves = 2**depth)."""

    order: jax.Array
    depth: int = eqx.field(static=True)


def _spread_bits(x):
    """10-bit integers -> their bits at every third position (for Morton codes)."""
    x = x.astype(jnp.uint32)
    x = (x | (x << 16)) & 0x030000FF
    x = (x | (x << 8)) & 0x0300F00F
    x = (x | (x << 4)) & 0x030C30C3
    x = (x | (x << 2)) & 0x09249249
    return x


def build_bvh(vertices, faces, leaf_size=LEAF_SIZE):
    """BVH of triangles faces (F, 3) int over vertices (V, 3) (no gradient)."""
    v = jax.lax.stop_gradient(jnp.asarray(vertices))
    n_faces = faces.shape[0]
    depth = max(0, (-(-n_faces // leaf_size) - 1).bit_length())
    tri = v[faces]  # (F, 3 vertices, 3)
    cent = (tri.min(axis=1) + tri.max(axis=1)) / 2
    lo, hi = cent.min(axis=0), cent.max(axis=0)
    q = jnp.clip((cent - lo) / jnp.where(hi > lo, hi - lo, 1.0) * 1023.0, 0, 1023)
    code = (_spread_bits(q[:, 0]) << 2) | (_spread_bits(q[:, 1]) << 1) | _spread_bits(q[:, 2])
    order = jnp.argsort(code).astype(jnp.int32)
    pad = (2**depth) * leaf_size - n_faces
    order = jnp.concatenate([order, jnp.broadcast_to(order[-1:], (pad,))])
    return BVH(order=order, depth=depth)


def leaf_triangles(bvh, vertices, faces):
    """Vertices a, b, c (n_leaves * LEAF_SIZE, 3) of the triangles in leaf order."""
    f = faces[bvh.order]
    return vertices[f[:, 0]], vertices[f[:, 1]], vertices[f[:, 2]]


def refit(bvh, a, b, c):
    """Node boxes lo, hi (2**(depth+1) - 1, 3) in heap order from leaf-order triangles."""
    lo = jnp.minimum(jnp.minimum(a, b), c).reshape(2**bvh.depth, -1, 3).min(axis=1)
    hi = jnp.maximum(jnp.maximum(a, b), c).reshape(2**bvh.depth, -1, 3).max(axis=1)
    los, his = [lo], [hi]
    while los[0].shape[0] > 1:
        los.insert(0, los[0].reshape(-1, 2, 3).min(axis=1))
        his.insert(0, his[0].reshape(-1, 2, 3).max(axis=1))
    return jnp.concatenate(los), jnp.concatenate(his)


def _slab(o, inv_d, lo, hi):
    """Entry distance of the ray into box [lo, hi] and whether it enters before leaving."""
    t1 = (lo - o) * inv_d
    t2 = (hi - o) * inv_d
    tmin = jnp.max(jnp.minimum(t1, t2))
    tmax = jnp.min(jnp.maximum(t1, t2))
    return tmin, tmax >= jnp.maximum(tmin, 0.0)


def traverse(bvh, boxes, tris, o, d, tmin, tmax, any_hit=False):
    """Leaf-order slot of the closest triangle hit by one ray within (tmin, tmax), or -1.

    o, d (3,) (d of any length: the ray may be in a mesh's object space);
    tris: leaf-order vertices from `leaf_triangles`; boxes from `refit`.
    any_hit=True stops at the first hit found (shadow rays).  No gradient."""
    lo, hi = boxes
    a, b, c = tris
    n_inner = 2**bvh.depth - 1
    leaf = a.shape[0] // (n_inner + 1)
    tiny = jnp.finfo(d.dtype).tiny
    inv_d = 1.0 / jnp.where(jnp.abs(d) < tiny, jnp.where(d < 0, -tiny, tiny), d)
    mt = jax.vmap(moller_trumbore, in_axes=(None, None, None, 0, 0, 0))

    def cond(state):
        _, sp, _, best_i = state
        return (sp > 0) & ~(any_hit & (best_i >= 0))

    def body(state):
        stack, sp, best_t, best_i = state
        sp = sp - 1
        node = stack[sp]
        is_leaf = node >= n_inner
        # Leaf: test its triangles.
        slots = jnp.maximum(node - n_inner, 0) * leaf + jnp.arange(leaf, dtype=jnp.int32)
        ts = jnp.where(is_leaf, mt(o, d, tmin, a[slots], b[slots], c[slots]), jnp.inf)
        k = jnp.argmin(ts)
        better = ts[k] < best_t
        best_t = jnp.where(better, ts[k], best_t)
        best_i = jnp.where(better, slots[k], best_i)
        # Inner node: push the children whose boxes are entered before best_t,
        # the nearer one last so that it is popped first.
        l = jnp.minimum(2 * node + 1, lo.shape[0] - 1)
        r = jnp.minimum(2 * node + 2, lo.shape[0] - 1)
        tl, hl = _slab(o, inv_d, lo[l], hi[l])
        tr, hr = _slab(o, inv_d, lo[r], hi[r])
        hl = hl & ~is_leaf & (tl < best_t)
        hr = hr & ~is_leaf & (tr < best_t)
        left_near = tl <= tr
        far, near = jnp.where(left_near, r, l), jnp.where(left_near, l, r)
        hfar, hnear = jnp.where(left_near, hr, hl), jnp.where(left_near, hl, hr)
        stack = stack.at[sp].set(jnp.where(hfar, far, stack[sp]))
        sp = sp + hfar.astype(jnp.int32)
        stack = stack.at[sp].set(jnp.where(hnear, near, stack[sp]))
        sp = sp + hnear.astype(jnp.int32)
        return stack, sp, best_t, best_i

    state = (jnp.zeros(bvh.depth + 2, jnp.int32), jnp.int32(1), jnp.asarray(tmax, o.dtype), jnp.int32(-1))
    return jax.lax.while_loop(cond, body, state)[3]
