"""How gradients flow through a solve.

Every adjoint is an `AbstractAdjoint` that owns how the forward loop runs
(`loop`). The reverse-mode ones share one `jax.custom_vjp` (`AbstractReverseAdjoint`)
and differ in what the forward pass records and how the backward pass gets the
states it needs; `ForwardMode` differentiates straight through the loop.
"""

from __future__ import annotations

import abc
import dataclasses
from typing import Any, Optional

import equinox as eqx
import equinox.internal as eqxi
import jax
import jax.numpy as jnp
import numpy as np
from jax.custom_derivatives import CustomVJPPrimal, SymbolicZero
from jax.flatten_util import ravel_pytree

from . import _loop, _sensitivity
from ._backsolve import backsolve
from ._discrete import binomial_backward, discrete_backward


class AbstractAdjoint(eqx.Module):
    """How a solve is run so that it can be differentiated (an extension point).

    `loop(prob, y0, p, ss, h0)` runs `_loop.forward(prob, y0, p, ss, h0)` (or its
    equivalent) and returns its `_loop.Out`, with whatever derivative rule the adjoint
    defines; p is a `_loop.Params`, of which p.args, p.t0 and p.t1 are differentiable.
    `prob.record_every == 1` means the step records are an output (dense output or
    SaveAt(steps=True)) and must be differentiable too.
    """

    @abc.abstractmethod
    def loop(self, prob: _loop.Problem, y0, p: _loop.Params, ss, h0) -> _loop.Out:
        """Run the forward loop with this adjoint's derivative rule."""

    def check(self, saveat) -> None:
        """Raise ValueError for what this adjoint cannot differentiate."""


class Needs(eqx.Module):
    """Which inputs of a solve are being differentiated (static booleans)."""

    y0: bool
    args: bool
    t0: bool
    t1: bool
    ss: bool
    records: bool  # the step records are an output (dense output, SaveAt(steps=True))

    def as_tuple(self):
        return (self.y0, self.args, self.t0, self.t1, self.ss)


class AbstractReverseAdjoint(AbstractAdjoint):
    """Reverse mode through a custom VJP: the forward pass records what
    `record_every` asks for, the backward pass is `backward`."""

    @abc.abstractmethod
    def record_every(self, max_steps: int) -> int:
        """0: record nothing, 1: every step, k: every k-th state (checkpoints)."""

    def recording(self, prob, y0) -> int:
        """What the forward pass records for a solve of the flat state y0 (as
        `record_every`; an adjoint whose choice depends on the state's size overrides it)."""
        return self.record_every(prob.max_steps)

    @abc.abstractmethod
    def backward(self, prob, y0, p, ss, residual, ct, needs: Needs):
        """Cotangents (y0, args, t0, t1, ss) from the outputs' cotangents ct."""

    def forward_pass(self, prob, y0, p, ss, h0, needs: Needs):
        """The forward pass under differentiation: (outputs, residual for backward)."""
        out = _loop.forward(prob, y0, p, ss, h0)
        return out, (out, h0)

    def loop(self, prob, y0, p, ss, h0):
        return _reverse_loop(self, prob, y0, p, ss, h0)


def _public(out: _loop.Out, public: bool) -> _loop.Out:
    """What the custom VJP returns: the step records only when they are an output (the
    primal and the forward pass record different amounts, and must return alike)."""
    if public:
        return out
    rec = out.records
    return out._replace(records=rec._replace(table=jnp.zeros((0, 2), rec.table.dtype),
                                             y=jnp.zeros((0,) + rec.y.shape[1:], rec.y.dtype)))


