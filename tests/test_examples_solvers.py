"""The solver examples run as scripts with --quick --out DIR, write their PNGs and
print sane results."""

import os
import re
import subprocess
import sys

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def run(script, tmp_path):
    out = subprocess.run([sys.executable, os.path.join(ROOT, "examples", script), "--quick", "--out", str(tmp_path)],
                         capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert out.returncode == 0, out.stderr[-3000:]
    return out.stdout


def test_lotka_volterra_fit(tmp_path):
    text = run("lotka_volterra_fit.py", tmp_path)
    png = tmp_path / "lotka_volterra_fit.png"
    assert png.exists() and png.stat().st_size > 10000
    rows = re.findall(r"^\s+([abcd])\s+([\d.]+)\s+([\d.]+)\s+([\d.]+)\s", text, re.M)
    assert [r[0] for r in rows] == ["a", "b", "c", "d"], text
    truth, start, rec = (np.array([float(r[i]) for r in rows]) for i in (1, 2, 3))
    np.testing.assert_allclose(truth, [1.5, 1.0, 3.0, 1.0])
    # even 30 quick Adam steps move every parameter towards the truth
    assert np.all(np.abs(rec - truth) < np.abs(start - truth)), text


def test_bouncing_ball(tmp_path):
    text = run("bouncing_ball.py", tmp_path)
    assert (tmp_path / "bouncing_ball.png").exists()
    errs = [float(x) for x in re.findall(r"error ([\d.e+-]+)", text)]
    assert len(errs) == 2, text
    assert errs[0] < 1e-10 and errs[1] < 1e-8, text



