"""File input/output: OBJ meshes, PNG images, GIF animations."""

from __future__ import annotations

import re
import warnings
from pathlib import Path

import numpy as np

# 'v' and 'f' statements: keyword, then the rest of the line up to a comment.
_STATEMENT = re.compile(r"^[ \t]*(v|f)[ \t]+([^\r\n#]*)", re.M)
_SLASH_PARTS = re.compile(r"/[^\s]*")


def _decode(data, path):
    """Text of an OBJ file's bytes: UTF-8 (a byte-order mark is dropped), else latin-1.

    OBJ statements are ASCII; other encodings only appear in comments and
    names, which latin-1 (defined for every byte) reads without loss of the
    geometry.  NUL bytes mean a binary file: that is an error naming the line."""
    if data.startswith(b"\xef\xbb\xbf"):
        data = data[3:]
    nul = data.find(b"\x00")
    if nul >= 0:
        line = data.count(b"\n", 0, nul) + 1
        raise ValueError(f"{path}:{line}: binary data (NUL byte) in an OBJ file; give a text Wavefront OBJ file.")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return data.decode("latin-1")


def _numbers(text, dtype):
    """Whitespace-separated numbers of text (numpy's C parser), or None if any token is not one."""
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        try:
            return np.fromstring(text, dtype=dtype, sep=" ")
        except (ValueError, DeprecationWarning):
            return None


def _fast_obj(text):
    """(vertices, faces) parsed with vectorised numpy, or None where anything
    is unusual (then `_slow_obj` finds and names the offending line)."""
    recs = _STATEMENT.findall(text)
    is_face = np.fromiter((k == "f" for k, _ in recs), bool, len(recs))
    vtext = [r for k, r in recs if k == "v"]
    verts = _numbers(" ".join(vtext), np.float64)
    if verts is None or verts.size != 3 * len(vtext) or not np.all(np.isfinite(verts)):
        return None
    ftext = _SLASH_PARTS.sub("", "\n".join(r for k, r in recs if k == "f")).split("\n") if is_face.any() else []
    ntok = np.fromiter((len(r.split()) for r in ftext), np.int64, len(ftext))
    idx = _numbers(" ".join(ftext), np.int64)
    if idx is None or idx.size != ntok.sum() or np.any(ntok < 3):
        return None
    before = np.cumsum(~is_face)[is_face]  # vertices defined before each face
    raw = idx
    idx = np.where(raw > 0, raw - 1, np.repeat(before, ntok) + raw)
    if np.any(raw == 0) or np.any(idx < 0) or np.any(idx >= len(vtext)):
        return None
    # Fan triangulation of polygons: (0, k, k+1) for k = 1 .. n-2.
    ntri = ntok - 2
    starts = np.cumsum(ntok) - ntok
    face = np.repeat(np.arange(len(ntok)), ntri)
    k = np.arange(ntri.sum()) - np.repeat(np.cumsum(ntri) - ntri, ntri)
    s = starts[face]
    faces = np.stack([idx[s], idx[s + k + 1], idx[s + k + 2]], -1)
    return verts.reshape(-1, 3), faces.astype(np.int32)


def _slow_obj(text, path):
    """Line-by-line parse; raises a ValueError naming file and line on any error."""
    vertices, faces = [], []
    for lineno, line in enumerate(text.splitlines(), 1):
        parts = line.split("#", 1)[0].split()
        if not parts or parts[0] not in ("v", "f"):
            continue
        where = f"{path}:{lineno}: "
        try:
            if parts[0] == "v":
                if len(parts) < 4:
                    raise ValueError(f"a vertex needs x y z, got {len(parts) - 1} value(s)")
                xyz = [float(x) for x in parts[1:4]]
                if not all(np.isfinite(xyz)):
                    raise ValueError("vertex coordinates must be finite")
                vertices.append(xyz)
                continue
            idx = []
            for p in parts[1:]:
                i = int(p.split("/")[0])
                j = i - 1 if i > 0 else len(vertices) + i
                if i == 0 or not 0 <= j < len(vertices):
                    raise ValueError(f"vertex index {i} out of range (1..{len(vertices)} or -1..-{len(vertices)} "
                                     "so far; OBJ indices are 1-based)")
                idx.append(j)
            if len(idx) < 3:
                raise ValueError("a face needs at least 3 vertices")
            faces.extend([idx[0], idx[k], idx[k + 1]] for k in range(1, len(idx) - 1))
        except ValueError as e:
            raise ValueError(f"{where}cannot parse {line.strip()[:80]!r} ({e})") from None
    return np.asarray(vertices, np.float64).reshape(-1, 3), np.asarray(faces, np.int32).reshape(-1, 3)


