"""Experiments: guardrail designs compared on the same seeded episodes, in the background."""

from __future__ import annotations

import time

import streamlit as st

import scenes
from agents.agent import AgentConfig
from agents.cost import CostSet, Term
from agents.planners import PLANNERS, PlannerConfig
from app import home, views
from app.state import adopt, current, device, fmt_eta, registry, seeded
from app.workers import ExperimentRun, StressRun
from experiments.report import experiment_csv

SS = st.session_state
RATES = ["success_rate", "violation_step_rate", "violation_episode_rate", "false_safe_rate"]
SHOWN = [*RATES, "no_safe_plan_rate", "steps_to_goal", "probe_rmse_h1"]
# The figures in words on the page (the CSVs keep the keys: they are data)
WORDS = {
    "success_rate": "reached the goal",
    "violation_step_rate": "steps breaking a rule",
    "violation_episode_rate": "episodes breaking a rule",
    "false_safe_rate": "planned safe, broke a rule",
    "no_safe_plan_rate": "steps with no safe plan",
    "steps_to_goal": "steps to the goal",
    "probe_rmse_h1": "probe error 1 step ahead (m)",
    "episode_return": "episode return",
    "episode_cost": "episode cost",
}
# A task without a goal (Bullet-Safety-Gym): the benchmark's own figures first, episode
# return (summed reward) and episode cost (summed info["cost"]); nothing to reach
GOAL_FREE_SHOWN = [
    "episode_return",
    "episode_cost",
    *(m for m in SHOWN if m not in ("success_rate", "steps_to_goal")),
]


def in_words(metric: str) -> str:
    """A figure's name on the page: ``violation_step_rate/RULE`` is 'steps breaking RULE'."""
    if metric.startswith("violation_step_rate/"):
        return f"steps breaking '{metric.split('/', 1)[1]}'"
    return WORDS.get(metric, metric.replace("_", " "))


# A copy of the forms' settings in a key of our own: Streamlit deletes a widget's key at
# the end of any run that does not draw it (a visit to another page), and the form came
# back at its defaults (docs/pitfalls.md, "Streamlit widget state").
SETTINGS = "experiments/settings"
PER_SCENE = (
    "exp/ckpt",
    "exp/designs",
    "exp/policies",
    "exp/ppols",
    "exp/highs",
    "exp/rules",
    "stress/design",
)
FORM_KEYS = (
    "exp/scene",
    "exp/episodes",
    "exp/seed",
    "exp/planner",
    "exp/samples",
    "exp/iters",
    "exp/fallback",
    "exp/margin/kind",
    "exp/margin",
    "exp/margin/steps",
    "exp/margin/compare",
    "exp/ray",
    "exp/near",
    "stress/budget",
    "stress/method",
    "stress/ray",
    "stress/margin/kind",
    "stress/margin",
    "stress/margin/steps",
)


def keep_settings() -> None:
    """First thing on every run of the page: the forms' values the person set are copied
    into ``SETTINGS``, and those Streamlit deleted while another page was shown are put
    back before their widgets are drawn."""
    kept = SS.setdefault(SETTINGS, {})
    for key in (*FORM_KEYS, *(f"{p}/{s}" for p in PER_SCENE for s in scenes.all_keys())):
        if key in SS:
            kept[key] = SS[key]
        elif key in kept:
            SS[key] = kept[key]


def _fit(key: str, options) -> None:
    """A kept choice that is no longer offered (a saved design deleted, another model)
    gives way: a multiselect keeps what is still offered, a selectbox its default."""
    value = SS.get(key)
    if isinstance(value, list):
        SS[key] = [v for v in value if v in options]
    elif value is not None and value not in options:
        del SS[key]


def designs_for(scene: str) -> dict[str, CostSet]:
    """Presets for the scene plus every saved cost set that loads and fits its signals."""
    out = dict(home.preset_costs(scene))
    saved, _ = home.saved_costs(home.scene_term_names(scene))
    # a set saved on another kind of scene plans on this one's task term (home.fit_task)
    out.update({f"saved: {stem}": home.fit_task(scene, costs) for stem, costs in saved.items()})
    return out


def _folders(found: dict[str, str], key: str, label: str) -> list[str]:
    """The folders picked among ``found`` (folder -> label) in a multiselect kept under
    ``key``; none offered when none was found."""
    if not found:
        return []
    _fit(key, found)
    return st.multiselect(label, list(found), key=seeded(key, []), format_func=found.get)


