"""Binomial (revolve) checkpointing: reverse n steps holding at most `slots` states.

The schedule is the optimal one of Griewank and Walther (revolve, ACM TOMS 26, 2000),
run online inside jit: the number of steps n is only known after the forward solve
(adaptive stepping), so each split is computed from the binomial bounds at run time.

With c = s + 1 states held (the current checkpoint and s free slots), l steps can be
reversed advancing no step more than t times iff l <= beta(c, t) = C(c + t, c), and the
fewest forward steps to reverse l steps is T(l, s) = t l - beta(c + 1, t - 1) with t the
least such t (checked against brute-force dynamic programming in the tests).
"""

from __future__ import annotations

from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
from jax.scipy.special import gammaln


def _float():
    return jnp.result_type(float)  # float64 under x64, else float32


def beta(c, t):
    """C(c + t, c) elementwise, as floats (0 where c < 0 or t < 0)."""
    c, t = jnp.asarray(c, _float()), jnp.asarray(t, _float())
    cc, tt = jnp.maximum(c, 0), jnp.maximum(t, 0)
    v = jnp.round(jnp.exp(gammaln(cc + tt + 1) - gammaln(cc + 1) - gammaln(tt + 1)))
    return jnp.where((c < 0) | (t < 0), 0.0, v)


def _least_reps(l, c, bits: int):
    """The least t >= 0 with beta(c, t) >= l (c >= 1, l >= 1), by bisection on [0, l]."""
    l = jnp.asarray(l, _float())
    lo, hi = -jnp.ones_like(l), l  # beta(c, -1) = 0 < l <= beta(c, l)

    def body(_, lh):
        lo, hi = lh
        mid = jnp.floor((lo + hi) / 2)
        ok = beta(c, mid) >= l
        go = hi - lo > 1
        return jnp.where(go & ~ok, mid, lo), jnp.where(go & ok, mid, hi)

    # Unrolled: a few dozen scalar operations, which as a loop cost more in loop overhead.
    return jax.lax.fori_loop(0, bits, body, (lo, hi), unroll=True)[1]


def cost(l, s, bits: int = 32):
    """Fewest forward steps to reverse l steps from one checkpoint with s free slots."""
    l, s = jnp.asarray(l, _float()), jnp.asarray(s, _float())
    c = jnp.maximum(s, 0) + 1
    t = _least_reps(jnp.maximum(l, 1), c, bits)
    binomial = t * l - beta(c + 1, t - 1)
    return jnp.where(l <= 1, 0.0, jnp.where(s <= 0, l * (l - 1) / 2, binomial))


def split(l, s, bits: int = 32):
    """How many steps to advance from the checkpoint before storing the next one, when
    l >= 2 steps are left to reverse and s slots are free: an optimal m in [1, l - 1]
    (m = l - 1 means: reverse the last step straight away, storing nothing). s = 0 can
    only do that. The optimum lies among a few binomial candidates (revolve's); the one
    of least total cost m + T(l - m, s - 1) + T(m, s) is taken."""
    l, s = jnp.asarray(l, _float()), jnp.asarray(s, _float())
    c = jnp.maximum(s, 1) + 1
    t = _least_reps(jnp.maximum(l, 1), c, bits)
    b = beta
    cands = jnp.stack([
        b(c, t - 1), l - b(c - 1, t), b(c - 1, t - 1), l - b(c - 1, t - 1), b(c, t - 2),
        l - b(c - 1, t - 1) - b(c - 2, t - 1), b(c - 1, t - 2), l - 1, jnp.ones_like(l),
    ])
    m = jnp.clip(cands, 1, jnp.maximum(l - 1, 1))
    total = m + cost(l - m, s - 1, bits) + cost(m, s, bits)
    best = m[jnp.argmin(total)]
    return jnp.where(s <= 0, l - 1, best).astype(jnp.int32)


class _State(NamedTuple):
    ys: Any  # (slots, d) checkpointed states
    at: Any  # (slots,) int32 step index of each
    top: Any  # index of the newest checkpoint
    end: Any  # steps end..n-1 are reversed
    carry: Any  # the backward pass's carry
    advanced: Any  # forward steps taken so far (recomputation)


def reverse(n, y0, slots: int, bits: int, advance: Callable, backward: Callable, carry):
    """Call backward(j, y_j, carry) for j = n-1, ..., 0, where y_j is the state before
    step j and advance(j, y_j) = y_{j+1}, holding at most `slots` states (y0 included).
    Returns (carry, number of advance calls). n is traced; slots is static."""
    ys = jnp.zeros((slots,) + y0.shape, y0.dtype).at[0].set(y0)
    at = jnp.zeros(slots, jnp.int32)
    zero = jnp.zeros((), jnp.int32)
    state = _State(ys, at, zero, jnp.asarray(n, jnp.int32), carry, zero)

    def run(y, j0, m):
        return jax.lax.fori_loop(0, m, lambda i, y: advance(j0 + i, y), y)

    def body(st: _State):
        lo = st.at[st.top]
        l = st.end - lo
        free = slots - 1 - st.top
        # Reversing the checkpoint's own step, or with no slot free, needs no split.
        m = jax.lax.cond((l <= 1) | (free <= 0), lambda: jnp.maximum(l - 1, 0),
                         lambda: split(l, free, bits))
        y = run(st.ys[st.top], lo, m)
        q = lo + m
        direct = q == st.end - 1
        carry = jax.lax.cond(direct, lambda: backward(q, y, st.carry), lambda: st.carry)
        push = ~direct
        top_w = jnp.minimum(st.top + 1, slots - 1)
        ys = st.ys.at[top_w].set(jnp.where(push, y, st.ys[top_w]))
        at = st.at.at[top_w].set(jnp.where(push, q, st.at[top_w]))
        top = jnp.where(push, st.top + 1, jnp.where(direct & (m == 0) & (st.top > 0), st.top - 1, st.top))
        return _State(ys, at, top, jnp.where(direct, q, st.end), carry, st.advanced + m)

    st = jax.lax.while_loop(lambda st: st.end > 0, body, state)
    return st.carry, st.advanced
