"""Differentiable ray tracer in JAX.

    import raytrace as rt
    scene = rt.Scene(objects=[rt.Sphere((0, 0, 0), 1.0, rt.Material((1, 0, 0)))],
                     lights=[rt.PointLight((5, 5, -5), 500.0)])
    img = rt.render(scene, rt.Camera((0, 0, -5), (0, 0, 0)))   # (200, 200, 3)
    rt.save_image("out.png", img, exposure=rt.exposure_for(img))

See `render` for soft visibility (gradients at moving edges and shadows) and
`raytrace.extend` (docs/raytrace.md) for writing a new object or light kind.
"""

from ._geometry import Layer, Vec3
from ._io import exposure_for, read_obj, save_gif, save_image, torus, write_obj
from ._lights import AbstractLight, DistantLight, PointLight
from ._mesh import Mesh, Transform
from ._objects import AbstractObject, Material, Plane, Sphere, Triangle
from ._render import camera_rays, render
from ._scene import Camera, Scene

__all__ = [
    "AbstractLight", "AbstractObject", "Camera", "DistantLight", "Layer", "Material", "Mesh", "Plane",
    "PointLight", "Scene", "Sphere", "Transform", "Triangle", "Vec3", "camera_rays", "exposure_for",
    "read_obj", "render", "save_gif", "save_image", "torus", "write_obj",
]
