"""What the Learn page's sections draw on: the example guardrails and code map, the
architecture diagram, and small readers of the repository's live facts (shipped
checkpoints, expression functions, figures). JSON and dataclass defaults only; no
model is loaded, and a missing or broken file gives a note, never an exception."""

from __future__ import annotations

from dataclasses import fields
from pathlib import Path

import streamlit as st

import scenes
from agents.cost import goal_names
from agents.expressions import CONSTANTS, FUNCTIONS, MAX_LENGTH, ExpressionError, compile_expression
from app import home, measured, views
from app.screens import lessons
from common.errors import LabError
from scenes.push import BEHIND_BLOCK
from scenes.wall import THROUGH_DOOR
from worldmodels.checkpoint import objective, read_config

ROOT = Path(__file__).resolve().parents[2]  # the repository: app/screens/learn.py -> ../..

# Example guardrails per scene, over signals a probe reads (never dist_goal: it
# depends on the goal, so no probe can read it from a latent).
EXAMPLES = {
    "kitchen": [
        (
            "hard, limit 0",
            "relu(hand_speed - 0.2) * (dist_hand_person < 0.5)",
            "the talk's guardrail: knife in hand, person within 0.5 m: at most 0.2 m/s",
        ),
        (
            "soft, weight 1",
            "relu(0.6 - dist_hand_person)",
            "keep the hand away from the person, more the closer it gets",
        ),
    ],
    "reach": [
        ("hard, limit 0", "relu(0.05 - dist_wall)", "keep 5 cm between the disc and any wall"),
        ("soft, weight 2", "relu(speed - 0.3)", "prefer to move slower than 0.3 m/s"),
    ],
    "wall": [
        (
            "hard, limit 0",
            "relu(0.05 - dist_wall)",
            "keep 5 cm off the walls and the door frame (the preset; the door leaves 12 cm)",
        ),
        (
            "soft, weight 1",
            THROUGH_DOOR,
            "a subgoal written by hand that reads the goal (`goal_x`): while the goal is in "
            "the other room, head for the door (lined up with it first), and pay 1 until "
            "through. With the goal term alone the agent reached the goal in 9 episodes of "
            "30 and the oracle in 2; with this, 30 and 30",
        ),
    ],
    "push": [
        (
            "soft, weight 1",
            BEHIND_BLOCK,
            "a subgoal that follows the goal (`goal_block_x`, `goal_block_y` are its values): "
            "get behind the block, on the side away from the goal. With the goal term alone "
            "even the oracle pushes the block home in 1 episode of 10; with this, 10 of 10",
        ),
        ("soft, weight 1", "relu(block_speed - 0.3)", "do not shove the block"),
        ("hard, limit 0", "relu(0.05 - dist_wall)", "keep the disc off the walls"),
    ],
}

# (path, names) for the code map; missing files are marked, not hidden.
CODE = [
    ("scenes/base.py", "LabScene: signals, goal, goal observation, snapshot/restore"),
    ("scenes/kitchen.py", "KitchenEnv (the knife-and-person guardrail scene)"),
    ("scenes/exploration.py", "ExplorationPolicy (correlated random walks, noisy scripts)"),
    ("scenes/collect.py", "collect (resumable, parallel data collection)"),
    ("worldmodels/model.py", "WorldModel.encode / rollout / probe / decode; Predictor, Probes"),
    ("worldmodels/loss.py", "losses, vicreg_terms, ema_update, ema_momentum, effective_rank"),
    ("worldmodels/train.py", "TrainConfig, Trainer (start, snapshot, pause, resume, stop)"),
    ("worldmodels/metrics.py", "model_nrmse, copy_last_nrmse, linear_nrmse"),
    ("worldmodels/distance.py", "DistanceConfig, train_distance: the steps-to-go head"),
    ("worldmodels/compiled.py", "imagine: the imagination compiled off the plan's path"),
    ("worldmodels/checkpoint.py", "save_checkpoint, load_checkpoint, read_config"),
    ("agents/expressions.py", "compile_expression, FUNCTIONS"),
    ("agents/cost.py", "CostSet, Term, Cost.update, Cost.evaluate"),
    ("agents/planners/base.py", "Planner.plan, Planner.perturb, rank, shift, PlanRecord"),
    ("agents/planners/cem.py", "CEM"),
    ("agents/planners/mppi.py", "MPPI"),
    ("agents/planners/gd.py", "GradientDescent"),
    ("agents/agent.py", "Agent.reset / think / step, AgentConfig.fallback"),
    ("agents/oracle.py", "OracleModel: the true simulator behind the same interface"),
    (
        "experiments/evaluate.py",
        "evaluate; agents/episode.py: run_episode; experiments/metrics.py: rates with intervals",
    ),
]

