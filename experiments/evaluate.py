"""Evaluation: the agent over seeded episodes, and what happened in reality.

    ./lab evaluate --scene kitchen --checkpoint pretrained/kitchen-state --planner cem \\
        --costs costs.json --episodes 50 [--oracle] [--seed 0] [--out runs/eval/NAME]

Episode ``i`` starts from a seed derived from ``(seed, i)`` alone (a stream
apart from data collection's), so the world model and the oracle meet the
same starts and goals, and an interrupted run's episodes are the first ones of
a complete run. Per episode the agent replans every step (receding horizon);
after each real step every enabled hard term of the cost set is evaluated on
the real signals. The figures (docs/design.md, Contracts: Evaluation), per agent:

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

import json
import logging
import sys
import threading
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import torch
from tqdm import tqdm

import scenes
from agents.agent import AgentConfig
from agents.cost import CostSet, Term, term_names
from agents.deciders import ACTORS
from agents.episode import (
    EpisodeSpec,
    HardTerms,
    check_design,
    check_terms,
    oracle_config,
    run_episodes,
)
from agents.hierarchy import HierarchyConfig
from agents.oracle import ORACLE_SEARCH
from agents.planners import PLANNERS, PlannerConfig
from common.config import parse_config
from common.device import choose_device
from common.errors import LabError
from experiments import fanout
from experiments.report import EvalResult

log = logging.getLogger(__name__)


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
        return fanout.run(spec, list(indices), ray, None, stop, found=found)
    return run_episodes(spec, list(indices), None, stop, turn, found=found)


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
    "policy" or "both" (a PPO-Lagrangian policy's, ``./lab ppol``, for "ppol");
    ``high``: a high level's folder, for ``agent_cfg.hierarchy``.
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
        settings["margin_signals"] = list(agent_cfg.margin_signals)
    else:  # the oracle alone: the terms against the scene's signals
        check_terms(costs.terms, term_names(scene_signals, task_signals), "the scene")
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
        ocfg = oracle_config(spec)
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
        records, finished = fanout.run(spec, range(episodes), ray, tick, stop, errors)
    else:
        records, finished = run_episodes(spec, range(episodes), tick, stop, turn, errors)
    result.episodes, result.complete = records, finished
    if not finished:
        log.info("evaluation stopped after %d of %d episodes", len(records), total)
    return result


# --- the command line ------------------------------------------------------------
@dataclass
class EvalConfig:
    """./lab evaluate: the agent over seeded episodes (see the module docstring)."""

    scene: str = field(
        default="",
        metadata={
            "help": "reach, wall, push, kitchen or a Bullet-Safety-Gym task (ballcircle, ...)",
            "required": True,
        },
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
    margin_signals: tuple[str, ...] = field(
        default=(), metadata={"help": "the signals the margin covers (default: every one)"}
    )
    repair: int = field(
        default=PlannerConfig.repair,
        metadata={"help": "infeasible plans repaired onto the hard terms per search round"},
    )
    noise_beta: float = field(
        default=PlannerConfig.noise_beta,
        metadata={"help": "iCEM: noise power falls as 1/f^beta along the horizon (0 white)"},
    )
    keep: float = field(
        default=PlannerConfig.keep,
        metadata={"help": "iCEM: fraction of elites kept for the next round and plan"},
    )
    decay: float = field(
        default=PlannerConfig.decay,
        metadata={"help": "iCEM: round i draws N / decay^i samples"},
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
            "--policy), both (the policy's proposal joins the planner's search) or ppol "
            "(a PPO-Lagrangian policy on the raw state: --policy from ./lab ppol)",
            "choices": list(ACTORS),
        },
    )
    policy: str = field(
        default="", metadata={"help": "policy folder (./lab distill, or ./lab ppol)"}
    )
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
            noise_beta=cfg.noise_beta,
            keep=cfg.keep,
            decay=cfg.decay,
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
            margin_signals=cfg.margin_signals,
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
    raise SystemExit(main())
