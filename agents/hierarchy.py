"""Two levels of planning: the high level finds the way, the low level walks to its subgoal.

HWM (Hierarchical Planning with Latent World Models, 2026), in this lab: the
high level (``worldmodels/highlevel.py``) predicts ``k`` primitive steps at a
time over latent macro-actions, so a planner searching ``chunks`` of them
imagines ``k x chunks`` steps (80 by default, against the low level's 16). It
plans on the agent's own task term (the goal's probed task signals, or the
steps-to-go distance to the goal's latent), with the same CEM, and hands its
first predicted latent, ``k`` steps ahead, to the low level as the subgoal.
The low level then plans its 16 steps on the distance to that latent (the
model's steps-to-go head: ``WorldModel.goal_distance``) beside the guardrail
terms the person wrote, which hold at that level as always. No term about the
scene (where the door is, which side of the block to push from) is written
anywhere: the way comes from the data's chunks.

The high level replans every ``every`` steps (``k`` by default, from its last
plan shifted by one macro-action) or when the low level has reached its
subgoal, so its cost is shared out over the steps it serves.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from agents.cost import Cost, CostSet, Term
from agents.planners import PLANNERS, PlannerConfig, PlanRecord, shift
from scenes.errors import LabError
from scenes.push import BEHIND_BLOCK
from scenes.wall import THROUGH_DOOR
from worldmodels.highlevel import DOUBT, HighLevel, MacroModel


@dataclass
class HierarchyConfig:
    """How the high level plans (``AgentConfig.hierarchy``)."""

    chunks: int = 10  # macro-actions planned ahead (x k primitive steps each)
    samples: int = 300  # CEM samples
    iterations: int = 3  # CEM rounds
    every: int = 0  # replan the high level every N steps (0: every k, one macro-action)
    # The goal term counts over the last ``final`` macro-steps of the high plan only (0:
    # over all). Summed over all of them, a plan that waits across the wall from the goal
    # costs less than the way round through the door.
    final: int = 0
    # Weight of the ensemble's disagreement (``worldmodels.highlevel.DOUBT``) in the high
    # level's cost, per macro-step (0: none; a one-member high level has none to give)
    doubt: float = 0.0
    # The low level's horizon (0: the agent's own). Its subgoal is k steps ahead: 8 steps
    # reach it, and at 16 a plan spends its second half waiting there. On Wall (10 seeded
    # episodes) 9 reached the goal at 8, at 13.6 ms a step; 8 at 16, at 25 ms.
    horizon: int = 8
    # The low level's task: "steps" to go to the subgoal (the model's distance head;
    # the plain latent distance without one), "probe" (every probed signal, in units of
    # its spread in the data) or "latent" (plain Euclidean)
    subgoal: str = "steps"


def probed_distance(model):
    """Latents (..., D) and a subgoal's (D,) -> (...): the distance between every probed
    signal of the two, each in units of its spread in the data."""

    def distance(s: torch.Tensor, goal: torch.Tensor) -> torch.Tensor:
        return torch.linalg.vector_norm(
            model.probes.normalised(s) - model.probes.normalised(goal), dim=-1
        )

    return distance


SUBGOAL_DISTANCES = {
    "steps": lambda model: model.goal_distance,
    "probe": probed_distance,
    "latent": lambda model: None,  # the Cost's plain Euclidean distance
}


class HighPlanner:
    """The high level's planning state for one agent: its last plan and subgoal."""

    def __init__(self, high: HighLevel, model, costs: CostSet, task_signals: list[str],
                 cfg: HierarchyConfig) -> None:  # fmt: skip
        if cfg.subgoal not in SUBGOAL_DISTANCES:
            raise LabError(f"the subgoal distance must be one of {', '.join(SUBGOAL_DISTANCES)}")
        if min(cfg.chunks, cfg.samples, cfg.iterations) < 1 or min(cfg.every, cfg.horizon) < 0:
            raise LabError("chunks, samples and iterations must be >= 1; every, horizon >= 0")
        if not 0 <= cfg.final <= cfg.chunks:
            raise LabError(f"final must be from 0 (all) to chunks ({cfg.chunks})")
        self.high, self.cfg = high, cfg
        self.macro = MacroModel(high, model)
        self.every = cfg.every or high.shape.k
        distance = model.goal_distance
        # the goal as the agent's task term has it, and nothing else
        terms = [Term("model doubt", DOUBT, weight=cfg.doubt)] if cfg.doubt else []
        self.cost = Cost(CostSet(task=costs.task, terms=terms), list(self.macro.signal_names),
                         task_signals, distance=distance)  # fmt: skip
        if cfg.final:
            weights = torch.zeros(cfg.chunks, device=model.device)
            weights[-cfg.final :] = 1.0
            self.cost.step_weights = weights
        search = PlannerConfig(samples=cfg.samples, horizon=cfg.chunks,
                               iterations=cfg.iterations, repair=0)  # fmt: skip
        self.planner = PLANNERS["cem"](search, high.shape.code)
        self.reset()

    def reset(self) -> None:
        self.plan: PlanRecord | None = None
        self.warm: torch.Tensor | None = None
        self.age = 0

    def subgoal_cost(self, costs: CostSet, signals, task_signals, model, smooth=False) -> Cost:
        """The low level's cost: distance to the subgoal (a latent) and the person's terms."""
        low = CostSet(task="latent", task_weight=costs.task_weight, terms=list(costs.terms))
        distance = SUBGOAL_DISTANCES[self.cfg.subgoal](model)
        return Cost(low, signals, task_signals, smooth=smooth, distance=distance)

    def due(self) -> bool:
        return self.plan is None or self.age >= self.every

    def next(self, s0: torch.Tensor, goal: torch.Tensor, goal_latent, generator) -> PlanRecord:
        """The high level's current plan from latent ``s0`` (D,), replanned when due; its
        ``latents[0]`` is the subgoal. Call once per primitive step."""
        if self.due():
            self.plan = self.planner.plan(self.macro, self.cost, s0, goal, goal_latent,
                                          generator, self.warm)  # fmt: skip
            self.plan.info["fresh"] = True
            self.warm = shift(self.plan.actions) if self.every >= self.high.shape.k else (
                self.plan.actions)  # fmt: skip
            self.age = 0
        else:
            self.plan.info["fresh"] = False
        self.age += 1
        return self.plan

    def to(self, device: torch.device) -> HighPlanner:
        self.high.to(device)
        return self


