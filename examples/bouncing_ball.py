"""A ball bouncing with restitution e, as a hybrid system: `solvers.solve_phases` with
one `solvers.Phase` per flight, each ended by a terminal event at the floor, whose reset
map reverses the velocity and scales it by e. Draws the trajectory (dense output between bounces) and prints the
total time of N bounces and its derivative w.r.t. e (jax.grad through all phases and
event times) next to the closed form.

    python examples/bouncing_ball.py [--quick] [--out DIR]
"""

import argparse
import os

import jax
import jax.numpy as jnp
import numpy as np

jax.config.update("jax_enable_x64", True)

import solvers  # noqa: E402

solvers.enable_compilation_cache()  # opt-in: reuse compiled programs across runs (~/.cache/diffsci/jax)

G, H0 = 9.81, 1.0
floor = solvers.Event(lambda t, y, args: y[0], direction=-1)


def fall(t, y, args):
    g, _ = args
    return jnp.stack([y[1], -g])


def bounce(t, y, args):
    _, e = args
    return jnp.stack([0.0 * y[0], -e * y[1]])


def bounces(e, n):
    """n flights as n phases; returns the total time and the `PhasesSolution`."""
    phases = [solvers.Phase(fall, floor, bounce)] * n
    y0 = jnp.stack([jnp.asarray(H0), 0.0 * e])
    sol = solvers.solve_phases(phases, y0, 0.0, 10.0 * n, (jnp.asarray(G), e), rtol=1e-10, atol=1e-10,
                               saveat=solvers.SaveAt(dense=True))
    return sol.t_events[-1], sol


def closed_form(e, n):
    v = np.sqrt(2 * G * H0)
    T = np.sqrt(2 * H0 / G) + sum(2 * e ** k * v / G for k in range(1, n))
    dT = sum(2 * k * e ** (k - 1) * v / G for k in range(1, n))
    return T, dT


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="fewer bounces (for tests)")
    ap.add_argument("--out", default=".", help="directory for the PNG")
    args = ap.parse_args(argv)
    n = 3 if args.quick else 8
    e = 0.8

    T, dT = jax.value_and_grad(lambda e: bounces(e, n)[0])(jnp.asarray(e))
    T_ex, dT_ex = closed_form(e, n)
    print(f"{n} bounces, restitution e = {e}, drop height {H0} m")
    print(f"total time    T     = {float(T):.12f} s   closed form {T_ex:.12f}   error {abs(float(T) - T_ex):.1e}")
    print(f"derivative dT/de    = {float(dT):.12f} s   closed form {dT_ex:.12f}   error {abs(float(dT) - dT_ex):.1e}")

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    _, psol = bounces(jnp.asarray(e), n)
    fig, ax = plt.subplots(figsize=(8, 3.5))
    t_start = 0.0
    for k, sol in enumerate(psol.phases):
        t_end = float(sol.t_event)
        # each phase's dense output, from its start to its bounce
        tt = np.linspace(t_start, t_end, 60)
        hh = np.asarray(sol.evaluate(jnp.asarray(tt))[:, 0])
        ax.plot(tt, hh, "C0-")
        ax.plot([t_end], [float(sol.ys[-1, 0])], "C3o", ms=4, label="event (floor)" if k == 0 else None)
        t_start = t_end
    ax.axhline(0.0, color="k", lw=0.8)
    ax.set_xlabel("t (s)")
    ax.set_ylabel("height (m)")
    ax.set_title(f"bouncing ball, e = {e}: T = {float(T):.4f} s, dT/de = {float(dT):.4f} s")
    ax.legend()
    fig.tight_layout()
    os.makedirs(args.out, exist_ok=True)
    path = os.path.join(args.out, "bouncing_ball.png")
    fig.savefig(path, dpi=100)
    print("wrote", path)
    return float(T), float(dT)


if __name__ == "__main__":
    main()
