"""Evaluation: the agent over seeded episodes, and what happened in reality.

    ./lab evaluate --scene kitchen --checkpoint pretrained/kitchen-state --planner cem \\
        --costs costs.json --episodes 50 [--oracle] [--seed 0] [--out runs/eval/NAME]

Episode ``i`` starts from a seed derived from ``(seed, i)`` alone (a stream
apart from data collection's), so the world model and the oracle meet the
same starts and goals, and an interrupted run's episodes are the first ones of
a complete run. Per episode the agent replans every step (receding horizon);
after each real step every enabled hard term of the cost set is evaluated on
the real signals. The figures (DESIGN.md, Evaluation), per agent:

| metric | what |
|---|---|
| ``success_rate`` | episodes that reached the goal |
| ``steps_to_goal`` | steps taken, over the successful episodes |
| ``violation_step_rate`` | real steps where an enabled hard term broke its limit |
| ``violation_episode_rate`` | episodes with at least one such step |
| ``violation_step_rate/{rule}`` | real steps where that hard term broke its limit |
| ``false_safe_rate`` | real violations among the steps whose plan was judged safe |
| ``no_safe_plan_rate`` | steps where no sampled plan kept the hard terms (the fallback acted) |
| ``probe_rmse_h{h}`` | imagined task signals h steps ahead vs real, RMSE (m) |

A step violates when any enabled hard term, evaluated on the real signals
after the step, exceeds its limit. A false safe is a step whose chosen plan
the model judged feasible (the agent plans with an enabled hard term, and every
one is within its limit over the whole imagined horizon) but whose real step
violated. An agent without hard terms judges nothing: its false-safe rate is
undefined (None), not its violation rate. Probe error compares, for
every step t, the chosen plan's imagined task signals at horizon h with the
real ones after step t + h - 1.

Each comes with a 95 % percentile-bootstrap interval over episodes (episodes
resampled with replacement, 1000 times, seeded; ratios are pooled over the
resampled episodes' steps). ``--oracle`` also runs the oracle planner
(``agents.oracle``) on the same seeds: its figures carry an ``oracle/``
prefix. Note on probe error: the agent acts only the first action of each
plan, so from h = 2 the real future also differs from the imagined one by the
later replanning; the oracle, whose imagination is exact, shows that part
alone (its h = 1 error is 0).

``evaluate`` is the API the app calls from a worker thread (``progress`` and
``stop``); ``main`` is the command line. Output: ``result.json`` (settings,
summary, episodes), ``episodes.csv`` (one row per agent and episode) and
``summary.csv`` (metric, value, low, high).
"""

from __future__ import annotations

import csv
import io
import json
import logging
import math
import sys
import threading
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

import scenes
from agents.agent import Agent, AgentConfig, margins_for
from agents.cost import CostSet, Term, real_values, term_names
from agents.expressions import ExpressionError, compile_expression
from agents.hierarchy import HierarchyConfig
from agents.oracle import ORACLE_SEARCH, OracleModel
from agents.oracle import PLANNERS as ORACLE_PLANNERS
from agents.planners import PLANNERS, PlannerConfig
from agents.policy import load_policy
from common.config import parse_config
from common.device import choose_device
from common.errors import LabError
from common.files import parse_versioned_json, write_json_atomic
from worldmodels.checkpoint import load_checkpoint
from worldmodels.highlevel import load_high

log = logging.getLogger(__name__)

FORMAT, VERSION = "lab-evaluation", 1
BOOTSTRAP = 1000  # resamples for the intervals
CONFIDENCE = 0.95
EVAL_STREAM = 0xE7A1  # keeps evaluation seeds apart from collection's (seed, i)


def plan_ms_per_step(episodes: list[dict]) -> float:
    """Mean ms per plan over every step of ``episodes`` (records of ``run_episode``): each
    episode's mean weighted by its steps."""
    steps = sum(e["steps"] for e in episodes)
    return sum(e["plan_ms"] * e["steps"] for e in episodes) / max(steps, 1)


def episode_seed(seed: int, episode: int) -> int:
    """The reset seed of episode ``episode`` of an evaluation seeded ``seed``."""
    ss = np.random.SeedSequence([seed, episode], spawn_key=(EVAL_STREAM,))
    return int(ss.generate_state(1)[0])


