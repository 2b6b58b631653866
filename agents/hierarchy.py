"""Two levels of planning: the high level finds the way, the low level walks to its subgoal.

The high level (``worldmodels/highlevel.py``, learned from the exploration data in
the frozen world model's latent space) hands the low level a subgoal latent ``k``
primitive steps ahead, by one of two methods (``HierarchyConfig.method``), or by a
third that is not learned and serves as a yardstick:

* ``policy`` (HIQL, Park et al. 2023; the default): its subgoal policy proposes
  the latent to be at ``k`` steps on, towards the goal's latent, in one pass,
  every step;
* ``plan`` (HWM, Hierarchical Planning with Latent World Models, 2026): CEM
  searches ``chunks`` latent macro-actions (80 steps by default) with the
  high-level predictor, on the agent's own task term (the goal's probed task
  signals) or on the steps to go to the goal's latent (``high_cost``), and its
  first predicted latent is the subgoal; replanned every ``k`` steps from its
  last plan shifted by one macro-action;
* ``scripted`` (a diagnostic): the scene's own scripted controller, acted out in
  the real scene and put back, hands down the latent it reaches ``k`` steps on:
  what the low level makes of subgoals that are right.

The low level plans ``horizon`` (8) steps on the distance to the subgoal (where the
agent itself is, ``body``, on Wall and Push: ``WALKS``), beside the goal's own task
term (``beside_goal``) and the guardrail terms the person wrote, which hold at that
level as always. No term about the scene (where the door is, which side of the block
to push from) is written anywhere: the way comes from the data.
``experiments/hierarchy.py`` measures them against flat planning and the hand-written
subgoals (``benchmarks/hierarchy.py``).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, replace

import numpy as np
import torch

from agents.cost import Cost, CostSet, Term
from agents.planners import CEM_300, PLANNERS, PlanRecord, shift
from common.errors import LabError
from scenes.push import BEHIND_BLOCK
from scenes.wall import THROUGH_DOOR
from worldmodels.highlevel import DOUBT, HighLevel, MacroModel


@dataclass
class HierarchyConfig:
    """How the high level plans (``AgentConfig.hierarchy``)."""

    # How the high level finds the subgoal: "policy" (HIQL: the subgoal policy, one pass;
    # its chained proposals are drawn as its plan) or "plan" (HWM: CEM over latent
    # macro-actions with the high-level predictor). The policy by default: on Wall and Push
    # it reached the goal as often as planning did, in less time a step (`./lab bench
    # hierarchy`, benchmarks/results/hierarchy.json).
    method: str = "policy"
    chunks: int = 10  # macro-actions planned ahead (x k primitive steps each)
    samples: int = 300  # CEM samples
    iterations: int = 3  # CEM rounds
    # replan the high level every N steps (0: every k, one macro-action, for "plan";
    # every step for "policy")
    every: int = 0
    # Weight of the ensemble's disagreement (``worldmodels.highlevel.DOUBT``) in the high
    # level's cost, per macro-step (0: none; a one-member high level has none to give)
    doubt: float = 0.0
    # The low level's horizon (0: the agent's own). Its subgoal is k steps ahead: 8 steps
    # reach it, and at 16 a plan spends its second half waiting there. On Wall (10 seeded
    # episodes, planning over macro-actions) 9 reached the goal at 8, at 13.6 ms a step;
    # 8 at 16, at 25 ms.
    horizon: int = 8
    # The low level's distance to the subgoal: "body" (where the agent itself is: the
    # distance in metres between the probed BODY signals, its x-y, of the two latents),
    # "mixed" (the steps to go plus the plain latent distance at MIXED_LATENT: the steps
    # head only bounds a step by one, so within a few steps of the subgoal it is coarse,
    # and the latent is exact there), "steps" (the model's distance head; the plain latent
    # distance without one), "probe" (every probed signal, in units of its spread in the
    # data) or "latent" (plain Euclidean); "" leaves it to the scene the high level was
    # learned on (WALKS). With subgoals from Push's scripted controller (method
    # "scripted", 30 seeded episodes, beside the goal), body 30 of 30; earlier, on 20,
    # mixed 15, steps 10
    subgoal: str = ""
    # Keep the goal's task term at the low level (a signal task: the goal's probed task
    # signals), the distance to the subgoal beside it at this weight per step (0: the
    # subgoal alone, the task; a latent task always plans on the subgoal alone; None: the
    # scene's, WALKS). Push (the subgoal policy, 20 seeded episodes, mixed): 9 reached the
    # goal at 0.1, 7 at 0.15, 5 at 0.2; with the subgoal alone 4 of 30
    beside_goal: float | None = None
    # What the high level plans on ("plan"): "steps", the steps-to-go distance to the
    # goal's latent whatever the agent's task, or "task", the agent's own task term. Push
    # (20 seeded episodes, the goal term beside a steps subgoal): 10 against 4; Wall 30 of
    # 30 with the low level as it is now (16 on the goal term with the subgoal alone)
    high_cost: str = "steps"


def probed_distance(model):
    """Latents (..., D) and a subgoal's (D,) -> (...): the distance between every probed
    signal of the two, each in units of its spread in the data."""

    def distance(s: torch.Tensor, goal: torch.Tensor) -> torch.Tensor:
        return torch.linalg.vector_norm(
            model.probes.normalised(s) - model.probes.normalised(goal), dim=-1
        )

    return distance


MIXED_LATENT = 0.5  # the plain latent distance's weight in "mixed" (Push: a step moves
# the latent about 2 and the steps head 0.5; at 1.0, 13 of 20 with scripted subgoals)


def mixed_distance(model):
    """The steps to go to a subgoal plus ``MIXED_LATENT`` x the plain latent distance."""

    def distance(s: torch.Tensor, goal: torch.Tensor) -> torch.Tensor:
        plain = torch.linalg.vector_norm(s - goal, dim=-1)
        return model.goal_distance(s, goal) + MIXED_LATENT * plain

    return distance


BODY = ("x", "y")  # the agent's own position among the probed signals (the floor's disc)


def body_distance(model):
    """Metres between where the agent itself is (the probed ``BODY`` signals) on the
    latents and on the subgoal: the subgoal says where to be, and the goal's own term
    beside it moves what the agent must move (Push's block)."""
    if any(n not in model.signal_names for n in BODY):
        raise LabError(f"the body distance reads the probed {' and '.join(BODY)} of the agent")

    def where(s: torch.Tensor) -> torch.Tensor:
        probed = model.probe(s, BODY)
        return torch.stack([probed[n] for n in BODY], dim=-1)

    def distance(s: torch.Tensor, goal: torch.Tensor) -> torch.Tensor:
        return torch.linalg.vector_norm(where(s) - where(goal), dim=-1)

    return distance


SUBGOAL_DISTANCES = {
    "body": body_distance,
    "mixed": mixed_distance,
    "steps": lambda model: model.goal_distance,
    "probe": probed_distance,
    "latent": lambda model: None,  # the Cost's plain Euclidean distance
}


# How the low level walks to the subgoal, by the scene the high level was learned on:
# (subgoal distance, beside_goal), where HierarchyConfig leaves them to the scene. On the
# body distance (metres), Push's subgoal policy reached the goal in 25, 26, 24 and 18 of
# 30 seeded episodes (seed 0) at weights 0.35, 0.5, 0.7 and 1.0 per metre, and in 24, 21
# and 20 (seed 1) at 0.35, 0.5 and 0.7: proposals that are partly wrong are followed
# loosely, and the goal term does the rest. Wall's, which are right, must outweigh its
# goal term (the door is a detour): 24 of 30 at 1.0 per metre, 30 at 4.0 (seed 0; the
# README's hierarchy section has how each was measured).
WALKS = {"push": ("body", 0.35), "wall": ("body", 4.0)}
WALK = ("mixed", 0.1)  # any other scene's


def walk_for(cfg: HierarchyConfig, scene: str | None) -> HierarchyConfig:
    """``cfg`` with the subgoal distance and ``beside_goal`` it leaves open filled in from
    ``WALKS`` for ``scene``."""
    subgoal, beside = WALKS.get(scene or "", WALK)
    return replace(
        cfg,
        subgoal=cfg.subgoal or subgoal,
        beside_goal=beside if cfg.beside_goal is None else cfg.beside_goal,
    )


def low_costs(costs: CostSet, beside_goal: float = 0.0) -> CostSet:
    """The low level's cost set under a high level: the task is the subgoal's latent (or,
    ``beside_goal``, the goal's signals, the subgoal a term beside them: ``Cost.beside``),
    the terms are the person's."""
    task = costs.task if beside_goal and costs.task == "signal" else "latent"
    return CostSet(task=task, task_weight=costs.task_weight, terms=list(costs.terms))


class HighPlanner:
    """The high level's planning state for one agent: its last plan and subgoal."""

    def __init__(
        self,
        high: HighLevel,
        model,
        costs: CostSet,
        task_signals: list[str],
        cfg: HierarchyConfig,
        scene=None,
    ) -> None:
        if cfg.method not in ("plan", "policy", "scripted"):
            raise LabError(
                "the high level's method must be 'plan' (HWM), 'policy' (HIQL) or 'scripted'"
            )
        if cfg.method == "scripted" and (scene is None or getattr(model, "frames", 1) > 1):
            raise LabError("a scripted high level needs the real scene and a one-frame model")
        if cfg.method == "policy" and high.proposer is None:
            raise LabError("this high level has no subgoal policy: ./lab highlevel --subgoal")
        if cfg.high_cost not in ("task", "steps"):
            raise LabError("the high level's cost must be 'task' or 'steps'")
        cfg = walk_for(cfg, high.info.get("scene"))
        if cfg.subgoal not in SUBGOAL_DISTANCES:
            raise LabError(f"the subgoal distance must be one of {', '.join(SUBGOAL_DISTANCES)}")
        if min(cfg.chunks, cfg.samples, cfg.iterations) < 1 or min(cfg.every, cfg.horizon) < 0:
            raise LabError("chunks, samples and iterations must be >= 1; every, horizon >= 0")
        self.high, self.cfg, self.model, self.scene = high, cfg, model, scene
        self.macro = MacroModel(high, model)
        self.every = cfg.every or (high.shape.k if cfg.method == "plan" else 1)
        # the goal as the agent's task term has it (summed over the macro-steps: counted
        # at the last one alone, Wall's success fell from 26 to 7 of 30), and the doubt
        terms = [Term("model doubt", DOUBT, weight=cfg.doubt)] if cfg.doubt else []
        task = "latent" if cfg.high_cost == "steps" else costs.task
        self.cost = Cost(
            CostSet(task=task, terms=terms),
            list(self.macro.signal_names),
            task_signals,
            distance=model.goal_distance,
        )
        search = replace(  # plain CEM, as ``./lab bench hierarchy`` measured it
            CEM_300, samples=cfg.samples, horizon=cfg.chunks, iterations=cfg.iterations, repair=0
        )
        self.planner = PLANNERS["cem"](search, high.shape.code)
        self.reset()

    def reset(self) -> None:
        self.plan: PlanRecord | None = None
        self.warm: torch.Tensor | None = None
        self.age = 0

    def subgoal_cost(self, costs: CostSet, signals, task_signals, model, smooth=False) -> Cost:
        """The low level's cost: distance to the subgoal (a latent) and the person's terms."""
        distance = SUBGOAL_DISTANCES[self.cfg.subgoal](model)
        return Cost(
            low_costs(costs, self.cfg.beside_goal),
            signals,
            task_signals,
            smooth=smooth,
            distance=distance,
            beside=self.cfg.beside_goal,
        )

    def due(self) -> bool:
        return self.plan is None or self.age >= self.every

    def next(self, s0: torch.Tensor, goal: torch.Tensor, goal_latent, generator):
        """The high level's current plan from latent ``s0`` (D,), replanned when due: a
        ``PlanRecord`` (``plan``) or ``Proposals`` (``policy``); its ``latents[0]`` is the
        subgoal. Thinking again before a step (a cost edit's preview) keeps the plan's age:
        ``stepped`` counts the steps."""
        if self.due() and self.cfg.method == "policy":
            self.plan = self.propose(s0, goal_latent)
            self.age = 0
        elif self.due() and self.cfg.method == "scripted":
            self.plan = self.scripted()
            self.age = 0
        elif self.due():
            self.plan = self.planner.plan(
                self.macro, self.cost, s0, goal, goal_latent, generator, self.warm
            )
            self.plan.info["fresh"] = True
            self.warm = (
                shift(self.plan.actions) if self.every >= self.high.shape.k else (self.plan.actions)
            )
            self.age = 0
        else:
            self.plan.info["fresh"] = False
        return self.plan

    def stepped(self) -> None:
        """One primitive step was acted on."""
        self.age += 1

    def propose(self, s0: torch.Tensor, goal_latent: torch.Tensor) -> Proposals:
        """The subgoal policy's proposal from ``s0``, and the ``chunks`` it chains from
        there (the way it would go, for display)."""
        t0 = time.perf_counter()
        s, out = s0[None], []
        with torch.no_grad():
            for _ in range(self.cfg.chunks):
                s = self.high.propose(s, goal_latent[None])
                out.append(s[0])
        return Proposals(torch.stack(out), time.perf_counter() - t0, {"fresh": True})

    def scripted(self) -> Proposals:
        """A diagnostic high level that knows the way: the scene's own scripted controller
        (written by a person, as the scenes' exploration uses it) acted out ``chunks`` x k
        steps in the real scene, which is then put back exactly; the latents it passes
        every k steps are the subgoals. What the low level makes of subgoals that are right
        (``compare``'s ``scripted_high``)."""
        t0 = time.perf_counter()
        scene, k = self.scene, self.high.shape.k
        snap, seen = scene.snapshot(), []
        try:
            ended = False
            for _ in range(self.cfg.chunks):
                for _ in range(k):
                    if not ended:
                        _, _, ended, _, _ = scene.step(scene.scripted_action())
                seen.append(scene.observation)
        finally:
            scene.restore(snap)
            scene.release(snap)
        obs = {key: np.stack([o[key] for o in seen]) for key in seen[0]}  # one batch
        obs["last_action"] = np.zeros((len(seen), scene.ACTION_DIM), np.float32)
        with torch.no_grad():
            latents = self.model.encode(obs)
        return Proposals(latents, time.perf_counter() - t0, {"fresh": True})


@dataclass
class Proposals:
    """The subgoal policy's chained proposals: the first is the subgoal."""

    latents: torch.Tensor  # (chunks, D)
    seconds: float
    info: dict


# The subgoal terms a person wrote for the scenes (the Plan page's presets); the learned
# high level is measured against them and against the goal term alone.
HAND_SUBGOALS = {
    "wall": Term("through the door", THROUGH_DOOR, kind="soft", weight=1.0),
    "push": Term("behind the block", BEHIND_BLOCK, kind="soft", weight=1.0),
}