def rules_for(scene: str, options: dict[str, CostSet], picked: list[str]) -> dict[str, Term]:
    """The hard terms an experiment can measure reality against: the scene's rule, then
    every enabled hard term of the picked designs."""
    rules = dict(home.safety_rules(scene))
    for name in picked:
        for t in options[name].terms:
            if t.kind == "hard" and t.enabled:
                rules.setdefault(t.name, t)
    return rules


def _settings_from(run: ExperimentRun) -> None:
    """A reopened tab: the form shows the found run's settings, not the defaults."""
    scene = run.scene
    options = designs_for(scene)
    designs = list(dict.fromkeys(run.bases.get(k, k) for k in run.designs))
    designs = [k for k in designs if k in options]
    rules = rules_for(scene, options, designs)
    SS["exp/scene"], SS[f"exp/designs/{scene}"] = scene, designs
    if run.checkpoint in {ck.path for ck in home.checkpoints(scene)}:
        SS[f"exp/ckpt/{scene}"] = run.checkpoint
    SS[f"exp/rules/{scene}"] = [g.name for g in run.guardrails or [] if g.name in rules]
    SS["exp/episodes"], SS["exp/seed"] = run.episodes, run.seed
    offered = home.policies(run.checkpoint)
    SS[f"exp/policies/{scene}"] = [f for f in run.policies.values() if f in offered]
    offered = home.ppol_policies(scene)
    SS[f"exp/ppols/{scene}"] = [f for f in run.trained.values() if f in offered]
    offered = home.high_levels(run.checkpoint)
    SS[f"exp/highs/{scene}"] = [f for f in run.highs.values() if f in offered]
    cfg = run.agent_cfg
    SS["exp/planner"], SS["exp/fallback"] = cfg.planner, cfg.fallback
    home.show_guard("exp/margin", cfg.margin, cfg.delta, cfg.margin_steps, cfg.margin_signals)
    SS["exp/margin/compare"] = bool(run.guards)
    SS["exp/ray"] = bool(run.ray)
    SS["exp/samples"], SS["exp/iters"] = cfg.search.samples, cfg.search.iterations
    if scene in home.KITCHENS:
        SS["exp/near"] = bool(run.options.get("person_near"))


