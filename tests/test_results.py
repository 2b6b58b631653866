"""Figures are data: every benchmark result in benchmarks/results parses and says how
it was made, the README's tables quote them to the digits they show, the pages'
sentences and the lessons' texts agree with them, and a missing file is said, not
raised. Also the short guardrail benchmark's calibration, which once asked a miss rate
its episodes could not promise."""

from __future__ import annotations

import json
import re
import runpy
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from agents.agent import AgentConfig, margins_for
from agents.planners import PlannerConfig
from app import measured
from common import results
from common.errors import LabError
from common.paths import RESULTS, ROOT
from experiments.calibrate import bounds_table
from experiments.lessons import LESSONS

README = (ROOT / "README.md").read_text()
PROSE = re.sub(r"\s+", " ", README.replace("**", ""))  # one line, bold marks dropped
REFERENCE = (
    "agent_quality",
    "class_load",
    "guardrail_science",
    "hierarchy",
    "label_free",
    "lessons",
    "memory",
    "plan_speed",
    "safety_gym",
    "search_efficiency",
    "system12",
    "system12-interleaved",
    "trained_in",
)


def figures(name: str):
    return results.figures(name)


def agrees(shown: str, value: float, scale: float = 1.0) -> bool:
    """``shown`` (as the README writes it) is ``value`` x ``scale`` to its own digits."""
    digits = len(shown.split(".")[1]) if "." in shown else 0
    return abs(float(shown) - value * scale) <= 0.5 * 10**-digits + 1e-9


def table(heading: str) -> list[list[str]]:
    """The rows (cells, bold marks dropped) of the README table whose header starts so."""
    lines = README.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(heading))
    rows = []
    for line in lines[start + 2 :]:
        if not line.startswith("|"):
            break
        rows.append([c.strip().replace("**", "") for c in line.strip("|").split("|")])
    return rows


def test_every_results_file_parses_and_says_how_it_was_made():
    names = sorted(p.stem for p in RESULTS.glob("*.json") if not p.stem.endswith("-partial"))
    assert set(REFERENCE) <= set(names)
    for name in names:
        record = results.read(name)
        assert set(results.KEYS) <= set(record), name
        assert record["name"] == name
        assert record["command"].startswith(f"./lab bench {name.split('-')[0]}")
        assert re.fullmatch(r"\d{4}-\d\d-\d\d", record["date"])
        assert record["machine"]["description"] and record["machine"]["cores"] >= 1
        assert record["figures"]


def test_write_then_read_keeps_the_figures_and_a_bad_file_is_a_lab_error(tmp_path, monkeypatch):
    monkeypatch.setenv("LAB_RESULTS", str(tmp_path))
    with pytest.raises(LabError, match=r"\./lab bench hierarchy"):
        results.read("hierarchy")
    assert measured.hierarchy().startswith("Not measured yet")  # a page says so, no raise
    assert measured.hierarchy_rows() == []
    path = results.write("hierarchy", [{"scene": "wall"}], "./lab bench hierarchy --quick")
    record = json.loads(path.read_text())
    assert record["figures"] == [{"scene": "wall"}] and results.read("hierarchy") == record
    assert record["machine"]["cores"] >= 1 and record["machine"]["cpu"]
    assert "hierarchy" in measured.hierarchy()  # figures it cannot read: said, with the cure
    (tmp_path / "lessons.json").write_text("{not json")
    with pytest.raises(LabError, match=r"not valid JSON.*\./lab bench lessons"):
        results.read("lessons")
    (tmp_path / "lessons.json").write_text('{"figures": {}}')
    with pytest.raises(LabError, match="lacks name, command, date, machine"):
        results.read("lessons")


