"""Aiming: the network's interface, direct Newton aiming, training (slow), the examples."""

import os
import subprocess
import sys

import jax
import numpy as np
import pytest

from physics import _aim
from physics import trebuchet as tb

P = tb.Trebuchet()
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_aim_is_vectorised_and_in_range():
    aimer = tb.Aimer(jax.random.PRNGKey(0))
    angle, weight = tb.aim(aimer, 70.0, -4.0)
    assert angle.shape == () and weight.shape == ()
    target = np.linspace(20, 100, 6).reshape(2, 3)
    angle, weight = tb.aim(aimer, target, np.asarray([-15.0, 0.0, 15.0]))
    assert angle.shape == (2, 3) and weight.shape == (2, 3)
    assert np.all((angle > _aim.ANGLE_RANGE[0]) & (angle < _aim.ANGLE_RANGE[1]))
    assert np.all((weight > _aim.WEIGHT_RANGE[0]) & (weight < _aim.WEIGHT_RANGE[1]))
    # One query at a time gives the same answers as the batch.
    a1, w1 = tb.aim(aimer, target[1, 2], 15.0)
    np.testing.assert_allclose([a1, w1], [angle[1, 2], weight[1, 2]], rtol=1e-6)
    # The float32 inference agrees with the float64 network to float32 rounding.
    a64, w64 = aimer(target[1, 2], 15.0)
    np.testing.assert_allclose([a1, w1], [a64, w64], rtol=1e-5)


def test_aim_direct_hits_within_a_centimetre():
    for target, wind in [(70.0, -4.0), (25.0, 6.0), (100.0, -10.0)]:
        angle, weight = tb.aim_direct(target, wind, P)
        miss = float(tb.shoot(wind, angle, weight, P)) - target
        assert abs(miss) < 0.01, (target, wind, miss)


def test_aim_direct_unreachable_is_nan():
    # 100 m against a 15 m/s headwind at 30 degrees needs over a tonne: not a fake answer.
    _, weight = tb.aim_direct(100.0, -15.0, P)
    assert np.isnan(weight)


@pytest.mark.slow
def test_default_training_reaches_half_a_percent():
    aimer = tb.train_aimer(jax.random.PRNGKey(0), P, progress=False)
    target, wind = tb.sample_queries(jax.random.PRNGKey(42), 500)
    miss = np.asarray(tb.misses(aimer, target, wind, P))
    assert np.all(np.isfinite(miss))
    assert np.mean(np.abs(miss) / np.asarray(target)) < 0.005


def _run_example(name, tmp_path):
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    out = tmp_path / "out"
    res = subprocess.run([sys.executable, os.path.join(ROOT, "examples", name), "--quick",
                          "--out", str(out)], cwd=tmp_path, env=env, capture_output=True,
                         text=True, timeout=600)
    assert res.returncode == 0, res.stderr[-3000:]
    return out, res.stdout


def test_example_trebuchet_quick(tmp_path):
    out, stdout = _run_example("trebuchet.py", tmp_path)
    assert (out / "trebuchet_throw.gif").stat().st_size > 0
    assert (out / "trebuchet_trajectory.png").stat().st_size > 0
    assert "distance" in stdout


# Trains briefly and compiles the simulator three ways (~1-2 minutes): the README demo must run in CI.
def test_example_trebuchet_aim_quick(tmp_path):
    out, stdout = _run_example("trebuchet_aim.py", tmp_path)
    assert (out / "trebuchet_aim.png").stat().st_size > 0
    assert "direct Newton aiming" in stdout


@pytest.mark.slow
def test_benchmark_quick(tmp_path):
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    md = tmp_path / "bench.md"
    res = subprocess.run([sys.executable, os.path.join(ROOT, "benchmarks", "trebuchet.py"),
                          "--quick", "--md", str(md)], cwd=tmp_path, env=env,
                         capture_output=True, text=True, timeout=900)
    assert res.returncode == 0, res.stderr[-3000:]
    assert "| mean miss |" in md.read_text()
