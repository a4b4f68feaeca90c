"""Pendulum swing-up and balance with a neural controller trained through the ODE solver.

A pendulum theta'' = -(g/l) sin theta - b theta' + u / (m l^2), with m = l = 1,
g = 9.81, b = 0.1, starts near hanging at rest, theta = 0 (down); upright is theta = pi
(mod 2 pi). The controller is an equinox MLP of (sin theta, cos theta, omega) whose
torque is bounded by tanh: |u| <= U_MAX = 5 N m, about half the m g l = 9.81 N m needed
to hold the pendulum horizontal, so it cannot lift it directly: it must pump energy by
swinging back and forth, then catch it at the top and hold it there.

Each training step simulates T = 7 s with `solvers.solve` (fixed-step RK4, dt = 0.025 s,
states saved every 0.05 s) from BATCH = 8 starts (`jax.vmap`: hanging at rest, four
fixed offsets, three fresh random ones near hanging) and takes one Adam step on the
gradient of the loss, by `jax.grad` straight through the solves. The loss is a
time-weighted mean over the saved times, weights growing as (t / T)^2, of
  * the angle error 1 + cos(theta) (0 upright, 2 hanging),
  * small penalties on omega^2 and u^2,
plus the uniform time mean of the energy error ((E - E_top) / E_top)^2 with
E = omega^2 / 2 - g cos(theta) (energy shaping: the signal that teaches it to pump).
Training stops once 40 validation starts (near hanging) are balanced over T_JUDGE.
Before, it stopped at the first controller that held the one demo start (hanging at
rest) within 0.1 rad over the last 1.5 s of the 7 s it was trained on: 8 of 10 seeds
did that, but judged as below only 2 of 10 balanced (docs/physics.md).
Success (honest): from N_JUDGE = 10 fresh random starts never trained on (theta and
omega N(0, 0.1)), simulated for T_JUDGE = 14 s by adaptive Tsit5 at 1e-8 (not the
training RK4), the pendulum stays within 0.1 rad of upright with |omega| < 0.5 rad/s
over the last HOLD = 3 s.

    python examples/pendulum_swingup.py                 # seed 0, writes to out/pendulum_swingup
    python examples/pendulum_swingup.py --seeds 10      # trains from seeds 0..9, counts successes
    python examples/pendulum_swingup.py --quick --out /tmp/pend
"""

from __future__ import annotations

import argparse
import os
import sys

import jax

jax.config.update("jax_enable_x64", True)

import equinox as eqx
import jax.numpy as jnp
import numpy as np

import solvers

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _swingup  # noqa: E402

G, B, U_MAX = 9.81, 0.1, 5.0
T, DT, SAVE_DT = 7.0, 0.025, 0.05  # s: training horizon, RK4 step, loss sampling
T_JUDGE, HOLD = 14.0, 3.0
BATCH, N_JUDGE, N_VAL = 8, 10, 40
START_SPREAD = jnp.array([0.1, 0.1])  # std of (theta, omega) at start
W_OMEGA, W_U, W_E = 0.05, 0.002, 1.0
FIXED_STARTS = jnp.array([[0.0, 0.0], [0.3, 0.0], [-0.3, 0.0], [0.0, 1.0], [0.0, -1.0]])
E_TOP = G
TRAIN = dict(method=solvers.RK4(), adaptive=False, dt0=DT)
REFERENCE = dict(method=solvers.Tsit5(), rtol=1e-8, atol=1e-8, max_steps=16384, throw=False)
TRAIN_JUDGE = dict(TRAIN, max_steps=int(T_JUDGE / DT) + 8, throw=False)


class Controller(eqx.Module):
    """u(t, y) = U_MAX tanh(MLP(sin theta, cos theta, omega / 4)) (N m)."""

    mlp: eqx.nn.MLP

    def __init__(self, key, width=32, depth=2):
        self.mlp = _swingup.quiet_mlp(3, width, depth, key)  # no torque untrained

    def __call__(self, t, y):
        x = jnp.stack([jnp.sin(y[0]), jnp.cos(y[0]), y[1] / 4.0])
        return U_MAX * jnp.tanh(self.mlp(x)[0])


