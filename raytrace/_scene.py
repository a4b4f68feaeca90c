"""Scene description: objects, lights, materials and camera as PyTrees.

User-facing objects (`Sphere`, `Triangle`, ...) are small equinox Modules.  A
`Scene` packs objects of each kind into arrays (struct of arrays), so that the
renderer intersects all rays with all spheres in one batched computation
instead of a Python loop.  Every float field is differentiable; integer fields (material indices,
mesh faces, BVH topology) are not, so differentiate whole scenes with
`equinox.filter_grad` or differentiate a float array the scene is built from.

Units: positions and radii in world units; angles in degrees; light
intensity is radiant intensity (point lights, falloff intensity / (4 pi d^2))
or irradiance (distant lights); colours are linear RGB.

Validation (degenerate triangles, negative radii, bad cameras) runs only on
concrete values: inside `jit`/`grad` tracing the values are unknown.
"""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from ._bvh import BVH, build_bvh

# Meshes with at least this many triangles get a BVH (when not traced).
BVH_MIN_TRIANGLES = 64


def _float(x, shape=None, name="value"):
    """Array of a float dtype; keeps float32/float64 inputs as they are."""
    x = jnp.asarray(x)
    if not jnp.issubdtype(x.dtype, jnp.floating):
        x = x.astype(jnp.result_type(float))
    if shape is not None and x.shape != shape:
        raise ValueError(f"{name} must have shape {shape}, got {x.shape}")
    return x


def _concrete(x):
    """numpy value of x, or None while tracing."""
    if isinstance(x, jax.core.Tracer):
        return None
    return np.asarray(x)


class Material(eqx.Module):
    """Blinn-Phong material with mirror reflection.

    color (3,) linear RGB albedo; ambient, diffuse, specular, reflection ()
    dimensionless weights; shininess () Blinn-Phong exponent.  All differentiable.
    Shading: color*ambient + sum_lights E*vis*(diffuse*color*max(n.l,0)
    + specular*max(n.h,0)**shininess) + reflection * (radiance of mirror ray).
    """

    color: jnp.ndarray
    ambient: jnp.ndarray
    diffuse: jnp.ndarray
    specular: jnp.ndarray
    shininess: jnp.ndarray
    reflection: jnp.ndarray

    def __init__(self, color=(1.0, 1.0, 1.0), *, ambient=0.05, diffuse=1.0,
                 specular=0.0, shininess=50.0, reflection=0.0):
        self.color = _float(color, (3,), "Material color")
        self.ambient = _float(ambient, (), "ambient")
        self.diffuse = _float(diffuse, (), "diffuse")
        self.specular = _float(specular, (), "specular")
        self.shininess = _float(shininess, (), "shininess")
        self.reflection = _float(reflection, (), "reflection")


class Sphere(eqx.Module):
    """Sphere: center (3,), radius () > 0, material."""

    center: jnp.ndarray
    radius: jnp.ndarray
    material: Material

    def __init__(self, center, radius, material=None):
        self.center = _float(center, (3,), "Sphere center")
        self.radius = _float(radius, (), "Sphere radius")
        self.material = Material() if material is None else material
        r = _concrete(self.radius)
        if r is not None and not r > 0:
            raise ValueError(
                f"Sphere radius must be positive, got {float(r)}; "
                "pass the absolute value (the sphere's size) as radius."
            )


def _check_triangles(a, b, c, what):
    a, b, c = (_concrete(x) for x in (a, b, c))
    if a is None or b is None or c is None:
        return
    area2 = np.linalg.norm(np.cross(b - a, c - a), axis=-1)
    scale = np.maximum.reduce([np.abs(a).max(-1), np.abs(b).max(-1), np.abs(c).max(-1), np.ones_like(area2)])
    bad = np.nonzero(~(area2 > 1e-12 * scale**2))[0]
    if bad.size:
        raise ValueError(
            f"{what}: {bad.size} degenerate triangle(s) with zero area (repeated or "
            f"collinear vertices), first at index {int(bad[0])}; remove them or fix their vertices."
        )


class Triangle(eqx.Module):
    """Two-sided triangle with vertices a, b, c (3,) each, flat shaded."""

    a: jnp.ndarray
    b: jnp.ndarray
    c: jnp.ndarray
    material: Material

    def __init__(self, a, b, c, material=None):
        self.a = _float(a, (3,), "Triangle vertex a")
        self.b = _float(b, (3,), "Triangle vertex b")
        self.c = _float(c, (3,), "Triangle vertex c")
        self.material = Material() if material is None else material
        _check_triangles(self.a[None], self.b[None], self.c[None], "Triangle")


class Plane(eqx.Module):
    """Infinite two-sided plane through point (3,) with normal (3,) (any length > 0)."""

    point: jnp.ndarray
    normal: jnp.ndarray
    material: Material

    def __init__(self, point, normal, material=None):
        self.point = _float(point, (3,), "Plane point")
        self.normal = _float(normal, (3,), "Plane normal")
        self.material = Material() if material is None else material
        n = _concrete(self.normal)
        if n is not None and not np.linalg.norm(n) > 0:
            raise ValueError("Plane normal has zero length; give a nonzero vector perpendicular to the plane.")


