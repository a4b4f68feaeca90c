"""The swing-up examples (examples/cartpole_swingup.py, examples/pendulum_swingup.py):
a short training lowers the loss, the gradient through the simulation matches float64
central differences, the pictures are written; slow: 9 of 10 seeds swing up and balance."""

from __future__ import annotations

import sys
from pathlib import Path

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from helpers import central_fd

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "examples"))
import _swingup  # noqa: E402
import cartpole_swingup as cps  # noqa: E402
import pendulum_swingup as pds  # noqa: E402

SHORT = 1.0  # s: horizon of the fast tests


def _random_last_layer(ctrl, key):
    """The examples start from a zero last layer; give it random weights so that every
    parameter's gradient is non-zero."""
    last = ctrl.mlp.layers[-1]
    w = 0.3 * jax.random.normal(key, last.weight.shape)
    return eqx.tree_at(lambda c: c.mlp.layers[-1].weight, ctrl, w)


@pytest.mark.parametrize("ex", [cps, pds], ids=["cartpole", "pendulum"])
def test_short_training_lowers_loss(ex):
    starts = ex.sample_train(jax.random.PRNGKey(3))
    loss = lambda c, y0s, progress: ex.loss_fn(c, y0s, 0.0, t1=SHORT)  # noqa: E731
    ctrl = ex.Controller(jax.random.PRNGKey(0))
    tr = _swingup.train(ctrl, loss, lambda key: starts, jax.random.PRNGKey(1), 40, 1e-2)
    before, after = (float(ex.loss_fn(c, starts, 0.0, t1=SHORT)) for c in (ctrl, tr.ctrl))
    assert before == pytest.approx(tr.losses[0], rel=1e-12)
    # measured: cart-pole 1.528 -> 1.490 (at this discount, 0.2 s, the first instants,
    # which no controller changes much, dominate); a wrong-signed gradient raises it
    assert after < before, (before, after)
    assert tr.compile_s > 0 and tr.steps == 40


@pytest.mark.parametrize("ex", [cps, pds], ids=["cartpole", "pendulum"])
def test_gradient_through_simulation_matches_central_differences(ex):
    ctrl = _random_last_layer(ex.Controller(jax.random.PRNGKey(0)), jax.random.PRNGKey(2))
    starts = ex.sample_train(jax.random.PRNGKey(3))[::4]
    loss = eqx.filter_jit(lambda c: ex.loss_fn(c, starts, 0.5, t1=SHORT))
    grad = eqx.filter_grad(lambda c: ex.loss_fn(c, starts, 0.5, t1=SHORT))(ctrl)
    for get, idx in ((lambda c: c.mlp.layers[0].weight, (1, 2)), (lambda c: c.mlp.layers[-1].bias, (0,))):
        base = get(ctrl)

        def f(v):
            return loss(eqx.tree_at(get, ctrl, base.at[idx].set(v)))

        fd = central_fd(f, jnp.asarray(base[idx]), eps=1e-6).ravel()[0]
        g = float(get(grad)[idx])
        assert abs(g) > 1e-4
        np.testing.assert_allclose(g, fd, rtol=1e-6)


def test_validation_and_selection_starts_are_not_the_judges():
    """The cart-pole picks its controller on validation and selection starts: none of
    their keys is a judge key of any seed 0..9, and no judged start is among them."""
    ks = [cps.keys(seed) for seed in range(10)]
    judge = {tuple(np.asarray(k[name]).ravel().tolist()) for k in ks for name in ("judge", "extra")}
    picked = {tuple(np.asarray(k[name]).ravel().tolist()) for k in ks for name in ("val", "select")}
    assert len(judge) == 20 and len(picked) == 20 and not judge & picked
    for k in ks:
        judged = np.asarray(cps.sample(k["judge"], cps.N_JUDGE))
        seen = np.concatenate([cps.sample(k["val"], cps.N_VAL), cps.sample(k["select"], cps.N_SELECT)])
        assert np.min(np.abs(judged[:, None, :] - np.asarray(seen)[None]).max(-1)) > 1e-6


def test_train_scales_the_learning_rate_when_check_says_so():
    """lr_scalable: a check that returns scale 0 freezes the parameters from then on; the
    default (no scale) keeps training."""
    ex = cps
    starts = ex.sample_train(jax.random.PRNGKey(3))[::4]
    loss = lambda c, y0s, progress: ex.loss_fn(c, y0s, 0.0, t1=0.2)  # noqa: E731
    for scale, frozen in ((0.0, True), (None, False)):
        seen = []

        def check(ctrl, scale=scale):
            seen.append(ctrl)
            return (False, "") if scale is None else (False, "", scale)

        tr = _swingup.train(ex.Controller(jax.random.PRNGKey(0)), loss, lambda key: starts,
                            jax.random.PRNGKey(1), 10, 1e-2, check, check_every=5, log=lambda s: None,
                            lr_scalable=True)
        w_first, w_last = (c.mlp.layers[-1].weight for c in (seen[0], tr.ctrl))
        assert np.array_equal(w_first, w_last) == frozen


@pytest.mark.slow  # ~1 min of compiling (training step, RK4 and Tsit5 judges, plots)
def test_cartpole_example_writes_plot_and_gif(tmp_path):
    wins = cps.main(["--steps", "2", "--out", str(tmp_path)])
    assert wins == 0  # two steps do not swing it up: the verdict can say no
    png, gif = tmp_path / "cartpole_swingup.png", tmp_path / "cartpole_swingup.gif"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 5_000
    from PIL import Image

    with Image.open(gif) as im:
        # one frame per 0.05 s; Pillow merges identical consecutive frames (at rest)
        assert im.format == "GIF" and 20 < im.n_frames <= int(cps.T_JUDGE * 20) + 1


@pytest.mark.slow
@pytest.mark.parametrize("ex", [cps, pds], ids=["cartpole", "pendulum"])
def test_nine_of_ten_seeds_swing_up_and_balance(ex):
    wins = ex.main(["--seeds", "10"])
    assert wins >= 9
