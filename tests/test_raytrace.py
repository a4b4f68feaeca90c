"""Ray tracer: closed-form shading, symmetry, gradients vs finite differences, bad input."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import raytrace as rt


def _sphere_hit(o, d, c, r):
    """Nearest positive hit distance of rays (N,3) with a sphere, inf if none (numpy)."""
    oc = o - c
    b = np.sum(oc * d, -1)
    disc = b * b - (np.sum(oc * oc, -1) - r * r)
    t = -b - np.sqrt(np.maximum(disc, 0))
    return np.where((disc > 0) & (t > 0), t, np.inf), disc


def test_lambert_phong_at_nearest_point_of_sphere():
    col = np.array([0.8, 0.5, 0.2])
    mat = rt.Material(col, ambient=0.1, diffuse=0.7, specular=0.3, shininess=20.0)
    I = 300.0
    scene = rt.Scene([rt.Sphere((0, 0, 0), 1.0, mat)], [rt.PointLight((0, 0, -3), I, (1.0, 0.9, 0.8))])
    cam = rt.Camera((0, 0, -5), (0, 0, 0), width=15, height=15)
    img = np.asarray(rt.render(scene, cam, max_bounces=0))
    # Nearest point (0,0,-1): normal, light and half vector all (0,0,-1); distance 2.
    E = I * np.array([1.0, 0.9, 0.8]) / (4 * np.pi * 4.0)
    expected = 0.1 * col + E * (0.7 * col + 0.3)
    np.testing.assert_allclose(img[7, 7], expected, rtol=1e-12)
    # A corner ray misses: background (black).
    np.testing.assert_array_equal(img[0, 0], 0.0)


@pytest.mark.gpu
def test_floor_with_hard_shadow_matches_closed_form():
    col = np.array([0.6, 0.7, 0.9])
    floor = rt.Material(col, ambient=0.2, diffuse=0.5)
    ball = rt.Material((1.0, 0.0, 0.0), ambient=1.0, diffuse=0.0)
    c, r = np.array([0.0, 1.0, 0.0]), 0.6
    scene = rt.Scene(
        [rt.Plane((0, 0, 0), (0, 2.0, 0), floor), rt.Sphere(c, r, ball)],
        [rt.DistantLight((0, -1.0, 0), 2.0)],
    )
    cam = rt.Camera((0.5, 4, -4), (0, 0, 0), width=32, height=24, vfov=50)
    img = np.asarray(rt.render(scene, cam, max_bounces=0)).reshape(-1, 3)
    o, d = (np.asarray(x).reshape(-1, 3) for x in rt.camera_rays(cam))
    t_ball, disc = _sphere_hit(o, d, c, r)
    t_floor = np.where(d[:, 1] < 0, -o[:, 1] / np.where(d[:, 1] < 0, d[:, 1], -1), np.inf)
    p = o + t_floor[:, None] * d
    shadow_r = np.hypot(p[:, 0] - c[0], p[:, 2] - c[2])  # light straight down: disc of radius r
    lit = col * (0.2 + 0.5 * 2.0)
    dark = col * 0.2
    expected = np.where(np.isfinite(t_ball)[:, None], [1.0, 0.0, 0.0],
                        np.where(np.isfinite(t_floor)[:, None],
                                 np.where((shadow_r < r)[:, None], dark, lit), 0.0))
    # Skip pixels within numerical reach of an edge.
    clear = (np.abs(disc) > 1e-6) & (np.abs(shadow_r - r) > 1e-6)
    assert clear.sum() > 0.95 * len(clear)
    assert (shadow_r[clear & ~np.isfinite(t_ball)] < r).sum() > 10  # the shadow is in view
    np.testing.assert_allclose(img[clear], expected[clear], rtol=1e-10, atol=1e-12)


def test_mirror_floor_reflects_sphere():
    emit = np.array([1.0, 0.5, 0.25])
    mirror = rt.Material((0, 0, 0), ambient=0.0, diffuse=0.0, reflection=0.5)
    glow = rt.Material(emit, ambient=1.0, diffuse=0.0)
    c, r = np.array([0.0, 1.0, 3.0]), 1.0
    scene = rt.Scene([rt.Plane((0, 0, 0), (0, 1, 0), mirror), rt.Sphere(c, r, glow)], [])
    cam = rt.Camera((0, 1, -5), (0, 0.3, 0), width=24, height=32)
    img = np.asarray(rt.render(scene, cam, max_bounces=1)).reshape(-1, 3)
    o, d = (np.asarray(x).reshape(-1, 3) for x in rt.camera_rays(cam))
    t_ball, disc = _sphere_hit(o, d, c, r)
    t_floor = np.where(d[:, 1] < 0, -o[:, 1] / np.where(d[:, 1] < 0, d[:, 1], -1), np.inf)
    p = o + np.where(np.isfinite(t_floor), t_floor, 0)[:, None] * d
    d2 = d * np.array([1, -1, 1])
    t_refl, disc2 = _sphere_hit(p, d2, c, r)
    direct = np.isfinite(t_ball) & (t_ball < t_floor)
    via_mirror = ~direct & np.isfinite(t_floor) & np.isfinite(t_refl)
    expected = np.where(direct[:, None], emit, np.where(via_mirror[:, None], 0.5 * emit, 0.0))
    clear = (np.abs(disc) > 1e-6) & (np.abs(disc2) > 1e-6)
    assert via_mirror[clear].sum() > 10
    np.testing.assert_allclose(img[clear], expected[clear], rtol=1e-10, atol=1e-12)


def test_symmetric_scene_renders_symmetric_image():
    mat = rt.Material((0.3, 0.6, 0.9), ambient=0.1, diffuse=0.8, specular=0.4, shininess=30.0)
    scene = rt.Scene(
        [rt.Sphere((0, 0, 0), 1.0, mat), rt.Plane((0, -1, 0), (0, 1, 0), rt.Material(reflection=0.3))],
        [rt.PointLight((0, 4, -3), 400.0)],
    )
    # Camera and light in the x = 0 plane: the image is mirror symmetric left-right.
    cam = rt.Camera((0, 1, -5), (0, 0, 0), width=20, height=16)
    img = np.asarray(rt.render(scene, cam, softness=0.02, spp=4))
    assert img.max() > 0.1
    # Sub-pixel offsets are not mirror symmetric, so compare at spp=1 too.
    img1 = np.asarray(rt.render(scene, cam))
    np.testing.assert_allclose(img1, img1[:, ::-1], atol=1e-12)
    np.testing.assert_allclose(img.mean(), img1.mean(), rtol=0.1)


@pytest.mark.gpu
def test_float32_matches_float64():
    def scene(dtype):
        f = lambda x: jnp.asarray(x, dtype)  # noqa: E731
        m = rt.Material(f([0.9, 0.4, 0.2]), ambient=f(0.1), diffuse=f(0.8), specular=f(0.2),
                        shininess=f(10.0), reflection=f(0.2))
        return rt.Scene(
            [rt.Sphere(f([0, 0, 0]), f(1.0), m), rt.Plane(f([0, -1, 0]), f([0, 1, 0]), m)],
            [rt.PointLight(f([2, 3, -3]), f(200.0))],
        ), rt.Camera(f([0, 0.5, -5]), f([0, 0, 0]), vup=f([0, 1, 0]), vfov=f(45.0), width=16, height=16)

    img32 = rt.render(*scene(jnp.float32), softness=0.02)
    img64 = rt.render(*scene(jnp.float64), softness=0.02)
    assert img32.dtype == jnp.float32 and img64.dtype == jnp.float64
    np.testing.assert_allclose(np.asarray(img32), np.asarray(img64), atol=2e-3)
    g = jax.grad(lambda p: rt.render(rt.Scene([rt.Sphere(jnp.zeros(3, jnp.float32), jnp.float32(1.0))],
                                              [rt.PointLight(p, jnp.float32(100.0))]),
                                     scene(jnp.float32)[1]).sum())(jnp.array([1.0, 2.0, -3.0], jnp.float32))
    assert g.dtype == jnp.float32 and np.all(np.isfinite(g))


# --- gradients -----------------------------------------------------------------

PARAMS = {
    "light_pos": np.array([2.0, 3.0, -3.0]),
    "light_int": np.array(300.0),
    "light_col": np.array([1.0, 0.9, 0.7]),
    "sun_dir": np.array([0.3, -1.0, 0.4]),
    "sun_int": np.array(0.6),
    "sphere_c": np.array([0.2, 0.1, 0.3]),
    "sphere_r": np.array(0.9),
    "tri_a": np.array([-1.5, -0.5, 1.5]),
    "plane_p": np.array([0.0, -1.0, 0.0]),
    "plane_n": np.array([0.05, 1.0, 0.1]),
    "mat_col": np.array([0.8, 0.3, 0.2]),
    "ambient": np.array(0.1),
    "diffuse": np.array(0.7),
    "specular": np.array(0.4),
    "shininess": np.array(12.0),
    "reflection": np.array(0.3),
    "lookfrom": np.array([0.3, 0.8, -5.0]),
    "vfov": np.array(50.0),
}


def _loss_fn(softness):
    weights = jnp.asarray(np.random.default_rng(0).uniform(0.5, 1.5, (14, 14, 3)))

    def loss(p):
        mat = rt.Material(p["mat_col"], ambient=p["ambient"], diffuse=p["diffuse"],
                          specular=p["specular"], shininess=p["shininess"], reflection=p["reflection"])
        floor = rt.Material((0.5, 0.5, 0.5), reflection=p["reflection"])
        scene = rt.Scene(
            [rt.Sphere(p["sphere_c"], p["sphere_r"], mat),
             rt.Triangle(p["tri_a"], (0.5, -0.8, 1.2), (-0.2, 1.5, 1.8), mat),
             rt.Plane(p["plane_p"], p["plane_n"], floor)],
            [rt.PointLight(p["light_pos"], p["light_int"], p["light_col"]),
             rt.DistantLight(p["sun_dir"], p["sun_int"])],
        )
        cam = rt.Camera(p["lookfrom"], (0, 0, 0), vfov=p["vfov"], width=14, height=14)
        return jnp.sum(weights * rt.render(scene, cam, softness=softness, max_bounces=1))

    return loss


def _check_grad_against_fd(loss, params, grad, h=1e-6, rtol=1e-5):
    f = jax.jit(loss)
    for name, g in grad.items():
        g = np.asarray(g).ravel()
        fd = np.empty_like(g)
        for k in range(g.size):
            e = np.zeros(g.size)
            e[k] = h
            up = {**params, name: (params[name].ravel() + e).reshape(params[name].shape)}
            dn = {**params, name: (params[name].ravel() - e).reshape(params[name].shape)}
            fd[k] = (f(up) - f(dn)) / (2 * h)
        scale = max(np.abs(fd).max(), 1e-3)
        np.testing.assert_allclose(g, fd, rtol=rtol, atol=rtol * scale, err_msg=name)


@pytest.fixture(scope="module")
def soft_problem():
    # softness > 0 makes the image smooth in the geometry, so FD are meaningful
    # for every parameter, including those that move edges and shadows.
    loss = jax.jit(_loss_fn(softness=0.05))
    params = {k: jnp.asarray(v) for k, v in PARAMS.items()}
    return loss, params, jax.jit(jax.grad(loss))(params)


def test_reverse_mode_gradients_match_finite_differences(soft_problem):
    loss, params, grad = soft_problem
    for name, g in grad.items():
        assert np.all(np.isfinite(g)), name
        assert np.any(g != 0), f"{name}: zero gradient"
    _check_grad_against_fd(loss, PARAMS, grad)


def test_forward_mode_matches_reverse_mode(soft_problem):
    loss, params, grad = soft_problem
    rng = np.random.default_rng(1)
    tangent = {k: jnp.asarray(rng.normal(size=np.shape(v))) for k, v in params.items()}
    _, jvp = jax.jit(lambda p, t: jax.jvp(loss, (p,), (t,)))(params, tangent)
    expected = sum(jnp.vdot(grad[k], tangent[k]) for k in params)
    np.testing.assert_allclose(jvp, expected, rtol=1e-10)


def test_hard_render_gradients_are_finite_everywhere():
    # Rays that miss, rays parallel to the plane, zero specular base: no NaN.
    loss = _loss_fn(softness=0.0)
    params = {k: jnp.asarray(v) for k, v in PARAMS.items()}
    grad = jax.grad(loss)(params)
    for name, g in grad.items():
        assert np.all(np.isfinite(g)), name
    # Shading parameters do not move edges: FD agree with the hard render too.
    shading = {k: grad[k] for k in ["light_int", "light_col", "mat_col", "ambient", "diffuse", "specular"]}
    _check_grad_against_fd(loss, PARAMS, shading)


# --- bad input -----------------------------------------------------------------

@pytest.mark.parametrize(
    "make, message",
    [
        (lambda: rt.Sphere((0, 0, 0), -1.0), "radius must be positive"),
        (lambda: rt.Triangle((0, 0, 0), (1, 1, 1), (2, 2, 2)), "degenerate"),
        (lambda: rt.Triangle((0, 0, 0), (0, 0, 0), (0, 1, 0)), "zero area"),
        (lambda: rt.Camera((1, 2, 3), (1, 2, 3)), "same point"),
        (lambda: rt.Camera((0, 0, 0), (0, 5, 0), vup=(0, 1, 0)), "parallel"),
        (lambda: rt.Camera((0, 0, 0), (0, 0, 1), vup=(0, 0, 0)), "vup is zero"),
        (lambda: rt.Plane((0, 0, 0), (0, 0, 0)), "zero length"),
        (lambda: rt.Mesh(np.zeros((3, 3)), np.array([[0, 1, 3]])), "0-based"),
        (lambda: rt.Scene([], []), "at least one object"),
    ],
)
def test_bad_input_raises_clear_value_error(make, message):
    with pytest.raises(ValueError, match=message):
        make()


def test_bad_render_options():
    scene = rt.Scene([rt.Sphere((0, 0, 0), 1.0)], [])
    cam = rt.Camera((0, 0, -5), (0, 0, 0), width=4, height=4)
    with pytest.raises(ValueError, match="softness"):
        rt.render(scene, cam, softness=-1.0)
    with pytest.raises(ValueError, match="spp"):
        rt.render(scene, cam, spp=0)


# save_image / save_gif: tests/test_raytrace_input.py
