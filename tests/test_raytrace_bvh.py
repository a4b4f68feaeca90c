"""Meshes: OBJ loading, BVH against brute force, mesh gradients."""

import os

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import raytrace as rt

TORUS = os.path.join(os.path.dirname(__file__), "data", "torus.obj")


def test_read_obj_formats(tmp_path):
    p = tmp_path / "quad.obj"
    p.write_text(
        "# quad\nv 0 0 0\nv 1 0 0\nv 1 1 0\nv 0 1 0\nvn 0 0 1\nf 1//1 2//1 3//1 4//1\nf -4/1/1 -3/1/1 -1/1/1\n"
    )
    v, f = rt.read_obj(p)
    assert v.shape == (4, 3)
    np.testing.assert_array_equal(f, [[0, 1, 2], [0, 2, 3], [0, 1, 3]])
    bad = tmp_path / "bad.obj"
    bad.write_text("v 0 0 0\nv 1 0 0\nv 2 0 0\nf 1 2 3\n")
    with pytest.raises(ValueError, match="degenerate"):
        rt.Mesh.from_obj(bad)


def _scene(accel):
    mesh = rt.Mesh.from_obj(TORUS, rt.Material((0.7, 0.6, 0.3), ambient=0.1, specular=0.3, shininess=20.0))
    objs = [mesh, rt.Plane((0, -0.5, 0), (0, 1, 0), rt.Material(reflection=0.3)), rt.Sphere((0, 0.3, 0), 0.35)]
    return rt.Scene(objs, [rt.PointLight((2, 4, -3), 300.0), rt.DistantLight((-1, -2, 1), 0.3)], accel=accel)


CAM = rt.Camera((0, 2.5, -4), (0, 0, 0), width=24, height=24)


def test_bvh_renders_same_image_as_brute_force():
    with_bvh, brute = _scene("bvh"), _scene("none")
    assert with_bvh.bvh is not None and brute.bvh is None
    a = np.asarray(rt.render(with_bvh, CAM, max_bounces=1))
    b = np.asarray(rt.render(brute, CAM, max_bounces=1))
    assert (a.sum(-1) > 0).mean() > 0.5
    np.testing.assert_array_equal(a, b)


def test_bvh_refits_when_vertices_move():
    # Topology built for the original torus; moved vertices must still render
    # exactly like brute force (boxes are refit at render time).
    scene, brute = _scene("bvh"), _scene("none")
    offset = jnp.array([0.4, 0.1, 0.0])
    shift = lambda s: eqx.tree_at(lambda s: s.mesh.arrays, s, tuple(x + offset for x in s.mesh.arrays))
    a = np.asarray(rt.render(shift(scene), CAM, max_bounces=0))
    b = np.asarray(rt.render(shift(brute), CAM, max_bounces=0))
    np.testing.assert_array_equal(a, b)


def test_mesh_gradients_match_finite_differences():
    # Shading of a mesh w.r.t. light position and vertex positions (no edge
    # crosses a pixel for small steps).
    v, f = rt.read_obj(TORUS)
    mat = rt.Material((0.7, 0.6, 0.3), ambient=0.1, specular=0.3, shininess=20.0)
    cam = rt.Camera((0, 2.5, -4), (0, 0, 0), width=16, height=16)

    base = rt.Scene([rt.Mesh(v, f, mat)], [rt.PointLight((0, 0, 0), 300.0)], accel="bvh")

    def loss(light, scale):
        # The BVH topology was built once; tree_at moves vertices and light.
        scene = eqx.tree_at(lambda s: s.mesh.arrays, base, tuple(x * scale for x in base.mesh.arrays))
        scene = eqx.tree_at(lambda s: s.point_lights[0], scene, light[None])
        return jnp.sum(rt.render(scene, cam, max_bounces=0))

    x = (jnp.array([2.0, 4.0, -3.0]), jnp.array([1.0, 1.0, 1.0]))
    g = jax.grad(loss, argnums=(0, 1))(*x)
    h = 1e-6
    f_ = jax.jit(loss)
    for i in range(2):
        fd = np.array([(f_(*[xx.at[k].add(h) if j == i else xx for j, xx in enumerate(x)])
                        - f_(*[xx.at[k].add(-h) if j == i else xx for j, xx in enumerate(x)])) / (2 * h)
                       for k in range(3)])
        np.testing.assert_allclose(g[i], fd, rtol=1e-5, atol=1e-5 * np.abs(fd).max())