def test_a_short_run_leaves_the_reference_figures_be():
    import argparse

    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--episodes", type=int, default=30)
    ap.add_argument("--device", default="auto")
    assert results.name_for("hierarchy", ap, ap.parse_args(["--device", "cpu"])) == "hierarchy"
    for argv in (["--quick"], ["--episodes", "5"]):
        assert results.name_for("hierarchy", ap, ap.parse_args(argv)) == "hierarchy-partial"
    assert results.command("hierarchy", ["--scenes", "wall"]) == (
        "./lab bench hierarchy --scenes wall"
    )


# --- the README's tables against the results ----------------------------------------------
def test_readme_guardrail_science_table_quotes_the_results():
    f = figures("guardrail_science")
    rows = table("| rule | unguarded | plain CEM |")
    variants = ("unguarded", "plain", "repair", "calibrated", "calibrated_step1")
    assert len(rows) == len(f["fresh_rules"])
    for row, rule in zip(rows, f["fresh_rules"].values(), strict=True):
        for cell, variant in zip(row[1:], variants, strict=True):
            success, pct = re.fullmatch(r"([\d.]+) / ([\d.]+) %", cell).groups()
            assert agrees(success, rule[variant]["success"]), (row[0], variant, cell)
            assert agrees(pct, rule[variant]["violation_step_rate"], 100), (row[0], variant)
    cov = f["coverage"]
    for scene in ("reach", "push", "kitchen"):
        lo, hi = re.search(rf"{scene.capitalize()} (0\.\d+)-(0\.\d+)", PROSE).groups()
        assert agrees(lo, min(cov[scene].values())) and agrees(hi, max(cov[scene].values()))
    cem, random = re.search(
        r"CEM found (\d+) violating episodes,\s+uniform sampling (\d+)", PROSE
    ).groups()
    assert (int(cem), int(random)) == (f["stress_failures_cem"], f["stress_failures_random"])


def test_readme_system12_table_quotes_the_interleaved_results():
    rows = {r[0].lower(): r for r in table("| | 3 iterations | 2 iterations alone |")}
    for r in figures("system12-interleaved"):
        row = rows[r["scene"]]
        assert agrees(row[1].removesuffix(" ms"), r["planner3_ms"])
        assert agrees(row[2].removesuffix("x"), r["planner2_ratio"])
        assert agrees(row[3].removesuffix("x"), r["both2_ratio"])


def test_readme_label_free_table_quotes_the_results():
    rows = table("| model | latent, steps-to-go head |")
    names = {
        "Reach, state": ("reach", "state"),
        "Reach, pixels (goal image)": ("reach", "pixels"),
        "Wall, state": ("wall", "state"),
        "Push, state": ("push", "state"),
    }
    measured_rows = {(r["scene"], r["obs"]): r for r in figures("label_free")}
    assert len(rows) == len(measured_rows)
    for row in rows:
        r = measured_rows[names[row[0]]]
        for cell, name in zip(row[1:], ("latent", "plain", "signal", "oracle"), strict=True):
            if not cell:
                assert f"{name}_success" not in r
                continue
            m = re.fullmatch(r"(\d+)/(\d+)(?:, ([\d.]+)(?: steps)?)?", cell)
            assert m, cell
            n = int(m[2])
            assert n == r["episodes"] and int(m[1]) == round(r[f"{name}_success"] * n), cell
            if m[3]:
                assert agrees(m[3], r[f"steps_{name}"]), cell


def test_readme_hierarchy_table_quotes_the_results():
    rows = table("| scene | flat, goal term |")
    designs = (
        "flat",
        "hand_subgoal",
        "learned",
        "hwm",
        "scripted_high",
        "flat_steps",
        "oracle_flat",
    )
    by_scene = {r["scene"]: r for r in figures("hierarchy")}
    assert len(rows) == len(by_scene)
    for row in rows:
        r = by_scene[row[0].lower()]
        for cell, name in zip(row[1:], designs, strict=True):
            m = re.fullmatch(r"(\d+)/(\d+)(?:, ([\d.]+) steps)?(?:, ([\d.]+) ms)?", cell)
            assert m, cell
            n = int(m[2])
            assert n == r["episodes"] and int(m[1]) == round(r[f"{name}_success"] * n), cell
            if m[3]:
                assert agrees(m[3], r[f"steps_{name}"]), cell
            if m[4]:
                assert agrees(m[4], r[f"plan_ms_{name}"]), cell


