"""The lessons' parts with real objects: the generative world model, the sharpness
figure (and where the person walks), Reach's shoves, the intervals and the exports a
teacher takes (CSV headed by its settings, labelled frames, the headline chart), and
lessons run to their figures (short versions)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

import scenes
from agents.agent import Agent, AgentConfig
from agents.cost import CostSet
from agents.planners import PlannerConfig
from app import lesson_views
from common import results
from common.errors import LabError
from experiments.lessons import LESSONS, Live, run_lesson, wilson
from experiments.lessons.blur import person_region, region_sharpness
from experiments.lessons.collapse import collapse
from experiments.lessons.common import episodes_for, step_interval
from experiments.lessons.open_loop import open_loop
from scenes import dataset
from scenes.collect import CollectConfig, collect
from scenes.reach import PUSH_DISTANCE
from worldmodels import ModelConfig, WorldModel, load_checkpoint
from worldmodels.generative import sharpness
from worldmodels.train import TrainConfig, Trainer

pytestmark = pytest.mark.slow  # every lesson collects episodes or trains a model

CPU = torch.device("cpu")


@pytest.fixture(scope="module")
def reach_pixels(tmp_path_factory) -> str:
    out = tmp_path_factory.mktemp("data") / "reach"
    collect(
        CollectConfig(
            scene="reach",
            out=str(out),
            episodes=20,
            steps=30,
            workers=2,
            episodes_per_shard=5,
            progress=False,
        )
    )
    return str(out)


def test_the_generative_model_learns_pixels_and_plans_like_a_jepa(reach_pixels, tmp_path):
    cfg = TrainConfig(
        data=reach_pixels,
        out=str(tmp_path / "gen"),
        obs="pixels",
        objective="generative",
        steps=60,
        batch=16,
        horizon=4,
        latent_dim=16,
        eval_every=1000,
        progress=False,
        seed=0,
    )
    trainer = Trainer(cfg, CPU)
    first = trainer.train_step()
    assert set(first) == {"pixels", "probe", "probe_imagined", "total"}  # no EMA, no VICReg
    trainer.run()
    last = [trainer.train_step()["pixels"] for _ in range(5)]
    assert np.mean(last) < 0.7 * first["pixels"]
    model, config = load_checkpoint(trainer.snapshot().checkpoint)
    assert config["model"]["objective"] == "generative"
    # the same verbs as the JEPA: an agent plans with it unchanged
    env = scenes.make("reach").unwrapped
    try:
        search = PlannerConfig(samples=32, iterations=1, horizon=4)
        agent = Agent(model, env, CostSet(), AgentConfig(search=search))
        agent.reset(seed=0)
        step = agent.step()
        assert step.imagined_frames.shape == (4, 64, 64, 3)
    finally:
        env.close()


def test_a_generative_model_needs_pixels_and_a_decoder():
    with pytest.raises(LabError, match="predicts pixels"):
        WorldModel(ModelConfig(obs="state", objective="generative"))
    with pytest.raises(LabError, match="objective"):
        WorldModel(ModelConfig(objective="dream"))


def test_sharpness_falls_with_blur_and_is_relative_to_the_real_frame():
    rng = np.random.default_rng(0)
    img = torch.as_tensor(rng.integers(0, 256, (2, 64, 64, 3), dtype=np.uint8))
    x = img.float().permute(0, 3, 1, 2)
    blurred = torch.nn.functional.avg_pool2d(x, 5, stride=1, padding=2, count_include_pad=False)
    blurred = blurred.permute(0, 2, 3, 1).round().to(torch.uint8)
    assert torch.all(sharpness(blurred) < 0.3 * sharpness(img))
    assert torch.allclose(sharpness(img), sharpness(img.float() / 255))
    assert sharpness(torch.zeros(1, 64, 64, 3, dtype=torch.uint8)).item() == 0.0


def test_reach_shoves_the_disc_when_asked_and_only_then():
    env = scenes.make("reach").unwrapped
    try:
        still = np.zeros(2, np.float32)
        paths = []
        for pushes in (0.0, 1.0, 1.0):
            env.reset(seed=3, options={"pushes": pushes, "start": (0.0, 0.0), "goal_obs": False})
            xy = [np.array([env.signals["x"], env.signals["y"]])]
            for _ in range(3):
                env.step(still)
                xy.append(np.array([env.signals["x"], env.signals["y"]]))
            paths.append(np.array(xy))
        moves = [np.linalg.norm(np.diff(p, axis=0), axis=1) for p in paths]
        assert np.all(moves[0] < 1e-3)  # at rest, nothing moves it
        assert np.allclose(moves[1], PUSH_DISTANCE, atol=0.02)  # a shove a step
        assert np.allclose(paths[1], paths[2])  # the episode's seed draws them
        with pytest.raises(LabError, match="pushes is a probability"):
            env.reset(seed=0, options={"pushes": 2})
    finally:
        env.close()


def test_the_collapse_lesson_shows_the_rank_fall_without_ema_and_vicreg():
    live = Live()
    figures = collapse(live, CPU, quick=True)
    assert figures["rank_without"] <= 2 < figures["rank_with"]
    designs = {r["design"] for r in live.rows}
    assert len(designs) == 2 and len(live.pictures) == 2  # a curve and a spread each
    assert live.done == live.total


def test_the_open_loop_lesson_replans_its_way_to_more_goals():
    live = Live()
    figures = run_lesson("open_loop", live, CPU, quick=True)
    for tag in ("calm", "pushed"):
        assert figures[f"receding_success_{tag}"] >= figures[f"open_loop_success_{tag}"]
    assert figures["receding_success_pushed"] > figures["open_loop_success_pushed"]
    assert figures["blind_gap_end_pushed"] > figures["blind_gap_end_calm"]
    pushed = [r for r in live.rows if r["pushes"] > 0]
    # the model's error grows along its own rollout, not one step at a time from reality
    assert pushed[-1]["rollout_error_m"] > pushed[-1]["one_step_error_m"]
    assert live.done == live.total
    # each success rate with its interval, around it; what ran, in words
    for tag in ("calm", "pushed"):
        for k in (f"receding_success_{tag}", f"open_loop_success_{tag}"):
            lo, hi = live.intervals[k]
            assert lo <= figures[k] <= hi and hi - lo > 0.2  # 4 episodes: wide
    assert live.settings["scene"] == "Reach" and live.settings["seed"].startswith("0;")
    assert "4 episodes" in live.settings["episodes"]


def test_the_out_of_sight_lesson_measures_both_models_through_the_screen():
    """The occluded kitchen with the shipped models: the person hidden on some held-out
    steps and planned steps, both models' errors measured there and in view, and each
    model more surprised by a person vanishing in the open than by one going behind a
    screen; the chart's rows hold the real person and both models' reading."""
    live = Live()
    f = run_lesson("memory", live, CPU, quick=True)
    assert f["hidden_steps"] > 0 and f["visible_steps"] > 0
    for name in ("memory", "no_memory"):
        for k in ("visible_error", "hidden_error"):
            assert 0 < f[f"{k}_{name}"] < 1.5, (k, name)  # the path is 1.8 m long
        assert f[f"surprise_vanish_{name}"] > f[f"surprise_occlusion_{name}"] > 0, name
        assert f[f"hidden_plan_steps_{name}"] > 0, name
        assert 0 <= f[f"hidden_violation_{name}"] <= 1 and f[f"plan_ms_{name}"] > 0
        assert abs(f[f"hidden_distance_gap_{name}"]) < 1.8, name  # within the kitchen
    assert f["surprise_episodes"] >= 1
    series = {r["series"] for r in live.rows}
    assert {"memory", "no memory", "real", "real (screen hides them)"} <= series
    assert live.done == live.total and live.settings["scene"] == "Occluded"


def test_the_field_lesson_edits_the_planners_rule_and_retrains_the_policy():
    """BallCircle with the shipped models and policies: under the new boundary the
    planner keeps the rule and most of its return with nothing retrained; the policy
    trained under the old rule breaks it on many steps; the one trained again keeps it."""
    live = Live()
    f = run_lesson("field", live, CPU, quick=True)
    assert f["planner_old_cost"] <= 10 and f["planner_new_cost"] <= 10  # the limit
    assert f["ppol_old_cost"] <= 10 and f["retrained_new_cost"] <= 10
    assert f["ppol_new_cost"] >= 5 * max(f["planner_new_cost"], 1.0)
    assert f["planner_return_kept"] >= 0.7
    assert f["ppol_new_return"] == f["ppol_old_return"]  # the same episodes, judged anew
    assert f["retrain_env_steps"] > 100_000
    assert {(r["design"], r["rule"]) for r in live.rows} == {
        (d, w)
        for d, w in [
            ("planner (rule held)", "old rule"),
            ("planner (rule held)", "new rule"),
            ("PPO-L trained under the old rule", "old rule"),
            ("PPO-L trained under the old rule", "new rule"),
            ("PPO-L trained again under the new", "new rule"),
        ]
    }
    for k in ("planner_new_return", "ppol_new_return"):  # two episodes, two returns
        lo, hi = live.intervals[k]
        assert lo <= f[k] <= hi and hi > lo
    assert live.done == live.total and live.settings["scene"] == "Ballcircle"


def test_a_lesson_collection_of_an_older_scene_version_is_made_anew(tmp_path, monkeypatch):
    """The lessons' collections are a cache: one an older version of its scene made
    (another ``env_id`` in its manifest) is collected again, not read as this one's."""
    monkeypatch.setenv("LAB_HOME", str(tmp_path))
    out = episodes_for("reach", 2, False, 7)
    manifest = dataset.load_manifest(out)
    first = out / "shard-00000" / "state.npy"
    before = first.read_bytes()
    (out / "manifest.json").write_text(
        json.dumps({**manifest, "env_id": manifest["env_id"].replace("-v0", "-v-1")})
    )
    first.write_bytes(b"stale")  # what an older scene left there
    assert episodes_for("reach", 2, False, 7) == out
    assert dataset.load_manifest(out)["env_id"] == scenes.env_id("reach")
    assert first.read_bytes() == before  # the same seeded episodes, made again


