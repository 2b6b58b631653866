"""Planners and the cost on analytic fixtures: linear dynamics, distance costs, known answers."""

from __future__ import annotations

import json

import pytest
import torch

from agents.cost import Cost, CostSet, Term
from agents.expressions import ExpressionError
from agents.planners import PLANNERS, PlannerConfig, shift
from agents.planners.base import SCALES, coloured, slowed
from common.errors import LabError


class LinearModel:
    """s_t+1 = s_t + 0.1 a_t in the plane; the probes read x and y exactly."""

    def rollout(self, s0, actions):
        return s0[:, None, :] + 0.1 * torch.cumsum(actions, dim=1)  # (N, H, 2)

    def probe(self, s, names=None):
        return {"x": s[..., 0], "y": s[..., 1]}


SIGNALS, TASK = ["x", "y"], ["x", "y"]
GOAL = torch.tensor([1.0, 0.5])


def make(name, terms=(), smooth=False, **cfg):
    costs = CostSet(terms=list(terms))
    cost = Cost(costs, SIGNALS, TASK)
    kw = dict(samples=200, horizon=12, iterations=4, elites=20)
    kw.update(cfg)
    planner_cls = PLANNERS[name]
    if name == "gd":
        smooth_cost = Cost(costs, SIGNALS, TASK, smooth=True)
        planner = planner_cls(PlannerConfig(**kw), 2, smooth_cost=smooth_cost)
    else:
        planner = planner_cls(PlannerConfig(**kw), 2)
    return planner, cost


def run(planner, cost, seed=0, warm=None):
    g = torch.Generator().manual_seed(seed)
    return planner.plan(LinearModel(), cost, torch.zeros(2), GOAL, None, g, warm)


@pytest.mark.parametrize("name", list(PLANNERS))
def test_the_plan_heads_for_the_goal_and_beats_standing_still(name):
    planner, cost = make(name)
    rec = run(planner, cost)
    still = cost.evaluate(
        torch.zeros(1, 12, 2), {"x": torch.zeros(1, 12), "y": torch.zeros(1, 12)}, None, GOAL
    )
    assert float(rec.total[rec.chosen]) < 0.8 * float(still.total[0])
    first = rec.actions[0]
    assert float(first @ GOAL) > 0  # moves towards the goal
    assert rec.actions.shape == (12, 2) and rec.latents.shape == (12, 2)
    n = planner.sizes()[-1]  # the last round's samples (iCEM's decay: fewer than N)
    assert rec.samples.shape == (n, 12, 2) and rec.signals["x"].shape == (n, 12)
    assert set(rec.terms) == {"task"} and rec.terms["task"].shape == (n, 12)


@pytest.mark.parametrize("name", list(PLANNERS))
def test_more_iterations_lower_the_cost(name):
    costs = []
    for iters in (1, 6):
        planner, cost = make(name, iterations=iters)
        rec = run(planner, cost)
        costs.append(float(rec.total[rec.chosen]))
    assert costs[1] <= costs[0]


@pytest.mark.parametrize("name", list(PLANNERS))
def test_actions_stay_in_bounds(name):
    planner, cost = make(name, init_std=3.0, lr=5.0)
    rec = run(planner, cost)
    assert rec.samples.abs().max() <= 1.0 and rec.actions.abs().max() <= 1.0


@pytest.mark.parametrize("name", list(PLANNERS))
def test_same_seed_same_plan(name):
    planner, cost = make(name)
    a, b = run(planner, cost, seed=3), run(planner, cost, seed=3)
    assert torch.equal(a.actions, b.actions)
    c = run(planner, cost, seed=4)
    assert not torch.equal(a.actions, c.actions)


@pytest.mark.parametrize("name", list(PLANNERS))
def test_a_hard_guardrail_holds_when_a_feasible_plan_exists(name):
    wall = Term("wall", "x", kind="hard", limit=0.3)
    planner, cost = make(name, terms=[wall])
    rec = run(planner, cost)
    assert not rec.none_feasible and bool(rec.feasible[rec.chosen])
    xs = LinearModel().rollout(torch.zeros(1, 2), rec.actions[None])[0, :, 0]
    assert xs.max() <= 0.3 + 1e-6  # never past the wall ...
    assert xs[-1] > 0.2  # ... but as close to the goal as it allows
    free, free_cost = make(name)
    assert float(run(free, free_cost).actions[:, 0].sum()) * 0.1 > 0.3  # unguarded goes past


@pytest.mark.parametrize("name", list(PLANNERS))
def test_no_feasible_plan_ranks_by_violation_and_says_so(name):
    impossible = Term("far", "5 - x", kind="hard", limit=0.0)  # x >= 5 at every step: never
    planner, cost = make(name, terms=[impossible])
    rec = run(planner, cost)
    assert rec.none_feasible and not bool(rec.feasible.any())
    assert float(rec.violation[rec.chosen]) == float(rec.violation.min())


