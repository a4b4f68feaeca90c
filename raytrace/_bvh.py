"""Bounding-volume hierarchy over triangles.

The tree's *topology* (which triangles sit in which leaf) is built once on the
host with numpy by median splits.  Its *boxes* are recomputed in JAX from the
current vertices at every render ("refit"), so a scene whose vertices were
changed after building (e.g. with `eqx.tree_at`) still renders exactly; only
the traversal speed degrades if they moved a lot.

Traversal finds the index of the hit triangle with a per-ray `while_loop` and a
fixed-size stack.  It runs on `stop_gradient` inputs: the index is discrete,
and the differentiable hit distance and normal are recomputed afterwards from
that triangle's vertices (reverse mode cannot go through a while_loop anyway).
"""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from ._geometry import moller_trumbore

LEAF_SIZE = 4


class BVH(eqx.Module):
    """Binary BVH topology.

    left, right: (N,) int32 child node ids, -1 for leaves
    leaf_tris:   (N, LEAF_SIZE) int32 triangle ids of each leaf, -1 padding
    levels:      inner node ids grouped by depth (root first), for the refit
    stack_size:  static traversal stack size (tree depth + 2)
    """

    left: jnp.ndarray
    right: jnp.ndarray
    leaf_tris: jnp.ndarray
    levels: tuple
    stack_size: int = eqx.field(static=True)


def build_bvh(a, b, c, leaf_size=LEAF_SIZE):
    """Build the topology from concrete (F, 3) vertex arrays (numpy)."""
    a, b, c = (np.asarray(x, dtype=np.float64) for x in (a, b, c))
    cent = (np.minimum(np.minimum(a, b), c) + np.maximum(np.maximum(a, b), c)) / 2
    left, right, leaves, depth_of = [], [], [], []
    todo = [(np.arange(len(a)), 0, -1, 0)]  # (triangles, depth, parent, side)
    while todo:
        idx, depth, parent, side = todo.pop()
        node = len(left)
        left.append(-1)
        right.append(-1)
        depth_of.append(depth)
        if parent >= 0:
            (left if side == 0 else right)[parent] = node
        if len(idx) <= leaf_size:
            leaves.append(np.pad(idx, (0, leaf_size - len(idx)), constant_values=-1))
            continue
        leaves.append(np.full(leaf_size, -1))
        span = np.ptp(cent[idx], axis=0)
        axis = int(np.argmax(span))
        order = idx[np.argsort(cent[idx, axis], kind="stable")]
        mid = len(order) // 2
        todo.append((order[mid:], depth + 1, node, 1))
        todo.append((order[:mid], depth + 1, node, 0))
    left = np.asarray(left, np.int32)
    right = np.asarray(right, np.int32)
    depth_of = np.asarray(depth_of)
    inner = left >= 0
    levels = tuple(
        jnp.asarray(np.nonzero(inner & (depth_of == k))[0].astype(np.int32))
        for k in range(int(depth_of.max()) + 1)
        if np.any(inner & (depth_of == k))
    )
    return BVH(
        left=jnp.asarray(left),
        right=jnp.asarray(right),
        leaf_tris=jnp.asarray(np.stack(leaves).astype(np.int32)),
        levels=levels,
        stack_size=int(depth_of.max()) + 2,
    )


def refit(bvh, a, b, c):
    """Node boxes (N, 3) lo and hi from the current vertices (no gradient)."""
    a, b, c = (jax.lax.stop_gradient(x) for x in (a, b, c))
    tri_lo = jnp.minimum(jnp.minimum(a, b), c)
    tri_hi = jnp.maximum(jnp.maximum(a, b), c)
    ids = bvh.leaf_tris
    valid = (ids >= 0)[..., None]
    safe = jnp.where(ids >= 0, ids, 0)
    lo = jnp.min(jnp.where(valid, tri_lo[safe], jnp.inf), axis=1)
    hi = jnp.max(jnp.where(valid, tri_hi[safe], -jnp.inf), axis=1)
    for lvl in reversed(bvh.levels):
        lo = lo.at[lvl].set(jnp.minimum(lo[bvh.left[lvl]], lo[bvh.right[lvl]]))
        hi = hi.at[lvl].set(jnp.maximum(hi[bvh.left[lvl]], hi[bvh.right[lvl]]))
    return lo, hi


