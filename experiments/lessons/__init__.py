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

__all__ = ["LESSONS", "MEASURED", "Lesson", "Live", "run_lesson"]

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


# What ``./lab bench lessons`` printed on 2 CPU cores with the shipped checkpoints (the
# pages show it before anything runs): rates are fractions, times seconds and ms.
MEASURED: dict[str, dict] = {
    "blur": {
        "seconds": 49.3,
        "jepa_sharpness_h0": 0.554,
        "jepa_probe_nrmse_h0": 0.492,
        "jepa_sharpness_h1": 0.552,
        "jepa_probe_nrmse_h1": 0.478,
        "jepa_sharpness_h4": 0.543,
        "jepa_probe_nrmse_h4": 0.445,
        "jepa_sharpness_h16": 0.525,
        "jepa_probe_nrmse_h16": 0.497,
        "generative_sharpness_h0": 0.48,
        "generative_probe_nrmse_h0": 0.486,
        "generative_sharpness_h1": 0.477,
        "generative_probe_nrmse_h1": 0.482,
        "generative_sharpness_h4": 0.473,
        "generative_probe_nrmse_h4": 0.496,
        "generative_sharpness_h16": 0.467,
        "generative_probe_nrmse_h16": 0.954,
        "jepa_success": 1.0,
        "jepa_violation_step_rate": 0.0491,
        "jepa_plan_ms": 38.03,
        "generative_success": 1.0,
        "generative_violation_step_rate": 0.1349,
        "generative_plan_ms": 37.24,
    },
    "collapse": {
        "seconds": 91.0,
        "rank_with": 20.48,
        "rank_without": 0.0,
    },
    "guardrails": {
        "seconds": 41.4,
        "new_rule_violation_policy": 0.4233,
        "new_rule_success_policy": 1.0,
        "new_rule_violation_planner": 0.0014,
        "new_rule_success_planner": 0.8,
        "shifted_violation_policy": 0.1828,
        "shifted_success_policy": 0.9,
        "shifted_violation_planner": 0.0451,
        "shifted_success_planner": 1.0,
    },
    "open_loop": {
        "seconds": 23.6,
        "open_loop_success_calm": 0.35,
        "receding_success_calm": 0.95,
        "blind_gap_end_calm": 0.124,
        "open_loop_success_pushed": 0.25,
        "receding_success_pushed": 0.9,
        "blind_gap_end_pushed": 0.259,
    },
    "hierarchy": {
        "seconds": 48.1,
        "flat_success": 0.333,
        "long_success": 0.333,
        "hand_success": 1.0,
        "learned_success": 1.0,
    },
}
