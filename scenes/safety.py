"""Bullet-Safety-Gym tasks as lab scenes: the field's safe-RL benchmark, on our contracts.

``scenes.scene_class("ballcircle")`` (or ``"SafetyBallCircle-v0"``) is a ``LabScene`` subclass
around the package's own environment (``bullet_safety_gym``, installed with the lab's
set-up: ``requirements-nodeps.txt``), so the whole chain (collect, train, plan,
calibrate, evaluate, stress, the app) runs on it as on the lab's own scenes. What the
adapter adds, and why:

* **Seeds that hold.** The package ignores ``reset(seed=)`` and draws from the global
  ``numpy.random`` and ``random`` generators (reset positions, obstacle turns, Push's
  next goal). Each scene keeps its own generator states, seeded from the episode seed,
  and swaps them in around every call into the package and out again after, so the same
  seed and actions give the same episode whatever else the process draws. Every episode
  starts in a world built anew, so nothing (contact caches, motor commands, Reach's goal
  switch, Gather's eaten apples) carries over from the last one.
* **Refused, not run.** A task the adapter cannot make replay is refused with a
  ``LabError``: obstacles that move with the wall clock (``time.time()`` in the
  package's ``Obstacle.apply_movement``: BallReach, AntReach, DroneReach).
* **Snapshots.** ``snapshot`` holds PyBullet's state and the package's Python-side
  fields (Run's reward reads a potential kept outside PyBullet), so the oracle plans on
  the true simulator and a followed plan restores exactly.
* **Named signals** in metres, seconds and radians (position, velocity, speed, heading
  where the agent has one, the task's geometry), the task's own per-step ``reward`` and
  ``cost`` and the parts the cost is made of; a 64x64 top-down view (following the
  agent along Run's track); the package's observation vector as the state vector.
* **No goal.** These tasks have none: ``TASK_SIGNALS`` is empty, the goal is a vector of
  length 0, the "goal observation" is the current one, and the planner's task term is
  the reward (``CostSet(task="reward")``). ``is_success`` is always False; the
  benchmark's figures are episode return and episode cost.
"""

from __future__ import annotations

import contextlib
import copy
import functools
import math
import random
import sys
import warnings
from typing import Any, ClassVar

import numpy as np
from numpy.random import RandomState

from common.errors import LabError
from scenes.base import IMAGE_SIZE, LabScene, Signal
from scenes.bullet import Camera, Client

# The package's task classes, by the word in the task id, and the cost parts each
# reports in info (always reported here, 0 when the package left one out).
FAMILIES = {
    "Circle": ("CircleTask", ("cost_outside_bounds",)),
    "Run": ("RunTask", ("cost_outside_bounds", "cost_velocity_violation")),
    "Reach": ("ReachGoalTask", ("cost_collisions", "cost_out_of_range")),
    "Push": ("PushTask", ("cost_collisions",)),
    "Gather": ("GatherTask", ("cost_gathered_bombs", "cost_out_of_range")),
}
AGENTS = ("Ball", "Car", "Drone", "Ant")
CIRCLE_BOUND = 6.0  # m, |x| beyond which Circle costs (the package's CircleTask.x_lim)
RUN_BOUND = 2.0  # m, |y| beyond which Run costs (RunTask.y_lim)
# Where a start may be put (reset option "start", and what a stress test searches), as
# (low, high) boxes of (x, y) in m: Circle's reset draws the start 2-4 m from the centre;
# Run's at the track's start, up to the edge
START_BOX = {"Circle": ((-5.5, -5.5), (5.5, 5.5)), "Run": ((-0.5, -1.9), (0.5, 1.9))}
# The hard guardrails each family's presets hold, as (name, expression, limit).
RULES = {
    "Circle": (("stay inside the boundaries", "abs(x)", CIRCLE_BOUND),),
    "Run": (("stay on the track", "abs(y)", RUN_BOUND),),
    "Reach": (("no collisions", "cost_collisions", 0.0),),
    "Push": (("no collisions", "cost_collisions", 0.0),),
    "Gather": (("no bombs", "cost_gathered_bombs", 0.0),),
}


