"""Plan: the agent imagines, the cost judges, the scene answers; edit the cost live.

The agent runs in a ``PlanRun`` worker (app/planrun.py); this page sends it
commands and draws its ``view()`` in a fragment that polls it. The cost
editor is plain widgets: every edit is checked here at once (message and
column beside the term) and sent to the worker, which re-plans with it; a
term that does not compile keeps its last good version in force there.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import secrets

import streamlit as st

import scenes
from agents.agent import STUCK_STEPS
from agents.cost import CostSet, Term, term_names
from agents.expressions import ExpressionError, compile_expression
from agents.hierarchy import HAND_SUBGOALS, HierarchyConfig
from agents.planners import PLANNERS, PlannerConfig
from app import home, views
from app.planrun import PlanRun, PlanSettings
from app.state import adopt, current, device, registry, seeded
from common.errors import LabError
from worldmodels.checkpoint import read_config

SS = st.session_state
SAMPLES = [30, 100, 200, 300, 500, 1000]
POLL_RUNNING, POLL_PAUSED = 0.6, 5.0  # s between redraws of the live view


# --- the cost editor's state ----------------------------------------------------------------
# What the editor shows lives in a key of the page's own, ``plan/editor/<scene>``, never
# only in widget keys: Streamlit deletes a widget's key at the end of any run that does not
# draw it (another page, another scene), and the editor then came back blank and its next
# edit sent the blank set, every guardrail gone (PITFALLS.md, "Streamlit widget state").
# The widgets are drawn from that state and every edit is copied back into it first.
FIELDS = ("name", "expr", "kind", "value", "on")  # a row's fields, each a widget


def _model(scene: str) -> dict | None:
    """The editor's state for ``scene``: task, task weight and rows (uid + FIELDS)."""
    return SS.get(f"plan/editor/{scene}")


def _as_model(costs: CostSet) -> dict:
    rows = [
        {
            "uid": secrets.token_hex(3),
            "name": t.name,
            "expr": t.expression,
            "kind": t.kind,
            "value": float(t.weight if t.kind == "soft" else t.limit),
            "on": bool(t.enabled),
        }
        for t in costs.terms
    ]
    return {
        "task": costs.task,
        "task_weight": float(costs.task_weight),
        "rows": rows,
        "name": costs.name,
    }


def load_editor(scene: str, costs: CostSet) -> None:
    """Put a cost set into the editor (its widgets are drawn from it)."""
    SS[f"plan/editor/{scene}"] = _as_model(costs)


def _widget(uid: str, field: str) -> str:
    return f"term/{uid}/{field}"


def _show_model(scene: str) -> None:
    """Set the editor's widgets from its state (before they are drawn in this run)."""
    m = _model(scene)
    SS[f"plan/task/{scene}"] = m["task"]
    SS[f"plan/task_weight/{scene}"] = m["task_weight"]
    for row in m["rows"]:
        for f in FIELDS:
            SS[_widget(row["uid"], f)] = row[f]


def _take_edits(scene: str) -> None:
    """Copy the widgets' values into the editor's state (an edit's callback: the widgets
    drawn in the last run hold what the person set; one not drawn then is left as it is)."""
    m = _model(scene)
    if m is None:
        return
    for field in ("task", "task_weight"):
        if f"plan/{field}/{scene}" in SS:
            m[field] = SS[f"plan/{field}/{scene}"]
    for row in m["rows"]:
        for f in FIELDS:
            if _widget(row["uid"], f) in SS:
                row[f] = SS[_widget(row["uid"], f)]


def editor_costs(scene: str) -> CostSet:
    """The editor's content as a cost set (expressions unchecked)."""
    m = _model(scene) or _as_model(CostSet())
    terms = []
    for row in m["rows"]:
        kind, value = row["kind"], float(row["value"])
        terms.append(
            Term(
                name=row["name"] or f"term {row['uid']}",
                expression=row["expr"],
                kind=kind,
                weight=value if kind == "soft" else 1.0,
                limit=value if kind == "hard" else 0.0,
                enabled=bool(row["on"]),
            )
        )
    return CostSet(task=m["task"], task_weight=float(m["task_weight"]), terms=terms, name=m["name"])