class Mesh(eqx.Module):
    """Triangle mesh: vertices (V, 3) float (differentiable), faces (F, 3) int.

    Rendered with hard visibility (`softness` does not blur its edges) and,
    from BVH_MIN_TRIANGLES triangles on, through a BVH.
    """

    vertices: jnp.ndarray
    faces: jnp.ndarray
    material: Material

    def __init__(self, vertices, faces, material=None):
        self.vertices = _float(vertices, name="Mesh vertices")
        faces = np.asarray(faces)
        if self.vertices.ndim != 2 or self.vertices.shape[1] != 3:
            raise ValueError(f"Mesh vertices must have shape (V, 3), got {self.vertices.shape}")
        if faces.ndim != 2 or faces.shape[1] != 3 or not np.issubdtype(faces.dtype, np.integer):
            raise ValueError(f"Mesh faces must be an integer array of shape (F, 3), got {faces.dtype} {faces.shape}")
        if faces.size and (faces.min() < 0 or faces.max() >= self.vertices.shape[0]):
            raise ValueError(
                f"Mesh faces index vertices 0..{self.vertices.shape[0] - 1} but contain "
                f"{faces.min()}..{faces.max()}; faces must be 0-based indices into vertices."
            )
        if faces.shape[0] == 0:
            raise ValueError("Mesh has no faces; an OBJ file needs 'f' lines.")
        self.faces = jnp.asarray(faces.astype(np.int32))
        self.material = Material() if material is None else material
        v = self.vertices
        _check_triangles(v[self.faces[:, 0]], v[self.faces[:, 1]], v[self.faces[:, 2]], "Mesh")

    @classmethod
    def from_obj(cls, path, material=None, dtype=None):
        """Load vertices and faces ('v' and 'f' lines) from a Wavefront OBJ file."""
        from ._io import read_obj

        vertices, faces = read_obj(path)
        if dtype is not None:
            vertices = vertices.astype(dtype)
        return cls(vertices, faces, material)


class PointLight(eqx.Module):
    """Point light: position (3,), intensity () (irradiance intensity/(4 pi d^2)), color (3,)."""

    position: jnp.ndarray
    intensity: jnp.ndarray
    color: jnp.ndarray

    def __init__(self, position, intensity=1.0, color=(1.0, 1.0, 1.0)):
        self.position = _float(position, (3,), "PointLight position")
        self.intensity = _float(intensity, (), "PointLight intensity")
        self.color = _float(color, (3,), "PointLight color")


class DistantLight(eqx.Module):
    """Light from infinitely far away travelling along `direction` (3,) (e.g. (0,-1,0)
    shines straight down); intensity () is the irradiance on a surface facing it."""

    direction: jnp.ndarray
    intensity: jnp.ndarray
    color: jnp.ndarray

    def __init__(self, direction, intensity=1.0, color=(1.0, 1.0, 1.0)):
        self.direction = _float(direction, (3,), "DistantLight direction")
        self.intensity = _float(intensity, (), "DistantLight intensity")
        self.color = _float(color, (3,), "DistantLight color")
        d = _concrete(self.direction)
        if d is not None and not np.linalg.norm(d) > 0:
            raise ValueError("DistantLight direction has zero length; give the direction the light travels in.")


class Camera(eqx.Module):
    """Look-at pinhole camera.

    lookfrom, lookat, vup (3,) world points/vectors, vfov () vertical field of
    view in degrees (all differentiable); width, height static ints (pixels).
    """

    lookfrom: jnp.ndarray
    lookat: jnp.ndarray
    vup: jnp.ndarray
    vfov: jnp.ndarray
    width: int = eqx.field(static=True)
    height: int = eqx.field(static=True)

    def __init__(self, lookfrom, lookat, vup=(0.0, 1.0, 0.0), vfov=45.0, width=200, height=200):
        self.lookfrom = _float(lookfrom, (3,), "Camera lookfrom")
        self.lookat = _float(lookat, (3,), "Camera lookat")
        self.vup = _float(vup, (3,), "Camera vup")
        self.vfov = _float(vfov, (), "Camera vfov")
        if int(width) != width or int(height) != height or width < 1 or height < 1:
            raise ValueError(f"Camera width and height must be positive integers, got {width}x{height}")
        self.width = int(width)
        self.height = int(height)
        f, t, up, fov = (_concrete(x) for x in (self.lookfrom, self.lookat, self.vup, self.vfov))
        if f is not None and t is not None:
            fwd = t - f
            if not np.linalg.norm(fwd) > 0:
                raise ValueError(
                    "Camera lookfrom and lookat are the same point, so the viewing direction "
                    "has zero length; move lookat to the point the camera should face."
                )
            if up is not None:
                s = np.linalg.norm(np.cross(fwd / np.linalg.norm(fwd), up))
                if not s > 1e-9 * max(np.linalg.norm(up), 1e-300):
                    raise ValueError(
                        "Camera vup is zero or parallel to the viewing direction (lookat - lookfrom), "
                        "so the image's up direction is undefined; pick a vup not along the view, e.g. (0, 0, 1)."
                    )
        if fov is not None and not 0 < fov < 180:
            raise ValueError(f"Camera vfov must be in (0, 180) degrees, got {float(fov)}")


