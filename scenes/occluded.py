"""``lab/KitchenOccluded-v1``: Kitchen with two tall screens across the person's path.

The talk's example of learning from observation is object permanence: a hidden
object is still there. Here, for parts of their walk, the person is behind a screen
(tall cabinets standing across their lane, drawn but touching nothing): in the scene,
within reach of the knife rule, but not in the pixels. There are two places to hide,
one beside the board and one far from it at the end of the path, as in the infant
studies' two screens: a frame with nobody in it does not say behind which one the
person is, the memory of where they went out of sight does. The state vector and the
signals still hold the true person, so a guardrail is judged in reality; a world model
that sees only the last frames loses them, one with a memory keeps them
(``worldmodels.memory``).

Everything else is Kitchen's (``scenes.kitchen``): the arm, the knife, the task, the
rule, the exploration.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from common.errors import LabError
from scenes.base import Signal
from scenes.bullet import Camera
from scenes.kitchen import CAMERA_EYE, PERSON_LEN, PERSON_PATH, PERSON_R, KitchenEnv

# The screens: x0, x1, y0, y1 of each footprint and its height (m). Each covers the
# whole walking lane (x 0.9..1.05 +- the person's radius) and is taller than the person
# (1.08 m): inside one they are hidden whatever the view. The near screen stands beside
# the board (y -0.45..-0.1): the camera looks over it from the near side (-y, above), so
# it hides them wholly from y -0.3 to about -0.13, and in part from -0.57 to 0.4. The
# far screen closes the path's +y end (0.6..1.0), where they turn round unseen: wholly
# hidden from about 0.72 on, in part from 0.43. In the exploration data the person is
# hidden about as often behind either (2665 and 2494 of 30300 steps), a mean place
# between them 0.53 m from where they are, against 0.05 m for one who knows which
# screen (``person_seen`` on the collected positions, issue 33's note). Their near faces
# (x 0.755) stay behind the hand's farthest reach (x 0.75). A single screen was shipped
# first: its hidden stretch (0.17 m) was too short for a model without memory to lose
# anyone. Two other single screens were measured (issue 33's note): at y 0..0.55 its
# shadow reached the end of the path (hidden from 0.15 on, 3 to 6 s at a time) and
# neither pixel model kept the person; at y -0.55..0 (0.4 m wholly hidden) the grown
# memory kept them no better than the model without one.
SCREENS = ((0.755, 1.21, -0.45, -0.1, 1.2), (0.755, 1.21, 0.6, 1.0, 1.2))
SCREEN_RGBA = (0.30, 0.42, 0.50, 1.0)
EVENTS = ("vanish", "jump")
JUMP = 0.5  # m back along the path: where the person reappears in a "jump"


def _capsule_points() -> np.ndarray:
    """Points on the person's surface relative to their axis's foot (P, 3): rings up the
    cylinder and over the two hemispherical caps, and the top, where the screen's cover
    is judged (checked against segmentation renders: tests/test_memory.py)."""
    ring = np.linspace(0, 2 * np.pi, 16, endpoint=False)
    pts = []
    for z in np.linspace(PERSON_R, PERSON_R + PERSON_LEN, 7):  # the cylinder
        pts += [[PERSON_R * np.cos(a), PERSON_R * np.sin(a), z] for a in ring]
    for el in np.radians([25, 50, 75]):  # the caps, above and below
        r, dz = PERSON_R * np.cos(el), PERSON_R * np.sin(el)
        for z in (PERSON_R + PERSON_LEN + dz, PERSON_R - dz):
            pts += [[r * np.cos(a), r * np.sin(a), z] for a in ring]
    pts += [[0.0, 0.0, PERSON_LEN + 2 * PERSON_R], [0.0, 0.0, 0.0]]
    return np.asarray(pts)


CAPSULE = _capsule_points()


def screen_cover(points: np.ndarray, eye=CAMERA_EYE, boxes=SCREENS) -> np.ndarray:
    """Whether a screen stands between the camera's eye and each point (P, 3) -> (P,)
    bool: the segment eye -> point meets one of the boxes (slab test); a point inside
    one is covered."""
    e = np.asarray(eye, np.float64)
    d = points - e  # (P, 3)
    d = np.where(d == 0, 1e-12, d)  # a point level with the eye on an axis: no 0 / 0
    covered = np.zeros(len(points), bool)
    for x0, x1, y0, y1, h in boxes:
        lo, hi = np.array([x0, y0, 0.0]), np.array([x1, y1, h])
        t0, t1 = (lo - e) / d, (hi - e) / d
        near = np.minimum(t0, t1).max(axis=1)
        far = np.maximum(t0, t1).min(axis=1)
        covered |= (near <= far) & (far >= 0) & (near <= 1)
    return covered


class OccludedEnv(KitchenEnv):
    """Kitchen (``scenes.kitchen.KitchenEnv``) with two screens the person walks behind.

    ## Signals
    Kitchen's, and ``person_seen`` (0..1): the part of the person the screens do not
    hide from the camera (0: they are out of the pixels, still in the scene).

    ## Reset options
    Kitchen's, and ``event`` (``{"kind": "vanish" or "jump", "at": step}``): an
    impossible event, for measuring a model's surprise. ``vanish``: from step ``at`` on
    the person is no longer drawn, wherever they are (they go on walking in the state
    and the signals: a guardrail still judges them). ``jump``: at step ``at`` the person
    is back 0.5 m along their path, where they walked a second or two before, between
    two frames.
    """

    SIGNALS = (
        *KitchenEnv.SIGNALS[:-1],
        Signal("person_seen", "", "part of the person the screens do not hide (0..1)"),
        KitchenEnv.SIGNALS[-1],
    )

    def _build(self) -> Camera:
        camera = super()._build()
        for x0, x1, y0, y1, h in SCREENS:  # nothing meets them: the arm reaches neither
            centre = ((x0 + x1) / 2, (y0 + y1) / 2, h / 2)
            self._static_box(centre, ((x1 - x0) / 2, (y1 - y0) / 2, h / 2), SCREEN_RGBA)
        self._event: dict[str, Any] = {"kind": "", "at": -1, "vanished": False, "t": 0}
        return camera

    @property
    def walls(self) -> list[tuple[float, float, float, float]]:
        """The screens' footprints as the Plan page draws walls: (cx, cy, hx, hy) in m."""
        return [
            ((x0 + x1) / 2, (y0 + y1) / 2, (x1 - x0) / 2, (y1 - y0) / 2)
            for x0, x1, y0, y1, _ in SCREENS
        ]

    def _reset_world(self, options: dict) -> None:
        self._event = {**_event_option(options.get("event")), "vanished": False, "t": 0}
        super()._reset_world(options)

    def _after_physics(self) -> None:
        ev = self._event
        ev["t"] += 1
        if ev["t"] == ev["at"]:
            if ev["kind"] == "vanish":
                ev["vanished"] = True
            elif ev["kind"] == "jump":
                h = self._person
                h["y"] = float(np.clip(h["y"] - h["dir"] * JUMP, -PERSON_PATH, PERSON_PATH))
        super()._after_physics()

    def _place_attachments(self) -> None:
        super()._place_attachments()
        if self._event["vanished"]:  # out of the world's sight, not out of the state
            self.client.resetBasePositionAndOrientation(self.person, [1.0, 1.5, -3], [0, 0, 0, 1])

    def _extra_fields(self) -> dict[str, Any]:
        return {**super()._extra_fields(), "event": dict(self._event)}

    def _set_extra_fields(self, fields: dict[str, Any]) -> None:
        super()._set_extra_fields(fields)
        self._event = dict(fields["event"])

    def _world_signals(self, state: np.ndarray) -> dict[str, float]:
        out = super()._world_signals(state)
        out["person_seen"] = self.person_seen(out["person_x"], out["person_y"])
        return out

    def person_seen(self, x: float, y: float) -> float:
        """The part of the person at (x, y) the camera sees past the screens (0..1);
        0 when they have vanished."""
        if self._event["vanished"]:
            return 0.0
        covered = screen_cover(CAPSULE + np.array([x, y, 0.0]))
        return float(1.0 - covered.mean())


def _event_option(event) -> dict[str, Any]:
    """The ``event`` reset option, checked."""
    if event is None:
        return {"kind": "", "at": -1}
    ok = (
        isinstance(event, dict)
        and set(event) == {"kind", "at"}
        and event["kind"] in EVENTS
        and isinstance(event["at"], int)
        and not isinstance(event["at"], bool)
        and event["at"] >= 1
    )
    if not ok:
        raise LabError(
            f"the 'event' option must be {{'kind': one of {list(EVENTS)}, 'at': a step >= 1}}, "
            f"not {event!r}"
        )
    return {"kind": event["kind"], "at": int(event["at"])}
