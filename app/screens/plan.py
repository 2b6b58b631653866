"""Plan: the agent imagines, the cost judges, the scene answers; edit the cost live.

The agent runs in a ``PlanRun`` worker (app/planrun.py); this page sends it
commands and draws its ``view()`` in a fragment that polls it (the live view,
app/screens/plan_live.py). The cost editor (app/screens/plan_editor.py) is
plain widgets drawn from state of its own: every edit is checked at once and
sent to the worker, which re-plans with it; a term that does not compile keeps
its last good version in force there. This module is the page: the sidebar's
settings, the agent they make, and the sections in order.
"""

from __future__ import annotations

import streamlit as st

import scenes
from agents.cost import term_names
from agents.hierarchy import HAND_SUBGOALS, HierarchyConfig
from agents.planners import PLANNERS, PlannerConfig
from app import home
from app.planrun import PlanRun, PlanSettings
from app.screens.plan_editor import cost_editor, editor_costs, has_editor, load_editor
from app.screens.plan_live import POLL_PAUSED, live, replay_picker, show_settings
from app.state import adopt, current, device, registry, seeded
from common.errors import LabError
from worldmodels.checkpoint import read_config

SS = st.session_state
SAMPLES = [8, 12, 20, 30, 50, 100, 200, 300, 500, 1000]


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
            "the *Guardrail margin* gives the rule room for the model's measured error.\n"
            "4. **Bullet-Safety-Gym** (sidebar, Scene: SafetyBallCircle and the field's other "
            "safe-RL tasks): no goal; the agent maximises the task's own reward with the "
            "task's rule as a hard term, and the status line shows the benchmark's figures, "
            "the episode's return and cost.\n\n"
            "Then: **Scene** to drive by hand and collect data, **Train** to learn a world "
            "model of your own, **Experiments** to compare guardrail designs over the same "
            "seeded episodes, **Learn** for the architecture behind it all."
        )


