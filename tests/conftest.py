import json
import os
import time
from collections import defaultdict

import jax
import pytest

import solvers

jax.config.update("jax_enable_x64", True)

# The suite reuses compiled programs from earlier runs (XLA's compile is 78% of its time on CPU;
# a warm run of tests/test_trebuchet_grad.py takes 18 s instead of 119 s). DIFFSCI_JAX_CACHE=off
# times a cold run; DIFFSCI_JAX_CACHE=DIR puts the cache elsewhere.
solvers.enable_compilation_cache(min_compile_time_s=0.0)

# Opt-in timing report: DIFFSCI_TEST_TIMING=DIR writes, per pytest process, the wall time and
# the time JAX spent tracing, lowering and compiling in each test file (docs/scripts/test_timing.py
# sums them). Compile time is what dominates this suite on 2 cores, so it is measured, not guessed.
_TIMING_DIR = os.environ.get("DIFFSCI_TEST_TIMING")
_COMPILE_EVENTS = (
    "/jax/core/compile/jaxpr_trace_duration",
    "/jax/core/compile/jaxpr_to_mlir_module_duration",
    "/jax/core/compile/backend_compile_duration",
)
_compile_s = dict.fromkeys(_COMPILE_EVENTS, 0.0)
_per_file: dict = defaultdict(lambda: defaultdict(float))


def _on_duration(name, seconds, **_):
    if name in _compile_s:
        _compile_s[name] += seconds


if _TIMING_DIR:
    jax.monitoring.register_event_duration_secs_listener(_on_duration)

    @pytest.hookimpl(hookwrapper=True)
    def pytest_runtest_protocol(item, nextitem):
        start, compile_start = time.perf_counter(), dict(_compile_s)
        yield
        entry = _per_file[item.location[0]]
        entry["wall_s"] += time.perf_counter() - start
        for name, seconds in _compile_s.items():
            entry[name.rsplit("/", 1)[1]] += seconds - compile_start[name]
        entry["tests"] += 1

    def pytest_sessionfinish(session):
        os.makedirs(_TIMING_DIR, exist_ok=True)
        worker = os.environ.get("PYTEST_XDIST_WORKER", "main")
        with open(os.path.join(_TIMING_DIR, f"{worker}.json"), "w") as fh:
            json.dump(_per_file, fh, indent=1)