def test_soft_terms_trade_off_against_the_task():
    slow = Term("slow", "(x - 0) ** 2 + (y - 0) ** 2", weight=50.0)
    planner, cost = make("cem", terms=[slow])
    near = run(planner, cost)
    planner, cost = make("cem")
    far = run(planner, cost)
    reach = lambda r: float(torch.linalg.vector_norm(0.1 * r.actions.sum(0)))  # noqa: E731
    assert reach(near) < reach(far)
    assert set(near.terms) == {"task", "slow"}


def test_the_warm_start_is_kept_and_shifted():
    planner, cost = make("cem", iterations=1, samples=50)
    warm = torch.full((12, 2), 0.7)
    rec = run(planner, cost, warm=warm)
    assert torch.allclose(rec.samples[0], warm)
    nxt = shift(rec.actions)
    assert torch.equal(nxt[:-1], rec.actions[1:]) and torch.equal(nxt[-1], rec.actions[-1])


def test_a_bad_expression_keeps_the_last_good_term():
    good = CostSet(terms=[Term("wall", "x", kind="hard", limit=0.3)])
    cost = Cost(good, SIGNALS, TASK)
    errors = cost.update(CostSet(terms=[Term("wall", "relu(x - ", kind="hard", limit=0.3)]))
    assert isinstance(errors["wall"], ExpressionError) and errors["wall"].column == 5
    assert cost.costs.terms[0].expression == "x"  # still in force
    planner = PLANNERS["cem"](PlannerConfig(samples=100, horizon=12), 2)
    rec = run(planner, cost)
    assert bool(rec.feasible[rec.chosen])


def test_nan_signals_make_a_plan_infeasible_not_a_crash():
    cost = Cost(CostSet(terms=[Term("g", "x", kind="hard", limit=1.0)]), SIGNALS, TASK)
    sig = {"x": torch.tensor([[0.0, float("nan")], [0.0, 0.5]]), "y": torch.zeros(2, 2)}
    res = cost.evaluate(torch.zeros(2, 2, 2), sig, None, GOAL)
    assert res.feasible.tolist() == [False, True] and torch.isfinite(res.total).all()


def test_a_margin_makes_a_hard_term_hold_for_every_value_within_it():
    knife = Term("knife", "relu(x - 0.2) * (y < 0.5)", kind="hard")
    cost = Cost(CostSet(terms=[knife]), SIGNALS, TASK)
    # (x, y) per sample at 3 steps: slow and inside; fast, just outside; fast, well outside
    x = torch.tensor([[0.1, 0.1, 0.1], [0.15, 0.15, 0.15], [0.5, 0.5, 0.5]])
    y = torch.tensor([[0.3, 0.3, 0.3], [0.55, 0.55, 0.55], [0.9, 0.9, 0.9]])
    sig = {"x": x, "y": y}
    plain = cost.evaluate(torch.zeros(3, 3, 2), sig, None, GOAL)
    assert plain.feasible.tolist() == [True, True, True]
    # margins grow with the horizon; a horizon longer than a curve reuses its last value
    cost.set_margins({"x": torch.tensor([0.02, 0.1]), "y": torch.tensor([0.02, 0.1])})
    res = cost.evaluate(torch.zeros(3, 3, 2), sig, None, GOAL)
    assert res.feasible.tolist() == [True, False, True]
    # sample 2 breaks it at steps 2 and 3 (x 0.25 > 0.2 with y 0.45 < 0.5), not at step 1
    assert res.terms["knife"][1].tolist() == pytest.approx([0.0, 0.05, 0.05])
    assert float(res.violation[1]) == pytest.approx(0.1)
    assert torch.equal(res.total, plain.total)  # the task and soft terms are unchanged
    sig["x"] = torch.tensor([[float("nan"), 0.1, 0.1], [0.1] * 3, [0.1] * 3])
    assert cost.evaluate(torch.zeros(3, 3, 2), sig, None, GOAL).feasible.tolist() == [
        False,
        True,
        True,
    ]
    cost.set_margins(None)
    assert cost.evaluate(torch.zeros(3, 3, 2), {"x": x, "y": y}, None, GOAL).feasible.all()


