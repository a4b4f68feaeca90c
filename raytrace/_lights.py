"""Light kinds: the `AbstractLight` interface, point and distant lights.

A light is an equinox Module with one method,

    illuminate(p) -> (l, dist, irradiance)

for surface points p (Vec3 of batch shape S): the unit direction l towards
the light (Vec3), the distance to it (*S, +inf for lights at infinity; the
shadow ray's extent) and the irradiance (Vec3, per RGB channel) that a surface
facing the light receives.  Lights are few; the renderer loops over them.
"""

from __future__ import annotations

import abc

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from ._checks import as_float, check_range, concrete
from ._geometry import Vec3, safe_norm, safe_normalize


class AbstractLight(eqx.Module):
    """A kind of light; see the module docstring for the contract."""

    @abc.abstractmethod
    def illuminate(self, p):
        """(l, dist, irradiance) at surface points p (Vec3 of shape S)."""


class PointLight(AbstractLight):
    """Point light: position (3,), intensity () >= 0 (irradiance intensity / (4 pi d^2)),
    color (3,) >= 0 (linear RGB).  All differentiable."""

    position: jax.Array
    intensity: jax.Array
    color: jax.Array

    def __init__(self, position, intensity=1.0, color=(1.0, 1.0, 1.0)):
        self.position = as_float(position, (3,), "PointLight position")
        self.intensity = as_float(intensity, (), "PointLight intensity")
        self.color = as_float(color, (3,), "PointLight color")
        check_range(self.intensity, "PointLight intensity", 0.0)
        check_range(self.color, "PointLight color", 0.0)

    def illuminate(self, p):
        to = Vec3.of(self.position) - p
        dist = safe_norm(to)
        l = to / jnp.where(dist > 0, dist, 1.0)
        irr = Vec3.of(self.color) * (self.intensity / (4.0 * jnp.pi * jnp.where(dist > 0, dist * dist, 1.0)))
        return l, dist, irr


class DistantLight(AbstractLight):
    """Light from infinitely far away travelling along `direction` (3,) (e.g. (0,-1,0)
    shines straight down); intensity () >= 0 is the irradiance on a surface facing it;
    color (3,) >= 0.  All differentiable."""

    direction: jax.Array
    intensity: jax.Array
    color: jax.Array

    def __init__(self, direction, intensity=1.0, color=(1.0, 1.0, 1.0)):
        self.direction = as_float(direction, (3,), "DistantLight direction")
        self.intensity = as_float(intensity, (), "DistantLight intensity")
        self.color = as_float(color, (3,), "DistantLight color")
        check_range(self.intensity, "DistantLight intensity", 0.0)
        check_range(self.color, "DistantLight color", 0.0)
        d = concrete(self.direction)
        if d is not None and not np.linalg.norm(d) > 0:
            raise ValueError("DistantLight direction has zero length; give the direction the light travels in.")

    def illuminate(self, p):
        l = -safe_normalize(Vec3.of(self.direction))
        inf = jnp.full(jnp.shape(p.x), jnp.inf, p.x.dtype)
        return l, inf, Vec3.of(self.color) * self.intensity
