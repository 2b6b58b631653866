"""The talk's claims, each as an experiment a class can watch run in two minutes.

Each lesson is a function ``run(live, device, stop, turn, quick)`` that does its
experiment on this machine with the shipped checkpoints (collecting the few
episodes it needs in ``runs/lessons/`` on first use) and reports into a ``Live``
as it goes: a stage and progress, rows (the chart's points and the CSV), headline
figures and pictures. The Lessons pages (``app/screens/lessons.py``) draw a
``Live`` while a worker thread fills it; ``benchmarks/lessons.py`` runs the same
functions and prints the figures, so a lesson's figure and the benchmark's are
the same computation. ``MEASURED`` holds what the benchmark printed when the
shipped checkpoints were made, shown before anything runs.

1. ``blur``: pixels blur, representations do not (a generative world model,
   ``worldmodels.generative``, beside the pixel JEPA on Kitchen).
2. ``collapse``: the JEPA without its EMA target and VICReg terms collapses.
3. ``guardrails``: a rule trained into a policy against one held at inference.
4. ``open_loop``: the first plan executed blind drifts; receding horizon recovers.
5. ``hierarchy``: on Wall, flat planning, a longer horizon, the hand-written
   subgoal and the learned high level.
"""

from __future__ import annotations

import copy
import os
import tempfile
import threading
import time
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import torch

import scenes
from agents.agent import Agent, AgentConfig
from agents.cost import CostSet, Term
from agents.planners import PlannerConfig
from common.errors import LabError
from experiments.evaluate import evaluate
from scenes.collect import CollectConfig, collect
from scenes.kitchen import KNIFE_RULE
from worldmodels import compiled
from worldmodels.checkpoint import load_checkpoint
from worldmodels.data import WindowData
from worldmodels.generative import sharpness

ROOT = Path(__file__).resolve().parents[1]
PRETRAINED = ROOT / "pretrained"
# episodes the lessons collect for themselves, in the workspace (as app.home has it)
DATA = Path(os.environ.get("LAB_HOME", ROOT)).resolve() / "runs" / "lessons"
SEARCH = PlannerConfig(samples=300, horizon=16, iterations=3)


class Live:
    """What a lesson has found so far; written by its thread, copied by the page."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.stage = ""
        self.done, self.total = 0, 1
        self.rows: list[dict] = []
        self.figures: dict = {}
        self.pictures: dict[str, np.ndarray] = {}

    def say(self, stage: str, done: int | None = None, total: int | None = None) -> None:
        with self.lock:
            self.stage = stage
            if total is not None:
                self.total = total
            if done is not None:
                self.done = done

    def tick(self) -> None:
        with self.lock:
            self.done += 1

    def add(self, **row) -> None:
        with self.lock:
            self.rows.append(row)

    def replace(self, match: dict, rows: list[dict]) -> None:
        """The rows that hold every item of ``match`` give way to ``rows`` (a curve
        redrawn as its mean takes in another episode)."""
        with self.lock:
            keep = [r for r in self.rows if any(r.get(k) != v for k, v in match.items())]
            self.rows = keep + rows

    def set(self, **figures) -> None:
        with self.lock:
            self.figures.update(figures)

    def picture(self, name: str, image: np.ndarray) -> None:
        with self.lock:
            self.pictures[name] = image

    def copy(self) -> Live:
        with self.lock:
            out = copy.copy(self)
            out.lock = threading.Lock()
            out.rows, out.figures = list(self.rows), dict(self.figures)
            out.pictures = dict(self.pictures)
        return out


def _stopped(stop) -> None:
    if stop is not None and stop.is_set():
        raise LabError("the lesson was stopped before it finished")


def episodes_for(scene: str, episodes: int, pixels: bool, seed: int) -> Path:
    """A few exploration episodes of ``scene`` the lessons collect once and keep
    (``runs/lessons/<scene>-<pixels|state>``, resumable); seeds unlike the shipped
    models' data, so every episode is new to them."""
    out = DATA / f"{scene}-{'pixels' if pixels else 'state'}-{seed}"
    cfg = CollectConfig(scene=scene, out=str(out), episodes=episodes, pixels=pixels, seed=seed,
                        workers=1, episodes_per_shard=episodes, progress=False)  # fmt: skip
    with _COLLECTING:  # two people starting the same lesson at once: one collects
        collect(cfg)
    return out