def test_another_seed_runs_other_episodes():
    one, other = Live(), Live()
    open_loop(one, CPU, quick=True, seed=0)
    open_loop(other, CPU, quick=True, seed=5)
    assert one.rows != other.rows


def test_a_lesson_refuses_a_scene_it_cannot_run_on_and_a_bad_seed():
    with pytest.raises(LabError, match="runs on reach, not"):
        run_lesson("open_loop", Live(), CPU, quick=True, scene="kitchen")
    with pytest.raises(LabError, match="seed is a whole number"):
        run_lesson("open_loop", Live(), CPU, quick=True, seed=-1)
    with pytest.raises(LabError, match="seed is a whole number"):
        run_lesson("open_loop", Live(), CPU, quick=True, seed=1.5)


def test_wilson_intervals_hold_the_rate_and_stay_in_0_1():
    assert wilson(5, 10) == pytest.approx((0.2366, 0.7634), abs=1e-4)
    lo, hi = wilson(0, 10)  # none of 10 is not "exactly 0"
    assert lo == 0.0 and hi == pytest.approx(0.2775, abs=1e-4)
    lo, hi = wilson(10, 10)
    assert lo == pytest.approx(0.7225, abs=1e-4) and hi == 1.0
    assert wilson(0, 0) == (0.0, 1.0)  # nothing measured: anything
    # more episodes, a narrower interval around the same rate
    few, many = wilson(3, 4), wilson(75, 100)
    assert many[1] - many[0] < few[1] - few[0]
    assert few[0] < 0.75 < few[1] and many[0] < 0.75 < many[1]


