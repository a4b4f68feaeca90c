"""Aiming: the envelope, the network's interface and reachability flags, direct Newton
aiming (scalar and vectorised), training quality (slow), the examples."""

import math
import os
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from physics import _aim, _envelope
from physics import trebuchet as tb

P = tb.Trebuchet()
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope="module")
def env():
    # A coarse table (winds every 2.5 m/s) keeps the test quick: ~750 throws.
    return tb.envelope(P, wind_step=2.5)


def _shoot(wind, angle, weight):
    return float(tb.shoot(float(wind), float(angle), float(weight), P))


def test_envelope_limits_are_the_box_extremes(env):
    # Independent check: random settings inside the box never throw beyond the limits,
    # and the limits are thrown by the path's end settings.
    rng = np.random.default_rng(0)
    for wind in (-10.0, 0.0, 7.5):
        lo, hi = (float(x) for x in env.limits(wind))
        a_best = float(env.best_angle(wind))
        # The table is thrown at rtol 1e-6, shoot at 1e-8: ~2e-4 m apart at 100 m.
        assert abs(_shoot(wind, a_best, 300.0) - hi) < 1e-3
        assert abs(_shoot(wind, _aim.ANGLE_RANGE[1], 10.0) - lo) < 1e-3
        angle = rng.uniform(*_aim.ANGLE_RANGE, 6)
        weight = np.exp(rng.uniform(*np.log(_aim.WEIGHT_RANGE), 6))
        d = np.asarray(jax.vmap(lambda a, m: tb.shoot_with_status(wind, a, m, P)[0])(
            jnp.asarray(angle), jnp.asarray(weight)))
        assert np.all((d >= lo - 1e-3) & (d <= hi + 1e-3)), (wind, d, lo, hi)
        # The best angle is a maximum: nearby angles throw shorter.
        for da in (-0.03, 0.03):
            assert _shoot(wind, a_best + da, 300.0) < hi


def test_envelope_table_interpolates_shoot(env):
    rng = np.random.default_rng(1)
    for _ in range(4):
        wind, s = rng.uniform(-12, 12), rng.uniform(0.05, 1.1)
        angle, log_w, _, _ = _envelope.settings(s, env.best_angle(wind))
        d = _shoot(wind, angle, math.exp(float(log_w)))
        # Linear in the wind between rows 2.5 m/s apart: ~0.1 m/(m/s)^2 x 2.5^2 / 8.
        assert abs(float(env.distance(s, wind)) - d) < 0.1
        np.testing.assert_allclose(float(env.distance(env.invert(d, wind), wind)), d, atol=1e-9)


def test_aim_result_unpacks_and_flags(env):
    aimer = tb.Aimer(jax.random.PRNGKey(0), env)
    angle, weight = tb.aim(aimer, 70.0, -4.0)  # unpacks as before
    assert angle.shape == () and weight.shape == ()
    target = np.asarray([[60.0, 1000.0, -50.0], [150.0, 40.0, 100.0]])
    wind = np.asarray([0.0, 0.0, -20.0])
    r = tb.aim(aimer, target, wind)
    assert r.angle.shape == (2, 3) and r.reachable.shape == (2, 3)
    lo_hi = [tuple(float(x) for x in env.limits(w)) for w in wind]
    expected = np.asarray([[lo <= t <= hi and t > 0 for t, (lo, hi) in zip(row, lo_hi)]
                           for row in target])
    np.testing.assert_array_equal(r.reachable, expected)
    assert expected.sum() == 2 and not expected[0, 1] and not expected[0, 2]
    assert np.all(np.isnan(r.angle[~expected])) and np.all(np.isnan(r.weight[~expected]))
    # Out of reach: the predicted miss is the shortfall of the longest throw.
    np.testing.assert_allclose(r.predicted_miss[1, 0], lo_hi[0][1] - 150.0, atol=1e-9)
    assert r.predicted_miss[1, 2] < 0  # 100 m against 20 m/s is beyond reach
    ok = np.argwhere(expected)
    for i, j in ok:
        a, w = r.angle[i, j], r.weight[i, j]
        assert _aim.ANGLE_RANGE[0] <= a <= _aim.ANGLE_RANGE[1]
        assert _aim.WEIGHT_RANGE[0] <= w <= _aim.WEIGHT_RANGE[1]
        # The predicted miss of the (untrained) network's setting is what the simulator says.
        miss = _shoot(wind[j], a, w) - target[i, j]
        assert abs(float(r.predicted_miss[i, j]) - miss) < 0.1, (miss, r.predicted_miss[i, j])
    # One query at a time gives the same answers as the batch.
    one = tb.aim(aimer, target[1, 1], wind[1])
    np.testing.assert_allclose([one.angle, one.weight], [r.angle[1, 1], r.weight[1, 1]], rtol=1e-12)