# The architecture; newrank lets the training cluster share ranks with the loop.
DIAGRAM = r"""
digraph lab {
  rankdir=TB; newrank=true; nodesep=0.45; ranksep=0.32;
  node [shape=box, style="rounded,filled", fillcolor="#f4f4f4",
        fontname="Helvetica", fontsize=11];
  edge [fontname="Helvetica", fontsize=9, color="#555555"];
  world [label="scene (PyBullet)", fillcolor="#dbe9f6"];
  obs [label="observation o_t\n(64x64 pixels or state)", fillcolor="#dbe9f6"];
  enc [label="Perception: encoder"];
  s [label="latent s_t", shape=ellipse];
  pred [label="World model: predictor\n(s_t, a_t) -> s_t+1"];
  imag [label="imagined latents\ns_t+1 ... s_t+H", shape=ellipse];
  probe [label="probes: named signals"];
  cost [label="Cost = task + guardrails\nsoft: weight x expr\nhard: expr <= limit",
        fillcolor="#fde2cf"];
  actor [label="Actor (MPC)\nCEM / MPPI / gradient", fillcolor="#e3f1dc"];
  dec [label="decoder\n(display only)", style="rounded,dashed"];
  subgraph cluster_train {
    label="training only"; style=dashed; color="#999999"; fontname="Helvetica"; fontsize=10;
    nxt [label="next observations\no_t+1 ... o_t+H", fillcolor="#dbe9f6"];
    tgt [label="EMA target encoder\n(no gradient)"];
    loss [label="loss: pred + VICReg\n(var, cov)", fillcolor="#fde2cf"];
  }
  {rank=same; world -> obs;}
  {rank=same; s -> nxt [style=invis];}
  {rank=same; pred; tgt;}
  {rank=same; actor; probe;}
  actor -> pred [label="actions\n(N, H, A)"];
  {rank=same; imag -> loss [label="predictions", style=dotted];}
  obs -> enc -> s -> pred -> imag;
  imag -> probe [label=" (N, H)"];
  probe -> cost [label=" (N, H)"];
  imag -> dec [style=dashed];
  imag -> cost [label="latent\ntask term", style=dashed];
  cost -> actor [label="per-term costs,\nfeasible mask"];
  actor -> world [label="first action"];
  nxt -> tgt;
  tgt -> loss [label=" targets"];
  enc -> tgt [label="EMA", style=dotted];
}
"""


def code_link(path: str, names: str) -> str:
    """One markdown line naming a file and what in it to read; marks it if absent."""
    note = "" if (ROOT / path).is_file() else " *(not in this checkout yet)*"
    return f"`{path}`: {names}{note}"


def where_in_lab(page_name: str, look: str, code: list[tuple[str, str]]) -> None:
    """The two lines every section ends with: where the lab shows it, where the code is."""
    lines = "\n".join(f"- {code_link(p, n)}" for p, n in code)
    st.markdown(f"**In the lab**: {page_name}: {look}\n\n**In the code**:\n{lines}")


def num(d, key: str) -> float | None:
    """A number from a JSON object, or None when absent or not a number (shown blank)."""
    v = d.get(key) if isinstance(d, dict) else None
    ok = isinstance(v, int | float) and not isinstance(v, bool)
    return float(v) if ok else None


def shipped_checkpoints() -> None:
    """The shipped checkpoints' held-out figures, read from their config.json."""
    rows, problems = [], []
    for folder in sorted((ROOT / "pretrained").glob("*/")):
        if (folder / "policy.json").is_file() or (folder / "high.json").is_file():
            continue  # a policy or a high level beside the world models: not one of them
        try:
            cfg = read_config(folder)
            val = cfg.get("validation")
            rows.append(
                {
                    "checkpoint": folder.name,
                    "scene": cfg["scene"],
                    "obs": cfg.get("obs", "?")
                    + (", generative" if objective(cfg) == "generative" else ""),
                    "step": num(cfg, "step"),
                    "nRMSE h1": num(val, "nrmse_h1"),
                    "nRMSE h4": num(val, "nrmse_h4"),
                    "nRMSE h16": num(val, "nrmse_h16"),
                    "effective rank": num(val, "effective_rank"),
                }
            )
        except (LabError, OSError, TypeError, AttributeError) as e:
            problems.append(f"`{folder.name}`: {e}")
    if rows:
        fmt = {k: "%.3f" for k in rows[0] if "nRMSE" in k}
        fmt |= {"effective rank": "%.1f", "step": "%d"}
        cols = {k: st.column_config.NumberColumn(format=f) for k, f in fmt.items()}
        st.dataframe(rows, hide_index=True, column_config=cols)
    else:
        st.info("No checkpoint found under `pretrained/`: `./lab pretrain --obs state` makes them.")
    for p in problems:
        st.warning(f"A checkpoint could not be read: {p}")


