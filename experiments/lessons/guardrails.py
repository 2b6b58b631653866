"""Lesson 3, guardrails at inference time: a rule trained into a policy against
one held by the planner at inference, the settings of ``experiments.system12`` (its
new-rule and new-situation tests), on Kitchen or Reach."""

from __future__ import annotations

from contextlib import nullcontext
from dataclasses import replace

from agents.agent import AgentConfig
from common.errors import LabError
from common.paths import PRETRAINED
from experiments.evaluate import evaluate
from experiments.lessons.common import Lesson, Live, Panel, step_interval, wilson
from experiments.system12 import NEW_RULES, OPTIONS, SEARCH, SHIFTS, TRAINED_UNDER

ACTORS = {"policy": "policy (rule trained in)", "planner": "planner (rule held)"}


def guardrails(
    live: Live,
    device,
    stop=None,
    turn=nullcontext,
    quick: bool = False,
    seed: int = 0,
    scene: str = "kitchen",
) -> dict:
    """System 1 against System 2 (as ``experiments.system12.new_rule`` and
    ``new_situation``, with each figure's interval): a rule typed after the policy was
    distilled, and, on Kitchen, the knife rule in a situation outside the data (the
    person walking faster than anyone in it). ``seed``: the episodes' (0: the shipped
    figures')."""
    episodes = 2 if quick else 10
    checkpoint, policy = PRETRAINED / f"{scene}-state", PRETRAINED / f"policy-{scene}"
    trained, new = TRAINED_UNDER[scene], NEW_RULES[scene]
    base = AgentConfig(search=SEARCH, decode=False)
    held = replace(base, margin=1.0, fallback="stop")
    tests = [
        (
            "a new rule",
            "new_rule",
            OPTIONS.get(scene, {}),
            [new],
            {
                "policy": (trained, base),
                "planner": (replace(trained, terms=[*trained.terms, new]), held),
            },
        ),
    ]
    if scene in SHIFTS:
        tests.append(
            (
                "a new situation",
                "shifted",
                SHIFTS[scene],
                trained.terms,
                {"policy": (trained, base), "planner": (trained, held)},
            )
        )
    parts = 2 * len(tests)
    live.say("starting", 0, parts)
    figures: dict = {}
    for test, tag, options, rules, actors in tests:
        for actor, (costs, cfg) in actors.items():
            live.say(f"{test}: the {ACTORS[actor]}")
            r = evaluate(
                scene,
                checkpoint,
                costs,
                replace(cfg, actor=actor),
                episodes,
                seed=seed,
                stop=stop,
                device=device,
                options=options,
                guardrails=rules,
                policy=policy,
                turn=turn,
            )
            if not r.complete:  # stopped (the lesson's tab went away): no figure from a part
                raise LabError("the lesson was stopped before it finished")
            summary = r.summary()
            rate = summary["violation_step_rate"]["value"]
            won = [e["success"] for e in r.episodes if e["agent"] == "model"]
            figures[f"{tag}_violation_{actor}"] = round(float(rate or 0.0), 4)
            figures[f"{tag}_success_{actor}"] = round(sum(won) / len(won), 4)
            live.interval(
                **{
                    f"{tag}_violation_{actor}": step_interval(summary),
                    f"{tag}_success_{actor}": wilson(sum(won), len(won)),
                }
            )
            live.add(
                test=test,
                actor=ACTORS[actor],
                violation_step_rate=figures[f"{tag}_violation_{actor}"],
                success=figures[f"{tag}_success_{actor}"],
            )
            live.set(**figures)
            live.tick()
    live.say("done", parts, parts)
    return figures


def _bars(tag: str, test: str, what: str) -> list[tuple[str, str, str]]:
    return [(test, ACTORS[a], f"{tag}_{what}_{a}") for a in ACTORS]


STEPS_BROKEN = "share of real steps breaking the rule"
REACHED = "share of episodes reaching the goal"
TESTS = {"new_rule": "a new rule", "shifted": "a new situation"}

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
    scenes=("kitchen", "reach"),
    rule={
        scene: f"{NEW_RULES[scene].name} (`{NEW_RULES[scene].expression}`), typed after the "
        "policy was distilled"
        + (
            f"; in the new situation the knife rule it was distilled "
            f"under (`{TRAINED_UNDER[scene].terms[0].expression}`)"
            if scene in SHIFTS
            else ""
        )
        for scene in NEW_RULES
    },
    situation={
        "kitchen": "the person walking at 0.8 m/s, faster than anyone in the data "
        "the models learned from (at most 0.5 m/s), starting near the board",
        "reach": "none on Reach (only Kitchen has one)",
    },
    episodes=(2, 10),
    counted="episodes per actor and test",
    words={
        "seconds": "time the whole lesson took",
        **{
            f"{tag}_violation_{a}": f"{STEPS_BROKEN}, {test}, {ACTORS[a]}"
            for tag, test in TESTS.items()
            for a in ACTORS
        },
        **{
            f"{tag}_success_{a}": f"{REACHED}, {test}, {ACTORS[a]}"
            for tag, test in TESTS.items()
            for a in ACTORS
        },
    },
    panels=[
        Panel(
            STEPS_BROKEN,
            "%",
            _bars("new_rule", "a new rule", "violation")
            + _bars("shifted", "a new situation", "violation"),
            lower_better=True,
        ),
        Panel(
            REACHED,
            "%",
            _bars("new_rule", "a new rule", "success")
            + _bars("shifted", "a new situation", "success"),
        ),
    ],
    seed_means="the episodes' starts and the person's",
)