_COLLECTING = threading.Lock()


# --- 1. pixels blur, representations do not -----------------------------------------
HORIZONS = (1, 4, 16)
BLUR_MODELS = {"JEPA": "kitchen-pixels", "generative": "kitchen-generative"}
# the talk's guardrail, the person near: what each model's imagination must keep
KNIFE = CostSet(terms=[Term("slow near person", KNIFE_RULE, "hard")])


def blur(live: Live, device, stop=None, turn=nullcontext, quick: bool = False) -> dict:
    """The generative model and the pixel JEPA, trained on the same Kitchen data with
    the same parts, on held-out episodes: their frames at h = 1, 4, 16 beside the real
    ones (the JEPA's through its display decoder), sharpness (image-gradient energy) of
    each relative to the real frame, probe error per horizon (h = 0: the frame and
    signals read back from the real frame's own latent, the decoder's and probes' own
    limit); then each plans the same episodes (success, ms per plan)."""
    plans = 2 if quick else 10
    live.say("collecting held-out Kitchen episodes", 0, 3 + 2 * plans)
    data = WindowData(str(episodes_for("kitchen", 6, True, 1001)), "pixels", device,
                      horizon=16, val_fraction=0.5, seed=0, frames=2)  # fmt: skip
    starts = data.val_starts(16, limit=48)
    batch = data.windows(starts, 16)
    real = batch["pixels"]  # (B, 17, 64, 64, 3): each start's frame and the 16 after it
    real_sharp = sharpness(real).mean(0)  # (17,)
    live.tick()
    live.picture("real", real[0, list(HORIZONS)].cpu().numpy())
    for name, folder in BLUR_MODELS.items():
        _stopped(stop)
        live.say(f"{name}: imagining 16 steps from {len(starts)} held-out frames")
        model, _ = load_checkpoint(PRETRAINED / folder, device)
        model.eval()
        with torch.no_grad(), turn():
            s0 = model.encode({"pixels": batch["obs"][:, 0],
                               "last_action": batch["last_action"][:, 0]})  # fmt: skip
            latents = torch.cat([s0[:, None], model.rollout(s0, batch["actions"])], 1)
            frames = model.decode(latents.flatten(0, 1)).view(real.shape)  # h = 0 .. 16
            probed = model.probes.normalised(latents)  # (B, 17, n) in units of std
        target = (batch["signals"] - model.probes.mean) / model.probes.std
        nrmse = (probed - target).pow(2).mean(0).sqrt().mean(-1)  # (17,)
        ratio = sharpness(frames).mean(0) / real_sharp  # (17,)
        mse = (frames.float() - real.float()).div(255).pow(2).mean(dim=(0, 2, 3, 4))
        for h in range(17):
            live.add(model=name, h=h, sharpness_over_real=round(float(ratio[h]), 3),
                     probe_nrmse=round(float(nrmse[h]), 3),
                     pixel_mse=round(float(mse[h]), 5))  # fmt: skip
        live.picture(name, frames[0, list(HORIZONS)].cpu().numpy())
        key = name.lower()
        for h in (0, *HORIZONS):
            live.set(**{f"{key}_sharpness_h{h}": round(float(ratio[h]), 3),
                        f"{key}_probe_nrmse_h{h}": round(float(nrmse[h]), 3)})  # fmt: skip
        live.tick()
    # Each episode planned by one model, then the other, both on the plain imagination:
    # compiling it in the background would fall on whichever model came first.
    results: dict[str, list] = {name: [] for name in BLUR_MODELS}
    with compiled.off():
        _plan_both(live, results, plans, device, stop, turn)
    for name, done in results.items():
        key = name.lower()
        eps = [e for r in done for e in r.episodes if e["agent"] == "model"]
        broke = sum(e["violation_steps"] for e in eps) / max(1, sum(e["steps"] for e in eps))
        won, ms = np.mean([e["success"] for e in eps]), np.mean([r.plan_ms() for r in done])
        live.set(**{f"{key}_success": round(float(won), 3),
                    f"{key}_violation_step_rate": round(broke, 4),
                    f"{key}_plan_ms": round(float(ms), 2)})  # fmt: skip
    live.say("done")
    return live.copy().figures