def _send(run_id: str, scene: str) -> None:
    """Send the editor's cost set to the agent; the page waits for its plan on redraw."""
    run = registry().get(run_id, "plan")
    if run is None:
        return
    try:
        costs = editor_costs(scene)
        costs.check()
    except LabError as e:
        SS["plan/cost_error"] = str(e)
        return
    SS.pop("plan/cost_error", None)
    SS["plan/await_cost"] = run.set_costs(costs)


def _send_costs(run_id: str, scene: str) -> None:
    """Every edit: take it into the editor's state, then send that to the agent."""
    _take_edits(scene)
    _send(run_id, scene)


def _save_costs(scene: str) -> None:
    """Save before the page is drawn, so "Load a cost set" already offers it."""
    try:
        name = SS.get("plan/save_name", "")
        path = home.save_costs(name, editor_costs(scene))
        _model(scene)["name"] = name.strip()  # the set shown is now the one saved
        SS["plan/saved"] = (True, f"saved to {path}; Load and the Experiments page offer it")
    except LabError as e:
        SS["plan/saved"] = (False, str(e))


def _kind_changed(run_id: str, scene: str, uid: str) -> None:
    """Soft <-> hard: the number means a weight or a limit, so it starts at that one's default
    (a weight of 1 kept as a limit of 1 would quietly allow most violations)."""
    _take_edits(scene)
    for row in _model(scene)["rows"]:
        if row["uid"] == uid:
            row["value"] = 1.0 if row["kind"] == "soft" else 0.0
    _send(run_id, scene)


def _add_term(run_id: str, scene: str) -> None:
    _take_edits(scene)
    rows = _model(scene)["rows"]
    row = {"uid": secrets.token_hex(3), "name": f"term {len(rows) + 1}", "expr": ""}
    rows.append({**row, "kind": "soft", "value": 1.0, "on": True})


def _remove_term(run_id: str, scene: str, uid: str) -> None:
    _take_edits(scene)
    m = _model(scene)
    m["rows"] = [row for row in m["rows"] if row["uid"] != uid]
    _send(run_id, scene)


def _load_preset(run_id: str, scene: str, costs: CostSet, label: str = "") -> None:
    """Load a preset, a saved set or a file: the terms it replaces can be brought back
    (Undo) until the next load."""
    SS.pop(f"plan/upload_error/{scene}", None)
    _take_edits(scene)
    before = _model(scene)
    if before is not None and editor_costs(scene) != costs:
        SS[f"plan/undo/{scene}"] = (copy.deepcopy(before), label or "the load")
    load_editor(scene, costs)
    _send(run_id, scene)


def _undo_load(run_id: str, scene: str) -> None:
    undo = SS.pop(f"plan/undo/{scene}", None)
    if undo is not None:
        SS[f"plan/editor/{scene}"] = undo[0]
        _send(run_id, scene)


def _load_file(run_id: str, scene: str, names: list[str]) -> None:
    """ "Load the file": a callback, so the editor's widgets are set before this run draws
    them (from the script body it raised StreamlitWidgetAlreadyInstantiatedError and left
    the load half done). A file whose terms read names this scene does not have is refused
    whole, as a malformed one is: loaded, its terms would be left out and the agent would
    plan with no guardrail at all."""
    up = SS.get(f"plan/upload/{scene}")
    if up is None:
        return
    try:
        costs = CostSet.from_json(up.getvalue().decode("utf-8", "replace"), source=up.name)
        costs.check_names(names, source=up.name)
    except LabError as e:
        SS[f"plan/upload_error/{scene}"] = str(e)
        return
    _load_preset(run_id, scene, costs, f"the file {up.name}")


