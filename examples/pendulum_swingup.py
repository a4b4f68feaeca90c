"""Pendulum swing-up and balance with a neural controller trained through the ODE solver.

A pendulum theta'' = -(g/l) sin theta - b theta' + u / (m l^2), with m = l = 1,
g = 9.81, b = 0.1, starts hanging at rest, theta = 0 (down); upright is theta = pi
(mod 2 pi). The controller is an equinox MLP of (sin theta, cos theta, omega) whose
torque is bounded by tanh: |u| <= U_MAX = 5 N m, about half the m g l = 9.81 N m needed
to hold the pendulum horizontal, so it cannot lift it directly: it must pump energy by
swinging back and forth, then catch it at the top and hold it there.

Each training episode simulates T = 7 s with `solvers.solve` (fixed-step RK4,
dt = 0.025 s, states saved every 0.05 s with `ts`) from a few starting states at once
(`jax.vmap`: hanging at rest, plus small offsets for robustness), and takes one Adam
step on the gradient of the loss, obtained by `jax.grad` straight through the solves.
The loss is a time-weighted mean over the saved times, weights growing as (t / T)^2, of
  * the angle error 1 + cos(theta) (0 upright, 2 hanging),
  * small penalties on omega^2 and u^2 (come to rest, do not waste torque),
plus the uniform time mean of the energy error ((E - E_top) / E_top)^2 with
E = omega^2 / 2 - g cos(theta) (energy shaping: the signal that teaches it to pump;
without it training settles on spinning over the top).
Success: from hanging at rest, the pendulum stays within 0.1 rad of upright with
|omega| < 0.5 rad/s over the whole last 1.5 s. The script reports how many episodes
(gradient steps) that took and the hold error over the last second.

    python examples/pendulum_swingup.py                 # full training, writes to out/pendulum_swingup
    python examples/pendulum_swingup.py --quick --out /tmp/pend
"""

from __future__ import annotations

import argparse
import os
import time

import jax

jax.config.update("jax_enable_x64", True)

import equinox as eqx
import jax.numpy as jnp
import numpy as np
import optax

import solvers

G, B, U_MAX = 9.81, 0.1, 5.0
T, DT, N_SAVE = 7.0, 0.025, 141
HOLD = 1.5  # seconds at the end that must be spent balanced
# starting states (theta, omega) trained on; the first is the demo's (hanging at rest)
STARTS = jnp.array([[0.0, 0.0], [0.3, 0.0], [-0.3, 0.0], [0.0, 1.0], [0.0, -1.0]])
W_OMEGA, W_U, W_E = 0.05, 0.002, 1.0
E_TOP = G


class Controller(eqx.Module):
    mlp: eqx.nn.MLP

    def __init__(self, key, width=32, depth=2):
        self.mlp = eqx.nn.MLP(3, 1, width, depth, activation=jnp.tanh, key=key)

    def __call__(self, theta, omega):
        x = jnp.stack([jnp.sin(theta), jnp.cos(theta), omega / 4.0])
        return U_MAX * jnp.tanh(self.mlp(x)[0])


def dynamics(t, y, ctrl):
    theta, omega = y[0], y[1]
    return jnp.stack([omega, -G * jnp.sin(theta) - B * omega + ctrl(theta, omega)])


def simulate(ctrl, y0=(0.0, 0.0), ts=None):
    """theta, omega at the save times (default: N_SAVE points over [0, T])."""
    ts = jnp.linspace(0.0, T, N_SAVE) if ts is None else ts
    sol = solvers.solve(dynamics, jnp.asarray(y0, float), 0.0, T, ctrl, method=solvers.RK4(),
                        adaptive=False, dt0=DT, ts=ts, max_steps=int(T / DT) + 8)
    return ts, sol.ys[:, 0], sol.ys[:, 1]


def angle_error(theta):
    """Wrapped distance to upright, in [0, pi]."""
    return jnp.abs(jnp.mod(theta, 2 * jnp.pi) - jnp.pi)


def episode_loss(ctrl, y0):
    ts, th, om = simulate(ctrl, y0)
    u = jax.vmap(ctrl)(th, om)
    w = (ts / T) ** 2
    cost = (1.0 + jnp.cos(th)) + W_OMEGA * om**2 + W_U * u**2
    energy = 0.5 * om**2 - G * jnp.cos(th)  # per m l^2; E_TOP at rest upright
    return jnp.sum(w * cost) / jnp.sum(w) + W_E * jnp.mean(((energy - E_TOP) / E_TOP) ** 2)


