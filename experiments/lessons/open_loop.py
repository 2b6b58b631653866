"""Lesson 4, open loop drifts and receding horizon recovers: on Reach, calm and
shoved, the first plan executed blind against replanning every step, and the model's
own error as it imagines further ahead."""

from __future__ import annotations

from contextlib import nullcontext
from dataclasses import replace

import numpy as np
import torch

import scenes
from agents.agent import Agent, AgentConfig
from agents.cost import CostSet
from common.paths import PRETRAINED
from experiments.lessons.common import SEARCH, Lesson, Live, Panel, stopped, wilson
from worldmodels.checkpoint import load_checkpoint

OPEN_LOOP_H = 32  # the plan's horizon, and the steps each episode has (Reach: 1.6 m)
PUSHES = (0.0, 0.1)  # shoves per step (scenes.reach's "pushes" option)


def open_loop(
    live: Live,
    device,
    stop=None,
    turn=nullcontext,
    quick: bool = False,
    seed: int = 0,
    scene: str = "reach",
) -> dict:
    """Reach, with and without shoves: the first plan (32 steps) executed blind against
    replanning every step, over the same seeded episodes; how far the imagined disc is
    from the real one along the blind plan; and the model's own error as it imagines
    further ahead (autoregressive rollout on the real actions) against predicting one
    step at a time from each real state. ``seed``: the episodes' (0: the shipped
    figures')."""
    episodes = 4 if quick else 20
    model, _ = load_checkpoint(PRETRAINED / "reach-state", device)
    model.eval()
    env = scenes.make("reach").unwrapped
    search = replace(SEARCH, horizon=OPEN_LOOP_H)
    agent = Agent(model, env, CostSet(), AgentConfig(search=search, decode=False), seed=seed)
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
                    stopped(stop)
                    world = "shoved" if pushes else "calm"
                    live.say(f"{mode}, {world}: episode {ep + 1} of {episodes}")
                    with turn():
                        ok, out = _episode(agent, mode, pushes, seed + ep)
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
                live.replace(
                    {"pushes": pushes},
                    [
                        {
                            "world": world,
                            "pushes": pushes,
                            "step": k + 1,
                            "blind_plan_gap_m": round(float(gap[k]) / n, 4),
                            "rollout_error_m": round(float(auto[k]) / n, 4),
                            "one_step_error_m": round(float(onestep[k]) / n, 4),
                        }
                        for k in range(OPEN_LOOP_H)
                    ],
                )
                live.set(
                    **{
                        f"open_loop_success_{tag}": round(won["open loop"] / n, 3),
                        f"receding_success_{tag}": round(won["receding horizon"] / n, 3),
                        f"blind_gap_end_{tag}": round(float(gap[-1]) / n, 3),
                    }
                )
                live.interval(
                    **{
                        f"open_loop_success_{tag}": wilson(won["open loop"], n),
                        f"receding_success_{tag}": wilson(won["receding horizon"], n),
                    }
                )
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
        err = {
            k: torch.linalg.vector_norm(
                torch.stack([model.probe(v, names)[n] for n in names], -1) - truth, dim=-1
            )
            .cpu()
            .numpy()
            for k, v in (("auto", rolled), ("onestep", stepped))
        }
    for k, v in err.items():  # an episode that ended early keeps its last error
        err[k] = np.concatenate([v, np.full(OPEN_LOOP_H - len(v), v[-1])])
    return ok, err


LESSON = Lesson(
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
    scenes=("reach",),
    rule="none: reach the goal (Reach's shoves are its own option, so the lesson runs on "
    "Reach only)",
    situation=f"the disc shoved: with probability {PUSHES[1]:g} a step something pushes it "
    "aside (calm: never)",
    episodes=(4, 20),
    counted=f"episodes per mode and world, {OPEN_LOOP_H} steps each, the plan "
    f"{OPEN_LOOP_H} steps long",
    words={
        "seconds": "time the whole lesson took",
        **{
            f"{k}_success_{tag}": f"share of episodes reaching the goal, {mode}, {world}"
            for k, mode in (("open_loop", "blind plan"), ("receding", "replanning every step"))
            for tag, world in (("calm", "calm"), ("pushed", "shoved"))
        },
        **{
            f"blind_gap_end_{tag}": f"gap between imagined and real disc at the blind "
            f"plan's end, {world}"
            for tag, world in (("calm", "calm"), ("pushed", "shoved"))
        },
    },
    panels=[
        Panel(
            "share of episodes reaching the goal",
            "%",
            [
                (world, mode, f"{k}_success_{tag}")
                for tag, world in (("calm", "calm"), ("pushed", "shoved"))
                for k, mode in (("open_loop", "blind plan"), ("receding", "replanning every step"))
            ],
        ),
        Panel(
            "gap between imagined and real disc at the blind plan's end",
            "m",
            [
                (world, "blind plan", f"blind_gap_end_{tag}")
                for tag, world in (("calm", "calm"), ("pushed", "shoved"))
            ],
            lower_better=True,
        ),
    ],
    seed_means="the episodes' starts, goals and shoves",
)