def _plan_both(live: Live, results: dict, plans: int, device, stop, turn) -> None:
    for ep in range(plans):
        for name, folder in BLUR_MODELS.items():
            live.say(f"{name}: planning Kitchen episode {ep + 1} of {plans}")
            result = evaluate("kitchen", PRETRAINED / folder, KNIFE,
                              AgentConfig(search=SEARCH, decode=False), 1, seed=7 + ep,
                              device=device, stop=stop, turn=turn,
                              options={"person_near": True})  # fmt: skip
            _stopped(stop)
            results[name].append(result)
            live.tick()


# --- 2. collapse --------------------------------------------------------------------
COLLAPSE_RUNS = {
    "with EMA target and VICReg": {},
    "without them": {
        "ema": False, "var_weight": 0.0, "cov_weight": 0.0,
    },
}  # fmt: skip


def collapse(live: Live, device, stop=None, turn=nullcontext, quick: bool = False) -> dict:
    """Two JEPAs trained on the same Reach data for the same time, one without the
    EMA target and VICReg: the effective rank of each latent (exp of the entropy of its
    singular values, directions under 1 % of unit spread not counted) and the spread of
    every dimension on held-out states, as they train."""
    from worldmodels.loss import effective_rank
    from worldmodels.train import TrainConfig, Trainer

    seconds = 15.0 if quick else 45.0
    live.say("collecting Reach episodes (states only)", 0, 2)
    data = episodes_for("reach", 60, False, 1002)
    figures = {}
    for i, (name, over) in enumerate(COLLAPSE_RUNS.items()):
        live.say(f"training {name}: {seconds:.0f} s", i, 2)
        with tempfile.TemporaryDirectory() as out:
            cfg = TrainConfig(data=str(data), out=out, steps=100_000, batch=128,
                              decoder=False, progress=False, seed=0, **over)  # fmt: skip
            trainer = Trainer(cfg, device)
            held_out = trainer.data.inputs(trainer.data.val_starts(0, limit=1024))
            t0, last = time.monotonic(), -1.0
            while True:
                _stopped(stop)
                elapsed = time.monotonic() - t0
                if elapsed - last >= seconds / 20 or elapsed >= seconds:
                    with torch.no_grad(), turn():
                        z = trainer.model.encode(held_out)  # (N, D), held-out states
                    spread = z.std(dim=0).cpu().tolist()
                    rank = round(effective_rank(z), 2)
                    live.add(design=name, seconds=round(elapsed, 1), step=trainer.step,
                             effective_rank=rank,
                             median_spread=round(float(np.median(spread)), 4))  # fmt: skip
                    live.picture(name, np.asarray(sorted(spread, reverse=True)))
                    last = elapsed
                    if elapsed >= seconds:
                        break
                with turn():
                    trainer.train_step()
        figures["rank_with" if i == 0 else "rank_without"] = rank
    live.say("done", 2, 2)
    live.set(**figures)
    return figures


