"""docs/extending.md runs as written, and what it builds works: a method from a tableau,
a method by hand, a controller and an adjoint, checked against closed forms, order fits
and central differences."""

import pathlib
import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from helpers import central_fd

import solvers

DOC = pathlib.Path(__file__).parent.parent / "docs" / "extending.md"


@pytest.fixture(scope="module")
def ns():
    blocks = re.findall(r"```python\n(.*?)```", DOC.read_text(), flags=re.S)
    assert len(blocks) == 4
    namespace = {}
    for block in blocks:
        exec(compile(block, str(DOC), "exec"), namespace)
    return namespace


def decay(t, y, k):
    return -k * y


def error_at(method, dt):
    sol = solvers.solve(decay, jnp.ones(1), 0.0, 1.0, 2.0, method=method, adaptive=False, dt0=dt)
    return abs(float(sol.ys[-1, 0]) - np.exp(-2.0))


@pytest.mark.parametrize("name,order", [("ssprk3", 3), ("HeunEuler", 2)])
def test_user_methods_have_their_order(ns, name, order):
    method = ns[name] if name == "ssprk3" else ns[name]()
    errs = [error_at(method, dt) for dt in (0.04, 0.02)]
    assert abs(np.log2(errs[0] / errs[1]) - order) < 0.15, errs


def test_user_method_adapts_and_differentiates(ns):
    heun = ns["HeunEuler"]()
    errs = []
    for tol in (1e-5, 1e-7):
        sol = solvers.solve(decay, jnp.ones(1), 0.0, 1.0, 2.0, method=heun, rtol=tol, atol=tol)
        errs.append(abs(float(sol.ys[-1, 0]) - np.exp(-2.0)))
    assert errs[1] < 1e-6 and errs[1] < errs[0] / 20, errs  # tolerance proportionality
    assert int(sol.stats["num_f_evals"]) == 1 + 2 + 2 * int(sol.stats["num_steps"])
    loss = lambda k: solvers.solve(decay, jnp.ones(1), 0.0, 1.0, k, method=heun, adaptive=False,  # noqa: E731
                                   dt0=0.05).ys[-1, 0]
    assert abs(float(jax.grad(loss)(2.0)) - float(central_fd(loss, jnp.asarray(2.0))[0])) < 1e-9
    assert abs(float(ns["grad"]) + np.exp(-2.0)) < 1e-4


def test_user_controller(ns):
    sol = solvers.solve(decay, jnp.ones(1), 0.0, 1.0, 2.0, controller=ns["HalvingController"](rtol=1e-9, atol=1e-9))
    assert abs(float(sol.ys[-1, 0]) - np.exp(-2.0)) < 1e-8
    assert int(sol.stats["num_rejected"]) > 0  # it did steer the step


def test_user_adjoint(ns):
    assert float(ns["g"]) == 0.0
