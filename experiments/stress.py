"""Stress tests: search the situations where a guardrail design breaks its rule in reality.

    ./lab stress --scene kitchen --costs design.json --budget 200 [--method cem|random]
        [--checkpoint pretrained/kitchen-state] [--compare] [--ray local] [--out runs/stress/NAME]

Random episodes say how often a design fails on average; an experimenter
also wants the situations where it fails, and they may be rare. Each scene
declares the reset parameters a search may set (``STRESS_PARAMS``: the start,
the goal, and in Kitchen the person's place, direction and speed) and makes
reset options of them (``stress_options``). An episode is scored by its worst
real excess over a limit: the largest ``value - limit`` of any enabled hard
term over its steps, in reality (negative: how close it came). The search is
the cross-entropy method over the parameters, scaled to [0, 1] (as adaptive
stress testing, Lee et al. 2020, and VerifAI's cross-entropy sampler do):
generations of ``population`` episodes from a Gaussian, refitted to the
best fifth of a generation's size among all episodes so far, so it moves
towards the situations that come closest to breaking the rule and then
break it. ``random`` samples the parameters uniformly: the
baseline, at the same budget. A failure is an episode with an excess above 0.

The result (``result.json``) keeps every episode's seed and reset options,
worst first, with the design and agent settings, so each failure replays on
the Plan page exactly as it happened (same seed, options, cost set, search).
Episodes fan out over Ray with ``--ray`` (``experiments.fanout``), one generation
at a time; the same seeds give the same episodes either way.
"""

from __future__ import annotations

import csv
import io
import json
import math
import sys
import threading
import time
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
from tqdm import tqdm

import scenes
from agents.agent import AgentConfig
from agents.cost import CostSet
from agents.episode import check_design, episode_seed
from agents.planners import PlannerConfig
from common.config import parse_config
from common.errors import LabError
from common.files import write_json_atomic
from experiments.evaluate import evaluate_spec
from experiments.report import design_guard

FORMAT, VERSION = "lab-stress", 1
ELITE_SHARE = 0.2  # CEM: the share of a generation its Gaussian is refitted to
MIN_STD = 0.05  # CEM keeps at least this spread (of the [0, 1] range) on each parameter
MAX_TRIES = 50  # draws per episode before giving up on parameters the scene rejects


@dataclass
class StressResult:
    """Every episode tried, in order; the failures are those with ``excess`` > 0."""

    scene: str
    settings: dict
    episodes: list[dict] = field(default_factory=list)  # seed, options, params, excess, ...
    complete: bool = False

    @property
    def failures(self) -> list[dict]:
        """The episodes that broke the rule, worst first."""
        bad = [e for e in self.episodes if e["excess"] > 0]
        return sorted(bad, key=lambda e: -e["excess"])

    def to_json(self) -> str:
        return json.dumps(
            {
                "format": FORMAT,
                "version": VERSION,
                "scene": self.scene,
                "settings": self.settings,
                "complete": self.complete,
                "failures": len(self.failures),
                "episodes": self.episodes,
            },
            indent=1,
        )

    def failures_csv(self) -> str:
        """The failures, worst first, one row each (excess, episode, seed, steps, violating
        steps, success, the searched parameters, the reset options as JSON), headed by
        ``# key: value`` lines saying what was stressed and how (``pandas.read_csv(...,
        comment="#")`` skips them)."""
        s = self.settings
        costs = s.get("costs") or {}
        terms = "; ".join(
            f"{t['name']} ({t['kind']}{'' if t.get('enabled', True) else ', off'}): "
            f"{t['expression']}" + (f" <= {t['limit']:g}" if t["kind"] == "hard" else "")
            for t in costs.get("terms", [])
        )
        head = {
            "scene": self.scene,
            "checkpoint": s.get("checkpoint"),
            "design": terms,
            "method": s.get("method"),
            "budget": s.get("budget"),
            "population": s.get("population"),
            "seed": s.get("seed"),
            "episodes tried": len(self.episodes),
            "failures": len(self.failures),
            "complete": self.complete,
            **design_guard(s.get("agent") or {}),
        }
        buf = io.StringIO()
        for key, value in head.items():
            buf.write(f"# {key}: {'' if value is None else value}\n")
        params = [p[0] for p in s.get("params", [])]
        w = csv.writer(buf, lineterminator="\n")
        w.writerow(
            ["excess", "episode", "seed", "steps", "violation_steps", "success", *params, "options"]
        )
        for e in self.failures:
            w.writerow(
                [
                    f"{e['excess']:.6g}",
                    e["episode"],
                    e["seed"],
                    e["steps"],
                    e["violation_steps"],
                    int(bool(e["success"])),
                    *(f"{e['params'].get(p, ''):.6g}" for p in params),
                    json.dumps(e["options"], sort_keys=True),
                ]
            )
        return buf.getvalue()

    def save(self, folder: str | Path) -> Path:
        path = Path(folder) / "result.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        write_json_atomic(path, json.loads(self.to_json()))
        return path

    @classmethod
    def load(cls, path: str | Path) -> StressResult:
        try:
            d = json.loads(Path(path).read_text())
            if not isinstance(d, dict) or d.get("format") != FORMAT:
                raise ValueError("not a stress-test result")
            episodes = list(d["episodes"])
            for e in episodes:  # what the pages read of each
                if not (isinstance(e, dict) and isinstance(e["options"], dict)):
                    raise ValueError("an episode is not an object with options")
                float(e["excess"]), int(e["seed"]), int(e["episode"])
            return cls(d["scene"], dict(d["settings"]), episodes, bool(d["complete"]))
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as e:
            raise LabError(f"{path} is not a readable stress-test result ({e})") from e


