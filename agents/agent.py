"""The receding-horizon agent: observe, encode, plan, act the first action, repeat.

Every step it records what the lab shows side by side: the real frame and
signals, the chosen plan's imagined latents, their probed signals and
decoded frames, and the whole plan record (samples, costs, elites,
feasibility). The next plan starts from the previous one shifted by a step
(warm start). When no sampled plan keeps the hard guardrails, the fallback
setting decides: act on the least violating plan, or stop (a zero action).

Memory: a pixel model that sees F consecutive frames (``model.frames``) is
given the last F - 1 real frames of the episode with the current one (at
the start of an episode, copies of the first: the scenes start at rest),
and the action the agent took last (zero at the start), which a model
trained with ``last_action`` reads as an efference copy.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace

import numpy as np
import torch

from agents.cost import Cost, CostSet
from agents.deciders import (
    ACTORS,
    Both,
    CostPair,
    Decider,
    Planner,
    PolicyDecider,
    StateDecider,
    TwoLevels,
    clock,
    made_by,
)
from agents.expressions import ExpressionError
from agents.hierarchy import HierarchyConfig, HighPlanner
from agents.planners import PLANNERS, PlannerConfig, PlanRecord, shift
from common.errors import LabError
from scenes.base import LabScene
from worldmodels.model import surprise as surprise_of

STUCK_STEPS = 15  # steps without progress, with a rule blocking cheaper plans, before "stuck"
STUCK_PROGRESS = 0.02  # the least the distance to the goal must fall over them (task units)
MAX_MARGIN = 5.0  # times the measured error (a larger one is more likely a typing slip)


@dataclass
class AgentConfig:
    """How the agent plans and what it does when no plan is safe."""

    planner: str = "cem"  # cem, mppi or gd
    search: PlannerConfig = field(default_factory=PlannerConfig)
    fallback: str = "least_violating"  # or "stop": a zero action when nothing is feasible
    # Hard guardrails must hold within this many times the model's measured probe error
    # (its held-out RMSE per signal and imagined step, ``model.probe_rmse``): 0 plans on
    # the imagined values as they are; 1 leaves one RMSE of room. A simulator (the
    # oracle) is exact and takes no margin.
    margin: float = 0.0
    # Or a calibrated bound (conformal): hard guardrails must hold over the split-conformal
    # bound on |imagined - real| at miss rate ``delta`` (per signal and imagined step,
    # measured on the agent's own closed-loop episodes by ./lab calibrate --episodes;
    # ``model.probe_conformal``). 0: none; it takes the place of ``margin`` when set.
    delta: float = 0.0
    # Over how many imagined steps a margin (either kind) holds: 0, all of them; K, the
    # first K, the later ones on the imagined values. Only the first step is acted on
    # before the agent plans again, so its real safety rests on the step-1 bound; bounds
    # that grow with the horizon can otherwise rule out every plan that enters the zone a
    # rule guards (it could never be sure it stays safe 16 steps on): the agent freezes.
    margin_steps: int = 0
    # Which signals a margin (either kind) covers: () every one; ("hand_x", ...) those
    # only, the rest planned on as imagined (a margin for the robot's own error, say, and
    # none for what the world model is being tested on: experiments.lessons.memory)
    margin_signals: tuple[str, ...] = ()
    decode: bool = True  # decode the chosen plan's imagined frames (display)
    show: tuple[str, ...] = ()  # signals to probe on every final sample (display)
    # Who decides (agents.deciders): "planner" (System 2: search over the horizon),
    # "policy" (System 1: one pass of a distilled policy, agents.policy), "both" (the
    # policy's proposal as a sample of the planner's search: amortised planning), or
    # "ppol" (a policy trained by PPO-Lagrangian on the raw state, agents.statepolicy).
    actor: str = "planner"
    shadow: bool = False  # with the policy acting, also plan (display: what System 2 would do)
    # Two levels (agents.hierarchy): a learned high level (worldmodels.highlevel) hands
    # the planner a subgoal latent k steps ahead (its subgoal policy's proposal, or the
    # first latent of its plan over macro-actions); None plans flat, on the goal itself.
    hierarchy: HierarchyConfig | None = None


@dataclass
class Thought:
    """A plan from the current state, not yet acted on."""

    frame: np.ndarray | None  # (64, 64, 3) the real observation
    signals: dict[str, float]  # the real signals
    plan: PlanRecord
    imagined: dict[str, np.ndarray]  # chosen plan's probed signals, name -> (H,)
    imagined_frames: np.ndarray | None  # (H, 64, 64, 3) decoded
    action: np.ndarray  # (A,) what acting on it would do
    stopped: bool  # no feasible plan and the fallback is "stop"
    latent: torch.Tensor | None = None  # (D,) the current latent (a belief, with memory)
    surprise: float | None = None  # how far the latent is from what the model expected


@dataclass
class StepRecord:
    """One step of the loop, for the app and for evaluation."""

    t: int
    frame: np.ndarray | None  # (64, 64, 3) the real observation before acting
    signals: dict[str, float]  # the real signals before acting
    plan: PlanRecord
    imagined: dict[str, np.ndarray]  # chosen plan's probed signals, name -> (H,)
    imagined_frames: np.ndarray | None  # (H, 64, 64, 3) decoded
    action: np.ndarray  # (A,) what was done
    stopped: bool  # the fallback stopped the agent this step
    next_signals: dict[str, float]  # the real signals after acting
    is_success: bool
    done: bool
    error: str = ""
    surprise: float | None = None  # see Thought


class Agent:
    """Plans with ``model`` in ``scene`` (an unwrapped lab scene) under ``costs``."""

    def __init__(
        self,
        model,
        scene: LabScene,
        costs: CostSet,
        cfg: AgentConfig,
        seed: int = 0,
        policy=None,
        high=None,
    ) -> None:
        if cfg.actor not in ACTORS:
            raise LabError(f"actor must be one of {', '.join(ACTORS)}, not {cfg.actor!r}")
        if cfg.actor != "planner" and policy is None:
            raise LabError(f"actor {cfg.actor!r} needs a policy: {made_by(cfg.actor)} makes one")
        if cfg.actor == "ppol" and (cfg.fallback == "stop" or cfg.margin or cfg.delta):
            raise LabError(
                "a PPO-Lagrangian policy acts alone, its rule trained in: no margin and no "
                "stop on an unsafe plan (its imagined plan is its action held, not its own)"
            )
        self.policy = policy
        if cfg.planner not in PLANNERS:
            raise LabError(f"unknown planner {cfg.planner!r}; choose {', '.join(PLANNERS)}")
        if cfg.search.repair_mode not in ("scale", "gradient"):
            raise LabError("repair mode must be 'scale' or 'gradient'")
        if cfg.fallback not in ("least_violating", "stop"):
            raise LabError("fallback must be 'least_violating' or 'stop'")
        self.model, self.scene, self.cfg = model, scene, cfg
        self.device = model.device
        signals = list(model.signal_names)
        task = list(scene.TASK_SIGNALS)
        missing = [k for k in task if k not in signals]
        if costs.task == "signal" and missing:
            raise LabError(f"the model has no probe for {missing}: use the latent task term")
        if (costs.task == "reward") != scene.FOREIGN:
            raise LabError(
                "the reward task term is for the tasks without a goal (Bullet-Safety-Gym)"
                if costs.task == "reward"
                else f"{type(scene).__name__} has no goal: its task term is 'reward'"
            )
        if costs.task == "reward" and "reward" not in signals:
            raise LabError("the model has no probe for 'reward': train it on this task's data")
        distance = getattr(model, "goal_distance", None)  # the latent task term's
        # gradients through the cost: the gradient planner, and the gradient repair
        grads = cfg.planner == "gd" or (
            cfg.search.repair > 0 and cfg.search.repair_mode == "gradient"
        )
        self.costs = CostPair.build(
            lambda smooth: Cost(costs, signals, task, smooth=smooth, distance=distance), grads
        )
        self.cost = self.costs.plain  # what the plan is judged on, and the page shows
        self.high: HighPlanner | None = None
        search = cfg.search
        if cfg.hierarchy is not None:
            if high is None:
                raise LabError("a hierarchy needs a high level: ./lab highlevel makes one")
            if cfg.actor != "planner":
                raise LabError("a hierarchy plans at both levels: the actor must be the planner")
            self.high = HighPlanner(high, model, costs, task, cfg.hierarchy, scene)
            self.decider: Decider = TwoLevels(self, self.high, costs, grads)
            searched = self.decider.costs
            if cfg.hierarchy.horizon:
                search = replace(search, horizon=cfg.hierarchy.horizon)  # to the subgoal
        else:
            self.decider = {
                "planner": lambda: Planner(self),
                "policy": lambda: PolicyDecider(self, cfg.shadow),
                "both": lambda: Both(self),
                "ppol": lambda: StateDecider(self),
            }[cfg.actor]()
            searched = self.costs
        self.planner = PLANNERS[cfg.planner](search, scene.ACTION_DIM, searched.smooth)
        margins = margins_for(model, cfg, self.device)
        self.costs.set_margins(margins)
        self.decider.set_margins(margins)
        # on the CPU whatever the model's device: the same seed gives the same samples
        # on a GPU server, in a Ray worker (a CPU core) and here (Planner.perturb)
        self.generator = torch.Generator().manual_seed(seed)
        self.warm: torch.Tensor | None = None  # the last plan shifted a step
        self.kept: torch.Tensor | None = None  # its kept elites shifted (PlannerConfig.keep)
        self.goal = torch.zeros(len(task), device=self.device)
        self.goal_latent: torch.Tensor | None = None
        self.t = 0
        self.done = True
        self.frames = getattr(model, "frames", 1)  # the oracle has no frames
        self.memory: list[np.ndarray] = []  # earlier real frames of this episode, oldest first
        self.last_action = np.zeros(scene.ACTION_DIM, np.float32)  # what it did last (or rest)
        # the latent of the step before (a model with memory carries it: its belief)
        self.latent: torch.Tensor | None = None

    def set_costs(self, costs: CostSet) -> dict[str, ExpressionError]:
        """Edit the cost while running: the next plan uses it; bad terms keep their last good
        version (the returned errors say which, with message and column)."""
        errors = self.costs.update(costs)
        self.decider.update(costs)
        return errors

    def reset(self, seed: int | None = None, options: dict | None = None) -> dict:
        _, info = self.scene.reset(seed=seed, options=options)
        self._sync()
        self.goal = torch.as_tensor(self.scene.goal, dtype=torch.float32, device=self.device)
        with torch.no_grad():
            self.goal_latent = self.model.encode(info["goal_obs"])[0]
        self.warm, self.kept, self.t, self.done = None, None, 0, False
        self.decider.reset()
        self.memory = []
        self.last_action = np.zeros(self.scene.ACTION_DIM, np.float32)
        self.latent = None
        return info

    def _sync(self) -> None:
        """A model that simulates (the oracle) copies the real scene's state first."""
        sync = getattr(self.model, "sync", None)
        if sync is not None:
            sync(self.scene)

    @torch.no_grad()
    def think(self) -> Thought:
        """Plan from the current real state without acting (the app previews a cost edit
        this way); ``step`` acts on the thought's first action."""
        if self.done:
            raise LabError("the episode is over: call reset()")
        self._sync()
        obs = self.scene.observation
        s0, surprise = self._perceive(obs)
        plan = self.decider.decide(s0)
        plan.info["blocked_by"] = blocking_term(plan, self.cost)
        stop = plan.none_feasible and self.cfg.fallback == "stop"
        action = (
            np.zeros(self.scene.ACTION_DIM, np.float32)
            if stop
            else plan.actions[0].cpu().numpy().astype(np.float32)
        )
        # Every probe on the chosen plan (the planner probed only what the cost reads).
        imagined = {k: v.cpu().numpy() for k, v in self.model.probe(plan.latents).items()}
        frames = None
        if self.cfg.decode and self.model.decoder is not None:
            frames = self.model.decode(plan.latents).cpu().numpy()  # (H, 64, 64, 3)
        return Thought(
            obs.get("pixels"),
            self.scene.signals,
            plan,
            imagined,
            frames,
            action,
            stop,
            latent=s0,
            surprise=surprise,
        )

    def _perceive(self, obs: dict) -> tuple[torch.Tensor, float | None]:
        """The current latent (D,) and the model's surprise at it: the RMS gap between it
        and the predictor's step from the last latent on the last action (for a model
        with memory, the belief against its prior: ``worldmodels.memory``; without, the
        plain prediction error, V-JEPA's measure). None at an episode's first step, and
        for a model that does not predict (the oracle)."""
        seen = self._with_memory(obs)
        if self.latent is None or not hasattr(self.model, "observe"):
            return self.model.encode(seen)[0], None  # (D,)
        s, prior = self.model.observe({**seen, "belief": self.latent[None]})
        return s[0], float(surprise_of(s[0], prior[0]))

    def search(
        self,
        s0: torch.Tensor,
        warm: torch.Tensor | None,
        cost: Cost | None = None,
        goal_latent: torch.Tensor | None = None,
        extra: torch.Tensor | None = None,
        kept: torch.Tensor | None = None,
    ) -> PlanRecord:
        """The planner's search from ``s0``, on the agent's cost and goal unless given
        (the low level of two levels plans to its subgoal); ``kept``: the last plan's
        elites, shifted, join the first round."""
        return self.planner.plan(
            self.model,
            cost or self.cost,
            s0,
            self.goal,
            self.goal_latent if goal_latent is None else goal_latent,
            self.generator,
            warm,
            show=self.cfg.show,
            extra=extra,
            kept=kept,
        )

    def clock(self) -> float:
        """Seconds, after the device has finished what it was given (CUDA runs ahead)."""
        return clock(self.device)

    def _with_memory(self, obs: dict) -> dict:
        """The observation as the model wants it, with the last action; with F > 1
        frames, the current frame after the last F - 1 remembered ones, (1, F, 64, 64, 3)."""
        obs = {**obs, "last_action": self.last_action}
        if self.frames == 1:
            return obs
        past = self.memory[-(self.frames - 1) :]
        past = [past[0] if past else obs["pixels"]] * (self.frames - 1 - len(past)) + past
        return {**obs, "pixels": np.stack([*past, obs["pixels"]])[None]}

    @torch.no_grad()
    def step(self, thought: Thought | None = None) -> StepRecord:
        """Plan (or take ``thought``, made by ``think`` since the last step) and act."""
        thought = thought or self.think()
        self.decider.acted(thought.plan)
        self.warm = shift(thought.plan.actions)
        self.kept = None if thought.plan.kept is None else shift(thought.plan.kept)
        if self.frames > 1:
            self.memory = [*self.memory, thought.frame][-(self.frames - 1) :]
        self.last_action = np.asarray(thought.action, np.float32)
        self.latent = thought.latent
        _, _, terminated, _, info = self.scene.step(thought.action)
        self.t += 1
        truncated = self.t >= self.scene.MAX_EPISODE_STEPS
        self.done = bool(terminated or truncated)
        return StepRecord(
            t=self.t - 1,
            frame=thought.frame,
            signals=thought.signals,
            plan=thought.plan,
            imagined=thought.imagined,
            imagined_frames=thought.imagined_frames,
            action=thought.action,
            stopped=thought.stopped,
            next_signals=info["signals"],
            is_success=bool(info["is_success"]),
            done=self.done,
            error=info.get("error", ""),
            surprise=thought.surprise,
        )