# --- 3. guardrails at inference time ------------------------------------------------
def guardrails(live: Live, device, stop=None, turn=nullcontext, quick: bool = False) -> dict:
    """System 1 against System 2 on Kitchen (``experiments.system12``): a rule typed after the
    policy was distilled, and the knife rule in a situation outside the data (the person
    walking faster than anyone in it)."""
    from experiments import system12

    setup = system12.Setup(scene="kitchen", checkpoint=str(PRETRAINED / "kitchen-state"),
                           policy=str(PRETRAINED / "policy-kitchen"),
                           episodes=2 if quick else 10, device=device)  # fmt: skip
    parts = 4

    def say(what: str) -> None:
        live.say(what, min(live.done, parts - 1), parts)
        live.tick()

    live.say("starting", 0, parts)
    figures = system12.new_rule(setup, say, stop, turn)
    for actor in ("policy", "planner"):
        live.add(test="a new rule", actor=actor,
                 violation_step_rate=figures[f"new_rule_violation_{actor}"],
                 success=figures[f"new_rule_success_{actor}"])  # fmt: skip
    shifted = system12.new_situation(setup, say, stop, turn)
    for actor in ("policy", "planner"):
        live.add(test="a new situation", actor=actor,
                 violation_step_rate=shifted[f"shifted_violation_{actor}"],
                 success=shifted[f"shifted_success_{actor}"])  # fmt: skip
    figures.update(shifted)
    live.say("done", parts, parts)
    live.set(**figures)
    return figures


# --- 4. open loop drifts, receding horizon recovers ----------------------------------
OPEN_LOOP_H = 32  # the plan's horizon, and the steps each episode has (Reach: 1.6 m)
PUSHES = (0.0, 0.1)  # shoves per step (scenes.reach's "pushes" option)


def open_loop(live: Live, device, stop=None, turn=nullcontext, quick: bool = False) -> dict:
    """Reach, with and without shoves: the first plan (32 steps) executed blind against
    replanning every step, over the same seeded episodes; how far the imagined disc is
    from the real one along the blind plan; and the model's own error as it imagines
    further ahead (autoregressive rollout on the real actions) against predicting one
    step at a time from each real state."""
    episodes = 4 if quick else 20
    model, _ = load_checkpoint(PRETRAINED / "reach-state", device)
    model.eval()
    env = scenes.make("reach").unwrapped
    search = replace(SEARCH, horizon=OPEN_LOOP_H)
    agent = Agent(model, env, CostSet(), AgentConfig(search=search, decode=False), seed=0)
    total = 2 * len(PUSHES) * episodes
    live.say("planning", 0, total)
    figures: dict = {}
    try:
        for pushes in PUSHES:
            gap = np.zeros(OPEN_LOOP_H)
            auto, onestep = np.zeros(OPEN_LOOP_H), np.zeros(OPEN_LOOP_H)
            won = {"open loop": 0, "receding horizon": 0}
            for ep in range(episodes):
                for mode in won:
                    _stopped(stop)
                    world = "shoved" if pushes else "calm"
                    live.say(f"{mode}, {world}: episode {ep + 1} of {episodes}")
                    with turn():
                        ok, out = _episode(agent, mode, pushes, ep)
                    won[mode] += ok
                    if mode == "open loop":
                        gap += out["gap"]
                    else:
                        auto += out["auto"]
                        onestep += out["onestep"]
                    live.tick()
                # the means so far, redrawn after every episode
                n, tag = ep + 1, "pushed" if pushes else "calm"
                world = f"shoved ({pushes:g} a step)" if pushes else "calm"
                live.replace({"pushes": pushes}, [
                    {"world": world, "pushes": pushes, "step": k + 1,
                     "blind_plan_gap_m": round(float(gap[k]) / n, 4),
                     "rollout_error_m": round(float(auto[k]) / n, 4),
                     "one_step_error_m": round(float(onestep[k]) / n, 4)}
                    for k in range(OPEN_LOOP_H)
                ])  # fmt: skip
                live.set(**{f"open_loop_success_{tag}": round(won["open loop"] / n, 3),
                            f"receding_success_{tag}": round(won["receding horizon"] / n, 3),
                            f"blind_gap_end_{tag}": round(float(gap[-1]) / n, 3)})  # fmt: skip
        live.say("done")
        figures = live.copy().figures
    finally:
        env.close()
    return figures