# where each lesson's result cell quotes its figures: (pattern, figure names, scale)
LESSON_QUOTES = {
    "blur": [
        (
            r"generative ([\d.]+) / ([\d.]+) / ([\d.]+) / ([\d.]+), JEPA's",
            [f"generative_sharpness_h{h}" for h in (0, 1, 4, 16)],
            1,
        ),
        (
            r"JEPA's decoded ([\d.]+) / ([\d.]+) / ([\d.]+) / ([\d.]+)",
            [f"jepa_sharpness_h{h}" for h in (0, 1, 4, 16)],
            1,
        ),
        (
            r"probe nRMSE: generative ([\d.]+) / ([\d.]+) / ([\d.]+) / ([\d.]+)",
            [f"generative_probe_nrmse_h{h}" for h in (0, 1, 4, 16)],
            1,
        ),
        (
            r"JEPA ([\d.]+) / ([\d.]+) / ([\d.]+) / ([\d.]+);",
            [f"jepa_probe_nrmse_h{h}" for h in (0, 1, 4, 16)],
            1,
        ),
        (
            r"([\d.]+) % of real steps \(generative\) against ([\d.]+) %",
            ["generative_violation_step_rate", "jepa_violation_step_rate"],
            100,
        ),
        (r"(\d+) and (\d+) ms a plan", ["generative_plan_ms", "jepa_plan_ms"], 1),
    ],
    "collapse": [
        (
            r"effective rank ([\d.]+) without .* against ([\d.]+) with",
            ["rank_without", "rank_with"],
            1,
        )
    ],
    "guardrails": [
        (
            r"new rule broken on ([\d.]+) % of steps by the policy, ([\d.]+) %",
            ["new_rule_violation_policy", "new_rule_violation_planner"],
            100,
        ),
        (
            r"holding it \(success ([\d.]+), ([\d.]+)\)",
            ["new_rule_success_policy", "new_rule_success_planner"],
            1,
        ),
        (
            r"new situation: ([\d.]+) % trained in, ([\d.]+) %",
            ["shifted_violation_policy", "shifted_violation_planner"],
            100,
        ),
        (
            r"held at inference \(success ([\d.]+), ([\d.]+)\)",
            ["shifted_success_policy", "shifted_success_planner"],
            1,
        ),
    ],
    "open_loop": [
        (
            r"success blind ([\d.]+), receding ([\d.]+) \(calm\); ([\d.]+) "
            r"and ([\d.]+) \(shoves\)",
            [
                "open_loop_success_calm",
                "receding_success_calm",
                "open_loop_success_pushed",
                "receding_success_pushed",
            ],
            1,
        ),
        (
            r"ends ([\d.]+) m \(calm\) and ([\d.]+) m",
            ["blind_gap_end_calm", "blind_gap_end_pushed"],
            1,
        ),
    ],
    "hierarchy": [],
    "memory": [
        (
            r"memory ([\d.]+) / ([\d.]+) m, no memory ([\d.]+) / ([\d.]+) m",
            [
                "hidden_error_memory",
                "visible_error_memory",
                "hidden_error_no_memory",
                "visible_error_no_memory",
            ],
            1,
        ),
        (
            r"([\d.]+) x as much .* \(no memory ([\d.]+) x\)",
            ["surprise_ratio_memory", "surprise_ratio_no_memory"],
            1,
        ),
        (
            r"([\d.]+) % with memory, ([\d.]+) % without",
            ["hidden_violation_memory", "hidden_violation_no_memory"],
            100,
        ),
    ],
    "field": [
        (
            r"planner ([\d.]+) / ([\d.]+) -> ([\d.]+) / ([\d.]+)",
            ["planner_old_return", "planner_old_cost", "planner_new_return", "planner_new_cost"],
            1,
        ),
        (
            r"under the old rule ([\d.]+) / ([\d.]+), then a cost of ([\d.]+) under the new",
            ["ppol_old_return", "ppol_old_cost", "ppol_new_cost"],
            1,
        ),
        (
            r"trained again ([\d.]+) / ([\d.]+) after",
            ["retrained_new_return", "retrained_new_cost"],
            1,
        ),
    ],
}