def dynamics(t, y, ctrl):
    theta, omega = y[0], y[1]
    return jnp.stack([omega, -G * jnp.sin(theta) - B * omega + ctrl(t, y)])


def simulate(ctrl, y0, t1=T, ts=None, solver=None):
    """theta and omega, (n, 2), at ts (default: every SAVE_DT over [0, t1]); solver:
    options for `solvers.solve` (default TRAIN: fixed-step RK4)."""
    ts = jnp.linspace(0.0, t1, int(round(t1 / SAVE_DT)) + 1) if ts is None else ts
    opts = dict(TRAIN, max_steps=int(t1 / DT) + 8) if solver is None else solver
    return ts, solvers.solve(dynamics, jnp.asarray(y0, float), 0.0, t1, ctrl, ts=ts, **opts).ys


def episode_loss(ctrl, y0, t1=T):
    """Time-weighted mean over the saved times, weights growing as (t / t1)^2, of the
    angle error and small penalties on omega^2 and u^2, plus the uniform time mean of
    the energy error ((E - E_top) / E_top)^2."""
    ts, ys = simulate(ctrl, y0, t1)
    th, om = ys[:, 0], ys[:, 1]
    u = jax.vmap(ctrl)(ts, ys)
    w = (ts / t1) ** 2
    cost = (1.0 + jnp.cos(th)) + W_OMEGA * om**2 + W_U * u**2
    energy = 0.5 * om**2 - G * jnp.cos(th)  # per m l^2; E_TOP at rest upright
    return jnp.sum(w * cost) / jnp.sum(w) + W_E * jnp.mean(((energy - E_TOP) / E_TOP) ** 2)


def loss_fn(ctrl, y0s, progress=1.0, t1=T):
    """Mean episode loss over starts y0s (n, 2) over a horizon t1 (s); differentiable
    with respect to ctrl (and y0s). progress (training progress) is not used."""
    return jnp.mean(jax.vmap(lambda y0: episode_loss(ctrl, y0, t1))(y0s))


def sample(key, n=N_JUDGE):
    """n random starts (n, 2) near hanging at rest (the task; judged on these)."""
    return jax.random.normal(key, (n, 2)) * START_SPREAD


def sample_train(key, n=BATCH):
    """Training starts (n, 2): the five fixed FIXED_STARTS (hanging at rest and offsets),
    then fresh random ones near hanging (theta N(0, 0.3), omega N(0, 1))."""
    fresh = jax.random.normal(key, (n - len(FIXED_STARTS), 2)) * jnp.array([0.3, 1.0])
    return jnp.concatenate([FIXED_STARTS, fresh])


def settled(ctrl, y0, solver=REFERENCE):
    """(max angle from upright, max |omega| - 0.5) over the last HOLD s of T_JUDGE (the
    second inf if the reference solve failed)."""
    ts = jnp.linspace(0.0, T_JUDGE, int(round(T_JUDGE / SAVE_DT)) + 1)
    sol = solvers.solve(dynamics, jnp.asarray(y0, float), 0.0, T_JUDGE, ctrl, ts=ts, **solver)
    err = jnp.abs(jnp.mod(sol.ys[:, 0], 2 * jnp.pi) - jnp.pi)
    start = T_JUDGE - HOLD
    excess = _swingup.window_max(ts, jnp.abs(sol.ys[:, 1]), start) - 0.5
    return _swingup.window_max(ts, err, start), _swingup.failed_solve(sol, excess)


def settled_rk4(ctrl, y0):
    """`settled` on the training RK4 (cheaper), for the validation checks; the verdict is
    taken by `settled` on REFERENCE."""
    return settled(ctrl, y0, TRAIN_JUDGE)