def _episode(agent: Agent, mode: str, pushes: float, ep: int) -> tuple[bool, dict]:
    """One Reach episode of ``OPEN_LOOP_H`` steps; (reached the goal, curves in m)."""
    agent.reset(seed=10_000 + ep, options={"pushes": pushes})
    env, model = agent.scene, agent.model
    xy = [("x", "y")]
    if mode == "open loop":
        thought = agent.think()  # one plan, then its actions blind
        imagined = np.stack([thought.imagined[n] for n in xy[0]], -1)  # (H, 2)
        real, ok = [], False
        for a in thought.plan.actions.cpu().numpy():
            _, _, terminated, _, info = env.step(a.astype(np.float32))
            real.append([info["signals"]["x"], info["signals"]["y"]])
            ok |= bool(info["is_success"])
            if terminated:
                break
        real = np.asarray(real)
        gap = np.linalg.norm(imagined[: len(real)] - real, axis=-1)
        gap = np.concatenate([gap, np.full(OPEN_LOOP_H - len(gap), gap[-1])])
        return ok, {"gap": gap}
    states, actions, ok = [env.observation], [], False
    while not agent.done and agent.t < OPEN_LOOP_H:
        record = agent.step()
        actions.append(record.action)
        states.append(env.observation)
        ok |= record.is_success
    # The model on the actions taken: imagined from the first state on (autoregressive),
    # and one step at a time from each real state; both against the real positions.
    names = ["x", "y"]
    with torch.no_grad():
        s = model.encode({"state": np.stack([o["state"] for o in states])})  # (T+1, D)
        acts = torch.as_tensor(np.stack(actions), device=s.device)[None]  # (1, T, A)
        rolled = model.rollout(s[:1], acts)[0]  # (T, D)
        stepped = model.predictor(s[:-1], acts[0])  # (T, D)
        truth = torch.as_tensor(np.stack([o["state"][:2] for o in states[1:]]), device=s.device)
        err = {k: torch.linalg.vector_norm(
            torch.stack([model.probe(v, names)[n] for n in names], -1) - truth, dim=-1
        ).cpu().numpy() for k, v in (("auto", rolled), ("onestep", stepped))}  # fmt: skip
    for k, v in err.items():  # an episode that ended early keeps its last error
        err[k] = np.concatenate([v, np.full(OPEN_LOOP_H - len(v), v[-1])])
    return ok, err


# --- 5. hierarchy -------------------------------------------------------------------
def hierarchy(live: Live, device, stop=None, turn=nullcontext, quick: bool = False) -> dict:
    """Wall, the same seeded episodes: flat planning (16 steps), flat with twice the
    horizon, flat with the subgoal a person wrote, and the learned high level."""
    from agents.hierarchy import HAND_SUBGOALS, HierarchyConfig
    from experiments.hierarchy import figures

    episodes = 3 if quick else 12
    designs = {
        "flat, 16 steps": (CostSet(), SEARCH, None),
        "flat, 32 steps": (CostSet(), replace(SEARCH, horizon=32), None),
        "flat + the subgoal a person wrote": (CostSet(terms=[HAND_SUBGOALS["wall"]]), SEARCH,
                                              None),
        "learned high level (HIQL subgoals)": (CostSet(), SEARCH, HierarchyConfig()),
    }  # fmt: skip
    live.say("planning", 0, episodes * len(designs))
    out = {}
    for name, (costs, search, high) in designs.items():
        _stopped(stop)
        live.say(name)
        cfg = AgentConfig(search=search, decode=False, hierarchy=high)
        result = evaluate("wall", PRETRAINED / "wall-state", costs, cfg, episodes, seed=0,
                          device=device, stop=stop, turn=turn,
                          high=PRETRAINED / "high-wall" if high else None,
                          progress=lambda n, t: live.tick())  # fmt: skip
        _stopped(stop)
        f = figures("d", result)
        live.add(design=name, success=f["d_success"], steps_to_goal=f["steps_d"],
                 plan_ms=f["plan_ms_d"])  # fmt: skip
        out[name] = f["d_success"]
    live.set(flat_success=out["flat, 16 steps"], long_success=out["flat, 32 steps"],
             hand_success=out["flat + the subgoal a person wrote"],
             learned_success=out["learned high level (HIQL subgoals)"])  # fmt: skip
    live.say("done")
    return live.copy().figures