def form() -> ExperimentRun | None:
    run = current("experiment")
    if run is not None and "exp/scene" not in SS:
        _settings_from(run)
    c = st.columns([1, 2])
    scene = c[0].selectbox(
        "Scene", home.scene_choices(), key="exp/scene", format_func=home.scene_label
    )
    refused = home.refusal(scene)  # a Bullet-Safety-Gym task the lab cannot make replay
    if refused:
        st.error(refused, icon=":material/block:")
        return None
    found = home.checkpoints(scene)
    if not found:
        st.warning(f"No world model for {scene}: train one first.")
        return None
    labels = {ck.path: ck.label for ck in found}
    _fit(f"exp/ckpt/{scene}", labels)
    ckpt = c[1].selectbox(
        "World model", list(labels), format_func=labels.get, key=f"exp/ckpt/{scene}"
    )
    options = designs_for(scene)
    _fit(f"exp/designs/{scene}", options)
    picked = st.multiselect(
        "Guardrail designs (cost sets: presets, and those saved on the Plan page)",
        list(options),
        key=seeded(f"exp/designs/{scene}", list(options)[:2]),
    )
    found = home.policies(ckpt)
    as_policy = _folders(
        found,
        f"exp/policies/{scene}",
        "System 1 designs: distilled policies, acting alone (a guardrail they were "
        "distilled under is trained in, not checked)",
    )
    found_ppol = home.ppol_policies(scene)
    as_ppol = _folders(
        found_ppol,
        f"exp/ppols/{scene}",
        "Trained-in designs: PPO-Lagrangian policies (./lab ppol), acting alone on the "
        "raw state (the rule each was trained under is in its weights, not checked)",
    )
    found_high = home.high_levels(ckpt)
    as_high = _folders(
        found_high,
        f"exp/highs/{scene}",
        "Hierarchy designs: a learned high level proposes every step the subgoal to be "
        "at 8 steps on, and the planner plans on the goal with the way to that subgoal "
        "beside it (compare with the task alone: flat, and the subgoal preset a person "
        "wrote)",
    )
    rules = rules_for(scene, options, picked)
    _fit(f"exp/rules/{scene}", rules)
    measured = st.multiselect(
        "Measured in reality against (hard terms; the same for every design, so an "
        "unguarded design shows how often it breaks the rule)",
        list(rules),
        key=seeded(f"exp/rules/{scene}", list(home.safety_rules(scene))),
        format_func=lambda k: f"{k}: {rules[k].expression} <= {rules[k].limit:g}",
    )
    d = st.columns(6)
    episodes = d[0].number_input("Episodes per design", 1, 500, key=seeded("exp/episodes", 10))
    seed = d[1].number_input("Seed", 0, 10**6, key=seeded("exp/seed", 0))
    planner = d[2].selectbox(
        "Planner", list(PLANNERS), key="exp/planner", format_func=home.PLANNER_NAMES.get
    )
    samples = d[3].select_slider(
        "Samples N",
        [30, 50, 100, 200, 300, 500, 1000],
        key=seeded("exp/samples", PlannerConfig.samples),
    )
    iters = d[4].slider("Iterations", 1, 6, key=seeded("exp/iters", 3))
    fallback = d[5].radio(
        "No safe plan",
        ["least_violating", "stop"],
        key="exp/fallback",
        format_func={"least_violating": "least violating", "stop": "stop"}.get,
    )
    g = st.columns([2, 1])
    margin, delta, steps, covers = home.guard_input(g[0], "exp/margin", ckpt)
    ray = ray_toggle(g[1], "exp/ray")
    compare = bool(margin or delta) and g[1].toggle(
        "Each guarded design also with no margin",
        key=seeded("exp/margin/compare", False),
        help="Every design with an enabled hard term runs twice on the same episodes: with "
        "the margin chosen here and with none, so the table shows what the margin buys "
        "(violations) and costs (success, steps with no safe plan).",
    )
    reset = {}
    if scene in home.KITCHENS and st.toggle(
        "The person starts near the board (otherwise it is rarely near the arm)",
        key=seeded("exp/near", True),
    ):
        reset["person_near"] = True
    st.caption(
        "Every design runs on the same seeded episodes. Violation rates are measured in "
        "reality: the rules above, evaluated on the real signals after each step. False-safe: "
        "among the steps whose plan the design's own hard terms judged safe in imagination, "
        "those that broke a rule in reality (n/a for a design without hard terms: it judges "
        "nothing)."
    )
    busy = run is not None and run.active
    if not st.button(
        "Run the experiment",
        type="primary",
        disabled=busy or not (picked or as_policy or as_ppol or as_high),
    ):
        return run
    designs, guards, bases = {}, {}, {}
    for k in picked:
        guarded = any(t.kind == "hard" and t.enabled for t in options[k].terms)
        if not (compare and guarded):
            designs[k] = options[k]
            continue
        for kind, guard in (
            (home.guard_kind(margin, delta), {}),
            ("no margin", {"margin": 0.0, "delta": 0.0}),
        ):
            name = f"{k} · {kind}"
            designs[name], guards[name], bases[name] = options[k], guard, k
    policies = {}
    for folder in as_policy:
        name = f"System 1: {found[folder]}"
        designs[name] = home.policy_costs(folder)
        policies[name] = folder
    trained = {}
    for folder in as_ppol:
        name = f"PPO-Lagrangian: {found_ppol[folder].split(' (')[0]}"
        designs[name], trained[name] = home.fit_task(scene, CostSet()), folder
    highs = {}
    for folder in as_high:
        name = f"learned hierarchy: {found_high[folder]}"
        designs[name], highs[name] = CostSet(), folder
    cfg = AgentConfig(
        planner=planner,
        search=PlannerConfig(samples=int(samples), iterations=int(iters)),
        fallback=fallback,
        margin=margin,
        delta=delta,
        margin_steps=steps,
        margin_signals=covers,
        decode=False,
    )
    out = home.RUNS / "experiments" / time.strftime("%Y%m%d-%H%M%S")
    return adopt(
        ExperimentRun(
            scene,
            ckpt,
            designs,
            cfg,
            int(episodes),
            int(seed),
            out,
            device(),
            guardrails=[rules[k] for k in measured],
            options=reset,
            policies=policies,
            trained=trained,
            ray=ray,
            highs=highs,
            guards={k: v for k, v in guards.items() if v},
            bases=bases,
        )
    )


