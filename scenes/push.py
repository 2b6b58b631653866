"""``lab/Push-v0``: the disc pushes a block to a goal position."""

from __future__ import annotations

import numpy as np
import pybullet as p

from common.errors import LabError
from scenes.base import Signal
from scenes.floor import DISC_R, DISC_SIGNALS, DISC_STATE, DIST_GOAL, FloorScene

BLOCK_HALF = 0.08  # m, half the block's side
BLOCK_H = 0.06  # m
BLOCK_MASS = 0.3  # kg
BLOCK_RGBA = (0.15, 0.35, 0.85, 1)
GOAL_RGBA = (0.10, 0.75, 0.25, 1)

# A subgoal term for planners (an expression of agents.expressions, read by a soft
# cost term): the disc's distance to the point BEHIND_GAP behind the block on the
# line from the goal through the block, where a push moves the block to the goal.
# With the goal term alone a planner sees no gain until the block moves, which a
# 16-step horizon rarely reaches from a start 0.3 m or more away: the oracle planner
# (the true simulator) pushed the block home in 1 of 10 episodes with the goal term
# alone, 10 of 10 with this one added at weight 1 (benchmarks/agent_quality.py).
BEHIND_GAP = BLOCK_HALF + DISC_R + 0.04  # m, centre to centre
_TO_GOAL = "sqrt((goal_block_x - block_x)**2 + (goal_block_y - block_y)**2)"
BEHIND_BLOCK = (
    f"sqrt((x - block_x + {BEHIND_GAP:.2f} * (goal_block_x - block_x) / {_TO_GOAL})**2"
    f" + (y - block_y + {BEHIND_GAP:.2f} * (goal_block_y - block_y) / {_TO_GOAL})**2)"
)


START_GAP = 0.3  # m, the least distance from the disc's start to the block's


