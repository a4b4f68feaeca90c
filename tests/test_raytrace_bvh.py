"""Meshes: BVH hits against numpy brute force, BVH built under tracing, transforms, mesh gradients."""

import os

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

import raytrace as rt
from raytrace import _bvh

TORUS = os.path.join(os.path.dirname(__file__), "data", "torus.obj")
MAT = rt.Material((0.7, 0.6, 0.3), ambient=0.1, specular=0.3, shininess=20.0)
CAM = rt.Camera((0, 2.5, -4), (0, 0, 0), width=24, height=24)


def brute_force_hits(o, d, a, b, c):
    """Nearest hit distance (N,) and triangle (N,) of rays (N,3) with triangles (F,3), numpy."""
    e1, e2 = b - a, c - a
    pv = np.cross(d[:, None], e2[None])
    det = np.sum(e1[None] * pv, -1)
    with np.errstate(divide="ignore", invalid="ignore"):
        inv = 1 / det
        tv = o[:, None] - a[None]
        u = np.sum(tv * pv, -1) * inv
        qv = np.cross(tv, e1[None])
        v = np.sum(d[:, None] * qv, -1) * inv
        t = np.sum(e2[None] * qv, -1) * inv
    hit = (det != 0) & (u >= 0) & (v >= 0) & (u + v <= 1) & (t > 1e-9)
    t = np.where(hit, t, np.inf)
    return t.min(1), np.where(np.isfinite(t.min(1)), t.argmin(1), -1)


def mesh_hits(mesh, o, d):
    """Our BVH answer: hit distance and face index of rays (N, 3)."""
    vo, vd = rt.Vec3.of(jnp.asarray(o)), rt.Vec3.of(jnp.asarray(d))
    slot = np.asarray(mesh.hit_slots(vo, vd, jnp.zeros(len(o)), jnp.inf, any_hit=False))
    face = np.where(slot >= 0, np.asarray(mesh.bvh.order)[np.maximum(slot, 0)], -1)
    lay = mesh.intersect(vo, vd, jnp.zeros(len(o)), None)
    return np.where(slot >= 0, np.asarray(lay.depth[0]), np.inf), face


def test_bvh_hits_match_brute_force_and_shadow_rays():
    v, f = rt.read_obj(TORUS)
    mesh = rt.Mesh(v, f, MAT)
    o, d = (np.asarray(x).reshape(-1, 3) for x in rt.camera_rays(CAM))
    t_ref, i_ref = brute_force_hits(o, d, v[f[:, 0]], v[f[:, 1]], v[f[:, 2]])
    t, i = mesh_hits(mesh, o, d)
    assert np.isfinite(t_ref).mean() > 0.2
    np.testing.assert_array_equal(i, i_ref)
    np.testing.assert_allclose(t[np.isfinite(t)], t_ref[np.isfinite(t_ref)], rtol=1e-12)
    # any-hit (shadow) queries with a finite extent: blocked iff the nearest hit is nearer.
    tmax = jnp.asarray(np.where(np.isfinite(t_ref), t_ref * np.where(np.arange(len(o)) % 2, 1.01, 0.99), 5.0))
    occ = np.asarray(mesh.occlude(rt.Vec3.of(jnp.asarray(o)), rt.Vec3.of(jnp.asarray(d)), 0.0, tmax, None))
    np.testing.assert_array_equal(occ, np.where(t_ref < np.asarray(tmax), 0.0, 1.0))


def test_traced_bvh_build_hits_match_brute_force():
    # Built inside jit (the JAX build, not the host one): same hits.
    v, f = rt.read_obj(TORUS)
    o, d = (np.asarray(x).reshape(-1, 3) for x in rt.camera_rays(CAM))
    _, i_ref = brute_force_hits(o, d, v[f[:, 0]], v[f[:, 1]], v[f[:, 2]])

    @jax.jit
    def faces_hit(verts):
        m = rt.Mesh(verts, f, MAT)
        slot = m.hit_slots(rt.Vec3.of(jnp.asarray(o)), rt.Vec3.of(jnp.asarray(d)), 0.0, jnp.inf, any_hit=False)
        return jnp.where(slot >= 0, m.bvh.order[jnp.maximum(slot, 0)], -1)

    np.testing.assert_array_equal(faces_hit(jnp.asarray(v)), i_ref)


def test_bvh_is_built_when_the_scene_is_traced():
    # The README pattern: the Scene (and Mesh) built inside the differentiated
    # function.  The BVH must be built from the traced vertices (not skipped).
    v, f = rt.torus(1.0, 0.4, 40, 20)  # 1600 triangles
    seen = []

    def loss(verts):
        mesh = rt.Mesh(verts, f, MAT)
        seen.append(mesh.bvh.depth)
        scene = rt.Scene([mesh], [rt.PointLight((2, 4, -3), 300.0)])
        return jnp.sum(rt.render(scene, rt.Camera((0, 2.5, -4), (0, 0, 0), width=12, height=12)))

    g = jax.jit(jax.grad(loss))(jnp.asarray(v))
    assert seen and seen[0] == _bvh.build_bvh(v, f).depth >= 8
    assert np.all(np.isfinite(g)) and np.any(g != 0)


