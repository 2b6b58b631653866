"""Bullet-Safety-Gym tasks as lab scenes (scenes.safety), with the package's real PyBullet
worlds: every task the lab offers steps, replays from its seed and restores snapshots;
the ones it cannot make replay are refused with a message."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest

import scenes
from common.errors import LabError

REFUSED = {  # task -> why (words the message must hold)
    "ballreach": "wall clock",
    "antreach": "wall clock",
    "dronereach": "wall clock",
    "dronecircle": "snapshot",
    "dronerun": "snapshot",
    "dronegather": "snapshot",
}
OFFERED = [k for k in scenes.FOREIGN if k not in REFUSED]


def test_the_table_matches_the_package():
    from scenes.safety import _package_spec

    _package_spec("SafetyBallCircle-v0")  # imports the package: it registers its own ids

    ids = {k for k in gym.registry if k.startswith("Safety")}
    assert ids == {task_id for task_id, _ in scenes.FOREIGN.values()}
    for task_id, steps in scenes.FOREIGN.values():
        assert gym.registry[task_id].max_episode_steps == steps, task_id


def test_names_of_a_task():
    for name in ("ballcircle", "SafetyBallCircle-v0", "lab/SafetyBallCircle-v0", "BallCircle"):
        assert scenes.scene_key(name) == "ballcircle"
    assert scenes.is_foreign("carrun") and not scenes.is_foreign("reach")
    assert scenes.max_steps("ballrun") == 100
    with pytest.raises(LabError, match="Bullet-Safety-Gym"):
        scenes.scene_key("SafetyBallFly-v0")


@pytest.mark.parametrize("key", sorted(REFUSED))
def test_a_task_that_cannot_replay_is_refused_with_its_reason(key):
    with pytest.raises(LabError, match=REFUSED[key]):
        scenes.scene_class(key)


@pytest.mark.parametrize("key", OFFERED)
def test_every_offered_task_steps_replays_and_restores(key):
    env = scenes.make(key, pixels=True)
    assert env.spec.max_episode_steps == scenes.FOREIGN[key][1]
    scene = env.unwrapped
    cls = type(scene)
    assert scene.TASK_SIGNALS == () and scene.FOREIGN and not scene.SCRIPTED
    acts = np.random.default_rng(1).uniform(-1, 1, (6, cls.ACTION_DIM)).astype(np.float32)

    def episode(seed):
        obs, info = env.reset(seed=seed)
        assert obs["pixels"].shape == (64, 64, 3) and obs["pixels"].dtype == np.uint8
        assert info["goal"].shape == (0,)
        states, total = [obs["state"]], 0.0
        for a in acts:
            obs, reward, _term, _trunc, info = env.step(a)
            assert set(info["signals"]) == set(scene.signal_names)
            assert info["signals"]["reward"] == reward and info["cost"] in (0.0, 1.0)
            assert info["is_success"] is False
            states.append(obs["state"])
            total += reward
        return np.stack(states), obs["pixels"], total

    first, pixels, total = episode(7)
    episode(8)
    again, pixels_again, total_again = episode(7)
    assert np.array_equal(first, again) and np.array_equal(pixels, pixels_again)
    assert total == total_again and np.isfinite(total)
    assert first.shape[1] == len(cls.STATE)
    # a snapshot brings the task's own state back too (Run's potential, in its reward)
    snap = scene.snapshot()
    ahead = [scene.step(a)[1] for a in acts]
    scene.restore(snap)
    assert [scene.step(a)[1] for a in acts] == ahead
    env.close()


def test_the_global_generators_are_left_alone():
    np.random.seed(123)
    expected = np.random.random()
    np.random.seed(123)
    scene = scenes.scene_class("ballcircle")(pixels=False)
    scene.reset(seed=0)
    scene.step(np.zeros(2, np.float32))
    assert np.random.random() == expected
    scene.close()


def test_circle_signals_and_cost_agree_with_the_package():
    scene = scenes.scene_class("ballcircle")(pixels=False)
    scene.reset(seed=3)
    for _ in range(80):  # push outwards along x until the boundary is crossed
        _obs, _r, _te, _tr, info = scene.step(np.array([1.0, 0.0], np.float32))
        s = info["signals"]
        assert s["dist_boundary"] == pytest.approx(6.0 - abs(s["x"]))
        assert s["cost"] == float(abs(s["x"]) > 6.0) == s["cost_outside_bounds"]
        assert s["radius"] == pytest.approx(np.hypot(s["x"], s["y"]))
    assert s["cost"] == 1.0
    scene.close()


def test_no_goal_to_set_and_bad_actions_are_refused():
    scene = scenes.scene_class("ballrun")(pixels=False)
    with pytest.raises(LabError, match="no goal"):
        scene.reset(seed=0, options={"goal": [1.0, 2.0]})
    scene.reset(seed=0)
    with pytest.raises(LabError, match="finite"):
        scene.step(np.array([np.nan, 0.0]))
    with pytest.raises(LabError, match="shape"):
        scene.step(np.zeros(3))
    scene.close()
    with pytest.raises(LabError, match="closed"):
        scene.reset(seed=0)


def test_pixels_do_not_change_the_physics():
    acts = np.random.default_rng(2).uniform(-1, 1, (15, 2)).astype(np.float32)
    runs = []
    for pixels in (True, False):
        scene = scenes.scene_class("ballrun")(pixels=pixels)
        scene.reset(seed=4)
        runs.append(np.stack([scene.step(a)[0]["state"] for a in acts]))
        scene.close()
    assert np.array_equal(*runs)


def test_a_start_option_and_the_stress_parameters_it_serves():
    cls = scenes.scene_class("carcircle")
    assert [p[0] for p in cls.STRESS_PARAMS] == ["start_x", "start_y"]
    scene = cls(pixels=False)
    _obs, info = scene.reset(seed=1, options=cls.stress_options({"start_x": 3, "start_y": -2}))
    assert (info["signals"]["x"], info["signals"]["y"]) == pytest.approx((3, -2), abs=1e-6)
    again = scene.reset(seed=1, options={"start": [3, -2]})[0]["state"]
    assert np.array_equal(_obs["state"], again)
    with pytest.raises(LabError, match="start"):
        scene.reset(seed=1, options={"start": [9, 0]})  # beyond the box it may be put in
    scene.close()
    assert scenes.scene_class("ballgather").STRESS_PARAMS == ()
    with pytest.raises(LabError, match="no start option"):
        scenes.scene_class("ballgather")(pixels=False).reset(seed=0, options={"start": [0, 0]})
