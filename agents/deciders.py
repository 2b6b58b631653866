"""The ways the agent decides, one small class each, and the cost pair they plan on.

* ``Planner`` (System 2): search over the horizon from the last plan shifted a step.
* ``PolicyDecider`` (System 1): one pass of a distilled policy (``agents.policy``); its
  imagined future is judged by the cost for the record and the fallback, not searched.
  With ``shadow``, the planner also plans from its own last plan (display only: what
  System 2 would do).
* ``Both`` (amortised planning, as TD-MPC2's policy prior does for MPPI): the policy
  acted out in imagination starts an episode's first search; after that the policy,
  read along the last plan's imagined states in one batched pass, is one more sample
  beside the last plan shifted.
* ``StateDecider``: the field's trained-in baseline, a PPO-Lagrangian policy on the
  scene's raw state (``agents.statepolicy``); it reads the real state, not the latent,
  and cannot act in imagination: its record is its action held over the horizon.
* ``TwoLevels``: a learned high level (``agents.hierarchy``) hands the planner a subgoal
  latent; the planner plans to it on the low level's own cost pair.

Each returns a ``PlanRecord`` from the current latent; the ``Agent`` owns the episode
(observation, memory, warm start, acting) and asks its decider for the plan.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import torch

from agents.cost import Cost, CostSet
from agents.expressions import ExpressionError
from agents.hierarchy import HighPlanner, low_costs
from agents.planners import PlanRecord, shift
from agents.planners.base import record

# who decides, AgentConfig.actor's values: the planner, a distilled policy, both, or a
# policy trained by PPO-Lagrangian on the raw state
ACTORS = ("planner", "policy", "both", "ppol")


def made_by(actor: str) -> str:
    """The command that makes the policy ``actor`` acts with."""
    return "./lab ppol" if actor == "ppol" else "./lab distill"


@dataclass
class CostPair:
    """A cost and, where gradients flow through it (the gradient planner, the gradient
    repair), its twin with smooth comparisons: one update and one set of margins for
    both. ``view`` turns the person's cost set into the one this pair plans on (the low
    level of two levels keeps the person's terms on the subgoal's task)."""

    plain: Cost
    smooth: Cost | None
    view: Callable[[CostSet], CostSet] = lambda costs: costs

    @classmethod
    def build(cls, make: Callable[[bool], Cost], smooth: bool, view=None) -> CostPair:
        """``make(smooth)`` builds one cost; the smooth twin only when ``smooth``."""
        return cls(make(False), make(True) if smooth else None, view or (lambda c: c))

    def update(self, costs: CostSet) -> dict[str, ExpressionError]:
        """The person's edit: the plain cost's errors (bad terms keep their last good
        version in both)."""
        errors = self.plain.update(self.view(costs))
        if self.smooth is not None:
            self.smooth.update(self.view(costs))
        return errors

    def set_margins(self, margins: dict[str, torch.Tensor] | None) -> None:
        for cost in (self.plain, self.smooth):
            if cost is not None:
                cost.set_margins(margins)


class Decider:
    """One way of deciding for ``agent`` (an ``agents.agent.Agent``): ``decide`` is the
    plan from latent ``s0`` (D,); ``reset`` starts an episode; ``acted`` follows a step."""

    def __init__(self, agent) -> None:
        self.agent = agent

    def decide(self, s0: torch.Tensor) -> PlanRecord:
        raise NotImplementedError

    def reset(self) -> None:
        """A new episode: forget what the last one planned."""

    def acted(self, plan: PlanRecord) -> None:
        """``plan``'s first action was acted on."""

    def update(self, costs: CostSet) -> None:
        """The person's cost edit, for a cost the decider keeps of its own."""

    def set_margins(self, margins) -> None:
        """The hard terms' margins, for a cost the decider keeps of its own."""


def one_sample(a, s0: torch.Tensor, actions: torch.Tensor, seconds: float, actor: str):
    """A policy's action sequence (1, H, A) from latent ``s0``, imagined and judged by the
    agent ``a``'s cost as the only sample of a plan; ``seconds``: its decision's time."""
    latents, signals, result = a.planner.evaluate(
        a.model, a.cost, s0[None], actions, a.goal, a.goal_latent, a.cfg.show
    )
    one = torch.zeros(1, dtype=torch.long, device=s0.device)  # the only sample
    plan = record(actions, latents, signals, result, one, 0, seconds)
    plan.info["actor"] = actor
    return plan


class Planner(Decider):
    """System 2: the planner's search from the last plan shifted a step."""

    def decide(self, s0: torch.Tensor) -> PlanRecord:
        return self.agent.search(s0, self.agent.warm, kept=self.agent.kept)


