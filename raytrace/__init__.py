"""Differentiable ray tracer in JAX.

    import raytrace as rt
    scene = rt.Scene(objects=[rt.Sphere((0, 0, 0), 1.0, rt.Material((1, 0, 0)))],
                     lights=[rt.PointLight((5, 5, -5), 500.0)])
    img = rt.render(scene, rt.Camera((0, 0, -5), (0, 0, 0)))   # (200, 200, 3)
    rt.save_image("out.png", img)

See `render` for soft visibility (gradients at moving edges and shadows).
"""

from ._io import read_obj, save_gif, save_image, torus, write_obj
from ._render import camera_rays, render
from ._scene import (
    Camera,
    DistantLight,
    Material,
    Mesh,
    Plane,
    PointLight,
    Scene,
    Sphere,
    Triangle,
)

__all__ = [
    "Camera", "DistantLight", "Material", "Mesh", "Plane", "PointLight", "Scene", "Sphere",
    "Triangle", "camera_rays", "read_obj", "render", "save_gif", "save_image", "torus",
    "write_obj",
]
