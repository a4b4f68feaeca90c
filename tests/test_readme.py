"""The README's tour runs as written (the solvers and raytrace parts; the physics part
trains the aimer, which the trebuchet_aim example test covers), and gives the numbers it
implies."""

import pathlib
import re

import numpy as np

README = pathlib.Path(__file__).parent.parent / "README.md"


def blocks():
    return re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)


def test_solvers_tour():
    ns = {}
    exec(compile(blocks()[0], "README.md", "exec"), ns)
    sol = ns["sol"]
    assert sol.ys.shape == (50, 2)
    # Dense output between save points agrees with a save at that time.
    t = float(sol.ts[17])
    np.testing.assert_allclose(np.asarray(sol.evaluate(t)), np.asarray(sol.ys[17]), rtol=1e-8)


def test_raytrace_tour():
    ns = {}  # the blocks read on from one another (imports)
    for i in (0, 2):
        exec(compile(blocks()[i], "README.md", "exec"), ns)
    img = np.asarray(ns["img"])
    assert img.shape == (64, 64, 3) and np.all(np.isfinite(img))
    assert img[32, 32, 0] > img[32, 32, 2] > 0 and img[0, 0].max() == 0  # a lit red sphere on black