def test_bvh_refits_when_vertices_move():
    # Topology built for the original torus; moved vertices must still give
    # the brute-force hits (boxes are refit at render time).
    v, f = rt.read_obj(TORUS)
    mesh = rt.Mesh(v, f, MAT)
    warped = v * np.array([1.3, 0.7, 1.0]) + np.sin(3 * v[:, :1]) * 0.2
    moved = eqx.tree_at(lambda m: m.vertices, mesh, jnp.asarray(warped))
    o, d = (np.asarray(x).reshape(-1, 3) for x in rt.camera_rays(CAM))
    _, i_ref = brute_force_hits(o, d, warped[f[:, 0]], warped[f[:, 1]], warped[f[:, 2]])
    np.testing.assert_array_equal(mesh_hits(moved, o, d)[1], i_ref)


def test_transform_matches_transformed_vertices():
    v, f = rt.read_obj(TORUS)
    tr = rt.Transform((0.3, -0.2, 0.5), (0.4, -0.3, 0.2), (1.2, 0.8, 1.1))
    posed = rt.Mesh(v, f, MAT, transform=tr)
    baked = rt.Mesh(np.asarray(tr.apply(jnp.asarray(v))), f, MAT)
    scene = lambda m: rt.Scene([m, rt.Plane((0, -0.8, 0), (0, 1, 0))], [rt.PointLight((2, 4, -3), 300.0)])
    a = np.asarray(rt.render(scene(posed), CAM, max_bounces=1))
    b = np.asarray(rt.render(scene(baked), CAM, max_bounces=1))
    assert (a.sum(-1) > 0).mean() > 0.5
    np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-12)
    # Rotation vector and the equivalent quaternion give the same pose.
    w = np.array([0.4, -0.3, 0.2])
    ang = np.linalg.norm(w)
    q = np.concatenate([[np.cos(ang / 2)], np.sin(ang / 2) * w / ang]) * 2.5  # any length
    vq = rt.Transform((0, 0, 0), q).apply(jnp.asarray(v))
    np.testing.assert_allclose(vq, rt.Transform((0, 0, 0), w).apply(jnp.asarray(v)), atol=1e-13)
    # Near-zero rotation: Taylor branch agrees with the exact rotation of a tiny angle.
    tiny = np.array([1e-5, -2e-5, 3e-6])
    np.testing.assert_allclose(rt.Transform((0, 0, 0), tiny).apply(jnp.asarray(v)),
                               rt.Transform((0, 0, 0), np.r_[np.cos(np.linalg.norm(tiny) / 2),
                                            np.sin(np.linalg.norm(tiny) / 2) * tiny / np.linalg.norm(tiny)])
                               .apply(jnp.asarray(v)), atol=1e-15)


def _central_fd(f, x, h):
    x = np.asarray(x, np.float64)
    out = []
    for k in range(x.size):
        e = np.zeros(x.size)
        e[k] = h
        out.append((f(jnp.asarray(x + e.reshape(x.shape))) - f(jnp.asarray(x - e.reshape(x.shape)))) / (2 * h))
    return np.array(out).reshape(x.shape)


def test_mesh_gradients_match_finite_differences():
    # Shading of a mesh w.r.t. light position, vertex positions and the pose
    # (no edge crosses a pixel centre for these small steps; hard visibility).
    v, f = rt.read_obj(TORUS)
    cam = rt.Camera((0, 2.5, -4), (0, 0, 0), width=16, height=16)
    floor = rt.Plane((0, -0.6, 0), (0, 1, 0), rt.Material((0.5, 0.5, 0.5), reflection=0.2))

    def loss(light, verts, pose):
        tr = rt.Transform(pose[:3], pose[3:6], pose[6])
        scene = rt.Scene([rt.Mesh(verts, f, MAT, transform=tr), floor], [rt.PointLight(light, 300.0)])
        return jnp.sum(rt.render(scene, cam, max_bounces=1))

    x = [np.array([2.0, 4.0, -3.0]), v, np.array([0.05, 0.02, -0.03, 0.1, 0.2, -0.1, 1.05])]
    g = jax.jit(jax.grad(loss, argnums=(0, 1, 2)))(*map(jnp.asarray, x))
    f_ = jax.jit(loss)
    rng = np.random.default_rng(0)
    for i, h in ((0, 1e-6), (2, 1e-7)):
        fd = _central_fd(lambda y: f_(*[y if j == i else jnp.asarray(x[j]) for j in range(3)]), x[i], h)
        np.testing.assert_allclose(g[i], fd, rtol=1e-5, atol=1e-5 * np.abs(fd).max())
    # Vertices: directional derivative along a random direction (all 96 at once).
    u = rng.normal(size=v.shape)
    fd = (f_(x[0], jnp.asarray(v + 1e-7 * u), x[2]) - f_(x[0], jnp.asarray(v - 1e-7 * u), x[2])) / 2e-7
    np.testing.assert_allclose(np.sum(np.asarray(g[1]) * u), fd, rtol=1e-5)
