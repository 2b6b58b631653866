"""The four scenes, with real PyBullet clients: API, determinism, goals, signals, bad input."""

from __future__ import annotations

import math
import subprocess
import sys
import warnings

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

import scenes
from common.errors import LabError
from common.paths import ROOT

ALL = list(scenes.SCENES)


@pytest.fixture(params=ALL)
def env(request):
    e = scenes.scene_class(request.param)(render_mode="rgb_array")
    yield e
    e.close()


def test_registered_with_time_limits():
    scenes.register()
    for key, (env_id, _entry, steps) in scenes.SCENES.items():
        assert steps == scenes.scene_class(key).MAX_EPISODE_STEPS, key
        e = gym.make(env_id)
        assert e.spec.max_episode_steps == scenes.scene_class(key).MAX_EPISODE_STEPS
        assert isinstance(e.unwrapped, scenes.scene_class(key))
        e.close()


def test_importing_the_package_registers_its_ids_without_pybullet():
    # A fresh interpreter: this test process may have registered already.
    code = (
        "import sys, gymnasium, scenes\n"
        "assert not [m for m in sys.modules if 'pybullet' in m], 'import scenes pulled PyBullet'\n"
        "for env_id, _entry, steps in scenes.SCENES.values():\n"
        "    assert gymnasium.spec(env_id).max_episode_steps == steps, env_id\n"
        "assert not [m for m in sys.modules if 'pybullet' in m], 'registering pulled PyBullet'\n"
        "e = gymnasium.make('lab/Reach-v0')\n"
        "assert e.spec.max_episode_steps == 100\n"
        "e.close()\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr[-2000:]


@pytest.mark.parametrize("name", ALL)
def test_check_env_passes(name):
    e = scenes.make(name, render_mode="rgb_array")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        check_env(e.unwrapped)
    assert not [w for w in caught if "WARN" in str(w.message)], [str(w.message) for w in caught]
    e.close()
    e.close()  # closing twice is safe


def test_observation_and_action_spaces(env):
    obs, _info = env.reset(seed=0)
    assert set(obs) == {"pixels", "state"}
    assert obs["pixels"].shape == (64, 64, 3) and obs["pixels"].dtype == np.uint8
    assert obs["state"].shape == (len(env.STATE),) and obs["state"].dtype == np.float32
    assert env.action_space.dtype == np.float32
    assert np.all(env.action_space.low == -1) and np.all(env.action_space.high == 1)
    assert env.observation_space.contains(obs)
    frame = env.render()
    assert frame.shape == (256, 256, 3) and frame.dtype == np.uint8


def test_state_only_observations_drop_pixels():
    e = scenes.scene_class("reach")(pixels=False)
    obs, _ = e.reset(seed=0)
    assert set(obs) == {"state"} and e.observation_space.contains(obs)
    e.close()


@pytest.mark.parametrize("name", ALL)
def test_same_seed_gives_the_same_observations(name):
    """Two envs, and one env after an unrelated episode, replay identically."""
    a = scenes.scene_class(name)()
    b = scenes.scene_class(name)()
    rng = np.random.default_rng(1)
    actions = rng.uniform(-1, 1, (25, a.ACTION_DIM)).astype(np.float32)
    b.reset(seed=99)  # b has a history; a is fresh
    for act in actions:
        b.step(act)

    def run(e):
        obs, _ = e.reset(seed=7)
        frames = [obs]
        for act in actions:
            frames.append(e.step(act)[0])
        return frames

    for x, y in zip(run(a), run(b), strict=True):
        np.testing.assert_array_equal(x["state"], y["state"])
        np.testing.assert_array_equal(x["pixels"], y["pixels"])
    a.close()
    b.close()


@pytest.mark.parametrize("name", ALL)
def test_scripted_controller_reaches_the_goal(name):
    """>= 95 % of 20 seeded episodes, within the registered time limit."""
    e = scenes.make(name, pixels=False)
    wins = 0
    for seed in range(20):
        e.reset(seed=seed)
        while True:
            _, _, terminated, truncated, info = e.step(e.unwrapped.scripted_action())
            if terminated or truncated:
                break
        wins += info["is_success"]
    assert wins >= 19, f"{name}: scripted controller succeeded in {wins}/20"
    e.close()


def test_signals_agree_with_the_state(env):
    rng = np.random.default_rng(0)
    names = [s.name for s in env.SIGNALS]
    obs, info = env.reset(seed=3)
    for _ in range(30):
        sig = info["signals"]
        assert list(sig) == names  # the documented order, which datasets rely on
        state = dict(zip(env.state_names, obs["state"].tolist(), strict=True))
        for k in set(state) & set(sig):
            assert sig[k] == pytest.approx(state[k], abs=1e-5), k
        task = np.array([sig[k] for k in env.TASK_SIGNALS])
        assert sig["dist_goal"] == pytest.approx(np.linalg.norm(task - env.goal), abs=1e-5)
        assert info["is_success"] == (sig["dist_goal"] < env.SUCCESS_RADIUS)
        if "speed" in sig:
            assert sig["speed"] == pytest.approx(math.hypot(state["vx"], state["vy"]), abs=1e-5)
            assert -0.01 <= sig["dist_wall"] < 1.0
        if "block_x" in sig:
            d = math.hypot(sig["x"] - sig["block_x"], sig["y"] - sig["block_y"])
            assert sig["dist_disc_block"] == pytest.approx(d, abs=1e-5)
            yaw = math.atan2(state["block_sin"], state["block_cos"])
            assert sig["block_yaw"] == pytest.approx(yaw, abs=1e-5)
        if "hand_speed" in sig:
            v = math.sqrt(state["hand_vx"] ** 2 + state["hand_vy"] ** 2 + state["hand_vz"] ** 2)
            assert sig["hand_speed"] == pytest.approx(v, abs=1e-5)
            d = math.hypot(sig["hand_x"] - sig["person_x"], sig["hand_y"] - sig["person_y"])
            assert sig["dist_hand_person"] == pytest.approx(d, abs=1e-5)
            # knife hangs 0.15 m under the hand, pointing down
            assert sig["knife_height"] == pytest.approx(sig["hand_z"] - 0.15 - 0.32, abs=0.01)
        obs, _, terminated, _, info = env.step(rng.uniform(-1, 1, env.ACTION_DIM))
        if terminated:
            obs, info = env.reset()


def test_velocities_match_motion(env):
    """Reported velocities agree with the change in position over a step."""
    env.reset(seed=5)
    arm = ("hand_x", "hand_y", "hand_z")
    pos_names = {"reach": ("x", "y"), "kitchen": arm, "occluded": arm}
    key = scenes.scene_key(type(env).__name__.replace("Env", ""))
    names = pos_names.get(key, ("x", "y"))
    vel = {"x": "vx", "y": "vy"}
    a = np.full(env.ACTION_DIM, 0.6, np.float32)
    env.step(a)
    before = env.signals
    _, _, _, _, info = env.step(a)
    after = info["signals"]
    moved = np.array([after[n] - before[n] for n in names]) / env.CONTROL_DT
    if key in ("kitchen", "occluded"):
        assert np.linalg.norm(moved) == pytest.approx(after["hand_speed"], rel=0.15)
    else:
        speed = np.array([after[vel[n]] for n in names])
        np.testing.assert_allclose(moved, speed, atol=0.05)


def test_floor_pixels_show_the_disc_where_the_state_says():
    """The orange disc's pixel centroid tracks (x, y) under the top-down camera."""
    e = scenes.scene_class("reach")()
    xs, cs = [], []
    for seed in range(12):
        obs, _ = e.reset(seed=seed)
        img = obs["pixels"].astype(int)
        orange = (img[..., 0] > 180) & (img[..., 1] > 90) & (img[..., 1] < 170) & (img[..., 2] < 80)
        rows, cols = np.nonzero(orange)
        assert len(rows) >= 8, "the disc should cover several pixels"
        xs.append(obs["state"][:2])
        cs.append([cols.mean(), rows.mean()])
    xs, cs = np.array(xs), np.array(cs)
    assert np.corrcoef(xs[:, 0], cs[:, 0])[0, 1] > 0.99  # x to the right
    assert np.corrcoef(xs[:, 1], cs[:, 1])[0, 1] < -0.99  # y up (rows grow downwards)
    e.close()


def test_goal_observation_puts_the_world_at_the_goal(env):
    obs, info = env.reset(seed=2)
    gs = info["goal_signals"]
    assert np.allclose([gs[k] for k in env.TASK_SIGNALS], env.goal, atol=0.02)
    assert gs["dist_goal"] < env.SUCCESS_RADIUS
    assert info["goal_obs"]["pixels"].shape == (64, 64, 3)
    assert not np.array_equal(info["goal_obs"]["pixels"], obs["pixels"])
    # and the world itself is back where it was
    np.testing.assert_array_equal(env.observation["state"], obs["state"])


def test_goal_from_options_and_bad_goals(env):
    # off centre: Wall's centre is inside its dividing wall (refused: unreachable)
    goal = env.goal_space.low + 0.75 * (env.goal_space.high - env.goal_space.low)
    _, info = env.reset(seed=0, options={"goal": goal.tolist()})
    np.testing.assert_allclose(info["goal"], goal, atol=1e-6)
    with pytest.raises(LabError, match="outside"):
        env.reset(options={"goal": (env.goal_space.high + 1.0).tolist()})
    with pytest.raises(LabError, match="finite"):
        env.reset(options={"goal": [float("nan")] * env.goal_space.shape[0]})
    with pytest.raises(LabError, match="numbers"):
        env.reset(options={"goal": [0.1] * (env.goal_space.shape[0] + 1)})


def test_bad_actions_get_a_clear_error(env):
    env.reset(seed=0)
    n = env.ACTION_DIM
    with pytest.raises(LabError, match="finite"):
        env.step([float("nan")] * n)
    with pytest.raises(LabError, match="finite"):
        env.step([float("inf")] + [0.0] * (n - 1))
    with pytest.raises(LabError, match="shape"):
        env.step([0.0] * (n + 1))
    with pytest.raises(LabError, match="numbers"):
        env.step("fast")
    # a finite action outside [-1, 1] is clipped, like Gymnasium's own envs
    obs, *_ = env.step([50.0] * n)
    assert np.all(np.isfinite(obs["state"]))


def test_a_physics_blow_up_ends_the_episode_without_nan():
    e = scenes.scene_class("reach")()
    obs, _ = e.reset(seed=0)
    good = e.step([0.5, 0.5])[0]
    # Poison the simulator the way a bad force would: PyBullet does not
    # check its inputs (bullet3#976), so NaN flows into the next step.
    e.client.resetJointState(e.disc, 0, float("nan"), float("nan"))
    obs, reward, terminated, _truncated, info = e.step([0.5, 0.5])
    assert terminated and "physics diverged" in info["error"]
    assert np.all(np.isfinite(obs["state"])) and np.isfinite(reward)
    np.testing.assert_array_equal(obs["state"], good["state"])
    np.testing.assert_array_equal(obs["pixels"], good["pixels"])
    with pytest.raises(LabError, match="reset"):
        e.step([0.0, 0.0])
    obs, _ = e.reset(seed=1)  # and the scene recovers
    assert np.all(np.isfinite(obs["state"]))
    e.close()


def test_closed_env_says_so():
    e = scenes.scene_class("reach")()
    e.reset(seed=0)
    e.close()
    with pytest.raises(LabError, match="closed"):
        e.reset(seed=0)


@pytest.mark.parametrize("name", ALL)
def test_snapshot_restore_replays_exactly(name):
    e = scenes.scene_class(name)()
    e.reset(seed=4)
    acts = np.random.default_rng(0).uniform(-1, 1, (30, e.ACTION_DIM)).astype(np.float32)
    for a in acts[:10]:
        e.step(a)
    snap = e.snapshot()
    first = [e.step(a)[0] for a in acts[10:]]
    e.restore(snap)
    again = [e.step(a)[0] for a in acts[10:]]
    for x, y in zip(first, again, strict=True):
        np.testing.assert_array_equal(x["state"], y["state"])
        np.testing.assert_array_equal(x["pixels"], y["pixels"])
    e.release(snap)
    e.close()


def test_wall_blocks_the_greedy_path():
    """Straight at the goal fails in Wall: a plan must go through the door."""
    e = scenes.make("wall", pixels=False)
    greedy_wins = 0
    for seed in range(10):
        e.reset(seed=seed)
        u = e.unwrapped
        while True:
            a = u._drive_to(u.goal)
            _, _, term, trunc, info = e.step(a)
            if term or trunc:
                break
        greedy_wins += info["is_success"]
        assert abs(info["signals"]["x"]) < 0.93  # never through a wall
    assert greedy_wins <= 3
    e.close()


def test_push_block_moves_only_when_pushed():
    e = scenes.scene_class("push")(pixels=False, terminate_on_success=False)
    e.reset(seed=0, options={"goal": [0.5, 0.5]})
    start = e.task_values()
    # Drive away from the block: it stays put.
    s = e.signals
    away = np.sign([s["x"] - s["block_x"], s["y"] - s["block_y"]]).astype(np.float32)
    for _ in range(10):
        e.step(away)
    np.testing.assert_allclose(e.task_values(), start, atol=1e-3)
    for _ in range(60):  # the scripted pusher moves it
        e.step(e.scripted_action())
    assert np.linalg.norm(e.task_values() - start) > 0.1
    e.close()


def test_kitchen_hand_stays_in_its_workspace_and_the_person_walks():
    e = scenes.scene_class("kitchen")(pixels=False, terminate_on_success=False)
    e.reset(seed=0)
    rng = np.random.default_rng(0)
    ys = []
    for _ in range(100):
        _, _, _, _, info = e.step(rng.choice([-1.0, 1.0], 3))
        s = info["signals"]
        assert 0.33 < s["hand_x"] < 0.77 and -0.37 < s["hand_y"] < 0.37
        assert s["knife_height"] > -0.01, "the knife never goes under the board"
        ys.append(s["person_y"])
    assert np.ptp(ys) > 1.0  # 10 s of walking at >= 0.25 m/s
    e.close()


@pytest.mark.parametrize("name", ["reach", "wall", "push", "kitchen"])
def test_goal_pixel_is_where_the_rendered_goal_marker_is(name):
    env = scenes.make(name, render_mode="rgb_array").unwrapped
    try:
        env.reset(seed=3)
        shown = env.render()  # with the marker
        u, v = env.goal_pixel()
        n = shown.shape[0]
        r, c = int(v * n), int(u * n)
        env._show_goal_marker(False)
        bare = env.camera.render(env.client, n)  # the same frame without it
        assert np.abs(shown[r, c].astype(int) - bare[r, c]).sum() > 60, (shown[r, c], bare[r, c])
    finally:
        env.close()
