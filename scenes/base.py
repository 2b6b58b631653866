"""The base every lab scene shares: spaces, goals, signals, checks, snapshots.

A scene is a ``gymnasium.Env`` with its own PyBullet client. Subclasses build
the world and say how an action moves it, what the state vector and signals
are, how a goal is placed and what the scripted controller does; this class
owns the parts that must behave the same in every scene:

* ``reset(*, seed, options)``: all randomness from ``self.np_random``; the
  goal from ``options["goal"]`` (checked against ``goal_space``) or sampled.
* ``step(action)``: a non-finite or wrongly shaped action raises
  ``LabError``; a finite action outside ``[-1, 1]`` is clipped, as in
  Gymnasium's own envs. A physics blow-up (non-finite or runaway state) ends
  the episode with ``info["error"]`` and returns the last good observation,
  never a NaN.
* ``info["signals"]``: named floats (units in each scene's docstring), plus
  ``info["is_success"]``. ``reset`` also returns ``info["goal"]``,
  ``info["goal_obs"]`` (the observation of the world at its goal) and
  ``info["goal_signals"]`` (the signals there); ``options={"goal_obs":
  False}`` skips those two (data collection does not need them).
* ``snapshot()`` / ``restore(snap)`` save and restore the full simulator
  state (PyBullet's in-memory state plus this class's own fields), for the
  oracle planner.
"""

from __future__ import annotations

import copy
import logging
import math
from dataclasses import dataclass
from typing import Any, ClassVar

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from common.errors import LabError
from scenes.bullet import Camera, Client

log = logging.getLogger(__name__)

IMAGE_SIZE = 64  # observation pixels, (64, 64, 3) uint8
RUNAWAY = 1e3  # |state entry| beyond this (m or m/s) means the physics blew up


@dataclass(frozen=True)
class Signal:
    """A named float the scene reports every step."""

    name: str
    unit: str
    doc: str
    goal: bool = False  # depends on the goal, so no probe can read it from s_t alone


@dataclass
class Snapshot:
    """The full state of one scene at one moment (see ``LabScene.snapshot``)."""

    bullet_state: int
    fields: dict[str, Any]


