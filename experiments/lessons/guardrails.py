"""Lesson 3, guardrails at inference time: a rule trained into a policy against
one held by the planner at inference (``experiments.system12`` on Kitchen)."""

from __future__ import annotations

from contextlib import nullcontext

from common.paths import PRETRAINED
from experiments import system12
from experiments.lessons.common import Lesson, Live


def guardrails(live: Live, device, stop=None, turn=nullcontext, quick: bool = False) -> dict:
    """System 1 against System 2 on Kitchen (``experiments.system12``): a rule typed after the
    policy was distilled, and the knife rule in a situation outside the data (the person
    walking faster than anyone in it)."""

    setup = system12.Setup(scene="kitchen", checkpoint=str(PRETRAINED / "kitchen-state"),
                           policy=str(PRETRAINED / "policy-kitchen"),
                           episodes=2 if quick else 10, device=device)  # fmt: skip
    parts = 4

    def say(what: str) -> None:
        live.say(what, min(live.done, parts - 1), parts)
        live.tick()

    live.say("starting", 0, parts)
    figures = system12.new_rule(setup, say, stop, turn)
    for actor in ("policy", "planner"):
        live.add(test="a new rule", actor=actor,
                 violation_step_rate=figures[f"new_rule_violation_{actor}"],
                 success=figures[f"new_rule_success_{actor}"])  # fmt: skip
    shifted = system12.new_situation(setup, say, stop, turn)
    for actor in ("policy", "planner"):
        live.add(test="a new situation", actor=actor,
                 violation_step_rate=shifted[f"shifted_violation_{actor}"],
                 success=shifted[f"shifted_success_{actor}"])  # fmt: skip
    figures.update(shifted)
    live.say("done", parts, parts)
    live.set(**figures)
    return figures


LESSON = Lesson(
    "guardrails",
    "Guardrails",
    "Guardrails at inference time",
    "A rule held by the planner at inference time holds for rules and situations "
    "the agent was never trained on; a rule trained into a policy does not.",
    guardrails,
    "The policy never saw the new rule, and breaks it on many steps; the planner "
    "holds it because it is a term of the cost it minimises now. In a situation "
    "outside the data (the person walking fast) the planner's rule is checked "
    "against every imagined step, so it still holds far better.",
    "On the Experiments page compare the policy and the planner on your own rule; "
    "on the Plan page type a new guardrail while the agent runs.",
    {"x": "actor", "y": ["violation_step_rate", "success"], "color": "test"},
    ("kitchen-state", "policy-kitchen"),
)
