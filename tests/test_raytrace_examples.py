"""The ray-tracing examples run in --quick mode and write their pictures."""

import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.mark.parametrize(
    "script, files",
    [
        ("point_light.py", ["target.png", "start.png", "final.png", "final_adam.png", "fit.gif", "loss.png"]),
        ("mesh_pose.py", ["target.png", "start.png", "final.png", "final_adam.png", "fit.gif", "loss.png"]),
        ("inverse_lighting.py", [f"{n}_{k}" for n in ("mesh_light", "shadow")
                                 for k in ("target.png", "start.png", "final.png", "fit.gif")]),
    ],
)
def test_example_quick(tmp_path, script, files):
    env = {**os.environ, "PYTHONPATH": ROOT + os.pathsep + os.environ.get("PYTHONPATH", "")}
    res = subprocess.run([sys.executable, os.path.join(ROOT, "examples", script), "--quick", "--out", str(tmp_path)],
                         capture_output=True, text=True, env=env, timeout=600)
    assert res.returncode == 0, res.stdout + res.stderr
    for f in files:
        assert (tmp_path / f).stat().st_size > 0, f
