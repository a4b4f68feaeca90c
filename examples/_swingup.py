"""Training and judging shared by the swing-up examples (pendulum_swingup.py,
cartpole_swingup.py): Adam on a loss simulated from fresh random starts every step,
stopped early once a validation set of starts is balanced, and an honest verdict on
another fresh set over a longer horizon than training used."""

from __future__ import annotations

import time
from typing import Callable, NamedTuple

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax

import solvers


class Trained(NamedTuple):
    ctrl: eqx.Module
    losses: np.ndarray  # (steps,) training loss at each step
    steps: int  # gradient steps taken
    solved_at: int | None  # step at which the validation starts were first all balanced
    compile_s: float  # compiling one training step
    run_s: float  # the training loop itself (validation checks included)


def quiet_mlp(n_in, width, depth, key):
    """An MLP (tanh) of n_in features to one output whose last layer starts at zero: the
    untrained controller does not push (a random one pushes steadily one way: for the
    cart-pole it runs the cart off the track, initial loss ~35 instead of ~3)."""
    mlp = eqx.nn.MLP(n_in, 1, width, depth, activation=jnp.tanh, key=key)
    last = mlp.layers[-1]
    return eqx.tree_at(lambda m: (m.layers[-1].weight, m.layers[-1].bias), mlp,
                       (jnp.zeros_like(last.weight), jnp.zeros_like(last.bias)))


def _clock(fun, *args):
    t0 = time.perf_counter()
    out = jax.block_until_ready(fun(*args))
    return out, time.perf_counter() - t0


def train(ctrl, loss_fn: Callable, sample: Callable, key, steps: int, lr: float,
          check: Callable | None = None, check_every: int = 25, log=print,
          lr_scalable: bool = False) -> Trained:
    """Adam (gradient clipped to norm 1, learning rate cosine-decayed to lr / 10) on
    loss_fn(ctrl, y0s, progress), with y0s = sample(key) (B, d) fresh starts every step
    and progress = step / steps in [0, 1) (a traced scalar, for curricula).

    check(ctrl) -> (ok, text): run every `check_every` steps; training stops at the first
    ok (None: all `steps` are taken). With lr_scalable, check may return (ok, text, scale)
    instead: from then on the learning rate is multiplied by scale (1 until a check says
    otherwise; Adam's steps scale with it). The step is compiled ahead of time (timed
    apart)."""
    params, static = eqx.partition(ctrl, eqx.is_inexact_array)
    opt = optax.chain(optax.clip_by_global_norm(1.0),
                      optax.adam(optax.cosine_decay_schedule(lr, steps, alpha=0.1)))

    def step(params, state, key, progress, *scale):
        loss, g = jax.value_and_grad(lambda p: loss_fn(eqx.combine(p, static), sample(key), progress))(params)
        upd, state = opt.update(g, state, params)
        if scale:  # lr_scalable only: the plain step is compiled without it
            upd = jax.tree.map(lambda u: scale[0] * u, upd)
        return optax.apply_updates(params, upd), state, loss

    state = opt.init(params)
    keys = jax.random.split(key, steps)
    scale = (1.0,) if lr_scalable else ()
    compiled, compile_s = _clock(lambda: jax.jit(step).lower(params, state, keys[0], 0.0, *scale).compile())
    losses, solved_at, t0 = [], None, time.perf_counter()
    for i in range(steps):
        params, state, loss = compiled(params, state, keys[i], i / steps, *scale)
        losses.append(float(loss))
        if check is not None and ((i + 1) % check_every == 0 or i + 1 == steps):
            ok, text, *new_scale = check(eqx.combine(params, static))
            if lr_scalable and new_scale:
                scale = (float(new_scale[0]),)
            log(f"  step {i + 1:4d}  loss {losses[-1]:.4f}  {text}")
            if ok:
                solved_at = i + 1
                break
    run_s = time.perf_counter() - t0
    return Trained(eqx.combine(params, static), np.asarray(losses), len(losses), solved_at,
                   compile_s, run_s)


_JUDGES: dict = {}  # settled -> its compiled, vmapped version (compiled once, not per call)


def verdict(settled: Callable, ctrl, starts) -> tuple[bool, np.ndarray, np.ndarray]:
    """settled(ctrl, y0) -> (angle error (rad), other excess) over the judged window, for
    each of `starts` (n, d); success when every start has angle error < 0.1 rad and no
    excess (> 0: outside the track, still moving). Returns (ok, errors, excesses)."""
    if settled not in _JUDGES:
        _JUDGES[settled] = eqx.filter_jit(jax.vmap(settled, in_axes=(None, 0)))
    err, excess = (np.asarray(v) for v in _JUDGES[settled](ctrl, starts))
    return bool(np.all(err < 0.1) and np.all(excess <= 0.0)), err, excess


def failed_solve(sol, excess):
    """excess, or inf where the judging solve did not succeed (no silent verdict on a
    truncated trajectory)."""
    return jnp.where(sol.status == solvers.Status.SUCCESS, excess, jnp.inf)


def window_max(ts, values, start):
    """max of values (n,) over ts >= start (the judged window)."""
    return jnp.max(jnp.where(ts >= start - 1e-9, values, -jnp.inf))


def sat(s):
    """s / (1 + s): a cost that grows like s near 0 and stays below 1."""
    return s / (1.0 + s)


def discount(progress, start=0.2, end=100.0, reach=0.6):
    """The loss's discount time tau (s) at training progress in [0, 1]: `start` growing
    geometrically to `end` (practically undiscounted) at progress `reach`.

    Why (discount annealing): from a controller that does nothing, raising the cart-pole's
    balancing gains towards LQR's first raises the undiscounted 2 s cost (falls that start
    later end worse: measured 0.56 at zero gain, 0.97 at 10% of LQR, 0.16 at LQR), so
    plain gradient descent walks away from balancing; with tau = 0.2-0.3 s the cost falls
    monotonically along that path (0.31, 0.30, 0.25, 0.15 at 0, 10, 20, 100%)."""
    return start * (end / start) ** jnp.minimum(progress / reach, 1.0)