def test_cost_sets_round_trip_as_json(tmp_path):
    costs = CostSet(
        task="latent",
        task_weight=2.0,
        terms=[
            Term("careful", "relu(x - 0.2) * (y < 0.5)", "hard", limit=0.0),
            Term("lazy", "x * x", weight=0.5, enabled=False),
        ],
    )
    costs.save(tmp_path / "c.json")
    assert CostSet.load(tmp_path / "c.json") == costs
    (tmp_path / "bad.json").write_text('{"format": "lab-costs", "version": 1, "task": "win"}')
    with pytest.raises(LabError, match="task must be"):
        CostSet.load(tmp_path / "bad.json")
    (tmp_path / "x.json").write_text("[1, 2")
    with pytest.raises(LabError, match="not valid JSON"):
        CostSet.load(tmp_path / "x.json")


def test_a_term_can_read_the_goal():
    """``goal_x``, ``goal_y``: the goal's values, so a subgoal follows the episode's goal.
    They are not signals (nothing probes them), and a scene without them refuses them."""
    near = Term("near", "abs(x - goal_x) + abs(y - goal_y)", kind="soft", weight=1.0)
    cost = Cost(CostSet(terms=[near]), SIGNALS, TASK)
    assert cost.errors == {} and cost.needed == ["x", "y"]
    sig = {"x": torch.tensor([[1.0, 0.0]]), "y": torch.tensor([[0.5, 0.0]])}
    res = cost.evaluate(torch.zeros(1, 2, 2), sig, None, GOAL)
    assert res.terms["near"].tolist() == [[0.0, 1.5]]
    elsewhere = cost.evaluate(torch.zeros(1, 2, 2), sig, None, torch.tensor([0.0, 0.0]))
    assert elsewhere.terms["near"].tolist() == [[1.5, 0.0]]
    # a hard term on the goal alone still gives one value per sample and step
    only_goal = Cost(CostSet(terms=[Term("g", "goal_x", kind="hard")]), SIGNALS, TASK)
    assert only_goal.evaluate(torch.zeros(1, 2, 2), sig, None, GOAL).terms["g"].shape == (1, 2)
    assert "goal_z" in str(Cost(CostSet(terms=[Term("z", "goal_z")]), SIGNALS, TASK).errors["z"])
    planner = PLANNERS["cem"](PlannerConfig(samples=100, horizon=12), 2)
    rec = run(planner, Cost(CostSet(terms=[near]), SIGNALS, TASK))
    assert float(rec.terms["near"][rec.chosen, -1]) < 1.0  # it heads for the goal (1.5 away)


def test_a_cost_set_that_is_not_one_is_refused_with_what_it_is_and_what_to_do(tmp_path):
    for name, data, message in [
        ("bin.json", b"\xff\xfe\x00binary", "is not text"),
        ("list.json", b"[1, 2]", "not a lab cost set"),
        ("other.json", b'{"format": "lab-eval", "version": 1}', "'format' should be 'lab-costs'"),
        ("new.json", b'{"format": "lab-costs", "version": 9}', "version 9; this lab reads"),
    ]:
        (tmp_path / name).write_bytes(data)
        with pytest.raises(LabError, match=message) as caught:
            CostSet.load(tmp_path / name)
        assert name in str(caught.value)  # the file is named
    with pytest.raises(LabError, match="the text is not valid JSON"):
        CostSet.from_json("{")


@pytest.mark.parametrize(
    "fields",
    [
        {"task_weight": "x"},
        {"task_weight": float("inf")},
        {"terms": [{"name": "a", "expression": "x", "weight": "x"}]},
        {"terms": [{"name": "a", "expression": 3}]},
        {"terms": [{"name": "a", "expression": "x", "enabled": "yes"}]},
        {"terms": [{"name": "a", "expression": "x", "colour": "red"}]},
        {"terms": ["x"]},
    ],
)
def test_a_malformed_cost_set_is_refused_with_its_source_named(fields):
    text = json.dumps({"format": "lab-costs", "version": 1, **fields})
    with pytest.raises(LabError, match=r"^upload\.json: "):
        CostSet.from_json(text, source="upload.json")


@pytest.mark.parametrize(
    "terms, message",
    [
        ([{"name": 5}], r"^f\.json: term 1: 'name' must be text, not a number \(5\)$"),
        (
            [{"name": "ok", "expression": "x"}, {"name": "b"}],
            r"^f\.json: term 2 \('b'\): 'expression' is missing; it must be text$",
        ),
        (
            [{"name": "a", "expression": "x", "kind": "firm"}],
            r"term 1 \('a'\): 'kind' must be 'soft' or 'hard', not text \('firm'\)",
        ),
        (
            [{"name": "a", "expression": "x", "weight": True}],
            r"term 1 \('a'\): 'weight' must be a finite number, not true/false \(true\)",
        ),
        (
            [{"name": "a", "expression": "x", "colour": "red"}],
            r"term 1 \('a'\): unknown field 'colour'; a term has name, expression, kind",
        ),
        ([7], r"term 1 must be an object with name, expression, .*, not a number \(7\)"),
        ({"name": "a"}, r"'terms' must be a list of terms"),
    ],
)
def test_a_malformed_term_is_named_by_place_and_field_without_python_internals(terms, message):
    text = json.dumps({"format": "lab-costs", "version": 1, "terms": terms})
    with pytest.raises(LabError, match=message) as caught:
        CostSet.from_json(text, source="f.json")
    assert "__init__" not in str(caught.value) and "positional" not in str(caught.value)


