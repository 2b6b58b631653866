"""An evaluation's result: its episode records and settings, the summary computed
from them (``experiments.metrics``), its JSON file and its CSV tables, headed by the
guard each design ran with."""

from __future__ import annotations

import csv
import io
import json
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from agents.agent import covers_words
from agents.episode import rounded
from common.errors import LabError
from common.files import parse_versioned_json, write_json_atomic
from experiments.metrics import metrics, plan_ms_per_step

FORMAT, VERSION = "lab-evaluation", 1


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
            for name, value in metrics(eps, seed).items():
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
            out[k] = [rounded(math.sqrt(s / c)) if c else None for s, c in zip(sse, n, strict=True)]
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
            w.writerow([_csv_value(e.get(k)) for k in EPISODE_FIELDS] + rmse + by_rule)
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
    over += covers_words(settings.get("margin_signals"))
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
    elif actor == "ppol":  # so does PPO-Lagrangian's, on the raw state
        words = "none: a PPO-Lagrangian policy acts alone, its rule trained in"
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
    "final_dist_goal",  # m, at the end (none in the tasks without a goal)
    "return",  # the task's reward summed over the episode (Bullet-Safety-Gym tasks)
    "cost",  # the task's info["cost"] summed over the episode (Bullet-Safety-Gym tasks)
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