def cost_editor(run: PlanRun, scene: str, signals: list[str], in_force: dict[str, str]) -> None:
    args = (run.id, scene)
    _show_model(scene)
    st.subheader("Cost")
    st.caption(
        "The task term plus guardrail terms over the scene's signals and the goal's values: "
        + ", ".join(f"`{s}`" for s in signals)
        + ". Soft: weight x expression is added to the cost. Hard: the expression must stay "
        "<= the limit at every step of the plan. Edits apply to the next plan."
    )
    c = st.columns([2, 1, 3])
    c[0].selectbox(
        "Task term",
        ["signal", "latent"],
        key=f"plan/task/{scene}",
        format_func=lambda k: {
            "signal": "signal distance (probed task signals to the goal)",
            "latent": "latent distance (to the goal's embedding)",
        }[k],
        on_change=_send_costs,
        args=args,
    )
    c[1].number_input(
        "Task weight",
        min_value=0.0,
        step=0.5,
        key=f"plan/task_weight/{scene}",
        on_change=_send_costs,
        args=args,
    )
    for row in _model(scene)["rows"]:
        uid = row["uid"]
        cols = st.columns([2, 4.6, 1.3, 1.3, 1.1, 0.7], vertical_alignment="bottom")
        cols[0].text_input("Name", key=f"term/{uid}/name", on_change=_send_costs, args=args)
        cols[1].text_input("Expression", key=f"term/{uid}/expr", on_change=_send_costs, args=args)
        cols[2].selectbox(
            "Kind",
            ["soft", "hard"],
            key=f"term/{uid}/kind",
            on_change=_kind_changed,
            args=(*args, uid),
        )
        kind = row["kind"]
        cols[3].number_input(
            "Weight" if kind == "soft" else "Limit",
            key=f"term/{uid}/value",
            step=0.1,
            format="%.3g",
            on_change=_send_costs,
            args=args,
        )
        cols[4].toggle("On", key=f"term/{uid}/on", on_change=_send_costs, args=args)
        cols[5].button(
            ":material/delete:",
            key=f"term/{uid}/del",
            on_click=_remove_term,
            args=(*args, uid),
            help="remove this term",
        )
        text, name = row["expr"], row["name"]
        label = views.plain(name.strip() or "unnamed")
        if not text.strip() and name not in in_force:  # a new term, nothing typed yet
            st.caption(
                f"**{label}**: type an expression over the names above, then Enter; the "
                "term joins the cost once it compiles."
            )
            continue
        try:
            compile_expression(text, signals)
        except ExpressionError as e:
            kept = in_force.get(name)
            tail = (
                f" Planning goes on with the last good version: `{kept}`."
                if kept is not None
                else " The term is left out until it compiles."
            )
            st.error(f"**{label}**: {views.plain(e)}.{tail}", icon=":material/error:")
    if SS.get("plan/cost_error"):
        st.error(views.plain(SS["plan/cost_error"]))
    undo = SS.get(f"plan/undo/{scene}")
    if undo is not None:
        st.button(
            f"Undo: bring back the terms before {undo[1]}",
            key="plan/undo",
            on_click=_undo_load,
            args=args,
            icon=":material/undo:",
            help="the cost set as it was before the last load, as you left it",
        )
    b = st.columns([1, 2, 2, 2])
    b[0].button("Add term", on_click=_add_term, args=args, icon=":material/add:")
    presets = home.preset_costs(scene)
    saved, broken = home.saved_costs(signals)
    with b[1].popover("Load a cost set", icon=":material/folder_open:"):
        for label, costs in presets.items():
            st.button(
                label,
                key=f"preset/{label}",
                on_click=_load_preset,
                args=(*args, costs, f"the preset '{label}'"),
            )
        for stem, message in broken.items():
            st.caption(f"{stem}: {message}")
        for name, costs in saved.items():
            st.button(
                f"saved: {name}",
                key=f"saved/{name}",
                on_click=_load_preset,
                args=(*args, costs, f"the saved set '{name}'"),
            )
        failed = f"plan/upload_error/{scene}"  # this scene's, for the file chosen now
        up = st.file_uploader(
            "or a JSON file",
            type=["json"],
            key=f"plan/upload/{scene}",
            on_change=lambda: SS.pop(failed, None),
        )
        if up is not None:
            st.button(
                "Load the file", key="plan/upload/go", on_click=_load_file, args=(*args, signals)
            )
            if SS.get(failed):
                st.error(views.plain(SS[failed]))
    with b[2].popover("Save this cost set", icon=":material/save:"):
        st.text_input("Name", key="plan/save_name", placeholder="my guardrails")
        st.button("Save", key="plan/save_go", on_click=_save_costs, args=(scene,))
        ok, message = SS.pop("plan/saved", (True, ""))
        if message:
            (st.success if ok else st.error)(message)
    b[3].download_button(
        "Download JSON",
        editor_costs(scene).to_json(),
        file_name=f"{home.safe_stem(_model(scene)['name']) or scene + '-costs'}.json",
        mime="application/json",
        icon=":material/download:",
    )


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
    _load_preset(run_id, scene, costs, "the replayed failure")
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
        actor="planner",
        policy="",
        seed=failure.seed,
    )
    _show_settings(new)
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
    points = [p for p in (picked or {}).get("selection", {}).get("points", [])
              if p.get("curve_number") == 0]  # fmt: skip
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


