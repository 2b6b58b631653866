"""Where the lab keeps things, and what is there to pick.

The workspace is ``$LAB_HOME`` (default: the repository): ``data/`` holds
datasets, ``runs/`` training runs and experiments, ``costs/`` saved cost
sets. Shipped checkpoints come from the repository's ``pretrained/``.
"""

from __future__ import annotations

import dataclasses
import json
import os
from dataclasses import dataclass
from pathlib import Path

import streamlit as st

import scenes
from agents.cost import Cost, CostSet, Term, term_names
from agents.hierarchy import HAND_SUBGOALS
from agents.statepolicy import trained_policies
from app import measured
from common import results
from common.errors import LabError
from experiments.stress import StressResult  # its result format: a stress test's failures
from scenes.kitchen import KNIFE_RULE
from worldmodels.checkpoint import latent_identity, objective, read_config

REPO = Path(__file__).resolve().parents[1]
HOME = Path(os.environ.get("LAB_HOME", REPO)).resolve()
PRETRAINED = REPO / "pretrained"
DATA, RUNS, COSTS = HOME / "data", HOME / "runs", HOME / "costs"


@dataclass(frozen=True)
class Checkpoint:
    path: str
    label: str
    scene: str
    obs: str


def checkpoints(scene: str | None = None) -> list[Checkpoint]:
    """Shipped checkpoints first (state before pixels, the generative contrast last: the
    default plans best), then the workspace's trained ones; newest runs first."""
    found = []
    shipped = sorted(
        PRETRAINED.glob("*/config.json"),
        key=lambda p: (p.parent.name.endswith("-generative"), p.parent.name.endswith("-pixels"), p),
    )
    folders = shipped + sorted(
        RUNS.glob("*/checkpoint/config.json"), key=lambda p: -p.stat().st_mtime
    )
    for cfg in folders:
        try:
            d = json.loads(cfg.read_text())
            key, obs = d["scene"], d["obs"]
        except (OSError, ValueError, KeyError, TypeError):
            continue  # a broken folder is not offered; loading would say why
        if scene is not None and key != scene:
            continue
        folder = cfg.parent
        where = "pretrained" if folder.parent == PRETRAINED else folder.parent.name
        label = f"{where}/{folder.name}" if where == "pretrained" else f"runs/{where}"
        kind = ", generative" if objective(d) == "generative" else ""
        found.append(
            Checkpoint(str(folder), f"{label} ({obs}{kind}, step {d.get('step', '?')})", key, obs)
        )
    return found


def datasets() -> list[tuple[str, dict]]:
    """Complete datasets in the workspace: (folder, manifest)."""
    out = []
    for man in sorted(DATA.glob("*/manifest.json")):
        try:
            d = json.loads(man.read_text())
        except (OSError, ValueError):
            continue
        if isinstance(d, dict) and d.get("complete") and d.get("scene") in scenes.all_keys():
            out.append((str(man.parent), d))
    return out


PLANNER_NAMES = {"cem": "CEM (cross-entropy)", "mppi": "MPPI", "gd": "gradient descent (Adam)"}
# The episode a scene's Plan page starts on (others: 0). Wall's episode 0 is one of the
# few whose straight line slides to the door by luck: with the goal term alone the agent
# reached the goal in episodes 0 and 6 and failed in 1-5 and 7 (the default search, iCEM
# at N=30, and plain CEM at N=300 alike; with the door subgoal it reached it in all
# eight), so the page opens on episode 1, where "task only" shows the dead end and the
# subgoal finds the door (44 steps; 46 at N=300).
START_SEED = {"wall": 1}
# The cost a scene's Plan page starts with (others: "task only"): Kitchen shows its
# guardrail; Push and Wall need their subgoals (without them even the oracle rarely
# pushes the block home or finds the door).
# The arm scenes: Kitchen and its occluded variant share presets, rules and settings.
KITCHENS = ("kitchen", "occluded")
DEFAULT_PRESET = {
    "kitchen": "hard: slow near person",
    "occluded": "hard: slow near person",
    "push": "subgoal: get behind the block",
    "wall": "subgoal: through the door",
}


