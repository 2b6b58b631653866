"""The learned high level measured: flat planning, a hand-written subgoal, the learned
subgoal policy, HWM over macro-actions and the scripted yardstick, over the same seeded
episodes (``benchmarks/hierarchy.py``, the hierarchy lesson).

The designs are ``agents.hierarchy``'s; this module only runs and scores them.
"""

from __future__ import annotations

from agents.agent import AgentConfig
from agents.cost import CostSet
from agents.hierarchy import HAND_SUBGOALS, HierarchyConfig
from agents.planners import PlannerConfig
from experiments.evaluate import evaluate
from worldmodels import compiled

# The measured comparison is data: ``./lab bench hierarchy`` writes it to
# benchmarks/results/hierarchy.json (the Learn page and the README read it).


def designs(scene: str) -> dict[str, tuple[CostSet, HierarchyConfig | None]]:
    """The designs ``compare`` runs, by name: (cost set, hierarchy or None for flat).
    ``learned``: the subgoal policy hands the planner its subgoals; ``hwm``: the high
    level plans over macro-actions instead, on the steps to go to the goal's latent;
    ``scripted_high`` (a diagnostic, not learned): the scene's scripted controller
    hands down the subgoals, what the same low level makes of subgoals that are right.
    All but ``flat_steps`` plan on the goal's probed task signals; it plans flat on the
    steps-to-go distance to the goal's latent (no label: goals as observations)."""
    out = {"flat": (CostSet(), None)}
    if scene in HAND_SUBGOALS:
        out["hand_subgoal"] = (CostSet(terms=[HAND_SUBGOALS[scene]]), None)
    out["learned"] = (CostSet(), HierarchyConfig())
    out["hwm"] = (CostSet(), HierarchyConfig(method="plan"))
    out["scripted_high"] = (CostSet(), HierarchyConfig(method="scripted"))
    out["flat_steps"] = (CostSet(task="latent"), None)
    return out


def compare(
    scene: str,
    checkpoint,
    high,
    episodes: int,
    seed: int = 0,
    device="cpu",
    search: PlannerConfig | None = None,
    oracle: bool = True,
    progress=None,
    stop=None,
    warm: bool = False,
) -> dict:
    """Every design of ``designs(scene)`` over the same seeded episodes, and the oracle on
    the goal term alone: one row of figures (success, steps to the goal, plan time per
    step) and the results by design. ``progress(done, total)`` after each episode.
    ``warm``: first run every design twice on one episode and wait for the compiles they
    ask for, so that each is timed compiled, as the lab plans (a benchmark)."""
    runs = designs(scene)
    total = episodes * (len(runs) + int(oracle))

    def tick(n: int, _total: int, base: int) -> None:
        if progress is not None:
            progress(base + n, total)

    def run(costs, hierarchy, count: int, base: int):
        cfg = AgentConfig(search=search or PlannerConfig(), decode=False, hierarchy=hierarchy)
        return evaluate(
            scene,
            checkpoint,
            costs,
            cfg,
            count,
            seed=seed,
            device=device,
            high=high if hierarchy else None,
            stop=stop,
            progress=lambda n, t: tick(n, t, base),
        )

    if warm and compiled.enabled():
        for _ in range(2):  # the second round: each batch size's own compile
            for costs, hierarchy in runs.values():
                run(costs, hierarchy, 1, 0)
            compiled.settle()
    row: dict = {"scene": scene, "episodes": episodes}
    results = {}
    for i, (name, (costs, hierarchy)) in enumerate(runs.items()):
        if stop is not None and stop.is_set():
            break
        results[name] = run(costs, hierarchy, episodes, i * episodes)
        row.update(figures(name, results[name]))
    if oracle and not (stop is not None and stop.is_set()):
        base = len(runs) * episodes
        result = evaluate(
            scene,
            None,
            CostSet(),
            AgentConfig(decode=False),
            episodes,
            seed=seed,
            oracle=True,
            stop=stop,
            progress=lambda n, t: tick(n, t, base),
        )
        results["oracle_flat"] = result
        s = result.summary()
        row["oracle_flat_success"] = round(s["oracle/success_rate"]["value"], 3)
    return {"row": row, "results": results}


def figures(name: str, result) -> dict:
    """A design's success, steps to the goal (successful episodes) and plan time a step."""
    s = result.summary()
    steps = s["steps_to_goal"]["value"]
    ms = result.plan_ms()
    return {
        f"{name}_success": round(s["success_rate"]["value"], 3),
        f"steps_{name}": None if steps is None else round(steps, 1),
        f"plan_ms_{name}": round(ms, 2),
    }
