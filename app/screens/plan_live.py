"""Plan's live view: the agent's buttons, status, frames and charts, redrawn by a fragment
that polls its ``PlanRun`` (app/planrun.py); and the replay of a stress test's failure.
The page (app/screens/plan.py) draws it.
"""

from __future__ import annotations

import dataclasses
import json
import time
from math import nan

import streamlit as st

from agents.agent import STUCK_STEPS, covers_words
from agents.cost import CostSet
from app import home, views
from app.planrun import PlanRun, PlanSettings
from app.screens.plan_editor import load_set
from app.state import registry

SS = st.session_state
POLL_PAUSED = 5.0  # s between redraws of the live view (running: app.runs.DrawPace)


# --- the live view ------------------------------------------------------------------------
def _command(run_id: str, name: str, *args) -> None:
    run = registry().get(run_id, "plan")
    if run is None:
        return
    SS["plan/await_version"] = run.view().version
    run.send(name, *args)
    if name in ("reset", "goal"):  # the episode a made video showed is over
        SS.pop("plan/video", None)
    # "run" and "pause" are answered too (a new version with ``running`` set): waiting for
    # it lets the page switch its poll at once, not a slow poll later (a busy server
    # answers after the others' turns)


def _decided(v) -> str:
    """How the step's decision was made, and how long it took."""
    if v.actor == "policy":
        return f"policy {v.plan_ms:.3f} ms (System 1) · "
    both = " (policy + planner)" if v.actor == "both" else ""
    how = f"{v.imagination} · " if v.imagination else ""
    return f"plan {v.plan_ms:.0f} ms{both} · {how}"


def _figures(v) -> str:
    """A goal-free task's figures for the status line: this step's reward and cost, and
    the episode's return and cost so far (the benchmark's figures: sums over its steps)."""
    now = f"reward {v.signals.get('reward', nan):.3f} · cost {v.signals.get('cost', nan):g}"
    if not v.history:
        return now
    total = sum(h["next_signals"].get("reward", 0.0) for h in v.history)
    cost = sum(h["next_signals"].get("cost", 0.0) for h in v.history)
    return f"{now} · return {total:.2f} · episode cost {cost:g}"


def _episode(scene: str) -> tuple:
    """What Reset replays: this scene's episode seed, and a replayed failure's options."""
    seed = SS.get(f"plan/seed/{scene}", 0)
    replay = SS.get("plan/replay")
    if replay and replay["scene"] == scene and replay["seed"] == seed:
        return seed, replay["options"]
    return (seed,)


def _replay(run_id: str, scene: str, failure: home.Failure) -> None:
    """Replay a stress test's failure as it happened: its design, its search settings, then
    its seed and reset options (queued in that order: the episode starts on the new agent)."""
    run = registry().get(run_id, "plan")
    if run is None:
        return
    cfg = failure.settings["agent"]
    search = cfg["search"]
    costs = CostSet.from_json(json.dumps(failure.settings["costs"]))
    load_set(run_id, scene, costs, "the replayed failure")
    new = dataclasses.replace(
        run.settings,
        planner=cfg["planner"],
        samples=search["samples"],
        horizon=search["horizon"],
        iterations=search["iterations"],
        repair=search["repair"],
        fallback=cfg["fallback"],
        margin=cfg["margin"],
        delta=cfg["delta"],
        margin_steps=cfg.get("margin_steps", 0),
        margin_signals=tuple(cfg.get("margin_signals", ())),
        actor="planner",
        policy="",
        seed=failure.seed,
    )
    show_settings(new)
    SS["plan/replay"] = {"scene": scene, "seed": failure.seed, "options": failure.options}
    run.send("search", new)
    _command(run_id, "reset", failure.seed, failure.options)


