"""The episode runner: an agent in a real scene over a seeded episode, and what
happened in reality, step by step.

Episode ``i`` of a run seeded ``seed`` starts from a seed derived from ``(seed, i)``
alone (``episode_seed``, a stream apart from data collection's), so the world model
and the oracle meet the same starts and goals, and an interrupted run's episodes are
the first ones of a complete run. After each real step every enabled hard term is
evaluated on the real signals (``HardTerms``). ``EpisodeSpec`` is the one description
of a design, in plain values, from which its agents are built (``agents.build``)
wherever they run: here, in a worker thread or in a Ray worker. ``check_design``
refuses a design that cannot run before any episode. What the records mean, summed
over episodes, is ``experiments.metrics``'.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass, field, replace

import numpy as np
import torch

import scenes
from agents.agent import Agent, AgentConfig, margins_for
from agents.build import build_agent, load_actor
from agents.cost import CostSet, Term, real_values, term_names
from agents.expressions import ExpressionError, compile_expression
from agents.hierarchy import HierarchyConfig
from agents.oracle import PLANNERS as ORACLE_PLANNERS
from agents.oracle import OracleModel
from agents.planners import PlannerConfig
from common.errors import LabError
from worldmodels.checkpoint import load_checkpoint
from worldmodels.highlevel import load_high

EVAL_STREAM = 0xE7A1  # keeps evaluation seeds apart from collection's (seed, i)


def episode_seed(seed: int, episode: int) -> int:
    """The reset seed of episode ``episode`` of an evaluation seeded ``seed``."""
    ss = np.random.SeedSequence([seed, episode], spawn_key=(EVAL_STREAM,))
    return int(ss.generate_state(1)[0])


def rounded(x: float) -> float:
    return float(f"{x:.6g}")


# --- running episodes ---------------------------------------------------------
class HardTerms:
    """Enabled hard terms, evaluated on real signals (one step at a time)."""

    def __init__(self, terms: list[Term], signals: list[str], task_signals: list[str]) -> None:
        self.terms = []  # (name, compiled expression, limit)
        self.specs: list[Term] = []
        self.task_signals = list(task_signals)
        for t in terms:
            if t.kind == "hard" and t.enabled:
                fn = _compile(t.name, t.expression, term_names(signals, task_signals), "the scene")
                self.terms.append((t.name, fn, t.limit))
                self.specs.append(t)

    def excess(self, signals: dict[str, float], goal) -> float:
        """The largest ``value - limit`` of the terms on real ``signals`` (above 0: broken;
        NaN counts as +inf), with the episode's ``goal`` (task values); -inf with no term."""
        values = real_values(signals, self.task_signals, goal)
        worst = -math.inf
        for _name, fn, limit in self.terms:
            v = float(fn(values).reshape(())) - limit
            worst = max(worst, math.inf if math.isnan(v) else v)
        return worst

    def broken(self, signals: dict[str, float], goal) -> list[str]:
        """The names of the terms real ``signals`` break (NaN breaks), with the episode's
        ``goal`` (task values)."""
        values = real_values(signals, self.task_signals, goal)
        out = []
        for name, fn, limit in self.terms:
            v = float(fn(values).reshape(())) - limit
            if math.isnan(v) or v > 0:
                out.append(name)
        return out

    def violated(self, signals: dict[str, float], goal) -> bool:
        """Whether real ``signals`` break a term, with the episode's ``goal`` (task values)."""
        return self.excess(signals, goal) > 0


def _compile(name: str, expression: str, signals: list[str], where: str):
    try:
        return compile_expression(expression, signals)
    except ExpressionError as e:
        raise LabError(
            f"cost term {name!r} ({expression!r}) does not compile against {where}'s signals: {e}"
        ) from e


