"""Object kinds: the `AbstractObject` interface, materials and analytic shapes.

An object kind is one equinox Module subclassing `AbstractObject`.  The Scene
stacks the objects of one kind into a single instance whose fields have a
leading object axis K (a sphere's `center` (3,) becomes (K, 3)) and calls its
methods once for all of them and a whole batch of rays:

    intersect(o, d, tmin, softness) -> Layer, fields (K, *S)
    occlude(o, d, tmin, tmax, softness) -> transmittance (*S)   (default: from intersect)

o, d: ray origins and unit directions (Vec3 of shape S); tmin (*S): hits
nearer than this are ignored (scale-relative self-intersection offset);
softness: None for hard visibility, else the traced half-width (world units)
of the smooth coverage band at silhouettes.  Kinds whose instances cannot be
stacked (meshes of different sizes) set `stackable = False` and get one
group per instance with unstacked fields.
"""

from __future__ import annotations

import abc
from typing import ClassVar

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from ._checks import as_float, check_range, check_triangles, concrete
from ._geometry import Layer, Surface, along_rays, plane_layer, ray_shape, sphere_layer, triangle_layer


class Material(eqx.Module):
    """Blinn-Phong material with mirror reflection.

    color (3,) linear RGB albedo in [0, 1]; ambient, diffuse, specular () >= 0
    dimensionless weights; reflection () in [0, 1]; shininess () >= 0
    Blinn-Phong exponent.  All differentiable.  Shading: color*ambient
    + sum_lights E*vis*(diffuse*color*max(n.l,0) + specular*max(n.h,0)**shininess)
    + reflection * (radiance of mirror ray).
    """

    color: jax.Array
    ambient: jax.Array
    diffuse: jax.Array
    specular: jax.Array
    shininess: jax.Array
    reflection: jax.Array

    def __init__(self, color=(1.0, 1.0, 1.0), *, ambient=0.05, diffuse=1.0,
                 specular=0.0, shininess=50.0, reflection=0.0):
        self.color = as_float(color, (3,), "Material color")
        self.ambient = as_float(ambient, (), "Material ambient")
        self.diffuse = as_float(diffuse, (), "Material diffuse")
        self.specular = as_float(specular, (), "Material specular")
        self.shininess = as_float(shininess, (), "Material shininess")
        self.reflection = as_float(reflection, (), "Material reflection")
        check_range(self.color, "Material color", 0.0, hint=" (linear RGB albedo)")
        for name in ("ambient", "diffuse", "specular", "shininess"):
            check_range(getattr(self, name), f"Material {name}", 0.0)
        check_range(self.reflection, "Material reflection", 0.0, 1.0, " (fraction of light mirrored)")

    def surface(self):
        """The fields as a Surface (after `along_rays`: color a Vec3)."""
        return Surface(self.color, self.ambient, self.diffuse, self.specular, self.shininess, self.reflection)


class AbstractObject(eqx.Module):
    """A kind of scene object; see the module docstring for the contract.

    Subclasses declare their own fields (a `material` among them, by
    convention; nothing here declares it, so that a subclass's fields keep
    their order in its default constructor)."""

    stackable: ClassVar[bool] = True

    @abc.abstractmethod
    def intersect(self, o, d, tmin, softness) -> Layer:
        """Surfaces of the K stacked objects along rays (o, d): Layer (K, *S)."""

    def occlude(self, o, d, tmin, tmax, softness):
        """Transmittance (*S) of the segment (tmin, tmax) of each ray: the
        product of (1 - coverage) of the objects hit on it."""
        lay = self.intersect(o, d, tmin, softness)
        return jnp.prod(1.0 - lay.alpha * (lay.depth < tmax), axis=0)


class Sphere(AbstractObject):
    """Sphere: center (3,), radius () > 0 (world units), material; all differentiable."""

    center: jax.Array
    radius: jax.Array
    material: Material

    def __init__(self, center, radius, material=None):
        self.center = as_float(center, (3,), "Sphere center")
        self.radius = as_float(radius, (), "Sphere radius")
        self.material = Material() if material is None else material
        r = concrete(self.radius)
        if r is not None and not r > 0:
            raise ValueError(f"Sphere radius must be positive, got {float(r)}; "
                             "pass the absolute value (the sphere's size) as radius.")

    def intersect(self, o, d, tmin, softness):
        g = along_rays(self, ray_shape(o, d))
        return sphere_layer(o, d, tmin, g.center, g.radius, g.material.surface(), softness)


class Triangle(AbstractObject):
    """Two-sided triangle with vertices a, b, c (3,) each, flat shaded; all differentiable."""

    a: jax.Array
    b: jax.Array
    c: jax.Array
    material: Material

    def __init__(self, a, b, c, material=None):
        self.a = as_float(a, (3,), "Triangle vertex a")
        self.b = as_float(b, (3,), "Triangle vertex b")
        self.c = as_float(c, (3,), "Triangle vertex c")
        self.material = Material() if material is None else material
        check_triangles(self.a[None], self.b[None], self.c[None], "Triangle")

    def intersect(self, o, d, tmin, softness):
        g = along_rays(self, ray_shape(o, d))
        return triangle_layer(o, d, tmin, g.a, g.b, g.c, g.material.surface(), softness)


class Plane(AbstractObject):
    """Infinite two-sided plane through point (3,) with normal (3,) (any length > 0).

    Planes have no silhouette: hard coverage at every softness."""

    point: jax.Array
    normal: jax.Array
    material: Material

    def __init__(self, point, normal, material=None):
        self.point = as_float(point, (3,), "Plane point")
        self.normal = as_float(normal, (3,), "Plane normal")
        self.material = Material() if material is None else material
        n = concrete(self.normal)
        if n is not None and not np.linalg.norm(n) > 0:
            raise ValueError("Plane normal has zero length; give a nonzero vector perpendicular to the plane.")

    def intersect(self, o, d, tmin, softness):
        g = along_rays(self, ray_shape(o, d))
        return plane_layer(o, d, tmin, g.point, g.normal, g.material.surface(), softness)