def replay_picker(run: PlanRun, scene: str) -> None:
    """The stress tests' failures for this model, each replayable as it happened."""
    found = home.stress_failures(scene, run.settings.checkpoint)
    if not found:
        return
    with st.expander(f"Replay a stress-test failure ({len(found)} found for this model)"):
        i = st.selectbox(
            "Failure",
            range(len(found)),
            key=f"plan/failure/{scene}",
            format_func=lambda i: found[i].label,
        )
        f = found[i]
        rules = [t["name"] for t in f.settings["costs"]["terms"] if t["kind"] == "hard"]
        st.caption(
            f"Worst real excess over the rule {f.excess:.3f}; design: "
            f"{', '.join(rules)}; seed {f.seed}; reset options `{json.dumps(f.options)}`. "
            "Replaying loads that design and search and starts the episode as it began."
        )
        st.button("Replay it", on_click=_replay, args=(run.id, scene, f), icon=":material/history:")


def _goal_clicked(run_id: str, picked) -> None:
    """A click on the plane's grid (the chart's first trace): that point becomes the goal,
    the episode starts again. A selection stays in the chart's state over reruns: each is
    acted on once."""
    points = [
        p
        for p in (picked or {}).get("selection", {}).get("points", [])
        if p.get("curve_number") == 0
    ]
    if not points:
        SS.pop("plan/goal_clicked", None)
        return
    goal = [round(float(points[0]["x"]), 3), round(float(points[0]["y"]), 3)]
    if SS.get("plan/goal_clicked") != goal:
        SS["plan/goal_clicked"] = goal
        _command(run_id, "goal", goal)


def _new_episode(run_id: str, scene: str) -> None:
    SS.pop("plan/replay", None)
    key = f"plan/seed/{scene}"
    SS[key] = int(SS.get(key, 0)) + 1
    _command(run_id, "reset", SS[key])