def run_seed(seed, steps, lr, log=print):
    """Trains from `seed`; returns (Trained, judged ok, angle errors, excesses)."""
    k_init, k_train, k_val, k_judge = jax.random.split(jax.random.PRNGKey(seed), 4)
    val = sample(k_val, N_VAL)

    def check(ctrl):
        ok, err, excess = _swingup.verdict(settled_rk4, ctrl, val)
        return ok, f"validation: max angle error {err.max():.3f} rad, max excess {excess.max():.3f}"

    tr = _swingup.train(Controller(k_init), loss_fn, sample_train, k_train, steps, lr, check, log=log)
    ok, err, excess = _swingup.verdict(settled, tr.ctrl, sample(k_judge, N_JUDGE))
    return tr, ok, err, excess


def plot(path, ctrl, losses):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ts, ys = (np.asarray(v) for v in simulate(ctrl, jnp.zeros(2), T_JUDGE, solver=REFERENCE))
    th = ys[:, 0]
    u = np.asarray(jax.vmap(ctrl)(jnp.asarray(ts), jnp.asarray(ys)))
    fig, axs = plt.subplots(1, 3, figsize=(12, 3.6))
    axs[0].plot(ts, th, label="theta (rad)")
    for k in (-1, 1):
        axs[0].axhline(k * np.pi, color="k", ls=":", lw=0.8)
    axs[0].plot(ts, u, label="torque (N m)", lw=0.9)
    axs[0].axvspan(T_JUDGE - HOLD, T_JUDGE, color="0.9")
    axs[0].axvline(T, color="k", ls="--", lw=0.7)
    axs[0].set_xlabel("t (s)")
    axs[0].legend(fontsize=8)
    axs[0].set_title("swing-up (dotted: upright; dashed: training horizon; grey: judged)", fontsize=8)
    x, y = np.sin(th), -np.cos(th)
    idx = np.linspace(0, np.searchsorted(ts, 6.0), 31).astype(int)
    cmap = plt.get_cmap("viridis")
    for k, i in enumerate(idx):
        c = cmap(k / (len(idx) - 1))
        axs[1].plot([0, x[i]], [0, y[i]], color=c, lw=1.2, alpha=0.8)
        axs[1].plot(x[i], y[i], "o", color=c, ms=4)
    axs[1].set_aspect("equal")
    axs[1].set_xlim(-1.2, 1.2)
    axs[1].set_ylim(-1.2, 1.2)
    axs[1].set_title("pendulum every 0.2 s over 6 s (dark to light)")
    axs[2].semilogy(losses)
    axs[2].set_xlabel("training step")
    axs[2].set_ylabel("loss")
    axs[2].set_title("training")
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="a few steps (for tests): no success expected")
    ap.add_argument("--out", default="out/pendulum_swingup", help="directory for the picture")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--seeds", type=int, default=None, help="train from seeds 0..N-1, count successes")
    ap.add_argument("--steps", type=int, default=None, help="maximum training steps")
    ap.add_argument("--lr", type=float, default=1e-2)
    a = ap.parse_args(argv)
    steps = a.steps if a.steps is not None else (40 if a.quick else 1000)
    seeds = range(a.seeds) if a.seeds is not None else [a.seed]
    wins = 0
    for seed in seeds:
        tr, ok, err, excess = run_seed(seed, steps, a.lr)
        wins += ok
        print(f"seed {seed}: {'success' if ok else 'FAILURE'} after {tr.steps} steps "
              f"(validation solved at {tr.solved_at}); compile {tr.compile_s:.1f} s, run {tr.run_s:.1f} s; "
              f"judged on {N_JUDGE} fresh starts: max angle error {err.max():.4f} rad, max excess {excess.max():.4f}",
              flush=True)
        print(f"loss first/last: {tr.losses[0]:.4f} {tr.losses[-1]:.4f}")
    print(f"successes: {wins} of {len(seeds)}")
    if a.seeds is None:
        os.makedirs(a.out, exist_ok=True)
        path = os.path.join(a.out, "pendulum_swingup.png")
        plot(path, tr.ctrl, tr.losses)
        print(f"wrote {path}")
    return wins


if __name__ == "__main__":
    main()