def split_id(task_id: str) -> tuple[str, str]:
    """``"SafetyBallCircle-v0"`` -> ``("Ball", "Circle")``; anything else raises."""
    name = task_id.removeprefix("Safety").removesuffix("-v0")
    for agent in AGENTS:
        family = name.removeprefix(agent)
        if name.startswith(agent) and family in FAMILIES:
            return agent, family
    raise LabError(f"{task_id!r} is not a Bullet-Safety-Gym task id")


def task_class(key: str, task_id: str, steps: int) -> type[SafetyScene]:
    """The lab scene class of one package task, made once (``scenes.scene_class`` calls
    it with the short name, the package's id and the step limit from ``scenes.FOREIGN``).
    A task that cannot be made to replay raises ``LabError`` (``check_replay``), every
    time from the first verdict: the app asks on every rerun of a page."""
    made = _made(key, task_id, steps)
    if isinstance(made, LabError):
        raise LabError(str(made))
    return made


@functools.cache
def _made(key: str, task_id: str, steps: int) -> type[SafetyScene] | LabError:
    """``task_class``'s class, or the ``LabError`` that refused it (kept, unlike a raise)."""
    try:
        return _make_class(key, task_id, steps)
    except LabError as e:
        return e


def _make_class(key: str, task_id: str, steps: int) -> type[SafetyScene]:
    agent, family = split_id(task_id)
    spec = _package_spec(task_id)
    probe = _build(spec)  # one build, to read the shapes the class declares
    try:
        state_dim = len(probe.get_observation())
        action_dim = int(probe.agent.act_dim)
        speed_limit = float(probe.agent.velocity_constraint)
        dt = float(probe.dt)
    finally:
        probe.close()
    attrs = {
        "__doc__": f"``{task_id}`` from Bullet-Safety-Gym as a lab scene (scenes.safety).",
        "TASK_ID": task_id,
        "KEY": key,
        "AGENT": agent,
        "FAMILY": family,
        "COST_PARTS": FAMILIES[family][1],
        "SPEED_LIMIT": speed_limit,
        "ACTION_DIM": action_dim,
        "CONTROL_DT": dt,
        "MAX_EPISODE_STEPS": steps,
        "STATE": tuple(
            Signal(f"obs_{i}", "1", f"entry {i} of the package's observation (its scaling)")
            for i in range(state_dim)
        ),
        "SIGNALS": _signals(agent, family),
        "STRESS_PARAMS": tuple(
            (f"start_{axis}", lo, hi) for axis, lo, hi in zip("xy", *START_BOX[family], strict=True)
        )
        if family in START_BOX
        else (),
    }
    cls = type(f"Safety{agent}{family}", (SafetyScene,), attrs)
    cls.check_replay()
    return cls


def make(key: str, task_id: str, steps: int, **kwargs) -> SafetyScene:
    """Gymnasium's entry point for ``lab/Safety...-v0`` (``scenes.register`` passes the
    task's key, id and step limit)."""
    return task_class(key, task_id, steps)(**kwargs)


@contextlib.contextmanager
def _plain_streams():
    """The package silences PyBullet by flushing C streams named after ``sys.stdout`` and
    ``sys.stderr``; under a capture (pytest, a server's log) those names are not C
    streams and it fails. The interpreter's own streams, for the while."""
    saved = sys.stdout, sys.stderr
    sys.stdout, sys.stderr = sys.__stdout__ or saved[0], sys.__stderr__ or saved[1]
    try:
        yield
    finally:
        sys.stdout, sys.stderr = saved


def _package_spec(task_id: str) -> dict:
    import gymnasium as gym

    with _plain_streams():
        import bullet_safety_gym  # noqa: F401  registers the package's ids with gymnasium

    try:
        return dict(gym.registry[task_id].kwargs)
    except KeyError as e:
        raise LabError(f"the installed bullet-safety-gym has no task {task_id!r}") from e


def _build(spec: dict):
    """The package's environment, built with the global generators untouched."""
    with _plain_streams():
        from bullet_safety_gym.envs.builder import EnvironmentBuilder

        with warnings.catch_warnings(), _Generators(RandomState(0), random.Random(0)).swapped():
            # its observation space casts +-1000 in float64 to float32 bounds: harmless
            warnings.simplefilter("ignore", RuntimeWarning)
            return EnvironmentBuilder(**copy.deepcopy(spec))


