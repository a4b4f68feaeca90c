"""Opt-in persistent compilation cache.

Most of a first call's time on CPU is XLA compiling the solve (measured on this project's test
suite: 78% of its time is XLA's backend compile). JAX can keep compiled programs on disk and reuse
them in the next process; this turns that on. It is never switched on by importing the library:
the examples and the test suite call it, a user's own code may.
"""
import os
from pathlib import Path

import jax

_ENV = "DIFFSCI_JAX_CACHE"


def enable_compilation_cache(directory=None, min_compile_time_s: float = 0.1):
    """Turn on JAX's persistent compilation cache for this process.

    Args:
      directory: where compiled programs are kept. Default: the environment variable
        ``DIFFSCI_JAX_CACHE`` if set, else ``~/.cache/diffsci/jax``. Setting
        ``DIFFSCI_JAX_CACHE=off`` makes this call do nothing (to time a cold start).
      min_compile_time_s: programs that compile faster than this are not stored (JAX's default
        is 1 s; most of a solve's programs compile in 0.1-1 s on CPU).

    Returns:
      The cache directory as a ``Path``, or ``None`` when switched off. Entries are keyed by the
      program, the JAX version and the device, so a stale entry is never reused.
    """
    chosen = directory if directory is not None else os.environ.get(_ENV)
    if chosen is not None and str(chosen).lower() in ("off", "0", "none", ""):
        return None
    path = Path(chosen) if chosen is not None else Path.home() / ".cache" / "diffsci" / "jax"
    path.mkdir(parents=True, exist_ok=True)
    jax.config.update("jax_compilation_cache_dir", str(path))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", float(min_compile_time_s))
    return path