class PushEnv(FloorScene):
    """The disc pushes a free block across the floor to a goal position.

    Contact: the world model must learn physics it does not control (the
    block moves only when pushed, slides with friction and turns).

    ## Action space
    ``Box(-1, 1, (2,), float32)``: the disc's target velocity x, y times
    0.5 m/s, as in Reach.

    ## Observation space
    ``pixels`` ``(64, 64, 3)`` uint8 top-down (disc orange, block blue),
    ``state`` ``(11,)`` float32:

    | index | name | unit | meaning |
    |-------|------|------|---------|
    | 0, 1 | x, y | m | disc centre |
    | 2, 3 | vx, vy | m/s | disc velocity |
    | 4, 5 | block_x, block_y | m | block centre |
    | 6, 7 | block_cos, block_sin | 1 | cos and sin of the block's yaw |
    | 8, 9 | block_vx, block_vy | m/s | block velocity |
    | 10 | block_wz | rad/s | block yaw rate |

    ## Signals (``info["signals"]``)

    | name | unit | meaning |
    |------|------|---------|
    | x, y, vx, vy, speed, dist_wall | m, m/s | the disc, as in Reach |
    | block_x, block_y | m | block centre |
    | block_yaw | rad | block yaw in (-pi, pi] |
    | block_speed | m/s | block speed |
    | dist_disc_block | m | distance between the disc and block centres |
    | dist_goal | m | block centre to goal (depends on the goal) |

    ## Goal
    ``options={"goal": (block_x, block_y)}`` in [-0.6, 0.6]^2, or sampled at
    least 0.3 m from the block's start; the block's yaw is free.
    ``options={"block": (x, y), "start": (x, y)}`` set the block's start
    (in [-0.5, 0.5]^2, yaw 0) and the disc's (at least 0.3 m from the block). Success when
    ``dist_goal < 0.1``. Reward ``-dist_goal``.

    ## Episode end
    Terminated on success or a physics error; truncated at 200 steps (20 s).
    """

    SIGNALS = (
        *DISC_SIGNALS,
        Signal("block_x", "m", "block centre x"),
        Signal("block_y", "m", "block centre y"),
        Signal("block_yaw", "rad", "block yaw"),
        Signal("block_speed", "m/s", "block speed"),
        Signal("dist_disc_block", "m", "distance between disc and block centres"),
        DIST_GOAL,
    )
    STATE = (
        *DISC_STATE,
        Signal("block_x", "m", "block centre x"),
        Signal("block_y", "m", "block centre y"),
        Signal("block_cos", "1", "cos of the block's yaw"),
        Signal("block_sin", "1", "sin of the block's yaw"),
        Signal("block_vx", "m/s", "block velocity x"),
        Signal("block_vy", "m/s", "block velocity y"),
        Signal("block_wz", "rad/s", "block yaw rate"),
    )
    TASK_SIGNALS = ("block_x", "block_y")
    STRESS_PARAMS = (
        ("start_x", -0.8, 0.8),
        ("start_y", -0.8, 0.8),
        ("block_x", -0.5, 0.5),
        ("block_y", -0.5, 0.5),
        ("goal_x", -0.6, 0.6),
        ("goal_y", -0.6, 0.6),
    )
    GOAL_LOW = (-0.6, -0.6)
    GOAL_HIGH = (0.6, 0.6)
    MAX_EPISODE_STEPS = 200
    REBUILD_ON_RESET = True  # 2 ms: no contact cache survives into the next episode

    def _build_extra(self) -> None:
        c = self.client
        half = [BLOCK_HALF, BLOCK_HALF, BLOCK_H / 2]
        col = c.createCollisionShape(p.GEOM_BOX, halfExtents=half)
        vis = c.createVisualShape(p.GEOM_BOX, halfExtents=half, rgbaColor=BLOCK_RGBA)
        self.block = c.createMultiBody(BLOCK_MASS, col, vis, basePosition=[0, 0, BLOCK_H / 2])
        # Never asleep: restoreState does not restore a body's sleep timer, so a
        # block that fell asleep last episode would start this one differently.
        c.changeDynamics(
            self.block,
            -1,
            lateralFriction=0.4,
            spinningFriction=0.001,
            activationState=p.ACTIVATION_STATE_DISABLE_SLEEPING,
        )

    def _make_goal_marker(self) -> int:
        half = [BLOCK_HALF, BLOCK_HALF, 0.001]
        vis = self.client.createVisualShape(p.GEOM_BOX, halfExtents=half, rgbaColor=GOAL_RGBA)
        return self.client.createMultiBody(0, -1, vis, basePosition=[0, 0, -1])

    def _set_block(self, xy, yaw: float = 0.0) -> None:
        quat = p.getQuaternionFromEuler([0, 0, yaw])
        self.client.resetBasePositionAndOrientation(
            self.block, [float(xy[0]), float(xy[1]), BLOCK_H / 2], quat
        )
        self.client.resetBaseVelocity(self.block, [0, 0, 0], [0, 0, 0])

    def _reset_world(self, options: dict) -> None:
        block = self._point_option(options, "block", (-0.5, -0.5), (0.5, 0.5))
        if block is None:
            block = self.np_random.uniform(-0.5, 0.5, 2)
            self._set_block(block, self.np_random.uniform(-np.pi, np.pi))
        else:
            self._set_block(block, 0.0)
        if options.get("start") is not None:
            disc = self._start_point(options)
            if np.linalg.norm(disc - block) < START_GAP:
                raise LabError(f"the disc must start at least {START_GAP} m from the block")
        else:
            for _ in range(1000):
                disc = self._free_point(0.02)
                if np.linalg.norm(disc - block) > START_GAP:
                    break
        self._set_disc(disc)

    @classmethod
    def stress_options(cls, values: dict[str, float]) -> dict:
        """The disc's start is moved out along the line from the block, to ``START_GAP``,
        when the values put it closer."""
        block = np.array([values["block_x"], values["block_y"]])
        disc = np.array([values["start_x"], values["start_y"]])
        away = disc - block
        gap = float(np.linalg.norm(away))
        if gap < START_GAP + 1e-3:
            away = away / gap if gap > 1e-6 else np.array([1.0, 0.0])
            disc = np.clip(block + away * (START_GAP + 1e-3), -0.8, 0.8)
            if np.linalg.norm(disc - block) < START_GAP:  # clipped at the arena's edge
                disc = np.clip(block - away * (START_GAP + 1e-3), -0.8, 0.8)
        return {
            "start": disc.round(6).tolist(),
            "block": block.round(6).tolist(),
            "goal": [values["goal_x"], values["goal_y"]],
        }

    def _sample_goal(self) -> np.ndarray:
        block = np.array(self.client.getBasePositionAndOrientation(self.block)[0][:2])
        return self._goal_away_from(block, 0.3)

    def _place_at_goal(self) -> None:
        # The block on the goal, the disc just behind it on the line it was
        # pushed along: where a straight push would leave them.
        block = np.array(self.client.getBasePositionAndOrientation(self.block)[0][:2])
        away = block - self.goal
        away = away / max(np.linalg.norm(away), 1e-6)
        self._set_block(self.goal, 0.0)
        self._set_disc(self.goal + away * (BLOCK_HALF + DISC_R + 0.01))

    def _read_state(self) -> np.ndarray:
        pos, quat = self.client.getBasePositionAndOrientation(self.block)
        lin, ang = self.client.getBaseVelocity(self.block)
        yaw = p.getEulerFromQuaternion(quat)[2]
        block = [pos[0], pos[1], np.cos(yaw), np.sin(yaw), lin[0], lin[1], ang[2]]
        return np.concatenate([self._disc_state(), np.array(block, np.float32)])

    def _world_signals(self, state: np.ndarray) -> dict[str, float]:
        s = self._disc_signals(state)
        bx, by, bc, bs, bvx, bvy = (float(v) for v in state[4:10])
        s.update(
            block_x=bx,
            block_y=by,
            block_yaw=float(np.arctan2(bs, bc)),
            block_speed=float(np.hypot(bvx, bvy)),
            dist_disc_block=float(np.hypot(s["x"] - bx, s["y"] - by)),
        )
        return s

    def scripted_action(self) -> np.ndarray:
        """Get behind the block (going around it), then push it at the goal."""
        s = self._signals
        disc = np.array([s["x"], s["y"]])
        block = np.array([s["block_x"], s["block_y"]])
        to_goal = self.goal - block
        u = to_goal / max(np.linalg.norm(to_goal), 1e-6)
        rel = disc - block
        along = float(rel @ u)  # < 0: behind the block
        across = float(rel @ np.array([-u[1], u[0]]))
        contact = BLOCK_HALF + DISC_R
        if along < -0.5 * contact and abs(across) < 0.04:
            # Behind and lined up: push through the block's centre. Slow
            # down near the goal so the block does not overshoot.
            speed = float(np.clip(2.5 * np.linalg.norm(to_goal) + 0.25, 0.3, 1.0))
            target = block + u * 0.2
            return (speed * self._drive_to(target, gain=8.0)).astype(np.float32)
        perp = np.array([-u[1], u[0]])
        side = 1.0 if across >= 0 else -1.0
        clear = contact + 0.1  # sideways distance that clears the block
        if along > -0.9 * contact:
            if abs(across) < clear - 0.02:
                # In front of or beside the block: move straight sideways.
                return self._drive_to(block + u * along + perp * side * clear)
            # Clear to one side: go to the back corner on that side.
            return self._drive_to(block - u * (contact + 0.06) + perp * side * clear)
        return self._drive_to(block - u * (contact + 0.06))