def results(run_id: str) -> None:
    run = registry().get(run_id, "experiment")
    if run is None:
        st.info("This experiment is no longer known to the server; its folder keeps results.")
        return
    run.touch()
    st.progress(
        run.done / max(run.total, 1),
        text=f"{run.title}: {run.done}/{run.total} episodes · {run.status} "
        + (_time_left(run, list(run.designs)) if run.active else ""),
    )
    if run.status == "error":
        st.error(views.plain(run.error))
    if run.active:
        st.button("Stop (keep finished episodes)", on_click=run.stop, key="exp/stop")
    with run.lock:
        done = dict(run.results)
    if not done:
        return
    goal_free = scenes.is_foreign(run.scene)
    shown = GOAL_FREE_SHOWN if goal_free else SHOWN
    rates = [m for m in RATES if m in shown]
    rows, table, summaries = [], [], {}
    for name, res in done.items():
        s = res.summary()
        summaries[name] = {m: s[m] for m in shown if s.get(m, {}).get("value") is not None}
        rows.append(
            {"design": name, **{m: s[m] for m in RATES if s.get(m, {}).get("value") is not None}}
        )
        line = {"design": name, "episodes": sum(1 for e in res.episodes if e["agent"] == "model")}
        # each measured rule apart after the rate of steps breaking any of them
        per_rule = [m for m in s if m.startswith("violation_step_rate/")]
        at = shown.index("violation_step_rate") + 1
        for m in (*shown[:at], *per_rule, *shown[at:]):
            v = s.get(m, {})
            line[in_words(m)] = _cell(v)
        table.append(line)
    st.dataframe(table, hide_index=True, width="stretch")
    st.caption(
        "value [95 % bootstrap interval over episodes]; shares of episodes or steps from "
        "0 to 1; the CSVs name each figure by its key"
        + (
            "; episode return and cost: the benchmark's own figures, the reward and the "
            "task's cost (1 a step breaking its rule) summed over an episode, means over "
            "episodes"
            if goal_free
            else ""
        )
    )
    if goal_free:  # the benchmark's figures: return and cost, each on its own scale
        figs = st.columns(2)
        for col, m, unit in (
            (figs[0], "episode_return", "summed reward per episode"),
            (figs[1], "episode_cost", "summed cost per episode (steps breaking the rule)"),
        ):
            bars = [{"design": name, m: summaries[name][m]} for name in summaries]
            col.plotly_chart(
                views.interval_bars(bars, [m], labels=[in_words(m)], unit=unit),
                key=f"exp/bars/{m}",
            )
    st.plotly_chart(
        views.interval_bars(rows, rates, labels=[in_words(m) for m in rates]), key="exp/bars"
    )
    d = st.columns(2)
    for col, table in zip(d, ("episodes", "summary"), strict=True):
        col.download_button(
            f"Download {table} CSV",
            experiment_csv(done, table),
            file_name=f"{run.file_stem}-{table}.csv",
            mime="text/csv",
            key=f"exp/csv/{table}",
            help="design in every row; the settings that made the numbers head the file",
        )
    st.caption(f"saved under `{run.out}`")


def _time_left(run, parts: list[str]) -> str:
    """The run's time left, or which part's first episode will tell it (each design is
    timed at its own pace: app.runs.Eta)."""
    eta = run.eta
    if eta is not None:
        return fmt_eta(eta)
    part = run.pace.under_way
    if part is None or run.pace.seconds() is not None:
        return ""
    if part < len(parts) and len(parts) > 1:
        return f"· time left known after an episode of {parts[part]}"
    return "· time left known after the next episode"


def _cell(v: dict) -> str:
    if not v or v.get("value") is None:
        return "n/a"
    return f"{v['value']:.3g} [{v['low']:.3g}, {v['high']:.3g}]"


def ray_toggle(where, key: str) -> str | None:
    """Whether to fan the episodes out over Ray: on the server's cluster when it serves
    from one (``./lab --ray ADDRESS``: on by default), else on this machine ("local");
    None when off."""
    place = registry().placement
    cluster = place.address if place is not None and place.kind == "ray" else ""
    on = where.toggle(
        "Episodes on Ray",
        key=seeded(key, bool(cluster)),
        help="Run the episodes in parallel, one Ray worker per core (experiments.fanout); the "
        "results are the same as without it. "
        + (
            f"This server serves from the Ray cluster at {cluster}: the episodes go there."
            if cluster
            else "Ray starts once per server (seconds). To use a cluster, start the lab "
            "with ./lab --ray ADDRESS, or run ./lab evaluate or ./lab stress with --ray "
            "ADDRESS (README)."
        ),
    )
    return (cluster or "local") if on else None