class Search:
    """The parameter search: ``propose(n)`` a generation, ``tell(scores)`` its scores."""

    def __init__(self, method: str, dims: int, seed: int) -> None:
        if method not in ("cem", "random"):
            raise LabError("the search method must be 'cem' or 'random'")
        self.method = method
        self.rng = np.random.default_rng(seed)
        self.mean = np.full(dims, 0.5)
        self.std = np.full(dims, 0.5)
        self.seen_u, self.seen_s = [], []

    def propose(self, n: int) -> np.ndarray:
        """(n, dims) in [0, 1]."""
        if self.method == "random":
            return self.rng.uniform(size=(n, len(self.mean)))
        draw = self.mean + self.std * self.rng.standard_normal((n, len(self.mean)))
        return np.clip(draw, 0.0, 1.0)

    def tell(self, u: np.ndarray, scores: np.ndarray) -> None:
        """The generation ``u`` (n, dims) scored (n,), higher is worse for the design. The
        Gaussian is refitted to the best of every episode so far (an elite archive), not of
        this generation alone: on Kitchen's knife rule that found 115 failures in 200
        episodes against 70 (uniform sampling: 35)."""
        if self.method != "cem":
            return
        self.seen_u.append(u)
        self.seen_s.append(scores)
        k = max(2, math.ceil(ELITE_SHARE * len(scores)))
        u, scores = np.concatenate(self.seen_u), np.concatenate(self.seen_s)  # all so far
        elite = u[np.argsort(-scores)[:k]]
        self.mean = elite.mean(axis=0)
        self.std = np.maximum(elite.std(axis=0), MIN_STD)


def score(record: dict) -> float:
    """How badly an episode went for the design, for the search: its real violating steps
    (a failure that lasts marks a region where the rule breaks reliably), then its worst
    excess over the limit (the tie-break, and all there is for episodes that kept it)."""
    return record["violation_steps"] + record["worst_excess"]


def _values(cls, u: np.ndarray) -> dict[str, float]:
    """[0, 1] coordinates (dims,) -> the scene's parameter values."""
    return {
        name: float(lo + (hi - lo) * x)
        for (name, lo, hi), x in zip(cls.STRESS_PARAMS, u, strict=True)
    }


def stress(
    scene: str,
    checkpoint: str | Path,
    costs: CostSet,
    agent_cfg: AgentConfig,
    budget: int,
    method: str = "cem",
    population: int = 20,
    seed: int = 0,
    progress: Callable[[StressResult], None] | None = None,
    stop: threading.Event | None = None,
    device=None,
    ray: str | None = None,
    turn: Callable = nullcontext,
) -> StressResult:
    """Search ``budget`` episodes for the design's failures (see the module docstring).

    ``progress(result)`` after every episode (over Ray: every chunk of episodes), with
    the episodes so far (the app shows the failures as they are found); ``stop`` ends it
    within the running episode, keeping the finished episodes. ``turn()``: a context each
    step runs in (the app)."""
    key = scenes.scene_key(scene)
    cls = scenes.scene_class(key)
    if not cls.STRESS_PARAMS:
        raise LabError(f"{key} declares no stress-test parameters")
    if budget < 1 or population < 2:
        raise LabError("the budget must be at least 1 episode and a generation 2 or more")
    if not any(t.kind == "hard" and t.enabled for t in costs.terms):
        raise LabError("the design has no enabled hard term: there is no rule to break")
    check_design(key, checkpoint, costs, agent_cfg, device or "cpu")
    check = cls(pixels=False)  # rejects parameters the scene cannot start from
    search = Search(method, len(cls.STRESS_PARAMS), seed)
    result = StressResult(
        key,
        {
            "checkpoint": str(checkpoint),
            "costs": json.loads(costs.to_json()),
            "agent": asdict(agent_cfg),
            "budget": budget,
            "method": method,
            "population": population,
            "seed": seed,
            "params": [list(p) for p in cls.STRESS_PARAMS],
        },
    )
    try:
        while len(result.episodes) < budget:
            if stop is not None and stop.is_set():
                return result
            n = min(population, budget - len(result.episodes))
            first = len(result.episodes)
            u, opts = _generation(check, cls, search, n, seed, first)
            per = {first + i: o for i, o in enumerate(opts)}

            def found(records, u=u, opts=opts, first=first) -> None:
                # each episode is shown as it ends, not a generation at a time: a
                # generation as large as the budget showed 0 failures until the end
                for r in records:
                    i = r["episode"] - first
                    result.episodes.append(_entry(cls, r, u[i], opts[i]))
                if progress is not None:
                    progress(result)

            records, finished = evaluate_spec(
                key,
                checkpoint,
                costs,
                agent_cfg,
                sorted(per),
                seed,
                per,
                stop,
                device,
                ray,
                turn,
                found,
            )
            result.episodes[first:] = sorted(result.episodes[first:], key=lambda e: e["episode"])
            by_episode = {r["episode"]: r for r in records}
            scores = [score(by_episode[first + i]) for i in range(n) if first + i in by_episode]
            if not finished:
                return result
            search.tell(u, np.asarray(scores))
        result.complete = True
        return result
    finally:
        check.close()