def read_obj(path):
    """Vertices (V, 3) float64 and triangle faces (F, 3) int32 (0-based) from an OBJ file.

    Reads 'v' and 'f' lines; face entries may be 'i', 'i/t', 'i//n' or 'i/t/n',
    1-based or negative (relative); polygons are fan-triangulated.  Other
    lines (normals, texture coordinates, groups, materials) are ignored.
    UTF-8 with or without a byte-order mark, or latin-1.  Any malformed 'v'
    or 'f' line, out-of-range index or binary data raises a ValueError naming
    the file and line.  Vectorised (numpy): about 1-2 s per million triangles.
    """
    text = _decode(Path(path).read_bytes(), path)
    out = _fast_obj(text)
    if out is None or (out[1].size and out[1].max() >= len(out[0])):
        out = _slow_obj(text, path)
    vertices, faces = out
    if not len(vertices):
        raise ValueError(f"{path}: no vertices ('v x y z' lines) found")
    return vertices, faces


def _check_image(img, what="image"):
    """(H, W, 3) float64 numpy copy of img; clear errors for NaN and channels-first arrays."""
    x = np.asarray(img, np.float64)
    if x.ndim == 3 and x.shape[0] in (3, 4) and x.shape[-1] not in (3, 4):
        raise ValueError(f"{what} has shape {x.shape}, channels first; images are (height, width, 3): "
                         "pass img.transpose(1, 2, 0).")
    if x.ndim != 3 or x.shape[-1] != 3:
        raise ValueError(f"{what} must have shape (height, width, 3), got {x.shape}")
    bad = ~np.isfinite(x)
    if bad.any():
        raise ValueError(f"{what} has {int(bad.any(-1).sum())} pixel(s) with NaN or infinite values "
                         "(first at row, column {}); fix the render before saving.".format(
                             tuple(int(i) for i in np.argwhere(bad.any(-1))[0])))
    return x


def exposure_for(img, percentile=99.0, white=0.9):
    """Exposure multiplier that maps the given percentile of img's brightest
    channel to `white`: choose it once (e.g. from a target image) and pass it
    to every `save_image`/`save_gif` of a demo, so that the images compare."""
    x = _check_image(img).max(-1)
    level = np.percentile(x[x > 0], percentile) if np.any(x > 0) else 1.0
    return float(white / level)


def to_uint8(img, exposure=1.0, tonemap="clip"):
    """(H, W, 3) linear RGB -> sRGB-encoded uint8.

    The radiance is multiplied by `exposure`, then mapped to [0, 1] by
    tonemap "clip" (values above 1 are white) or "reinhard" (x / (1 + x):
    bright regions keep their shading)."""
    if tonemap not in ("clip", "reinhard"):
        raise ValueError(f"tonemap must be 'clip' or 'reinhard', got {tonemap!r}")
    if not (np.isfinite(exposure) and exposure > 0):
        raise ValueError(f"exposure must be a positive finite multiplier, got {exposure}")
    x = np.maximum(_check_image(img) * exposure, 0.0)
    if tonemap == "reinhard":
        x = x / (1.0 + x)
    x = np.minimum(x, 1.0)
    srgb = np.where(x <= 0.0031308, 12.92 * x, 1.055 * np.power(x, 1 / 2.4) - 0.055)
    return np.round(srgb * 255).astype(np.uint8)


def save_image(path, img, exposure=1.0, tonemap="clip"):
    """Write a (H, W, 3) linear RGB image as a gamma-encoded (sRGB) 8-bit PNG.

    exposure: radiance multiplier (see `exposure_for`); tonemap: "clip" or
    "reinhard" (see `to_uint8`).  NaN/inf pixels and channels-first arrays
    raise a ValueError."""
    from PIL import Image

    Image.fromarray(to_uint8(img, exposure, tonemap)).save(path)


def save_gif(path, frames, fps=10, exposure=1.0, tonemap="clip"):
    """Write a sequence of (H, W, 3) linear RGB images (e.g. the renders of an
    optimisation, one per step) as a looping GIF, each exposed as in `save_image`."""
    from PIL import Image

    frames = [Image.fromarray(to_uint8(f, exposure, tonemap)) for f in frames]
    if not frames:
        raise ValueError("save_gif needs at least one frame")
    frames[0].save(path, save_all=True, append_images=frames[1:], duration=int(1000 / fps), loop=0)


def write_obj(path, vertices, faces):
    """Write vertices (V, 3) and 0-based triangle faces (F, 3) as an OBJ file."""
    v = np.asarray(vertices, np.float64)
    f = np.asarray(faces, np.int64) + 1
    with open(path, "w") as fh:
        fh.write("".join(f"v {a:.9g} {b:.9g} {c:.9g}\n" for a, b, c in v.tolist()))
        fh.write("".join(f"f {a} {b} {c}\n" for a, b, c in f.tolist()))


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