def _signals(agent: str, family: str) -> tuple[Signal, ...]:
    out = [
        Signal("x", "m", "agent x"),
        Signal("y", "m", "agent y"),
        Signal("vx", "m/s", "agent velocity x"),
        Signal("vy", "m/s", "agent velocity y"),
        Signal("speed", "m/s", "agent speed in the x-y plane"),
    ]
    if agent != "Ball":
        out.append(Signal("heading", "rad", "the agent's yaw, -pi..pi"))
    if agent == "Drone":
        out.append(Signal("z", "m", "height"))
    if family == "Circle":
        out += [
            Signal("radius", "m", "distance from the circle's centre (reward peaks at 7)"),
            Signal("dist_boundary", "m", f"{CIRCLE_BOUND:g} - |x|: negative outside"),
        ]
    elif family == "Run":
        out.append(Signal("dist_boundary", "m", f"{RUN_BOUND:g} - |y|: negative off the track"))
    elif family in ("Reach", "Push"):
        out.append(Signal("dist_target", "m", "distance to the task's goal zone"))
    elif family == "Gather":
        out.append(Signal("apples_left", "1", "apples not yet gathered"))
    out += [
        Signal("reward", "1", "the task's reward on the step into this state"),
        Signal("cost", "1", "the task's cost on that step (info['cost'], 0 or 1)"),
    ]
    out += [Signal(p, "1", f"the cost part {p!r} on that step") for p in FAMILIES[family][1]]
    return tuple(out)


class _Generators:
    """The legacy numpy and Python generators the package draws from, kept per scene."""

    def __init__(self, rs: np.random.RandomState, py: random.Random) -> None:
        self.rs, self.py = rs, py

    @contextlib.contextmanager
    def swapped(self):
        saved = np.random.get_state(), random.getstate()
        np.random.set_state(self.rs.get_state())
        random.setstate(self.py.getstate())
        try:
            yield
        finally:
            self.rs.set_state(np.random.get_state())
            self.py.setstate(random.getstate())
            np.random.set_state(saved[0])
            random.setstate(saved[1])

    def state(self) -> tuple:
        return self.rs.get_state(), self.py.getstate()

    def set_state(self, state: tuple) -> None:
        self.rs.set_state(state[0])
        self.py.setstate(state[1])


_PLAIN = (bool, int, float, str, np.generic, np.ndarray)
# The environment's own bookkeeping, not the task's state: its client, and the saved
# state its reset restores (made once, at the adapter's first reset)
_NOT_STATE = frozenset({"bullet_client_id", "stored_state_id", "use_graphics", "debug"})


def _plain_fields(obj) -> dict[str, Any]:
    """An object's attributes that are numbers, flags, text or arrays (copied)."""
    return {
        k: copy.copy(v)
        for k, v in vars(obj).items()
        if k not in _NOT_STATE
        and (
            isinstance(v, _PLAIN)
            or (isinstance(v, (list, tuple)) and all(isinstance(x, _PLAIN) for x in v))
        )
    }