def margins_for(model, cfg: AgentConfig, device) -> dict[str, torch.Tensor] | None:
    """How far each imagined signal may be from the real one, per imagined step, for the
    hard terms to hold over: the calibrated bound at ``cfg.delta``, or ``cfg.margin`` x the
    measured probe RMSE; None for neither, or a model that is exact (the simulator)."""
    if not (math.isfinite(cfg.margin) and 0 <= cfg.margin <= MAX_MARGIN):
        raise LabError(f"margin must be a number from 0 to {MAX_MARGIN} (times the error)")
    if getattr(model, "exact", False) or not (cfg.delta or cfg.margin):
        return None  # the simulator needs none, or none was asked for
    if cfg.delta:
        bounds = getattr(model, "probe_conformal", None) or {}
        if not bounds:
            raise LabError(
                "a calibrated bound needs the model's closed-loop errors, and this checkpoint "
                "has none: run ./lab calibrate --checkpoint FOLDER --episodes 60"
            )
        table = bounds.get(float(cfg.delta))
        have = ", ".join(f"{d:g}" for d in sorted(bounds) if finite_bounds(bounds[d]))
        if table is None:
            raise LabError(f"miss rate delta {cfg.delta:g} is not calibrated; choose {have}")
        if not finite_bounds(table):
            need = math.ceil((1 - cfg.delta) / cfg.delta)
            raise LabError(
                f"miss rate delta {cfg.delta:g} needs at least {need} calibration episodes "
                f"(./lab calibrate --episodes {need}); with these, choose {have}"
            )
    else:
        rmse = getattr(model, "probe_rmse", None)
        if not rmse:
            raise LabError(
                "a margin needs the model's measured probe error, and this checkpoint has "
                "none: run ./lab calibrate --checkpoint FOLDER --data DATASET"
            )
        table = {k: [cfg.margin * x for x in v] for k, v in rmse.items()}
    if cfg.margin_steps < 0:
        raise LabError("margin steps must be 0 (every imagined step) or more")
    unknown = [k for k in cfg.margin_signals if k not in table]
    if unknown:
        raise LabError(
            f"a margin for {', '.join(unknown)}: this model has no such signal; "
            f"it has {', '.join(table)}"
        )
    covered = cfg.margin_signals or tuple(table)
    return {
        k: torch.tensor(_first_steps(list(v), cfg.margin_steps), dtype=torch.float32, device=device)
        for k, v in table.items()
        if k in covered
    }


