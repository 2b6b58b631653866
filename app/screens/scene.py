"""Scene: look at a scene, drive it by hand, set a goal, collect exploration data."""

from __future__ import annotations

import os
from pathlib import Path

import streamlit as st

import scenes
from app import home
from app.state import adopt, current, fmt_eta, registry, seeded
from app.workers import CollectRun, SceneRun
from scenes.collect import CollectConfig

SS = st.session_state
FLOOR_KEYS = {"←": (-1, 0), "→": (1, 0), "↑": (0, 1), "↓": (0, -1)}
KITCHEN_KEYS = {
    "x-": (-1, 0, 0),
    "x+": (1, 0, 0),
    "y-": (0, -1, 0),
    "y+": (0, 1, 0),
    "down": (0, 0, -1),
    "up": (0, 0, 1),
}


def _act(run_id: str, action) -> None:
    run = registry().get(run_id, "scene")
    if run is not None:
        SS["scene/await"] = run.view().version
        run.send("act", [a * SS.get("scene/power", 0.6) for a in action])


def _send(run_id: str, name: str, *args) -> None:
    run = registry().get(run_id, "scene")
    if run is not None:
        SS["scene/await"] = run.view().version
        run.send(name, *args)


def drive(run_id: str, key: str) -> None:
    run = registry().get(run_id, "scene")
    if run is None:
        st.info("This scene is gone; reload the page.")
        return
    run.touch()
    v = run.view()
    if "scene/await" in SS:
        old = SS.pop("scene/await")
        v = run.wait(lambda w: w.version > old)
    cls = scenes.scene_class(key)
    dims = cls.ACTION_DIM
    c = st.columns([1.3, 1])
    if v.frame is not None:
        c[0].image(v.frame, caption=f"{key}: step {v.t}", width="stretch")
    with c[1]:
        st.markdown(f"**Drive by hand** (each press is one {cls.CONTROL_DT:.3g} s step)")
        st.slider("Push strength", 0.1, 1.0, 0.6, 0.1, key="scene/power")
        keys = KITCHEN_KEYS if key in home.KITCHENS else FLOOR_KEYS
        cols = st.columns(len(keys))
        for col, (label, a) in zip(cols, keys.items(), strict=False):
            # an agent with more action dimensions (Drone 4, Ant 8): the keys push the
            # first two, the rest stay 0
            a = (tuple(a) + (0,) * dims)[:dims]
            col.button(label, key=f"scene/key/{label}", on_click=_act, args=(run_id, a))
        if scenes.is_foreign(key):
            # what the package's agents make of their first two actions (measured: 20
            # steps of +1 on the first drive the car 0.67 m along its heading, the
            # second alone moves it 0.01 m)
            means = {
                "Ball": "→ ← push the ball along x, ↑ ↓ along y",
                "Car": "→ drives the car forward along its heading, ← backward; ↑ ↓ steer",
            }.get(cls.AGENT, "Bullet-Safety-Gym's agent reads them its own way")
            st.caption(f"The arrows set the first two of the task's {dims} actions: {means}.")
        scripted = cls.SCRIPTED  # Bullet-Safety-Gym's tasks have no scripted controller
        cols = st.columns(3 if scripted else 2)
        cols[0].button("Wait a step", on_click=_act, args=(run_id, (0,) * dims))
        if scripted:
            cols[1].button(
                "Scripted step",
                on_click=_send,
                args=(run_id, "scripted"),
                help="one step of the scene's own scripted controller",
            )
        cols[-1].button("New episode", on_click=_send, args=(run_id, "reset", v.t + 1, None))
        if v.message:
            st.caption(v.message + (" ✓" if v.success else ""))
        st.markdown("**Signals** (what probes learn and guardrails read)")
        units = {s.name: s.unit for s in cls.SIGNALS}
        st.markdown(
            # a plain number (a reward, a cost) has unit "1": nothing is written after it
            "\n".join(
                f"- `{k}` = {val:.3f} {'' if units.get(k) == '1' else units.get(k, '')}"
                for k, val in v.signals.items()
            )
        )
        if not cls.TASK_SIGNALS:  # a Bullet-Safety-Gym task: reward and cost, no goal
            return
        st.markdown("**Goal** (" + ", ".join(cls.TASK_SIGNALS) + ")")
        gc = st.columns(len(cls.TASK_SIGNALS))
        goal = [
            gcol.number_input(n, float(lo), float(hi), float(g), 0.05, key=f"scene/goal/{key}/{n}")
            for gcol, n, lo, hi, g in zip(
                gc, cls.TASK_SIGNALS, cls.GOAL_LOW, cls.GOAL_HIGH, v.goal, strict=False
            )
        ]
        st.button("Set this goal (new episode)", on_click=_send, args=(run_id, "reset", v.t, goal))