def test_readme_memory_table_quotes_the_results():
    f = figures("memory")
    rows = {r[0]: r[1:] for r in table("| | memory | no memory | goal |")}
    cells = {
        "person position error, in full view (m, 30 held-out episodes)": [
            (r"^([\d.]+)$", "visible_error_memory", 1),
            (r"^([\d.]+)$", "visible_error_no_memory", 1),
        ],
        "person position error, hidden after being seen (m)": [
            (r"^([\d.]+) ", "hidden_error_memory", 1),
            (r"^([\d.]+) ", "hidden_error_no_memory", 1),
        ],
        "surprise: occlusion / vanishing / jump (20 episodes)": [
            (r"vanishing ([\d.]+) x", "surprise_ratio_memory", 1),
            (r"\(([\d.]+) x\)", "surprise_ratio_no_memory", 1),
        ],
        "hidden steps breaking the knife rule, margin on the hand alone, the cut beside the "
        "hidden person (20 episodes each)": [
            (r"^([\d.]+) %", "hidden_violation_memory", 100),
            (r"^([\d.]+) %", "hidden_violation_no_memory", 100),
        ],
        "time per step, perceiving and planning (ms)": [
            (r"^([\d.]+)", "plan_ms_memory", 1),
            (r"^([\d.]+)", "plan_ms_no_memory", 1),
        ],
    }
    assert set(rows) == set(cells)
    for row, wanted in cells.items():
        for cell, (pattern, key, scale) in zip(rows[row], wanted, strict=False):
            m = re.search(pattern, cell)
            assert m and agrees(m[1], f[key], scale), (row, key, cell)
    ratio = f["surprise_ratio_memory"]
    assert f"{ratio:.1f} times as much" in PROSE and ratio >= 3


def test_readme_lessons_table_quotes_the_results():
    f = figures("lessons")
    rows = table("| lesson | what runs | result | seconds |")
    assert len(rows) == len(LESSONS)
    for row, key in zip(rows, LESSONS, strict=True):
        assert agrees(row[3], f[key]["seconds"]), (key, row[3])
        line = row[2]  # the result cell, bold marks dropped
        for pattern, names, scale in LESSON_QUOTES[key]:
            m = re.search(pattern, line)
            assert m, (key, pattern)
            for shown, name in zip(m.groups(), names, strict=True):
                assert agrees(shown, f[key][name], scale), (key, name, shown)
    counts = re.findall(r"(\d+)/(\d+)", rows[list(LESSONS).index("hierarchy")][2])
    names = ("flat_success", "long_success", "hand_success", "learned_success")
    assert len(counts) == len(names)
    for (k, n), name in zip(counts, names, strict=True):
        assert int(k) == round(f["hierarchy"][name] * int(n)), name


def test_readme_kitchen_guardrail_lines_quote_agent_quality():
    d = {r["design"]: r for r in figures("agent_quality") if r["experiment"] == "kitchen_guardrail"}
    m = re.search(r"success 0\.97, ([\d.]+) % of steps violate \[([\d.]+), ([\d.]+)\]", PROSE)
    spec = d["spec"]
    assert agrees(m[1], spec["violation_step_rate"], 100)
    assert agrees(m[2], spec["violation_step_rate_low"], 100)
    assert agrees(m[3], spec["violation_step_rate_high"], 100)
    for design, pattern in (
        (
            "spec+margin",
            r"`spec\+margin`\): ([\d.]+) % \[([\d.]+), "
            r"([\d.]+)\]",
        ),
        (
            "spec+margin+stop",
            r"`spec\+margin\+stop`\): ([\d.]+) % "
            r"\[([\d.]+), ([\d.]+)\]",
        ),
    ):
        m = re.search(pattern, PROSE)
        assert m, design
        r = d[design]
        for shown, key in zip(m.groups(), ("", "_low", "_high"), strict=True):
            assert agrees(shown, r[f"violation_step_rate{key}"], 100), (design, key)


