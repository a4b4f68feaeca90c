"""Per-file breakdown of the test suite's time: compile (trace, lower, XLA) versus run.

    rm -rf /tmp/timing && DIFFSCI_TEST_TIMING=/tmp/timing python -m pytest
    python docs/scripts/test_timing.py /tmp/timing

Prints a Markdown table, slowest file first. Times are summed over the pytest processes, so on
2 workers the total is about twice the wall time of the run. Examples run in subprocesses, so
their compile time is not seen here (it shows as run time).
"""
import json
import sys
from collections import defaultdict
from pathlib import Path

STAGES = ("jaxpr_trace_duration", "jaxpr_to_mlir_module_duration", "backend_compile_duration")


def _row(name, entry):
    compile_s = sum(entry.get(stage, 0.0) for stage in STAGES)
    trace, lower, xla = (entry.get(stage, 0.0) for stage in STAGES)
    run = entry["wall_s"] - compile_s
    return (f"| {name} | {entry['tests']:.0f} | {entry['wall_s']:.1f} | {trace:.1f} | {lower:.1f} "
            f"| {xla:.1f} | {run:.1f} | {compile_s / max(entry['wall_s'], 1e-9):.0%} |")


def main(directory):
    files: dict = defaultdict(lambda: defaultdict(float))
    for path in Path(directory).glob("*.json"):
        for name, entry in json.loads(path.read_text()).items():
            for key, value in entry.items():
                files[name][key] += value
    total: dict = defaultdict(float)
    for entry in files.values():
        for key, value in entry.items():
            total[key] += value
    print("| file | tests | time (s) | trace (s) | lower (s) | XLA compile (s) | run (s) | compile share |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for name, entry in sorted(files.items(), key=lambda item: -item[1]["wall_s"]):
        print(_row(name, entry))
    print(_row("total", total))


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "/tmp/timing")
