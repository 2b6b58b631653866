"""The talk's claims, each as an experiment a class can watch run in two minutes.

Each lesson is a module here holding its experiment, a function ``run(live, device,
stop, turn, quick, seed=, scene=)``, its settings in words and its text (``LESSON``: the
claim, what the result shows, what to try next). The experiment runs on this machine
with the shipped checkpoints (collecting the few episodes it needs in ``runs/lessons/``
on first use) and reports into a ``Live`` as it goes: a stage and progress, rows (the
chart's points and the CSV), headline figures and pictures. The Lessons pages
(``app/screens/lessons.py``) draw a ``Live`` while a worker thread fills it;
``benchmarks/lessons.py`` runs the same functions, prints the figures and writes them to
``benchmarks/results/lessons.json``, which the pages show before anything runs.

1. ``blur``: pixels blur, representations do not (a generative world model,
   ``worldmodels.generative``, beside the pixel JEPA on Kitchen).
2. ``collapse``: the JEPA without its EMA target and VICReg terms collapses.
3. ``guardrails``: a rule trained into a policy against one held at inference.
4. ``open_loop``: the first plan executed blind drifts; receding horizon recovers.
5. ``hierarchy``: on Wall, flat planning, a longer horizon, the hand-written
   subgoal and the learned high level.
6. ``field``: on Bullet-Safety-Gym's BallCircle, the planner against PPO-Lagrangian
   (the field's trained-in baseline) when the rule changes.
7. ``memory``: out of sight, still there: on Kitchen with a screen, the pixel JEPA
   beside the same model grown a memory (``worldmodels.memory``).
"""

from __future__ import annotations

from contextlib import nullcontext

from common.errors import LabError
from experiments.lessons import blur, collapse, field, guardrails, hierarchy, memory, open_loop
from experiments.lessons.common import Lesson, Live, Panel, wilson
from worldmodels import compiled

__all__ = ["LESSONS", "Lesson", "Live", "Panel", "run_lesson", "wilson"]

LESSONS: dict[str, Lesson] = {
    m.LESSON.key: m.LESSON
    for m in (blur, collapse, guardrails, open_loop, hierarchy, field, memory)
}


def run_lesson(
    key: str,
    live: Live,
    device,
    stop=None,
    turn=nullcontext,
    quick: bool = False,
    seed: int = 0,
    scene: str | None = None,
) -> dict:
    """Lesson ``key``'s experiment, as the page and the benchmark run it: on the plain
    imagination, in this thread, with ``seed`` (0: the shipped figures' episodes) and
    ``scene`` (one of ``Lesson.scenes``; None: its first). ``live.settings`` says what
    ran. A lesson is over in a minute or two, and compiling the imagination in the
    background (tens of seconds of both cores per kind of call) would not pay for itself
    in that time; it would only slow the lesson, unevenly."""
    lesson = LESSONS[key]
    scene = scene or lesson.scenes[0]
    if scene not in lesson.scenes:
        raise LabError(
            f"the {lesson.nav} lesson runs on {' or '.join(lesson.scenes)}, not {scene!r}"
        )
    if not isinstance(seed, int) or isinstance(seed, bool) or not 0 <= seed < 2**31:
        raise LabError(f"a lesson's seed is a whole number from 0 to {2**31 - 1}, not {seed!r}")
    with live.lock:
        live.settings = lesson.setup(quick, seed, scene)
    with compiled.off():
        return lesson.run(live, device, stop, turn, quick, seed=seed, scene=scene)
