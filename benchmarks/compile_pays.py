"""Whether compiling the imagination pays on this machine: compiled against plain plans.

    ./lab bench compile_pays [--quick] [--rounds N] [--device cpu|cuda|auto]

CEM at N = 1000 samples, H = 16, 5 iterations on the Reach model
(``pretrained/reach-state``), from one start near a wall, twice: the task alone,
and the task with one hard term (keep 15 cm off the walls: the repaired copies
of the plans that break it are imagined too, in batches of other sizes).

The kinds are compiled first (``worldmodels.compiled``, then each batch size a
plan asks for often enough to get its own compile, as a planner in the app
would get them). Then one loop of ``--rounds`` rounds times the four designs
in turn, compiled and plain (``compiled.off()``) alternating and the order
flipped every round, each plan from the same seed: whatever else the machine
is doing (it is shared) falls on both sides alike. Per design: the median ms
of a plan, compiled and plain, their ratio (plain over compiled, above 1: the
compile pays) and the median of the per-round ratios, with the load average
before and after. The last line is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from dataclasses import replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch

from agents.cost import Cost, CostSet, Term
from agents.planners import CEM_300, PLANNERS
from common.device import choose_device
from common.paths import PRETRAINED
from common.results import save
from worldmodels import compiled
from worldmodels.checkpoint import load_checkpoint

START = [0.75, 0.2, 0.0, 0.0]  # x, y, vx, vy: 25 cm from the east wall
GOAL = [0.9, -0.6]  # along that wall: the hard term binds on the way
WALLS = Term("keep off walls", "relu(0.15 - dist_wall)", kind="hard", limit=0.0)


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def main() -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--quick", action="store_true", help="40 rounds")
    ap.add_argument("--rounds", type=int, default=0, help="rounds (default 150; 40 quick)")
    ap.add_argument("--samples", type=int, default=1000)
    ap.add_argument("--horizon", type=int, default=16)
    ap.add_argument("--iterations", type=int, default=5)
    args = ap.parse_args()
    rounds = args.rounds or (40 if args.quick else 150)
    device = choose_device(args.device)
    if not compiled.enabled():
        print(f"{compiled.ENV}=0: nothing compiles, nothing to compare")
        print(json.dumps({"compiled": False}))
        return 1
    model, _ = load_checkpoint(PRETRAINED / "reach-state", device)
    model.eval()
    signals, task = list(model.signal_names), ["x", "y"]
    with torch.no_grad():
        s0 = model.encode(torch.tensor(START))[0]
    goal = torch.tensor(GOAL, device=device)
    search = replace(
        CEM_300, samples=args.samples, horizon=args.horizon, iterations=args.iterations
    )
    planner = PLANNERS["cem"](search, model.cfg.action_dim)
    costs = {
        "task": Cost(CostSet(), signals, task),
        "hard": Cost(CostSet(terms=[WALLS]), signals, task),
    }

    def plan(cost: Cost, seed: int):
        gen = torch.Generator(device=device).manual_seed(seed)
        return planner.plan(model, cost, s0, goal, None, gen)

    t0 = time.perf_counter()
    for cost in costs.values():  # its kinds, then its batch sizes' own compiles
        plan(cost, 0)
        compiled.wait(model)
        for _ in range(compiled.STATIC_AFTER + 1):
            plan(cost, 0)
        compiled.wait(model)
    kinds = compiled.wait(model)
    warm_s = time.perf_counter() - t0
    failed = [k["error"] for k in kinds if k["state"] == "failed"]
    for k in kinds:
        print(
            f"compiled kind {k['signals']} H={k['horizon']}: {k['state']} in {k['seconds']} s, "
            f"own compiles for batch sizes {k['sizes']} {k['error']}"
        )

    def timed(name: str, fast: bool, seed: int) -> float:
        t = time.perf_counter()
        if fast:
            plan(costs[name], seed)
        else:
            with compiled.off():
                plan(costs[name], seed)
        sync(device)
        return time.perf_counter() - t

    for name in costs:  # warm-up of the timed calls themselves
        timed(name, True, 1), timed(name, False, 1)
    load_before = os.getloadavg()
    times = {(name, fast): [] for name in costs for fast in (True, False)}
    t0 = time.perf_counter()
    for r in range(rounds):
        for name in costs:
            order = (True, False) if r % 2 == 0 else (False, True)
            for fast in order:
                times[name, fast].append(timed(name, fast, 1000 + r))
    loop_s = time.perf_counter() - t0
    load_after = os.getloadavg()
    calls = sum(k["calls"] for k in compiled.status(model))

    out: dict = {
        "device": str(device),
        "torch_threads": torch.get_num_threads(),
        "cpus": os.cpu_count(),
        "samples": args.samples,
        "horizon": args.horizon,
        "iterations": args.iterations,
        "rounds": rounds,
        "loop_s": round(loop_s, 1),
        "warm_s": round(warm_s, 1),
        "load_before": [round(x, 2) for x in load_before],
        "load_after": [round(x, 2) for x in load_after],
        "compile_failed": failed[0] if failed else "",
        "compiled_calls": calls,
    }
    for name in costs:
        fast, slow = times[name, True], times[name, False]
        row = {
            "compiled_ms": round(statistics.median(fast) * 1e3, 2),
            "plain_ms": round(statistics.median(slow) * 1e3, 2),
            "compiled_ms_iqr": [round(q * 1e3, 1) for q in _quartiles(fast)],
            "plain_ms_iqr": [round(q * 1e3, 1) for q in _quartiles(slow)],
            "ratio": round(statistics.median(slow) / statistics.median(fast), 3),
            "ratio_per_round": round(
                statistics.median(s / f for f, s in zip(fast, slow, strict=True)), 3
            ),
        }
        out[name] = row
        print(
            f"{name}: compiled {row['compiled_ms']} ms (IQR {row['compiled_ms_iqr']}), plain "
            f"{row['plain_ms']} ms (IQR {row['plain_ms_iqr']}): plain / compiled "
            f"{row['ratio']} (per round {row['ratio_per_round']})"
        )
    print(
        f"{rounds} rounds interleaved in {loop_s:.0f} s on {device}, {out['torch_threads']} "
        f"torch threads of {out['cpus']} CPUs; load average {out['load_before']} before, "
        f"{out['load_after']} after"
    )
    save("compile_pays", out, ap, args, device=device)
    print(json.dumps(out))
    return 0


def _quartiles(xs: list[float]) -> tuple[float, float]:
    q = statistics.quantiles(xs, n=4)
    return q[0], q[2]


if __name__ == "__main__":
    sys.exit(main())