@dataclass
class Lesson:
    key: str
    nav: str  # its short name in the navigation
    title: str
    claim: str
    run: Callable
    shows: str  # what the result shows
    next: str  # what to try next
    chart: dict = field(default_factory=dict)  # how the page draws the rows
    needs: tuple[str, ...] = ()  # the shipped checkpoints it loads (pretrained/<name>)


LESSONS = {
    lesson.key: lesson
    for lesson in (
        Lesson(
            "blur",
            "Pixels blur",
            "Pixels blur, representations do not",
            "A world model trained to predict pixels spends itself on details it cannot "
            "predict and averages them into a blur; one that predicts in representation "
            "space keeps what matters for acting.",
            blur,
            "The generative model's frames are soft (its sharpness at h = 16 is under half "
            "the real frame's): from two frames it cannot know exactly where the arm and "
            "the person will be, and under a pixel error the best guess is the average of "
            "what may happen. Here both models draw through the same thin decoder, which "
            "already softens the frame it was given (h = 0), so the pictures differ less "
            "than the claim's; what differs is what the imagination keeps. The generative "
            "model's probes lose the scene as it looks ahead (at h = 16 about twice the "
            "JEPA's error, the person's position most), and planning with the knife rule "
            "held it breaks the rule on more real steps, since it does not foresee where "
            "the person will be; at the same success and time per plan. (Its pixel error "
            "is the lower one for most of the horizon: pixels are what it was trained "
            "for, and an average frame scores well on them.)",
            "Plan with the generative model on the Plan page (World model: "
            "`kitchen-generative`, the person near) and watch its imagined frames and "
            "the knife rule. Give the generative model a wider decoder or longer training "
            "(`./lab train --obs pixels --objective generative`): do the frames sharpen, and "
            "does the person come back into its probes?",
            {"x": "h", "y": ["sharpness_over_real", "probe_nrmse", "pixel_mse"], "color": "model"},
            tuple(BLUR_MODELS.values()),
        ),
        Lesson(
            "collapse",
            "Collapse",
            "Collapse: why the JEPA needs its EMA target and VICReg",
            "Trained only to predict its own embedding, an encoder finds the trivial "
            "answer: map everything to one point, and the prediction is perfect.",
            collapse,
            "Without the EMA target and the variance/covariance terms (the target is then "
            "the online encoder itself) the latent's spread falls below 1 % of unit in "
            "every dimension within seconds: effective rank 0, every state looks the same, "
            "and nothing can be planned on it. With them each dimension keeps a spread "
            "near 1 and the latent tens of independent directions.",
            "On the Train page (it collects a little data first if there is none), untick "
            "the EMA target, set the VICReg weights to 0 and watch the collapse health. "
            "Which one of the three alone is enough to prevent it?",
            {"x": "seconds", "y": ["effective_rank", "median_spread"], "color": "design"},
        ),
        Lesson(
            "guardrails",
            "Guardrails",
            "Guardrails at inference time",
            "A rule held by the planner at inference time holds for rules and situations "
            "the agent was never trained on; a rule trained into a policy does not.",
            guardrails,
            "The policy never saw the new rule, and breaks it on many steps; the planner "
            "holds it because it is a term of the cost it minimises now. In a situation "
            "outside the data (the person walking fast) the planner's rule is checked "
            "against every imagined step, so it still holds far better.",
            "On the Experiments page compare the policy and the planner on your own rule; "
            "on the Plan page type a new guardrail while the agent runs.",
            {"x": "actor", "y": ["violation_step_rate", "success"], "color": "test"},
            ("kitchen-state", "policy-kitchen"),
        ),
        Lesson(
            "open_loop",
            "Open loop",
            "Open loop drifts, receding horizon recovers",
            "No world model is exact and the world surprises: executing a plan blind "
            "drifts away from it; re-planning from what is really seen, every step, "
            "corrects the errors.",
            open_loop,
            "Along the blind plan the gap between the imagined and the real disc grows "
            "with every step, fast when something shoves the disc; replanning each step "
            "reaches the goal anyway. The model's own error grows with the horizon it "
            "imagines (autoregressive rollout) where predicting one step from each real "
            "state stays small.",
            "On the Plan page set the horizon to 4 and to 32 and compare. Try the gradient "
            "planner: does it drift as much?",
            {
                "x": "step",
                "y": ["blind_plan_gap_m", ("rollout_error_m", "one_step_error_m")],
                "color": "world",
            },
            ("reach-state",),
        ),
        Lesson(
            "hierarchy",
            "Hierarchy",
            "Hierarchy: plan at the level where the way is found",
            "A flat planner sees 16 steps ahead; to go round a wall it needs a subgoal, "
            "and a learned high level can find one from the data instead of a person.",
            hierarchy,
            "Flat planning heads straight for the goal and stays stuck against the wall; "
            "a longer horizon is slower and no better; the person's subgoal through the "
            "door works, and the learned high level's subgoals work as well without "
            "anyone writing them.",
            "On the Plan page, Wall, switch the learned high level on and watch its "
            "subgoal (green diamond). On Push it gets the block home in about half "
            "the episodes, the person's subgoal in nearly all: see the README.",
            {"x": "design", "y": ["success", "plan_ms"], "color": None},
            ("wall-state", "high-wall"),
        ),
    )
}