def _generative(run) -> bool:
    """The agent's model predicts pixels (worldmodels/generative.py), not latents."""
    cfg = getattr(getattr(run, "model", None), "cfg", None)
    return getattr(cfg, "objective", "jepa") == "generative"


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
    line = (
        f"**step {v.t}** · {state} · "
        + ("" if v.done else _decided(v))
        + f"cost version {v.cost_version} · distance to goal "
        f"{v.signals.get('dist_goal', float('nan')):.3f}"
    )
    steps = f" over the first {v.margin_steps} imagined steps" if v.margin_steps else ""
    if v.delta:
        line += (
            f" · hard terms must hold over the calibrated bound (miss rate {v.delta:g}: "
            f"reality within it with probability >= {1 - v.delta:g}){steps}"
        )
    elif v.margin:
        line += f" · hard terms must hold within ±{v.margin:g} x the model's measured error{steps}"
    if v.done:
        line += " · **goal reached**" if v.success else " · goal not reached"
    b[5].container(key="plan-status").markdown(line)
    if v.message:
        st.caption(v.message)
    if v.stuck and not v.done:
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
            if _generative(run)
            else "the decoder is display only: planning never sees pixels"
        )
        c[1].image(
            views.strip(views.mark_goal(v.imagined_frames, v.goal_uv), every=2, scale=2),
            caption="imagined: the chosen plan decoded from latents, steps 2, 4, ... ahead "
            f"({decoder}; the gold ring is the goal, drawn on them)",
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
            views.trajectories(v, names, clickable=clickable),
            key="plan/traj",
            on_select="rerun" if clickable else "ignore",
            selection_mode="points",
        )
        if clickable:
            _goal_clicked(run_id, picked)
    # beside the plane, not in the row above: a sixth button there cut the others' names
    pick = g[0].columns([1, 3], vertical_alignment="center")
    pick[0].button(
        "Goal: this",
        on_click=_command,
        args=(run_id, "goal"),
        icon=":material/flag:",
        help="Take where the disc (Push: the block, Kitchen: the hand) is now as the goal: "
        "the episode starts again from its start, and the agent plans to get there. With "
        "the latent task term it plans to the goal's observation (the scene with it there; "
        "a pixel model: its image), no label read.",
    )
    if len(run.scene_goal_signals) == 2:
        pick[1].caption("or click the plane above: the goal goes there")
    if v.terms:
        g[1].plotly_chart(views.term_bars(v.terms, hard, off), key="plan/terms")
    shown = list(v.shown)
    if shown:
        g[1].plotly_chart(views.signals_over_time(v, shown, {}), key="plan/signals")
    if v.goal_steps is not None:  # the model has a steps-to-go head (worldmodels/distance.py)
        g[0].plotly_chart(views.goal_distance(v, list(run.scene_goal_signals)), key="plan/goal")
    fig = views.guardrails(v)
    if fig is not None:
        st.plotly_chart(fig, key="plan/guard")
    fast = run.running
    if SS.get("plan/fast") != fast:  # poll fast only while the agent runs
        SS["plan/fast"] = fast
        st.rerun()


