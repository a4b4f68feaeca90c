"""The neural surrogate of shoot, and aiming trained through it."""

import os
import subprocess
import sys

import jax
import numpy as np
import pytest

from physics import _envelope, _surrogate
from physics import trebuchet as tb

P = tb.Trebuchet()
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _errors(sur, n=300, seed=7):
    """Surrogate minus simulator (m) on fresh throws over the operating range."""
    w, a, lw = _surrogate.sample_settings(jax.random.PRNGKey(seed), n)
    z = np.zeros_like(w)
    # rtol 1e-6 as train_surrogate: one compilation (its error, ~1e-4 m, is far below the fit's)
    d, _ = _envelope.shoot_dir(w, a, lw, z, z, tb._as_arrays(P), 1e-6)
    ds, _ = _surrogate.directional(sur)(w, a, lw, z, z)
    return ds - d, d


@pytest.fixture(scope="module")
def small_surrogate():
    return tb.train_surrogate(jax.random.PRNGKey(0), P, n=512, steps=400, progress=False)


def test_small_surrogate_learns_shoot(small_surrogate):
    err, d = _errors(small_surrogate)
    untrained, _ = _errors(tb.Surrogate(jax.random.PRNGKey(1)))
    # Distances spread over ~0-230 m (sd ~45 m); a quick fit must explain most of it.
    assert np.sqrt(np.mean(err**2)) < 0.2 * np.std(d)
    assert np.sqrt(np.mean(err**2)) < 0.2 * np.sqrt(np.mean(untrained**2))


def test_surrogate_derivatives_match_central_differences(small_surrogate):
    sur = small_surrogate
    x = (-3.0, 0.6, 60.0)
    grads = jax.grad(lambda *v: sur(*v), argnums=(0, 1, 2))(*x)
    f = jax.jit(lambda *v: sur(*v))
    for i, g in enumerate(grads):
        h = 1e-5 * max(1.0, abs(x[i]))
        up, down = list(x), list(x)
        up[i] += h
        down[i] -= h
        np.testing.assert_allclose(float(g), (float(f(*up)) - float(f(*down))) / (2 * h), rtol=1e-6)


def test_aimer_trains_through_the_surrogate(small_surrogate):
    aimer = tb.train_aimer(jax.random.PRNGKey(0), P, surrogate=small_surrogate, rounds=1,
                           batch=64, steps=5, refit_steps=2, progress=False)
    # Its envelope is the surrogate's: at the path's far end it is the surrogate's distance.
    a_best = float(aimer.envelope.best_angle(0.0))
    hi = float(aimer.envelope.limits(0.0)[1])
    np.testing.assert_allclose(hi, float(small_surrogate(0.0, a_best, 300.0)), atol=1e-9)
    angle, weight = tb.aim(aimer, 60.0, 0.0)
    assert np.isfinite(angle) and np.isfinite(weight)


def test_train_surrogate_rejects_bad_sizes():
    with pytest.raises(ValueError, match="n must"):
        tb.train_surrogate(jax.random.PRNGKey(0), P, n=0)


@pytest.mark.slow
def test_default_surrogate_error():
    sur = tb.train_surrogate(jax.random.PRNGKey(0), P, progress=False)
    err, d = _errors(sur, n=2000)
    # Measured: rms 0.7 m, mean 0.6% of the distance beyond 20 m.
    assert np.sqrt(np.mean(err**2)) < 1.5
    far = d > 20
    assert np.mean(np.abs(err[far]) / d[far]) < 0.01


@pytest.mark.slow
def test_example_trebuchet_surrogate_quick(tmp_path):
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    out = tmp_path / "out"
    res = subprocess.run([sys.executable, os.path.join(ROOT, "examples", "trebuchet_surrogate.py"),
                          "--quick", "--out", str(out)], cwd=tmp_path, env=env,
                         capture_output=True, text=True, timeout=900)
    assert res.returncode == 0, res.stderr[-3000:]
    assert (out / "trebuchet_surrogate.png").stat().st_size > 0
    assert "aimer through the surrogate" in res.stdout
