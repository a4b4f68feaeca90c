"""Ray tracer: bad input (named ValueErrors), OBJ parsing, image output, sampling,
traced softness, and scale invariance of the hit offsets."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import raytrace as rt
from raytrace import _render

NAN, INF = float("nan"), float("inf")


@pytest.mark.parametrize(
    "make, field",
    [
        (lambda: rt.PointLight((0, NAN, 0), 1.0), "PointLight position"),
        (lambda: rt.PointLight((0, 1, 0), INF), "PointLight intensity"),
        (lambda: rt.PointLight((0, 1, 0), 1.0, (1, NAN, 1)), "PointLight color"),
        (lambda: rt.DistantLight((0, -1, INF)), "DistantLight direction"),
        (lambda: rt.Sphere((0, 0, 0), NAN), "Sphere radius"),
        (lambda: rt.Sphere((INF, 0, 0), 1.0), "Sphere center"),
        (lambda: rt.Triangle((0, 0, 0), (1, 0, NAN), (0, 1, 0)), "Triangle vertex b"),
        (lambda: rt.Mesh(np.array([[0, 0, 0], [1, 0, 0], [0, NAN, 0]]), [[0, 1, 2]]), "Mesh vertices"),
        (lambda: rt.Camera((0, 0, NAN), (0, 0, 1)), "Camera lookfrom"),
        (lambda: rt.Camera((0, 0, 0), (0, 0, 1), vfov=INF), "Camera vfov"),
        (lambda: rt.Material((1, NAN, 0)), "Material color"),
        (lambda: rt.Transform((0, NAN, 0)), "Transform translation"),
    ],
)
def test_nan_and_inf_fields_name_the_field(make, field):
    with pytest.raises(ValueError, match=f"{field} must be finite"):
        make()


@pytest.mark.parametrize(
    "kwargs, field",
    [({"shininess": -1.0}, "shininess"), ({"ambient": -0.1}, "ambient"), ({"diffuse": -1.0}, "diffuse"),
     ({"specular": -0.5}, "specular"), ({"reflection": 1.5}, "reflection"), ({"color": (1.0, -0.2, 0.0)}, "color")],
)
def test_out_of_range_materials(kwargs, field):
    with pytest.raises(ValueError, match=f"Material {field} must be"):
        rt.Material(**kwargs)


def test_other_out_of_range_inputs():
    with pytest.raises(ValueError, match="PointLight intensity must be >= 0"):
        rt.PointLight((0, 1, 0), -5.0)
    with pytest.raises(ValueError, match="Transform scale must be"):
        rt.Transform(scale=0.0)
    with pytest.raises(ValueError, match="quaternion is zero"):
        rt.Transform(rotation=(0.0, 0.0, 0.0, 0.0))
    with pytest.raises(ValueError, match="rotation vector"):
        rt.Transform(rotation=(0.0, 1.0))
    scene = rt.Scene(rt.Sphere((0, 0, 0), 1.0))
    cam = rt.Camera((0, 0, -5), (0, 0, 0), width=4, height=4)
    for bad in (-1.0, NAN, INF):
        with pytest.raises(ValueError, match="softness"):
            rt.render(scene, cam, softness=bad)


def test_scene_accepts_single_object_and_names_wrong_types():
    s = rt.Scene(objects=rt.Sphere((0, 0, 0), 1.0), lights=rt.PointLight((0, 2, -3), 10.0))
    assert len(s.lights) == 1 and s.group(rt.Sphere).center.shape == (1, 3)
    with pytest.raises(TypeError, match="objects must be AbstractObjects"):
        rt.Scene([rt.Sphere((0, 0, 0), 1.0), (0, 0, 0)])
    with pytest.raises(TypeError, match="lights must be AbstractLights"):
        rt.Scene([rt.Sphere((0, 0, 0), 1.0)], [rt.Sphere((0, 0, 0), 1.0)])
    with pytest.raises(TypeError, match="must be a list"):
        rt.Scene(objects=3)


# --- OBJ files -------------------------------------------------------------------

QUAD = "v 0 0 0\nv 1 0 0\nv 1 1 0\nv 0 1 0\nvn 0 0 1\nf 1//1 2//1 3//1 4//1\nf -4/1/1 -3/1/1 -1/1/1\n"


def test_read_obj_formats_bom_and_latin1(tmp_path):
    p = tmp_path / "quad.obj"
    p.write_text("# quad\n" + QUAD)
    v, f = rt.read_obj(p)
    assert v.shape == (4, 3)
    np.testing.assert_array_equal(f, [[0, 1, 2], [0, 2, 3], [0, 1, 3]])
    # A UTF-8 byte-order mark before the first vertex must not drop it.
    p.write_bytes(b"\xef\xbb\xbf" + QUAD.encode())
    v2, f2 = rt.read_obj(p)
    np.testing.assert_array_equal(v2, v)
    np.testing.assert_array_equal(f2, f)
    # Non-UTF-8 comments and names (latin-1) are read.
    p.write_bytes("# caf\xe9\ng m\xfcsli\n".encode("latin-1") + QUAD.encode())
    np.testing.assert_array_equal(rt.read_obj(p)[1], f)
    # Mesh.from_obj on the BOM file: same mesh.
    p.write_bytes(b"\xef\xbb\xbf" + QUAD.encode())
    np.testing.assert_array_equal(rt.Mesh.from_obj(p).vertices, v)


@pytest.mark.parametrize(
    "text, line, message",
    [
        (b"v 0 0 0\nv 1 0\nv 0 1 0\nf 1 2 3\n", 2, "needs x y z"),
        (b"v 0 0 0\nv 1 0 0\nv 0 1 0\nf 1 2 4\n", 4, "out of range"),
        (b"v 0 0 0\nv 1 0 0\nv 0 1 0\nf 1 2 99999999999999999999\n", 4, "out of range"),
        (b"v 0 0 0\nv 1 0 0\nv 0 1 0\nf 0 1 2\n", 4, "out of range"),
        (b"v 0 0 0\nv 1 0 0\nv 0 1 0\nf 1 -4 2\n", 4, "out of range"),
        (b"v 0 0 0\nv 1 0 0\nv 0 1 0\nf 1 2\n", 4, "at least 3"),
        (b"v 0 0 0\nv 1 x 0\nv 0 1 0\nf 1 2 3\n", 2, "cannot parse"),
        (b"v 0 0 0\nv 1 0 0\n\x00\x13\xff\x00\nf 1 2 3\n", 3, "binary data"),
        (b"v 0 0 0\nv 1 0 0\nv 0 1 0\nf 1 2 3.5\n", 4, "cannot parse"),
    ],
)
def test_read_obj_errors_name_file_and_line(tmp_path, text, line, message):
    p = tmp_path / "bad.obj"
    p.write_bytes(text)
    with pytest.raises(ValueError, match=f"bad.obj:{line}: .*{message}"):
        rt.read_obj(p)


def test_read_obj_round_trip_of_a_big_mesh(tmp_path):
    v, f = rt.torus(1.0, 0.3, 60, 40)
    rt.write_obj(tmp_path / "t.obj", v, f)
    v2, f2 = rt.read_obj(tmp_path / "t.obj")
    np.testing.assert_allclose(v2, v, atol=1e-8)
    np.testing.assert_array_equal(f2, f)


# --- images ----------------------------------------------------------------------

def test_save_image_and_gif(tmp_path):
    from PIL import Image

    img = np.zeros((4, 5, 3))
    img[0, 0] = [1.0, 0.5, 0.0]
    img[1, 1] = [2.0, -1.0, 0.0031308]
    rt.save_image(tmp_path / "a.png", img)
    px = np.asarray(Image.open(tmp_path / "a.png"))
    assert px.shape == (4, 5, 3)
    np.testing.assert_array_equal(px[0, 0], [255, 188, 0])  # sRGB(0.5) = 0.7354
    np.testing.assert_array_equal(px[1, 1], [255, 0, 10])
    # Exposure 0.25: 2.0 -> 0.5; Reinhard: 1.0 -> 0.5.
    rt.save_image(tmp_path / "b.png", img, exposure=0.25)
    np.testing.assert_array_equal(np.asarray(Image.open(tmp_path / "b.png"))[1, 1, 0], 188)
    rt.save_image(tmp_path / "c.png", img, tonemap="reinhard")
    np.testing.assert_array_equal(np.asarray(Image.open(tmp_path / "c.png"))[0, 0, 0], 188)
    assert rt.exposure_for(img * 10, percentile=100) == pytest.approx(0.9 / 20)
    rt.save_gif(tmp_path / "a.gif", [img, img * 0.5])
    assert Image.open(tmp_path / "a.gif").n_frames == 2


def test_save_image_refuses_nan_and_channels_first(tmp_path):
    img = np.zeros((4, 5, 3))
    img[2, 3, 1] = np.nan
    with pytest.raises(ValueError, match=r"NaN or infinite.*\(2, 3\)"):
        rt.save_image(tmp_path / "a.png", img)
    with pytest.raises(ValueError, match="channels first.*transpose"):
        rt.save_image(tmp_path / "a.png", np.zeros((3, 8, 9)))
    with pytest.raises(ValueError, match="height, width, 3"):
        rt.save_image(tmp_path / "a.png", np.zeros((8, 9)))


# --- sampling and compilation -----------------------------------------------------

@pytest.mark.parametrize("spp", [1, 2, 3, 4, 5, 16, 64])
def test_sample_offsets_average_to_the_pixel_centre(spp):
    off = _render._sample_offsets(spp)
    assert off.shape == (spp, 2) and np.all((off >= 0) & (off < 1))
    np.testing.assert_allclose(off.mean(0), 0.5, atol=1e-15)
    assert len(np.unique(off.round(12), axis=0)) == spp


def _clip(poly, axis, value, keep_below):
    """Sutherland-Hodgman: the part of polygon (N, 2) on one side of coordinate axis = value."""
    out = []
    for p, q in zip(poly, np.roll(poly, -1, axis=0)):
        pin, qin = (p[axis] <= value) == keep_below, (q[axis] <= value) == keep_below
        if pin:
            out.append(p)
        if pin != qin:
            out.append(p + (q - p) * (value - p[axis]) / (q[axis] - p[axis]))
    return np.array(out).reshape(-1, 2)


def _pixel_coverage(tri, cam):
    """Exact fraction of each pixel covered by the projection of triangle tri (3, 3), numpy."""
    f = np.asarray(cam.lookat) - np.asarray(cam.lookfrom)
    f = f / np.linalg.norm(f)
    r = np.cross(f, cam.vup)
    r = r / np.linalg.norm(r)
    u = np.cross(r, f)
    half_h = np.tan(np.deg2rad(float(cam.vfov)) / 2)
    half_w = half_h * cam.width / cam.height
    rel = tri - np.asarray(cam.lookfrom)
    x, y = rel @ r / (rel @ f), rel @ u / (rel @ f)
    pix = np.stack([(x / half_w + 1) * cam.width / 2, (1 - y / half_h) * cam.height / 2], -1)  # (col, row)
    cov = np.zeros((cam.height, cam.width))
    for i in range(cam.height):
        for j in range(cam.width):
            p = pix
            for axis, lo in ((0, j), (1, i)):
                p = _clip(_clip(p, axis, lo, False), axis, lo + 1, True) if len(p) else p
            if len(p) >= 3:
                cov[i, j] = 0.5 * abs(np.dot(p[:, 0], np.roll(p[:, 1], -1)) - np.dot(p[:, 1], np.roll(p[:, 0], -1)))
    return cov


def test_triangle_coverage_matches_exact_pixel_areas():
    # An ambient-only white triangle: each pixel's value is the fraction of it
    # the triangle covers, computed exactly by clipping its projection.
    tri = np.array([(-1.3, -0.9, 0.3), (1.1, -1.2, 0.0), (0.2, 1.25, -0.2)])
    scene = rt.Scene([rt.Triangle(*tri, rt.Material((1, 1, 1), ambient=1.0, diffuse=0.0))])
    cam = rt.Camera((0.2, 0.1, -4), (0, 0, 0), width=12, height=12)
    exact = _pixel_coverage(tri, cam)
    assert 0.2 < exact.mean() < 0.6 and np.sum((exact > 0) & (exact < 1)) > 20
    errs = [np.abs(np.asarray(rt.render(scene, cam, spp=s))[..., 0] - exact).mean() for s in (1, 4, 16, 64)]
    assert errs[3] < errs[2] < errs[1] < errs[0], errs
    # Measured: centred offsets 0.0075 (16 spp) and 0.0027 (64); the old
    # uncentred R2 set 0.0121 and 0.0044.
    assert errs[2] < 0.01 and errs[3] < 0.0035, errs


def test_softness_is_traced_not_static():
    scene = rt.Scene([rt.Sphere((0, 0, 0), 1.0), rt.Plane((0, -1, 0), (0, 1, 0))], [rt.PointLight((1, 3, -2), 50.0)])
    cam = rt.Camera((0, 1, -5), (0, 0, 0), width=6, height=5)
    rt.render(scene, cam, softness=0.1)
    n = _render._render._cache_size()
    imgs = [np.asarray(rt.render(scene, cam, softness=s)) for s in (0.05, 0.2, jnp.float64(0.3))]
    assert _render._render._cache_size() == n
    assert not np.allclose(imgs[0], imgs[1])
    # Differentiable in softness too, and usable as a traced argument.
    g = jax.grad(lambda s: jnp.sum(rt.render(scene, cam, softness=s)))(0.1)
    assert np.isfinite(g) and g != 0


# --- scale invariance -------------------------------------------------------------

def _scaled_scene(s, dtype):
    f = lambda x: jnp.asarray(np.asarray(x, np.float64) * s, dtype)  # noqa: E731
    one = lambda x: jnp.asarray(x, dtype)  # noqa: E731
    mat = rt.Material(one((0.8, 0.5, 0.3)), ambient=one(0.1), specular=one(0.3), shininess=one(20.0))
    floor = rt.Material(one((0.6, 0.6, 0.6)), ambient=one(0.1), reflection=one(0.3))
    v, faces = rt.torus(0.5, 0.2, 16, 8)
    objs = [rt.Sphere(f((-0.6, 0.0, 0.3)), f(0.5), mat), rt.Plane(f((0, -0.5, 0)), one((0, 1, 0)), floor),
            rt.Triangle(f((0.2, -0.5, 1.0)), f((1.4, -0.5, 1.2)), f((0.8, 0.9, 1.1)), mat),
            rt.Mesh(f(v), faces, mat, transform=rt.Transform(f((0.7, -0.2, -0.3)), one((0.3, 0.2, 0.1))))]
    # A point light's irradiance falls off as 1/d^2: scale its intensity by s^2.
    lights = [rt.PointLight(f((1.5, 3.0, -2.0)), one(200.0) * s**2), rt.DistantLight(one((-0.3, -1, 0.4)), one(0.4))]
    cam = rt.Camera(f((0.0, 1.5, -4.0)), f((0.0, 0.0, 0.0)), vup=one((0, 1, 0)), vfov=one(45.0), width=24, height=18)
    return rt.Scene(objs, lights), cam


@pytest.mark.parametrize("dtype", [jnp.float64, jnp.float32])
def test_same_scene_at_any_scale_renders_the_same_image(dtype):
    ref = np.asarray(rt.render(*_scaled_scene(1.0, dtype), max_bounces=1))
    assert (ref.sum(-1) > 0.05).mean() > 0.8
    for s in (1e-4, 1e4):
        img = np.asarray(rt.render(*_scaled_scene(s, dtype), max_bounces=1))
        # Measured: largest difference 5e-15 in float64, 1.2e-6 in float32.
        np.testing.assert_allclose(img, ref, rtol=0, atol=1e-12 if dtype == jnp.float64 else 1e-4)
