"""A neural ODE training step, diffsci vs diffrax: the model passed directly as f.

    python benchmarks/neural_ode.py     # prints a markdown table

An equinox MLP 2 -> 64 -> 64 -> 2 (tanh) is the vector field, given to `solvers.solve`
as f (an equinox Module) and to diffrax as the ODETerm's function. One training step:
the loss over 64 trajectories (vmapped, 10 save times each on [0, 1], Tsit5, rtol =
atol = 1e-4), its gradient with respect to the weights, and an Adam update. float32 and
float64; the libraries' steps run interleaved in the same process, best of several
repeats; diffrax uses its default adjoint (RecursiveCheckpointAdjoint).
"""

from __future__ import annotations

import time

import diffrax
import equinox as eqx
import jax
import jax.numpy as jnp
import optax

import solvers

BATCH, WIDTH, DEPTH, TOL = 64, 64, 2, 1e-4


class Field(eqx.Module):
    mlp: eqx.nn.MLP

    def __call__(self, t, y, args):
        return self.mlp(y)


def data(dtype):
    key = jax.random.PRNGKey(0)
    y0s = jax.random.normal(key, (BATCH, 2), dtype)
    ts = jnp.linspace(0.0, 1.0, 10, dtype=dtype)
    rot = jnp.array([[-0.1, 2.0], [-2.0, -0.1]], dtype)
    # Targets: the linear spiral's exact flow, exp(t A) y0.
    targets = jax.vmap(lambda y0: jax.vmap(lambda t: jax.scipy.linalg.expm(t * rot.T) @ y0)(ts))(y0s)
    return y0s, ts, targets


def ours(model, y0, ts):
    return solvers.solve(model, y0, ts[0], ts[-1], ts=ts, rtol=TOL, atol=TOL).ys


def theirs(model, y0, ts):
    sol = diffrax.diffeqsolve(diffrax.ODETerm(model), diffrax.Tsit5(), ts[0], ts[-1], None, y0,
                              stepsize_controller=diffrax.PIDController(rtol=TOL, atol=TOL),
                              saveat=diffrax.SaveAt(ts=ts), max_steps=4096)
    return sol.ys


def make_step(solve, opt):
    def loss(model, y0s, ts, targets):
        pred = jax.vmap(lambda y0: solve(model, y0, ts))(y0s)
        return jnp.mean((pred - targets) ** 2)

    @eqx.filter_jit
    def step(model, state, y0s, ts, targets):
        value, grads = eqx.filter_value_and_grad(loss)(model, y0s, ts, targets)
        updates, state = opt.update(grads, state, eqx.filter(model, eqx.is_inexact_array))
        return eqx.apply_updates(model, updates), state, value

    return step


def best_time(fn, repeats=5, number=3):
    jax.block_until_ready(fn())
    best = float("inf")
    for _ in range(repeats):
        t = time.perf_counter()
        for _ in range(number):
            jax.block_until_ready(fn())
        best = min(best, (time.perf_counter() - t) / number)
    return best


def measure(dtype):
    mlp = eqx.nn.MLP(2, 2, WIDTH, DEPTH, activation=jnp.tanh, key=jax.random.PRNGKey(1))
    model = jax.tree_util.tree_map(lambda x: x.astype(dtype) if eqx.is_inexact_array(x) else x, Field(mlp))
    opt = optax.adam(1e-3)
    state = opt.init(eqx.filter(model, eqx.is_inexact_array))
    batch = data(dtype)
    steps = {"diffsci": make_step(ours, opt), "diffrax": make_step(theirs, opt)}
    first, best = {}, {}
    for name, step in steps.items():
        t = time.perf_counter()
        jax.block_until_ready(step(model, state, *batch))
        first[name] = time.perf_counter() - t
    for _ in range(3):  # interleaved rounds
        for name, step in steps.items():
            t = best_time(lambda: step(model, state, *batch))
            best[name] = min(best.get(name, float("inf")), t)
    # Same loss from both (the same model and data): a check that they solve the same thing.
    losses = {name: float(step(model, state, *batch)[2]) for name, step in steps.items()}
    return best, first, losses


def main():
    print(f"Neural ODE training step: MLP 2 -> {WIDTH} x {DEPTH} -> 2 (tanh) as f, {BATCH} trajectories "
          f"vmapped, Tsit5, rtol = atol = {TOL:g}, Adam; {jax.devices()[0].platform.upper()}, jax {jax.__version__}, "
          f"diffrax {diffrax.__version__}\n")
    print("| dtype | diffsci step | diffrax step | diffrax / diffsci | first call diffsci | first call diffrax "
          "| loss diffsci | loss diffrax |")
    print("|---|---|---|---|---|---|---|---|")
    for dtype in (jnp.float32, jnp.float64):
        best, first, losses = measure(dtype)
        print(f"| {jnp.dtype(dtype).name} | {best['diffsci'] * 1e3:.2f} ms | {best['diffrax'] * 1e3:.2f} ms "
              f"| {best['diffrax'] / best['diffsci']:.2f} | {first['diffsci']:.1f} s | {first['diffrax']:.1f} s "
              f"| {losses['diffsci']:.6f} | {losses['diffrax']:.6f} |")


if __name__ == "__main__":
    jax.config.update("jax_enable_x64", True)
    main()
