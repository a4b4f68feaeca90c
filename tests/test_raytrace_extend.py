"""The open scene model: a custom object kind (the Disk of docs/raytrace.md) and
gradients read by field name, against closed forms and central finite differences."""

import os
import re

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

import raytrace as rt

DOC = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "docs", "raytrace.md")


def _doc_disk():
    """Run the Disk code block of docs/raytrace.md (so the docs stay correct)."""
    text = open(DOC).read()
    block = re.search(r"tested by tests/test_raytrace_extend.py.*?```python\n(.*?)```", text, re.S).group(1)
    ns: dict = {}
    exec(compile(block, DOC, "exec"), ns)
    return ns["Disk"]


Disk = _doc_disk()
FLAT = rt.Material((1.0, 1.0, 1.0), ambient=1.0, diffuse=0.0)


def test_disk_coverage_matches_closed_form():
    c, r = np.array([0.2, -0.1, 1.0]), 0.7
    disk = Disk(jnp.asarray(c), jnp.array([0.0, 0.0, -2.0]), jnp.asarray(r), FLAT)
    cam = rt.Camera((0, 0, -3), (0, 0, 0), width=20, height=16)
    img = np.asarray(rt.render(rt.Scene([disk]), cam)).reshape(-1, 3)
    o, d = (np.asarray(x).reshape(-1, 3) for x in rt.camera_rays(cam))
    t = (c[2] - o[:, 2]) / d[:, 2]
    rho = np.linalg.norm(o + t[:, None] * d - c, axis=1)
    clear = np.abs(rho - r) > 1e-9
    np.testing.assert_array_equal(img[clear, 0], (rho < r)[clear].astype(float))
    assert 20 < (rho < r).sum() < 0.8 * len(rho)


def _central_fd(f, x, h=1e-6):
    x = np.asarray(x, np.float64)
    fd = np.empty(x.size)
    for k in range(x.size):
        e = np.zeros(x.size)
        e[k] = h
        fd[k] = (f(jnp.asarray(x + e.reshape(x.shape))) - f(jnp.asarray(x - e.reshape(x.shape)))) / (2 * h)
    return fd.reshape(x.shape)


def _scene(p):
    disk = Disk(p["center"], p["normal"], p["radius"], rt.Material((0.2, 0.8, 0.3), ambient=0.1))
    ball = rt.Sphere(p["ball"], 0.3, rt.Material((0.9, 0.3, 0.2)))
    return rt.Scene([disk, ball, rt.Plane((0, 0, 0), (0, 1, 0))], [rt.PointLight(p["light"], 300.0)])


P = {"center": np.array([0.1, 0.6, 0.2]), "normal": np.array([0.1, 1.0, -0.3]), "radius": np.array(0.7),
     "ball": np.array([-0.5, 1.2, -0.4]), "light": np.array([1.0, 4.0, -2.0])}
CAM = rt.Camera((0, 2.5, -3.5), (0, 0.4, 0), width=14, height=14)
W = jnp.asarray(np.random.default_rng(0).uniform(0.5, 1.5, (14, 14, 3)))


def loss_of_scene(scene):
    return jnp.sum(W * rt.render(scene, CAM, softness=0.05, spp=1, max_bounces=0))


def test_gradients_by_field_name_match_finite_differences():
    # The disk's rim and shadow move with centre, normal and radius: soft
    # visibility makes the render smooth in them, so central FD are the truth.
    scene = _scene({k: jnp.asarray(v) for k, v in P.items()})
    grads = eqx.filter_grad(loss_of_scene)(scene)
    read = {"center": grads.group(Disk).center[0], "normal": grads.group(Disk).normal[0],
            "radius": grads.group(Disk).radius[0], "ball": grads.group(rt.Sphere).center[0],
            "light": grads.lights[0].position}
    f = jax.jit(lambda p: loss_of_scene(_scene(p)))
    for name, g in read.items():
        fd = _central_fd(lambda x: f({**{k: jnp.asarray(v) for k, v in P.items()}, name: x}), P[name])
        assert np.any(fd != 0), name
        np.testing.assert_allclose(g, fd, rtol=1e-5, atol=1e-5 * np.abs(fd).max(), err_msg=name)


def test_kinds_are_grouped_and_stacked():
    a = Disk(jnp.zeros(3), jnp.array([0.0, 1.0, 0.0]), jnp.array(1.0), FLAT)
    b = Disk(jnp.ones(3), jnp.array([0.0, 0.0, 1.0]), jnp.array(0.5), FLAT)
    s = rt.Scene([a, rt.Sphere((0, 0, 0), 1.0), b, rt.Sphere((1, 0, 0), 0.5)])
    assert [type(g) for g in s.groups] == [Disk, rt.Sphere]
    np.testing.assert_array_equal(s.group(Disk).radius, [1.0, 0.5])
    np.testing.assert_array_equal(s.group(rt.Sphere).center[1], [1, 0, 0])
    assert s.group(rt.Triangle) is None and s.group(rt.Mesh) == ()