# --- the result -----------------------------------------------------------------
@dataclass
class EvalResult:
    """Per-episode records plus settings; the summary is computed from the episodes."""

    scene: str
    settings: dict  # checkpoint, planners, search settings, cost set, seed, options
    episodes: list[dict] = field(default_factory=list)  # one per agent and episode
    horizon: int = 0  # the longest probe-error curve (agents may plan with different H)
    complete: bool = True  # False when stopped early

    @property
    def agents(self) -> list[str]:
        return [a for a in ("model", "oracle") if any(e["agent"] == a for e in self.episodes)]

    def summary(self) -> dict[str, dict]:
        """metric -> {"value", "low", "high"}; the oracle's metrics carry an ``oracle/``
        prefix. An undefined figure (no successful episode, no step planned feasible)
        is None."""
        out: dict[str, dict] = {}
        seed = int(self.settings.get("seed", 0))
        for agent in self.agents:
            eps = [e for e in self.episodes if e["agent"] == agent]
            prefix = "" if agent == "model" else "oracle/"
            for name, value in _metrics(eps, seed).items():
                out[prefix + name] = value
        return out

    def plan_ms(self, agent: str = "model") -> float:
        """``agent``'s mean ms per plan over every step of its episodes."""
        return plan_ms_per_step([e for e in self.episodes if e["agent"] == agent])

    def probe_by_signal(self, agent: str = "model") -> dict[str, list[float | None]]:
        """signal -> RMSE per horizon h = 1..H, every signal the model probes (no intervals)."""
        eps = [e for e in self.episodes if e["agent"] == agent]
        if not eps:
            return {}
        out = {}
        for k in eps[0]["probe_sse_by_signal"]:
            sse = np.sum([e["probe_sse_by_signal"][k] for e in eps], axis=0)
            n = np.sum([e["probe_n"] for e in eps], axis=0)
            out[k] = [_round(math.sqrt(s / c)) if c else None for s, c in zip(sse, n, strict=True)]
        return out

    def to_json(self) -> str:
        return json.dumps(
            {
                "format": FORMAT,
                "version": VERSION,
                "scene": self.scene,
                "settings": self.settings,
                "horizon": self.horizon,
                "complete": self.complete,
                "summary": self.summary(),
                "episodes": self.episodes,
            },
            indent=1,
        )

    @classmethod
    def from_json(cls, text: str) -> EvalResult:
        d = parse_versioned_json(
            text,
            FORMAT,
            VERSION,
            "lab evaluation result",
            "run the evaluation again",
            "the text",
        )
        try:
            return cls(d["scene"], d["settings"], d["episodes"], d["horizon"], d["complete"])
        except KeyError as e:
            raise LabError(f"the evaluation result has no {e}: run the evaluation again") from e

    def to_csv(self) -> str:
        """One row per agent and episode: the scalar fields, then probe RMSE per horizon,
        then the real steps each rule broke (``violation_steps/RULE``)."""
        cols = [k for k in EPISODE_FIELDS]
        cols += [f"probe_rmse_h{h}" for h in range(1, self.horizon + 1)]
        rules = list(
            dict.fromkeys(k for e in self.episodes for k in e.get("violation_steps_by_rule", {}))
        )
        cols += [f"violation_steps/{r}" for r in rules]
        buf = io.StringIO()
        w = csv.writer(buf, lineterminator="\n")
        w.writerow(cols)
        for e in self.episodes:
            rmse = [
                "" if n == 0 else f"{math.sqrt(s / n):.6g}"
                for s, n in zip(e["probe_sse"], e["probe_n"], strict=True)
            ]
            rmse += [""] * (self.horizon - len(rmse))  # a shorter horizon than the other agent's
            broke = e.get("violation_steps_by_rule", {})
            by_rule = [_csv_value(broke.get(r)) for r in rules]
            w.writerow([_csv_value(e[k]) for k in EPISODE_FIELDS] + rmse + by_rule)
        return buf.getvalue()

    def summary_csv(self) -> str:
        """metric, value, low, high (empty when undefined)."""
        buf = io.StringIO()
        w = csv.writer(buf, lineterminator="\n")
        w.writerow(["metric", "value", "low", "high"])
        for name, v in self.summary().items():
            w.writerow([name, *(_csv_value(v[k]) for k in ("value", "low", "high"))])
        return buf.getvalue()

    def save(self, folder: str | Path) -> Path:
        """``result.json``, ``episodes.csv`` and ``summary.csv`` in ``folder`` (atomic)."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        write_json_atomic(folder / "result.json", json.loads(self.to_json()))
        for name, text in (("episodes.csv", self.to_csv()), ("summary.csv", self.summary_csv())):
            tmp = folder / f".{name}.tmp"
            tmp.write_text(text)
            tmp.replace(folder / name)
        return folder

    def table(self) -> str:
        """The summary as aligned text, for the command line."""
        lines = []
        for name, v in self.summary().items():
            if v["value"] is None:
                lines.append(f"{name:32s} undefined")
            else:
                lines.append(f"{name:32s} {v['value']:8.4f}  [{v['low']:.4f}, {v['high']:.4f}]")
        return "\n".join(lines)


def experiment_csv(results: dict[str, EvalResult], table: str = "episodes") -> str:
    """Several designs' results as one CSV a reader can tell apart from any other.

    ``table``: ``"episodes"`` (one row per design, agent and episode) or ``"summary"``
    (design, metric, value, low, high). The settings that made the numbers (scene,
    checkpoint, planner, samples, iterations, fallback, seed, reset options, the rules
    measured, each design's terms, the guard: ``design_guard``, one value when the designs
    share it, else a ``# design NAME guard:`` line each) head the file as ``# key: value`` lines
    (``pandas.read_csv(..., comment="#")`` skips them); ``design`` is every row's first
    column (rows that said only ``agent=model`` could not be told apart).
    """
    if table not in ("episodes", "summary"):
        raise ValueError(f"table must be 'episodes' or 'summary', not {table!r}")
    buf = io.StringIO()
    first = next(iter(results.values()), None)
    if first is not None:
        s = first.settings
        search = s.get("search") or {}
        head = {
            "scene": first.scene,
            "checkpoint": s.get("checkpoint"),
            "planner": s.get("planner"),
            "samples": search.get("samples"),
            "horizon": search.get("horizon"),
            "iterations": search.get("iterations"),
            "fallback": s.get("fallback"),
            "seed": s.get("seed"),
            "episodes per design": s.get("episodes"),
            "reset options": json.dumps(s.get("options") or {}),
            "measured against": "; ".join(
                f"{g['name']}: {g['expression']} <= {g['limit']:g}" for g in s.get("guardrails", [])
            ),
        }
        guards = {name: design_guard(res.settings) for name, res in results.items()}
        shared = len({tuple(g.items()) for g in guards.values()}) == 1
        for key in GUARD_KEYS:  # one value when every design had it, else on each design
            head[key] = guards[next(iter(guards))].get(key) if shared else "per design"
        for key, value in head.items():
            buf.write(f"# {key}: {'' if value is None else value}\n")
        for name, res in results.items():
            if not shared:
                guard = "; ".join(f"{k} {v}" for k, v in guards[name].items())
                buf.write(f"# design {name} guard: {guard}\n")
            c = res.settings.get("costs", {})
            terms = "; ".join(
                f"{t['name']} ({t['kind']}{'' if t['enabled'] else ', off'}): {t['expression']}"
                + (f" <= {t['limit']:g}" if t["kind"] == "hard" else f" x {t['weight']:g}")
                for t in c.get("terms", [])
            )
            task = f"task {c.get('task')} x {c.get('task_weight', 1):g}"
            buf.write(f"# design {name}: {task}" + (f"; {terms}" if terms else "") + "\n")
    # designs may differ in columns (another horizon, other rules): a column each, by name
    parts = {}
    for name, res in results.items():
        text = res.to_csv() if table == "episodes" else res.summary_csv()
        parts[name] = list(csv.DictReader(io.StringIO(text)))
    cols = list(dict.fromkeys(k for rows in parts.values() for r in rows[:1] for k in r))
    if not cols:  # no rows at all: the header alone
        cols = list(EPISODE_FIELDS) if table == "episodes" else ["metric", "value", "low", "high"]
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["design", *cols])
    for name, rows in parts.items():
        w.writerows([name, *(r.get(k, "") for k in cols)] for r in rows)
    return buf.getvalue()


# What guarded a design's plans, as ``design_guard`` words it (CSV head lines).
GUARD_KEYS = ("actor", "guard", "margin", "delta", "margin steps", "repair")


def design_guard(settings: dict) -> dict[str, str]:
    """The guard a design's plans ran with, from its ``EvalResult.settings``: who acted,
    the margin in words, then the numbers behind it (margin x probe error, miss rate delta
    of the calibrated bound, the imagined steps it held over, the repair of infeasible
    plans). Empty for the oracle alone (its imagination is exact: no margin)."""
    if "margin" not in settings:
        return {}
    margin, delta = float(settings.get("margin") or 0), float(settings.get("delta") or 0)
    steps = int(settings.get("margin_steps") or 0)
    search = settings.get("search") or {}
    over = "every imagined step" if steps == 0 else f"the first {steps} imagined steps"
    if delta:
        words = f"calibrated bound at miss rate {delta:g}, over {over}"
    elif margin:
        words = f"{margin:g} x the model's probe error, over {over}"
    else:
        words = "none: the hard terms as the model imagines them"
    actor = settings.get("actor", "planner")
    terms = (settings.get("costs") or {}).get("terms", [])
    if actor == "policy":  # a distilled policy acts alone: nothing is checked
        words = "none: a distilled policy acts alone, no plan is checked"
    elif "costs" in settings and not any(t["kind"] == "hard" and t["enabled"] for t in terms):
        words = "none: the design has no hard term to hold a margin over"
    repair = search.get("repair")
    return {
        "actor": actor,
        "guard": words,
        "margin": f"{margin:g}",
        "delta": f"{delta:g}",
        "margin steps": f"{steps}" + (" (every imagined step)" if steps == 0 else ""),
        "repair": "" if repair is None else f"{repair} ({search.get('repair_mode', 'scale')})",
    }


# The per-episode record's scalar fields (CSV columns, in order).
EPISODE_FIELDS = (
    "agent",  # "model" or "oracle"
    "episode",  # index i
    "seed",  # reset seed, from (seed, i)
    "success",  # reached the goal
    "steps",  # steps taken
    "violation_steps",  # real steps violating a hard term
    "feasible_steps",  # steps whose chosen plan was feasible in imagination
    "false_safe_steps",  # ... of which the real step violated
    "none_feasible_steps",  # steps where no sampled plan was feasible
    "stopped_steps",  # steps the "stop" fallback stood still
    "final_dist_goal",  # m, at the end
    "plan_ms",  # mean planning time per step
    "error",  # a physics error that ended the episode, if any
)


def _csv_value(v) -> str:
    if v is None:
        return ""
    if isinstance(v, bool):
        return str(int(v))
    if isinstance(v, float):
        return f"{v:.6g}"
    return str(v)


def _round(x: float) -> float:
    return float(f"{x:.6g}")


def _metrics(eps: list[dict], seed: int) -> dict[str, dict]:
    """The summary of one agent's episodes, with bootstrap intervals (see module docstring)."""
    E, H = len(eps), len(eps[0]["probe_n"])
    rng = np.random.default_rng([seed, E])
    # counts (B+1, E): how often each episode is drawn; row 0 is the data itself.
    draws = rng.integers(0, E, size=(BOOTSTRAP, E))  # episode indices per resample
    counts = np.vstack([np.ones(E), np.stack([np.bincount(d, minlength=E) for d in draws])])

    def col(key):
        return np.array([float(e[key]) for e in eps])

    def ratio(num: np.ndarray, den: np.ndarray) -> dict:
        with np.errstate(invalid="ignore", divide="ignore"):
            r = (counts @ num) / (counts @ den)  # (B+1,)
        return _interval(r)

    success = col("success")
    steps = col("steps")
    out = {
        "success_rate": ratio(success, np.ones(E)),
        "steps_to_goal": ratio(success * steps, success),
        "violation_step_rate": ratio(col("violation_steps"), steps),
        "violation_episode_rate": ratio((col("violation_steps") > 0).astype(float), np.ones(E)),
        "false_safe_rate": ratio(col("false_safe_steps"), col("feasible_steps")),
        # the share of steps where no sampled plan kept the hard terms (the fallback acted)
        "no_safe_plan_rate": ratio(col("none_feasible_steps"), steps),
    }
    rules = dict.fromkeys(k for e in eps for k in e.get("violation_steps_by_rule", {}))
    for rule in rules:  # each rule apart (results saved before they were counted have none)
        broke = np.array([float(e.get("violation_steps_by_rule", {}).get(rule, 0)) for e in eps])
        out[f"violation_step_rate/{rule}"] = ratio(broke, steps)
    sse = np.array([e["probe_sse"] for e in eps]).reshape(E, H)  # (E, H)
    n = np.array([e["probe_n"] for e in eps], float).reshape(E, H)
    with np.errstate(invalid="ignore", divide="ignore"):
        rmse = np.sqrt((counts @ sse) / (counts @ n))  # (B+1, H)
    for h in range(H):
        out[f"probe_rmse_h{h + 1}"] = _interval(rmse[:, h])
    return out


def _interval(r: np.ndarray) -> dict:
    """r (B+1,): the estimate then its bootstrap replicates -> value, low, high."""
    value = r[0]
    if not np.isfinite(value):
        return {"value": None, "low": None, "high": None}
    reps = r[1:][np.isfinite(r[1:])]
    a = (1 - CONFIDENCE) / 2
    low, high = np.quantile(reps, [a, 1 - a]) if len(reps) else (value, value)
    # A percentile interval of a ratio can miss its own estimate by a rounding
    # hair; widen it to contain the estimate.
    return {
        "value": _round(value),
        "low": _round(min(low, value)),
        "high": _round(max(high, value)),
    }


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
    task = [names.index(k) for k in scene.TASK_SIGNALS]
    imagined, real = [], []  # (H, S) per step; (S,) real signals after each step
    rec = None
    counts = dict.fromkeys(
        ("violation_steps", "feasible_steps", "false_safe_steps", "none_feasible_steps"), 0
    )
    by_rule = {name: 0 for name, _fn, _limit in hard.terms}  # real steps each rule broke
    stopped_steps, plan_s, worst = 0, 0.0, -math.inf
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
        "worst_excess": _round(worst) if math.isfinite(worst) else (None if worst < 0 else 1e9),
        "final_dist_goal": _round(scene.signals["dist_goal"]),
        "plan_ms": _round(1e3 * plan_s / T),
        "error": rec.error,
        # per horizon: squared errors summed over steps (averaged over the task
        # signals, metres), and the number of steps; RMSE = sqrt(sse / n)
        "probe_sse": [float(x) for x in sse[:, task].mean(axis=1)],
        "probe_n": [int(x) for x in n],
        "probe_sse_by_signal": {k: [float(x) for x in sse[:, i]] for i, k in enumerate(names)},
    }


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
            pi = (
                None
                if cfg.actor == "planner"
                else load_policy(spec.policy, spec.checkpoint, device)
            )
            high = None if cfg.hierarchy is None else load_high(spec.high, spec.checkpoint, device)
            runs.append(("model", Agent(model, real, costs, cfg, policy=pi, high=high)))
        if spec.oracle:
            sim = OracleModel(cls)
            made.append(sim)
            real = cls(pixels=False)
            made.append(real)
            runs.append(("oracle", Agent(sim, real, costs, _oracle_config(spec))))
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
    _check_terms(costs.terms, term_names([s.name for s in cls.SIGNALS], task_signals), "the scene")
    _check_terms(costs.terms, term_names(model.signal_names, task_signals), "the model")
    margins_for(model, agent_cfg, device)
    if agent_cfg.actor != "planner":
        if not policy:
            raise LabError(f"actor {agent_cfg.actor!r} needs --policy (./lab distill)")
        load_policy(policy, checkpoint, device)
    if agent_cfg.hierarchy is not None:
        if not high:
            raise LabError("a hierarchy needs --high, a high level (./lab highlevel)")
        if agent_cfg.actor != "planner":
            raise LabError("a hierarchy plans at both levels: the actor must be the planner")
        load_high(high, checkpoint, device)


