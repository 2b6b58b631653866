"""Plan's cost editor: its state, kept per scene in keys of the page's own, and its widgets.

Every edit is checked at once (message and column beside the term) and sent to the
agent's worker (app/planrun.py), which re-plans with it; a term that does not compile
keeps its last good version in force there. The page (app/screens/plan.py) draws it.
"""

from __future__ import annotations

import copy
import secrets

import streamlit as st

import scenes
from agents.cost import CostSet, Term
from agents.expressions import ExpressionError, compile_expression
from app import home, views
from app.planrun import PlanRun
from app.state import registry
from common.errors import LabError

SS = st.session_state


# --- the cost editor's state ----------------------------------------------------------------
# What the editor shows lives in a key of the page's own, ``plan/editor/<scene>``, never
# only in widget keys: Streamlit deletes a widget's key at the end of any run that does not
# draw it (another page, another scene), and the editor then came back blank and its next
# edit sent the blank set, every guardrail gone (docs/pitfalls.md, "Streamlit widget state").
# The widgets are drawn from that state and every edit is copied back into it first.
FIELDS = ("name", "expr", "kind", "value", "on")  # a row's fields, each a widget
# characters an expression box shows whole at the page's width; a longer expression is
# written out in full under its row (Push's subgoal, 241 characters, was cut)
LONG = 50


def _model(scene: str) -> dict | None:
    """The editor's state for ``scene``: task, task weight and rows (uid + FIELDS)."""
    return SS.get(f"plan/editor/{scene}")


def has_editor(scene: str) -> bool:
    """Whether the editor holds a cost set for ``scene`` in this session."""
    return _model(scene) is not None


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
    """Put a cost set into the editor (its widgets are drawn from it), with the scene's
    kind of task term (a set saved on another kind of scene: ``home.fit_task``)."""
    SS[f"plan/editor/{scene}"] = _as_model(home.fit_task(scene, costs))


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


def load_set(run_id: str, scene: str, costs: CostSet, label: str = "") -> None:
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
    load_set(run_id, scene, costs, f"the file {up.name}")


def cost_editor(run: PlanRun, scene: str, signals: list[str], in_force: dict[str, str]) -> None:
    args = (run.id, scene)
    _show_model(scene)
    st.subheader("Cost")
    over = (
        "the task's signals (no goal: the task term maximises its `reward`)"
        if scenes.is_foreign(scene)
        else "the scene's signals and the goal's values"
    )
    st.caption(
        f"The task term plus guardrail terms over {over}: "
        + ", ".join(f"`{s}`" for s in signals)
        + ". Soft: weight x expression is added to the cost. Hard: the expression must stay "
        "<= the limit at every step of the plan. Edits apply to the next plan."
    )
    c = st.columns([2, 1, 3])
    c[0].selectbox(
        "Task term",
        ["reward"] if scenes.is_foreign(scene) else ["signal", "latent"],
        key=f"plan/task/{scene}",
        format_func=lambda k: {
            "signal": "signal distance (probed task signals to the goal)",
            "latent": "latent distance (to the goal's embedding)",
            "reward": "the task's reward (probed, maximised: the task has no goal)",
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
        if len(text) > LONG:  # the box shows its start only: the whole of it, wrapped
            st.caption(f"**{label}** in full: {views.plain(text)}")
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
                on_click=load_set,
                args=(*args, costs, f"the preset '{label}'"),
            )
        for stem, message in broken.items():
            st.caption(f"{stem}: {message}")
        for name, costs in saved.items():
            st.button(
                f"saved: {name}",
                key=f"saved/{name}",
                on_click=load_set,
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
