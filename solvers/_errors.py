"""Run-time errors raised from compiled code: a host callback taken only on failure."""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
from equinox.internal import unvmap_any

from ._base import FAILURES, Status


class SolveError(RuntimeError):
    """A solve failed at run time (status in `FAILURES`), or its gradient could not be
    trusted; raised when throw=True."""


def _status_message(status):
    # Under vmap the host sees the whole batch: name the worst status.
    bad = np.isin(status, [int(s) for s in FAILURES])
    worst = Status(int(np.max(np.where(bad, status, -1))))
    return f"solve failed ({worst.name}): {worst.message}"


@functools.partial(jax.custom_jvp, nondiff_argnums=(3,))
def _checked(x, failed, info, message):
    """Identity on x that raises SolveError(message(info)) (also under jit) when failed;
    invisible to autodiff.

    A `lax.cond` around one host callback, taken only on failure: lighter to trace and
    compile than `eqx.branched_error_if`, which the first call of every solve pays for.
    `unvmap_any` keeps the predicate unbatched under vmap, so that the cond stays a cond
    (a batched one would become a select, calling back to the host on every solve).
    """
    def host(x, info):
        raise SolveError(message(np.asarray(info)))

    def bad(x, info):
        out = jax.ShapeDtypeStruct(x.shape, x.dtype)
        return jax.pure_callback(host, out, x, info, vmap_method="broadcast_all")

    return jax.lax.cond(unvmap_any(failed), bad, lambda x, info: x, x, info)


@_checked.defjvp
def _checked_jvp(message, primals, tangents):
    x, failed, info = primals
    return _checked(x, failed, info, message), tangents[0]


def raise_if_failed(status):
    """On the host, outside any trace: a SolveError naming the (worst) failed status."""
    status = np.asarray(status)
    if np.isin(status, [int(s) for s in FAILURES]).any():
        raise SolveError(_status_message(status))


def raise_on_failure(x, status):
    """x, or a SolveError naming the (worst) failed status."""
    failed = jnp.isin(status, jnp.asarray([int(s) for s in FAILURES]))
    return _checked(x, failed, status, _status_message)


def raise_if(x, pred, text: str):
    """x, or a SolveError with this text when pred holds."""
    return _checked(x, pred, jnp.zeros((), jnp.int32), lambda info: text)