class _Pack(eqx.Module):
    """Packed arrays of one kind; fields documented where they are built."""

    arrays: tuple
    mat: jnp.ndarray


class Scene(eqx.Module):
    """Objects and lights packed into arrays.

    spheres:   _Pack((center (S,3), radius (S,)), mat (S,)) or None
    triangles: _Pack((a, b, c) each (T,3), mat (T,)) or None   (single triangles)
    planes:    _Pack((point (P,3), normal (P,3)), mat (P,)) or None
    mesh:      _Pack((a, b, c) each (F,3), mat (F,)) or None    (all mesh triangles)
    bvh:       BVH over `mesh` or None (brute force)
    materials: Material with fields stacked to (M, ...)
    point_lights: (position (L,3), intensity (L,), color (L,3)) or None
    distant_lights: (direction (D,3), intensity (D,), color (D,3)) or None
    background: (3,) radiance of rays that hit nothing

    `accel`: "auto" (BVH for big concrete meshes), "bvh" or "none".
    """

    spheres: _Pack | None
    triangles: _Pack | None
    planes: _Pack | None
    mesh: _Pack | None
    bvh: BVH | None
    materials: Material
    point_lights: tuple | None
    distant_lights: tuple | None
    background: jnp.ndarray

    def __init__(self, objects, lights=(), background=(0.0, 0.0, 0.0), accel="auto"):
        objects, lights = list(objects), list(lights)
        if not objects:
            raise ValueError("Scene needs at least one object.")
        if accel not in ("auto", "bvh", "none"):
            raise ValueError(f"accel must be 'auto', 'bvh' or 'none', got {accel!r}")
        mats, mat_ids = [], {}

        def mat_index(m):
            if id(m) not in mat_ids:
                mat_ids[id(m)] = len(mats)
                mats.append(m)
            return mat_ids[id(m)]

        groups = {Sphere: [], Triangle: [], Plane: [], Mesh: []}
        for obj in objects:
            if type(obj) not in groups:
                raise ValueError(f"Unknown scene object {type(obj).__name__}; use Sphere, Triangle, Plane or Mesh.")
            groups[type(obj)].append(obj)

        def pack(objs, fields):
            if not objs:
                return None
            arrays = tuple(jnp.stack([getattr(o, f) for o in objs]) for f in fields)
            mat = jnp.asarray([mat_index(o.material) for o in objs], jnp.int32)
            return _Pack(arrays, mat)

        self.spheres = pack(groups[Sphere], ("center", "radius"))
        self.triangles = pack(groups[Triangle], ("a", "b", "c"))
        self.planes = pack(groups[Plane], ("point", "normal"))
        meshes = groups[Mesh]
        self.bvh = None
        if meshes:
            tris = [tuple(m.vertices[m.faces[:, k]] for k in range(3)) for m in meshes]
            arrays = tuple(jnp.concatenate([t[k] for t in tris]) for k in range(3))
            mat = jnp.concatenate(
                [jnp.full(m.faces.shape[0], mat_index(m.material), jnp.int32) for m in meshes]
            )
            self.mesh = _Pack(arrays, mat)
            concrete = [_concrete(x) for x in arrays]
            n = arrays[0].shape[0]
            want = accel == "bvh" or (accel == "auto" and n >= BVH_MIN_TRIANGLES)
            if want and all(x is not None for x in concrete):
                self.bvh = build_bvh(*concrete)
            elif accel == "bvh":
                raise ValueError(
                    "accel='bvh' needs concrete mesh vertices; build the Scene outside jit/grad "
                    "and pass it in as an argument."
                )
        else:
            self.mesh = None
        self.materials = jax.tree_util.tree_map(lambda *xs: jnp.stack(xs), *mats)

        pls = [l for l in lights if isinstance(l, PointLight)]
        dls = [l for l in lights if isinstance(l, DistantLight)]
        if len(pls) + len(dls) != len(lights):
            raise ValueError("Scene lights must be PointLight or DistantLight objects.")
        self.point_lights = (
            tuple(jnp.stack([getattr(l, f) for l in pls]) for f in ("position", "intensity", "color"))
            if pls else None
        )
        self.distant_lights = (
            tuple(jnp.stack([getattr(l, f) for l in dls]) for f in ("direction", "intensity", "color"))
            if dls else None
        )
        self.background = _float(background, (3,), "Scene background")
