"""Scene and camera.

A `Scene` groups its objects by kind: the objects of one stackable kind
(spheres, triangles, planes, any custom `AbstractObject`) become one instance
of that kind with a leading object axis on every field, so that the renderer
intersects all rays with all of them in one batched computation.  Meshes
(not stackable) are one group each.  Lights stay one Module each.

A gradient with respect to a scene (`equinox.filter_grad`) is a Scene of the
same structure, read by field name:

    grads.lights[0].position          # (3,)
    grads.group(rt.Sphere).center     # (S, 3), spheres in the order given
    grads.group(rt.Mesh)[0].transform.translation

Units: positions and radii in world units; angles in degrees (camera) or
radians (mesh rotations); colours are linear RGB.
"""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from ._checks import as_float, concrete
from ._lights import AbstractLight
from ._objects import AbstractObject


def _as_list(items, what, base):
    """items as a list of `base` instances; one instance alone is accepted too."""
    if isinstance(items, base):
        items = [items]
    try:
        items = list(items)
    except TypeError:
        raise TypeError(f"Scene {what} must be a list of {base.__name__}s, got {type(items).__name__}") from None
    for x in items:
        if not isinstance(x, base):
            raise TypeError(f"Scene {what} must be {base.__name__}s (e.g. rt.Sphere, rt.PointLight), "
                            f"got {type(x).__name__}; pass a list such as {what}=[...].")
    return items


def _group_key(obj):
    leaves, treedef = jax.tree_util.tree_flatten(obj)
    return type(obj), treedef, tuple((jnp.shape(x), jnp.result_type(x)) for x in leaves)


def _groups(objects):
    """Stackable objects of one kind (same structure) stacked into one instance, in first-seen order."""
    groups: dict = {}
    for k, obj in enumerate(objects):
        key = _group_key(obj) if type(obj).stackable else ("single", k)
        groups.setdefault(key, []).append(obj)
    return tuple(objs[0] if not type(objs[0]).stackable else jax.tree_util.tree_map(lambda *xs: jnp.stack(xs), *objs)
                 for objs in groups.values())


class Scene(eqx.Module):
    """Objects and lights.

    objects: a list of AbstractObjects (Sphere, Triangle, Plane, Mesh, your own kinds)
        or a single one; stored as `groups` (see the module docstring).
    lights: a list of AbstractLights (PointLight, DistantLight, ...) or one.
    background: (3,) radiance of rays that hit nothing.
    """

    groups: tuple
    lights: tuple
    background: jax.Array

    def __init__(self, objects, lights=(), background=(0.0, 0.0, 0.0)):
        objects = _as_list(objects, "objects", AbstractObject)
        if not objects:
            raise ValueError("Scene needs at least one object.")
        self.groups = _groups(objects)
        self.lights = tuple(_as_list(lights, "lights", AbstractLight))
        self.background = as_float(background, (3,), "Scene background")

    def group(self, kind):
        """The stacked group of a stackable kind (None if absent), or the tuple
        of instances of an unstackable kind such as Mesh."""
        found = [g for g in self.groups if type(g) is kind]
        if kind.stackable:
            return found[0] if found else None
        return tuple(found)


class Camera(eqx.Module):
    """Look-at pinhole camera.

    lookfrom, lookat, vup (3,) world points/vectors, vfov () vertical field of
    view in degrees (all differentiable); width, height static ints (pixels).
    """

    lookfrom: jax.Array
    lookat: jax.Array
    vup: jax.Array
    vfov: jax.Array
    width: int = eqx.field(static=True)
    height: int = eqx.field(static=True)

    def __init__(self, lookfrom, lookat, vup=(0.0, 1.0, 0.0), vfov=45.0, width=200, height=200):
        self.lookfrom = as_float(lookfrom, (3,), "Camera lookfrom")
        self.lookat = as_float(lookat, (3,), "Camera lookat")
        self.vup = as_float(vup, (3,), "Camera vup")
        self.vfov = as_float(vfov, (), "Camera vfov")
        if int(width) != width or int(height) != height or width < 1 or height < 1:
            raise ValueError(f"Camera width and height must be positive integers, got {width}x{height}")
        self.width = int(width)
        self.height = int(height)
        self._check()

    def _check(self):
        f, t, up, fov = (concrete(x) for x in (self.lookfrom, self.lookat, self.vup, self.vfov))
        if f is not None and t is not None:
            fwd = t - f
            if not np.linalg.norm(fwd) > 0:
                raise ValueError("Camera lookfrom and lookat are the same point, so the viewing direction "
                                 "has zero length; move lookat to the point the camera should face.")
            if up is not None:
                s = np.linalg.norm(np.cross(fwd / np.linalg.norm(fwd), up))
                if not s > 1e-9 * max(np.linalg.norm(up), 1e-300):
                    raise ValueError(
                        "Camera vup is zero or parallel to the viewing direction (lookat - lookfrom), "
                        "so the image's up direction is undefined; pick a vup not along the view, e.g. (0, 0, 1).")
        if fov is not None and not 0 < fov < 180:
            raise ValueError(f"Camera vfov must be in (0, 180) degrees, got {float(fov)}")

    def pixel_size(self, distance):
        """Width (world units) of one pixel's footprint at `distance` along the view."""
        return 2.0 * distance * jnp.tan(jnp.deg2rad(self.vfov) / 2) / self.height