def page() -> None:
    run = current("plan")
    if run is not None and "plan/scene" not in SS:
        show_settings(run.settings)  # a reopened tab: show the run's own settings
    st.title("Plan")
    start_here()
    side = st.sidebar
    scene = side.selectbox(
        "Scene", home.scene_choices(), key="plan/scene", format_func=home.scene_label
    )
    refused = home.refusal(scene)  # a Bullet-Safety-Gym task the lab cannot make replay
    if refused:
        st.error(refused, icon=":material/block:")
        return
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
    samples = side.select_slider(
        "Samples N",
        SAMPLES,
        key=seeded("plan/samples", PlannerConfig.samples),
        help=f"Plans sampled each round. The default, {PlannerConfig.samples} with iCEM's "
        "three settings below, reached the goal as often and as fast as plain CEM at "
        "N = 1000 on Reach, Wall and Kitchen (`./lab bench search_efficiency`).",
    )
    horizon = side.slider("Horizon H", 2, 32, key=seeded("plan/horizon", 16))
    iterations = side.slider("Iterations", 1, 10, key=seeded("plan/iterations", 3))
    repair = side.slider(
        "Repair infeasible plans",
        0,
        100,
        step=10,
        key=seeded("plan/repair", PlannerConfig.repair),
        help="Each search round, the cheapest plans that break a hard term are repaired: "
        "copies of them slowed down (x0.8 ... x0.2), this many in all, join the next round, "
        "whose ranking keeps the ones that hold the rules. A rule "
        "that binds in part of the space (slow down when the knife is low) otherwise leaves "
        "no sampled plan that enters that part: the agent hovers at its edge.",
    )
    noise_beta = side.slider(
        "Noise colour β",
        0.0,
        3.0,
        step=0.5,
        key=seeded("plan/noise_beta", PlannerConfig.noise_beta),
        help="iCEM's coloured noise: the samples' power falls as 1/f^β along the horizon. "
        "0 is white noise (every step drawn afresh); at 2 a sample holds its direction "
        "for several steps, as a body's actions do.",
    )
    keep = side.slider(
        "Elites kept",
        0.0,
        0.5,
        step=0.1,
        key=seeded("plan/keep", PlannerConfig.keep),
        help="iCEM's memory: this share of each round's elites joins the next round, and of "
        "the last round the next step's search, so a good plan found once is not lost.",
    )
    decay = side.slider(
        "Rounds shrink by",
        1.0,
        2.0,
        step=0.25,
        key=seeded("plan/decay", PlannerConfig.decay),
        help="iCEM's decay: round i samples N / decay^i plans, as the search narrows "
        "(1: every round N; β 0, none kept and 1 is plain CEM).",
    )
    fallback = side.radio(
        "When no plan is safe",
        ["least_violating", "stop"],
        key="plan/fallback",
        format_func={"least_violating": "act on the least violating", "stop": "stop"}.get,
    )
    # the margin and the high level are the scene's own: another scene's keys hold its own
    margin, delta, margin_steps, covers = home.guard_input(side, f"plan/margin/{scene}", ckpt)
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
            policy = side.selectbox("Policy", list(found), key="plan/policy", format_func=found.get)
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
    settings.margin_signals = covers
    settings.noise_beta, settings.keep, settings.decay = (
        float(noise_beta),
        float(keep),
        float(decay),
    )
    settings.actor, settings.policy = actor, policy
    settings.high, high_label = high_level_input(side, ckpt, scene, actor)
    if scene in home.KITCHENS and side.toggle(
        "Person starts near the board",
        True,
        key="plan/near",
        help="otherwise the walking person is rarely near the arm (applies to the next episode)",
    ):
        settings.options = {"person_near": True}
    if not has_editor(scene):
        if run is not None and run.settings.scene == scene:
            load_editor(scene, run.costs)  # a reopened tab: the cost the agent plans with
        else:
            load_editor(scene, home.preset_costs(scene)[home.default_preset(scene)])
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
        run = adopt(PlanRun(settings, editor_costs(scene), device(), registry().placement))
        run.wait(lambda w: w.version >= 1, timeout=30)
    elif _search(run.settings) != _search(settings):
        run.settings.speed = speed
        SS["plan/await_version"] = run.view().version
        run.send("search", settings)
    run.settings.speed = speed
    run.settings.options = settings.options  # used by the next reset
    where = registry().placement
    if where is not None and where.problem:
        st.warning(f"The agents compute on this machine: {where.problem}")
    st.caption(
        f"Planning on **{device()}**"
        + (f" ({where.label()})" if where is not None else "")
        + f" with {labels[ckpt]} · "
        + (
            f"System 1: {found[policy]} acts; beside it, what "
            if actor == "policy"
            else "the policy's proposal joins "
            if actor == "both"
            else ""
        )
        + f"{home.PLANNER_NAMES[planner]}, N={samples}, H={horizon}, {iterations} iterations"
        + (f", noise colour β {noise_beta:g}" if noise_beta else "")
        + (f", {keep:.0%} of elites kept" if keep else "")
        + (f", rounds shrink by {decay:g}" if decay != 1 else "")
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
    # While it runs, a page redraws as often as the class's pages can afford
    # (app.runs.DrawPace). Set before every poll: a first poll that found it unset (or
    # stale) reran the page, and a Step pressed meanwhile waited for that (5-9 s with five
    # people on one server).
    poll = registry().redraw(run) if run.running else POLL_PAUSED
    SS["plan/poll"] = poll
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
        s.margin_signals,
        s.repair,
        s.noise_beta,
        s.keep,
        s.decay,
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
            side.caption(
                f"Hierarchy: no high level for this model yet (`./lab highlevel "
                f"--checkpoint {ckpt} --data data/{scene}`)"
            )
        return "", ""
    key = home.remember(f"plan/hierarchy/{scene}", False)
    on = side.toggle(
        "Learned high level (hierarchy)",
        key=key,
        disabled=actor != "planner",
        help="A high level learned from the exploration data, in the same latent space, "
        "proposes every step the latent to be at 8 steps on towards the goal (its subgoal "
        "policy; `./lab evaluate --high-method plan` plans over latent macro-actions "
        "instead), and the planner plans 8 steps on the goal with the distance to that "
        "subgoal beside it: the way through the door, learned, no subgoal term written "
        "(agents/hierarchy.py). A subgoal term in the cost below still counts: switch it "
        "off to see the high level alone.",
    )
    home.keep(key, on)
    if not (on and actor == "planner"):
        return "", ""
    folder = next(iter(found))
    return folder, found[folder]
