"""An agent planning in a scene: the Plan page's compute, wherever it is placed.

A ``PlanSession`` owns a scene, its world model and the agent, and answers the
page's commands (``step``, ``run``, ``pause``, ``reset``, new costs, new search
settings) with an ``Update``: what to draw (``View``, numpy only) and the steps
taken since the last update. It never calls ``st.*`` and holds no thread: the
run that owns it (``app.planrun.PlanRun``) calls it in its own thread, in a
process of its own or in a Ray actor (``app.hosts``), and PyBullet's client
stays in the thread or process that made it (docs/pitfalls.md). After every
step the agent plans the next one at once (``think``), so the page always
shows the plan it is about to act on; a cost edit while paused re-plans from the
same state, so the effect of the edit is visible before anything moves. The next
``step`` acts on exactly the plan shown.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

import numpy as np
import torch

import scenes
from agents.agent import Agent, AgentConfig, Thought, stuck
from agents.build import build_agent
from agents.cost import CostSet, Term, real_values
from agents.hierarchy import HierarchyConfig
from agents.planners import PlannerConfig
from common.errors import LabError
from worldmodels import compiled
from worldmodels.checkpoint import load_checkpoint

HISTORY_FRAME = 128  # px of the frames kept for the episode video
SHOWN_MAX = 6  # signals plotted over time (150 px a panel)
GOAL_GRID = 0.05  # m between the points a click on the plane picks a goal by


@dataclass
class PlanSettings:
    """What the page lets a person choose for the agent."""

    scene: str = "reach"
    checkpoint: str = ""
    planner: str = "cem"
    samples: int = PlannerConfig.samples
    horizon: int = 16
    iterations: int = 3
    fallback: str = "least_violating"
    seed: int = 0
    margin: float = 0.0  # hard terms hold within margin x the model's measured error
    delta: float = 0.0  # or over the calibrated bound at this miss rate (experiments.calibrate)
    margin_steps: int = 0  # the margin holds over the first K imagined steps (0: all)
    margin_signals: tuple[str, ...] = ()  # ... on these signals (): every one
    repair: int = PlannerConfig.repair  # infeasible plans repaired per search round
    noise_beta: float = PlannerConfig.noise_beta  # iCEM: the noise's colour (0 white)
    keep: float = PlannerConfig.keep  # iCEM: share of elites kept for the next round and plan
    decay: float = PlannerConfig.decay  # iCEM: round i samples N / decay^i
    actor: str = "planner"  # planner (System 2), policy (System 1) or both
    policy: str = ""  # a distilled policy's folder, for the policy and both
    high: str = ""  # a learned high level's folder: plan in two levels (agents.hierarchy)
    speed: float = 0.0  # seconds to wait between steps when running (0: as fast as it plans)
    options: dict = field(default_factory=dict)  # scene reset options, e.g. person_near


@dataclass
class View:
    """One consistent picture of the run, for drawing (numpy only)."""

    version: int = 0
    cost_version: int = 0
    t: int = 0
    status: str = "starting"
    message: str = ""
    real: np.ndarray | None = None  # (256, 256, 3) the scene now
    signals: dict[str, float] = field(default_factory=dict)
    goal: np.ndarray | None = None
    done: bool = False
    success: bool = False
    margin: float = 0.0  # the agent's guardrail margin (x the model's measured error)
    delta: float = 0.0  # or the calibrated bound's miss rate
    margin_steps: int = 0  # over the first K imagined steps (0: all)
    margin_signals: tuple[str, ...] = ()  # on these signals (): every one
    # the plan about to be acted on (None when the episode is over)
    plan_ms: float = 0.0  # the decision: a plan, or one pass of the policy
    actor: str = "planner"
    imagination: str = ""  # compiled or not (worldmodels.compiled.label)
    goal_steps: np.ndarray | None = None  # (H,) steps to go along the plan (distance head)
    goal_points: np.ndarray | None = None  # (P, 2) where a click may put the goal
    policy_xy: np.ndarray | None = None  # (H, 2) the policy's imagined path (it acts on it)
    high_xy: np.ndarray | None = None  # (L, 2) the high level's plan, k steps a point
    high_frames: np.ndarray | None = None  # (L, 64, 64, 3) it, decoded; the first: the subgoal
    high_k: int = 0  # primitive steps per macro-action
    samples_xy: np.ndarray | None = None  # (N, H, 2) sampled trajectories in the plot plane
    total: np.ndarray | None = None  # (N,)
    feasible: np.ndarray | None = None  # (N,) bool
    elites: np.ndarray | None = None  # (K,)
    chosen: int = 0
    none_feasible: bool = False
    stopped: bool = False
    terms: dict[str, np.ndarray] = field(default_factory=dict)  # chosen plan's, name -> (H,)
    imagined: dict[str, np.ndarray] = field(default_factory=dict)  # name -> (H,)
    imagined_frames: np.ndarray | None = None  # (H, 64, 64, 3)
    history: list[dict] = field(default_factory=list)  # one dict per step taken (the run's)
    in_force: list[Term] = field(default_factory=list)  # the terms the agent plans with
    cost_errors: dict[str, str] = field(default_factory=dict)  # term -> why it is left out
    walls: list[tuple] = field(default_factory=list)  # (cx, cy, hx, hy) m, in the plot plane
    goal_uv: tuple[float, float] | None = None  # the goal in frames, fractions (u right, v down)
    shown: list[str] = field(default_factory=list)  # signals worth plotting over time
    blocked_by: str | None = None  # the hard term ruling out the cheapest plan, this step
    stuck: str | None = None  # the term that has kept the agent from progress (agent.stuck)
    running: bool = False  # stepping on its own (Run), until paused or done
    plot_signals: tuple[str, ...] = ()  # the plane plotted (the task's x-y, or where it is)
    goal_signals: tuple[str, ...] = ()  # the signals a goal gives values to
    obs: str = ""  # what the model sees: state or pixels
    objective: str = "jepa"  # the model's: jepa, or generative (it predicts pixels)
    memory: bool = False  # the model carries a belief from step to step (worldmodels.memory)
    # the model's surprise at the current latent (its gap to what it expected: Thought)
    surprise: float | None = None
    believed: dict[str, float] = field(default_factory=dict)  # every probe on the latent now

    @property
    def hard_limits(self) -> dict[str, float]:
        """Enabled hard terms in force: name -> limit."""
        return {t.name: t.limit for t in self.in_force if t.kind == "hard" and t.enabled}


@dataclass
class Update:
    """What a command changed: the view (without its history) and the steps taken since
    the last update, to be put after the first ``start`` steps of the episode's history
    (0 after a reset); and the settings the agent runs with now."""

    view: View
    steps: list[dict]
    start: int
    settings: PlanSettings


class PlanSession:
    """See the module docstring: one agent in one scene, driven by commands."""

    def __init__(
        self, settings: PlanSettings, costs: CostSet, device: torch.device, share=None
    ) -> None:
        """``share``: a server's ``worldmodels.batching.Shared`` (one model a checkpoint for
        every session, imagination batched); None: this session loads its own."""
        self.settings = settings
        self.device = torch.device(device)
        self.share = share
        self.running = False
        self._costs = costs
        self._cost_errors: dict[str, str] = {}
        self._view = View()
        self.scene = None
        self.obs = ""
        self.agent: Agent | None = None
        self.pending: Thought | None = None
        self.plot_signals: tuple[str, ...] = ()
        self.walls: list[tuple] = []
        self.goal_points = np.zeros((0, 2))
        self._episode_options: dict = {}  # the reset options of the episode under way
        self._progress: list[tuple[float, str | None]] = []  # (dist_goal, blocked_by) a step
        self._steps: list[dict] = []  # steps taken since the last update ...
        self._start = 0  # ... which follow this many of the episode's

    def start(self) -> Update:
        """Build the scene, the model and the agent; the first episode, planned."""
        self._build()
        self._reset(self.settings.seed)
        return self.update()

    def handle(self, name: str, args: tuple = ()) -> Update:
        """One command (``tick``: the next step of a running agent); the update after it."""
        if name == "tick":
            self._step()
        else:
            self._handle(name, args)
        return self.update()

    def update(self) -> Update:
        out = Update(self._view, self._steps, self._start, dataclasses.replace(self.settings))
        self._start += len(self._steps)
        self._steps = []
        return out

    def close(self) -> None:
        if self.scene is not None:
            self.scene.close()
            self.scene = None

    def _handle(self, name: str, args: tuple) -> None:
        try:
            if name == "step":
                self.running = False
                self._step()
            elif name == "run":
                self.running = not self._view.done
                self._publish(status="running" if self.running else "paused")
            elif name == "pause":
                self.running = False
                self._publish(status="paused")
            elif name == "reset":  # (seed, reset options: None for the settings')
                self.running = False
                self._reset(args[0] if args else self.settings.seed, *args[1:])
            elif name == "goal":  # (values): the scene now, or a point clicked, is the goal
                self.running = False
                here = [self.scene.signals[k] for k in self.scene.TASK_SIGNALS]
                goal = self.scene.check_goal(list(args[0]) if args else here).tolist()
                # the same episode (its start, a replayed failure's options) to this goal
                self._reset(self.settings.seed, {**self._episode_options, "goal": goal})
            elif name == "costs":
                costs, version = args
                self._costs = costs
                # a term that does not compile is left out (or kept at its last good
                # version); its error goes in cost_errors, which the editor shows beside
                # the term, not in the status message (else it is said twice: under the
                # Step buttons and in the editor)
                errors = self.agent.set_costs(costs)
                self._cost_errors = {k: str(e) for k, e in errors.items()}
                self._rethink(cost_version=version, message="")
            elif name == "search":
                self._set_search(args[0])
        except LabError as e:
            self.running = False
            self._publish(status="paused", message=str(e))

    def _build(self) -> None:
        s = self.settings
        if not s.checkpoint:
            raise LabError("choose a checkpoint")
        load = self.share.load if self.share is not None else load_checkpoint
        self.model, config = load(s.checkpoint, device=self.device)
        self.obs = config["obs"]  # state or pixels
        if config["scene"] != s.scene:
            raise LabError(f"{s.checkpoint} is a {config['scene']} model, not {s.scene}")
        self.scene = scenes.make(s.scene, render_mode="rgb_array").unwrapped
        # the plane plotted: the task's (x-y; Push: the block's), or where the agent is
        self.plot_signals = tuple(self.scene.TASK_SIGNALS[:2]) or ("x", "y")
        # the floor scenes' walls lie in their task signals' plane (x-y; Push: the block's)
        self.walls = list(getattr(self.scene, "walls", ()))
        self.goal_points = self._goal_points()
        self.agent = self._make_agent(self.settings)

    def _make_agent(self, s: PlanSettings) -> Agent:
        search = PlannerConfig(
            samples=s.samples,
            horizon=s.horizon,
            iterations=s.iterations,
            repair=s.repair,
            noise_beta=s.noise_beta,
            keep=s.keep,
            decay=s.decay,
        )
        cfg = AgentConfig(
            planner=s.planner,
            search=search,
            fallback=s.fallback,
            margin=s.margin,
            delta=s.delta,
            margin_steps=s.margin_steps,
            margin_signals=tuple(s.margin_signals),
            show=self.plot_signals,
            actor=s.actor,
            shadow=s.actor == "policy",  # the plan System 2 would have made, beside it
            hierarchy=HierarchyConfig() if s.high else None,
        )
        return build_agent(
            self.model,
            self.scene,
            self._costs,
            cfg,
            checkpoint=s.checkpoint,
            policy=s.policy,
            high=s.high,
            seed=s.seed,
        )

    def _set_search(self, new: PlanSettings) -> None:
        old = self.agent
        self.agent = self._make_agent(new)  # a LabError leaves the old agent and settings
        self.settings = new
        self.agent.set_costs(self._costs)
        # same episode, same goal: carry the loop's state over
        self.agent.goal, self.agent.goal_latent = old.goal, old.goal_latent
        self.agent.t, self.agent.done = old.t, old.done
        if old.warm is not None and old.warm.shape[0] == new.horizon:
            self.agent.warm = old.warm
        self._rethink()

    def _reset(self, seed: int, options: dict | None = None) -> None:
        """A new episode from ``seed``; ``options`` (a stress test's failure) replace the
        settings' reset options for it. The planner's random stream restarts from the seed
        too, as in evaluation: an episode replays as it happened there."""
        self.agent.generator.manual_seed(seed)
        self._episode_options = dict(self.settings.options if options is None else options)
        self.agent.reset(seed=seed, options=dict(self._episode_options))
        self.settings.seed = seed  # a reopened tab resets and counts from this episode
        self._view = View(version=self._view.version, cost_version=self._view.cost_version)
        self._progress, self._steps, self._start = [], [], 0
        self._rethink(status="paused")

    def _rethink(self, status: str | None = None, **kw) -> None:
        self.pending = None if self.agent.done else self.agent.think()
        self._publish(status=status, **kw)

    def _step(self) -> None:
        if self.agent.done or self.pending is None:
            self.running = False
            self._publish(status="paused")
            return
        thought = self.pending
        rec = self.agent.step(thought)
        now = self.scene.render()
        real_terms = self._real_terms(rec.next_signals)
        step = {
            "t": rec.t,
            "signals": rec.signals,
            "next_signals": rec.next_signals,
            "action": rec.action.tolist(),
            "imagined": {k: v.copy() for k, v in thought.imagined.items()},
            "planned_feasible": not thought.plan.none_feasible,
            "planned_terms": {k: float(v[thought.plan.chosen, 0]) for k, v in self._hard()},
            "real_terms": real_terms,
            "violated": any(v > lim for v, lim in real_terms.values()),
            "stopped": rec.stopped,
            "plan_ms": thought.plan.seconds * 1e3,
            "dist_goal": float(rec.next_signals.get("dist_goal", float("nan"))),
            "blocked_by": thought.plan.info.get("blocked_by"),
            "surprise": thought.surprise,
            "frame": _small(now),
            "imagined_frame": None
            if thought.imagined_frames is None
            else _small(thought.imagined_frames[0]),
        }
        if rec.done:
            self.running = False
        self._steps.append(step)
        self._progress.append((step["dist_goal"], step["blocked_by"]))
        message = rec.error or ""  # the status line says whether the goal was reached
        self._rethink(status="finished" if rec.done else None, message=message, real=now)

    def _hard(self):
        """(name, per-term (N, H) costs) of the pending plan's enabled hard terms."""
        plan = self.pending.plan if self.pending else None
        if plan is None:
            return []
        hard = {t.name for t in self.agent.cost.costs.terms if t.kind == "hard" and t.enabled}
        return [(k, v) for k, v in plan.terms.items() if k in hard]

    def _real_terms(self, signals: dict[str, float]) -> dict[str, tuple[float, float]]:
        """Each hard term's value on the real signals, with its limit; switched-off terms
        too, so the page shows how often an unguarded agent breaks the rule."""
        out = {}
        cost = self.agent.cost
        real = real_values(
            {k: signals[k] for k in cost.signals}, cost.task_signals, self.scene.goal
        )
        for term in cost.costs.terms:
            if term.kind == "hard":
                value = cost.compiled[term.name](real)
                out[term.name] = (float(value.reshape(-1)[0]), term.limit)
        return out

    def _publish(
        self,
        status: str | None = None,
        message: str | None = None,
        real: np.ndarray | None = None,
        **kw,
    ) -> None:
        scene, th = self.scene, self.pending
        v = View(
            version=self._view.version + 1,
            cost_version=kw.get("cost_version", self._view.cost_version),
            t=self.agent.t,
            status=status or self._view.status,
            message=self._view.message if message is None else message,
            real=scene.render() if real is None else real,
            signals=scene.signals,
            goal=np.asarray(scene.goal, dtype=np.float32),
            done=self.agent.done,
            # a task without a goal (Bullet-Safety-Gym) has nothing to succeed at
            success=bool(scene.TASK_SIGNALS)
            and bool(scene.goal_distance() <= scene.SUCCESS_RADIUS),
            in_force=list(self.agent.cost.costs.terms),
            cost_errors=dict(self._cost_errors),
            walls=self.walls,
            goal_points=self.goal_points,
            goal_uv=scene.goal_pixel(),
            shown=self._shown(),
            margin=self.agent.cfg.margin,
            delta=self.agent.cfg.delta,
            margin_steps=self.agent.cfg.margin_steps,
            margin_signals=self.agent.cfg.margin_signals,
            running=self.running,
            plot_signals=self.plot_signals,
            goal_signals=tuple(scene.TASK_SIGNALS),
            obs=self.obs,
            objective=self.model.cfg.objective,
            memory=bool(getattr(self.model.cfg, "memory", False)),
        )
        if th is not None:
            v.surprise = th.surprise
            if th.latent is not None and hasattr(self.model, "probe"):
                with torch.no_grad():  # what the model believes now, every probe
                    v.believed = {k: float(x) for k, x in self.model.probe(th.latent).items()}
            p = th.plan
            v.plan_ms, v.actor = p.seconds * 1e3, self.agent.cfg.actor
            v.imagination = compiled.label(self.agent.model)
            shadow = p.info.get("planner")
            if shadow is not None:  # System 1 acts; System 2's plan is drawn beside it
                mine = [p.signals[k][0] for k in self.plot_signals if k in p.signals]
                if len(mine) == 2:
                    v.policy_xy = torch.stack(mine, dim=-1).cpu().numpy()  # (H, 2)
                p = shadow
            xy = [p.signals[k] for k in self.plot_signals if k in p.signals]
            if len(xy) == 2:
                v.samples_xy = torch.stack(xy, dim=-1).cpu().numpy()
            v.total = p.total.cpu().numpy()
            v.feasible = p.feasible.cpu().numpy()
            v.elites = p.elites.cpu().numpy()
            v.chosen = p.chosen
            v.none_feasible = th.plan.none_feasible  # the plan acted on
            v.stopped = th.stopped
            v.terms = {k: t[th.plan.chosen].cpu().numpy() for k, t in th.plan.terms.items()}
            v.imagined = th.imagined
            v.imagined_frames = th.imagined_frames
            v.blocked_by = th.plan.info.get("blocked_by")
            v.goal_steps = self._goal_steps(th.plan)
            high = th.plan.info.get("high")
            if high is not None:  # the high level's plan: where the subgoal came from
                self._high_view(v, high)
        v.stuck = stuck(self._progress)
        self._view = v

    def _high_view(self, v: View, high) -> None:
        """The high level's chosen plan in the plot plane, and decoded."""
        model = self.agent.model
        with torch.no_grad():
            probed = model.probe(high.latents, list(self.plot_signals))
            if len(probed) == 2:
                v.high_xy = torch.stack(list(probed.values()), dim=-1).cpu().numpy()
            if model.decoder is not None:
                v.high_frames = model.decode(high.latents).cpu().numpy()
        v.high_k = self.agent.high.high.shape.k

    def _goal_points(self) -> np.ndarray:
        """(P, 2) the points of the plotted plane, every ``GOAL_GRID`` m over the walls'
        extent (the arena's edge among them), a click may make the goal: those the scene
        takes (its own check: in its goal region, clear of walls); none for a goal of 3
        values or a scene without walls drawn."""
        if len(self.scene.TASK_SIGNALS) != 2 or not self.walls:
            return np.zeros((0, 2))
        w = np.asarray(self.walls, dtype=float)  # (cx, cy, hx, hy)
        lo, hi = (w[:, :2] - w[:, 2:]).min(0), (w[:, :2] + w[:, 2:]).max(0)
        axes = (np.arange(a + GOAL_GRID / 2, b, GOAL_GRID) for a, b in zip(lo, hi, strict=True))
        ok = []
        for p in np.stack(np.meshgrid(*axes), -1).reshape(-1, 2):
            try:
                self.scene.check_goal(p)
            except LabError:
                continue
            ok.append(p)
        return np.asarray(ok).reshape(-1, 2)

    def _goal_steps(self, plan) -> np.ndarray | None:
        """(H,) the steps to go the model's distance head reads along the chosen plan's
        imagined latents (no labels); None for a model without a head, or the oracle."""
        model, goal = self.agent.model, self.agent.goal_latent
        if getattr(model, "distance", None) is None or goal is None:
            return None
        with torch.no_grad():
            return model.goal_distance(plan.latents, goal).cpu().numpy()

    def _shown(self) -> list[str]:
        """The task signals and what the terms read, switched off or not (a rule turned off is
        compared, real against imagined, exactly then: Learn's first exercise does); at most six."""
        cost = self.agent.cost
        read = set().union(*(c.names for c in cost.compiled.values()))
        # the task's signals; without a goal, where the agent is and the reward it plans on
        task = [n for n in cost.signals if n in (self.scene.TASK_SIGNALS or ("x", "y", "reward"))]
        rules = [n for n in cost.signals if n in read and n not in task]
        # the plotted plane's two task signals always; the rules' signals next; the rest
        keep = task[:2]
        rules = rules[: SHOWN_MAX - len(keep)]
        rest = task[2:][: SHOWN_MAX - len(keep) - len(rules)]
        return [n for n in cost.signals if n in {*keep, *rules, *rest}]


def _small(img: np.ndarray) -> np.ndarray:
    """Any square uint8 image to HISTORY_FRAME px (nearest neighbour: crisp pixels)."""
    n = img.shape[0]
    idx = (np.arange(HISTORY_FRAME) * n // HISTORY_FRAME).astype(np.int64)
    return np.ascontiguousarray(img[idx][:, idx, :3])