def evaluate_spec(
    scene,
    checkpoint,
    costs: CostSet,
    agent_cfg: AgentConfig,
    indices,
    seed: int,
    per_episode: dict,
    stop=None,
    device=None,
    ray=None,
    turn: Callable = nullcontext,
    found: Callable[[list[dict]], None] | None = None,
):
    """Episodes ``indices`` of the model's agent alone, each with its own reset options
    (``per_episode``), its rule the cost set's enabled hard terms: (records, finished).
    Locally or over Ray (``ray``), as ``evaluate``; ``found(records)`` with each episode
    (locally) or chunk (Ray) as it ends. Stress tests run their generations so."""
    device = choose_device("auto") if device is None else torch.device(device)
    spec = EpisodeSpec(
        scene=scenes.scene_key(scene),
        checkpoint=str(Path(checkpoint).resolve()),
        costs=costs.to_json(),
        agent=asdict(agent_cfg),
        oracle=False,
        oracle_search=asdict(ORACLE_SEARCH),
        options={},
        guardrails=[asdict(t) for t in costs.terms if t.kind == "hard" and t.enabled],
        policy=None,
        seed=seed,
        device=str(device),
        per_episode=dict(per_episode),
    )
    if ray:
        from experiments import fanout

        return fanout.run(spec, list(indices), ray, None, stop, found=found)
    return run_episodes(spec, list(indices), None, stop, turn, found=found)


