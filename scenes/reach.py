"""``lab/Reach-v0``: the disc moves on a walled floor to a goal spot."""

from __future__ import annotations

import numpy as np

from common.errors import LabError
from scenes.floor import ARENA, DISC_R, DISC_SIGNALS, DISC_STATE, DIST_GOAL, FloorScene

PUSH_DISTANCE = 0.15  # m, how far a shove moves the disc (options={"pushes": p})


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

    ``options={"pushes": p}`` (0 to 1, default 0): before each step, with
    probability ``p``, something shoves the disc ``PUSH_DISTANCE`` in a random
    direction (drawn from the episode's seed). No model can see it coming: the
    lesson on open-loop plans and receding horizons uses it.

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

    pushes = 0.0  # probability of a shove before each step (the "pushes" reset option)

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        options = dict(options or {})
        raw = options.pop("pushes", 0.0)
        try:
            pushes = float(raw)
        except (TypeError, ValueError):
            pushes = float("nan")
        if not 0.0 <= pushes <= 1.0:
            raise LabError(f"pushes is a probability per step, in [0, 1], not {raw!r}")
        self.pushes = pushes
        return super().reset(seed=seed, options=options)

    def _reset_world(self, options: dict) -> None:
        self._set_disc(self._start_point(options))

    def _apply_action(self, action: np.ndarray) -> None:
        super()._apply_action(action)
        if self.pushes and self.np_random.random() < self.pushes:
            x, y, vx, vy = self._disc_state()
            angle = self.np_random.uniform(0.0, 2 * np.pi)
            lim = ARENA - DISC_R - 0.01  # against a wall at most, never into one
            xy = np.clip(
                [x + PUSH_DISTANCE * np.cos(angle), y + PUSH_DISTANCE * np.sin(angle)], -lim, lim
            )
            self._set_disc(xy, (vx, vy))

    def _sample_goal(self) -> np.ndarray:
        return self._goal_away_from(self._disc_state()[:2], 0.4)

    def _place_at_goal(self) -> None:
        self._set_disc(self.goal)

    def scripted_action(self) -> np.ndarray:
        return self._drive_to(self.goal)