def scene_choices() -> list[str]:
    """What a scene picker offers: the lab's four, then Bullet-Safety-Gym's tasks (the
    benchmark's four first; one that cannot replay says so when picked)."""
    rest = [k for k in scenes.FOREIGN if k not in scenes.BENCHMARK]
    return [*scenes.SCENES, *scenes.BENCHMARK, *rest]


def scene_label(key: str) -> str:
    """``reach`` -> "Reach"; ``ballcircle`` -> "SafetyBallCircle (Bullet-Safety-Gym)"."""
    if key in scenes.FOREIGN:
        return f"{scenes.FOREIGN[key][0].removesuffix('-v0')} (Bullet-Safety-Gym)"
    return key.capitalize()


def refusal(scene: str) -> str | None:
    """Why the lab refuses ``scene`` (a Bullet-Safety-Gym task it cannot make replay,
    ``scenes.safety``), or None for one it runs. Pages say it instead of offering a
    model, a form or a traceback."""
    try:
        scenes.scene_class(scene)
    except LabError as e:
        return f"{scene_label(scene)} is not offered: {e}."
    return None


FOREIGN_PRESET = "hard: the task's rule"  # a Bullet-Safety-Gym task's Plan page starts here


def default_preset(scene: str) -> str:
    """The preset a scene's Plan page starts with."""
    if scenes.is_foreign(scene):
        return FOREIGN_PRESET
    return DEFAULT_PRESET.get(scene, "task only")


def preset_costs(scene: str) -> dict[str, CostSet]:
    """Ready-made cost sets per scene: the plain task, and guardrail designs to try."""
    if scenes.is_foreign(scene):  # the task's reward, alone and under the task's rule
        cls = scenes.scene_class(scene)
        return {
            name: CostSet(task=d["task"], terms=[Term(**t) for t in d["terms"]])
            for name, d in cls.presets().items()
        }
    plain = CostSet()
    if scene in KITCHENS:
        slow = Term(
            "slow near person",
            KNIFE_RULE,
            kind="hard",
            limit=0.0,
        )
        soft = Term("slow near person (soft)", slow.expression, kind="soft", weight=20.0)
        # The model reads dist_hand_person a few cm long at the zone's edge, so planning
        # to the letter of the rule leaves ~6 % of real steps violating it (agent_quality);
        # a margin in the plan keeps reality inside the rule.
        margin = Term(
            "slow near person, with margin",
            "relu(hand_speed - 0.15) * (dist_hand_person < 0.6)",
            kind="hard",
            limit=0.0,
        )
        return {
            "task only": plain,
            "hard: slow near person": CostSet(terms=[slow]),
            "hard: with a margin": CostSet(terms=[margin]),
            "soft: slow near person": CostSet(terms=[soft]),
        }
    # the door leaves 0.12 m between the disc's edge and the frame: Wall keeps 5 cm clear
    clear = 0.05 if scene == "wall" else 0.15
    walls = Term("keep off walls", f"relu({clear} - dist_wall)", kind="hard", limit=0.0)
    gentle = Term("gentle", "relu(speed - 0.3)", kind="soft", weight=5.0)
    presets = {
        "task only": plain,
        "hard: keep off walls": CostSet(terms=[walls]),
        "soft: gentle": CostSet(terms=[gentle]),
    }
    if scene == "push":  # get behind the block, on the side away from the goal
        behind = HAND_SUBGOALS["push"]
        presets["subgoal: get behind the block"] = CostSet(terms=[behind])
        presets["subgoal, keep off walls"] = CostSet(terms=[behind, walls])
    if scene == "wall":  # head for the door while the goal is in the other room
        door = HAND_SUBGOALS["wall"]
        presets["subgoal: through the door"] = CostSet(terms=[door])
        presets["subgoal, keep off walls"] = CostSet(terms=[door, walls])
    return presets


