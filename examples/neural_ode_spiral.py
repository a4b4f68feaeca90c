"""A neural ODE fitted to a 2-D spiral (the torchdiffeq / diffrax classic).

Data: the spiral dy/dt = y^3 A with A = [[-0.1, 2], [-2, -0.1]] (elementwise cube),
y(0) = (2, 0), sampled at n times in [0, T]. Model: dy/dt = MLP(y^3) (tanh MLP), an equinox MLP
passed as `args` of `solvers.solve`; loss: mean squared error of the solution at the
sample times; optimiser: optax Adam. Gradients by `jax.grad` through the solve (the
default DiscreteAdjoint: exact gradients of the computed solution).

Training follows a curriculum: first on the first 30% of the trajectory, then on all
of it (fitting a long trajectory from scratch is a hard, non-convex problem).

    python examples/neural_ode_spiral.py                 # full fit, writes to out/neural_ode_spiral
    python examples/neural_ode_spiral.py --quick --out /tmp/node
"""

from __future__ import annotations

import argparse
import os
import time

import jax

jax.config.update("jax_enable_x64", True)

import equinox as eqx  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
import optax  # noqa: E402

import solvers  # noqa: E402

A_TRUE = jnp.array([[-0.1, 2.0], [-2.0, -0.1]])


def spiral(t, y, args):
    return (y**3) @ A_TRUE


class Field(eqx.Module):
    """dy/dt = MLP(y^3); the MLP's arrays are the trainable parameters."""

    mlp: eqx.nn.MLP

    def __init__(self, key, width=48, depth=2):
        self.mlp = eqx.nn.MLP(2, 2, width, depth, activation=jnp.tanh, key=key)

    def __call__(self, t, y, args):
        return self.mlp(y**3)


def make_data(n=100, T=10.0):
    ts = jnp.linspace(0.0, T, n)
    y0 = jnp.array([2.0, 0.0])
    sol = solvers.solve(spiral, y0, 0.0, T, ts=ts, rtol=1e-9, atol=1e-9)
    return ts, y0, sol.ys


def predict(model, ts, y0):
    # args carries the model's arrays (what gradients flow to); the rest of the module
    # (activation functions, shapes) is closed over.
    params, static = eqx.partition(model, eqx.is_inexact_array)

    def rhs(t, y, p):
        return eqx.combine(p, static)(t, y, None)

    sol = solvers.solve(rhs, y0, ts[0], ts[-1], params, ts=ts, rtol=1e-5, atol=1e-5, max_steps=512)
    return sol.ys


@eqx.filter_jit
def loss_fn(model, ts, y0, ys):
    return jnp.mean((predict(model, ts, y0) - ys) ** 2)


def train(model, ts, y0, ys, steps, lr=3e-3, log=print, every=100):
    opt = optax.adam(lr)
    state = opt.init(eqx.filter(model, eqx.is_inexact_array))

    @eqx.filter_jit
    def step(model, state):
        loss, g = eqx.filter_value_and_grad(loss_fn)(model, ts, y0, ys)
        upd, state = opt.update(g, state, eqx.filter(model, eqx.is_inexact_array))
        return eqx.apply_updates(model, upd), state, loss

    losses = []
    for i in range(steps):
        model, state, loss = step(model, state)
        losses.append(float(loss))
        if i % every == 0 or i == steps - 1:
            log(f"  step {i:4d}  loss {float(loss):.5f}")
    return model, losses


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="a few optimisation steps (for tests)")
    ap.add_argument("--out", default="out/neural_ode_spiral", help="directory for the picture")
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args(argv)
    os.makedirs(a.out, exist_ok=True)

    n, T = (40, 10.0) if a.quick else (100, 10.0)
    steps = (15, 15) if a.quick else (600, 1200)
    ts, y0, ys = make_data(n, T)
    model = Field(jax.random.PRNGKey(a.seed))
    loss0 = float(loss_fn(model, ts, y0, ys))
    print(f"initial loss (full trajectory): {loss0:.5f}")
    t_start = time.perf_counter()
    cut = max(3, int(0.3 * n))
    print(f"stage 1: first {cut} of {n} samples, {steps[0]} Adam steps")
    model, l1 = train(model, ts[:cut], y0, ys[:cut], steps[0], every=max(1, steps[0] // 5))
    print(f"stage 2: all {n} samples, {steps[1]} Adam steps")
    model, l2 = train(model, ts, y0, ys, steps[1], every=max(1, steps[1] // 6))
    wall = time.perf_counter() - t_start
    loss1 = float(loss_fn(model, ts, y0, ys))
    print(f"final loss (full trajectory): {loss1:.5f}")
    print(f"loss ratio final/initial: {loss1 / loss0:.3g}")
    print(f"training wall time: {wall:.1f} s ({sum(steps)} steps)")

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    tf = jnp.linspace(0.0, T, 400)
    fit = np.asarray(predict(model, tf, y0))
    data = np.asarray(ys)
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(9, 3.8))
    ax1.plot(data[:, 0], data[:, 1], "o", ms=3, label="data")
    ax1.plot(fit[:, 0], fit[:, 1], "-", label="neural ODE")
    ax1.set_aspect("equal")
    ax1.set_title("spiral: data vs fit")
    ax1.legend(fontsize=8)
    ax2.semilogy(l1 + l2)
    ax2.axvline(len(l1), color="k", ls=":", lw=0.8)
    ax2.set_xlabel("Adam step")
    ax2.set_ylabel("MSE")
    ax2.set_title("training loss (dotted: full trajectory from here)")
    fig.tight_layout()
    path = os.path.join(a.out, "neural_ode_spiral.png")
    fig.savefig(path, dpi=80)
    print(f"wrote {path}")
    return loss0, loss1


if __name__ == "__main__":
    main()