# The iCEM settings (Pinneri et al. 2020): coloured noise, elites kept, shrinking rounds.


@pytest.mark.parametrize("beta", [0.0, 2.0])
def test_coloured_noise_keeps_unit_spread_and_correlates_neighbours_as_beta_says(beta):
    noise = coloured(torch.randn(40_000, 16, 2, generator=torch.Generator().manual_seed(0)), beta)
    assert abs(float(noise.var()) - 1.0) < 0.03  # the same spread as white noise
    lag1 = float(torch.corrcoef(torch.stack([noise[:, 3, 0], noise[:, 4, 0]]))[0, 1])
    assert (lag1 > 0.6) if beta else (abs(lag1) < 0.03)


@pytest.mark.parametrize("name", ["cem", "mppi"])
def test_coloured_samples_are_smoother_and_still_reach_the_goal(name):
    rough = []
    for beta in (0.0, 2.5):
        planner, cost = make(name, noise_beta=beta)
        rec = run(planner, cost)
        jumps = (rec.samples[:, 1:] - rec.samples[:, :-1]).abs().mean()
        rough.append(float(jumps))
        assert float(rec.actions[0] @ GOAL) > 0
    assert rough[1] < 0.6 * rough[0]


@pytest.mark.parametrize("name", ["cem", "mppi", "gd"])
def test_a_kept_elite_is_never_lost(name):
    """A good plan handed on (``keep``) is among the next plan's samples: a tiny search
    from the same state ends no worse than the best plan it was given."""
    big, cost = make(name, keep=0.3)
    first = run(big, cost)
    assert first.kept.shape == (6, 12, 2)  # 0.3 of 20 elites
    best_given = float(first.total[first.chosen])
    tiny, _ = make(name, samples=8, iterations=1, elites=4, keep=0.5)
    g = torch.Generator().manual_seed(1)
    rec = tiny.plan(LinearModel(), cost, torch.zeros(2), GOAL, None, g, None, kept=first.kept)
    assert float(rec.total[rec.chosen]) <= best_given + 1e-5
    # without it, the tiny search does worse: the kept elite is what made the difference
    alone = tiny.plan(LinearModel(), cost, torch.zeros(2), GOAL, None, g, None)
    assert float(alone.total[alone.chosen]) > best_given


def test_later_rounds_draw_fewer_samples_with_decay():
    planner, cost = make("cem", samples=200, iterations=4, elites=20, decay=2.0)
    assert planner.sizes() == [200, 100, 50, 40]  # never under twice the elites
    rec = run(planner, cost)
    assert rec.samples.shape == (40, 12, 2) and float(rec.actions[0] @ GOAL) > 0


@pytest.mark.parametrize(
    "field, value", [("keep", 1.5), ("decay", 0.5), ("noise_beta", -1.0), ("samples", 0)]
)
def test_a_search_setting_out_of_range_is_refused_by_name(field, value):
    with pytest.raises(LabError, match=rf"{field} = .*must be"):
        PlannerConfig(**{field: value})


def test_elites_default_to_a_tenth_of_n():
    assert PlannerConfig(samples=300).elite_count == 30
    assert PlannerConfig(samples=30).elite_count == 4  # at least 4
    assert PlannerConfig(samples=3).elite_count == 3  # at most N
    assert PlannerConfig(samples=300, elites=6).elite_count == 6  # as given


def test_the_default_search_is_icem_and_its_rounds_shrink():
    planner, _ = make("cem", samples=PlannerConfig.samples, elites=0)
    cfg = planner.cfg
    assert (cfg.noise_beta, cfg.keep, cfg.decay) == (2.0, 0.3, 1.25)
    assert planner.sizes() == [30, 24, 19][: cfg.iterations] + [15][: cfg.iterations - 3]


def test_repair_copies_every_plan_at_every_scale_for_the_next_round():
    plans = torch.rand(3, 12, 2) * 2 - 1
    copies = slowed(plans)
    assert copies.shape == (3 * len(SCALES), 12, 2)
    # plan by plan: the second plan's copies follow the first's, slowest last
    assert torch.allclose(copies[len(SCALES)], plans[1] * SCALES[0])
    assert torch.allclose(copies[len(SCALES) - 1], plans[0] * SCALES[-1])