def test_aim_direct_hits_and_vectorises(env):
    target = np.asarray([70.0, 25.0, 100.0, 100.0, 5.0])
    wind = np.asarray([-4.0, 6.0, -10.0, -12.0, 0.0])
    r = tb.aim_direct(target, wind, P, envelope_=env)
    assert np.all(r.reachable)
    for k in range(len(target)):
        miss = _shoot(wind[k], r.angle[k], r.weight[k]) - target[k]
        assert abs(miss) < 1e-3, (target[k], wind[k], miss)
        np.testing.assert_allclose(miss, r.predicted_miss[k], atol=1e-9)
        assert _aim.WEIGHT_RANGE[0] <= r.weight[k] <= _aim.WEIGHT_RANGE[1]
    one = tb.aim_direct(target[2], wind[2], P, envelope_=env)
    assert one.angle.shape == ()
    np.testing.assert_allclose([one.angle, one.weight], [r.angle[2], r.weight[2]], rtol=1e-12)


def test_aim_direct_flags_unreachable(env):
    target = np.asarray([1000.0, -50.0, 100.0, 150.0])
    wind = np.asarray([0.0, 0.0, -15.0, 0.0])
    r = tb.aim_direct(target, wind, P, envelope_=env)
    assert not np.any(r.reachable)
    assert np.all(np.isnan(r.angle)) and np.all(np.isnan(r.weight))
    # The predicted miss is the simulated miss of the best setting: the longest throw for
    # targets too far, the shortest one for -50 m.
    lo0, hi0 = (float(x) for x in env.limits(0.0))
    miss = np.asarray(r.predicted_miss)
    np.testing.assert_allclose(miss[[0, 3]], hi0 - target[[0, 3]], atol=1e-3)
    np.testing.assert_allclose(miss[1], lo0 + 50.0, atol=1e-3)
    # At a fixed 30 degrees, 100 m against 12 m/s needs ~356 kg: outside the weight range.
    fixed = tb.aim_direct(100.0, -12.0, P, angle=math.radians(30))
    assert not fixed.reachable and np.isnan(fixed.weight) and fixed.predicted_miss < 0
    np.testing.assert_allclose(fixed.predicted_miss,
                               _shoot(-12.0, math.radians(30), 300.0) - 100.0, atol=1e-6)


@pytest.mark.parametrize("kwargs", [dict(tol=0.0), dict(tol=-1.0), dict(tol=float("nan")),
                                    dict(iterations=0), dict(angle=1.5)])
def test_aim_direct_rejects_bad_arguments(kwargs):
    name = next(iter(kwargs))
    with pytest.raises(ValueError, match=name):
        tb.aim_direct(70.0, 0.0, P, **kwargs)


def test_non_finite_queries_are_rejected(env):
    aimer = tb.Aimer(jax.random.PRNGKey(0), env)
    with pytest.raises(ValueError, match="target"):
        tb.aim(aimer, [50.0, float("nan")], 0.0)
    with pytest.raises(ValueError, match="wind"):
        tb.aim_direct(50.0, float("inf"), P, envelope_=env)


@pytest.mark.slow
def test_default_training_quality():
    aimer = tb.train_aimer(jax.random.PRNGKey(0), P, progress=False)
    target, wind = tb.sample_queries(jax.random.PRNGKey(42), 5000)
    miss = np.asarray(tb.misses(aimer, target, wind, P))
    rel = np.abs(miss) / np.asarray(target)
    assert np.all(np.isfinite(miss))
    assert np.mean(rel) < 1e-3 and np.percentile(rel, 95) < 3e-3
    # Where the network is off, its predicted miss says so (the table is good to ~5 mm).
    r = tb.aim(aimer, target, wind)
    ok = np.asarray(r.reachable)
    np.testing.assert_allclose(np.asarray(r.predicted_miss)[ok], miss[ok], atol=0.01)


def _run_example(name, tmp_path):
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    out = tmp_path / "out"
    res = subprocess.run([sys.executable, os.path.join(ROOT, "examples", name), "--quick",
                          "--out", str(out)], cwd=tmp_path, env=env, capture_output=True,
                         text=True, timeout=600)
    assert res.returncode == 0, res.stderr[-3000:]
    return out, res.stdout


# ~30 s: the trebuchet example's plots (its physics is covered by test_trebuchet.py)
@pytest.mark.slow
def test_example_trebuchet_quick(tmp_path):
    out, stdout = _run_example("trebuchet.py", tmp_path)
    assert (out / "trebuchet_throw.gif").stat().st_size > 0
    assert (out / "trebuchet_trajectory.png").stat().st_size > 0
    assert "distance" in stdout


# Trains briefly and compiles the simulator twice (~1 minute): the README demo must run in CI.
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