def live(run_id: str, scene: str) -> None:
    run = registry().get(run_id, "plan")
    if run is None:
        st.info("This agent is gone (the server restarted or it was idle for long). Reload.")
        return
    run.touch()
    v = run.view()
    # a command sent from this page's last click: draw what it made (the buttons too)
    if "plan/await_version" in SS:
        old = SS.pop("plan/await_version")
        v = run.wait(lambda w: w.version > old, timeout=10)
    if "plan/await_cost" in SS:
        want = SS.pop("plan/await_cost")
        v = run.wait(lambda w: w.cost_version >= want, timeout=10)
    drawing = time.thread_time()  # what the redraw costs (app.runs.DrawPace)
    b = st.columns([1, 1, 1, 1, 1.4, 4])
    over = "The episode is over: New episode draws another, Reset replays this one."
    for col, label, verb, icon in (
        (b[0], "Step", "step", ":material/skip_next:"),
        (b[1], "Run", "run", ":material/play_arrow:"),
    ):
        col.button(
            label,
            on_click=_command,
            args=(run_id, verb),
            icon=icon,
            key=f"plan/{verb}",  # one button whether enabled or not (help, disabled change)
            disabled=v.done,
            help=over if v.done else None,
        )
    b[2].button("Pause", on_click=_command, args=(run_id, "pause"), icon=":material/pause:")
    b[3].button(
        "Reset",
        on_click=_command,
        args=(run_id, "reset", *_episode(scene)),
        icon=":material/replay:",
    )
    b[4].button(
        "New episode", on_click=_new_episode, args=(run_id, scene), icon=":material/casino:"
    )
    if run.status == "error":
        st.error(f"The agent stopped: {views.plain(run.error)}")
        return
    state = "running" if run.running else ("episode over" if v.done else "paused")
    if run.idle_stopped and not run.running:
        state += " (paused while nobody watched)"
    if v.version == 0:  # its scene, model and first plan are still being made
        state = "starting (a busy server or a new Ray worker can take a while)"
    goal_free = not run.scene_goal_signals  # a Bullet-Safety-Gym task: reward and cost
    line = (
        f"**step {v.t}** · {state} · "
        + ("" if v.done else _decided(v))
        + f"cost version {v.cost_version} · "
        + (_figures(v) if goal_free else f"distance to goal {v.signals.get('dist_goal', nan):.3f}")
    )
    steps = f" over the first {v.margin_steps} imagined steps" if v.margin_steps else ""
    steps += covers_words(v.margin_signals)
    # a margin only widens hard terms: with none enabled, the agent holds nothing over it
    guarded = bool(v.hard_limits)
    if guarded and v.delta:
        line += (
            f" · hard terms must hold over the calibrated bound (miss rate {v.delta:g}: "
            f"reality within it with probability >= {1 - v.delta:g}){steps}"
        )
    elif guarded and v.margin:
        line += f" · hard terms must hold within ±{v.margin:g} x the model's measured error{steps}"
    if v.done and not goal_free:  # a task without a goal has nothing to reach
        line += " · **goal reached**" if v.success else " · goal not reached"
    b[5].container(key="plan-status").markdown(line)
    if v.message:
        st.caption(v.message)
    if v.stuck and not v.done and not goal_free:  # "closer to the goal" needs one
        st.warning(
            f"Stuck: for {STUCK_STEPS} steps the agent has not got closer to the goal, "
            f"and the hard term **{v.stuck}** rules out the plans that would (no feasible "
            "plan makes progress). Loosen or rewrite that term, allow a margin, or let "
            "the search repair more plans (Search settings)."
        )
    if v.none_feasible:
        st.warning(
            "No sampled plan keeps every hard guardrail: the agent "
            + ("stops." if v.stopped else "acts on the least violating plan.")
        )
    c = st.columns([1, 2.2])
    if v.real is not None:
        c[0].image(v.real, caption="real: the scene now", width="stretch")
    if v.imagined_frames is not None:
        decoder = (
            "a generative model: trained through this decoder on pixel error; planning "
            "still reads its latents"
            if v.objective == "generative"  # it predicts pixels (worldmodels/generative.py)
            else "the decoder is display only: planning never sees pixels"
        )
        ring = "" if v.goal_uv is None else "; the gold ring is the goal, drawn on them"
        c[1].image(
            views.strip(views.mark_goal(v.imagined_frames, v.goal_uv), every=2, scale=2),
            caption="imagined: the chosen plan decoded from latents, steps 2, 4, ... ahead "
            f"({decoder}{ring})",
            width="stretch",
        )
    if v.high_frames is not None:
        c[1].image(
            views.strip(views.mark_goal(v.high_frames, v.goal_uv), every=1, scale=2),
            caption=f"the high level's plan, decoded: {v.high_k}, {2 * v.high_k}, ... steps "
            "ahead; the first is the subgoal the planner steers to",
            width="stretch",
        )
    hard = v.hard_limits
    off = {t.name for t in v.in_force if not t.enabled}

    def note(k: str) -> str:
        if k in off:
            return " (off: shown, not counted)"
        return " (hard: excess over its limit, 0 = kept)" if k in hard else ""

    if v.terms:
        c[1].container(key="plan-costs").markdown(
            "Chosen plan, cost per term summed over the horizon (soft terms: weight x "
            "expression, weight included; the task term x its weight): "
            + " · ".join(
                f"**{views.plain(k)}** {float(t.sum()):.4g}{note(k)}" for k, t in v.terms.items()
            )
        )
    g = st.columns([1.1, 1])
    names = run.plot_signals
    if len(names) == 2:
        clickable = len(run.scene_goal_signals) == 2  # Kitchen's goal has a height too
        picked = g[0].plotly_chart(
            views.drawn(
                views.trajectories(
                    v, names, clickable=clickable, bounds=views.plane_bounds(v.in_force, names)
                )
            ),
            key="plan/traj",
            on_select="rerun" if clickable else "ignore",
            selection_mode="points",
        )
        if clickable:
            _goal_clicked(run_id, picked)
    if goal_free:
        g[0].caption(
            "This task has no goal: the agent maximises the task's own reward (probed by "
            "the model), and the task's rule is its hard term. The benchmark's figures are "
            "the episode's return (summed reward) and cost (summed cost: steps breaking "
            "the rule)."
        )
    else:
        # beside the plane, not in the row above: a sixth button there cut the others' names
        pick = g[0].columns([1, 3], vertical_alignment="center")
        pick[0].button(
            "Goal: this",
            on_click=_command,
            args=(run_id, "goal"),
            icon=":material/flag:",
            help="Take where the disc (Push: the block, Kitchen: the hand) is now as the "
            "goal: the episode starts again from its start, and the agent plans to get "
            "there. With the latent task term it plans to the goal's observation (the scene "
            "with it there; a pixel model: its image), no label read.",
        )
        if len(run.scene_goal_signals) == 2:
            pick[1].caption("or click the plane above: the goal goes there")
    if v.terms:
        g[1].plotly_chart(views.drawn(views.term_bars(v.terms, hard, off)), key="plan/terms")
    shown = list(v.shown)
    if shown:
        g[1].container(key="plan-signals").plotly_chart(
            views.drawn(views.signals_over_time(v, shown, {})), key="plan/signals"
        )
    if v.goal_steps is not None and not goal_free:  # a steps-to-go head (worldmodels/distance.py)
        if home.steps_to_go_measured(scene, run.obs):
            g[0].plotly_chart(
                views.drawn(views.goal_distance(v, list(run.scene_goal_signals))), key="plan/goal"
            )
        else:  # drawn unmeasured, it rose along plans that closed in on the goal
            g[0].caption(
                "Steps to go: this model has a steps-to-go head, but it is not measured to "
                f"track progress in {scene} (`./lab bench label_free` measures it where the "
                "agent reaches goals planning on it), so it is not drawn."
            )
    fig = views.drawn(views.guardrails(v))
    if fig is not None:
        st.plotly_chart(fig, key="plan/guard")
    # the surprise chart where something can be out of sight (the agent measures it always)
    seeing = v.memory or "person_seen" in v.signals
    fig = views.drawn(views.surprise_over_time(v)) if seeing else None
    if fig is not None:
        st.container(key="plan-surprise").plotly_chart(fig, key="plan/surprise")
        if v.memory:
            st.caption(
                "This model has a memory (`worldmodels.memory`): its latent is a belief, "
                "the prediction from the last step corrected by the frame. Behind a "
                "screen the frame shows no person and the belief carries them on (the open "
                "circle on the plane), within about 5 cm for as long as they stay hidden "
                "(`./lab bench memory`); surprise is "
                "how much a frame corrected the belief."
            )
    reg = registry()
    reg.drawing.drew(time.thread_time() - drawing)
    poll = reg.redraw(run) if run.running else POLL_PAUSED  # fast only while it runs
    if SS.get("plan/poll") != poll:
        SS["plan/poll"] = poll
        st.rerun()


def show_settings(s: PlanSettings) -> None:
    """The sidebar's widgets set to ``s`` (before they are drawn): a reopened tab shows
    its run's settings, a replayed failure the stress test's."""
    SS["plan/scene"], SS[f"plan/ckpt/{s.scene}"] = s.scene, s.checkpoint
    SS["plan/planner"], SS["plan/samples"] = s.planner, s.samples
    SS["plan/horizon"], SS["plan/iterations"] = s.horizon, s.iterations
    SS["plan/fallback"], SS[f"plan/seed/{s.scene}"] = s.fallback, s.seed
    SS["plan/repair"], SS["plan/actor"] = s.repair, s.actor
    SS["plan/noise_beta"], SS["plan/keep"], SS["plan/decay"] = s.noise_beta, s.keep, s.decay
    home.show_guard(f"plan/margin/{s.scene}", s.margin, s.delta, s.margin_steps, s.margin_signals)
    if s.actor != "planner":
        SS["plan/policy"] = s.policy
    home.set_kept(f"plan/hierarchy/{s.scene}", bool(s.high))
