"""Shared test helpers: central finite differences and tree comparisons (float64)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from jax.flatten_util import ravel_pytree


def central_fd(fun, x, eps=1e-6):
    """Central differences of a scalar- or array-valued `fun` at `x` (any PyTree of float
    arrays): an array of shape fun(x).shape + (size of x,), the flattened inputs last."""
    flat, unravel = ravel_pytree(x)
    flat = np.asarray(flat, np.float64)
    cols = []
    for i in range(flat.size):
        e = np.zeros_like(flat)
        e[i] = eps
        hi = np.asarray(fun(unravel(jnp.asarray(flat + e))), np.float64)
        lo = np.asarray(fun(unravel(jnp.asarray(flat - e))), np.float64)
        cols.append((hi - lo) / (2 * eps))
    return np.stack(cols, axis=-1)


def flat(tree):
    """All float leaves of a PyTree as one float64 numpy vector."""
    return np.asarray(ravel_pytree(jax.tree_util.tree_map(jnp.asarray, tree))[0], np.float64)


def assert_tree_allclose(a, b, rtol=1e-7, atol=0.0, err_msg=""):
    """Leaf-by-leaf comparison of two PyTrees of the same structure."""
    la, ta = jax.tree_util.tree_flatten(a)
    lb, tb = jax.tree_util.tree_flatten(b)
    assert ta == tb, f"structures differ: {ta} vs {tb}"
    for x, y in zip(la, lb):
        np.testing.assert_allclose(np.asarray(x), np.asarray(y), rtol=rtol, atol=atol, err_msg=err_msg)