def _entry(cls, record: dict, u: np.ndarray, options: dict) -> dict:
    """A stress-test episode from its evaluation record: what replays it, and how it went."""
    return {
        "episode": record["episode"],
        "seed": record["seed"],
        "options": options,
        "params": _values(cls, u),
        "excess": record["worst_excess"],
        "violation_steps": record["violation_steps"],
        "steps": record["steps"],
        "success": record["success"],
    }


def _generation(check, cls, search: Search, n: int, seed: int, first: int):
    """n parameter points and their reset options, each one the scene accepts (a point it
    rejects, e.g. a start inside a wall, is drawn again)."""
    u = search.propose(n)
    opts = []
    for i in range(n):
        for _ in range(MAX_TRIES):
            o = cls.stress_options(_values(cls, u[i]))
            try:
                check.reset(seed=episode_seed(seed, first + i), options={**o, "goal_obs": False})
                break
            except LabError:
                u[i] = np.clip(u[i] + 0.1 * search.rng.standard_normal(len(u[i])), 0, 1)
        else:
            raise LabError(f"{cls.__name__} rejected {MAX_TRIES} draws of stress parameters")
        opts.append(o)
    return u, opts


# --- the command line ------------------------------------------------------------
@dataclass
class StressConfig:
    """./lab stress: search the episodes where a guardrail design breaks its rule."""

    scene: str = field(
        default="", metadata={"help": "reach, wall, push or kitchen", "required": True}
    )
    costs: str = field(
        default="",
        metadata={"help": "the design: a cost set JSON with a hard term", "required": True},
    )
    checkpoint: str = field(default="", metadata={"help": "default pretrained/SCENE-state"})
    budget: int = field(default=200, metadata={"help": "episodes the search may run"})
    method: str = field(
        default="cem", metadata={"help": "cem or random", "choices": ["cem", "random"]}
    )
    population: int = field(default=20, metadata={"help": "episodes per CEM generation"})
    compare: bool = field(default=False, metadata={"help": "also run the other method"})
    seed: int = field(default=0, metadata={"help": "seed of the search and the episodes"})
    delta: float = field(default=0.0, metadata={"help": "calibrated margin's miss rate"})
    margin: float = field(default=0.0, metadata={"help": "margin, x the measured RMSE"})
    margin_steps: int = field(
        default=0, metadata={"help": "the margin holds over the first K imagined steps; 0: all"}
    )
    ray: str = field(default="", metadata={"help": "'local' or a Ray cluster's address"})
    out: str = field(default="", metadata={"help": "folder (default runs/stress/SCENE-METHOD)"})


def main(argv: list[str] | None = None) -> int:
    cfg = parse_config(StressConfig, argv, "lab stress", __doc__.split("\n\n")[0])
    try:
        key = scenes.scene_key(cfg.scene)
        costs = CostSet.load(cfg.costs)
        checkpoint = cfg.checkpoint or str(
            Path(__file__).parent.parent / "pretrained" / f"{key}-state"
        )
        agent = AgentConfig(
            search=PlannerConfig(),
            margin=cfg.margin,
            delta=cfg.delta,
            margin_steps=cfg.margin_steps,
        )
        methods = [cfg.method] + (
            [m for m in ("cem", "random") if m != cfg.method] if cfg.compare else []
        )
        for method in methods:
            bar = tqdm(total=cfg.budget, unit="episode", desc=f"stress {method}")
            t0 = time.perf_counter()

            def shown(r, bar=bar):
                bar.update(len(r.episodes) - bar.n)
                bar.set_postfix(failures=len(r.failures))

            result = stress(
                key,
                checkpoint,
                costs,
                agent,
                cfg.budget,
                method,
                cfg.population,
                cfg.seed,
                progress=shown,
                ray=cfg.ray or None,
            )
            bar.close()
            out = Path(cfg.out or f"runs/stress/{key}-{method}")
            if len(methods) > 1 and cfg.out:
                out = out / method
            result.save(out)
            print(
                f"{method}: {len(result.failures)} of {len(result.episodes)} episodes broke "
                f"the rule ({time.perf_counter() - t0:.0f} s); saved {out}/result.json"
            )
            for e in result.failures[:5]:
                print(f"  excess {e['excess']:.3f}  seed {e['seed']}  options {e['options']}")
    except LabError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