def _reverse_loop(adjoint: AbstractReverseAdjoint, prob, y0, p, ss, h0):
    public = prob.record_every == 1
    rec_prob = prob if public else prob.recording(adjoint.recording(prob, y0))
    needs_box = {}

    # Every input is an argument, not a closure: custom_vjp must not close over tracers.
    @jax.custom_vjp
    def solve(y0, p, ss, h0):
        return _public(_loop.forward(prob, y0, p, ss, h0), public)

    def fwd(y0, p, ss, h0):
        is_p = lambda x: isinstance(x, CustomVJPPrimal)  # noqa: E731
        perturbed = lambda tree: any(x.perturbed for x in jax.tree_util.tree_leaves(tree, is_leaf=is_p))  # noqa: E731
        needs = Needs(y0=perturbed(y0), args=perturbed(p.args), t0=perturbed(p.t0), t1=perturbed(p.t1),
                      ss=perturbed(ss), records=public)
        needs_box["needs"] = needs
        y0, p, ss, h0 = jax.tree_util.tree_map(lambda x: x.value, (y0, p, ss, h0), is_leaf=is_p)
        out, residual = adjoint.forward_pass(rec_prob, y0, p, ss, h0, needs)
        return _public(out, public), (y0, p, ss, h0, residual)

    def bwd(res, ct):
        y0, p, ss, h0, residual = res
        ct = jax.tree_util.tree_map(_instantiate, ct, is_leaf=lambda x: isinstance(x, SymbolicZero))
        a, ct_args, ct_t0, ct_t1, ct_ss = adjoint.backward(rec_prob, y0, p, ss, residual, ct, needs_box["needs"])
        # Nothing flows to the carried constants (integers, tolerances) or the first step.
        consts = jax.tree_util.tree_map(_zero_cotangent, p.consts)
        return a, _loop.Params(ct_args, ct_t0, ct_t1, consts), ct_ss, jnp.zeros_like(h0)

    solve.defvjp(fwd, bwd, symbolic_zeros=True)
    return solve(y0, p, ss, h0)


def _zero_cotangent(x):
    x = jnp.asarray(x)
    if jnp.issubdtype(x.dtype, jnp.inexact):
        return jnp.zeros_like(x)
    return np.zeros(x.shape, jax.dtypes.float0)


def _instantiate(x):
    if isinstance(x, SymbolicZero):
        return jnp.zeros(x.shape, x.dtype) if x.dtype != jax.dtypes.float0 else np.zeros(x.shape, x.dtype)
    return x


DEFAULT_BUDGET = 256 * 2**20


def sparse_recording(max_steps):
    # A record_every beyond max_steps: the loop stores (s, h) of every step and the state
    # of step 0 only (the binomial backward pass starts from y0).
    return max_steps + 1


def record_bytes(max_steps, y0) -> int:
    """Bytes of DiscreteAdjoint's step record: max_steps rows of (s, h, y)."""
    return int(max_steps) * (int(y0.size) + 2) * np.dtype(y0.dtype).itemsize


# States of a step's own workspace held back from a memory budget: the stages and their
# cotangents (Dopri8: 13 stages, so 2 x (13 + 3) = 32). Without it the compiled gradient's
# scratch memory was 0.23 MiB over a 4 MiB budget (Tsit5, d = 2048; tests/test_checkpointing.py).
WORKSPACE_STATES = 32


