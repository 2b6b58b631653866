"""Lesson 6, the field's benchmark: on Bullet-Safety-Gym's BallCircle, the planner on
its exploration-only world model against PPO-Lagrangian, the field's trained-in
baseline, when the rule changes (the boundary at abs(x) <= 5 instead of 6). The same
measures as ``benchmarks/trained_in.py`` (``experiments.trained_in``), on fewer
episodes: the shipped policies, one trained under each rule, and nothing trained here.
"""

from __future__ import annotations

from contextlib import nullcontext

import scenes
from common.errors import LabError
from common.paths import PRETRAINED
from experiments.lessons.common import Lesson, Live, Panel, stopped
from experiments.metrics import mean_interval
from experiments.ppol import load
from experiments.trained_in import limits, planner, policy, rules

DESIGNS = {
    "planner": "planner (rule held)",
    "ppol": "PPO-L trained under the old rule",
    "retrained": "PPO-L trained again under the new",
}
RULES = {"old": "old rule", "new": "new rule"}


def field(
    live: Live,
    device,
    stop=None,
    turn=nullcontext,
    quick: bool = False,
    seed: int = 0,
    scene: str = "ballcircle",
) -> dict:
    """The planner under the old rule and, the expression edited, the new; the policy
    trained under the old rule judged by each; the policy trained under the new rule
    judged by it. ``seed``: the episodes' (0: the shipped figures')."""
    episodes = 2 if quick else 5
    cls = scenes.scene_class(scene)
    old, new = rules(cls)
    checkpoint = PRETRAINED / f"{scene}-state"
    trained_old = load(PRETRAINED / f"ppol-{scene}")
    trained_new = load(PRETRAINED / f"ppol-{scene}-new")
    figures: dict = {}
    live.say("starting", 0, 2 * episodes + 3)

    def report(design: str, when: str, got: dict) -> None:
        ret, cost = f"{design}_{when}_return", f"{design}_{when}_cost"
        figures[ret], figures[cost] = got["return"], got["cost"]
        live.interval(**{ret: mean_interval(got["returns"]), cost: mean_interval(got["costs"])})
        live.add(
            design=DESIGNS[design],
            rule=RULES[when],
            episode_return=got["return"],
            episode_cost=got["cost"],
        )
        live.set(**figures)

    for when, text in (("old", old), ("new", new)):
        stopped(stop)
        live.say(f"the planner under the {RULES[when]}: {text} <= 0")
        got = planner(
            scene,
            checkpoint,
            limits(cls, new=when == "new"),
            episodes,
            seed=seed,
            device=device,
            stop=stop,
            turn=turn,
            progress=lambda n, t: live.tick(),
        )
        report("planner", when, got)
    for design, trained, judged in (
        ("ppol", trained_old, (("old", old), ("new", new))),
        ("retrained", trained_new, (("new", new),)),
    ):
        for when, text in judged:
            stopped(stop)
            live.say(f"the {DESIGNS[design]}, judged by the {RULES[when]}")
            with turn():
                report(design, when, policy(trained, text, episodes, seed))
            live.tick()
    steps = trained_new.record["env_steps"]
    live.set(retrain_env_steps=steps)
    figures["retrain_env_steps"] = steps
    if not figures["planner_old_return"]:
        raise LabError("the planner's return under the old rule is 0: nothing to compare")
    kept = round(figures["planner_new_return"] / figures["planner_old_return"], 3)
    live.set(planner_return_kept=kept)
    figures["planner_return_kept"] = kept
    live.say("done", 2 * episodes + 3, 2 * episodes + 3)
    return live.copy().figures


def _bars(what: str) -> list[tuple[str, str, str]]:
    return [
        (RULES["old"], DESIGNS["planner"], f"planner_old_{what}"),
        (RULES["old"], DESIGNS["ppol"], f"ppol_old_{what}"),
        (RULES["new"], DESIGNS["planner"], f"planner_new_{what}"),
        (RULES["new"], DESIGNS["ppol"], f"ppol_new_{what}"),
        (RULES["new"], DESIGNS["retrained"], f"retrained_new_{what}"),
    ]


COST = "cost per episode (real steps breaking the rule)"
RETURN = "return per episode"

LESSON = Lesson(
    "field",
    "Field test",
    "The guardrail claim on the field's benchmark",
    "On Bullet-Safety-Gym's BallCircle, a new rule (the walls 5 m from the centre, not "
    "6) is one edited expression for the planner, and a new training run for "
    "PPO-Lagrangian, the field's trained-in baseline.",
    field,
    "Under the old rule both keep it. Under the new one the planner, nothing retrained, "
    "keeps most of its return and the new rule; the policy trained under the old rule "
    "breaks it on many steps, and only a new training run, of as many environment "
    "steps as the first, brings it back within the rule.",
    "Train PPO-Lagrangian under a rule of your own (./lab ppol --rule ... --limit ...) "
    "and compare it with the planner on the Experiments page; `./lab bench trained_in` "
    "runs the same test on the four tasks.",
    {"x": "design", "y": ["episode_cost", "episode_return"], "color": "rule"},
    ("ballcircle-state", "ppol-ballcircle", "ppol-ballcircle-new"),
    scenes=("ballcircle",),
    rule="the walls 6 m either side of the centre (`abs(x) - 6 <= 0`), the task's own; "
    "then 5 m (`abs(x) - 5 <= 0`): the planner holds it 0.3 m inside, the policies are "
    "judged by it",
    situation="",
    episodes=(2, 5),
    counted="episodes per design and rule, the same seeded starts for each",
    words={
        "seconds": "time the whole lesson took",
        **{
            f"{d}_{w}_{what}": f"{words}, {DESIGNS[d]}, {RULES[w]}"
            for d in DESIGNS
            for w in RULES
            for what, words in (("return", RETURN), ("cost", COST))
        },
        "retrain_env_steps": "environment steps the policy trained again under the new "
        "rule took (the planner took none)",
        "planner_return_kept": "the planner's return under the new rule, as a share of "
        "its return under the old",
    },
    panels=[
        Panel(COST, "steps", _bars("cost"), lower_better=True),
        Panel(RETURN, "reward", _bars("return")),
    ],
    seed_means="the episodes' starts",
)