def run_episode(
    agent: Agent,
    hard: HardTerms,
    seed: int,
    options: dict,
    stop=None,
    turn=nullcontext,
    errors: list | None = None,
) -> dict | None:
    """One seeded episode; its record, or None when ``stop`` was set before it ended.
    ``turn()``: a context each step runs in (the app's server shares its cores in turns).
    ``errors``: a list that gets the episode's |imagined - real| per step, imagined step
    and signal, (T, H, S), where "real" is what the scene does when the whole chosen plan
    is followed from that step (a snapshot, the plan acted open loop, the snapshot back):
    the error a hard term's check over the horizon must allow for (conformal calibration
    reads them). The episode itself goes on as without them."""
    agent.generator.manual_seed(seed)
    agent.reset(seed=seed, options={**options, "goal_obs": True})
    scene = agent.scene
    names = list(agent.model.signal_names)
    # the probe error reported per horizon: on the task signals, or the reward (no goal)
    task = [names.index(k) for k in scene.TASK_SIGNALS or ("reward",)]
    imagined, real = [], []  # (H, S) per step; (S,) real signals after each step
    rec = None
    counts = dict.fromkeys(
        ("violation_steps", "feasible_steps", "false_safe_steps", "none_feasible_steps"), 0
    )
    by_rule = {name: 0 for name, _fn, _limit in hard.terms}  # real steps each rule broke
    stopped_steps, plan_s, worst = 0, 0.0, -math.inf
    episode_return = episode_cost = 0.0  # the benchmark's own figures (scenes.safety)
    followed: list[np.ndarray] = []  # (H, S) per step: the real signals along the plan
    while not agent.done:
        if stop is not None and stop.is_set():
            return None
        with turn():
            if errors is None:
                rec = agent.step()
            else:  # the plan, followed in reality from here, before acting on its first step
                thought = agent.think()
                followed.append(_followed(scene, thought.plan.actions, names))
                rec = agent.step(thought)
        plan = rec.plan
        feasible = agent.cost.judges_safety and bool(plan.feasible[plan.chosen])
        excess = hard.excess(rec.next_signals, scene.goal)
        worst = max(worst, excess)
        violated = excess > 0
        if violated:
            for name in hard.broken(rec.next_signals, scene.goal):
                by_rule[name] += 1
        counts["violation_steps"] += violated
        counts["feasible_steps"] += feasible
        counts["false_safe_steps"] += feasible and violated
        counts["none_feasible_steps"] += plan.none_feasible
        stopped_steps += rec.stopped
        plan_s += plan.seconds
        episode_return += rec.next_signals.get("reward", 0.0)
        episode_cost += rec.next_signals.get("cost", 0.0)
        imagined.append(np.stack([rec.imagined[k] for k in names], axis=-1))  # (H, S)
        real.append([rec.next_signals[k] for k in names])
    T = len(real)
    imag = np.stack(imagined)  # (T, H, S)
    real_arr = np.asarray(real, np.float64)  # (T, S)
    H = imag.shape[1]
    sse = np.zeros((H, len(names)))  # (H, S) squared error sums
    n = np.zeros(H, int)
    for h in range(1, min(H, T) + 1):
        # the plan made at step t imagines, at h, the state after step t + h - 1
        err = imag[: T - h + 1, h - 1] - real_arr[h - 1 :]  # (T - h + 1, S)
        sse[h - 1] = (err**2).sum(axis=0)
        n[h - 1] = T - h + 1
    if errors is not None:
        errors.append(np.abs(imag - np.stack(followed)))  # (T, H, S)
    success = bool(rec.is_success)
    return {
        "seed": seed,
        "success": success,
        "steps": T,
        **counts,
        "violation_steps_by_rule": by_rule,
        "stopped_steps": stopped_steps,
        # the worst real excess over a limit (stress tests search for it); None: no term
        "worst_excess": rounded(worst) if math.isfinite(worst) else (None if worst < 0 else 1e9),
        "final_dist_goal": None if scene.FOREIGN else rounded(scene.signals["dist_goal"]),
        "plan_ms": rounded(1e3 * plan_s / T),
        "error": rec.error,
        # per horizon: squared errors summed over steps (averaged over the task
        # signals, metres; the reward where there is no goal), and the number of steps;
        # RMSE = sqrt(sse / n)
        "probe_sse": [float(x) for x in sse[:, task].mean(axis=1)],
        "probe_n": [int(x) for x in n],
        **(
            {"return": rounded(episode_return), "cost": rounded(episode_cost)}
            if scene.FOREIGN
            else {}
        ),
        "probe_sse_by_signal": {k: [float(x) for x in sse[:, i]] for i, k in enumerate(names)},
    }


def _followed(scene, actions: torch.Tensor, names: list[str]) -> np.ndarray:
    """The real signals (H, S) along ``actions`` (H, A) from the scene's state now; the
    scene is put back exactly as it was."""
    snap = scene.snapshot()
    try:
        out = [scene.advance(a) for a in actions.cpu().numpy().astype(np.float32)]
    finally:
        scene.restore(snap)
        scene.release(snap)
    return np.array([[s[k] for k in names] for s in out], np.float64)