def budget_slots(budget, max_steps, y0) -> int:
    """How many states of the size of y0 fit in `budget` bytes beside the (s, h) record and
    a step's workspace (WORKSPACE_STATES states)."""
    item = np.dtype(y0.dtype).itemsize
    state = max(1, int(y0.size) * item)
    free = int(budget) - 2 * int(max_steps) * item - WORKSPACE_STATES * state
    return max(1, free // state)


def check_checkpoints(name, c):
    """TypeError / ValueError unless `checkpoints` is an int >= 1."""
    if isinstance(c, bool) or not isinstance(c, (int, np.integer)):
        raise TypeError(f"{name}(checkpoints=N) needs an int N >= 1, got {c!r}")
    if c < 1:
        raise ValueError(f"{name}(checkpoints=N) needs N >= 1, got {c}")


def refuse_records(saveat, name, why):
    """ValueError if `saveat` asks for dense output or every step, which the adjoint `name`
    cannot differentiate (`why`: its reason)."""
    if saveat.dense or saveat.steps:
        raise ValueError(f"{name} {why}, so it cannot differentiate dense output or SaveAt(steps=True): use "
                         f"DiscreteAdjoint() or CheckpointAdjoint()")


def _check_budget(name, budget):
    if isinstance(budget, bool) or not isinstance(budget, (int, np.integer)) or budget <= 0:
        raise ValueError(f"{name}(memory_budget=B) needs a positive int number of bytes, got {budget!r}")


class DiscreteAdjoint(AbstractReverseAdjoint):
    """Exact reverse-mode gradient of the computed solution (the default).

    Under differentiation the forward loop records every accepted step (s, h, y); the
    backward pass runs the steps in reverse applying each step's VJP. Memory grows as
    max_steps x state size (a (max_steps, 2 + d) buffer, only while differentiating).
    When that record would exceed `memory_budget` bytes, that is when
    max_steps x (d + 2) x itemsize > memory_budget (d the number of state components),
    it switches by itself to `CheckpointAdjoint`'s binomial schedule with as many
    checkpoints as fit in the budget: the same gradient to rounding error, for some
    recomputation. Forward mode (`jax.jvp`): use `ForwardMode`.

    forward_below: when at most this many scalar inputs are differentiated (say a few
        parameters), the same derivative is computed in forward mode instead: one
        tangent per input carried along the forward solve, no step record and no
        backward pass, several times cheaper for few inputs. 0: always run the
        backward pass. The two agree to rounding error.
    memory_budget: bytes the step record may take before the binomial schedule takes
        over (default 256 MiB).
    """

    forward_below: int = 8
    memory_budget: int = DEFAULT_BUDGET

    def __check_init__(self):
        if not isinstance(self.forward_below, (int, np.integer)) or self.forward_below < 0:
            raise ValueError(f"DiscreteAdjoint(forward_below=N) needs an int N >= 0, got {self.forward_below!r}")
        _check_budget("DiscreteAdjoint", self.memory_budget)

    def record_every(self, max_steps):
        return 1

    def recording(self, prob, y0):
        over = record_bytes(prob.max_steps, y0) > self.memory_budget
        return sparse_recording(prob.max_steps) if over else 1

    def _forward_route(self, y0, p, ss, needs):
        n_in = sum(ravel_pytree(x)[0].size for x, n in zip(_parts(y0, p, ss), needs.as_tuple()) if n)
        return n_in <= self.forward_below and not needs.records

    def forward_pass(self, prob, y0, p, ss, h0, needs):
        if not self._forward_route(y0, p, ss, needs):
            return super().forward_pass(prob, y0, p, ss, h0, needs)
        return _forward_jacobian(prob.recording(0), y0, p, ss, h0, needs)

    def backward(self, prob, y0, p, ss, residual, ct, needs):
        if self._forward_route(y0, p, ss, needs):
            return _contract(residual, ct, y0, p, ss, needs)
        if prob.record_every == 1:
            return discrete_backward(prob, y0, p, ss, residual[0], ct, needs)
        slots = budget_slots(self.memory_budget, prob.max_steps, y0)
        return binomial_backward(prob, y0, p, ss, residual[0], ct, needs, slots)


class CheckpointAdjoint(AbstractReverseAdjoint):
    """The `DiscreteAdjoint` gradient with bounded memory (binomial checkpointing).

    The forward pass records only (s, h) of each step (2 numbers a step); the backward
    pass recomputes the steps' start states from at most `checkpoints` stored states
    (y0 included), placed by the optimal binomial schedule of revolve (Griewank and
    Walther), computed at run time for the actual number of steps n. With c stored
    states and n <= C(c + r, c), no step is recomputed more than r times, and the total
    recomputation is the least possible: r n - C(c + r + 1, r - 1) steps with r the
    least such r (for example n = 1000 steps: c = 8 states, r = 5, 4285 steps recomputed,
    4.3 more forward solves; c = 64, r = 2, 1934 steps). This counts the first sweep from
    y0: the forward pass stores no state, so an online schedule that places checkpoints
    during the forward pass (diffrax's treeverse) recomputes up to n steps fewer.
    Memory: checkpoints x state size + 2 x max_steps numbers. Gradients equal
    DiscreteAdjoint's to rounding error. With dense output or SaveAt(steps=True)
    every step is kept anyway (it is an output).

    checkpoints: how many states may be stored (int >= 1; 1 stores only y0, and costs
        n^2 / 2 steps).
    memory_budget: alternatively, bytes the stored states may take (int); the number of
        checkpoints is then what fits in it beside a step's workspace (32 states), at least 1.
    """

    checkpoints: int = 64
    memory_budget: Optional[int] = None

    def __check_init__(self):
        check_checkpoints("CheckpointAdjoint", self.checkpoints)
        if self.memory_budget is not None:
            _check_budget("CheckpointAdjoint", self.memory_budget)

    def slots(self, max_steps, y0) -> int:
        """The number of states stored for a solve of the flat state y0."""
        if self.memory_budget is None:
            return int(self.checkpoints)
        return budget_slots(self.memory_budget, max_steps, y0)

    def record_every(self, max_steps):
        return sparse_recording(max_steps)

    def backward(self, prob, y0, p, ss, residual, ct, needs):
        if prob.record_every == 1:
            return discrete_backward(prob, y0, p, ss, residual[0], ct, needs)
        return binomial_backward(prob, y0, p, ss, residual[0], ct, needs, self.slots(prob.max_steps, y0))


class BacksolveAdjoint(AbstractReverseAdjoint):
    """Continuous adjoint: solve the adjoint ODE backwards in time alongside y.

    O(1) memory in the number of steps, but approximate: the gradient of the exact
    solution, not of the computed one, so it agrees with finite differences only to
    about the solver tolerance. Unreliable when the backwards solve of y itself is
    unstable (dissipative or chaotic systems run backwards, stiff problems) or when
    the forward solution is inaccurate. Dense output (`SaveAt(dense=True)`) and
    `SaveAt(steps=True)` are not available with it.

    max_error: the backwards solve reconstructs y(t0); when it lands further from y0 than
        max_error times the solve's tolerance (RMS of the error over atol + rtol |y0|), the
        backwards problem was unstable and the gradient is refused: `SolveError` with
        throw=True, NaN with throw=False. Never a quietly wrong gradient.
    """

    max_error: float = 1e3

    def __check_init__(self):
        if not (isinstance(self.max_error, (int, float)) and self.max_error > 0):
            raise ValueError(f"BacksolveAdjoint(max_error=...) must be a positive number, got {self.max_error!r}")

    def check(self, saveat):
        refuse_records(saveat, "BacksolveAdjoint", "keeps no record of the steps")

    def record_every(self, max_steps):
        return 0

    def backward(self, prob, y0, p, ss, residual, ct, needs):
        out, h0 = residual
        return backsolve(prob, y0, p, ss, out, ct, h0, self.max_error)


class ForwardMode(AbstractAdjoint):
    """Forward-mode differentiation (`jax.jvp`, `jax.jacfwd`) straight through the loop.

    Cheapest when there are few inputs and many outputs. Reverse mode (`jax.grad`) does
    not work with it: use DiscreteAdjoint for that.
    """

    def loop(self, prob, y0, p, ss, h0):
        out = _loop.forward(prob, y0, p, ss, h0)
        return eqxi.nondifferentiable_backward(
            out, msg="solve(adjoint=ForwardMode()) supports forward mode (jax.jvp, jax.jacfwd) only; for "
            "reverse mode (jax.grad, jax.vjp) use adjoint=solvers.DiscreteAdjoint() (the default)",
        )


def _parts(y0, p, ss):
    return (y0, p.args, p.t0, p.t1, ss)


def _outputs(out):
    # The differentiable outputs of the loop.
    return out.ys, out.y_final, out.s_final, out.s_events, out.y_events


def _forward_jacobian(prob, y0, p, ss, h0, needs):
    """The loop's outputs and their Jacobian with respect to the differentiated inputs
    (flattened into one vector), by forward mode: one tangent per input, carried along
    (as extra state components where the method allows it, see `_sensitivity.py`)."""
    if _sensitivity.applies(prob, y0, needs):
        out, jac = _sensitivity.forward_jacobian(prob, y0, p, ss, h0, needs)
        return out, _outputs(jac)
    parts, need = _parts(y0, p, ss), needs.as_tuple()
    x, unravel = ravel_pytree(tuple(part for part, n in zip(parts, need) if n))
    prob = dataclasses.replace(prob, differentiable_records=False)

    def run(x):
        given = iter(unravel(x))
        y0, args, t0, t1, ss = (next(given) if n else part for part, n in zip(parts, need))
        out = _loop.forward(prob, y0, _loop.Params(args, t0, t1, p.consts), ss, h0)
        return _outputs(out), out

    jac, out = jax.jacfwd(run, has_aux=True)(x)
    return out, jac  # (outputs, residual)


def _contract(jac, ct, y0, p, ss, needs):
    """Cotangents of the inputs from the outputs' cotangents and their Jacobian."""
    parts, need = _parts(y0, p, ss), needs.as_tuple()
    _, unravel = ravel_pytree(tuple(part for part, n in zip(parts, need) if n))
    g = sum(jnp.tensordot(c, J, axes=c.ndim) for c, J in zip(_outputs(ct), jac))
    given = iter(unravel(g))
    return tuple(next(given) if n else _zeros_like(part) for part, n in zip(parts, need))


def _zeros_like(tree: Any):
    return jax.tree_util.tree_map(jnp.zeros_like, tree)