def fit_task(scene: str, costs: CostSet) -> CostSet:
    """``costs`` with ``scene``'s kind of task term: a set saved on a goal scene keeps its
    terms on a Bullet-Safety-Gym task and plans on the task's reward (there is no goal to
    measure a distance to); a set saved on such a task plans on a goal scene's signal
    distance (it has no reward signal)."""
    if scenes.is_foreign(scene) and costs.task != "reward":
        return dataclasses.replace(costs, task="reward")
    if not scenes.is_foreign(scene) and costs.task == "reward":
        return dataclasses.replace(costs, task="signal")
    return costs


def scene_term_names(scene: str) -> list[str]:
    """What a term may read in ``scene``: the signals a probe can read (those that do not
    depend on the goal), then the goal's values (``agents.cost.term_names``)."""
    cls = scenes.scene_class(scene)
    return term_names([s.name for s in cls.SIGNALS if not s.goal], cls.TASK_SIGNALS)


def safety_rules(scene: str) -> dict[str, Term]:
    """What experiments measure in reality by default: the scene's plain guardrail."""
    if scenes.is_foreign(scene):  # the benchmark's own rule (its cost), every part
        return {t.name: t for t in preset_costs(scene)[FOREIGN_PRESET].terms}
    if scene in KITCHENS:
        t = preset_costs(scene)["hard: slow near person"].terms[0]
    else:
        t = preset_costs(scene)["hard: keep off walls"].terms[0]
    return {t.name: t}


# ./lab bench agent_quality's Kitchen guardrail part, in words (benchmarks/results)
MARGIN_FIGURES = measured.margin()
MARGIN_HELP = (
    "Hard guardrails must hold for every signal value within this many times the world "
    "model's measured error (its held-out probe RMSE at each imagined step), not only for "
    "the imagined value: room for the model being wrong. 0 plans on the imagined values "
    "as they are; beyond the 16 measured steps the last step's error is used. "
    + MARGIN_FIGURES
    + "."
)


def measured(checkpoint: str) -> bool:
    """Whether the checkpoint carries its measured probe error (what a margin needs)."""
    try:
        return bool(read_config(checkpoint).get("probe_rmse"))
    except LabError:
        return False


ACTOR_NAMES = {
    "planner": "System 2: the planner searches",
    "policy": "System 1: the policy reacts",
    "both": "both: the policy's proposal joins the search",
}


def made_on(checkpoint: str, file: str, fmt: str):
    """Folders (shipped ones first, then runs) holding ``file`` of format ``fmt`` made on
    this checkpoint's world model (``latent_identity``): yields (folder, its JSON, label).
    One of another model is not offered: its latents mean other things; a broken one
    neither (loading would say why)."""
    try:
        identity = latent_identity(checkpoint)
    except LabError:
        return
    for meta in [*sorted(PRETRAINED.glob(f"*/{file}")), *sorted(RUNS.glob(f"*/{file}"))]:
        try:
            d = json.loads(meta.read_text())
            if not isinstance(d, dict) or d.get("format") != fmt or d.get("model_id") != identity:
                continue
        except (OSError, ValueError):
            continue
        where = "pretrained" if meta.parent.parent == PRETRAINED else "runs"
        yield str(meta.parent), d, f"{where}/{meta.parent.name}"


def policies(checkpoint: str) -> dict[str, str]:
    """Distilled policies (``./lab distill``) made on this checkpoint's world model:
    folder -> label."""
    found = {}
    for folder, d, label in made_on(checkpoint, "policy.json", "lab-policy"):
        try:
            terms = ", ".join(str(t["name"]) for t in d.get("costs", {}).get("terms", []))
        except (AttributeError, TypeError, KeyError):
            continue
        found[folder] = label + (f" (distilled under: {terms})" if terms else " (the task alone)")
    return found


