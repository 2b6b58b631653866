"""Exploration, collection (parallel, resumable, kill-safe) and the dataset reader."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

import scenes
from common.errors import LabError
from scenes import dataset as ds
from scenes.collect import CollectConfig, collect, episode_seed, run_episodes
from scenes.exploration import ExplorationConfig, ExplorationPolicy

pytestmark = pytest.mark.slow  # collects exploration data

ROOT = Path(__file__).resolve().parents[1]


def small(out: Path, **kw) -> CollectConfig:
    args = dict(
        scene="reach",
        out=str(out),
        episodes=6,
        steps=12,
        workers=2,
        episodes_per_shard=2,
        progress=False,
    )
    args.update(kw)
    return CollectConfig(**args)


def arrays_of(root: Path) -> dict[str, np.ndarray]:
    data = ds.Dataset(root).load()
    return {**data.arrays, "episodes": data.episodes, "goals": data.goals}


def test_collect_writes_the_documented_format(tmp_path):
    root = collect(small(tmp_path / "d"))
    manifest = json.loads((root / "manifest.json").read_text())
    assert manifest["format"] == "lab-dataset" and manifest["version"] == 1
    assert manifest["complete"] and manifest["scene"] == "reach" and manifest["pixels"]
    assert sorted(manifest["shards"]) == ["shard-00000", "shard-00001", "shard-00002"]
    assert manifest["signal_names"] == [s.name for s in scenes.scene_class("reach").SIGNALS]

    data = ds.Dataset(root)
    ep = data.load()
    a = ep.arrays
    assert data.n_episodes == 6 and ep.episodes.shape == (6, 2)
    assert np.all(ep.episodes[:, 1] == 13)  # 12 steps -> 13 observations
    assert a["pixels"].shape == (78, 64, 64, 3) and a["pixels"].dtype == np.uint8
    assert a["state"].shape == (78, 4) and a["actions"].shape == (78, 2)
    assert a["signals"].shape == (78, len(manifest["signal_names"]))
    last_rows = ep.episodes[:, 0] + ep.episodes[:, 1] - 1
    assert np.all(a["actions"][last_rows] == 0)  # no action after the last observation
    assert np.all(np.abs(a["actions"]) <= 1)
    # signal columns agree with the state columns of the same name
    sig = dict(zip(manifest["signal_names"], a["signals"].T, strict=True))
    np.testing.assert_allclose(sig["x"], a["state"][:, 0], atol=1e-6)

    # Replaying episode 3 in a fresh scene gives the stored rows exactly.
    env = scenes.scene_class("reach")(terminate_on_success=False)
    obs, _ = env.reset(seed=episode_seed(0, 3), options={"goal_obs": False})
    first, n = ep.episodes[3]
    np.testing.assert_array_equal(obs["pixels"], a["pixels"][first])
    for t in range(n - 1):
        obs, *_ = env.step(a["actions"][first + t])
        np.testing.assert_array_equal(obs["state"], a["state"][first + t + 1])
    np.testing.assert_allclose(ep.goals[3], env.goal)
    env.close()


def test_windows_stay_inside_episodes(tmp_path):
    root = collect(small(tmp_path / "d", episodes=4, steps=9))
    ep = ds.Dataset(root).load()
    H = 4
    starts = ds.window_starts(ep.episodes, H)
    assert len(starts) == 4 * (10 - H)  # per episode: rows - H starts
    w = ds.gather_windows(ep, starts, H)
    assert w["state"].shape == (len(starts), H + 1, 4)
    assert w["pixels"].shape == (len(starts), H + 1, 64, 64, 3)
    assert w["actions"].shape == (len(starts), H, 2)
    episode_of_row = np.repeat(np.arange(4), ep.episodes[:, 1])
    rows = starts[:, None] + np.arange(H + 1)
    assert np.all(episode_of_row[rows] == episode_of_row[rows[:, :1]])
    # a split by episode: only episode 2's windows
    only = ds.window_starts(ep.episodes, H, np.array([2]))
    assert np.all(episode_of_row[only] == 2) and len(only) == 10 - H


def test_data_do_not_depend_on_the_number_of_workers(tmp_path):
    one = arrays_of(collect(small(tmp_path / "one", workers=1)))
    two = arrays_of(collect(small(tmp_path / "two", workers=2)))
    for k in one:
        np.testing.assert_array_equal(one[k], two[k], err_msg=k)


def test_a_killed_collection_resumes_to_the_same_data(tmp_path):
    """SIGKILL the collector mid-run, run the same command: same data as uninterrupted."""
    out = tmp_path / "killed"
    args = [
        "--scene",
        "reach",
        "--episodes",
        "40",
        "--steps",
        "60",
        "--workers",
        "2",
        "--episodes-per-shard",
        "1",
        "--out",
        str(out),
        "--no-progress",
    ]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen(
        [sys.executable, "-m", "scenes.collect", *args],
        env=env,
        start_new_session=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.time() + 60
    while time.time() < deadline and len(list(out.glob("shard-?????"))) < 3:
        time.sleep(0.02)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    listed = json.loads((out / "manifest.json").read_text())
    assert not listed["complete"], "the collector was killed mid-run"
    assert len(list(out.glob("shard-?????"))) < 40
    # A reader of the cut-short folder gets exactly the shards the manifest
    # lists (shards finished since its last write are adopted on resume).
    if listed["shards"]:
        assert ds.Dataset(out).n_episodes == len(listed["shards"])
    else:
        with pytest.raises(LabError, match="no complete shard"):
            ds.Dataset(out)

    # The same command again finishes the job.
    done = subprocess.run(
        [sys.executable, "-m", "scenes.collect", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    assert not list(out.glob("*.tmp-*"))
    resumed = arrays_of(out)
    fresh = arrays_of(
        collect(
            CollectConfig(
                scene="reach",
                out=str(tmp_path / "fresh"),
                episodes=40,
                steps=60,
                workers=2,
                episodes_per_shard=1,
                progress=False,
            )
        )
    )
    for k in fresh:
        np.testing.assert_array_equal(resumed[k], fresh[k], err_msg=k)


def test_a_half_written_shard_is_detected_and_redone_never_read(tmp_path):
    root = collect(small(tmp_path / "d"))
    before = arrays_of(root)
    # A kill while writing leaves a .tmp folder; a crash of the disk or a
    # copy cut short leaves a listed file shorter than its listing.
    (root / "shard-00001.tmp-12345").mkdir()
    (root / "shard-00001.tmp-12345" / "state.npy").write_bytes(b"\x93NUMPY")
    pixels = root / "shard-00001" / "pixels.npy"
    pixels.write_bytes(pixels.read_bytes()[:5000])
    with pytest.raises(LabError, match=r"shard-00001 is damaged: pixels\.npy has 5000 bytes"):
        ds.Dataset(root)
    collect(small(tmp_path / "d"))  # the same command repairs it
    after = arrays_of(root)
    assert not list(root.glob("*.tmp-*"))
    for k in before:
        np.testing.assert_array_equal(before[k], after[k], err_msg=k)


def test_flipped_bytes_fail_the_checksum(tmp_path):
    root = collect(small(tmp_path / "d", episodes=2))
    path = root / "shard-00000" / "state.npy"
    raw = bytearray(path.read_bytes())
    raw[-1] ^= 0xFF
    path.write_bytes(bytes(raw))
    with pytest.raises(LabError, match="checksum"):
        ds.Dataset(root)


def test_resuming_with_other_settings_is_refused(tmp_path):
    collect(small(tmp_path / "d", episodes=2))
    with pytest.raises(LabError, match="other settings"):
        collect(small(tmp_path / "d", episodes=2, seed=5))
    # more episodes with the same settings extends the collection, also one collected
    # before manifests said which reset options exploration takes (none, then)
    path = tmp_path / "d" / "manifest.json"
    manifest = json.loads(path.read_text())
    assert manifest.pop("explore_resets") == [{}]
    path.write_text(json.dumps(manifest))
    collect(small(tmp_path / "d", episodes=4))
    assert ds.Dataset(tmp_path / "d").n_episodes == 4
    manifest["explore_resets"] = [{}, {"person_near": True}]  # another exploration's
    path.write_text(json.dumps(manifest))
    with pytest.raises(LabError, match="older exploration"):
        collect(small(tmp_path / "d", episodes=4))
    manifest["explore_resets"] = [{}]
    manifest["env_id"] = manifest["env_id"].replace("-v0", "-v-1")  # an older version's
    path.write_text(json.dumps(manifest))
    with pytest.raises(LabError, match=r"other settings \(env_id\)"):
        collect(small(tmp_path / "d", episodes=4))


def test_not_a_dataset_gets_a_plain_message(tmp_path):
    with pytest.raises(LabError, match=r"no manifest\.json"):
        ds.Dataset(tmp_path)
    (tmp_path / "manifest.json").write_text("{not json")
    with pytest.raises(LabError, match="not valid JSON"):
        ds.Dataset(tmp_path)
    (tmp_path / "manifest.json").write_text(json.dumps({"format": "lab-dataset", "version": 99}))
    with pytest.raises(LabError, match="version 99"):
        ds.Dataset(tmp_path)


def test_the_noise_is_temporally_correlated():
    policy = ExplorationPolicy(ExplorationConfig(correlation=0.9), 2, np.random.default_rng(0))
    policy.begin_episode(20000)
    x = policy.noise[:, 0]
    lag1 = np.corrcoef(x[:-1], x[1:])[0, 1]
    assert lag1 == pytest.approx(0.9, abs=0.02)
    assert np.std(x) == pytest.approx(1.0, abs=0.05)  # unit stationary variance


@pytest.mark.parametrize("name", ["reach", "wall", "push", "kitchen"])
def test_exploration_covers_what_the_world_model_must_learn(name):
    scene = scenes.scene_class(name)(pixels=False, terminate_on_success=False)
    steps = scene.MAX_EPISODE_STEPS
    data = run_episodes(scene, ExplorationConfig(), seed=0, first=0, count=30, steps=steps)
    names = list(scene.signal_names)
    sig = dict(zip(names, data["signals"].T, strict=True))
    starts, lengths = data["episodes"].T
    if name in ("reach", "wall", "push"):
        x, y = sig["x"], sig["y"]
        # Thick walls hold: the disc never leaves the arena (its centre stays
        # within 0.92 m, plus the 1.5 cm that soft contacts may sink in).
        assert np.all(np.abs(x) < 0.935) and np.all(np.abs(y) < 0.935)
        # Every quadrant of the floor is visited.
        quads = {(bool(a > 0), bool(b > 0)) for a, b in zip(x, y, strict=True)}
        assert len(quads) == 4
    if name == "wall":
        crossed = sum(
            np.ptp(np.sign(x[s : s + n])) > 0 for s, n in zip(starts, lengths, strict=True)
        )
        assert crossed >= 5, f"only {crossed}/30 episodes pass the door"
    if name == "push":
        moved = [
            np.hypot(*(np.ptp(sig[k][s : s + n]) for k in ("block_x", "block_y")))
            for s, n in zip(starts, lengths, strict=True)
        ]
        assert sum(m > 0.1 for m in moved) >= 8, "the block should be pushed in many episodes"
    if name == "kitchen":
        near = sig["dist_hand_person"] < 0.5
        speed = sig["hand_speed"]
        assert near.mean() > 0.05, "the person should come near the hand"
        assert (near & (speed < 0.2)).sum() > 20 and (near & (speed > 0.4)).sum() > 20
        assert np.min(sig["knife_height"]) < 0.05  # the knife reaches the board
        # every other episode starts as the guardrail experiments do: a slow person by
        # the board (Kitchen.EXPLORE_RESETS)
        first = sig["person_speed"][starts]
        assert np.all(first[1::2] <= 0.15) and np.all(first[0::2] >= 0.25)
        assert np.all(sig["person_x"][starts[1::2]] <= 0.95)
    scene.close()


def test_collect_cli_help_and_errors():
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    out = subprocess.run(
        [ROOT / "lab", "collect", "--help"], capture_output=True, text=True, env=env
    )
    assert out.returncode == 0 and "--episodes" in out.stdout and "--workers" in out.stdout
    bad = subprocess.run(
        [ROOT / "lab", "collect", "--scene", "reach", "--episodes", "0"],
        capture_output=True,
        text=True,
        env=env,
    )
    assert bad.returncode == 2 and "at least 1" in bad.stderr
