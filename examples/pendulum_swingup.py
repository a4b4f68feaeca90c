"""Pendulum swing-up with a neural controller trained through the ODE solver.

A pendulum (m = l = 1, g = 9.81, light damping b = 0.05) starts hanging at rest,
theta = 0 (down); upright is theta = pi. The controller is an equinox MLP of
(cos theta, sin theta, omega) whose torque is bounded by tanh: |u| <= U_MAX = 3 N m,
less than the m g l = 9.81 N m needed to lift the pendulum straight up, so it must
pump energy by swinging back and forth before it can balance.

Each training episode is one simulation of T = 5 s with `solvers.solve` (fixed-step
RK4, dt = 0.02 s, states saved every 0.05 s) and one Adam step on the gradient of the
loss, obtained by `jax.grad` straight through the solve. The loss combines, over the
saved times with weights growing in time:
  * the angle error 1 + cos(theta) (0 upright, 2 hanging), weighted by (t / T)^2;
  * the energy error (E - E_top)^2 / E_top^2 (energy shaping: the pumping signal),
    averaged uniformly over time;
  * omega^2 over the last second (come to rest at the top).
Success ("swung up"): over the whole last second of the episode the pendulum stays
within 0.5 rad (29 degrees) of upright. The controller then keeps wobbling near the top
(|omega| ~ 1-2 rad/s): precise balancing needs more training or a balancing loss.
The script reports how many episodes (gradient steps) that took.

    python examples/pendulum_swingup.py                 # full training, writes to out/pendulum_swingup
    python examples/pendulum_swingup.py --quick --out /tmp/pend
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

G, B, U_MAX = 9.81, 0.05, 3.0
T, DT, N_SAVE = 5.0, 0.02, 101
E_TOP = G  # energy (per m l^2) at rest upright: 0.5 w^2 - g cos(theta) with theta = pi


class Controller(eqx.Module):
    mlp: eqx.nn.MLP

    def __init__(self, key, width=32, depth=2):
        self.mlp = eqx.nn.MLP(3, 1, width, depth, activation=jnp.tanh, key=key)

    def __call__(self, theta, omega):
        x = jnp.stack([jnp.cos(theta), jnp.sin(theta), omega])
        return U_MAX * jnp.tanh(self.mlp(x)[0])


def simulate(ctrl, y0=(0.0, 0.0), ts=None):
    """theta, omega at the save times (default: N_SAVE points over [0, T])."""
    ts = jnp.linspace(0.0, T, N_SAVE) if ts is None else ts
    params, static = eqx.partition(ctrl, eqx.is_inexact_array)

    def f(t, y, p):
        theta, omega = y[0], y[1]
        u = eqx.combine(p, static)(theta, omega)
        return jnp.stack([omega, -G * jnp.sin(theta) - B * omega + u])

    sol = solvers.solve(f, jnp.asarray(y0, float), 0.0, T, params, method=solvers.RK4(),
                        adaptive=False, dt0=DT, ts=ts, max_steps=int(T / DT) + 8)
    return ts, sol.ys[:, 0], sol.ys[:, 1]


def angle_error(theta):
    """Wrapped distance to upright, in [0, pi]."""
    return jnp.abs(jnp.mod(theta - jnp.pi + jnp.pi, 2 * jnp.pi) - jnp.pi)


def loss_fn(ctrl):
    ts, th, om = simulate(ctrl)
    w = (ts / T) ** 2
    w = w / jnp.sum(w)
    energy = 0.5 * om**2 - G * jnp.cos(th)
    last = ts >= T - 1.0
    return (jnp.sum(w * (1.0 + jnp.cos(th)))
            + jnp.mean(((energy - E_TOP) / E_TOP) ** 2)
            + 0.02 * jnp.mean(jnp.where(last, om**2, 0.0)))


@eqx.filter_jit
def _final_second(ctrl):
    ts, th, om = simulate(ctrl)
    last = ts >= T - 1.0
    return jnp.max(jnp.where(last, angle_error(th), 0.0)), jnp.max(jnp.where(last, jnp.abs(om), 0.0))


def success(ctrl):
    err, spin = (float(v) for v in _final_second(ctrl))
    return err < 0.5, err, spin


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="a few episodes (for tests)")
    ap.add_argument("--out", default="out/pendulum_swingup", help="directory for the pictures")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--episodes", type=int, default=None, help="maximum training episodes")
    ap.add_argument("--lr", type=float, default=1e-2)
    a = ap.parse_args(argv)
    os.makedirs(a.out, exist_ok=True)
    max_ep = a.episodes if a.episodes is not None else (8 if a.quick else 400)

    ctrl = Controller(jax.random.PRNGKey(a.seed))
    opt = optax.adam(a.lr)
    state = opt.init(eqx.filter(ctrl, eqx.is_inexact_array))

    @eqx.filter_jit
    def step(ctrl, state):
        loss, g = eqx.filter_value_and_grad(loss_fn)(ctrl)
        upd, state = opt.update(g, state, eqx.filter(ctrl, eqx.is_inexact_array))
        return eqx.apply_updates(ctrl, upd), state, loss

    loss0 = float(eqx.filter_jit(loss_fn)(ctrl))
    print(f"initial loss {loss0:.4f}")
    losses, solved_at = [], None
    t0 = time.perf_counter()
    for ep in range(1, max_ep + 1):
        ctrl, state, loss = step(ctrl, state)
        losses.append(float(loss))
        ok, err, spin = success(ctrl)
        if ep % 10 == 0 or ok or ep == max_ep:
            print(f"  episode {ep:4d}  loss {float(loss):.4f}  final-second max angle error "
                  f"{err:.3f} rad  max |omega| {spin:.3f}")
        if ok:
            solved_at = ep
            break
    wall = time.perf_counter() - t0
    loss1 = float(eqx.filter_jit(loss_fn)(ctrl))
    print(f"final loss {loss1:.4f}")
    print(f"loss ratio final/initial: {loss1 / loss0:.3g}")
    if solved_at is not None:
        print(f"swing-up solved after {solved_at} training episodes (gradient steps), {wall:.1f} s")
    else:
        print(f"not solved within {max_ep} episodes ({wall:.1f} s)")

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ts, th, om = (np.asarray(v) for v in simulate(ctrl, ts=jnp.linspace(0.0, T, 251)))
    u = np.asarray(jax.vmap(ctrl)(jnp.asarray(th), jnp.asarray(om)))
    fig, axs = plt.subplots(1, 3, figsize=(12, 3.6))
    axs[0].plot(ts, th, label="theta (rad)")
    axs[0].axhline(np.pi, color="k", ls=":", lw=0.8)
    axs[0].axhline(-np.pi, color="k", ls=":", lw=0.8)
    axs[0].plot(ts, u, label="torque (N m)")
    axs[0].set_xlabel("t (s)")
    axs[0].legend(fontsize=8)
    axs[0].set_title("swing-up (dotted: upright)")
    x, y = np.sin(th), -np.cos(th)
    idx = np.linspace(0, len(ts) - 1, 26).astype(int)
    cmap = plt.get_cmap("viridis")
    for k, i in enumerate(idx):
        c = cmap(k / (len(idx) - 1))
        axs[1].plot([0, x[i]], [0, y[i]], color=c, lw=1.2, alpha=0.8)
        axs[1].plot(x[i], y[i], "o", color=c, ms=4)
    axs[1].set_aspect("equal")
    axs[1].set_xlim(-1.2, 1.2)
    axs[1].set_ylim(-1.2, 1.2)
    axs[1].set_title("pendulum every 0.2 s (dark to light)")
    axs[2].semilogy(losses)
    axs[2].set_xlabel("training episode")
    axs[2].set_ylabel("loss")
    axs[2].set_title("training")
    fig.tight_layout()
    path = os.path.join(a.out, "pendulum_swingup.png")
    fig.savefig(path, dpi=80)
    print(f"wrote {path}")
    return solved_at


if __name__ == "__main__":
    main()
