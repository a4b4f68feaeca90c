"""Building blocks for new object and light kinds (see docs/raytrace.md).

An object kind subclasses `AbstractObject` and implements `intersect(o, d,
tmin, softness) -> Layer` for its objects stacked on a leading axis K; a
light kind subclasses `AbstractLight` and implements `illuminate(p)`.
"""

from ._geometry import (
    Layer,
    Surface,
    Vec3,
    along_rays,
    coverage,
    cross,
    dot,
    face_forward,
    ray_shape,
    safe_div,
    safe_norm,
    safe_normalize,
    smooth_coverage,
    vwhere,
)
from ._lights import AbstractLight
from ._objects import AbstractObject

__all__ = [
    "AbstractLight", "AbstractObject", "Layer", "Surface", "Vec3", "along_rays", "coverage", "cross", "dot",
    "face_forward", "ray_shape", "safe_div", "safe_norm", "safe_normalize", "smooth_coverage", "vwhere",
]