def stress_form(scene: str, ckpt: str) -> StressRun | None:
    """Search the reset parameters for the episodes where a design breaks its rule."""
    run = current("stress")
    if not scenes.scene_class(scene).STRESS_PARAMS:  # a Bullet-Safety-Gym task (scenes.safety)
        st.info(
            f"{home.scene_label(scene)} declares no reset parameters for a search to set "
            "(its start is the package's own random draw), so there is nothing to stress "
            "here: the experiment above measures how often each design breaks the task's "
            "rule over seeded episodes."
        )
        return None
    options = {
        k: v
        for k, v in designs_for(scene).items()
        if any(t.kind == "hard" and t.enabled for t in v.terms)
    }
    if not options:
        st.caption("No design of this scene has an enabled hard term to stress.")
        return run
    c = st.columns([2, 1, 1, 1])
    _fit(f"stress/design/{scene}", options)
    design = c[0].selectbox("Design to stress", list(options), key=f"stress/design/{scene}")
    budget = c[1].number_input("Budget (episodes)", 2, 2000, key=seeded("stress/budget", 100))
    method = c[2].radio(
        "Search",
        ["cem", "random"],
        key="stress/method",
        horizontal=True,
        format_func={"cem": "cross-entropy", "random": "uniform"}.get,
    )
    ray = ray_toggle(c[3], "stress/ray")
    margin, delta, steps, covers = home.guard_input(st, "stress/margin", ckpt)
    params = ", ".join(p[0] for p in scenes.scene_class(scene).STRESS_PARAMS)
    st.caption(
        f"The search sets {params} for each episode and scores it by the worst real excess "
        "over the design's hard terms; the cross-entropy method moves towards the situations "
        "that come closest to breaking the rule, uniform sampling is the baseline. Failures "
        "replay on the Plan page (Replay a stress-test failure)."
    )
    busy = run is not None and run.active
    if not st.button("Run the stress test", disabled=busy, key="stress/go"):
        return run
    cfg = AgentConfig(
        margin=margin, delta=delta, margin_steps=steps, margin_signals=covers, decode=False
    )
    name = time.strftime("%Y%m%d-%H%M%S") + f"-{scene}-{method}"
    return adopt(
        StressRun(
            scene,
            ckpt,
            design,
            options[design],
            cfg,
            int(budget),
            method,
            home.RUNS / "stress" / name,
            device(),
            ray=ray,
        )
    )


def stress_results(run_id: str) -> None:
    run = registry().get(run_id, "stress")
    if run is None:
        st.info("This stress test is no longer known to the server; its folder keeps results.")
        return
    run.touch()
    with run.lock:
        result = run.result
    found = len(result.failures) if result else 0
    st.progress(
        run.done / max(run.total, 1),
        text=f"{run.title}: {run.done}/{run.total} episodes, {found} broke the rule · "
        f"{run.status} " + (_time_left(run, []) if run.active else ""),
    )
    if run.status == "error":
        st.error(views.plain(run.error))
    if run.active:
        st.button("Stop (keep what was found)", on_click=run.stop, key="stress/stop")
    if not result or not result.episodes:
        return
    st.plotly_chart(views.stress_scatter(result.episodes), key="stress/scatter")
    rows = [
        {
            "excess": f["excess"],
            "episode": f["episode"],
            "seed": f["seed"],
            "steps": f["steps"],
            "violating steps": f["violation_steps"],
            **{k: round(v, 3) for k, v in f["params"].items()},
        }
        for f in result.failures[:50]
    ]
    if rows:
        st.dataframe(rows, hide_index=True)
    d = st.columns(2)
    d[0].download_button(
        "Download failures CSV",
        result.failures_csv(),
        file_name=f"{run.file_stem}-failures.csv",
        mime="text/csv",
        key="stress/csv",
        help="each episode that broke the rule, worst first: its excess, seed and parameters; "
        "the design, search and guard head the file",
    )
    d[1].download_button(
        "Download the result JSON",
        result.to_json(),
        file_name=f"{run.file_stem}-result.json",
        mime="application/json",
        key="stress/json",
        help="every episode tried, with its seed and reset options (what the Plan page "
        "replays), and the settings",
    )
    st.caption("The Plan page replays each failure (Replay a stress-test failure).")


def page() -> None:
    keep_settings()
    st.title("Experiments")
    st.caption(
        "Guardrails hold only as far as the world model is right. Compare designs on the "
        "same episodes: success, how often reality broke a guardrail, and how often the "
        "model said a plan was safe when it was not."
    )
    run = form()
    if run is not None:
        st.fragment(run_every=1.0 if run.active else None)(results)(run.id)
    st.subheader("Stress test")
    st.caption(
        "Random episodes say how often a design fails on average; a stress test searches "
        "for the situations where it fails."
    )
    scene = SS.get("exp/scene", "reach")
    ckpt = SS.get(f"exp/ckpt/{scene}")
    if ckpt:
        srun = stress_form(scene, ckpt)
        if srun is not None:
            st.fragment(run_every=1.0 if srun.active else None)(stress_results)(srun.id)
