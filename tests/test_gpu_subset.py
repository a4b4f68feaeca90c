"""The accelerator checks that no other test makes: results on the default device (a GPU
when there is one) against analytic values in float32 and float64, and against the same
computation on the host CPU (solves, gradients, a render). Part of the `gpu` subset that
benchmarks/device_check.py runs on the device (`pytest -m gpu`); the CPU comparisons skip
when the default device is the CPU itself."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import raytrace as rt
import solvers
from physics import trebuchet as tb

pytestmark = pytest.mark.gpu

CPU = jax.devices("cpu")[0]
ON_CPU = jax.default_backend() == "cpu"
# rtol given to the solver, and the error allowed against the closed form: the solver's
# global error is a few times its local tolerance on this smooth problem.
TOLS = {jnp.float32: (1e-6, 2e-5), jnp.float64: (1e-11, 1e-9)}


def decay(t, y, k):
    return -k * y


@pytest.mark.parametrize("dtype", [jnp.float32, jnp.float64], ids=["float32", "float64"])
def test_solve_and_gradient_on_the_default_device_match_closed_form(dtype):
    """y' = -k y: y(T) = exp(-k T) y0 and d y(T) / d k = -T y(T), on the default device."""
    rtol, allowed = TOLS[dtype]
    T = 2.0

    @jax.jit
    def final(k):
        sol = solvers.solve(decay, jnp.ones(3, dtype), 0.0, T, k, rtol=rtol, atol=rtol)
        return sol.ys[-1]

    k = jnp.asarray([0.5, 1.0, 3.0], dtype)
    y = final(k)
    g = jax.jit(jax.grad(lambda k: jnp.sum(final(k))))(k)
    assert y.dtype == dtype and g.dtype == dtype
    assert y.devices() == {jax.devices()[0]} and g.devices() == {jax.devices()[0]}
    exact = np.exp(-np.asarray(k, np.float64) * T)
    np.testing.assert_allclose(np.asarray(y, np.float64), exact, rtol=allowed)
    np.testing.assert_allclose(np.asarray(g, np.float64), -T * exact, rtol=10 * allowed)


def lotka_volterra(t, y, p):
    return jnp.stack([p[0] * y[0] - p[1] * y[0] * y[1], -p[2] * y[1] + p[3] * y[0] * y[1]])


def _lv_value_and_grad(p):
    def loss(p):
        sol = solvers.solve(lotka_volterra, jnp.ones(2, p.dtype), 0.0, 10.0, p, rtol=1e-10, atol=1e-10,
                            ts=jnp.linspace(0.0, 10.0, 11, dtype=p.dtype))
        return jnp.sum(sol.ys ** 2)

    return jax.jit(jax.value_and_grad(loss))(p)


@pytest.mark.skipif(ON_CPU, reason="the default device is the CPU")
def test_solve_and_gradient_same_on_device_as_on_cpu():
    """An adaptive float64 solve and its gradient agree with the host's to near rounding:
    the two compilers may fuse differently, so the step sizes differ in the last bits."""
    p = jnp.array([1.5, 1.0, 3.0, 1.0])
    v_dev, g_dev = _lv_value_and_grad(p)
    with jax.default_device(CPU):
        v_cpu, g_cpu = _lv_value_and_grad(jax.device_put(p, CPU))
    assert g_cpu.devices() == {CPU} and g_dev.devices() == {jax.devices()[0]}
    np.testing.assert_allclose(float(v_dev), float(v_cpu), rtol=1e-8)
    np.testing.assert_allclose(np.asarray(g_dev), np.asarray(g_cpu), rtol=1e-7)


def _scene_image_and_grad(light):
    f = lambda x: jnp.asarray(x, jnp.float32)  # noqa: E731
    mat = rt.Material(f([0.9, 0.4, 0.2]), ambient=f(0.05), diffuse=f(0.8), specular=f(0.3), shininess=f(20.0))
    cam = rt.Camera(f([0, 1.0, -5]), f([0, 0, 0]), vfov=f(40.0), width=64, height=64)

    def render(light):
        scene = rt.Scene([rt.Sphere(f([0, 0, 0]), f(1.0), mat), rt.Plane(f([0, -1, 0]), f([0, 1, 0]), mat)],
                         [rt.PointLight(light, f(300.0))])
        return rt.render(scene, cam, softness=0.02, max_bounces=0)

    img = jax.jit(render)(light)
    grad = jax.jit(jax.grad(lambda p: jnp.mean(render(p) ** 2)))(light)
    return np.asarray(img), np.asarray(grad)


@pytest.mark.skipif(ON_CPU, reason="the default device is the CPU")
def test_render_and_gradient_same_on_device_as_on_cpu():
    """A 64x64 float32 render (soft shadows, so no pixel flips on a last-bit difference of
    an intersection) and its gradient w.r.t. the light match the host CPU's image."""
    light = jnp.array([2.0, 3.0, -3.0], jnp.float32)
    img_dev, g_dev = _scene_image_and_grad(light)
    with jax.default_device(CPU):
        img_cpu, g_cpu = _scene_image_and_grad(jax.device_put(light, CPU))
    assert img_cpu.mean() > 0.01  # a lit scene, not two black images
    np.testing.assert_allclose(img_dev, img_cpu, atol=1e-4)
    np.testing.assert_allclose(g_dev, g_cpu, rtol=1e-3, atol=1e-6 * np.abs(g_cpu).max())


TREBUCHET_TOL = dict(rtol=1e-11, atol=1e-11)  # tight, so that central differences see the derivative


def _shoot_and_grad(wind, angle, weight):
    shoot = jax.jit(lambda w, a, m: tb.shoot(w, a, m, tb.Trebuchet(), **TREBUCHET_TOL))
    grad = jax.jit(jax.grad(lambda w, a, m: tb.shoot(w, a, m, tb.Trebuchet(), **TREBUCHET_TOL), argnums=(0, 1, 2)))
    return shoot, shoot(wind, angle, weight), grad(wind, angle, weight)


@pytest.mark.slow  # 76 s at load 12 on 2 cores, mostly compiling; the default run has test_trebuchet_grad.py
def test_trebuchet_shoot_and_gradient_on_the_default_device():
    """The trebuchet's landing distance and its gradient in (wind, angle, weight) on the
    default device: the gradient against central differences (float64) and, on an
    accelerator, both against the host CPU's."""
    x = (jnp.asarray(-4.0), jnp.asarray(40 * np.pi / 180), jnp.asarray(60.0))
    shoot, d, g = _shoot_and_grad(*x)
    assert d.devices() == {jax.devices()[0]} and 50.0 < float(d) < 150.0  # about 90 m: a real throw
    for i, h in enumerate((1e-4, 1e-5, 1e-3)):
        up, down = list(x), list(x)
        up[i], down[i] = x[i] + h, x[i] - h
        fd = (float(shoot(*up)) - float(shoot(*down))) / (2 * h)
        np.testing.assert_allclose(float(g[i]), fd, rtol=1e-6, atol=1e-6)
    if not ON_CPU:
        with jax.default_device(CPU):
            _, d_cpu, g_cpu = _shoot_and_grad(*(jax.device_put(v, CPU) for v in x))
        np.testing.assert_allclose(float(d), float(d_cpu), rtol=1e-9)
        np.testing.assert_allclose(np.asarray(g), np.asarray(g_cpu), rtol=1e-7)
