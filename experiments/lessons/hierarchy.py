"""Lesson 5, hierarchy: on Wall, flat planning, a longer horizon, the subgoal a
person wrote and the learned high level, over the same seeded episodes."""

from __future__ import annotations

from contextlib import nullcontext
from dataclasses import replace

from agents.agent import AgentConfig
from agents.cost import CostSet
from agents.hierarchy import HAND_SUBGOALS, HierarchyConfig
from common.paths import PRETRAINED
from experiments.evaluate import evaluate
from experiments.hierarchy import figures
from experiments.lessons.common import SEARCH, Lesson, Live, Panel, stopped, wilson


def hierarchy(
    live: Live,
    device,
    stop=None,
    turn=nullcontext,
    quick: bool = False,
    seed: int = 0,
    scene: str = "wall",
) -> dict:
    """Wall, the same seeded episodes: flat planning (16 steps), flat with twice the
    horizon, flat with the subgoal a person wrote, and the learned high level.
    ``seed``: the episodes' (0: the shipped figures')."""

    episodes = 3 if quick else 12
    designs = {
        "flat, 16 steps": (CostSet(), SEARCH, None),
        "flat, 32 steps": (CostSet(), replace(SEARCH, horizon=32), None),
        "flat + the subgoal a person wrote": (CostSet(terms=[HAND_SUBGOALS["wall"]]), SEARCH, None),
        "learned high level (HIQL subgoals)": (CostSet(), SEARCH, HierarchyConfig()),
    }
    live.say("planning", 0, episodes * len(designs))
    out = {}
    for name, (costs, search, high) in designs.items():
        stopped(stop)
        live.say(name)
        cfg = AgentConfig(search=search, decode=False, hierarchy=high)
        result = evaluate(
            "wall",
            PRETRAINED / "wall-state",
            costs,
            cfg,
            episodes,
            seed=seed,
            device=device,
            stop=stop,
            turn=turn,
            high=PRETRAINED / "high-wall" if high else None,
            progress=lambda n, t: live.tick(),
        )
        stopped(stop)
        f = figures("d", result)
        live.add(
            design=name, success=f["d_success"], steps_to_goal=f["steps_d"], plan_ms=f["plan_ms_d"]
        )
        out[name] = f["d_success"]
        won = sum(e["success"] for e in result.episodes if e["agent"] == "model")
        live.interval(**{KEYS[name]: wilson(won, episodes)})
        live.set(**{KEYS[name]: out[name]})
    live.say("done")
    return live.copy().figures


# each design's figure
KEYS = {
    "flat, 16 steps": "flat_success",
    "flat, 32 steps": "long_success",
    "flat + the subgoal a person wrote": "hand_success",
    "learned high level (HIQL subgoals)": "learned_success",
}

LESSON = Lesson(
    "hierarchy",
    "Hierarchy",
    "Hierarchy: plan at the level where the way is found",
    "A flat planner sees 16 steps ahead; to go round a wall it needs a subgoal, "
    "and a learned high level can find one from the data instead of a person.",
    hierarchy,
    "Flat planning heads straight for the goal and stays stuck against the wall; "
    "a longer horizon is slower and no better; the person's subgoal through the "
    "door works, and the learned high level's subgoals work as well without "
    "anyone writing them.",
    "On the Plan page, Wall, switch the learned high level on and watch its "
    "subgoal (green diamond). On Push it gets the block home in five episodes "
    "of six, by a longer way than the person's subgoal: see the README.",
    {"x": "design", "y": ["success", "plan_ms"], "color": None},
    ("wall-state", "high-wall"),
    scenes=("wall",),
    rule="none: reach the goal in the other room, through the door (the learned high "
    "level is Wall's: the lesson runs on Wall)",
    episodes=(3, 12),
    counted="episodes per design, the same seeded starts and goals for each",
    words={
        "seconds": "time the whole lesson took",
        **{k: f"share of episodes reaching the goal, {d}" for d, k in KEYS.items()},
    },
    panels=[
        Panel(
            "share of episodes reaching the goal", "%", [(d, "success", k) for d, k in KEYS.items()]
        )
    ],
    seed_means="the episodes' starts and goals",
)