def test_a_step_rate_takes_the_bootstrap_interval_of_its_episodes():
    summary = {"violation_step_rate": {"value": 0.05, "low": 0.01, "high": 0.12}}
    assert step_interval(summary) == (0.01, 0.12)
    # undefined bounds (one episode): the value itself, not a made-up spread
    assert step_interval({"violation_step_rate": {"value": 0.0, "low": None, "high": None}}) == (
        0.0,
        0.0,
    )


def test_shipped_success_rates_get_wilson_intervals_over_the_full_episodes():
    lesson = LESSONS["open_loop"]
    shipped = results.figures("lessons")["open_loop"]
    spans = lesson.figure_intervals(shipped)
    assert spans["open_loop_success_calm"] == wilson(round(0.35 * 20), 20)
    assert not any("gap" in k for k in spans)  # a distance is not a rate of episodes


def test_the_csv_is_headed_by_its_settings_and_figures_in_words():
    lesson = LESSONS["guardrails"]
    settings = lesson.setup(quick=True, seed=4, scene="kitchen")
    figures = {"new_rule_violation_planner": 0.0014, "new_rule_success_planner": 0.5}
    spans = {"new_rule_violation_planner": (0.0, 0.004), "new_rule_success_planner": (0.1, 0.9)}
    rows = [{"test": "a new rule", "actor": "planner (rule held)", "success": 0.5}]
    text = lesson_views.csv_text(lesson, settings, figures, spans, rows)
    head = [line for line in text.splitlines() if line.startswith("#")]
    assert text.startswith("# lesson: Guardrails at inference time\n")
    assert "# scene: Kitchen" in head and any(h.startswith("# seed: 4;") for h in head)
    assert any(h.startswith("# episodes: 2 episodes") for h in head)
    assert any(h.startswith("# rule: slow within 0.7 m") for h in head)
    assert any(h.startswith("# a new situation: the person walking at 0.8 m/s") for h in head)
    assert (
        "# share of real steps breaking the rule, a new rule, planner (rule held): 0.14 % "
        "(95 % interval 0 to 0.4 %)" in head
    )
    header, back = lesson_views.read_csv(text)
    assert header["scene"] == "Kitchen" and back == [{k: str(v) for k, v in rows[0].items()}]
    assert all("`" not in h and "_" not in h.split(":")[0] for h in head)  # plain words