class LabScene(gym.Env):
    """Common machinery; see the module docstring. Subclasses fill the hooks."""

    metadata: ClassVar[dict] = {"render_modes": ["rgb_array"], "render_fps": 10}

    # --- set by each scene -------------------------------------------------
    SIGNALS: ClassVar[tuple[Signal, ...]]
    STATE: ClassVar[tuple[Signal, ...]]  # the state vector, entry by entry
    # Entries of STATE the robot senses of its own body (joint encoders, its hand): what a
    # pixel model with proprio reads beside the frames (worldmodels.model.PixelEncoder)
    PROPRIO: ClassVar[tuple[str, ...]] = ()
    TASK_SIGNALS: ClassVar[tuple[str, ...]]  # what the goal fixes, in order
    ACTION_DIM: ClassVar[int]
    GOAL_LOW: ClassVar[tuple[float, ...]]
    GOAL_HIGH: ClassVar[tuple[float, ...]]
    SUCCESS_RADIUS: ClassVar[float]  # metres between task signals and goal
    CONTROL_DT: ClassVar[float] = 0.1  # seconds per env step (10 Hz control)
    PHYSICS_SUBSTEPS: ClassVar[int] = 5  # physics steps per env step
    MAX_EPISODE_STEPS: ClassVar[int] = 100  # the TimeLimit it is registered with
    # Reset options that exploration episodes take in turn (scenes.collect): the
    # data should hold every situation the lab puts the agent in.
    EXPLORE_RESETS: ClassVar[tuple[dict, ...]] = ({},)
    # restoreState keeps contact caches between free bodies and the floor, so
    # scenes with such bodies (Push) rebuild the world on reset instead.
    REBUILD_ON_RESET: ClassVar[bool] = False
    GRAVITY: ClassVar[float] = -9.81  # m/s^2 along z
    # What a stress test (experiments.stress) may set in an episode: (name, low, high) of the
    # reset parameters, in the scene's units; ``stress_options`` makes reset options of them.
    STRESS_PARAMS: ClassVar[tuple[tuple[str, float, float], ...]] = ()
    SCRIPTED: ClassVar[bool] = True  # has a scripted controller (exploration follows it)
    FOREIGN: ClassVar[bool] = False  # a Bullet-Safety-Gym task (scenes.safety): no goal

    def __init__(
        self,
        render_mode: str | None = None,
        pixels: bool = True,
        terminate_on_success: bool = True,
        render_size: int = 256,
    ) -> None:
        self._declare(render_mode, pixels, terminate_on_success, render_size)
        self.client = Client()
        self.camera: Camera = self._new_world()
        self._initial_state = self.client.saveState()
        self._obs: dict[str, np.ndarray] | None = None
        self._signals: dict[str, float] = {}
        self._ended = True
        self.elapsed_steps = 0

    def _declare(
        self, render_mode: str | None, pixels: bool, terminate_on_success: bool, render_size: int
    ) -> None:
        """The arguments, the spaces and the goal every scene has, from its class's tables
        (a scene built on another package's world, ``scenes.safety``, shares them)."""
        if render_mode not in (None, "rgb_array"):
            raise LabError(f"render_mode must be None or 'rgb_array', not {render_mode!r}")
        self.render_mode = render_mode
        self.pixels = bool(pixels)
        self.terminate_on_success = bool(terminate_on_success)
        self.render_size = int(render_size)
        self.signal_names = tuple(s.name for s in self.SIGNALS)
        self.state_names = tuple(s.name for s in self.STATE)

        # Bounded by RUNAWAY: a state beyond it ends the episode as a blow-up.
        obs = {"state": spaces.Box(-RUNAWAY, RUNAWAY, (len(self.STATE),), np.float32)}
        if self.pixels:
            obs["pixels"] = spaces.Box(0, 255, (IMAGE_SIZE, IMAGE_SIZE, 3), np.uint8)
        self.observation_space = spaces.Dict(obs)
        self.action_space = spaces.Box(-1.0, 1.0, (self.ACTION_DIM,), np.float32)
        self.goal_space = spaces.Box(
            np.asarray(self.GOAL_LOW, np.float32), np.asarray(self.GOAL_HIGH, np.float32)
        )
        self.goal = np.zeros(len(self.TASK_SIGNALS), np.float32)

    def _new_world(self) -> Camera:
        c = self.client
        c.resetSimulation()
        c.setGravity(0, 0, self.GRAVITY)
        c.setPhysicsEngineParameter(fixedTimeStep=self.CONTROL_DT / self.PHYSICS_SUBSTEPS)
        return self._build()

    # --- hooks --------------------------------------------------------------
    def _build(self) -> Camera:
        """Load bodies once; return the observation camera."""
        raise NotImplementedError

    def _reset_world(self, options: dict) -> None:
        """Place bodies for a new episode, from ``self.np_random``."""
        raise NotImplementedError

    def _sample_goal(self) -> np.ndarray:
        raise NotImplementedError

    def _apply_action(self, action: np.ndarray) -> None:
        """Set motors for one control step; ``action`` is finite, in [-1, 1]."""
        raise NotImplementedError

    def _after_physics(self) -> None:
        """Move what the physics does not (walking person, attached knife)."""

    def _read_state(self) -> np.ndarray:
        """The state vector, float32 ``(len(STATE),)``."""
        raise NotImplementedError

    def _world_signals(self, state: np.ndarray) -> dict[str, float]:
        """Every signal but ``dist_goal``, from the state (and the sim)."""
        raise NotImplementedError

    def _place_at_goal(self) -> None:
        """Put the world in the configuration the goal describes (at rest)."""
        raise NotImplementedError

    def goal_marker_point(self) -> tuple[float, float, float] | None:
        """Where ``render()`` draws the goal's marker (world, m); None: no marker."""
        return None

    def goal_pixel(self) -> tuple[float, float] | None:
        """Where the goal's marker appears in rendered frames (and in the 64 px observation
        camera's), as (u, v) fractions of width and height; None when there is none. The
        app draws it on decoded imagined frames, whose latents do not hold the goal."""
        point = self.goal_marker_point()
        return None if point is None else self.camera.project(point)

    def _show_goal_marker(self, visible: bool) -> None:
        """Markers appear in ``render()`` only, never in observations: parked 1 m under the
        floor (hidden from every camera) unless visible."""
        point = self.goal_marker_point()
        if point is not None:
            x, y, z = point
            pos = [x, y, z if visible else -1.0]
            self.client.resetBasePositionAndOrientation(self.goal_marker, pos, [0, 0, 0, 1])

    def _extra_fields(self) -> dict[str, Any]:
        """Python-side state a snapshot must carry besides PyBullet's."""
        return {}

    def _set_extra_fields(self, fields: dict[str, Any]) -> None:
        pass

    @classmethod
    def stress_options(cls, values: dict[str, float]) -> dict:
        """Reset options from ``values`` of ``STRESS_PARAMS`` (each within its range)."""
        raise LabError(f"{cls.__name__} declares no stress-test parameters")

    @staticmethod
    def _point_option(options: dict, key: str, low, high) -> np.ndarray | None:
        """``options[key]`` as a point inside the box [low, high], or None when absent."""
        v = options.get(key)
        if v is None:
            return None
        try:
            xy = np.asarray(v, np.float64).reshape(len(low))
        except (TypeError, ValueError):
            xy = None
        if xy is None or not np.all(np.isfinite(xy)) or np.any(xy < low) or np.any(xy > high):
            box = ", ".join(f"{a:g}..{b:g}" for a, b in zip(low, high, strict=True))
            raise LabError(f"the {key!r} option must be {len(low)} numbers in ({box})")
        return xy

    def scripted_action(self) -> np.ndarray:
        """A privileged controller that reaches the goal (tests, baselines)."""
        raise NotImplementedError

    # --- gymnasium API ------------------------------------------------------
    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        options = dict(options or {})
        self._check_open()
        self.elapsed_steps = 0
        # Every episode starts from the world as built, so that nothing (a
        # contact cache, a solver warm start) carries over from the last
        # episode: the same seed and actions give the same observations.
        if self.REBUILD_ON_RESET:
            self.camera = self._new_world()
        else:
            self.client.restoreState(stateId=self._initial_state)
        self._reset_world(options)
        if "goal" in options and options["goal"] is not None:
            self.goal = self._check_goal(options["goal"])
        else:
            self.goal = self._sample_goal().astype(np.float32)
        state = self._read_state()
        if not self._state_ok(state):
            raise LabError(f"{type(self).__name__}: the start state is not finite: {state}")
        self._obs = self._observe(state)
        self._signals = self._compute_signals(state)
        self._ended = False
        info = self._info()
        info["goal"] = self.goal.copy()
        if options.get("goal_obs", True):
            info["goal_obs"], info["goal_signals"] = self._observe_goal()
        return self._copy_obs(self._obs), info

    def step(self, action):
        if self._ended:
            raise LabError("the episode has ended (or never began): call reset() first")
        action = self._check_action(action)
        self._apply_action(action)
        for _ in range(self.PHYSICS_SUBSTEPS):
            self.client.stepSimulation()
        self._after_physics()
        self.elapsed_steps += 1
        state = self._read_state()
        if not self._state_ok(state):
            # Never return NaN: end the episode, keep the last good observation.
            self._ended = True
            info = self._info()
            info["error"] = (
                f"physics diverged at step {self.elapsed_steps}: the state is not finite "
                "or left the world; the episode was ended, call reset()"
            )
            log.warning("%s: %s", type(self).__name__, info["error"])
            return self._copy_obs(self._obs), 0.0, True, False, info
        # A fresh observation every step: returned as is, and kept (never
        # written to) as the fallback should the physics diverge next step.
        self._obs = self._observe(state)
        self._signals = self._compute_signals(state)
        info = self._info()
        terminated = bool(info["is_success"] and self.terminate_on_success)
        self._ended = terminated
        return dict(self._obs), self._reward(), terminated, False, info

    def render(self):
        if self.render_mode != "rgb_array":
            return None
        self._check_open()
        self._show_goal_marker(True)
        try:
            return self.camera.render(self.client, self.render_size)
        finally:
            self._show_goal_marker(False)

    def close(self):
        self.client.close()

    # --- snapshots (oracle planner) ----------------------------------------
    def snapshot(self) -> Snapshot:
        """Save the full state; ``restore`` brings it back exactly."""
        self._check_open()
        fields = {
            "goal": self.goal.copy(),
            "obs": None if self._obs is None else self._copy_obs(self._obs),
            "signals": dict(self._signals),
            "ended": self._ended,
            "elapsed_steps": self.elapsed_steps,
            "np_random": copy.deepcopy(self.np_random.bit_generator.state),
            "extra": copy.deepcopy(self._extra_fields()),
        }
        return Snapshot(self.client.saveState(), fields)

    def restore(self, snap: Snapshot) -> None:
        self._check_open()
        self.client.restoreState(stateId=snap.bullet_state)
        f = snap.fields
        self.goal = f["goal"].copy()
        self._obs = None if f["obs"] is None else self._copy_obs(f["obs"])
        self._signals = dict(f["signals"])
        self._ended = f["ended"]
        self.elapsed_steps = f["elapsed_steps"]
        self.np_random.bit_generator.state = copy.deepcopy(f["np_random"])
        self._set_extra_fields(copy.deepcopy(f["extra"]))
        self._after_restore()

    def release(self, snap: Snapshot) -> None:
        """Free a snapshot's memory in the simulator."""
        if self.client.connected:
            self.client.removeState(snap.bullet_state)

    def _after_restore(self) -> None:
        """Re-apply what restoreState does not carry (e.g. attached visuals)."""

    # --- a private copy (oracle planner) -------------------------------------
    def copy_state_from(self, other: LabScene) -> None:
        """Make this scene's world a copy of ``other``'s, another instance of the same class.

        Snapshots live in one PyBullet client and cannot cross to another, so the
        oracle planner syncs its private copy this way: every body's base pose and
        velocity, every joint's position and velocity, and the Python-side fields
        (goal, signals, step count, the walking person, the RNG). Contact caches
        and solver warm starts are not copied, so the copy follows the original
        closely rather than bit for bit. Both worlds are built by the same
        ``_build``, so their bodies have the same ids.
        """
        if type(other) is not type(self):
            raise LabError(f"cannot copy a {type(other).__name__} into a {type(self).__name__}")
        self._check_open()
        other._check_open()
        src, dst = other.client, self.client
        if src.getNumBodies() != dst.getNumBodies():
            raise LabError("the two worlds differ (body counts): make the copy anew")
        for i in range(src.getNumBodies()):
            body = src.getBodyUniqueId(i)
            pos, orn = src.getBasePositionAndOrientation(body)
            lin, ang = src.getBaseVelocity(body)
            dst.resetBasePositionAndOrientation(body, pos, orn)
            dst.resetBaseVelocity(body, lin, ang)
            joints = list(range(src.getNumJoints(body)))
            states = src.getJointStates(body, joints) if joints else ()
            for j, (q, qdot, *_) in zip(joints, states, strict=True):
                dst.resetJointState(body, j, q, qdot)
        self.goal = other.goal.copy()
        self._obs = None if other._obs is None else {"state": other._obs["state"].copy()}
        self._signals = dict(other._signals)
        self._ended = other._ended
        self.elapsed_steps = other.elapsed_steps
        self.np_random.bit_generator.state = copy.deepcopy(other.np_random.bit_generator.state)
        self._set_extra_fields(copy.deepcopy(other._extra_fields()))
        self._after_restore()

    def advance(self, action: np.ndarray) -> dict[str, float]:
        """One control step of physics only; returns the new signals.

        For imagined rollouts on a private copy (the oracle planner): no pixels
        are rendered and no info is built, which makes it several times cheaper
        than ``step`` in a scene with pixels. Should the physics diverge, the
        last good signals are returned and kept.
        """
        self._apply_action(self._check_action(action))
        for _ in range(self.PHYSICS_SUBSTEPS):
            self.client.stepSimulation()
        self._after_physics()
        self.elapsed_steps += 1
        state = self._read_state()
        if self._state_ok(state):
            self._signals = self._compute_signals(state)
        return dict(self._signals)

    # --- helpers ------------------------------------------------------------
    @property
    def signals(self) -> dict[str, float]:
        return dict(self._signals)

    @property
    def observation(self) -> dict[str, np.ndarray]:
        if self._obs is None:
            raise LabError("no observation yet: call reset() first")
        return self._copy_obs(self._obs)

    def task_values(self, signals: dict[str, float] | None = None) -> np.ndarray:
        s = self._signals if signals is None else signals
        return np.array([s[k] for k in self.TASK_SIGNALS], np.float32)

    def goal_distance(self, signals: dict[str, float] | None = None) -> float:
        s = self._signals if signals is None else signals
        return math.dist([s[k] for k in self.TASK_SIGNALS], self.goal.tolist())

    def _compute_signals(self, state: np.ndarray) -> dict[str, float]:
        signals = self._world_signals(state)
        signals["dist_goal"] = self.goal_distance(signals)
        return signals

    def _reward(self) -> float:
        return -self._signals["dist_goal"]

    def _info(self) -> dict[str, Any]:
        return {
            "signals": dict(self._signals),
            "is_success": bool(self._signals["dist_goal"] < self.SUCCESS_RADIUS),
        }

    def _observe(self, state: np.ndarray) -> dict[str, np.ndarray]:
        obs = {"state": state.astype(np.float32)}
        if self.pixels:
            obs["pixels"] = self.camera.render(self.client, IMAGE_SIZE)
        return obs

    def goal_observation(self) -> tuple[dict[str, np.ndarray], dict[str, float]]:
        """The observation and signals of the world at its goal (as ``reset`` returns them)."""
        self._check_open()
        return self._observe_goal()

    def _observe_goal(self) -> tuple[dict[str, np.ndarray], dict[str, float]]:
        """Render and measure the world at its goal, then put it back."""
        saved = self.client.saveState()
        extra = copy.deepcopy(self._extra_fields())
        try:
            self._place_at_goal()
            state = self._read_state()
            return self._observe(state), self._compute_signals(state)
        finally:
            self.client.restoreState(stateId=saved)
            self.client.removeState(saved)
            self._set_extra_fields(extra)
            self._after_restore()

    @staticmethod
    def _state_ok(state: np.ndarray) -> bool:
        # NaN compares false, so one test catches NaN, inf and runaway values.
        return bool((np.abs(state) < RUNAWAY).all())

    @staticmethod
    def _copy_obs(obs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        return {k: v.copy() for k, v in obs.items()}

    def _check_open(self) -> None:
        if not self.client.connected:
            raise LabError(f"{type(self).__name__} is closed: make a new env")

    def _check_action(self, action) -> np.ndarray:
        try:
            a = np.asarray(action, dtype=np.float32)
        except (TypeError, ValueError) as e:
            raise LabError(f"action must be {self.ACTION_DIM} numbers, got {action!r}") from e
        if a.shape != (self.ACTION_DIM,):
            raise LabError(
                f"action must have shape ({self.ACTION_DIM},), got {a.shape}; "
                f"{type(self).__name__} takes {self.ACTION_DIM} numbers in [-1, 1]"
            )
        if not np.isfinite(a).all():
            raise LabError(f"action must be finite, got {a.tolist()}")
        return np.minimum(np.maximum(a, -1.0), 1.0)  # clip, cheaper than np.clip

    def check_goal(self, goal) -> np.ndarray:
        """``goal`` as the scene takes it, or a ``LabError`` saying why it cannot be one
        (before a reset: a refused goal must not leave half an episode behind)."""
        return self._check_goal(goal)

    def _check_goal(self, goal) -> np.ndarray:
        names = ", ".join(self.TASK_SIGNALS)
        try:
            g = np.asarray(goal, dtype=np.float32).reshape(-1)
        except (TypeError, ValueError) as e:
            raise LabError(f"goal must be numbers ({names}), got {goal!r}") from e
        if g.shape != self.goal_space.shape or not np.all(np.isfinite(g)):
            raise LabError(f"goal must be {len(self.TASK_SIGNALS)} finite numbers ({names})")
        if not self.goal_space.contains(g):
            raise LabError(
                f"goal {g.tolist()} is outside the reachable region: "
                f"low {self.goal_space.low.tolist()}, high {self.goal_space.high.tolist()}"
            )
        return g
