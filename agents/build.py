"""One way to build an agent from what a design names, for every caller: the Plan
page's run, evaluation (here and in a Ray worker), stress tests and the lessons.

A design names a world model (already loaded: callers keep it to show or reuse), the
scene it acts in, a cost set, the agent's settings and, where the settings ask for
them, the folders of a policy (``actor`` "policy" or "both": distilled on the model;
"ppol": trained by PPO-Lagrangian on the scene's raw state) and of a high level
(``hierarchy``). Both are loaded onto the model's device and refused, with a message,
when missing or made on another model or scene.
"""

from __future__ import annotations

from pathlib import Path

from agents.agent import Agent, AgentConfig
from agents.cost import CostSet
from agents.deciders import made_by
from agents.policy import load_policy
from agents.statepolicy import load_state_policy
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
    key = getattr(scene, "KEY", type(scene).__name__.removesuffix("Env").lower())
    pi = load_actor(cfg.actor, policy, checkpoint, key, model.device)
    levels = None
    if cfg.hierarchy is not None:
        if not high:
            raise LabError("a hierarchy needs a high level for this model: ./lab highlevel")
        levels = load_high(high, checkpoint, model.device)
    return Agent(model, scene, costs, cfg, seed=seed, policy=pi, high=levels)


def load_actor(actor: str, policy, checkpoint, scene: str, device):
    """The policy ``actor`` acts with (None for the planner): a distilled one, made on the
    model in ``checkpoint``, or a PPO-Lagrangian one, trained on ``scene``."""
    if actor == "planner":
        return None
    if not policy:
        raise LabError(f"actor {actor!r} needs a policy: {made_by(actor)} makes one")
    if actor == "ppol":
        return load_state_policy(policy, scene, device)
    return load_policy(policy, checkpoint, device)