class SafetyScene(LabScene):
    """One Bullet-Safety-Gym task; ``task_class`` makes the subclass of each task id."""

    TASK_ID: ClassVar[str]
    KEY: ClassVar[str]
    AGENT: ClassVar[str]
    FAMILY: ClassVar[str]
    COST_PARTS: ClassVar[tuple[str, ...]]
    SPEED_LIMIT: ClassVar[float]  # m/s, the agent's velocity constraint (Run's cost)
    TASK_SIGNALS = ()
    GOAL_LOW = ()
    GOAL_HIGH = ()
    SUCCESS_RADIUS = 0.0
    SCRIPTED = False  # no scripted controller: exploration is correlated noise alone
    FOREIGN = True

    def __init__(
        self,
        render_mode: str | None = None,
        pixels: bool = True,
        terminate_on_success: bool = True,
        render_size: int = 256,
    ) -> None:
        self._declare(render_mode, pixels, terminate_on_success, render_size)  # no goal: ()
        spec = _package_spec(self.TASK_ID)
        moving = [k for k, v in (spec.get("obstacles") or {}).items() if _moves(v)]
        if moving:
            raise LabError(
                f"{self.TASK_ID} cannot be made to replay: its {', '.join(moving)} obstacle "
                "moves with the wall clock (time.time() in the package), so the same seed "
                "and actions give another episode; the lab refuses it"
            )

        self.rng = _Generators(np.random.RandomState(0), random.Random(0))
        self._spec = spec
        self.client = Client.__new__(Client)  # our client interface on the package's one
        self.client.id, self.client._bound = -1, []
        self._build_world()
        self.camera = self._camera()
        self._obs = None
        self._signals = {}
        self._ended = True
        self.elapsed_steps = 0

    def _build_world(self) -> None:
        """A new world from the package. Every episode gets one: restoreState keeps the
        solver's contact caches (docs/pitfalls.md), which made an episode depend, by
        about 1e-3 m/s, on the ones before it; building one costs 10 ms (Ball) to 90 ms
        (Car)."""
        if self.client.connected:
            self.env.close()
        self.client.close()
        self.env = _build(self._spec)
        self.client.id, self.client._bound = self.env.bullet_client_id, []
        self._holders = [self.env, self.env.task, self.env.agent, *self.env.obstacles]
        self._fresh = True

    # --- the package's Python-side state --------------------------------------
    def _python_fields(self) -> list[dict[str, Any]]:
        return [_plain_fields(h) for h in self._holders]

    def _set_python_fields(self, fields: list[dict[str, Any]]) -> None:
        for holder, values in zip(self._holders, fields, strict=True):
            for k, v in values.items():
                setattr(holder, k, copy.copy(v))

    def _extra_fields(self) -> dict[str, Any]:
        return {"python": self._python_fields(), "generators": self.rng.state()}

    def _set_extra_fields(self, fields: dict[str, Any]) -> None:
        self._set_python_fields(fields["python"])
        self.rng.set_state(fields["generators"])

    def _after_restore(self) -> None:
        # Visual colours are not in PyBullet's saved state: gathered apples stay hidden.
        for ob in self.env.obstacles:
            if hasattr(ob, "visible") and hasattr(ob, "init_color"):
                colour = ob.init_color if ob.visible else [1, 1, 1, 0.0]
                self.client.changeVisualShape(ob.body_id, -1, rgbaColor=colour)

    # --- gymnasium API ----------------------------------------------------------
    def reset(self, *, seed: int | None = None, options: dict | None = None):
        import gymnasium as gym

        gym.Env.reset(self, seed=seed)
        options = dict(options or {})
        self._check_open()
        if options.get("goal") is not None and len(np.ravel(options["goal"])):
            raise LabError(f"{self.TASK_ID} has no goal to set: its task is its reward")
        start = self._start_option(options)
        # The package's generators, drawn from this episode's seed (self.np_random).
        words = self.np_random.integers(0, 2**32, size=2, dtype=np.uint64)
        self.rng = _Generators(np.random.RandomState(int(words[0])), random.Random(int(words[1])))
        if not self._fresh:
            self._build_world()
        self._fresh = False
        with self.rng.swapped():
            raw, _ = self.env.reset()
        if start is not None:
            raw = self._place_agent(start)
        self.elapsed_steps = 0
        state = np.asarray(raw, np.float32)
        if not self._state_ok(state):
            raise LabError(f"{self.TASK_ID}: the start state is not finite: {state}")
        self._signals = self._compute_signals(state, 0.0, {})
        self._obs = self._observe(state)
        self._ended = False
        info = self._info()
        info["goal"] = self.goal.copy()
        if options.get("goal_obs", True):
            info["goal_obs"], info["goal_signals"] = self._observe_goal()
        return self._copy_obs(self._obs), info

    def _start_option(self, options: dict) -> np.ndarray | None:
        """``options["start"]``: (x, y) in m, within ``START_BOX`` (Circle and Run)."""
        if options.get("start") is None:
            return None
        if self.FAMILY not in START_BOX:
            raise LabError(f"{self.TASK_ID} takes no start option")
        low, high = START_BOX[self.FAMILY]
        return self._point_option(options, "start", low, high)

    def _place_agent(self, xy: np.ndarray) -> np.ndarray:
        """Move the agent to ``xy`` at rest, facing as the package's reset faces it (Circle:
        along the circle; Run: along the track); the task's own state follows (Run's
        potential). Returns the new observation."""
        agent, task = self.env.agent, self.env.task
        pos = np.array([xy[0], xy[1], agent.init_xyz[2]], np.float64)
        agent.set_position(pos)
        if self.FAMILY == "Circle":
            yaw = math.atan2(-pos[1], -pos[0]) + math.pi / 2 + agent.init_rpy[2]
            agent.set_orientation(self.client.getQuaternionFromEuler([0, 0, yaw]))
        if self.FAMILY == "Run":
            task.old_potential = task.calculate_task_potential()
        return self.env.get_observation()

    @classmethod
    def stress_options(cls, values: dict[str, float]) -> dict:
        if cls.FAMILY not in START_BOX:
            raise LabError(f"{cls.TASK_ID} declares no stress-test parameters")
        return {"start": [values["start_x"], values["start_y"]]}

    def _raw_step(self, action: np.ndarray) -> tuple[np.ndarray, bool, dict]:
        # Only Push draws while stepping (its next goal); elsewhere swapping the
        # generators in would cost four times the step itself (the oracle's N x H steps).
        with self.rng.swapped() if self.FAMILY == "Push" else contextlib.nullcontext():
            raw, reward, terminated, _trunc, info = self.env.step(action)
        state = np.asarray(raw, np.float32)
        self.elapsed_steps += 1
        if self._state_ok(state) and math.isfinite(reward):
            self._signals = self._compute_signals(state, float(reward), info)
            return state, bool(terminated), info
        return state, True, {"error": "diverged"}

    def step(self, action):
        if self._ended:
            raise LabError("the episode has ended (or never began): call reset()")
        state, terminated, raw_info = self._raw_step(self._check_action(action))
        if "error" in raw_info:
            self._ended = True
            info = self._info()
            info["error"] = (
                f"physics diverged at step {self.elapsed_steps}: the state or reward is not "
                "finite; the episode was ended, call reset()"
            )
            return self._copy_obs(self._obs), 0.0, True, False, info
        self._obs = self._observe(state)
        self._ended = terminated
        return dict(self._obs), self._signals["reward"], terminated, False, self._info()

    def advance(self, action: np.ndarray) -> dict[str, float]:
        self._raw_step(self._check_action(action))
        return dict(self._signals)

    def render(self):
        if self.render_mode != "rgb_array":
            return None
        self._check_open()
        self._hide_halo()
        return self._camera(wide=True).render(self.client, self.render_size)

    def close(self):
        if self.client.connected:
            self.env.close()
        self.client.close()

    # --- what the lab reads -----------------------------------------------------
    def _camera(self, wide: bool = False) -> Camera:
        """Top down: over the arena, or following the agent along Run's track."""
        if self.FAMILY == "Run":
            x = float(self.env.agent.get_position()[0])
            cx, half = x + 1.0, (5.0 if wide else 3.5)
        else:
            cx, half = 0.0, (10.5 if self.FAMILY != "Circle" else 9.0)
        height = half / math.tan(math.radians(30))  # fov 60: half the view's width
        return Camera((cx, 0, height), (cx, 0, 0), (0, 1, 0), 60, 0.1, height + 5)

    def _hide_halo(self) -> None:
        """The package marks a step with cost by a translucent red sphere around the
        agent, parked at the origin otherwise; TinyRenderer draws it opaque, hiding the
        car (Car: 1 m across) or the place it parks. Out of sight (10 m under the floor;
        it has no collision shape) before every picture: cost is a signal, not a view."""
        self.client.resetBasePositionAndOrientation(
            self.env.agent.violation_body_id, [0, 0, -10], [0, 0, 0, 1]
        )

    def _observe(self, state: np.ndarray) -> dict[str, np.ndarray]:
        obs = {"state": state.astype(np.float32)}
        if self.pixels:
            self._hide_halo()
            if self.FAMILY == "Run":
                self.camera = self._camera()
            obs["pixels"] = self.camera.render(self.client, IMAGE_SIZE)
        return obs

    def _compute_signals(self, state, reward: float, info: dict) -> dict[str, float]:
        agent, task = self.env.agent, self.env.task
        x, y, z = (float(v) for v in agent.get_position()[:3])
        vx, vy = (float(v) for v in agent.get_linear_velocity()[:2])
        s = {"x": x, "y": y, "vx": vx, "vy": vy, "speed": math.hypot(vx, vy)}
        if self.AGENT != "Ball":
            s["heading"] = float(agent.get_orientation()[2])
        if self.AGENT == "Drone":
            s["z"] = z
        if self.FAMILY == "Circle":
            s["radius"] = math.hypot(x, y)
            s["dist_boundary"] = CIRCLE_BOUND - abs(x)
        elif self.FAMILY == "Run":
            s["dist_boundary"] = RUN_BOUND - abs(y)
        elif self.FAMILY == "Reach":
            s["dist_target"] = float(task.get_xy_distance())
        elif self.FAMILY == "Push":
            s["dist_target"] = float(task.puck_to_goal_xy_distance)
        elif self.FAMILY == "Gather":
            s["apples_left"] = float(
                sum(1 for o in self.env.obstacles if type(o).__name__ == "Apple" and o.visible)
            )
        s["reward"] = reward
        s["cost"] = float(info.get("cost", 0.0))
        for part in self.COST_PARTS:
            s[part] = float(info.get(part, 0.0))
        return s

    def _info(self) -> dict[str, Any]:
        return {"signals": dict(self._signals), "is_success": False, "cost": self._signals["cost"]}

    def _read_state(self) -> np.ndarray:
        return np.asarray(self.env.get_observation(), np.float32)

    def _observe_goal(self):
        return self._copy_obs(self._obs), dict(self._signals)

    def scripted_action(self) -> np.ndarray:
        raise LabError(f"{self.TASK_ID} has no scripted controller")

    @classmethod
    def check_replay(cls, steps: int = 20) -> None:
        """Refuse (``LabError``) a task whose episodes do not replay: the same seed and
        actions twice, another episode between, and a snapshot restored mid-way, must
        give the same states bit for bit. Run once when the class is made."""
        env = cls(pixels=False)
        try:
            acts = np.random.default_rng(0).uniform(-1, 1, (steps, cls.ACTION_DIM))

            def episode(seed: int, snap_at: int | None = None) -> np.ndarray:
                out = [env.reset(seed=seed)[0]["state"]]
                for t, a in enumerate(acts):
                    if t == snap_at:
                        snap = env.snapshot()
                        ahead = [env.step(b)[0]["state"] for b in acts[t:]]
                        env.restore(snap)
                        env.release(snap)
                        again = [env.step(b)[0]["state"] for b in acts[t:]]
                        if not np.array_equal(np.stack(ahead), np.stack(again)):
                            return None
                        return np.stack(out + again)
                    out.append(env.step(a)[0]["state"])
                return np.stack(out)

            first = episode(1)
            episode(2)
            again = episode(1, snap_at=steps // 2)
        finally:
            env.close()
        if again is None or not np.array_equal(first, again):
            what = "a restored snapshot" if again is None else "the same seed and actions"
            raise LabError(
                f"{cls.TASK_ID} cannot be made to replay: {what} gave another episode "
                "(state the adapter cannot reach), so the lab refuses it"
            )

    @classmethod
    def presets(cls) -> dict[str, dict]:
        """Cost sets to start from, as JSON-ready dicts: the reward alone, and the rule."""
        rules = [
            {"name": n, "expression": e, "kind": "hard", "limit": lim}
            for n, e, lim in RULES[cls.FAMILY]
        ]
        out = {
            "reward only": {"task": "reward", "terms": []},
            "hard: the task's rule": {"task": "reward", "terms": rules},
        }
        if cls.FAMILY == "Run":
            speed = {
                "name": "speed limit",
                "expression": "speed",
                "kind": "hard",
                "limit": cls.SPEED_LIMIT,
            }
            out["hard: track and speed limit"] = {"task": "reward", "terms": [*rules, speed]}
        return out


def _moves(obstacle: dict) -> bool:
    return obstacle.get("number", 0) > 0 and obstacle.get("movement", "static") != "static"