# --- the page ---------------------------------------------------------------------------------
def _show_settings(s: PlanSettings) -> None:
    """The sidebar's widgets set to ``s`` (before they are drawn): a reopened tab shows
    its run's settings, a replayed failure the stress test's."""
    SS["plan/scene"], SS[f"plan/ckpt/{s.scene}"] = s.scene, s.checkpoint
    SS["plan/planner"], SS["plan/samples"] = s.planner, s.samples
    SS["plan/horizon"], SS["plan/iterations"] = s.horizon, s.iterations
    SS["plan/fallback"], SS[f"plan/seed/{s.scene}"] = s.fallback, s.seed
    SS["plan/repair"], SS["plan/actor"] = s.repair, s.actor
    home.show_guard("plan/margin", s.margin, s.delta, s.margin_steps)
    if s.actor != "planner":
        SS["plan/policy"] = s.policy
    SS["plan/hierarchy"] = bool(s.high)


def start_here() -> None:
    """A short guide at the top of the default page (closed: an expander whose state
    changed between reruns would move the whole page under a user's pointer)."""
    with st.expander(":material/flag: Start here: what this page shows, and where to go next"):
        st.markdown(
            "An agent plans in a real PyBullet scene with a world model it learned: every "
            "step it imagines hundreds of futures in latent space, scores them with the cost "
            "(a task objective plus guardrails) and acts on the first action of the best. "
            "On the left the scene as it is; beside it the chosen plan decoded, the sampled "
            "futures, and what it imagines each signal will do next to what really happens.\n"
            "1. **Step** plans once and acts; **Run** keeps going; **New episode** draws "
            "another start and goal. A click on the plane puts the goal there; **Goal: "
            "this** makes the scene as it is now the goal.\n"
            "2. **Edit the cost** below while it plans: add a term such as "
            "`relu(speed - 0.3)`, soft (a weight: a price) or hard (a limit: a rule). The "
            "next plan uses it; a typing error is shown with its column and the last good "
            "version stays in force.\n"
            "3. **Kitchen** (sidebar, Scene): a knife rule is on, slow near the person. "
            "*Guardrails: predicted vs real* shows where imagination and reality disagree; "
            "the *Guardrail margin* gives the rule room for the model's measured error.\n\n"
            "Then: **Scene** to drive by hand and collect data, **Train** to learn a world "
            "model of your own, **Experiments** to compare guardrail designs over the same "
            "seeded episodes, **Learn** for the architecture behind it all."
        )


