"""The launcher and the benchmark scripts, each run for real with a tiny budget."""

from __future__ import annotations

import importlib
import json
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from common.config import changed_flags, parse_config

ROOT = Path(__file__).resolve().parents[1]


def run(*args, timeout=120):
    return subprocess.run(
        [str(a) for a in args], capture_output=True, text=True, timeout=timeout, cwd=ROOT
    )


def bench(name, *args, timeout=120):
    """Run benchmarks/<name>.py; return its last stdout line parsed as JSON."""
    out = run(sys.executable, ROOT / "benchmarks" / f"{name}.py", *args, timeout=timeout)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_lab_help_lists_the_verbs():
    out = run(ROOT / "lab", "--help")
    assert out.returncode == 0
    for verb in ("test", "collect", "train", "evaluate", "pretrain", "bench"):
        assert f"./lab {verb}" in out.stdout


@pytest.mark.parametrize(
    "module",
    [
        "scenes.collect",
        "worldmodels.train",
        "worldmodels.pretrain",
        "worldmodels.refit",
        "worldmodels.distance",
        "worldmodels.highlevel",
        "worldmodels.memory",
        "experiments.calibrate",
        "experiments.evaluate",
        "experiments.distill",
        "experiments.refine",
        "experiments.stress",
        "experiments.ppol",
    ],
)
def test_every_verb_lists_its_options(module, capsys):
    with pytest.raises(SystemExit) as done:
        importlib.import_module(module).main(["--help"])
    assert done.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith("usage: lab") and "--help" in out


@dataclass
class _Settings:
    steps: int = 3
    size: tuple[int, int] = (4, 4)
    rate: float = 0.5
    shuffle: bool = True
    names: tuple[str, ...] = ()


@pytest.mark.parametrize(
    "cfg",
    [
        _Settings(),
        _Settings(steps=7, shuffle=False),
        _Settings(size=(2, 9), rate=0.25),
        _Settings(names=("hand_x", "hand_speed")),
    ],
)
def test_changed_flags_give_the_same_settings_back(cfg):
    flags = changed_flags(cfg)
    default = vars(_Settings())
    assert len(flags) == sum(v != default[k] for k, v in vars(cfg).items())  # no more
    argv = " ".join(flags).split()
    assert parse_config(_Settings, argv, "lab test", "") == cfg


def test_lab_rejects_an_unknown_verb():
    out = run(ROOT / "lab", "fly")
    assert out.returncode == 2 and "unknown verb 'fly'" in out.stderr


def test_lab_bench_lists_the_benchmarks():
    out = run(ROOT / "lab", "bench")
    assert out.returncode == 2 and "collect_speed" in out.stderr


@pytest.mark.slow
def test_collect_speed_smoke():
    result = bench(
        "collect_speed",
        "--scene",
        "reach",
        "--seconds",
        "0.3",
    )
    assert {"frames_per_s", "render_limit_fps", "ratio"} <= set(result)
    assert result["frames_per_s"] > 0 and result["render_limit_fps"] > 0
    ratio = result["frames_per_s"] / result["render_limit_fps"]  # of the rounded figures
    assert abs(result["ratio"] - ratio) < 0.002


@pytest.mark.slow
def test_wm_quality_smoke(tmp_path):
    rows = bench(
        "wm_quality",
        "--quick",
        "--train-seconds",
        "1",
        "--checkpoints",
        tmp_path,
        timeout=300,
    )
    keys = {
        "scene",
        "obs",
        "nrmse_h1",
        "nrmse_h16",
        "copy_last_nrmse_h16",
        "linear_nrmse_h16",
        "effective_rank",
        "train_seconds",
    }
    assert len(rows) == 1 and keys <= set(rows[0])
    assert rows[0]["scene"] == "reach" and rows[0]["obs"] == "state"


@pytest.mark.slow
def test_plan_speed_smoke():
    rows = bench(
        "plan_speed",
        "--quick",
        "--samples",
        "50",
        "--horizon",
        "4",
        "--iterations",
        "2",
    )
    assert [r["planner"] for r in rows] == ["cem", "mppi", "gd"]
    for r in rows:
        assert {"device", "plan_ms", "rollout_gflops", "matmul_gflops", "ratio"} <= set(r)
        assert r["plan_ms"] > 0 and r["matmul_gflops"] > 0


@pytest.mark.slow
def test_agent_quality_smoke():
    rows = bench("agent_quality", "--quick", "--scenes", "reach", "--episodes", "1", timeout=300)
    scene_rows = [r for r in rows if r["experiment"] == "agent_quality"]
    assert [r["scene"] for r in scene_rows] == ["reach"]
    keys = {"scene", "success", "oracle_success", "ratio", "violation_step_rate", "false_safe_rate"}
    assert keys <= set(scene_rows[0])
    guard = {r["design"]: r for r in rows if r["experiment"] == "kitchen_guardrail"}
    assert set(guard) == {
        "unguarded",
        "spec",
        "spec+stop",
        "spec+margin",
        "spec+margin+stop",
        "hand+stop",
    }
    assert all(0 <= r["violation_step_rate"] <= 1 for r in guard.values())
    assert guard["spec+margin"]["margin"] == 1.0 and guard["spec"]["margin"] == 0.0


def test_lab_starts_the_app_with_streamlit_options(tmp_path):
    import os
    import time
    import urllib.request

    from app.serve import free_port

    port = free_port()
    env = {**os.environ, "LAB_HOME": str(tmp_path)}
    proc = subprocess.Popen(
        [str(ROOT / "lab"), "--server.port", str(port), "--server.address", "127.0.0.1"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        body = b""
        for _ in range(120):
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/_stcore/health") as r:
                    body = r.read()
                break
            except OSError:
                time.sleep(0.5)
        assert body == b"ok"
    finally:
        proc.terminate()
        proc.wait(20)