def loss_fn(ctrl):
    return jnp.mean(jax.vmap(episode_loss, in_axes=(None, 0))(ctrl, STARTS))


@eqx.filter_jit
def hold_error(ctrl, window):
    """Max angle from upright and max |omega| over the last `window` seconds (from rest, hanging)."""
    ts, th, om = simulate(ctrl)
    last = ts >= T - window - 1e-9
    return jnp.max(jnp.where(last, angle_error(th), 0.0)), jnp.max(jnp.where(last, jnp.abs(om), 0.0))


def success(ctrl):
    err, spin = (float(v) for v in hold_error(ctrl, HOLD))
    return err < 0.1 and spin < 0.5, err, spin


def train(ctrl, max_ep, lr, log=print):
    """Adam on loss_fn until success (or max_ep episodes); returns ctrl, losses, solved_at."""
    opt = optax.chain(optax.clip_by_global_norm(1.0), optax.adam(lr))
    state = opt.init(eqx.filter(ctrl, eqx.is_inexact_array))

    @eqx.filter_jit
    def step(ctrl, state):
        loss, g = eqx.filter_value_and_grad(loss_fn)(ctrl)
        upd, state = opt.update(g, state, eqx.filter(ctrl, eqx.is_inexact_array))
        return eqx.apply_updates(ctrl, upd), state, loss

    losses = []
    for ep in range(1, max_ep + 1):
        ctrl, state, loss = step(ctrl, state)
        losses.append(float(loss))
        ok, err, spin = success(ctrl)
        if ep % 20 == 0 or ok or ep == max_ep:
            log(f"  episode {ep:4d}  loss {float(loss):.4f}  last {HOLD} s: max angle error "
                f"{err:.3f} rad, max |omega| {spin:.3f} rad/s")
        if ok:
            return ctrl, losses, ep
    return ctrl, losses, None


def plot(path, ctrl, losses):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ts, th, om = (np.asarray(v) for v in simulate(ctrl, ts=jnp.linspace(0.0, T, 281)))
    u = np.asarray(jax.vmap(ctrl)(jnp.asarray(th), jnp.asarray(om)))
    fig, axs = plt.subplots(1, 3, figsize=(12, 3.6))
    axs[0].plot(ts, th, label="theta (rad)")
    for k in (-1, 1):
        axs[0].axhline(k * np.pi, color="k", ls=":", lw=0.8)
    axs[0].plot(ts, u, label="torque (N m)", lw=0.9)
    axs[0].axvspan(T - HOLD, T, color="0.9")
    axs[0].set_xlabel("t (s)")
    axs[0].legend(fontsize=8)
    axs[0].set_title("swing-up (dotted: upright; grey: hold)")
    x, y = np.sin(th), -np.cos(th)
    idx = np.linspace(0, len(ts) - 1, 36).astype(int)
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
    fig.savefig(path, dpi=80)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="a few episodes (for tests)")
    ap.add_argument("--out", default="out/pendulum_swingup", help="directory for the pictures")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--episodes", type=int, default=None, help="maximum training episodes")
    ap.add_argument("--lr", type=float, default=1e-2)
    a = ap.parse_args(argv)
    os.makedirs(a.out, exist_ok=True)
    max_ep = a.episodes if a.episodes is not None else (200 if a.quick else 1000)

    ctrl = Controller(jax.random.PRNGKey(a.seed))
    loss0 = float(eqx.filter_jit(loss_fn)(ctrl))
    print(f"initial loss {loss0:.4f}")
    t0 = time.perf_counter()
    ctrl, losses, solved_at = train(ctrl, max_ep, a.lr)
    wall = time.perf_counter() - t0
    loss1 = float(eqx.filter_jit(loss_fn)(ctrl))
    print(f"final loss {loss1:.4f}")
    print(f"loss ratio final/initial: {loss1 / loss0:.3g}")
    if solved_at is not None:
        print(f"swing-up and balance solved after {solved_at} training episodes (gradient steps), {wall:.1f} s")
    else:
        print(f"not solved within {max_ep} episodes ({wall:.1f} s)")
    err, spin = (float(v) for v in hold_error(ctrl, 1.0))
    print(f"hold error over the last second: max angle from upright {err:.4f} rad, max |omega| {spin:.4f} rad/s")

    path = os.path.join(a.out, "pendulum_swingup.png")
    plot(path, ctrl, losses)
    print(f"wrote {path}")
    return solved_at


if __name__ == "__main__":
    main()