def collect_panel(key: str, then_train: bool = False) -> None:
    """The collection form and its progress. ``then_train``: on the Train page, which
    shows its training form (a full rerun) once the data are in."""
    st.subheader("Collect exploration data")
    refused = home.refusal(key)  # the Train page's picker offers refused tasks too
    if refused:
        st.error(refused, icon=":material/block:")
        return
    how = (
        "Random walks with correlated noise mixed with noisy scripted runs"
        if scenes.scene_class(key).SCRIPTED
        else "Random walks with correlated noise (the task has no scripted controller)"
    )
    st.caption(
        f"{how}, in worker processes; the world model learns from these. Stop any time: "
        "finished shards are kept and collecting again goes on from them."
    )
    run = current("collect")
    c = st.columns(4)
    episodes = c[0].number_input(
        "Episodes", 10, 5000, step=10, key=seeded("scene/col_episodes", 300)
    )
    pixels = c[1].toggle(
        "Pixels (64x64)",
        key=seeded("scene/col_pixels", True),
        help="needed for pixel world models and decoded frames",
    )
    cores = os.cpu_count() or 1
    workers = c[2].number_input("Processes", 1, cores, key=seeded("scene/col_workers", cores))
    name = c[3].text_input("Folder name", key=seeded(f"scene/col_name/{key}", key))
    busy = run is not None and run.active
    if st.button("Collect", disabled=busy, type="primary"):
        cfg = CollectConfig(
            scene=key,
            out=str(home.DATA / name),
            episodes=int(episodes),
            workers=int(workers),
            pixels=pixels,
        )
        run = adopt(CollectRun(cfg))
    if run is not None:
        st.fragment(run_every=0.5 if run.active else None)(collect_progress)(run.id, then_train)
    have = home.datasets()
    if have:
        st.markdown(
            "Datasets: "
            + ", ".join(f"`{folder}` ({m['scene']}, {m['episodes']} ep)" for folder, m in have)
        )


def collect_progress(run_id: str, then_train: bool = False) -> None:
    run = registry().get(run_id, "collect")
    if run is None:
        return
    run.touch()
    frac = run.done / max(run.total, 1)
    st.progress(
        frac,
        text=f"{run.title}: {run.done}/{run.total} episodes · {run.status} "
        f"{fmt_eta(run.eta) if run.active else ''}",
    )
    if run.status == "error":
        st.error(run.error)
    c = st.columns(4)
    if run.active:
        c[0].button("Stop", on_click=run.stop, key="scene/col_stop")
    elif run.done < run.total:
        c[0].button("Go on", on_click=run.restart, key="scene/col_resume")
    elif then_train and run.status == "finished" and home.datasets():
        # the Train page now has data: its form replaces this panel (once per run: a
        # dataset gone since would otherwise rerun the page for ever)
        if SS.get("train/collected") != run.id:
            SS["train/collected"] = run.id
            st.rerun()
    else:
        c[0].success("Done: train on it on the Train page.")


def _settings_from(run: CollectRun) -> None:
    """A reopened ?collect= tab: the form shows the run's settings, not the defaults."""
    cfg = run.cfg
    SS["scene/scene"], SS["scene/col_episodes"] = cfg.scene, cfg.episodes
    SS["scene/col_pixels"], SS["scene/col_workers"] = (
        cfg.pixels,
        min(cfg.workers, os.cpu_count() or 1),
    )
    SS[f"scene/col_name/{cfg.scene}"] = Path(cfg.out).name


def page() -> None:
    st.title("Scene")
    collecting = current("collect")
    if collecting is not None and "scene/scene" not in SS:
        _settings_from(collecting)
    key = st.sidebar.selectbox(
        "Scene", home.scene_choices(), key="scene/scene", format_func=home.scene_label
    )
    refused = home.refusal(key)  # a Bullet-Safety-Gym task the lab cannot make replay
    if refused:
        st.error(refused, icon=":material/block:")
        stale = current("scene")
        if stale is not None:
            stale.stop()
        return
    cls = scenes.scene_class(key)
    doc = (cls.__doc__ or "").strip().split("\n\n")[0]
    st.caption(doc)
    if not cls.TASK_SIGNALS:
        st.caption(
            "A Bullet-Safety-Gym task: no goal to set. Its own figures are the per-step "
            "`reward` (what the agent maximises) and `cost` (1 on a step that breaks the "
            "task's rule), with the parts the cost is made of."
        )
    run = current("scene")
    if run is None or not run.active or run.scene_name != key:
        if run is not None:
            run.stop()
        run = adopt(SceneRun(key))
        run.wait(lambda w: w.version > 0, timeout=20)
    st.fragment(drive)(run.id, key)
    collect_panel(key)
