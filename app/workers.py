"""The other long jobs of the app: a scene to drive by hand, collection, training,
experiments. Each is a ``Run`` (app/runs.py): a thread that never calls ``st.*``."""

from __future__ import annotations

import dataclasses
import json
import queue
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import torch

import scenes
from agents.agent import AgentConfig, covers_words
from agents.cost import CostSet
from agents.hierarchy import HierarchyConfig
from app.runs import Run
from common.errors import LabError
from experiments.evaluate import evaluate
from experiments.lessons import LESSONS, Live, run_lesson
from experiments.stress import stress
from scenes.collect import CollectConfig, collect
from worldmodels.train import Progress, TrainConfig, Trainer


@dataclass
class SceneView:
    version: int = 0
    t: int = 0
    frame: np.ndarray | None = None
    signals: dict[str, float] = field(default_factory=dict)
    goal: list[float] = field(default_factory=list)
    success: bool = False
    message: str = ""


class SceneRun(Run):
    """A scene driven by hand: the thread owns the PyBullet client (one per thread)."""

    kind = "scene"

    def __init__(self, scene: str, seed: int = 0) -> None:
        super().__init__(f"{scene} by hand")
        self.scene_name, self.seed = scene, seed
        self.commands: queue.Queue = queue.Queue()
        self._view = SceneView()
        self.env = None

    def send(self, name: str, *args) -> None:
        self.commands.put((name, args))

    def view(self) -> SceneView:
        with self.lock:
            return dataclasses.replace(self._view)

    def on_idle(self) -> None:
        pass  # nothing runs on its own; it only answers commands

    def work(self) -> None:
        self.env = scenes.make(self.scene_name, render_mode="rgb_array").unwrapped
        try:
            self._reset(self.seed, None)
            while not self.stopping.is_set():
                try:
                    name, args = self.commands.get(timeout=0.25)
                except queue.Empty:
                    continue
                try:
                    if name == "reset":
                        self._reset(*args)
                    elif name == "act":
                        self._act(np.asarray(args[0], dtype=np.float32))
                    elif name == "scripted":
                        self._act(self.env.scripted_action())
                except LabError as e:
                    self._publish(str(e))
        finally:
            self.env.close()

    def _reset(self, seed: int, goal) -> None:
        options = {"goal_obs": False}
        if goal is not None:
            options["goal"] = goal
        self.env.reset(seed=seed, options=options)
        self.t = 0
        self._publish("new episode")

    def _act(self, action: np.ndarray) -> None:
        _, _, terminated, _, info = self.env.step(action)
        self.t += 1
        msg = info.get("error", "") or ("goal reached" if info["is_success"] else "")
        if terminated and not msg:
            msg = "the episode ended"
        self._publish(msg)

    def _publish(self, message: str) -> None:
        env = self.env
        v = SceneView(
            version=self._view.version + 1,
            t=getattr(self, "t", 0),
            frame=env.render(),
            signals=env.signals,
            goal=[float(g) for g in env.goal],
            # a task without a goal (Bullet-Safety-Gym) has nothing to succeed at
            success=bool(env.TASK_SIGNALS) and bool(env.goal_distance() <= env.SUCCESS_RADIUS),
            message=message,
        )
        with self.lock:
            self._view = v


class CollectRun(Run):
    """``scenes.collect.collect`` in a thread; stopping keeps every finished shard."""

    kind = "collect"

    def __init__(self, cfg: CollectConfig) -> None:
        super().__init__(f"collect {cfg.scene} into {cfg.out}")
        self.cfg = dataclasses.replace(cfg, progress=False)
        self.total = cfg.episodes

    def work(self) -> None:
        collect(self.cfg, progress=self.progress, stop=self.stopping)


