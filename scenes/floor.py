"""What the floor scenes (Reach, Wall, Push) share: the arena and the disc.

The disc ("the cat") hangs on two prismatic joints (x, then y) from a fixed
base, and the action sets their velocity motors. The motor is a constraint
inside the solver with a force cap, so walls and the block stop the disc the
way they would stop a pushed body; setting the velocity directly with
``resetBaseVelocity`` every step lets a body tunnel through thin walls
(docs/pitfalls.md, PyBullet), and the walls here are thick besides.

The camera looks straight down on a plain floor (a chequered floor is visual
noise at 64x64): 1 pixel is about 3.4 cm, the disc is about 5 pixels across.
"""

from __future__ import annotations

import math
from typing import ClassVar

import numpy as np
import pybullet as p

from common.errors import LabError
from scenes.base import LabScene, Signal
from scenes.bullet import Camera

ARENA = 1.0  # m, half-size of the free floor inside the walls
WALL_T = 0.2  # m, wall thickness (thick: no tunnelling)
WALL_H = 0.12  # m, wall height
DISC_R = 0.08  # m, disc radius
DISC_H = 0.06  # m, disc height
MAX_SPEED = 0.5  # m/s per axis at action +-1
MOTOR_FORCE = 10.0  # N, velocity-motor force cap per axis (0.05 s to full speed)

FLOOR_RGBA = (0.82, 0.82, 0.80, 1)
WALL_RGBA = (0.25, 0.25, 0.30, 1)
DISC_RGBA = (0.95, 0.55, 0.10, 1)
GOAL_RGBA = (0.10, 0.75, 0.25, 1)

DISC_SIGNALS = (
    Signal("x", "m", "disc centre x"),
    Signal("y", "m", "disc centre y"),
    Signal("vx", "m/s", "disc velocity x"),
    Signal("vy", "m/s", "disc velocity y"),
    Signal("speed", "m/s", "disc speed"),
    Signal("dist_wall", "m", "gap between the disc's edge and the nearest wall"),
)
DISC_STATE = DISC_SIGNALS[:4]
DIST_GOAL = Signal("dist_goal", "m", "distance from the task signals to the goal", goal=True)


