"""``lab/Wall-v0``: two rooms joined by a door; reach a goal in the other room."""

from __future__ import annotations

import numpy as np

from scenes.floor import DISC_R, DISC_SIGNALS, DISC_STATE, DIST_GOAL, FloorScene

DOOR_Y = 0.55  # m, centre of the door in the dividing wall
DOOR_HALF = 0.2  # m, half the door's width (the disc is 0.16 m across)
WALL_HALF_T = 0.05  # m, half the dividing wall's thickness

# A subgoal the planner's 16 steps cannot find alone (a soft cost term; ``goal_x`` is the
# goal's x): while the disc is in the other room than the goal, its distance to the door,
# with y counted twice so that it lines up with the door before closing in (not scraping
# the frame), plus 1 for being on the wrong side, which crossing removes. Over the same 30
# episodes (benchmarks/agent_quality.py) the world-model agent reached the goal in 9 and
# the oracle in 2 with the goal term alone; with this beside it at weight 1, 30 and 30.
THROUGH_DOOR = f"where(x * goal_x < 0, sqrt(x**2 + 4 * (y - {DOOR_Y})**2) + 1, 0)"


class WallEnv(FloorScene):
    """Two 1 m x 2 m rooms split by a wall at x = 0, with a door at y = 0.55.

    The start is in one room and the goal in the other, both sampled below the
    door (y <= 0.2), so a greedy plan straight at the goal runs into the wall
    and slides along it to a dead end: planning must go up to the door,
    through it and back down (the "wall" task of DINO-WM and PLDM).

    ## Action space
    ``Box(-1, 1, (2,), float32)``: target velocity x, y times 0.5 m/s, as in
    Reach.

    ## Observation space
    ``pixels`` ``(64, 64, 3)`` uint8 top-down (the wall and door are
    visible), ``state`` ``(4,)`` float32: x, y (m), vx, vy (m/s).

    ## Signals (``info["signals"]``)

    | name | unit | meaning |
    |------|------|---------|
    | x, y | m | disc centre |
    | vx, vy | m/s | disc velocity |
    | speed | m/s | disc speed |
    | dist_wall | m | gap between the disc's edge and the nearest wall, the dividing wall included |
    | dist_goal | m | distance from (x, y) to the goal (depends on the goal) |

    ## Goal
    ``options={"start": (x, y)}`` sets the disc's start (clear of the walls).
    ``options={"goal": (x, y)}`` in [-0.8, 0.8]^2, or sampled in the room
    the disc does not start in, with y in [-0.8, 0.2]. Success when ``dist_goal < 0.1``. Reward
    ``-dist_goal``.

    ## Episode end
    Terminated on success or a physics error; truncated at 150 steps (15 s).
    """

    SIGNALS = (*DISC_SIGNALS, DIST_GOAL)
    STATE = DISC_STATE
    MAX_EPISODE_STEPS = 150
    INNER_WALLS = (
        # below the door: y from -1 to DOOR_Y - DOOR_HALF
        (0.0, (-1.0 + DOOR_Y - DOOR_HALF) / 2, WALL_HALF_T, (1.0 + DOOR_Y - DOOR_HALF) / 2),
        # above the door: y from DOOR_Y + DOOR_HALF to 1
        (0.0, (1.0 + DOOR_Y + DOOR_HALF) / 2, WALL_HALF_T, (1.0 - DOOR_Y - DOOR_HALF) / 2),
    )

    def _reset_world(self, options: dict) -> None:
        side = self.np_random.choice([-1.0, 1.0])
        start = options.get("start")
        self._set_disc(self._room_point(side) if start is None else self._start_point(options))

    def _room_point(self, side: float) -> np.ndarray:
        """A point in the room on ``side`` (-1 left, +1 right), below the door."""
        lo, hi = (-0.8, -0.2) if side < 0 else (0.2, 0.8)
        return np.array([self.np_random.uniform(lo, hi), self.np_random.uniform(-0.8, 0.2)])

    def _sample_goal(self) -> np.ndarray:
        side = -np.sign(self._disc_state()[0])
        return self._room_point(side)

    def _place_at_goal(self) -> None:
        self._set_disc(self.goal)

    def scripted_action(self) -> np.ndarray:
        """Head for the door on this side, cross, then go to the goal."""
        x, y = self._signals["x"], self._signals["y"]
        side, goal_side = np.sign(x), np.sign(self.goal[0])
        if side == goal_side and abs(x) > WALL_HALF_T + DISC_R:
            return self._drive_to(self.goal)
        lined_up = abs(y - DOOR_Y) < DOOR_HALF - DISC_R - 0.02
        if side != goal_side and not lined_up:
            return self._drive_to([side * 0.3, DOOR_Y])
        return self._drive_to([goal_side * 0.3, DOOR_Y])
