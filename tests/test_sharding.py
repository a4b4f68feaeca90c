"""Sharded ensembles of solves agree with one device (4 simulated CPU devices).

The main pytest process has already imported jax with one device, so the check runs in a
subprocess with XLA_FLAGS=--xla_force_host_platform_device_count=4 set before jax loads.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

CHECK = textwrap.dedent(
    """
    import jax
    jax.config.update("jax_enable_x64", True)
    import jax.numpy as jnp
    import numpy as np
    from jax.sharding import Mesh, NamedSharding, PartitionSpec as P
    import solvers

    devs = jax.devices()
    assert len(devs) == 4, devs
    ts = jnp.linspace(0.0, 3.0, 16)

    def f(t, y, k):  # damped oscillator with per-member stiffness: members take different steps
        return jnp.stack([y[1], -k * y[0] - 0.1 * y[1]])

    def one(k):
        return solvers.solve(f, jnp.array([1.0, 0.0]), 0.0, 3.0, k, ts=ts, rtol=1e-9, atol=1e-9).ys

    def ens(ks):
        return jax.vmap(one)(ks), jax.vmap(jax.grad(lambda k: one(k)[-1, 0]))(ks)

    ks = jnp.linspace(0.5, 40.0, 8)
    ref = jax.jit(ens)(jax.device_put(ks, devs[0]))
    mesh = Mesh(np.array(devs), ("batch",))
    spec = NamedSharding(mesh, P("batch"))
    ks_s = jax.device_put(ks, spec)
    out_named = jax.jit(ens, out_shardings=(spec, spec))(ks_s)
    out_map = jax.jit(jax.shard_map(ens, mesh=mesh, in_specs=P("batch"),
                                    out_specs=(P("batch"), P("batch")), check_vma=False))(ks_s)
    assert len(out_named[0].sharding.device_set) == 4
    assert len(out_map[0].sharding.device_set) == 4
    assert {s.data.shape for s in out_named[0].addressable_shards} == {(2, 16, 2)}
    # exact solution check too: a member's answer must not depend on where it ran
    for got in (out_named, out_map):
        for a, b in zip(got, ref):
            np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=0, atol=1e-12)
    print("SHARDING OK", float(np.max(np.abs(np.asarray(out_map[0]) - np.asarray(ref[0])))))
    """
)

RENDER_CHECK = textwrap.dedent(
    """
    import jax
    import jax.numpy as jnp
    import numpy as np
    from jax.sharding import Mesh, NamedSharding, PartitionSpec as P
    import raytrace as rt

    devs = jax.devices()
    assert len(devs) == 4, devs
    cam = rt.Camera((0.0, 1.0, -4.0), (0.0, 0.0, 0.0), width=16, height=12)
    ball = rt.Sphere((0.0, 0.0, 0.0), 0.7, rt.Material((0.9, 0.3, 0.2)))
    floor = rt.Plane((0.0, -0.7, 0.0), (0.0, 1.0, 0.0), rt.Material((0.8, 0.8, 0.8)))

    def render(light_x):  # one image per light position: a batch of renders
        scene = rt.Scene([ball, floor], [rt.PointLight(jnp.stack([light_x, 3.0, -2.0]), 200.0, (1.0, 1.0, 1.0))])
        return rt.render(scene, cam)

    xs = jnp.linspace(-3.0, 3.0, 8)
    ref = jax.jit(jax.vmap(render))(jax.device_put(xs, devs[0]))
    mesh = Mesh(np.array(devs), ("batch",))
    spec = NamedSharding(mesh, P("batch"))
    out = jax.jit(jax.vmap(render), out_shardings=spec)(jax.device_put(xs, spec))
    assert len(out.sharding.device_set) == 4
    assert float(np.asarray(ref).std()) > 0.01  # the lights really differ
    np.testing.assert_allclose(np.asarray(out), np.asarray(ref), rtol=0, atol=1e-6)
    print("RENDER SHARDING OK")
    """
)


def _run_on_four_devices(code):
    env = dict(os.environ)
    env["XLA_FLAGS"] = (env.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=4").strip()
    env["JAX_PLATFORMS"] = "cpu"
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout + proc.stderr[-4000:]
    return proc.stdout


def test_sharded_ensemble_matches_single_device():
    assert "SHARDING OK" in _run_on_four_devices(CHECK)


def test_sharded_batch_of_renders_matches_single_device():
    assert "RENDER SHARDING OK" in _run_on_four_devices(RENDER_CHECK)