def run_lesson(key: str, live: Live, device, stop=None, turn=nullcontext,
               quick: bool = False) -> dict:  # fmt: skip
    """Lesson ``key``'s experiment, as the page and the benchmark run it: on the plain
    imagination, in this thread. A lesson is over in a minute or two, and compiling the
    imagination in the background (tens of seconds of both cores per kind of call) would
    not pay for itself in that time; it would only slow the lesson, unevenly."""
    with compiled.off():
        return LESSONS[key].run(live, device, stop, turn, quick)


# What ``./lab bench lessons`` printed on 2 CPU cores with the shipped checkpoints (the
# pages show it before anything runs): rates are fractions, times seconds and ms.
MEASURED: dict[str, dict] = {
    "blur": {
        "seconds": 49.3,
        "jepa_sharpness_h0": 0.554,
        "jepa_probe_nrmse_h0": 0.492,
        "jepa_sharpness_h1": 0.552,
        "jepa_probe_nrmse_h1": 0.478,
        "jepa_sharpness_h4": 0.543,
        "jepa_probe_nrmse_h4": 0.445,
        "jepa_sharpness_h16": 0.525,
        "jepa_probe_nrmse_h16": 0.497,
        "generative_sharpness_h0": 0.48,
        "generative_probe_nrmse_h0": 0.486,
        "generative_sharpness_h1": 0.477,
        "generative_probe_nrmse_h1": 0.482,
        "generative_sharpness_h4": 0.473,
        "generative_probe_nrmse_h4": 0.496,
        "generative_sharpness_h16": 0.467,
        "generative_probe_nrmse_h16": 0.954,
        "jepa_success": 1.0,
        "jepa_violation_step_rate": 0.0491,
        "jepa_plan_ms": 38.03,
        "generative_success": 1.0,
        "generative_violation_step_rate": 0.1349,
        "generative_plan_ms": 37.24,
    },
    "collapse": {
        "seconds": 91.0,
        "rank_with": 20.48,
        "rank_without": 0.0,
    },
    "guardrails": {
        "seconds": 41.4,
        "new_rule_violation_policy": 0.4233,
        "new_rule_success_policy": 1.0,
        "new_rule_violation_planner": 0.0014,
        "new_rule_success_planner": 0.8,
        "shifted_violation_policy": 0.1828,
        "shifted_success_policy": 0.9,
        "shifted_violation_planner": 0.0451,
        "shifted_success_planner": 1.0,
    },
    "open_loop": {
        "seconds": 23.6,
        "open_loop_success_calm": 0.35,
        "receding_success_calm": 0.95,
        "blind_gap_end_calm": 0.124,
        "open_loop_success_pushed": 0.25,
        "receding_success_pushed": 0.9,
        "blind_gap_end_pushed": 0.259,
    },
    "hierarchy": {
        "seconds": 48.1,
        "flat_success": 0.333,
        "long_success": 0.333,
        "hand_success": 1.0,
        "learned_success": 1.0,
    },
}
