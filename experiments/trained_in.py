"""The talk's guardrail claim on the field's benchmark, the parts the benchmark
(``benchmarks/trained_in.py``) and its lesson (``experiments/lessons/field.py``) share:
each task's rule and the new one, the planner's settings, and how a design's return and
cost under a rule are measured.

A rule is one expression on the scene's signals that must stay <= 0, made of parts
(``limits``). The planner holds each part ``INSIDE`` its limit, as
``benchmarks/safety_gym.py`` does, and is judged in reality by the rule itself; a
PPO-Lagrangian policy (``experiments.ppol``) is judged by the same rule on the same
seeded episodes. A cost per episode is the number of real steps that broke the rule.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import replace
from pathlib import Path

import numpy as np

from agents.agent import AgentConfig
from agents.cost import CostSet, Term
from agents.planners import CEM_300
from agents.statepolicy import StatePolicy
from common.errors import LabError
from experiments.evaluate import evaluate
from experiments.ppol import measure

SLOWER = 0.8  # Run's new speed limit, as a share of the task's
# How far inside each part of a rule the planner keeps, in the part's units: room for
# the model's error on the signal it reads (BallCircle, random data alone: 0.5 m cost 0
# and return 479, 0.2 m return 506 at cost 5.3 over 3 episodes; benchmarks/safety_gym.py)
INSIDE = {"abs(x)": 0.3, "abs(y)": 0.3, "speed": 0.15}
SEARCH = replace(CEM_300, noise_beta=2.0, keep=0.3)  # benchmarks/safety_gym.py's search


def limits(cls, new: bool = False) -> list[tuple[str, float]]:
    """The task's rule (``new``: the new one) as its parts, each ``expression <= limit``:
    Circle's boundary |x| <= 6, then 5; Run's track |y| <= 2 and the agent's speed limit,
    then the same track under 0.8 of that limit (a track of |y| <= 1.5 did not bind: both
    policies trained under the old rule kept it already, issue 30's note)."""
    if cls.FAMILY == "Circle":
        return [("abs(x)", 5.0 if new else 6.0)]
    if cls.FAMILY != "Run":
        raise LabError(f"{cls.TASK_ID}: the new-rule test is on the Circle and Run tasks")
    return [("abs(y)", 2.0), ("speed", round(cls.SPEED_LIMIT * (SLOWER if new else 1.0), 3))]


def expression(parts: list[tuple[str, float]]) -> str:
    """The rule as one expression that must stay <= 0 (above 0 exactly when a part is
    broken): what PPO-Lagrangian trains on (``--rule``) and reality judges."""
    if len(parts) == 1:
        return f"{parts[0][0]} - {parts[0][1]:g}"
    return " + ".join(f"relu({e} - {limit:g})" for e, limit in parts)


def rules(cls) -> tuple[str, str]:
    """The task's rule and the new one, each one expression (``expression``)."""
    return expression(limits(cls)), expression(limits(cls, new=True))


def rule(text: str) -> Term:
    """``text <= 0`` as the hard term a design is judged by in reality."""
    return Term("rule", text, "hard", limit=0.0)


def mean_of(rows: list[dict], key: str) -> float:
    return round(float(np.mean([r[key] for r in rows])), 2)


def planner(
    key: str,
    checkpoint: str | Path,
    parts: list[tuple[str, float]],
    episodes: int,
    seed: int = 0,
    device="cpu",
    stop: threading.Event | None = None,
    turn: Callable = nullcontext,
    progress: Callable[[int, int], None] | None = None,
) -> dict:
    """The planner on ``checkpoint``, planning on the task's reward and holding each part
    of the rule (``INSIDE`` its limit), judged in reality by the rule: mean return and
    the rule's cost per episode, each episode's too."""
    planned = [
        Term(f"rule: {e}", e, "hard", limit=limit - INSIDE.get(e, 0.0)) for e, limit in parts
    ]
    result = evaluate(
        key,
        checkpoint,
        CostSet(task="reward", terms=planned),
        AgentConfig(search=SEARCH, decode=False),
        episodes,
        seed=seed,
        device=device,
        guardrails=[rule(expression(parts))],
        stop=stop,
        turn=turn,
        progress=progress,
    )
    if not result.complete:
        raise LabError("stopped before the planner's episodes ended")
    rows = [e for e in result.episodes if e["agent"] == "model"]
    return {
        "return": mean_of(rows, "return"),
        "cost": mean_of(rows, "violation_steps"),  # real steps that broke the rule
        "returns": [float(e["return"]) for e in rows],
        "costs": [float(e["violation_steps"]) for e in rows],
    }


def policy(trained: StatePolicy, text: str, episodes: int, seed: int = 0) -> dict:
    """A PPO-Lagrangian policy on the same seeded episodes, judged by ``text <= 0``: mean
    return and cost per episode, each episode's too."""
    rows = measure(trained, episodes, seed, rule=rule(text))
    return {
        "return": mean_of(rows, "return"),
        "cost": mean_of(rows, "cost"),
        "returns": [float(r["return"]) for r in rows],
        "costs": [float(r["cost"]) for r in rows],
    }