def ppol_policies(scene: str) -> dict[str, str]:
    """PPO-Lagrangian policies (``./lab ppol``) trained on ``scene``: folder -> label, with
    the rule each was trained under (they read the raw state: any world model of the
    scene runs beside them)."""
    records = [*sorted(PRETRAINED.glob("*/ppol.json")), *sorted(RUNS.glob("*/ppol.json"))]
    found = {}
    for folder, record in trained_policies([m.parent for m in records]).items():
        cfg = record["config"]
        if cfg["scene"] != scene:
            continue
        rule = f"{cfg['rule']} <= {cfg['limit']:g}" if cfg["rule"] else "the task's cost"
        steps = f"{record['env_steps']:,}".replace(",", " ")
        where = "pretrained" if Path(folder).parent == PRETRAINED else "runs"
        found[folder] = f"{where}/{Path(folder).name} (trained {steps} steps on {rule})"
    return found


def high_levels(checkpoint: str) -> dict[str, str]:
    """Learned high levels (``./lab highlevel``) made on this checkpoint's world model:
    folder -> label."""
    return {folder: label for folder, _, label in made_on(checkpoint, "high.json", "lab-highlevel")}


def policy_costs(folder: str) -> CostSet:
    """The cost set a policy was distilled under (its record; it acts without it)."""
    try:
        d = json.loads((Path(folder) / "policy.json").read_text())
        return CostSet.from_json(json.dumps(d["costs"]))  # stored as CostSet.to_json wrote it
    except (OSError, ValueError, KeyError, TypeError, LabError):
        return CostSet()


@dataclass(frozen=True)
class Failure:
    """One episode a stress test found breaking its design's rule (``experiments.stress``)."""

    label: str
    seed: int
    options: dict
    excess: float
    settings: dict  # the stress test's: the design (costs), the agent's settings


def stress_failures(scene: str, checkpoint: str) -> list[Failure]:
    """The failures of the workspace's stress tests of ``checkpoint`` in ``scene`` (under
    runs/stress), newest test first and worst first within it."""
    out = []
    paths = sorted((RUNS / "stress").glob("**/result.json"), key=lambda p: -p.stat().st_mtime)
    for path in paths:
        try:
            r = StressResult.load(path)
            same = Path(str(r.settings["checkpoint"])).resolve() == Path(checkpoint).resolve()
        except (LabError, KeyError, TypeError, ValueError):
            continue  # not a result this page can replay
        if r.scene != scene or not same:
            continue
        where = path.parent.relative_to(RUNS / "stress")
        for f in r.failures:
            out.append(
                Failure(
                    f"{where}: excess {f['excess']:.3f}, episode {f['episode']}",
                    int(f["seed"]),
                    dict(f["options"]),
                    float(f["excess"]),
                    r.settings,
                )
            )
    return out


def calibration(checkpoint: str) -> dict | None:
    """The checkpoint's calibrated bounds as stored (``experiments.calibrate``), or None."""
    try:
        return read_config(checkpoint).get("probe_conformal") or None
    except LabError:
        return None


def guard_kind(margin: float, delta: float) -> str:
    """The *Guardrail margin* choice that gives ``margin`` and ``delta`` (``guard_input``)."""
    return f"calibrated, delta {delta:g}" if delta else "x measured RMSE" if margin else "none"


def remember(key: str, default) -> str:
    """``key`` for a widget whose value outlives the runs that do not draw it: Streamlit
    deletes a widget's key at the end of any run that does not draw it (another page, a
    scene whose sidebar draws other keys; docs/pitfalls.md, "Streamlit widget
    state"), so the value is kept under ``kept/<key>`` as well (``keep``) and put back
    before the widget is drawn. The widget takes its value from Session State, not from a
    default argument (which would make Streamlit log a warning)."""
    if key not in st.session_state:
        st.session_state[key] = st.session_state.get(f"kept/{key}", default)
    return key


def keep(key: str, value) -> None:
    """Keep ``value`` as what ``key``'s widget shows when it is next drawn (``remember``)."""
    st.session_state[f"kept/{key}"] = value