# --- the comparison: flat, a hand-written subgoal, the learned high level -----------------
# The subgoal terms a person wrote for the scenes (the Plan page's presets); the learned
# high level is measured against them and against the goal term alone.
HAND_SUBGOALS = {
    "wall": Term("through the door", THROUGH_DOOR),
    "push": Term("behind the block", BEHIND_BLOCK),
}


def designs(scene: str) -> dict[str, tuple[CostSet, HierarchyConfig | None]]:
    """The designs ``compare`` runs, by name: (cost set, hierarchy or None for flat).
    ``flat`` and ``learned`` plan on the goal's probed task signals; the ``_steps`` pair
    on the steps-to-go distance to the goal's latent (no label: goals as observations)."""
    out = {"flat": (CostSet(), None)}
    if scene in HAND_SUBGOALS:
        out["hand_subgoal"] = (CostSet(terms=[HAND_SUBGOALS[scene]]), None)
    out["learned"] = (CostSet(), HierarchyConfig())
    out["flat_steps"] = (CostSet(task="latent"), None)
    out["learned_steps"] = (CostSet(task="latent"), HierarchyConfig())
    return out


def compare(scene: str, checkpoint, high, episodes: int, seed: int = 0, device="cpu",
            search: PlannerConfig | None = None, oracle: bool = True, progress=None,
            stop=None) -> dict:  # fmt: skip
    """Every design of ``designs(scene)`` over the same seeded episodes, and the oracle on
    the goal term alone: one row of figures (success, steps to the goal, plan time per
    step) and the results by design. ``progress(done, total)`` after each episode."""
    from agents.agent import AgentConfig
    from agents.evaluate import evaluate

    runs = designs(scene)
    total = episodes * (len(runs) + int(oracle))
    done = {"n": 0}

    def tick(n: int, _total: int, base: int) -> None:
        if progress is not None:
            progress(base + n, total)

    row: dict = {"scene": scene, "episodes": episodes}
    results = {}
    for name, (costs, hierarchy) in runs.items():
        if stop is not None and stop.is_set():
            break
        cfg = AgentConfig(search=search or PlannerConfig(), decode=False, hierarchy=hierarchy)
        base = done["n"]
        result = evaluate(scene, checkpoint, costs, cfg, episodes, seed=seed, device=device,
                          high=high if hierarchy else None, stop=stop,
                          progress=lambda n, t, b=base: tick(n, t, b))  # fmt: skip
        done["n"] += episodes
        results[name] = result
        row.update(figures(name, result))
    if oracle and not (stop is not None and stop.is_set()):
        base = done["n"]
        result = evaluate(scene, None, CostSet(), AgentConfig(decode=False), episodes,
                          seed=seed, oracle=True, stop=stop,
                          progress=lambda n, t: tick(n, t, base))  # fmt: skip
        results["oracle_flat"] = result
        s = result.summary()
        row["oracle_flat_success"] = round(s["oracle/success_rate"]["value"], 3)
    return {"row": row, "results": results}


def figures(name: str, result) -> dict:
    """A design's success, steps to the goal (successful episodes) and plan time a step."""
    s = result.summary()
    eps = [e for e in result.episodes if e["agent"] == "model"]
    steps = s["steps_to_goal"]["value"]
    ms = sum(e["plan_ms"] * e["steps"] for e in eps) / max(1, sum(e["steps"] for e in eps))
    return {f"{name}_success": round(s["success_rate"]["value"], 3),
            f"steps_{name}": None if steps is None else round(steps, 1),
            f"plan_ms_{name}": round(ms, 2)}  # fmt: skip