class FloorScene(LabScene):
    """A disc on a walled floor; subclasses add walls, a block, a goal."""

    ACTION_DIM = 2
    SUCCESS_RADIUS = 0.1
    PHYSICS_SUBSTEPS = 3  # 30 Hz physics: enough for thick walls and the block (100/100 pushes)
    GOAL_LOW = (-0.8, -0.8)
    GOAL_HIGH = (0.8, 0.8)
    STRESS_PARAMS = (
        ("start_x", -0.8, 0.8),
        ("start_y", -0.8, 0.8),
        ("goal_x", -0.8, 0.8),
        ("goal_y", -0.8, 0.8),
    )
    TASK_SIGNALS = ("x", "y")
    # Walls as axis-aligned boxes (centre x, centre y, half x, half y).
    INNER_WALLS: ClassVar[tuple[tuple[float, float, float, float], ...]] = ()

    def _build(self) -> Camera:
        c = self.client
        floor = c.createCollisionShape(p.GEOM_BOX, halfExtents=[1.5, 1.5, 0.05])
        floor_vis = c.createVisualShape(
            p.GEOM_BOX, halfExtents=[1.5, 1.5, 0.05], rgbaColor=FLOOR_RGBA
        )
        self.floor = c.createMultiBody(0, floor, floor_vis, basePosition=[0, 0, -0.05])
        c.changeDynamics(self.floor, -1, lateralFriction=0.5)

        g = ARENA + WALL_T / 2
        outer = [(0, g, g + WALL_T / 2, WALL_T / 2), (0, -g, g + WALL_T / 2, WALL_T / 2)]
        outer += [(g, 0, WALL_T / 2, g + WALL_T / 2), (-g, 0, WALL_T / 2, g + WALL_T / 2)]
        self.walls = [tuple(map(float, w)) for w in outer + list(self.INNER_WALLS)]
        for cx, cy, hx, hy in self.walls:
            col = c.createCollisionShape(p.GEOM_BOX, halfExtents=[hx, hy, WALL_H / 2])
            vis = c.createVisualShape(
                p.GEOM_BOX, halfExtents=[hx, hy, WALL_H / 2], rgbaColor=WALL_RGBA
            )
            c.createMultiBody(0, col, vis, basePosition=[cx, cy, WALL_H / 2])

        # The disc: fixed base, prismatic x then prismatic y, cylinder on the
        # y link. Lifted 5 mm so it never rubs the floor.
        cyl = c.createCollisionShape(p.GEOM_CYLINDER, radius=DISC_R, height=DISC_H)
        cyl_vis = c.createVisualShape(
            p.GEOM_CYLINDER, radius=DISC_R, length=DISC_H, rgbaColor=DISC_RGBA
        )
        self.disc = c.createMultiBody(
            baseMass=0,
            basePosition=[0, 0, DISC_H / 2 + 0.005],
            linkMasses=[0.1, 1.0],
            linkCollisionShapeIndices=[-1, cyl],
            linkVisualShapeIndices=[-1, cyl_vis],
            linkPositions=[[0, 0, 0], [0, 0, 0]],
            linkOrientations=[[0, 0, 0, 1], [0, 0, 0, 1]],
            linkInertialFramePositions=[[0, 0, 0], [0, 0, 0]],
            linkInertialFrameOrientations=[[0, 0, 0, 1], [0, 0, 0, 1]],
            linkParentIndices=[0, 1],
            linkJointTypes=[p.JOINT_PRISMATIC, p.JOINT_PRISMATIC],
            linkJointAxis=[[1, 0, 0], [0, 1, 0]],
        )
        for j in (0, 1):
            c.changeDynamics(self.disc, j, linearDamping=0, angularDamping=0, jointDamping=0)
        c.changeDynamics(self.disc, 1, lateralFriction=0.3)

        self._build_extra()
        self.goal_marker = self._make_goal_marker()
        self._show_goal_marker(False)
        # Straight down from 4 m; a narrow field of view is nearly orthographic.
        fov = float(np.degrees(2 * np.arctan((ARENA + 0.1) / 4.0)))
        return Camera([0, 0, 4.0], [0, 0, 0], [0, 1, 0], fov, 3.0, 5.0)

    def _build_extra(self) -> None:
        """More bodies (the block)."""

    def _make_goal_marker(self) -> int:
        c = self.client
        vis = c.createVisualShape(p.GEOM_CYLINDER, radius=DISC_R, length=0.002, rgbaColor=GOAL_RGBA)
        return c.createMultiBody(0, -1, vis, basePosition=[0, 0, -1])

    def goal_marker_point(self) -> tuple[float, float, float]:
        return float(self.goal[0]), float(self.goal[1]), 0.001  # on the floor

    # --- the disc -------------------------------------------------------------
    def _set_disc(self, xy, vxy=(0.0, 0.0)) -> None:
        for j in (0, 1):
            self.client.resetJointState(self.disc, j, float(xy[j]), float(vxy[j]))

    def _apply_action(self, action: np.ndarray) -> None:
        self.client.setJointMotorControlArray(
            self.disc,
            [0, 1],
            p.VELOCITY_CONTROL,
            targetVelocities=(action * MAX_SPEED).tolist(),
            forces=[MOTOR_FORCE, MOTOR_FORCE],
        )

    def _disc_state(self) -> np.ndarray:
        (x, vx, *_), (y, vy, *_) = self.client.getJointStates(self.disc, [0, 1])
        return np.array([x, y, vx, vy], np.float32)

    def _read_state(self) -> np.ndarray:
        return self._disc_state()

    def _disc_signals(self, state: np.ndarray) -> dict[str, float]:
        x, y, vx, vy = (float(v) for v in state[:4])
        return {
            "x": x,
            "y": y,
            "vx": vx,
            "vy": vy,
            "speed": math.hypot(vx, vy),
            "dist_wall": wall_distance(self.walls, x, y) - DISC_R,
        }

    def _world_signals(self, state: np.ndarray) -> dict[str, float]:
        return self._disc_signals(state)

    def _free_point(self, margin: float, low=-ARENA, high=ARENA) -> np.ndarray:
        """A uniform point whose disc clears every wall by ``margin``."""
        for _ in range(1000):
            xy = self.np_random.uniform(low + DISC_R + margin, high - DISC_R - margin, 2)
            if wall_distance(self.walls, *xy) - DISC_R > margin:
                return xy
        raise RuntimeError("no free point found")  # unreachable for these layouts

    def _check_goal(self, goal) -> np.ndarray:
        """A goal inside (or against) a wall cannot be reached: refused like one out of
        range (a stress test then draws another)."""
        g = super()._check_goal(goal)
        if wall_distance(self.walls, float(g[0]), float(g[1])) < DISC_R:
            raise LabError(f"the goal ({g[0]:.3f}, {g[1]:.3f}) is inside or against a wall")
        return g

    def _start_point(self, options: dict, margin: float = 0.02) -> np.ndarray:
        """The ``start`` option (the disc's x, y: it must clear every wall), else a free
        random point."""
        lim = ARENA - DISC_R - margin
        xy = self._point_option(options, "start", (-lim, -lim), (lim, lim))
        if xy is None:
            return self._free_point(margin)
        if wall_distance(self.walls, *xy) - DISC_R <= margin:
            raise LabError(f"the start ({xy[0]:.3f}, {xy[1]:.3f}) is inside or against a wall")
        return xy

    @classmethod
    def stress_options(cls, values: dict[str, float]) -> dict:
        return {
            "start": [values["start_x"], values["start_y"]],
            "goal": [values["goal_x"], values["goal_y"]],
        }

    def _goal_away_from(self, point, min_dist: float) -> np.ndarray:
        """A uniform goal in ``goal_space`` at least ``min_dist`` from ``point``."""
        for _ in range(1000):
            goal = self.np_random.uniform(self.goal_space.low, self.goal_space.high)
            if np.linalg.norm(goal - np.asarray(point)) > min_dist:
                break
        return goal

    def _drive_to(self, target, gain: float = 4.0) -> np.ndarray:
        """Proportional velocity command towards ``target`` (scripted control)."""
        x, y = self._signals["x"], self._signals["y"]
        return np.clip(gain * (np.asarray(target) - [x, y]), -1.0, 1.0).astype(np.float32)


def wall_distance(walls, x: float, y: float) -> float:
    """Distance from the point (x, y) to the nearest wall box, 0 inside one.

    walls: boxes (centre x, centre y, half x, half y). Plain floats: for a
    handful of boxes this is several times faster than numpy.
    """
    return min(
        math.hypot(max(abs(x - cx) - hx, 0.0), max(abs(y - cy) - hy, 0.0))
        for cx, cy, hx, hy in walls
    )