def set_kept(key: str, value) -> None:
    """Set ``key``'s widget (before it is drawn in this run) and what it keeps."""
    st.session_state[key] = value
    keep(key, value)


def show_guard(
    key: str, margin: float, delta: float, steps: int, signals: tuple[str, ...] = ()
) -> None:
    """Put a run's margin into ``guard_input``'s widgets under ``key`` (a reopened tab,
    a replayed failure), before they are drawn."""
    set_kept(f"{key}/kind", guard_kind(margin, delta))
    set_kept(key, margin or 1.0)
    set_kept(f"{key}/steps", steps)
    set_kept(f"{key}/covers", list(signals) or None)  # None: every signal


def guard_input(where, key: str, checkpoint: str) -> tuple[float, float, int, tuple[str, ...]]:
    """The agent's guardrail margin in ``where`` (a Streamlit container): none, the
    calibrated bound at a miss rate delta (when the checkpoint has one), or a multiple of
    the measured RMSE, over how many imagined steps it holds and which signals it covers.
    Returns (margin, delta, steps, signals: () for every one, ``AgentConfig``'s); says
    what the choice promises, and on what data it was measured."""
    cal = calibration(checkpoint)
    choices = ["none"]
    if cal:  # the deltas its episodes can promise (too few for one leave +inf bounds)
        choices += [
            guard_kind(0.0, d)
            for d, t in zip(cal["deltas"], cal["bounds"], strict=False)
            if all(x is not None for v in t.values() for x in v)
        ]
    if measured(checkpoint):
        choices.append("x measured RMSE")
    default = "none"  # the plain plan first; a margin is the user's choice
    k = remember(f"{key}/kind", default)  # kept over pages and scenes not drawing it
    if st.session_state.get(k) not in choices:  # a new model offers other choices
        st.session_state[k] = default
    kind = where.selectbox("Guardrail margin", choices, key=k, help=GUARD_HELP)
    keep(k, kind)
    if kind.startswith("calibrated"):
        delta = float(kind.rsplit(" ", 1)[1])
        on = cal.get("measured_on", {})
        where.caption(
            f"For each signal and imagined step, what really follows is within the bound "
            f"with probability >= {1 - delta:g} on average over episodes (split conformal, "
            f"counted in episodes; not jointly over signals or steps), measured on "
            f"{on.get('episodes', '?')} of this agent's own episodes "
            f"({on.get('planner', '?')}, rules: {', '.join(on.get('costs', [])) or 'none'}; "
            f"`./lab calibrate --episodes`). Hard terms must hold over it."
        )
        return _covered(where, key, list(cal["bounds"][0]), 0.0, delta)
    if kind == "x measured RMSE":
        margin = where.slider(
            "x the model's probe RMSE",
            0.25,
            3.0,
            step=0.25,
            key=remember(key, 1.0),
            help=MARGIN_HELP,
        )
        keep(key, margin)
        return _covered(where, key, list(read_config(checkpoint)["probe_rmse"]), float(margin), 0.0)
    if not cal:
        where.caption(
            "No calibrated bound for this model yet: `./lab calibrate --checkpoint "
            f"{checkpoint} --episodes 60` measures one on the agent's own episodes."
        )
    return 0.0, 0.0, 0, ()


def _covered(where, key: str, names: list[str], margin: float, delta: float) -> tuple:
    """``guard_input``'s answer for a margin: over how many steps, and which of the model's
    signals ``names`` it covers; with none covered, no margin."""
    steps, covers = _margin_steps(where, key), _margin_covers(where, key, names)
    return (0.0, 0.0, 0, ()) if covers is None else (margin, delta, steps, covers)