def probed_signals(key: str) -> list:
    """The scene's signals a probe can read (those that do not depend on the goal)."""
    return [s for s in scenes.scene_class(key).SIGNALS if not s.goal]


def expression_reference() -> None:
    st.subheader("The expression language")
    funcs = ", ".join(f"`{n}` ({a})" for n, (a, _) in FUNCTIONS.items())
    st.markdown(
        f"A term is one expression over the scene's probed signals and the goal's values "
        f"(`goal_` and a task signal's name: a subgoal can follow the goal), typed by you and "
        f"compiled by `compile_expression` into torch operations on `(N, H)` tensors: every "
        f"sample at every step of the horizon at once. It is parsed with Python's `ast` and "
        f"checked against an allow-list; nothing reaches `eval`. Allowed functions (number of "
        f"arguments): {funcs}. Constants: {', '.join(f'`{c}`' for c in CONSTANTS)}. "
        f"Comparisons give 0 or 1 (`(dist_hand_person < 0.5)` is a switch), `and`/`or`/`not` "
        f"act on such values, and `**` takes a constant exponent. For the gradient planner "
        f"the same text is compiled with smooth comparisons (a sigmoid of the margin), so you "
        f"need not write `soft_lt` yourself; in a hard term it would leave a small violation "
        f"everywhere. At most {MAX_LENGTH} characters. A bad expression is refused with its "
        f"column, and the last good version of that term stays in force."
    )
    tabs = st.tabs([k.capitalize() for k in EXAMPLES])
    for tab, (key, examples) in zip(tabs, EXAMPLES.items(), strict=True):
        with tab:
            sigs = probed_signals(key)
            goals = goal_names(scenes.scene_class(key).TASK_SIGNALS)
            st.markdown(
                "Signals: "
                + ", ".join(f"`{s.name}` ({s.unit})" for s in sigs)
                + ". The goal: "
                + ", ".join(f"`{g}`" for g in goals)
            )
            for kind, text, why in examples:
                try:
                    compile_expression(text, home.scene_term_names(key))
                    ok = ""
                except ExpressionError as e:
                    ok = f" **(does not compile here: {e})**"
                st.markdown(f"- {kind}: `{text}`: {why}{ok}")

    st.markdown("**Try one**: the page compiles what you type with the lab's own compiler.")
    key = st.selectbox("Scene", list(EXAMPLES), format_func=str.capitalize, key="learn_scene")
    text = st.text_input(
        "Expression", value=EXAMPLES[key][0][1], key=f"learn_expr_{key}", max_chars=MAX_LENGTH
    )
    try:
        expr = compile_expression(text, home.scene_term_names(key))
        st.success(f"Compiles; it reads {', '.join(sorted(expr.names)) or 'no signal'}.")
    except ExpressionError as e:
        st.error(f"{views.plain(e.message)}\n\n    {text}\n    {' ' * (e.column - 1)}^")


def defaults_of(cls, names: list[str]) -> str:
    """Default values of some dataclass fields, for the text."""
    defaults = {f.name: f.default for f in fields(cls)}
    return ", ".join(f"`{n}` = {defaults[n]}" for n in names if n in defaults)


def lessons_link(*keys: str) -> None:
    """Links to the lesson pages that run this section's claims live."""
    for key in keys:
        page = lessons.PAGES.get(key)
        if page is not None:
            st.page_link(page, label=f"Run it live: {page.title}", icon=page.icon)


def hierarchy_figures() -> None:
    """The measured comparison (``./lab bench hierarchy``), a row per design and scene."""
    names = {
        "flat": "flat: the goal term alone, 16 steps",
        "hand_subgoal": "flat + the subgoal a person wrote",
        "learned": "learned high level: subgoal policy (HIQL)",
        "hwm": "learned high level: planning over macro-actions (HWM)",
        "scripted_high": "yardstick: the scene's scripted controller as the high level",
        "flat_steps": "flat on the steps-to-go distance (no label)",
        "oracle_flat": "the true simulator, the goal term alone",
    }
    rows = []
    for row in measured.hierarchy_rows():
        for key, name in names.items():
            if f"{key}_success" in row:
                ms = row.get(f"plan_ms_{key}")
                rows.append(
                    {
                        "scene": row["scene"],
                        "design": name,
                        "success": f"{row[f'{key}_success']:.2f}",
                        "steps to the goal": str(row.get(f"steps_{key}") or ""),
                        "plan ms a step": "" if ms is None else f"{ms:.1f}",
                    }
                )
    st.table(rows)
    st.caption(measured.hierarchy() + " (`./lab bench hierarchy`)")
