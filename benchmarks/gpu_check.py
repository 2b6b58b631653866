"""The GPU path, proven in one short run: correctness on the device, then its speed.

    ./lab gpu-check [--device cuda|cpu] [--quick]
    python benchmarks/gpu_check.py          # on a bare GPU machine: torch, numpy, safetensors

Needs only torch, numpy and safetensors (no PyBullet, Streamlit, Gymnasium or tqdm:
the world model, the cost and the planners import none of them), on synthetic
models and windows, and runs in a few minutes:

* correctness: a plan on the device equals the CPU plan from the same seed (the
  samples drawn from one CPU generator, so both search the same noise) within
  tolerance, for CEM, MPPI and gradient descent; the compiled imagination
  (``worldmodels.compiled``: Triton and CUDA graphs on a GPU) against ``rollout``
  then ``probe``; a training step (finite losses, weights moved);
  a checkpoint round trip (the same outputs after save and load);
* speed: a CEM plan at N = 1000, H = 16, 5 iterations (goal on a GPU: <= 5 ms),
  and at N = 10 000 and 100 000 (how the time grows), with the imagination compiled
  and without (``LAB_COMPILE=0``: before a compile is ready); a class of 30 agents
  (threads, as a server's) planning so at once on one shared model, their
  imagination calls merged (``worldmodels.batching``) or each alone (goal on a GPU:
  >= 600 plans/s batched, plan p95 <= 50 ms; 4 agents on a CPU or with --quick);
  JEPA training steps per second on the device against the CPU, state and pixel
  models.

Prints the figures, then one JSON line. Exit status 1 when a correctness check
fails (the figures are still printed).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch

from agents.cost import Cost, CostSet, Term
from agents.planners import PLANNERS, PlannerConfig
from common.results import save
from worldmodels import compiled
from worldmodels.batching import Batcher
from worldmodels.checkpoint import load_checkpoint, save_checkpoint
from worldmodels.loss import LossConfig, ema_update
from worldmodels.model import ModelConfig, WorldModel
from worldmodels.objective import losses

SIGNALS = ("x", "y", "vx", "vy", "speed", "dist_wall")  # Reach's probes
TASK = ["x", "y"]
RULE = Term("slow", "relu(speed - 0.3)", "hard")
CPU = torch.device("cpu")


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def model_on(device, obs: str = "state", seed: int = 0) -> WorldModel:
    torch.manual_seed(seed)
    cfg = ModelConfig(obs=obs, state_dim=4, action_dim=2, signals=SIGNALS, decoder=obs == "pixels")
    return WorldModel(cfg).to(device).eval()


def plan_once(name, model, device, samples, horizon, iterations, seed=0):
    costs = CostSet(terms=[RULE])
    cost = Cost(costs, list(SIGNALS), TASK)
    smooth = Cost(costs, list(SIGNALS), TASK, smooth=True) if name == "gd" else None
    cfg = PlannerConfig(
        samples=samples, horizon=horizon, iterations=iterations, elites=max(2, samples // 10)
    )
    planner = PLANNERS[name](cfg, 2, smooth)
    gen = torch.Generator().manual_seed(seed)  # on the CPU: the same noise on any device
    with torch.no_grad():
        s0 = model.encode({"state": torch.zeros(1, 4, device=device)})[0]
    goal = torch.tensor([0.5, -0.3], device=device)
    return planner.plan(model, cost, s0, goal, None, gen)


def check_plans(device) -> dict:
    """The device's plan against the CPU's, same model weights, same noise."""
    out = {}
    cpu, dev = model_on(torch.device("cpu")), model_on(device)
    for name in PLANNERS:
        a = plan_once(name, cpu, torch.device("cpu"), 300, 16, 3)
        b = plan_once(name, dev, device, 300, 16, 3)
        gap = float((a.actions - b.actions.cpu()).abs().max())
        # float sums differ by device: two near-equal samples may swap ranks, so a
        # different choice of the same cost passes too
        cost_a, cost_b = float(a.total[a.chosen]), float(b.total[b.chosen])
        same_cost = abs(cost_a - cost_b) <= 1e-4 * max(1.0, abs(cost_a))
        out[name] = {
            "max_action_gap": gap,
            "same_choice": a.chosen == b.chosen,
            "chosen_cost_gap": abs(cost_a - cost_b),
            "ok": gap < 1e-3 or same_cost,
        }
    return out


def check_imagine(device) -> dict:
    """The compiled imagination (``worldmodels.compiled``; off with LAB_COMPILE=0)
    against ``rollout`` then ``probe``, at two batch sizes (one compile serves both)."""
    model = model_on(device)
    out: dict = {"compiled": compiled.enabled()}
    with torch.inference_mode():
        model.imagine(
            torch.zeros(2, model.cfg.latent_dim, device=device),
            torch.zeros(2, 16, 2, device=device),
            list(SIGNALS),
        )
    compiled.wait(model)
    gaps = []
    for n in (64, 1000):
        s0 = torch.randn(n, model.cfg.latent_dim, device=device)
        actions = torch.rand(n, 16, 2, device=device) * 2 - 1
        with torch.inference_mode():
            lat, sig = model.imagine(s0, actions, list(SIGNALS))
            ref, probed = compiled.plain(model, SIGNALS, s0, actions)
        gaps.append(
            max(
                float((lat - ref).abs().max()),
                *(float((sig[k] - probed[k]).abs().max()) for k in SIGNALS),
            )
        )
    out["max_gap"] = max(gaps)
    kinds = compiled.status(model)  # after the calls: a failure there falls back silently
    if kinds:
        out.update(
            state=kinds[0]["state"],
            compile_s=kinds[0]["seconds"],
            calls=kinds[0]["calls"],
            error=kinds[0]["error"],
        )
    used = not compiled.enabled() or (out.get("state") == "ready" and out["calls"] >= 2)
    out["ok"] = out["max_gap"] < 1e-4 and used
    return out


def batch_for(model: WorldModel, B: int, H: int, device) -> dict:
    g = torch.Generator(device="cpu").manual_seed(1)
    cfg = model.cfg
    if cfg.obs == "pixels":
        obs = torch.randint(0, 256, (B, H + 1, 64, 64, 3), generator=g, dtype=torch.uint8)
    else:
        obs = torch.randn(B, H + 1, cfg.state_dim, generator=g)
    batch = {
        "obs": obs,
        "actions": torch.rand(B, H, cfg.action_dim, generator=g) * 2 - 1,
        "last_action": torch.rand(B, H + 1, cfg.action_dim, generator=g) * 2 - 1,
        "state": torch.randn(B, H + 1, cfg.state_dim, generator=g),
        "signals": torch.randn(B, H + 1, len(cfg.signals), generator=g),
    }
    if cfg.obs == "pixels":
        batch["pixels"] = obs
    return {k: v.to(device) for k, v in batch.items()}


def train_steps(model: WorldModel, device, steps: int, B: int = 64) -> float:
    """Steps per second of the JEPA objective (forward, backward, Adam, EMA)."""
    model.train()
    cfg = LossConfig()
    batch = batch_for(model, B, cfg.horizon, device)
    opt = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=1e-3)
    for i in range(steps + 2):  # two warm-up steps
        if i == 2:
            sync(device)
            t0 = time.perf_counter()
        terms = losses(model, batch, cfg)
        opt.zero_grad()
        terms["total"].backward()
        opt.step()
        with torch.no_grad():
            ema_update(model, 0.99)
    sync(device)
    return steps / (time.perf_counter() - t0)


def check_training(device) -> dict:
    model = model_on(device)
    before = [p.detach().clone() for p in model.encoder.parameters()]
    model.train()
    terms = losses(model, batch_for(model, 16, LossConfig().horizon, device), LossConfig())
    terms["total"].backward()
    torch.optim.Adam(model.parameters(), lr=1e-3).step()
    moved = any(
        not torch.equal(a, b) for a, b in zip(before, model.encoder.parameters(), strict=True)
    )
    finite = all(bool(torch.isfinite(v).all()) for v in terms.values())
    return {"finite": finite, "moved": moved, "ok": finite and moved}


def check_checkpoint(device) -> dict:
    model = model_on(device)
    x = {"state": torch.randn(8, 4, device=device)}
    with tempfile.TemporaryDirectory() as tmp:
        save_checkpoint(model, tmp, {"scene": "reach", "step": 1})
        back, _ = load_checkpoint(tmp, device)
    with torch.no_grad():
        gap = float((model.encode(x) - back.encode(x)).abs().max())
    return {"max_gap": gap, "ok": gap < 1e-6}


def plan_ms(model, device, samples: int, repeats: int) -> float:
    plan_once("cem", model, device, samples, 16, 5)  # warm-up (a CUDA graph recorded)
    compiled.wait(model)  # on a CPU: this batch size's own compile, asked for just now
    times = []
    for i in range(repeats):
        sync(device)
        t0 = time.perf_counter()
        plan_once("cem", model, device, samples, 16, 5, seed=i)
        sync(device)
        times.append(1e3 * (time.perf_counter() - t0))
    return round(statistics.median(times), 2)


def class_plans(model, device, sessions: int, plans: int, batched: bool) -> dict:
    """``sessions`` agents (threads of one server) planning at once, CEM N = 1000, H = 16,
    5 iterations, ``plans`` each, on one shared model: its imagination calls merged
    (``worldmodels.batching``) or each on its own. Plans per second over the class, and
    the median and p95 of one plan's time."""
    model.batcher = Batcher(model.imagine_now) if batched else None
    plan_once("cem", model, device, 1000, 16, 5)  # warm-up
    times: list[float] = []
    lock = threading.Lock()
    start = threading.Barrier(sessions + 1)

    def agent(i: int) -> None:
        start.wait()
        for k in range(plans):
            t0 = time.perf_counter()
            plan_once("cem", model, device, 1000, 16, 5, seed=i * plans + k)
            sync(device)
            with lock:
                times.append(1e3 * (time.perf_counter() - t0))

    threads = [threading.Thread(target=agent, args=(i,)) for i in range(sessions)]
    for t in threads:
        t.start()
    start.wait()
    t0 = time.perf_counter()
    for t in threads:
        t.join()
    wall = time.perf_counter() - t0
    calls = (model.batcher.calls, model.batcher.batches) if batched else None
    model.batcher = None
    return {
        "sessions": sessions,
        "plans_per_s": round(sessions * plans / wall, 1),
        "plan_ms_p50": round(statistics.median(times), 2),
        "plan_ms_p95": round(sorted(times)[int(0.95 * (len(times) - 1))], 2),
        **({"imagine_calls": calls[0], "batches": calls[1]} if calls else {}),
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--quick", action="store_true", help="fewer repeats, no N = 100 000")
    args = ap.parse_args()
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        print("error: no CUDA device here; run with --device cpu", file=sys.stderr)
        return 2
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    out: dict = {"device": name, "torch": torch.__version__, "quick": args.quick}
    print(f"gpu-check on {name} (torch {torch.__version__})")
    checks = {
        "plans": check_plans(device),
        "imagine": check_imagine(device),
        "training": check_training(device),
        "checkpoint": check_checkpoint(device),
    }
    ok = all(v["ok"] for v in checks["plans"].values()) and all(
        checks[k]["ok"] for k in ("imagine", "training", "checkpoint")
    )
    for k, v in checks.items():
        print(f"  {k}: {v}")
    out["checks"], out["ok"] = checks, ok
    repeats = 3 if args.quick else 10
    sizes = (1000, 10_000) if args.quick or device.type == "cpu" else (1000, 10_000, 100_000)
    model = model_on(device)
    plan_once("cem", model, device, 1000, 16, 5)  # asks for the compile
    compiled.wait(model)
    out["cem_plan_ms"] = {str(n): plan_ms(model, device, n, repeats) for n in sizes}
    out["compiled_kinds"] = compiled.status(model)
    print(f"  CEM plan, H=16, 5 iterations, ms by N: {out['cem_plan_ms']}")
    print(f"  its compiled imagination: {out['compiled_kinds']}")
    if compiled.enabled():
        with compiled.off():
            out["uncompiled_cem_plan_ms"] = {
                str(n): plan_ms(model, device, n, repeats) for n in sizes
            }
        print(f"  the same, imagination uncompiled: {out['uncompiled_cem_plan_ms']}")
    sessions = 4 if args.quick or device.type == "cpu" else 30
    each = 3 if args.quick else 10
    out["class"] = {
        kind: class_plans(model, device, sessions, each, kind == "batched")
        for kind in ("alone", "batched")
    }
    print(f"  a class planning at once, N=1000, H=16, 5 iterations: {out['class']}")
    steps = 5 if args.quick else 30
    speed = {}
    for obs in ("state", "pixels"):
        here = train_steps(model_on(device, obs), device, steps)
        cpu = here if device.type == "cpu" else train_steps(model_on(CPU, obs), CPU, steps)
        speed[obs] = {"device": round(here, 2), "cpu": round(cpu, 2), "ratio": round(here / cpu, 2)}
        print(f"  training steps/s, {obs}: {speed[obs]}")
    out["train_steps_per_s"] = speed
    print("all checks passed" if ok else "A CHECK FAILED")
    print(json.dumps(out))
    save("gpu_check", out, ap, args, device=device)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