def _slab(o, inv_d, lo, hi):
    t1 = (lo - o) * inv_d
    t2 = (hi - o) * inv_d
    tmin = jnp.max(jnp.minimum(t1, t2))
    tmax = jnp.min(jnp.maximum(t1, t2))
    return tmin, tmax >= jnp.maximum(tmin, 0.0)


def traverse(bvh, boxes, a, b, c, o, d, tmax, any_hit=False):
    """Index of the closest triangle hit by one ray within (EPS, tmax), or -1.

    any_hit=True stops at the first hit found (shadow rays).  No gradient.
    """
    lo, hi = boxes
    a, b, c, o, d = (jax.lax.stop_gradient(x) for x in (a, b, c, o, d))
    tiny = 1e-12
    inv_d = 1.0 / jnp.where(jnp.abs(d) < tiny, jnp.where(d < 0, -tiny, tiny), d)
    stack0 = jnp.zeros(bvh.stack_size, jnp.int32)
    best_t0 = jnp.asarray(jax.lax.stop_gradient(tmax), dtype=o.dtype)

    def cond(state):
        _, sp, best_t, best_i = state
        go = sp > 0
        if any_hit:
            go = go & (best_i < 0)
        return go

    def body(state):
        stack, sp, best_t, best_i = state
        sp = sp - 1
        node = stack[sp]
        l, r = bvh.left[node], bvh.right[node]
        leaf = l < 0
        # Leaf: test its triangles (padding slots give inf).
        ids = bvh.leaf_tris[node]
        safe = jnp.where(ids >= 0, ids, 0)
        ts = jax.vmap(moller_trumbore, in_axes=(None, None, 0, 0, 0))(
            o, d, a[safe], b[safe], c[safe]
        )
        ts = jnp.where(leaf & (ids >= 0), ts, jnp.inf).astype(best_t.dtype)
        k = jnp.argmin(ts)
        better = ts[k] < best_t
        best_t = jnp.where(better, ts[k], best_t)
        best_i = jnp.where(better, ids[k], best_i)
        # Inner node: push the children whose boxes are hit before best_t,
        # the nearer one last so that it is popped first.
        ls, rs = jnp.maximum(l, 0), jnp.maximum(r, 0)
        tl, hl = _slab(o, inv_d, lo[ls], hi[ls])
        tr, hr = _slab(o, inv_d, lo[rs], hi[rs])
        hl = hl & ~leaf & (tl < best_t)
        hr = hr & ~leaf & (tr < best_t)
        left_near = tl <= tr
        far, near = jnp.where(left_near, rs, ls), jnp.where(left_near, ls, rs)
        hfar, hnear = jnp.where(left_near, hr, hl), jnp.where(left_near, hl, hr)
        stack = stack.at[sp].set(jnp.where(hfar, far, stack[sp]))
        sp = sp + hfar.astype(jnp.int32)
        stack = stack.at[sp].set(jnp.where(hnear, near, stack[sp]))
        sp = sp + hnear.astype(jnp.int32)
        return stack, sp, best_t, best_i

    state = (stack0, jnp.int32(1), best_t0, jnp.int32(-1))
    _, _, _, best_i = jax.lax.while_loop(cond, body, state)
    return best_i


def brute_force(a, b, c, o, d, tmax):
    """Same contract as `traverse` without acceleration (small meshes, tests)."""
    a, b, c, o, d, tmax = (jax.lax.stop_gradient(x) for x in (a, b, c, o, d, tmax))
    ts = jax.vmap(moller_trumbore, in_axes=(None, None, 0, 0, 0))(o, d, a, b, c)
    k = jnp.argmin(ts)
    return jnp.where(ts[k] < tmax, k, -1).astype(jnp.int32)