def _oracle_config(spec: EpisodeSpec) -> AgentConfig:
    agent = spec.agent_config()
    planner = agent.planner if agent.planner in ORACLE_PLANNERS else "cem"
    return AgentConfig(
        planner=planner,
        search=PlannerConfig(**spec.oracle_search),
        fallback=agent.fallback,
        decode=False,
    )


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


def evaluate(
    scene: str,
    checkpoint: str | Path | None,
    costs: CostSet,
    agent_cfg: AgentConfig,
    episodes: int,
    seed: int = 0,
    oracle: bool = False,
    progress: Callable[[int, int], None] | None = None,
    stop: threading.Event | None = None,
    device=None,
    *,
    oracle_search: PlannerConfig | None = None,
    options: dict | None = None,
    guardrails: list[Term] | None = None,
    turn: Callable = nullcontext,
    policy: str | Path | None = None,
    errors: list | None = None,
    ray: str | None = None,
    high: str | Path | None = None,
) -> EvalResult:
    """Run the agent (and, with ``oracle``, the oracle planner) over seeded episodes.

    ``checkpoint`` may be None when ``oracle`` is set (the oracle alone).
    ``progress(done, total)`` is called after every finished episode; setting
    ``stop`` ends the run early with the finished episodes. ``oracle_search``
    overrides ``ORACLE_SEARCH``; ``options`` are passed to every reset (e.g.
    Kitchen's ``{"person_near": True}``). ``guardrails``: the hard terms
    checked in reality, when they should differ from the ones the agent plans
    with (an unguarded agent measured against the guardrail it lacks, or a
    design with a safety margin measured against the specification); by
    default the cost set's enabled hard terms. ``device``: None picks CUDA
    when present. ``policy``: a distilled policy's folder, for ``agent_cfg.actor``
    "policy" or "both"; ``high``: a high level's folder, for ``agent_cfg.hierarchy``.
    ``turn()``: a context every step runs in (the app's server takes
    its cores in turns). ``errors``: a list that gets the model's |imagined - real| per
    episode (``run_episode``). ``ray``: fan the episodes out over Ray (``experiments.fanout``:
    "local" starts Ray on this machine, else a cluster's address); the records are the
    same as without it. Bad input raises ``LabError`` with a plain message.
    """
    key = scenes.scene_key(scene)
    if episodes < 1:
        raise LabError("episodes must be at least 1")
    if checkpoint is None and not oracle:
        raise LabError("give a checkpoint, or ask for the oracle alone")
    if agent_cfg.planner not in PLANNERS:
        raise LabError(f"unknown planner {agent_cfg.planner!r}; choose {', '.join(PLANNERS)}")
    costs.check()
    options = dict(options or {})
    device = choose_device("auto") if device is None else torch.device(device)
    cls = scenes.scene_class(key)
    scene_signals = [s.name for s in cls.SIGNALS]
    task_signals = list(cls.TASK_SIGNALS)
    measured = costs.terms if guardrails is None else list(guardrails)
    hard = HardTerms(measured, scene_signals, task_signals)
    settings = {
        "scene": key,
        "checkpoint": None if checkpoint is None else str(checkpoint),
        "costs": json.loads(costs.to_json()),
        "seed": seed,
        "episodes": episodes,
        "options": options,
        "guardrails": [asdict(t) for t in hard.specs],
    }
    if checkpoint is not None:  # a bad checkpoint, policy or margin fails before any episode
        check_design(key, checkpoint, costs, agent_cfg, device, policy, high)  # the terms too
        if agent_cfg.actor != "planner":
            settings["policy"] = str(policy)
        if agent_cfg.hierarchy is not None:
            settings["high"], settings["hierarchy"] = str(high), asdict(agent_cfg.hierarchy)
        settings["actor"] = agent_cfg.actor
        settings["planner"], settings["search"] = agent_cfg.planner, asdict(agent_cfg.search)
        settings["fallback"], settings["margin"] = agent_cfg.fallback, agent_cfg.margin
        settings["delta"], settings["margin_steps"] = agent_cfg.delta, agent_cfg.margin_steps
    else:  # the oracle alone: the terms against the scene's signals
        _check_terms(costs.terms, term_names(scene_signals, task_signals), "the scene")
    spec = EpisodeSpec(
        scene=key,
        checkpoint=None if checkpoint is None else str(Path(checkpoint).resolve()),
        costs=costs.to_json(),
        agent=asdict(agent_cfg),
        oracle=oracle,
        oracle_search=asdict(oracle_search or ORACLE_SEARCH),
        options=options,
        guardrails=[asdict(t) for t in hard.specs],
        policy=str(Path(policy).resolve()) if policy else None,
        seed=seed,
        device=str(device),
        high=str(Path(high).resolve()) if high else None,
    )
    if oracle:
        ocfg = _oracle_config(spec)
        settings["oracle_planner"], settings["oracle_search"] = ocfg.planner, spec.oracle_search
    per_episode = int(checkpoint is not None) + int(oracle)
    horizon = max(
        [agent_cfg.search.horizon] * (checkpoint is not None)
        + [spec.oracle_search["horizon"]] * oracle
    )
    result = EvalResult(key, settings, [], horizon, complete=False)
    total = episodes * per_episode
    counter = {"done": 0}

    def tick(n: int = 1) -> None:
        counter["done"] += n
        if progress is not None:
            progress(counter["done"], total)

    if ray:
        from experiments import fanout  # Ray is imported only when asked for

        records, finished = fanout.run(spec, range(episodes), ray, tick, stop, errors)
    else:
        records, finished = run_episodes(spec, range(episodes), tick, stop, turn, errors)
    result.episodes, result.complete = records, finished
    if not finished:
        log.info("evaluation stopped after %d of %d episodes", len(records), total)
    return result


