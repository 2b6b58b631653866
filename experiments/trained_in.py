"""The talk's guardrail claim on the field's benchmark, the parts the benchmark
(``benchmarks/trained_in.py``) and its lesson (``experiments/lessons/field.py``) share:
each task's rule and the new one, the planner's settings, and how a design's return and
cost under a rule are measured.

A rule is an expression on the scene's signals that must stay <= 0. The planner holds it
``INSIDE`` (0.3 m) within its limit, as ``benchmarks/safety_gym.py`` does, and is judged
in reality by the rule itself; a PPO-Lagrangian policy (``experiments.ppol``) is judged
by the same rule on the same seeded episodes. A cost per episode is the number of real
steps that broke the rule.
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
INSIDE = 0.3  # m: how far inside a rule the planner keeps (benchmarks/safety_gym.py)
SEARCH = replace(CEM_300, noise_beta=2.0, keep=0.3)  # benchmarks/safety_gym.py's search


def rules(cls) -> tuple[str, str]:
    """The task's rule and the new one, each an expression that must stay <= 0: Circle's
    boundary |x| <= 6, then 5; Run's track |y| <= 2 and speed limit, then the same track
    under 0.8 of that limit (a track of |y| <= 1.5 did not bind: both policies trained
    under the old rule kept it already, issue 30's note)."""
    if cls.FAMILY == "Circle":
        return "abs(x) - 6", "abs(x) - 5"
    track = "relu(abs(y) - 2)"
    return (
        f"{track} + relu(speed - {cls.SPEED_LIMIT:g})",
        f"{track} + relu(speed - {SLOWER * cls.SPEED_LIMIT:.3g})",
    )


def rule(expression: str) -> Term:
    """``expression <= 0`` as the hard term a design is judged by in reality."""
    return Term("rule", expression, "hard", limit=0.0)


def mean_of(rows: list[dict], key: str) -> float:
    return round(float(np.mean([r[key] for r in rows])), 2)


def planner(
    key: str,
    checkpoint: str | Path,
    expression: str,
    episodes: int,
    seed: int = 0,
    device="cpu",
    stop: threading.Event | None = None,
    turn: Callable = nullcontext,
    progress: Callable[[int, int], None] | None = None,
) -> dict:
    """The planner on ``checkpoint``, planning on the task's reward and holding
    ``expression <= 0`` (INSIDE it), judged in reality by the same rule: mean return
    and the rule's cost per episode, each episode's too."""
    planned = [Term("rule", expression, "hard", limit=-INSIDE)]
    result = evaluate(
        key,
        checkpoint,
        CostSet(task="reward", terms=planned),
        AgentConfig(search=SEARCH, decode=False),
        episodes,
        seed=seed,
        device=device,
        guardrails=[rule(expression)],
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


def policy(trained: StatePolicy, expression: str, episodes: int, seed: int = 0) -> dict:
    """A PPO-Lagrangian policy on the same seeded episodes, judged by ``expression <= 0``:
    mean return and cost per episode, each episode's too."""
    rows = measure(trained, episodes, seed, rule=rule(expression))
    return {
        "return": mean_of(rows, "return"),
        "cost": mean_of(rows, "cost"),
        "returns": [float(r["return"]) for r in rows],
        "costs": [float(r["cost"]) for r in rows],
    }