# --- the texts beside the code agree with the figures ------------------------------------
def test_the_lessons_texts_agree_with_their_figures():
    f = figures("lessons")
    blur = f["blur"]
    # "its sharpness at h = 16 is under half the real frame's"
    assert blur["generative_sharpness_h16"] < 0.5
    # "at h = 16 about twice the JEPA's error"
    assert 1.5 <= blur["generative_probe_nrmse_h16"] / blur["jepa_probe_nrmse_h16"] <= 2.5
    # "breaks the rule on more real steps ... at the same success"
    assert blur["generative_violation_step_rate"] > blur["jepa_violation_step_rate"]
    assert blur["generative_success"] == blur["jepa_success"]
    # collapse: "effective rank 0" without, "tens of independent directions" with
    assert f["collapse"]["rank_without"] < 1 and f["collapse"]["rank_with"] >= 10
    # hierarchy: flat and a longer horizon stuck, the person's and the learned subgoals work
    h = f["hierarchy"]
    assert h["long_success"] <= h["flat_success"] < h["hand_success"] == h["learned_success"]
    # "On Push it gets the block home in five episodes of six, by a longer way than the
    # person's subgoal"
    push = {r["scene"]: r for r in figures("hierarchy")}["push"]
    assert 0.78 <= push["learned_success"] <= 0.88 and push["hand_subgoal_success"] >= 0.9
    assert push["steps_learned"] > push["steps_hand_subgoal"]
    assert "five episodes of six" in LESSONS["hierarchy"].next
    # out of sight: the hidden breaks of the lesson's run and of the benchmark's
    m, bench = f["memory"], figures("memory")
    shows = " ".join(LESSONS["memory"].shows.split())
    for k in ("hidden_violation_memory", "hidden_violation_no_memory"):
        assert f"{100 * m[k]:.1f} %" in shows, k
    lo, hi = (100 * bench[f"hidden_violation_{k}"] for k in ("memory", "no_memory"))
    assert f"{lo:.1f} % against {hi:.1f} %" in shows
    assert f"{bench['success_no_memory_calibrated']:.2f} against " in shows
    assert f"put the hidden person {m['hidden_distance_gap_no_memory']:.2f} m farther" in shows
    lo, hi = (100 * bench[f"hidden_violation_{k}_across"] for k in ("memory", "no_memory"))
    assert f"little ({bench['hidden_distance_gap_no_memory_across']:.2f} m)" in shows
    assert f"({lo:.1f} % and {hi:.1f} %)" in shows


def test_the_hierarchy_default_is_as_good_as_planning_and_faster():
    """agents/hierarchy.py's reason for the subgoal policy as the default method."""
    for r in figures("hierarchy"):
        assert r["learned_success"] >= r["hwm_success"], r["scene"]
        assert r["plan_ms_learned"] < r["plan_ms_hwm"], r["scene"]


def test_the_pages_sentences_quote_the_results():
    assert "0.045 ms" in measured.system12()  # the Learn page's browser test reads it
    assert "30 of 30 (39.8 steps)" in measured.hierarchy()
    assert "0.13 %" in measured.margin() and "115 knife-rule failures" in measured.guardrails()
    assert "Push 11 of 20" in measured.label_free()
    for sentence in (
        measured.system12(),
        measured.hierarchy(),
        measured.margin(),
        measured.guardrails(),
        measured.label_free(),
    ):
        assert not sentence.startswith(("Not measured", "The figures in")), sentence


