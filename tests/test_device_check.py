"""benchmarks/device_check.py's pieces that need no accelerator, and the claim of
docs/accelerators.md that the run-time error check stays off the solver's hot path."""

import os
import sys

import jax
import jax.numpy as jnp

import solvers

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "benchmarks"))
import device_check  # noqa: E402

accelerator_audit = device_check.bench("accelerator_audit")


def _callbacks(fn, *args):
    return accelerator_audit.walk(jax.make_jaxpr(fn)(*args).jaxpr)


def test_error_check_is_outside_every_loop_and_inside_a_cond():
    """A host callback inside the while loop would run (or be scheduled) every step; one
    outside a cond (e.g. a batched cond turned into a select under vmap) on every solve."""
    def final(k):
        return solvers.solve(accelerator_audit.decay, jnp.ones(2), 0.0, 1.0, k).ys[-1]

    k, ks = jnp.asarray(1.0), jnp.linspace(0.5, 2.0, 4)
    for found in (_callbacks(final, k), _callbacks(jax.vmap(final), ks),
                  _callbacks(jax.grad(lambda k: jnp.sum(final(k))), k)):
        assert len(found) >= 1  # the check is there (throw=True is the default)
        assert all(not in_loop and in_cond for _, in_loop, in_cond in found), found
    silent = _callbacks(lambda k: solvers.solve(accelerator_audit.decay, jnp.ones(2), 0.0, 1.0, k,
                                                throw=False).ys, k)
    assert silent == []


def test_replace_block_replaces_between_markers_and_appends_otherwise(tmp_path):
    path = tmp_path / "b.md"
    path.write_text(f"# head\n\n{device_check.BEGIN}\nold\n{device_check.END}\n\n## after\n")
    device_check.replace_block(str(path), f"{device_check.BEGIN}\nnew\n{device_check.END}\n")
    assert path.read_text() == f"# head\n\n{device_check.BEGIN}\nnew\n{device_check.END}\n\n## after\n"
    plain = tmp_path / "c.md"
    plain.write_text("# head\n")
    device_check.replace_block(str(plain), f"{device_check.BEGIN}\nx\n{device_check.END}\n")
    assert plain.read_text() == f"# head\n\n{device_check.BEGIN}\nx\n{device_check.END}\n"

