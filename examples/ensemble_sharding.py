"""An ensemble of ODE solves sharded across devices, identical to one device.

The ensemble: Lorenz systems with 64 (or --members) values of rho in [10, 35], each
solved with `solvers.solve` (Tsit5, adaptive) over t in [0, 2]; also the gradient of
an ensemble loss with respect to every member's rho. Three ways to run it:

  * single device: `jax.jit(jax.vmap(solve_one))` on one device (the reference);
  * `NamedSharding`: the same jitted vmap, with the batch axis of the inputs laid out
    over a 1-D `Mesh` of all devices (`jax.device_put(x, NamedSharding(mesh, P("batch")))`);
    XLA's SPMD partitioner splits the work and the results stay sharded;
  * `shard_map`: each device runs the vmapped solve on its own slice only, so each
    device's adaptive loop stops as soon as its own members are done (no cross-device
    agreement on the loop condition).

Under `jax.vmap` every member takes its own steps, so the answer of a member does not
depend on which other members share its batch or its device: all three agree to
rounding (the script prints the largest difference).

On a CPU-only machine simulate devices with --devices N (sets
XLA_FLAGS=--xla_force_host_platform_device_count=N before jax is imported). On GPUs or
TPUs the devices are the accelerators; on several hosts call
`jax.distributed.initialize()` first and build the mesh over `jax.devices()` (all hosts).

    python examples/ensemble_sharding.py --devices 4                  # writes to out/ensemble_sharding
    python examples/ensemble_sharding.py --quick --devices 4 --out /tmp/ens
"""

from __future__ import annotations

import argparse
import os
import sys
import time


def parse(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="a small ensemble (for tests)")
    ap.add_argument("--out", default="out/ensemble_sharding", help="directory for the picture")
    ap.add_argument("--devices", type=int, default=None,
                    help="simulate N CPU devices (must be set before jax is imported)")
    ap.add_argument("--members", type=int, default=None, help="ensemble size (a multiple of the devices)")
    return ap.parse_args(argv)


def _force_devices(n):
    if n is None:
        return
    if "jax" in sys.modules:
        raise RuntimeError("--devices must be applied before jax is imported")
    flags = os.environ.get("XLA_FLAGS", "")
    if "xla_force_host_platform_device_count" not in flags:
        os.environ["XLA_FLAGS"] = (flags + f" --xla_force_host_platform_device_count={n}").strip()


def main(argv=None):
    a = parse(argv)
    _force_devices(a.devices)

    import jax

    jax.config.update("jax_enable_x64", True)
    import jax.numpy as jnp
    import numpy as np
    from jax.sharding import Mesh, NamedSharding
    from jax.sharding import PartitionSpec as P

    import solvers

    os.makedirs(a.out, exist_ok=True)
    devices = jax.devices()
    n_dev = len(devices)
    members = a.members or (4 * n_dev if a.quick else 64)
    members = -(-members // n_dev) * n_dev  # round up to a multiple of the device count
    print(f"devices: {n_dev} x {devices[0].platform} ({devices[0].device_kind}); ensemble of {members}")

    T = 1.0 if a.quick else 2.0
    ts = jnp.linspace(0.0, T, 41 if a.quick else 201)
    y0 = jnp.array([1.0, 1.0, 1.0])

    def lorenz(t, y, rho):
        x, yy, z = y[0], y[1], y[2]
        return jnp.stack([10.0 * (yy - x), x * (rho - z) - yy, x * yy - 8.0 / 3.0 * z])

    def solve_one(rho):
        return solvers.solve(lorenz, y0, 0.0, T, rho, ts=ts, rtol=1e-8, atol=1e-8).ys

    def loss_one(rho):  # a scalar per member; its gradient w.r.t. rho goes through the solve
        return jnp.mean(solve_one(rho)[:, 2])

    def ensemble(rhos):
        ys = jax.vmap(solve_one)(rhos)
        grads = jax.vmap(jax.grad(loss_one))(rhos)
        return ys, grads

    rhos = jnp.linspace(10.0, 35.0, members)

    # 1. one device
    one = jax.jit(ensemble)
    rhos_1 = jax.device_put(rhos, devices[0])
    t = time.perf_counter()
    ys_1, g_1 = jax.block_until_ready(one(rhos_1))
    t_1 = time.perf_counter() - t

    # 2. NamedSharding over a 1-D mesh: the same jitted function, inputs sharded on the batch axis
    mesh = Mesh(np.array(devices), ("batch",))
    spec = NamedSharding(mesh, P("batch"))
    rhos_s = jax.device_put(rhos, spec)
    sharded = jax.jit(ensemble, in_shardings=spec, out_shardings=(spec, spec))
    t = time.perf_counter()
    ys_s, g_s = jax.block_until_ready(sharded(rhos_s))
    t_s = time.perf_counter() - t

    # 3. shard_map: every device solves its own slice independently
    # check_vma=False: the solver's loop carries start as unvarying constants (zeros),
    # which shard_map's varying-axis type check would reject
    mapped = jax.jit(jax.shard_map(ensemble, mesh=mesh, in_specs=P("batch"),
                                   out_specs=(P("batch"), P("batch")), check_vma=False))
    t = time.perf_counter()
    ys_m, g_m = jax.block_until_ready(mapped(rhos_s))
    t_m = time.perf_counter() - t

    shards = sorted({d.id for d in ys_s.sharding.device_set})
    def maxdiff(a, b):  # compared on the host (the arrays live on different devices)
        return float(np.max(np.abs(np.asarray(a) - np.asarray(b))))

    diff_s = max(maxdiff(ys_s, ys_1), maxdiff(g_s, g_1))
    diff_m = max(maxdiff(ys_m, ys_1), maxdiff(g_m, g_1))
    print(f"output sharded over devices {shards}: "
          f"{[s.data.shape for s in ys_s.addressable_shards][:1]} per device")
    print("| run | first call incl. compile (s) | max abs diff vs one device (states and gradients) |")
    print("|---|---|---|")
    print(f"| one device (jit + vmap) | {t_1:.2f} | 0 |")
    print(f"| NamedSharding over {n_dev} devices | {t_s:.2f} | {diff_s:.3g} |")
    print(f"| shard_map over {n_dev} devices | {t_m:.2f} | {diff_m:.3g} |")
    print(f"max abs diff sharded vs single: {max(diff_s, diff_m):.3g}")

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ys = np.asarray(ys_m)
    per = members // n_dev
    cmap = plt.get_cmap("tab10")
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(9, 3.8))
    for i in range(members):
        ax1.plot(ys[i, :, 0], ys[i, :, 2], color=cmap((i // per) % 10), lw=0.7, alpha=0.8)
    ax1.set_xlabel("x")
    ax1.set_ylabel("z")
    ax1.set_title(f"Lorenz ensemble, colour = device ({n_dev})")
    ax2.plot(np.asarray(rhos), np.asarray(g_1), "k-", lw=2, label="one device")
    ax2.plot(np.asarray(rhos), np.asarray(g_m), "o", ms=3, label=f"shard_map, {n_dev} devices")
    ax2.set_xlabel("rho")
    ax2.set_ylabel("d mean(z) / d rho")
    ax2.set_title("gradients through the sharded solves")
    ax2.legend(fontsize=8)
    fig.tight_layout()
    path = os.path.join(a.out, "ensemble_sharding.png")
    fig.savefig(path, dpi=80)
    print(f"wrote {path}")
    return max(diff_s, diff_m)


if __name__ == "__main__":
    main()