class TrainRun(Run):
    """A ``Trainer`` driven from the Train page; stopping saves a checkpoint and the
    exact resume state, and ``restart`` goes on from there."""

    kind = "train"

    def __init__(self, cfg: TrainConfig, device: torch.device) -> None:
        super().__init__(f"train {Path(cfg.out).name}")
        self.cfg = dataclasses.replace(cfg, progress=False)
        self.device = device
        self.trainer: Trainer | None = None
        self.total = cfg.steps

    def work(self) -> None:
        self.trainer = Trainer(self.cfg, self.device)  # resumes from the run folder if any
        self.trainer.turn = self.turn  # each optimiser step in turn with the server's others
        if self.stopping.is_set():
            return
        self.trainer.run()

    def stop(self) -> None:
        super().stop()
        if self.trainer is not None:
            self.trainer.stop()

    def pause(self) -> None:
        if self.trainer is not None:
            self.trainer.pause()

    def resume(self) -> None:
        if self.trainer is not None:
            self.trainer.resume()

    def snapshot(self) -> Progress | None:
        return None if self.trainer is None else self.trainer.snapshot()


class ExperimentRun(Run):
    """Guardrail designs compared over the same seeded episodes (``experiments.evaluate``)."""

    kind = "experiment"

    def __init__(
        self,
        scene: str,
        checkpoint: str,
        designs: dict[str, CostSet],
        agent_cfg: AgentConfig,
        episodes: int,
        seed: int,
        out: Path,
        device: torch.device,
        guardrails: list | None = None,
        options: dict | None = None,
        policies: dict[str, str] | None = None,
        ray: str | None = None,
        highs: dict[str, str] | None = None,
        guards: dict[str, dict] | None = None,
        bases: dict[str, str] | None = None,
        trained: dict[str, str] | None = None,
    ) -> None:
        """``policies``: design name -> a distilled policy's folder; those designs act with
        the policy (System 1), the others with the planner. ``trained``: design name -> a
        PPO-Lagrangian policy's folder (``./lab ppol``); those act with it, on the raw
        state. ``highs``: design name -> a learned high level's folder; those designs plan
        in two levels (agents.hierarchy).
        ``guards``: design name -> its own margin, in place of ``agent_cfg``'s (``margin``,
        ``delta``, ``margin_steps``): margin 0 beside a calibrated margin in one run.
        ``bases``: design name -> the cost set's name in the form, where they differ.
        ``ray``: fan the episodes out over Ray ("local", or a cluster's address:
        ``experiments.fanout``)."""
        self.policies, self.ray, self.highs = policies or {}, ray, highs or {}
        self.guards, self.bases, self.trained = guards or {}, bases or {}, trained or {}
        for name, guard in self.guards.items():
            if name not in designs or set(guard) - {"margin", "delta", "margin_steps"}:
                raise LabError(
                    f"a design's own margin needs a known design and margin, delta "
                    f"or margin_steps, not {name!r}: {guard}"
                )
        how = agent_cfg.fallback.replace("_", " ") + " fallback"
        if agent_cfg.delta:
            how += f", calibrated margin at miss rate {agent_cfg.delta:g}"
        elif agent_cfg.margin:
            how += f", margin {agent_cfg.margin:g} x model error"
        if agent_cfg.delta or agent_cfg.margin:
            how += covers_words(agent_cfg.margin_signals)
        if guards:
            how += "; the designs so named, no margin"
        super().__init__(f"{scene}: {', '.join(designs)} ({how})")
        self.guardrails, self.options = guardrails, options or {}
        self.scene, self.checkpoint, self.designs = scene, checkpoint, designs
        self.agent_cfg, self.episodes, self.seed = agent_cfg, episodes, seed
        self.out, self.device = out, device
        self.total = episodes * len(designs)
        self.parts = [episodes] * len(designs)  # each design's episodes at its own pace
        self.results: dict = {}  # design -> EvalResult

    @property
    def file_stem(self) -> str:
        """What a downloaded file is called: scene, designs and when the run started
        (``out`` is named by that time), so a folder of downloads can be told apart."""
        designs = "-vs-".join(_slug(k.removeprefix("saved: "))[:24] for k in self.designs)
        return f"{self.scene}-{designs[:80]}-{self.out.name}"

    def work(self) -> None:
        for i, (name, costs) in enumerate(self.designs.items()):
            if self.stopping.is_set():
                break
            base = i * self.episodes

            def tick(done: int, total: int, base=base) -> None:
                self.progress(base + done, self.total)

            policy = self.policies.get(name) or self.trained.get(name)
            high = self.highs.get(name)
            cfg = replace(self.agent_cfg, **self.guards.get(name, {}))
            if policy is not None:  # it acts alone: nothing checks a rule, no margin, no stop
                actor = "ppol" if name in self.trained else "policy"
                cfg = replace(cfg, actor=actor, fallback="least_violating", margin=0.0, delta=0.0)
            if high is not None:
                cfg = replace(cfg, hierarchy=HierarchyConfig())
            result = evaluate(
                self.scene,
                self.checkpoint,
                costs,
                cfg,
                self.episodes,
                seed=self.seed,
                progress=tick,
                stop=self.stopping,
                device=self.device,
                guardrails=self.guardrails,
                options=self.options,
                turn=self.turn,
                policy=policy,
                ray=self.ray,
                high=high,
            )
            with self.lock:
                self.results[name] = result
            folder = self.out / _slug(name)
            result.save(folder)
        self.out.mkdir(parents=True, exist_ok=True)
        (self.out / "designs.json").write_text(
            json.dumps({k: json.loads(v.to_json()) for k, v in self.designs.items()}, indent=1)
        )


