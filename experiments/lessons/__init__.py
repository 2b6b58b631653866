"""The talk's claims, each as an experiment a class can watch run in two minutes.

Each lesson is a module here holding its experiment, a function ``run(live, device,
stop, turn, quick)``, and its text (``LESSON``: the claim, what the result shows,
what to try next). The experiment runs on this machine with the shipped checkpoints
(collecting the few episodes it needs in ``runs/lessons/`` on first use) and reports
into a ``Live`` as it goes: a stage and progress, rows (the chart's points and the
CSV), headline figures and pictures. The Lessons pages (``app/screens/lessons.py``)
draw a ``Live`` while a worker thread fills it; ``benchmarks/lessons.py`` runs the
same functions, prints the figures and writes them to
``benchmarks/results/lessons.json``, which the pages show before anything runs.

1. ``blur``: pixels blur, representations do not (a generative world model,
   ``worldmodels.generative``, beside the pixel JEPA on Kitchen).
2. ``collapse``: the JEPA without its EMA target and VICReg terms collapses.
3. ``guardrails``: a rule trained into a policy against one held at inference.
4. ``open_loop``: the first plan executed blind drifts; receding horizon recovers.
5. ``hierarchy``: on Wall, flat planning, a longer horizon, the hand-written
   subgoal and the learned high level.
"""

from __future__ import annotations

from contextlib import nullcontext

from experiments.lessons import blur, collapse, guardrails, hierarchy, open_loop
from experiments.lessons.common import Lesson, Live
from worldmodels import compiled

__all__ = ["LESSONS", "Lesson", "Live", "run_lesson"]

LESSONS: dict[str, Lesson] = {
    m.LESSON.key: m.LESSON for m in (blur, collapse, guardrails, open_loop, hierarchy)
}


def run_lesson(key: str, live: Live, device, stop=None, turn=nullcontext,
               quick: bool = False) -> dict:  # fmt: skip
    """Lesson ``key``'s experiment, as the page and the benchmark run it: on the plain
    imagination, in this thread. A lesson is over in a minute or two, and compiling the
    imagination in the background (tens of seconds of both cores per kind of call) would
    not pay for itself in that time; it would only slow the lesson, unevenly."""
    with compiled.off():
        return LESSONS[key].run(live, device, stop, turn, quick)