class PolicyDecider(Decider):
    """System 1: the policy's action now is one pass (``seconds`` times that pass); the
    record holds its whole imagined sequence over the horizon, judged by the cost like
    one sample of a planner (so the page, evaluation and the fallback read it alike)."""

    def __init__(self, agent, shadow: bool) -> None:
        super().__init__(agent)
        self.shadow = shadow
        self.shadow_warm: torch.Tensor | None = None  # the shadow planner's own warm start

    def decide(self, s0: torch.Tensor) -> PlanRecord:
        a = self.agent
        s, goal = s0[None], a.goal[None]
        t0 = a.clock()
        first = a.policy(s, goal)  # (1, A): the decision
        seconds = a.clock() - t0
        H = a.cfg.search.horizon
        rest = a.policy.imagine(a.model, a.model.rollout(s, first[:, None])[:, 0], goal, H - 1)
        actions = torch.cat([first[:, None], rest], dim=1)  # (1, H, A)
        plan = one_sample(a, s0, actions, seconds, "policy")
        if self.shadow:  # what System 2 would do, from its own last plan
            plan.info["planner"] = a.search(s0, self.shadow_warm)
        return plan

    def reset(self) -> None:
        self.shadow_warm = None

    def acted(self, plan: PlanRecord) -> None:
        shadow = plan.info.get("planner")
        self.shadow_warm = None if shadow is None else shift(shadow.actions)


class StateDecider(Decider):
    """The trained-in baseline: a policy on the real state vector (``agents.statepolicy``),
    one pass; the record holds that action held over the horizon, imagined and judged by
    the cost like one sample of a planner (so the page, evaluation and the fallback read
    it as they read the others). A rule it was trained under is not checked."""

    def decide(self, s0: torch.Tensor) -> PlanRecord:
        a = self.agent
        state = a.scene.observation["state"]
        x = torch.as_tensor(state, dtype=torch.float32, device=s0.device)[None]
        t0 = a.clock()
        first = a.policy(x)  # (1, A)
        seconds = a.clock() - t0
        actions = first[:, None].expand(1, a.cfg.search.horizon, -1).contiguous()
        return one_sample(a, s0, actions, seconds, "ppol")


class Both(Decider):
    """System 1's proposal in System 2's search. Interleaved on the same episodes,
    compiled: 0.74x of the 3-iteration planner's time on Reach against 0.83x for the
    policy acted out every step, 0.66x and 0.65x on Kitchen (``./lab bench system12
    --interleaved``)."""

    def __init__(self, agent) -> None:
        super().__init__(agent)
        self.last_latents: torch.Tensor | None = None  # (H, D) the last plan's imagined

    def decide(self, s0: torch.Tensor) -> PlanRecord:
        a = self.agent
        t0 = a.clock()
        H = a.cfg.search.horizon
        if self.last_latents is None:  # the first decision: the policy acted out in
            # imagination (H policy passes and predictor steps) starts the search
            proposal = a.policy.imagine(a.model, s0[None], a.goal[None], H)[0]
            warm, extra, kept = proposal, None, None
        else:  # then: the policy along the last plan's imagined states (one batched
            # pass), one more sample beside the last plan shifted, which stays the mean
            states = torch.cat([s0[None], self.last_latents[1:H]])  # (H, D)
            proposal = a.policy(states, a.goal.expand(len(states), -1))
            warm, extra, kept = a.warm, proposal, a.kept
        proposal_s = a.clock() - t0
        plan = a.search(s0, warm, extra=extra, kept=kept)
        plan.seconds += proposal_s  # the decision's whole time: proposal and search
        plan.info["proposal"], plan.info["proposal_seconds"] = proposal, proposal_s
        return plan

    def reset(self) -> None:
        self.last_latents = None

    def acted(self, plan: PlanRecord) -> None:
        self.last_latents = plan.latents  # where the last plan expected to go


class TwoLevels(Decider):
    """The high level's first predicted latent is the low level's goal; the low level
    plans to it on its own cost pair (distance to the subgoal and the person's terms)."""

    def __init__(self, agent, high: HighPlanner, costs: CostSet, smooth: bool) -> None:
        super().__init__(agent)
        self.high = high
        model, signals = agent.model, list(agent.model.signal_names)
        task = list(agent.scene.TASK_SIGNALS)
        beside = high.cfg.beside_goal
        self.costs = CostPair.build(
            lambda s: high.subgoal_cost(costs, signals, task, model, s),
            smooth,
            view=lambda c: low_costs(c, beside),  # the task stays the subgoal
        )

    def decide(self, s0: torch.Tensor) -> PlanRecord:
        a = self.agent
        high = self.high.next(s0, a.goal, a.goal_latent, a.generator)
        plan = a.search(s0, a.warm, self.costs.plain, high.latents[0], kept=a.kept)
        plan.info["high"] = high
        if high.info["fresh"]:
            plan.seconds += high.seconds
        return plan

    def reset(self) -> None:
        self.high.reset()

    def acted(self, plan: PlanRecord) -> None:
        self.high.stepped()

    def update(self, costs: CostSet) -> None:
        self.costs.update(costs)

    def set_margins(self, margins) -> None:
        self.costs.set_margins(margins)


def clock(device: torch.device) -> float:
    """Seconds, after the device has finished what it was given (CUDA runs ahead)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return time.perf_counter()