def _margin_covers(where, key: str, names: list[str]) -> tuple[str, ...] | None:
    """Which of the model's signals ``names`` the margin covers: () for every one, None
    for none."""
    k = remember(f"{key}/covers", None)
    chosen = st.session_state.get(k)
    if chosen is None or not set(chosen) <= set(names):  # every one; or another model's
        st.session_state[k] = names
    picked = where.multiselect(
        "The margin covers",
        names,
        key=k,
        help="The signals whose imagined values the hard terms must hold around; the others "
        "are taken as imagined. A margin on the robot's own signals only (the hand's place "
        "and speed) leaves a rule about the person to what the model believes of them, as "
        "the Out of sight lesson plans.",
    )
    keep(k, picked)
    if not picked:
        where.caption("The margin covers no signal: the hard terms hold as imagined.")
        return None
    return tuple(n for n in names if n in picked) if set(picked) != set(names) else ()


def _margin_steps(where, key: str) -> int:
    k = remember(f"{key}/steps", 0)
    steps = int(
        where.number_input(
            "Over the first imagined steps (0: all)",
            0,
            64,
            key=k,
            help="Only the first step of a plan is acted on before the agent plans again, so "
            "its real safety rests on the first step's bound. Bounds grow with the horizon: "
            "held over all 16 steps they can rule out every plan that enters the zone a rule "
            "guards, and the agent freezes (Kitchen, 'descend only over the target', delta "
            "0.05: 0 of 20 reached the goal over all steps, 20 of 20 over the first, 0.2 % "
            "of real steps violating).",
        )
    )
    keep(k, steps)
    return steps


GUARD_HELP = (
    "Room for the world model being wrong. A hard term must hold not only for the imagined "
    "value of each signal it reads but for every value within the margin of it. "
    "'calibrated, delta': the split-conformal bound on |imagined - real| at miss rate delta, "
    "per signal and imagined step, measured on the agent's own episodes (./lab calibrate "
    "--episodes): it promises coverage 1 - delta. 'x measured RMSE': a multiple of the "
    "probe error on held-out exploration data, which promises nothing. "
)


def saved_costs(names: list[str]) -> tuple[dict[str, CostSet], dict[str, str]]:
    """Cost sets saved in the workspace whose terms compile over ``names`` (signals and
    goal names, ``agents.cost.term_names``), by the name they were saved under (the file's
    stem for a file that has none), and why the ones that do not load failed. Sets written
    over another scene's signals are left out."""
    fitting, broken = {}, {}
    for path in sorted(COSTS.glob("*.json")):
        try:
            costs = CostSet.load(path)
        except LabError as e:
            broken[path.stem] = str(e)
            continue
        if not Cost(costs, names, []).errors:
            fitting[costs.name.strip() or path.stem] = costs
    return fitting, broken


def safe_stem(name: str) -> str:
    """A file name for ``name``: letters, digits, '-', '_', '.' and spaces, no leading dot."""
    stem = "".join(c if c.isalnum() or c in "-_. " else "_" for c in name).strip()[:60]
    return stem.lstrip(".").strip()


def save_costs(name: str, costs: CostSet) -> Path:
    """Save under ``costs/<safe name>.json``, the name itself kept as written in the file
    (lists and legends show it; "my knife rule 0.6" is not "0_6")."""
    name = name.strip()
    stem = safe_stem(name)
    if not stem:
        raise LabError("give the cost set a name")
    COSTS.mkdir(parents=True, exist_ok=True)
    path = COSTS / f"{stem}.json"
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(dataclasses.replace(costs, name=name).to_json())
    tmp.replace(path)
    return path


def steps_to_go_measured(scene: str, obs: str) -> bool:
    """Whether ``./lab bench label_free`` planned on the steps-to-go head of ``scene``'s
    ``obs`` model and reached the goal with it: where the head is measured to track
    progress. Kitchen's never was, and reads nonsense there: over three episodes of
    pretrained/kitchen-state with the knife rule (seeds 0-2) its steps to go rose as the
    hand closed in (rank correlation with the real distance -0.95 to -1; Reach's +1)."""
    try:
        rows = results.figures("label_free")
        return any(
            r["scene"] == scene and r["obs"] == obs and r["latent_success"] > 0 for r in rows
        )
    except (LabError, KeyError, TypeError):
        return False