# the guardrails lesson's figures with a small planner rate and a success of 0.8 (the
# shipped figures change when the lesson is measured again; these test the views)
SMALL = {"new_rule_violation_planner": 0.0014, "new_rule_success_planner": 0.8}


def test_figures_read_in_words_and_percentages():
    lesson = LESSONS["guardrails"]
    shipped = {**results.figures("lessons")["guardrails"], **SMALL}
    rows = lesson_views.figure_rows(lesson, shipped, lesson.figure_intervals(shipped))
    by = {r["figure"]: r for r in rows}
    planner = by["share of real steps breaking the rule, a new rule, planner (rule held)"]
    assert planner["value"] == "0.14 %" and planner["unit"] == "percent"
    won = by["share of episodes reaching the goal, a new rule, planner (rule held)"]
    assert won["value"] == "80 %" and won["95 % interval"] == "49 to 94 %"
    for key, lesson in LESSONS.items():  # every shipped figure has words, no code names
        for r in lesson_views.figure_rows(lesson, results.figures("lessons")[key], {}):
            assert "_" not in r["figure"], (key, r)
            assert ": " not in r["figure"], (key, r)  # the CSV's "# name: value" lines
    assert lesson_views.pct(0.0014) == "0.14 %" and lesson_views.pct(0.9) == "90 %"
    assert lesson_views.pct(0.0451) == "4.5 %" and lesson_views.pct(0.0) == "0 %"
    memory = LESSONS["memory"]  # units by name where no panel draws the figure
    rows = lesson_views.figure_rows(memory, results.figures("lessons")["memory"], {})
    units = {r["figure"]: r["unit"] for r in rows}
    assert units["time per step, perceiving and planning, memory"] == "ms"
    assert (
        units["error of the person's position read from the latent, hidden and never seen, memory"]
        == "m"
    )


