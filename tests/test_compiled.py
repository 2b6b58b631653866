"""The compiled imagination (worldmodels.compiled): the same numbers as the plain
rollout and probes, compiled off the plan's path, one entry per (kind, batch size) with
one state, and the plain path where compiling fails. Real compiles (inductor, g++):
about 20 s each on 2 cores (marked slow); the rule of when to specialise is pure."""

from __future__ import annotations

import gc
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from agents.cost import Cost, CostSet, Term
from agents.planners import PLANNERS, PlannerConfig
from worldmodels import ModelConfig, WorldModel, compiled
from worldmodels.checkpoint import load_checkpoint

ROOT = Path(__file__).resolve().parents[1]
slow = pytest.mark.slow
# inductor writes C++ for a CPU (./lab test installs g++ where it can); without one the
# plain path stays, which the last test checks on its own
needs_compiler = pytest.mark.skipif(
    shutil.which(os.environ.get("CXX", "g++")) is None, reason="no C++ compiler (g++)"
)


@pytest.fixture
def compiling(monkeypatch):
    monkeypatch.setenv(compiled.ENV, "1")  # the other tests plan uncompiled (conftest)


def model_of(layers: int) -> WorldModel:
    cfg = ModelConfig(
        latent_dim=16,
        action_dim=3,
        signals=("a", "b", "c"),
        decoder=False,
        predictor_layers=layers,
        predictor_hidden=24,
        probe_hidden=8,
    )
    torch.manual_seed(layers)
    m = WorldModel(cfg).eval()
    with torch.no_grad():
        for p in m.parameters():
            p.normal_(0.0, 0.2)
        m.probes.mean.normal_()
        m.probes.std.uniform_(0.5, 2.0)
    return m


def test_the_rule_of_when_a_batch_size_gets_its_own_entry():
    """On a CPU: a batch of SIZED_MIN rows or more, once planned STATIC_AFTER times, up to
    SIZED sizes a kind; on a GPU: any size at once, up to GRAPHS."""
    big, n = compiled.SIZED_MIN, compiled.STATIC_AFTER
    assert compiled.specialise("cpu", big, n, 0)
    assert not compiled.specialise("cpu", big, n - 1, 0)  # not planned often enough yet
    assert not compiled.specialise("cpu", big - 1, 100, 0)  # a few repaired plans
    assert not compiled.specialise("cpu", 1000, 100, compiled.SIZED)  # the kind has its fill
    assert compiled.specialise("cuda", 5, 1, compiled.GRAPHS - 1)
    assert not compiled.specialise("cuda", 5, 1, compiled.GRAPHS)


@slow
@needs_compiler
def test_plain_calls_beside_a_compile_in_progress(compiling):
    """Inductor traces with torch.fx while it compiles, which patches nn.Module.__call__
    for every thread for a moment: plain calls made meanwhile (a plan, an encode, a probe
    in another thread) must still answer, with their plain values."""
    m = model_of(2)
    s0, actions = torch.randn(9, 16), torch.rand(9, 6, 3) * 2 - 1
    with torch.inference_mode():
        m.imagine(s0, actions, ["a", "b"])  # asks for the compile: the worker starts
        calls = 0
        while compiled.status(m)[0]["state"] in ("pending", "compiling"):
            latents, signals = compiled.plain(m, ("a", "b"), s0, actions)
            probed = m.probe(latents, ["a"])
            calls += 1
        assert torch.allclose(probed["a"], signals["a"], atol=1e-5)
    assert calls > 10 and compiled.wait(m)[0]["state"] == "ready"


@slow
@needs_compiler
@pytest.mark.parametrize("layers", [1, 3])
def test_compiled_imagination_is_rollout_then_probe(compiling, layers):
    """Any depth of predictor, any subset and order of signals, any batch size (one
    compile serves them); the first call answers at once, uncompiled."""
    m = model_of(layers)
    s0, actions = torch.randn(7, 16), torch.rand(7, 5, 3) * 2 - 1
    with torch.inference_mode():
        first, _ = m.imagine(s0, actions, ["c", "a"])  # asks for the compile
    assert torch.allclose(first, m.rollout(s0, actions))
    assert compiled.status(m)[0]["state"] in ("pending", "compiling", "ready")  # asked for
    (kind,) = compiled.wait(m)
    assert kind["state"] == "ready" and kind["signals"] == ["c", "a"], kind
    for n in (7, 300):
        s0, actions = torch.randn(n, 16), torch.rand(n, 5, 3) * 2 - 1
        with torch.inference_mode():
            latents, signals = m.imagine(s0, actions, ["c", "a"])
        want = m.rollout(s0, actions)
        probed = m.probe(want, ["c", "a"])
        assert latents.shape == (n, 5, 16) and list(signals) == ["c", "a"]
        assert torch.allclose(latents, want, atol=1e-5)
        for name in ("c", "a"):
            assert signals[name].shape == (n, 5)
            assert torch.allclose(signals[name], probed[name], atol=1e-5)
    assert compiled.status(m)[0]["calls"] == 2  # both answered by the compiled pass
    # with gradients (the gradient planner): the plain calls, gradients through them
    actions = (torch.rand(4, 5, 3) * 2 - 1).requires_grad_(True)
    _, with_grad = m.imagine(torch.randn(4, 16), actions, ["b"])
    (grad,) = torch.autograd.grad(with_grad["b"].sum(), actions)
    assert grad.abs().sum() > 0
    assert m.imagine(torch.randn(4, 16), actions.detach(), [])[1] == {}


