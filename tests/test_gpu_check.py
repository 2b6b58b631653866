"""./lab gpu-check runs where only torch, numpy and safetensors are installed."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow  # runs the GPU check's quick pass on the CPU

ROOT = Path(__file__).resolve().parents[1]
# what a bare GPU machine lacks: importing any of them fails in the child
BLOCK = "import sys\nfor m in ('pybullet', 'streamlit', 'gymnasium', 'tqdm', 'plotly', 'ray'):\n"
BLOCK += "    sys.modules[m] = None\n"


def test_gpu_check_passes_on_the_cpu_without_the_lab_s_other_packages():
    code = BLOCK + (
        "import runpy\nsys.argv = ['gpu_check', '--device', 'cpu', '--quick']\n"
        f"runpy.run_path({str(ROOT / 'benchmarks' / 'gpu_check.py')!r}, run_name='__main__')"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=600
    )
    assert out.returncode == 0, out.stderr[-3000:]
    figures = json.loads(out.stdout.strip().splitlines()[-1])
    assert figures["ok"] and figures["device"] == "cpu"
    assert set(figures["checks"]["plans"]) == {"cem", "mppi", "gd"}
    assert figures["cem_plan_ms"]["1000"] > 0
    assert set(figures["train_steps_per_s"]) == {"state", "pixels"}