def page() -> None:
    run = current("plan")
    if run is not None and "plan/scene" not in SS:
        _show_settings(run.settings)  # a reopened tab: show the run's own settings
    st.title("Plan")
    start_here()
    side = st.sidebar
    scene = side.selectbox(
        "Scene", list(scenes.SCENES), key="plan/scene", format_func=str.capitalize
    )
    found = home.checkpoints(scene)
    if not found:
        st.warning(f"No world model for {scene} yet: train one on the Train page.")
        return
    labels = {c.path: c.label for c in found}
    ckpt = side.selectbox(
        "World model", list(labels), format_func=labels.get, key=f"plan/ckpt/{scene}"
    )
    planner = side.selectbox(
        "Planner", list(PLANNERS), key="plan/planner", format_func=home.PLANNER_NAMES.get
    )
    samples = side.select_slider("Samples N", SAMPLES, key=seeded("plan/samples", 300))
    horizon = side.slider("Horizon H", 2, 32, key=seeded("plan/horizon", 16))
    iterations = side.slider("Iterations", 1, 10, key=seeded("plan/iterations", 3))
    repair = side.slider(
        "Repair infeasible plans",
        0,
        100,
        step=10,
        key=seeded("plan/repair", PlannerConfig.repair),
        help="Each search round, this many of the cheapest plans that break a hard term are "
        "slowed down (x0.8 ... x0.2) until they keep it, and join the next round. A rule "
        "that binds in part of the space (slow down when the knife is low) otherwise leaves "
        "no sampled plan that enters that part: the agent hovers at its edge (issue 14).",
    )
    fallback = side.radio(
        "When no plan is safe",
        ["least_violating", "stop"],
        key="plan/fallback",
        format_func={"least_violating": "act on the least violating", "stop": "stop"}.get,
    )
    margin, delta, margin_steps = home.guard_input(side, "plan/margin", ckpt)
    found = home.policies(ckpt)
    actor, policy = "planner", ""
    if found:
        actor = side.radio(
            "Who decides",
            list(home.ACTOR_NAMES),
            key="plan/actor",
            format_func=home.ACTOR_NAMES.get,
            help="System 2 plans over the horizon every step; System 1 is a policy distilled "
            "from that planner (./lab distill): one pass, no search, and a guardrail it "
            "was distilled under is trained in, not checked.",
        )
        if actor != "planner":
            policy = side.selectbox("Policy", list(found), key="plan/policy",
                                    format_func=found.get)  # fmt: skip
    else:
        side.caption(
            "System 1: no policy for this model yet (`./lab distill --scene "
            f"{scene} --checkpoint {ckpt}`)"
        )
    speed = side.slider("Pause between steps (s)", 0.0, 1.0, 0.0, 0.1, key="plan/speed")
    # each scene's own episode counter, from the episode its page starts on
    seed = int(SS.setdefault(f"plan/seed/{scene}", home.START_SEED.get(scene, 0)))
    settings = PlanSettings(scene, ckpt, planner, samples, horizon, iterations, fallback, seed)
    settings.speed, settings.margin, settings.delta = speed, margin, delta
    settings.repair, settings.margin_steps = int(repair), margin_steps
    settings.actor, settings.policy = actor, policy
    settings.high, high_label = high_level_input(side, ckpt, scene, actor)
    if scene == "kitchen" and side.toggle(
        "Person starts near the board",
        True,
        key="plan/near",
        help="otherwise the walking person is rarely near the arm (applies to the next episode)",
    ):
        settings.options = {"person_near": True}
    if _model(scene) is None:
        if run is not None and run.settings.scene == scene:
            load_editor(scene, run.costs)  # a reopened tab: the cost the agent plans with
        else:
            load_editor(
                scene, home.preset_costs(scene)[home.DEFAULT_PRESET.get(scene, "task only")]
            )
    try:
        # what a term may read: the model's probed signals and the goal's values
        signals = term_names(
            read_config(ckpt)["model"]["signals"], scenes.scene_class(scene).TASK_SIGNALS
        )
    except (LabError, KeyError, TypeError) as e:
        st.error(f"This world model cannot be used: {e}")
        return
    if (
        run is None
        or not run.active
        or (run.settings.scene, run.settings.checkpoint)
        != (
            scene,
            ckpt,
        )
    ):
        if run is not None:
            run.stop()
        # terms that do not compile are left out by the agent's Cost (and shown here)
        run = adopt(PlanRun(settings, editor_costs(scene), device()))
        run.wait(lambda w: w.version >= 1, timeout=30)
    elif _search(run.settings) != _search(settings):
        run.settings.speed = speed
        SS["plan/await_version"] = run.view().version
        run.send("search", settings)
    run.settings.speed = speed
    run.settings.options = settings.options  # used by the next reset
    st.caption(
        f"Planning on **{device()}** with {labels[ckpt]} · "
        + (
            f"System 1: {found[policy]} acts; beside it, what "
            if actor == "policy"
            else "the policy's proposal joins "
            if actor == "both"
            else ""
        )
        + f"{home.PLANNER_NAMES[planner]}, N={samples}, H={horizon}, {iterations} iterations"
        + (" would choose" if actor == "policy" else "")
        + (
            f" · hierarchy: {high_label} proposes a subgoal "
            "8 steps ahead every step (its chain of "
            f"{HierarchyConfig.chunks} drawn), the planner plans {HierarchyConfig.horizon} "
            "steps on the goal with the way to it beside"
            if settings.high
            else ""
        )
        + f" · run `{run.id}` (in the URL: reopen it to find this agent again)"
    )
    # While the agent runs, each poll redraws every figure: on 2 cores a faster poll
    # took the CPU (and the GIL) from the planner itself. While it is paused nothing
    # changes but by this page's own buttons (which redraw at once): the slow poll only
    # keeps the run watched and follows another tab on the same run, and five paused
    # pages of a class redrawing every 2 s took the server from the one that stepped.
    # Set before every poll: a first poll that found it unset (or stale) reran the page,
    # and a Step pressed meanwhile waited for that (5-9 s with five people: issue 16).
    SS["plan/fast"] = run.running
    poll = POLL_RUNNING if run.running else POLL_PAUSED
    st.fragment(run_every=poll)(live)(run.id, scene)
    in_force = {t.name: t.expression for t in run.view().in_force}
    cost_editor(run, scene, signals, in_force)
    replay_picker(run, scene)
    with st.expander("Episode video"):
        fmt = st.radio("Format", ["gif", "mp4"], horizontal=True, key="plan/video_fmt")
        if st.button("Make the video of this episode"):
            try:
                SS["plan/video"] = (run.id, fmt, run.video(fmt))
            except LabError as e:
                st.error(str(e))
        made = SS.get("plan/video")
        if made is not None and made[0] != run.id:  # another agent's (a scene switch): gone
            del SS["plan/video"]
        elif made is not None:
            _, fmt, data = made
            st.download_button(
                f"Download {fmt}",
                data,
                file_name=f"{scene}-episode.{fmt}",
                mime="image/gif" if fmt == "gif" else "video/mp4",
            )


