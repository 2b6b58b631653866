"""One way to build an agent from what a design names, for every caller: the Plan
page's run, evaluation (here and in a Ray worker), stress tests and the lessons.

A design names a world model (already loaded: callers keep it to show or reuse), the
scene it acts in, a cost set, the agent's settings and, where the settings ask for
them, the folders of a distilled policy (``actor`` "policy" or "both") and of a high
level (``hierarchy``). Both are loaded onto the model's device and refused, with a
message, when missing or made on another model.
"""

from __future__ import annotations

from pathlib import Path

from agents.agent import Agent, AgentConfig
from agents.cost import CostSet
from agents.policy import load_policy
from common.errors import LabError
from worldmodels.highlevel import load_high


def build_agent(
    model,
    scene,
    costs: CostSet,
    cfg: AgentConfig,
    *,
    checkpoint: str | Path | None = None,
    policy: str | Path | None = None,
    high: str | Path | None = None,
    seed: int = 0,
) -> Agent:
    """The agent of a design. ``checkpoint``: the model's folder, which the policy and
    the high level must have been made on; ``seed`` starts the planner's random stream."""
    pi = None
    if cfg.actor != "planner":
        if not policy:
            raise LabError(f"actor {cfg.actor!r} needs a policy for this model: ./lab distill")
        pi = load_policy(policy, checkpoint, model.device)
    levels = None
    if cfg.hierarchy is not None:
        if not high:
            raise LabError("a hierarchy needs a high level for this model: ./lab highlevel")
        levels = load_high(high, checkpoint, model.device)
    return Agent(model, scene, costs, cfg, seed=seed, policy=pi, high=levels)
