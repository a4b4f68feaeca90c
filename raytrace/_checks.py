"""Input conversion and validation shared by scene objects.

Validation runs on concrete values only: inside `jit`/`grad` tracing the
values are unknown (check the inputs where they are concrete instead).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np


def concrete(x):
    """numpy value of x, or None while tracing."""
    if isinstance(x, jax.core.Tracer):
        return None
    return np.asarray(x)


def as_float(x, shape=None, name="value"):
    """Float array (float32/float64 inputs keep their dtype; ints become the
    default float); ValueError naming `name` for a wrong shape or NaN/inf."""
    x = jnp.asarray(x)
    if not jnp.issubdtype(x.dtype, jnp.floating):
        x = x.astype(jnp.result_type(float))
    if shape is not None and x.shape != shape:
        raise ValueError(f"{name} must have shape {shape}, got {x.shape}")
    v = concrete(x)
    if v is not None and not np.all(np.isfinite(v)):
        raise ValueError(f"{name} must be finite, got {v.tolist() if v.size <= 4 else 'an array with NaN/inf'}")
    return x


def check_range(x, name, lo=None, hi=None, hint=""):
    """ValueError if concrete x leaves [lo, hi]."""
    v = concrete(x)
    if v is None:
        return
    if (lo is not None and np.any(v < lo)) or (hi is not None and np.any(v > hi)):
        span = f">= {lo}" if hi is None else f"in [{lo}, {hi}]"
        raise ValueError(f"{name} must be {span}, got {v.tolist()}{hint}")


def check_triangles(a, b, c, what):
    """ValueError for zero-area triangles (arrays (F, 3)), relative to their own size."""
    a, b, c = (concrete(x) for x in (a, b, c))
    if a is None or b is None or c is None:
        return
    area2 = np.linalg.norm(np.cross(b - a, c - a), axis=-1)
    edge2 = np.maximum.reduce([np.sum((b - a) ** 2, -1), np.sum((c - b) ** 2, -1), np.sum((a - c) ** 2, -1)])
    bad = np.nonzero(~(area2 > 1e-12 * edge2))[0]
    if bad.size:
        raise ValueError(
            f"{what}: {bad.size} degenerate triangle(s) with zero area (repeated or "
            f"collinear vertices), first at index {int(bad[0])}; remove them or fix their vertices."
        )