def _check_terms(terms: list[Term], signals: list[str], where: str) -> None:
    """Every term must compile (the agent would silently drop one that does not)."""
    for t in terms:
        _compile(t.name, t.expression, signals, where)


# --- the command line ------------------------------------------------------------
@dataclass
class EvalConfig:
    """./lab evaluate: the agent over seeded episodes (see the module docstring)."""

    scene: str = field(
        default="", metadata={"help": "reach, wall, push or kitchen", "required": True}
    )
    checkpoint: str = field(
        default="",
        metadata={"help": "world-model checkpoint folder (may be left out with --oracle)"},
    )
    planner: str = field(default="cem", metadata={"help": "cem, mppi or gd"})
    costs: str = field(
        default="", metadata={"help": "cost set JSON (default: the task term alone)"}
    )
    episodes: int = field(default=50, metadata={"help": "seeded episodes"})
    oracle: bool = field(
        default=False, metadata={"help": "also run the oracle planner on the same seeds"}
    )
    seed: int = field(default=0, metadata={"help": "episode i starts from a seed of (seed, i)"})
    out: str = field(
        default="", metadata={"help": "folder for result.json and the CSVs (default runs/eval/...)"}
    )
    samples: int = field(default=PlannerConfig.samples, metadata={"help": "N sampled plans"})
    horizon: int = field(default=PlannerConfig.horizon, metadata={"help": "H steps ahead"})
    iterations: int = field(default=PlannerConfig.iterations, metadata={"help": "search rounds"})
    fallback: str = field(
        default="least_violating",
        metadata={"help": "when no plan is feasible", "choices": ["least_violating", "stop"]},
    )
    margin: float = field(
        default=0.0,
        metadata={
            "help": "hard terms must hold within this many times the model's measured probe "
            "error (./lab calibrate); 0: on the imagined values as they are"
        },
    )
    delta: float = field(
        default=0.0,
        metadata={
            "help": "hard terms hold over the calibrated bound at this miss rate (./lab "
            "calibrate --episodes); 0: none; replaces --margin"
        },
    )
    margin_steps: int = field(
        default=0,
        metadata={"help": "the margin holds over the first K imagined steps; 0: all"},
    )
    repair: int = field(
        default=PlannerConfig.repair,
        metadata={"help": "infeasible plans repaired onto the hard terms per search round"},
    )
    ray: str = field(
        default="",
        metadata={"help": "fan the episodes out over Ray: 'local' or a cluster's address"},
    )
    oracle_samples: int = field(default=ORACLE_SEARCH.samples, metadata={"help": "oracle's N"})
    oracle_horizon: int = field(default=ORACLE_SEARCH.horizon, metadata={"help": "oracle's H"})
    oracle_iterations: int = field(
        default=ORACLE_SEARCH.iterations, metadata={"help": "oracle's search rounds"}
    )
    guardrails: str = field(
        default="",
        metadata={
            "help": "cost set JSON whose enabled hard terms are checked in reality "
            "(default: those of --costs)"
        },
    )
    options: str = field(
        default="",
        metadata={"help": "reset options as JSON, e.g. '{\"person_near\": true}' (Kitchen)"},
    )
    actor: str = field(
        default="planner",
        metadata={
            "help": "who decides: the planner (System 2), a distilled policy (System 1: "
            "--policy) or both (the policy's proposal joins the planner's search)",
            "choices": ["planner", "policy", "both"],
        },
    )
    policy: str = field(default="", metadata={"help": "policy folder (./lab distill)"})
    high: str = field(
        default="",
        metadata={"help": "a learned high level's folder (./lab highlevel): plan in two levels"},
    )
    high_method: str = field(
        default="policy",
        metadata={
            "help": "how the high level finds the subgoal: its subgoal policy (HIQL), "
            "planning over macro-actions (HWM), or (a diagnostic) the scene's scripted "
            "controller acted out k steps ahead",
            "choices": ["policy", "plan", "scripted"],
        },
    )
    device: str = field(default="auto", metadata={"help": "auto (cuda when present), cpu or cuda"})
    progress: bool = field(default=True, metadata={"help": "show a progress bar"})


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    cfg = parse_config(EvalConfig, argv, "lab evaluate", "Evaluate the agent over seeded episodes.")
    try:
        key = scenes.scene_key(cfg.scene)
        costs = CostSet.load(cfg.costs) if cfg.costs else CostSet()
        options = _options(cfg.options)
        guardrails = CostSet.load(cfg.guardrails).terms if cfg.guardrails else None
        search = replace(
            PlannerConfig(),
            samples=cfg.samples,
            horizon=cfg.horizon,
            iterations=cfg.iterations,
            repair=cfg.repair,
        )
        oracle_search = replace(
            ORACLE_SEARCH,
            samples=cfg.oracle_samples,
            horizon=cfg.oracle_horizon,
            iterations=cfg.oracle_iterations,
        )
        agent_cfg = AgentConfig(
            planner=cfg.planner,
            search=search,
            fallback=cfg.fallback,
            margin=cfg.margin,
            delta=cfg.delta,
            margin_steps=cfg.margin_steps,
            actor=cfg.actor,
            hierarchy=HierarchyConfig(method=cfg.high_method) if cfg.high else None,
        )
        device = choose_device(cfg.device)
    except LabError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    checkpoint = cfg.checkpoint or None
    who = "the oracle" if checkpoint is None else checkpoint + (" and the oracle" * cfg.oracle)
    print(f"evaluating {who} on {key}, {cfg.episodes} episodes, seed {cfg.seed}")

    bar = tqdm(
        total=cfg.episodes * (int(checkpoint is not None) + int(cfg.oracle)),
        unit="episode",
        desc="evaluate",
        disable=None if cfg.progress else True,
        dynamic_ncols=True,
    )
    stop = threading.Event()
    box: dict = {}

    def work():
        try:
            box["result"] = evaluate(
                key,
                checkpoint,
                costs,
                agent_cfg,
                cfg.episodes,
                cfg.seed,
                cfg.oracle,
                progress=lambda done, total: bar.update(done - bar.n),
                stop=stop,
                device=device,
                oracle_search=oracle_search,
                options=options,
                guardrails=guardrails,
                policy=cfg.policy or None,
                ray=cfg.ray or None,
                high=cfg.high or None,
            )
        except LabError as e:
            box["error"] = e

    # The work runs in a thread so that Ctrl-C can stop it and keep what is done.
    thread = threading.Thread(target=work, daemon=True)
    thread.start()
    try:
        while thread.is_alive():
            thread.join(0.2)
    except KeyboardInterrupt:
        stop.set()
        thread.join()
    bar.close()
    if "error" in box:
        print(f"error: {box['error']}", file=sys.stderr)
        return 2
    result: EvalResult = box["result"]
    out = Path(cfg.out or f"runs/eval/{key}-{cfg.planner}-seed{cfg.seed}")
    result.save(out)
    done = len(result.episodes)
    if not result.complete:
        print(f"stopped: {done} episodes finished")
    print(result.table())
    print(f"saved {out}/result.json, episodes.csv, summary.csv")
    return 0 if result.complete else 130


def _options(text: str) -> dict:
    if not text:
        return {}
    try:
        d = json.loads(text)
    except ValueError as e:
        raise LabError(f"--options is not valid JSON ({e})") from e
    if not isinstance(d, dict):
        raise LabError('--options must be a JSON object, e.g. {"person_near": true}')
    return d


if __name__ == "__main__":
    sys.exit(main())