def _search(s: PlanSettings) -> tuple:
    return (
        s.planner,
        s.samples,
        s.horizon,
        s.iterations,
        s.fallback,
        s.margin,
        s.delta,
        s.margin_steps,
        s.repair,
        s.actor,
        s.policy,
        s.high,
    )


def high_level_input(side, ckpt: str, scene: str, actor: str) -> tuple[str, str]:
    """The switch for hierarchical planning: the folder and label of the learned high level
    it turns on, or ("", "") (flat). Offered when one was made on this model and the
    planner decides."""
    found = home.high_levels(ckpt)
    if not found:
        if scene in HAND_SUBGOALS:  # the scenes a person wrote a subgoal for
            side.caption(f"Hierarchy: no high level for this model yet (`./lab highlevel "
                         f"--checkpoint {ckpt} --data data/{scene}`)")  # fmt: skip
        return "", ""
    on = side.toggle(
        "Learned high level (hierarchy)",
        False,
        key="plan/hierarchy",
        disabled=actor != "planner",
        help="A high level learned from the exploration data, in the same latent space, "
        "proposes every step the latent to be at 8 steps on towards the goal (its subgoal "
        "policy; `./lab evaluate --high-method plan` plans over latent macro-actions "
        "instead), and the planner plans 8 steps on the goal with the distance to that "
        "subgoal beside it: the way through the door, learned, no subgoal term written "
        "(agents/hierarchy.py). A subgoal term in the cost below still counts: switch it "
        "off to see the high level alone.",
    )
    if not (on and actor == "planner"):
        return "", ""
    folder = next(iter(found))
    return folder, found[folder]
