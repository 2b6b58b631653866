"""``lab/Reach-v0``: the disc moves on a walled floor to a goal spot."""

from __future__ import annotations

import numpy as np

from scenes.floor import DISC_SIGNALS, DISC_STATE, DIST_GOAL, FloorScene


class ReachEnv(FloorScene):
    """A disc ("the cat") on a 2 m x 2 m walled floor reaches a goal spot.

    The first scene that must work: the world model learns it in seconds.

    ## Action space
    ``Box(-1, 1, (2,), float32)``: the disc's target velocity along x and y,
    times 0.5 m/s, tracked by force-capped velocity motors. Actions outside
    [-1, 1] are clipped; a non-finite or wrongly shaped action raises
    ``LabError``.

    ## Observation space
    ``Dict``: ``pixels`` ``(64, 64, 3)`` uint8, a top-down view (disc orange,
    walls dark; the goal is not drawn in observations), and ``state``
    ``(4,)`` float32:

    | index | name | unit | meaning |
    |-------|------|------|---------|
    | 0 | x  | m   | disc centre x, in [-0.92, 0.92] |
    | 1 | y  | m   | disc centre y |
    | 2 | vx | m/s | disc velocity x |
    | 3 | vy | m/s | disc velocity y |

    ## Signals (``info["signals"]``)

    | name | unit | meaning |
    |------|------|---------|
    | x, y | m | disc centre |
    | vx, vy | m/s | disc velocity |
    | speed | m/s | disc speed |
    | dist_wall | m | gap between the disc's edge and the nearest wall |
    | dist_goal | m | distance from (x, y) to the goal (depends on the goal) |

    ## Goal
    ``options={"goal": (x, y)}`` with both in [-0.8, 0.8], or sampled at
    least 0.4 m from the start. ``options={"start": (x, y)}`` sets the disc's
    start (clear of the walls), else it is drawn uniformly.
    ``info["is_success"]`` when ``dist_goal < 0.1``. Reward: ``-dist_goal``.

    ## Episode end
    Terminated on success (unless ``terminate_on_success=False``) or when the
    physics diverges (``info["error"]``); truncated at 100 steps (10 s).

    ## Arguments
    ``render_mode`` (``None`` or ``"rgb_array"``, 256x256 with the goal
    drawn), ``pixels`` (``False`` drops the pixel observation, for fast
    state-only data), ``terminate_on_success``.
    """

    SIGNALS = (*DISC_SIGNALS, DIST_GOAL)
    STATE = DISC_STATE
    MAX_EPISODE_STEPS = 100

    def _reset_world(self, options: dict) -> None:
        self._set_disc(self._start_point(options))

    def _sample_goal(self) -> np.ndarray:
        return self._goal_away_from(self._disc_state()[:2], 0.4)

    def _place_at_goal(self) -> None:
        self._set_disc(self.goal)

    def scripted_action(self) -> np.ndarray:
        return self._drive_to(self.goal)