def test_the_headline_chart_marks_every_bar_with_its_value_and_interval():
    lesson = LESSONS["guardrails"]
    shipped = {**results.figures("lessons")["guardrails"], **SMALL}
    spans = {**lesson.figure_intervals(shipped), "new_rule_violation_planner": (0.0, 0.004)}
    title = lesson_views.chart_title(lesson, lesson.setup(False, 0))
    fig = lesson_views.headline_chart(lesson, shipped, spans, title)
    assert lesson.title in fig["layout"]["title"]["text"] and "Kitchen" in title
    assert "10 episodes" in title
    panels = [a["text"] for a in fig["layout"]["annotations"]]
    assert "lower is better" in panels[0] and "percent" in panels[0]
    assert "lower is better" not in panels[1]
    planner = next(t for t in fig["data"] if t["name"] == "planner (rule held)")
    assert planner["y"][0] == pytest.approx(0.14) and planner["text"][0] == "0.14 %"
    assert planner["error_y"]["array"][0] == pytest.approx(0.26)  # up to 0.4 %
    assert all(len(t["text"]) == len(t["y"]) for t in fig["data"])  # a mark on every bar
    # a bar too small to hold its value has it above: 0.14 % beside 42 % is seen
    assert planner["textposition"][0] == "outside"
    policy = next(t for t in fig["data"] if t["name"] == "policy (rule trained in)")
    assert policy["textposition"][0] == "inside"
    hier = LESSONS["hierarchy"]  # 0 % (no episode reached the goal) is marked too
    zero = lesson_views.headline_chart(hier, {"flat_success": 0.0, "hand_success": 1.0}, {}, "")
    assert zero["data"][0]["text"] == ["0 %", "100 %"]
    assert zero["data"][0]["textposition"] == ["outside", "inside"]
    rows = [{"design": "flat", "success": 1.0}, {"design": "hand", "success": 0.0014}]
    bars = lesson_views.rows_chart(rows, "design", ["success"], None)["data"][0]
    assert bars["text"] == ["100 %", "0.14 %"] and bars["y"] == pytest.approx([100.0, 0.14])
    for key, lesson in LESSONS.items():  # every lesson has a chart of its shipped figures
        assert lesson_views.headline_chart(lesson, results.figures("lessons")[key], {}, "")
    # Open loop's headline: success blind against replanning, calm and shoved
    ol = lesson_views.headline_chart(
        LESSONS["open_loop"], results.figures("lessons")["open_loop"], {}, ""
    )
    names = {t["name"] for t in ol["data"]}
    assert {"blind plan", "replanning every step"} <= names
    assert set(ol["data"][0]["x"]) == {"calm", "shoved"}


def test_the_frames_png_is_labelled():
    rng = np.random.default_rng(0)
    pics = {
        n: rng.integers(0, 256, (3, 64, 64, 3), dtype=np.uint8)
        for n in ("real", "JEPA", "generative")
    }
    grid = lesson_views.labelled_frames(pics, (1, 4, 16))
    assert grid.shape[0] > 3 * 192 and grid.shape[1] > 3 * 192
    label_column, header_row = grid[:, :140], grid[:30, 160:]
    assert (label_column < 128).any() and (header_row < 128).any()  # text drawn in them
    assert (grid[34:226, 150:342] == pics["real"][0].repeat(3, 0).repeat(3, 1)).mean() > 0.9


def test_sharpness_where_the_person_walks_counts_only_that_part():
    frames = torch.full((1, 2, 64, 64, 3), 190, dtype=torch.uint8)  # the grey floor
    frames[0, :, 20:30, 40:50] = torch.tensor([153, 56, 158], dtype=torch.uint8)  # person
    frames[0, :, 2:10, 2:10] = torch.tensor([230, 100, 20], dtype=torch.uint8)  # orange arm
    region = person_region(frames)
    assert region[0, 25, 45] and not region[0, 5, 5] and not region[0, 50, 10]
    assert region[0, 18, 38] and not region[0, 17, 37]  # grown by 2 pixels, no more
    real = region_sharpness(frames, region)
    soft = frames.clone()
    soft[0, 1] = 190  # the second frame's person averaged away
    soft[0, 1, 22:28, 42:48] = torch.tensor([170, 120, 175], dtype=torch.uint8)
    there = region_sharpness(soft, region)
    assert there[0, 1] < real[0, 1] and there[0, 0] == real[0, 0]
    # what lies outside the region does not count: the arm moved, the figure did not
    moved = frames.clone()
    moved[0, 1, 2:10, 2:10] = 190
    assert torch.allclose(region_sharpness(moved, region), real)


def test_a_stopped_lesson_says_so():
    import threading

    stop = threading.Event()
    stop.set()
    with pytest.raises(LabError, match="stopped"):
        LESSONS["open_loop"].run(Live(), CPU, stop)


def test_each_lesson_keeps_its_text_beside_its_code():
    for key, lesson in LESSONS.items():
        assert lesson.run.__module__ == f"experiments.lessons.{key}"
        assert lesson.claim and lesson.shows and lesson.next