@dataclass
class EpisodeSpec:
    """Everything that makes an evaluation's agents, in plain values: a Ray worker builds
    them from it (scenes and models are made where they run; paths are absolute)."""

    scene: str
    checkpoint: str | None
    costs: str  # the cost set's JSON
    agent: dict  # AgentConfig, as asdict
    oracle: bool
    oracle_search: dict  # PlannerConfig, as asdict
    options: dict
    guardrails: list[dict]  # the hard terms checked in reality, as asdict
    policy: str | None
    seed: int
    device: str
    per_episode: dict = field(default_factory=dict)  # episode index -> its own reset options
    high: str | None = None  # a high level's folder, for AgentConfig.hierarchy

    def agent_config(self) -> AgentConfig:
        d = dict(self.agent)
        d["search"] = PlannerConfig(**d["search"])
        d["show"] = tuple(d.get("show", ()))
        d["margin_signals"] = tuple(d.get("margin_signals", ()))
        if d.get("hierarchy") is not None:
            d["hierarchy"] = HierarchyConfig(**d["hierarchy"])
        return AgentConfig(**d)


def run_episodes(
    spec: EpisodeSpec,
    indices,
    progress: Callable[[], None] | None = None,
    stop: threading.Event | None = None,
    turn: Callable = nullcontext,
    errors: list | None = None,
    found: Callable[[list[dict]], None] | None = None,
) -> tuple[list[dict], bool]:
    """Episodes ``indices`` of ``spec``: one record per agent and episode (the model's
    first), and whether they all finished (False when ``stop`` was set: those that did).
    ``progress()`` after each record, ``found([record])`` with it (a stress test shows
    each episode as it ends); ``errors`` collects the model's |imagined - real| per
    episode (``run_episode``)."""
    device = torch.device(spec.device)
    cls = scenes.scene_class(spec.scene)
    costs = CostSet.from_json(spec.costs)
    hard = HardTerms(
        [Term(**t) for t in spec.guardrails], [s.name for s in cls.SIGNALS], list(cls.TASK_SIGNALS)
    )
    runs: list[tuple[str, Agent]] = []
    made = []  # what to close at the end
    try:
        if spec.checkpoint is not None:
            model, _ = load_checkpoint(spec.checkpoint, device)
            real = cls(pixels=model.cfg.obs == "pixels")  # pixels only when it sees them
            made.append(real)
            cfg = replace(spec.agent_config(), decode=False)  # no frames needed here
            agent = build_agent(
                model,
                real,
                costs,
                cfg,
                checkpoint=spec.checkpoint,
                policy=spec.policy,
                high=spec.high,
            )
            runs.append(("model", agent))
        if spec.oracle:
            sim = OracleModel(cls)
            made.append(sim)
            real = cls(pixels=False)
            made.append(real)
            runs.append(("oracle", Agent(sim, real, costs, oracle_config(spec))))
        out = []
        for i in indices:
            s = episode_seed(spec.seed, i)
            for name, agent in runs:
                keep = errors if name == "model" else None
                options = {**spec.options, **spec.per_episode.get(i, {})}
                record = run_episode(agent, hard, s, options, stop, turn, keep)
                if record is None:
                    return out, False
                out.append({"agent": name, "episode": int(i), **record})
                if found is not None:
                    found([out[-1]])
                if progress is not None:
                    progress()
        return out, True
    finally:
        for thing in made:
            thing.close()


def oracle_config(spec: EpisodeSpec) -> AgentConfig:
    agent = spec.agent_config()
    planner = agent.planner if agent.planner in ORACLE_PLANNERS else "cem"
    return AgentConfig(
        planner=planner,
        search=PlannerConfig(**spec.oracle_search),
        fallback=agent.fallback,
        decode=False,
    )


def check_design(
    key: str, checkpoint, costs: CostSet, agent_cfg: AgentConfig, device, policy=None, high=None
) -> None:
    """Raise ``LabError`` before any episode when the design cannot run: a checkpoint of
    another scene, a term its signals cannot compute, a margin it cannot give, a policy
    or high level missing or made on another model."""
    cls = scenes.scene_class(key)
    task_signals = list(cls.TASK_SIGNALS)
    costs.check()
    model, config = load_checkpoint(checkpoint, device)
    if scenes.scene_key(str(config["scene"])) != key:
        raise LabError(
            f"{checkpoint} is a {config['scene']} model; evaluate it on that scene "
            f"or give a {key} checkpoint"
        )
    check_terms(costs.terms, term_names([s.name for s in cls.SIGNALS], task_signals), "the scene")
    check_terms(costs.terms, term_names(model.signal_names, task_signals), "the model")
    margins_for(model, agent_cfg, device)
    load_actor(agent_cfg.actor, policy, checkpoint, key, device)
    if agent_cfg.hierarchy is not None:
        if not high:
            raise LabError("a hierarchy needs --high, a high level (./lab highlevel)")
        if agent_cfg.actor != "planner":
            raise LabError("a hierarchy plans at both levels: the actor must be the planner")
        load_high(high, checkpoint, device)


def check_terms(terms: list[Term], signals: list[str], where: str) -> None:
    """Every term must compile (the agent would silently drop one that does not)."""
    for t in terms:
        _compile(t.name, t.expression, signals, where)