@slow
@needs_compiler
def test_a_plan_is_the_same_compiled_or_not(compiling):
    """CEM from the same seed on the same model: the same plan, with the imagination
    compiled and without (LAB_COMPILE=0), repairs and all."""
    m = model_of(2)
    cost = Cost(CostSet(terms=[Term("slow", "relu(a - 0.5)", "hard")]), ["a", "b", "c"], ["b", "c"])
    planner = PLANNERS["cem"](PlannerConfig(samples=200, horizon=5, iterations=3), 3)

    def plan():
        gen = torch.Generator().manual_seed(3)
        return planner.plan(m, cost, torch.zeros(16), torch.tensor([0.5, -0.5]), None, gen)

    plan()
    compiled.wait(m)
    fast = plan()
    assert sum(k["calls"] for k in compiled.status(m)) >= 3  # every round's evaluation
    with compiled.off():
        slow = plan()
    assert torch.allclose(fast.actions, slow.actions, atol=1e-5)
    assert torch.allclose(fast.total, slow.total, atol=1e-4)
    compiled.wait(m)  # a batch size's own compile may have been asked for: not left running


SCRIPT = """
import json, torch
from worldmodels import compiled
from tests.test_compiled import model_of
m = model_of(1)
s0, actions = torch.randn(9, 16), torch.rand(9, 5, 3)
with torch.inference_mode():
    m.imagine(s0, actions, ["a"])
    kinds = compiled.wait(m)
    latents, signals = m.imagine(s0, actions, ["a"])  # the plain path answers
print(json.dumps({"kinds": kinds, "ok": bool(torch.allclose(latents, m.rollout(s0, actions)))}))
"""


@slow
def test_without_a_compiler_the_plain_path_stays_and_says_why(tmp_path):
    env = dict(
        os.environ,
        LAB_COMPILE="1",
        CXX=str(tmp_path / "no-such-compiler"),
        TORCHINDUCTOR_CACHE_DIR=str(tmp_path / "cache"),
        PYTHONPATH=str(ROOT),
    )
    run = subprocess.run(
        [sys.executable, "-c", SCRIPT],
        env=env,
        cwd=ROOT,
        text=True,
        capture_output=True,
        timeout=300,
    )
    assert run.returncode == 0, run.stderr[-2000:]
    out = json.loads(run.stdout.strip().splitlines()[-1])
    (kind,) = out["kinds"]
    assert kind["state"] == "failed" and kind["error"], kind
    assert out["ok"]
    assert "imagination stays uncompiled" in run.stderr


@slow
@needs_compiler
def test_the_policy_proposal_compiled_is_the_same(compiling):
    """System 1's proposal (batch 1, acted out in the model) compiled: the same actions as
    the plain loop, and an ordinary tensor the planner may write into."""
    from agents.policy import acted, load_policy

    reach = ROOT / "pretrained" / "reach-state"
    if not (ROOT / "pretrained" / "policy-reach" / "policy.json").exists():
        pytest.skip("pretrained/policy-reach is made by ./lab pretrain")
    model, _ = load_checkpoint(reach)
    policy = load_policy(ROOT / "pretrained" / "policy-reach", reach, torch.device("cpu"))
    s0, goal = torch.randn(1, model.cfg.latent_dim), torch.tensor([[0.3, -0.2]])
    first = policy.imagine(model, s0, goal, 8)  # asks for the compile
    (kind,) = compiled.wait(model)
    assert kind["state"] == "ready" and kind["signals"] == ["policy proposal"], kind
    fast = policy.imagine(model, s0, goal, 8)
    with torch.no_grad():
        want = acted(policy, model, s0, goal, 8)
    assert compiled.status(model)[0]["calls"] == 1
    assert torch.allclose(fast, want, atol=1e-5) and torch.allclose(first, want, atol=1e-5)
    assert not fast.is_inference() and fast.shape == (1, 8, 2)