def covers_words(signals) -> str:
    """`` on a, b only`` for a margin on ``signals`` alone (``AgentConfig.margin_signals``);
    "" for one on every signal (``()``)."""
    return f" on {', '.join(signals)} only" if signals else ""


def finite_bounds(table: dict[str, list[float]]) -> bool:
    """Whether a calibrated table gives a finite bound everywhere (too few calibration
    episodes for its delta leave +inf: no plan could keep a hard term over it)."""
    return all(math.isfinite(x) for v in table.values() for x in v)


def _first_steps(curve: list[float], k: int) -> list[float]:
    """A margin curve over the first ``k`` steps only (0: all), then 0 (the cost reuses a
    curve's last value past its end)."""
    if k <= 0:
        return curve
    curve = curve + curve[-1:] * max(k - len(curve), 0)
    return [*curve[:k], 0.0]


def blocking_term(plan: PlanRecord, cost: Cost) -> str | None:
    """The enabled hard term that rules out the cheapest plan searched (the one the agent
    would take without its rules), when the plan taken is dearer: what holds the agent
    back. None when the cheapest plan is the one taken, or keeps every rule."""
    cheapest = int(plan.total.argmin())
    if cheapest == plan.chosen or bool(plan.feasible[cheapest]):
        return None
    worst, name = 0.0, None
    for term in cost.costs.terms:
        if term.kind == "hard" and term.enabled and term.name in plan.terms:
            excess = float(plan.terms[term.name][cheapest].sum())
            if excess > worst:
                worst, name = excess, term.name
    return name


def stuck(history: list[tuple[float, str | None]]) -> str | None:
    """Whether the agent is stuck, from its steps' (distance to the goal, blocking term):
    over the last ``STUCK_STEPS`` the distance fell by less than ``STUCK_PROGRESS`` while a
    rule blocked the cheaper plans on most of them. Returns that term's name, or None."""
    if len(history) < STUCK_STEPS:
        return None
    last = history[-STUCK_STEPS:]
    if last[0][0] - min(d for d, _ in last) >= STUCK_PROGRESS:
        return None
    blocked = [b for _, b in last if b]
    if len(blocked) * 2 < STUCK_STEPS:
        return None
    return max(set(blocked), key=blocked.count)