# --- ./lab bench guardrail_science --quick --------------------------------------------------
def test_the_quick_guardrail_bench_asks_a_miss_rate_its_calibration_can_promise():
    bench = runpy.run_path(str(ROOT / "benchmarks" / "guardrail_science.py"))
    rng = np.random.default_rng(0)
    for quick in (True, False):
        s = bench["settings"](quick)
        # gaps (T, H, S) of as many calibration episodes as the run takes
        gaps = [rng.random((5, 16, 2)) for _ in range(s["calibration"])]
        model = SimpleNamespace(probe_conformal=bounds_table(gaps, ["x", "y"]))
        margins = margins_for(model, AgentConfig(delta=s["delta"]), "cpu")
        assert all(torch.isfinite(v).all() for v in margins.values()), quick
    assert bench["settings"](False)["delta"] == 0.05
    # what --quick asked before: delta 0.05 from its 4 calibration episodes
    short = SimpleNamespace(probe_conformal=bounds_table(gaps[:4], ["x", "y"]))
    with pytest.raises(LabError, match="needs at least 19 calibration episodes"):
        margins_for(short, AgentConfig(delta=0.05), "cpu")


def test_results_live_where_common_paths_says():
    assert Path(RESULTS) == ROOT / "benchmarks" / "results"


def test_readme_safety_gym_table_quotes_the_results():
    lines = [ln.strip() for ln in README.splitlines()]
    start = lines.index(next(ln for ln in lines if ln.startswith("| task | lab return |")))
    rows = []
    for line in lines[start + 2 :]:
        if not line.startswith("|"):
            break
        rows.append([c.strip() for c in line.strip("|").split("|")])
    by_task = {r["task"].removesuffix("-v0"): r for r in figures("safety_gym")}
    assert len(rows) == len(by_task) == 4
    for task, ret, cost, steps, oracle, _published in rows:
        r = by_task[task]
        value, low, high = re.fullmatch(r"([\d.]+) \[([\d.]+), ([\d.]+)\]", ret).groups()
        for shown, key in ((value, "value"), (low, "low"), (high, "high")):
            assert agrees(shown, r["lab_return"][key]), (task, shown, key)
        first = re.match(r"([\d.]+)", cost).group(1)
        assert agrees(first, r["lab_cost"]["value"]), (task, cost)
        assert agrees(steps.removesuffix(" k"), r["lab_env_steps"], 1e-3), (task, steps)
        o_ret, o_cost = oracle.split(" / ")
        assert agrees(o_ret, r["oracle_return"]["value"]), (task, oracle)
        assert agrees(o_cost, r["oracle_cost"]["value"]), (task, oracle)


def test_readme_search_efficiency_table_quotes_the_results():
    lines = [ln.strip() for ln in README.splitlines()]
    start = lines.index(next(ln for ln in lines if ln.startswith("| scene | CEM N=1000 |")))
    rows = []
    for line in lines[start + 2 :]:
        if not line.startswith("|"):
            break
        rows.append([c.strip() for c in line.strip("|").split("|")])
    found = {(r["scene"], r["setting"]): r for r in figures("search_efficiency")}
    assert [r[0] for r in rows] == ["reach", "wall", "kitchen"]
    for scene, base, *smallest, timed in rows:
        first = found[(scene, "cem")]
        k, n, steps = re.fullmatch(r"(\d+)/(\d+), ([\d.]+) steps", base).groups()
        assert int(k) == round(first["baseline_success"] * first["episodes"]) and int(n) == 20
        assert agrees(steps, first["baseline_steps_to_goal"])
        for shown, setting in zip(smallest, ("cem", "coloured", "kept", "icem"), strict=True):
            n_found = found[(scene, setting)]["smallest_n"]
            assert shown.split(" ")[0] == ("none" if n_found is None else str(n_found))
        icem = found[(scene, "icem")]
        ms, base_ms, x = re.fullmatch(r"([\d.]+) vs ([\d.]+) \(([\d.]+)x\)", timed).groups()
        assert agrees(ms, icem["plan_ms_interleaved"]) and agrees(x, icem["speedup"])
        assert agrees(base_ms, icem["default_ms_interleaved"])
    # the default search is the one that held on every scene
    assert max(found[(sc, "icem")]["smallest_n"] for sc in ("reach", "wall", "kitchen")) == (
        PlannerConfig.samples
    )
    peer = found[("reach", "pytorch_mppi")]
    assert f"{peer['icem_speedup']}x" in PROSE and f"N = {peer['smallest_n']}" in PROSE
    repair = next(r for r in figures("search_efficiency") if r["setting"].startswith("repair"))
    assert f"{100 * repair['repair_overhead']:.1f} %" in PROSE
    assert measured.search().startswith("Over 20 seeded episodes")