@slow
@needs_compiler
def test_one_entry_per_kind_and_batch_size_each_with_one_state(compiling):
    """The kind's dynamic compile first (answered plainly until ready), then a batch size
    planned often its own compile (on a CPU), a small one never: each an entry of its own,
    ready in the end, and every compiled call counted."""
    m = model_of(1)
    names = ["b"]

    def imagine(n: int):
        s0, actions = torch.randn(n, 16), torch.rand(n, 4, 3) * 2 - 1
        with torch.inference_mode():
            return m.imagine(s0, actions, names)

    imagine(80)  # asks for the kind's compile
    (kind,) = compiled.status(m)
    assert kind["state"] in ("pending", "compiling") and kind["calls"] == 0, kind
    assert compiled.label(m) == "imagination compiling (plain until then)"
    (kind,) = compiled.wait(m)
    assert kind["state"] == "ready" and kind["sizes"] == [] and not kind["sizing"], kind
    for _ in range(compiled.STATIC_AFTER):
        imagine(80)  # the last of these asks for 80's own compile
        imagine(5)  # too small for one
    (kind,) = compiled.wait(m)
    assert kind["sizes"] == [80] and not kind["sizing"], kind
    latents, _ = imagine(80)  # answered by 80's own compile
    book = compiled._books[m]
    key = (tuple(names), 4, 3, "cpu", torch.float32)
    assert set(book.entries) == {(key, None), (key, 80)}
    assert all(e.state is compiled.State.READY for e in book.entries.values())
    assert book.entries[key, 80].calls == 1
    assert kind["calls"] + 1 == compiled.status(m)[0]["calls"] == 2 * compiled.STATIC_AFTER + 1
    assert compiled.label(m) == "imagination compiled"
    assert latents.shape == (80, 4, 16)


class Nudge(torch.nn.Module):
    """A policy of the smallest kind: actions from the latent."""

    def __init__(self) -> None:
        super().__init__()
        self.out = torch.nn.Linear(16, 3)

    def forward(self, s):
        return torch.tanh(self.out(s))


def nudged(policy, model, s0, goal, steps):
    s, out = s0, []
    for _ in range(steps):
        out.append(policy(s) + goal.mean())
        s = model.rollout(s, out[-1][:, None])[:, 0]
    return torch.stack(out, dim=1)


@slow
@needs_compiler
def test_a_compile_whose_policy_is_gone_leaves_no_entry_behind(compiling):
    """A proposal asked for while the worker compiles something else, its policy gone by
    its turn: the worker drops it and its entry with it, so waiting for the model ends
    (it waited for ever before) and its status shows only what was compiled."""
    m = model_of(2)
    with torch.inference_mode():
        m.imagine(torch.randn(6, 16), torch.rand(6, 3, 3), ["a", "c"])  # the worker's first
    policy = Nudge().eval()
    assert compiled.proposal(nudged, policy, m, torch.randn(1, 16), torch.zeros(1, 2), 4) is None
    del policy
    gc.collect()
    kinds = compiled.wait(m, timeout=120)
    assert [k["signals"] for k in kinds] == [["a", "c"]], kinds
    assert kinds[0]["state"] == "ready"


EXIT = """
import atexit, json, time, torch
from worldmodels import compiled
from tests.test_compiled import model_of
m = model_of(3)
# registered first, so it runs last: after the compiler's own exit
atexit.register(lambda: print(json.dumps([k["state"] for k in compiled.status(m)])))
with torch.inference_mode():
    for names in (["a"], ["b"], ["c"]):  # three kinds asked for: one compiling at exit
        m.imagine(torch.randn(9, 16), torch.rand(9, 5, 3), names)
while compiled.status(m)[0]["state"] == "pending":
    time.sleep(0.01)
"""


@slow
@needs_compiler
def test_an_exit_during_a_compile_waits_for_it_and_drops_the_rest(tmp_path):
    """The process ends cleanly (no abort from inductor's threads torn down mid-compile),
    after the compile under way (ready, or failed where inductor refused work at exit),
    without the two still queued (a cold cache: each would be a real compile)."""
    env = dict(
        os.environ,
        LAB_COMPILE="1",
        TORCHINDUCTOR_CACHE_DIR=str(tmp_path / "cache"),
        PYTHONPATH=str(ROOT),
    )
    run = subprocess.run(
        [sys.executable, "-c", EXIT], env=env, cwd=ROOT, text=True, capture_output=True, timeout=300
    )
    assert run.returncode == 0, run.stderr[-2000:]
    first, *rest = json.loads(run.stdout.strip().splitlines()[-1])
    assert first in ("ready", "failed") and rest == ["pending", "pending"], run.stdout
