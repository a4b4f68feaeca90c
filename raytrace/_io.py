"""File input/output: OBJ meshes, PNG images, GIF animations."""

from __future__ import annotations

import numpy as np


def read_obj(path):
    """Vertices (V, 3) float64 and triangle faces (F, 3) int32 from an OBJ file.

    Reads 'v' and 'f' lines; face entries may be 'i', 'i/t', 'i//n' or 'i/t/n',
    1-based or negative (relative); polygons are fan-triangulated.  Other
    lines (normals, texture coordinates, groups, materials) are ignored.
    """
    vertices, faces = [], []
    with open(path) as fh:
        for lineno, line in enumerate(fh, 1):
            parts = line.split()
            if not parts or parts[0].startswith("#"):
                continue
            try:
                if parts[0] == "v":
                    vertices.append([float(x) for x in parts[1:4]])
                elif parts[0] == "f":
                    idx = []
                    for p in parts[1:]:
                        i = int(p.split("/")[0])
                        idx.append(i - 1 if i > 0 else len(vertices) + i)
                    if len(idx) < 3:
                        raise ValueError("a face needs at least 3 vertices")
                    faces.extend([idx[0], idx[k], idx[k + 1]] for k in range(1, len(idx) - 1))
            except ValueError as e:
                raise ValueError(f"{path}:{lineno}: cannot parse {line.strip()!r} ({e})") from None
    if not vertices:
        raise ValueError(f"{path}: no vertices ('v x y z' lines) found")
    return np.asarray(vertices, np.float64), np.asarray(faces, np.int32).reshape(-1, 3)


def to_uint8(img):
    """(H, W, 3) linear RGB -> sRGB-encoded uint8 (values clipped to [0, 1])."""
    x = np.clip(np.asarray(img, np.float64), 0.0, 1.0)
    srgb = np.where(x <= 0.0031308, 12.92 * x, 1.055 * np.power(x, 1 / 2.4) - 0.055)
    return np.round(srgb * 255).astype(np.uint8)


def save_image(path, img):
    """Write a (H, W, 3) linear RGB image as a gamma-encoded (sRGB) 8-bit PNG."""
    from PIL import Image

    Image.fromarray(to_uint8(img)).save(path)


def save_gif(path, frames, fps=10):
    """Write a sequence of (H, W, 3) linear RGB images (e.g. the renders of an
    optimisation, one per step) as a looping GIF."""
    from PIL import Image

    frames = [Image.fromarray(to_uint8(f)) for f in frames]
    if not frames:
        raise ValueError("save_gif needs at least one frame")
    frames[0].save(path, save_all=True, append_images=frames[1:], duration=int(1000 / fps), loop=0)


def write_obj(path, vertices, faces):
    """Write vertices (V, 3) and 0-based triangle faces (F, 3) as an OBJ file."""
    with open(path, "w") as fh:
        for v in np.asarray(vertices, np.float64):
            fh.write(f"v {v[0]:.9g} {v[1]:.9g} {v[2]:.9g}\n")
        for f in np.asarray(faces) + 1:
            fh.write(f"f {f[0]} {f[1]} {f[2]}\n")


def torus(R, r, nu, nv):
    """A triangulated torus around the y axis, for test scenes and benchmarks.

    R: distance from the centre to the tube's centre; r: tube radius (world units);
    nu, nv: segments around the ring and around the tube. Returns numpy vertices
    (nu*nv, 3) and faces (2*nu*nv, 3), ready for `Mesh` or `write_obj`.
    """
    u = np.linspace(0, 2 * np.pi, nu, endpoint=False)
    v = np.linspace(0, 2 * np.pi, nv, endpoint=False)
    U, V = np.meshgrid(u, v, indexing="ij")
    verts = np.stack([(R + r * np.cos(V)) * np.cos(U), r * np.sin(V), (R + r * np.cos(V)) * np.sin(U)], -1)
    i, j = np.meshgrid(np.arange(nu), np.arange(nv), indexing="ij")
    a, b = i * nv + j, (i + 1) % nu * nv + j
    c, d = (i + 1) % nu * nv + (j + 1) % nv, i * nv + (j + 1) % nv
    faces = np.concatenate([np.stack([a, b, c], -1).reshape(-1, 3), np.stack([a, c, d], -1).reshape(-1, 3)])
    return verts.reshape(-1, 3), faces