def _slug(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_" else "-" for c in name)[:60] or "design"


class StressRun(Run):
    """A stress test in the background (``experiments.stress``): each episode, and so each
    failure, published as it ends (the search calls back after every episode)."""

    kind = "stress"

    def __init__(
        self,
        scene: str,
        checkpoint: str,
        design: str,
        costs: CostSet,
        agent_cfg: AgentConfig,
        budget: int,
        method: str,
        out: Path,
        device: torch.device,
        ray: str | None = None,
    ) -> None:
        super().__init__(f"{scene}: stress test of {design!r} ({method}, {budget} episodes)")
        self.scene, self.checkpoint, self.design, self.costs = scene, checkpoint, design, costs
        self.agent_cfg, self.budget, self.method = agent_cfg, budget, method
        self.out, self.device, self.ray = out, device, ray
        self.total = budget
        self.result = None  # experiments.stress.StressResult, as far as it has gone

    @property
    def file_stem(self) -> str:
        """What a downloaded file is called: the design, then scene, method and start
        time (``out``'s name)."""
        return f"stress-{_slug(self.design.removeprefix('saved: '))[:40]}-{self.out.name}"

    def work(self) -> None:

        def shown(result) -> None:
            snapshot = dataclasses.replace(result, episodes=list(result.episodes))
            with self.lock:  # a copy: the search goes on appending to its own list
                self.result = snapshot
            self.progress(len(result.episodes), self.budget)
            result.save(self.out)  # a stopped or broken-off search keeps what it found

        result = stress(
            self.scene,
            self.checkpoint,
            self.costs,
            self.agent_cfg,
            self.budget,
            self.method,
            progress=shown,
            stop=self.stopping,
            device=self.device,
            ray=self.ray,
            turn=self.turn,
        )
        shown(result)


class LessonRun(Run):
    """One lesson's experiment (``experiments.lessons``), its ``Live`` filled as it goes."""

    def __init__(
        self,
        key: str,
        device: torch.device,
        quick: bool = False,
        seed: int = 0,
        scene: str | None = None,
    ) -> None:
        self.lesson = LESSONS[key]
        self.kind = f"lesson-{key}"  # a run per lesson page
        super().__init__(self.lesson.title)
        self.device, self.quick = device, quick
        self.seed, self.scene = seed, scene  # as the page chose them (run_lesson's)
        self.live = Live()
        self.result: dict | None = None

    def work(self) -> None:
        self.live, self.result = Live(), None
        try:
            result = run_lesson(
                self.lesson.key,
                self.live,
                self.device,
                self.stopping,
                self.turn,
                self.quick,
                seed=self.seed,
                scene=self.scene,
            )
        except LabError:
            if self.stopping.is_set():  # stopped by its page: what it found stays shown
                self.live.say("stopped")
                return
            raise
        with self.lock:
            self.result = result

    def on_idle(self) -> None:
        """Nobody watches (the tab was closed): a lesson ends by itself within two minutes,
        so it goes on, and a reopened tab (the run id in its URL) finds the whole result."""

    def view(self):
        """A copy of the lesson's ``Live`` (its progress also sets the run's, for the ETA)."""
        live = self.live.copy()
        # a stage's own count: a new total (the next stage) starts a new estimate
        self.progress(min(live.done, live.total), live.total)
        return live
