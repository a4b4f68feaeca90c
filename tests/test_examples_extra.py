"""Run the gallery examples in quick mode (subprocesses) and check their pictures and numbers."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def run_example(name, out, *extra, timeout=600):
    env = dict(os.environ, MPLBACKEND="Agg")
    env.pop("XLA_FLAGS", None)
    proc = subprocess.run(
        [sys.executable, str(ROOT / "examples" / name), "--quick", "--out", str(out), *extra],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout,
    )
    assert proc.returncode == 0, f"{name} failed:\n{proc.stdout}\n{proc.stderr[-4000:]}"
    return proc.stdout


def number(pattern, text):
    m = re.search(pattern, text)
    assert m, f"{pattern!r} not in output:\n{text}"
    return float(m.group(1))


def check_png(path):
    assert path.exists(), f"{path} not written"
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert path.stat().st_size > 5_000


def test_taylor_sin(tmp_path):
    out = run_example("taylor_sin.py", tmp_path)
    check_png(tmp_path / "taylor_sin.png")
    assert number(r"max error over all derivatives: (\S+)", out) < 1e-12
    assert abs(number(r"grad at 1 = (\S+),", out) - 0.5403023058681398) < 1e-14
    assert number(r"derivatives 0-3: (\S+)", out) < 1e-12


def test_neural_ode_spiral(tmp_path):
    out = run_example("neural_ode_spiral.py", tmp_path)
    check_png(tmp_path / "neural_ode_spiral.png")
    # quick mode: 60 + 18 Adam steps take the full-trajectory error from ~9 to ~0.6
    # (the full run, 3900 steps, reaches ~0.02)
    assert number(r"loss ratio final/initial: (\S+)", out) < 0.2
    assert number(r"final full-trajectory mean abs error: (\S+)", out) < 1.5


def test_pendulum_swingup(tmp_path):
    out = run_example("pendulum_swingup.py", tmp_path)
    check_png(tmp_path / "pendulum_swingup.png")
    # quick mode: 40 steps do not swing it up, and the honest verdict (10 fresh starts,
    # 14 s, adaptive Tsit5) says so; that a short training lowers the loss, the gradient
    # against central differences and the 9-of-10-seeds full runs (slow) are in
    # tests/test_cartpole_swingup.py
    assert number(r"successes: (\d+) of 1", out) == 0
    assert number(r"max angle error (\S+) rad", out) > 0.1


def test_ensemble_sharding(tmp_path):
    # one device in this subprocess unless --devices is given; see test_sharding.py for 4
    out = run_example("ensemble_sharding.py", tmp_path, "--devices", "2")
    check_png(tmp_path / "ensemble_sharding.png")
    assert "devices: 2 x cpu" in out
    assert number(r"max abs diff sharded vs single: (\S+)", out) < 1e-10