def test_readme_trained_in_table_quotes_the_results():
    rows = table("| task | planner, old rule | planner, new rule")
    by_task = {r["task"].removesuffix("-v0"): r for r in figures("trained_in")}
    assert [row[0] for row in rows] == list(by_task)
    for task, old, new, kept, retrained, steps in rows:
        r = by_task[task]
        assert retrained == f"{r['ppol_retrained_return']} / {r['ppol_retrained_cost']:g}"
        assert steps == str(r["ppol_retrain_env_steps"])
        assert r["curve"][-1]["env_steps"] == r["ppol_env_steps"]
        if "planner_return" not in r:  # no shipped model: no planner
            assert old == new == kept == "-"
            continue
        assert old == f"{r['planner_return']} / {r['planner_cost']:g}"
        assert new == f"{r['planner_new_return']} / {r['planner_new_cost']:g}"
        assert kept == f"{r['planner_new_return'] / r['planner_return']:.2f}"
    circle = by_task["SafetyBallCircle"]
    ratio = circle["ppol_old_new_cost"] / circle["planner_new_cost"]
    assert f"{ratio:.0f}x the planner's" in PROSE


def test_readme_ppol_table_quotes_the_four_tasks():
    lines = [ln.strip() for ln in README.splitlines()]
    start = lines.index(next(ln for ln in lines if ln.startswith("| task | PPO-L here:")))
    rows = []
    for line in lines[start + 2 :]:
        if not line.startswith("|"):
            break
        rows.append([c.strip() for c in line.strip("|").split("|")])
    by_task = {r["task"].removesuffix("-v0"): r for r in figures("trained_in")}
    assert [r[0] for r in rows] == list(by_task)
    for task, here, published, new_rule, old_cost in rows:
        r = by_task[task]
        assert here == f"{r['ppol_return']} / {r['ppol_cost']:g}"
        assert published == " / ".join(str(v) for v in r["published_ppol"])
        assert new_rule == r["new_rule"]
        assert old_cost == f"{r['ppol_old_new_cost']:g}"


def test_readme_class_table_quotes_class_load():
    found = {p["placement"]: p for p in figures("class_load")["placements"]}
    rows = table("| placement | 10 stepping")
    assert [r[0].strip("`") for r in rows] == list(found)
    for name, step, run, load, web in rows:
        p = found[name.strip("`")]
        c, r, one = p["step_class"], p["run_class"], p["run_one"]
        p50, p95, lost = re.fullmatch(r"([\d.]+) / ([\d.]+), (\d+) lost", step).groups()
        assert agrees(p50, c["step_ms_p50"]) and agrees(p95, c["step_ms_p95"]), (name, step)
        assert int(lost) == c["lost"], (name, step)
        served, ratio, alone = re.fullmatch(r"([\d.]+) \(([\d.]+) x ([\d.]+)\)", run).groups()
        assert agrees(served, r["steps_per_s"]) and agrees(alone, one["steps_per_s"]), run
        assert agrees(ratio, p["served_ratio"]), (name, run)
        stepping, running = load.split(" / ")
        assert agrees(stepping, c["load_s_max"]) and agrees(running, r["load_s_max"]), load
        assert agrees(web, r["web_cores"]), (name, web)
