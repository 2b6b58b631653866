"""Planning speed of CEM, MPPI and gradient descent, against the hardware's own limit.

    ./lab bench plan_speed [--quick] [--device auto|cpu|cuda]

For each planner at N = 1000 samples, H = 16, 5 iterations, D = 64 (the
settings the goals below are set at; change them with flags), with a model of the
default shape (predictor 2 x 64, probes 32: what the Reach and Wall
checkpoints ship; ``--predictor-hidden 128 --probe-hidden 64`` is Kitchen's,
Push's and the pixel models' wider shape), on the chosen device:

* ``plan_ms``: median wall time of one plan (sampling, rollouts, probes,
  the cost with a guardrail, ranking and refitting: everything);
* ``rollout_gflops``: the imagination's floating-point work in that plan
  (the predictor at every step, and the probe heads the cost reads on every
  imagined latent; forward, and forward and backward for gradient descent)
  per second of plan;
* ``matmul_gflops``: bare matrix products of the very same shapes (the
  predictor's layers and the probes' two), in the same run, on the same
  device: what the hardware gives such shapes. (``WorldModel.imagine`` runs
  the predictor's and the probes' first layers as one wider product: the
  same work, and on 2 cores a (1000, 67) x (67, 193) product ran at the
  GFLOP/s of its two parts, 149-151 against 133-150);
* ``ratio = rollout_gflops / matmul_gflops``: how much of it planning keeps,
  taken within each round of timing (a plan, then the bare products) and the
  median of those: the machine's speed drifts between rounds, not within one;
  ``predictor_ratio`` counts the predictor's work alone (the probes then
  count as lost time), as this benchmark did before.

Goals: CEM ``plan_ms <= 50`` and ``ratio >= 0.6`` on 2 CPU cores; on a GPU
``plan_ms <= 5``. The last line is JSON: a list, one object per planner.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from dataclasses import replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import functools
import itertools

import torch

from agents.cost import Cost, CostSet, Term
from agents.planners import CEM_300, PLANNERS
from common.device import choose_device
from common.results import save
from worldmodels import compiled
from worldmodels.model import ModelConfig, WorldModel

SIGNALS = ("x", "y", "vx", "vy", "speed", "dist_wall")  # Reach's


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def timed(fns, device, repeats: int) -> list[list[float]]:
    """Seconds of each of ``fns`` in each of ``repeats`` rounds, after two warm-ups.

    The functions take turns within every round, so a plan and the bare
    products it is compared with see the same moment of a noisy machine (here
    the same products ran at 77 to 127 GFLOP/s from one minute to the next):
    ratios are taken within a round, then their median.
    """
    for _ in range(2):
        for fn in fns:
            fn()
    sync(device)
    times = [[] for _ in fns]
    for _ in range(repeats):
        for fn, out in zip(fns, times, strict=True):
            t0 = time.perf_counter()
            fn()
            sync(device)
            out.append(time.perf_counter() - t0)
    return times


def counted(rows: list[int], imagine, s0, actions, names):
    """``imagine``, noting how many rows it was asked for."""
    rows.append(actions.shape[0])
    return imagine(s0, actions, names)


def main() -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--device", default="auto")
    ap.add_argument("--samples", type=int, default=1000)
    ap.add_argument("--horizon", type=int, default=16)
    ap.add_argument("--iterations", type=int, default=5)
    ap.add_argument("--latent", type=int, default=64)
    ap.add_argument("--predictor-hidden", type=int, default=ModelConfig.predictor_hidden)
    ap.add_argument("--probe-hidden", type=int, default=ModelConfig.probe_hidden)
    ap.add_argument("--quick", action="store_true", help="fewer repeats")
    args = ap.parse_args()
    device = choose_device(args.device)
    torch.manual_seed(0)
    N, H, D, A = args.samples, args.horizon, args.latent, 2
    cfg = ModelConfig(
        latent_dim=D,
        action_dim=A,
        signals=SIGNALS,
        decoder=False,
        predictor_hidden=args.predictor_hidden,
        probe_hidden=args.probe_hidden,
    )
    model = WorldModel(cfg).to(device).eval()
    costs = CostSet(
        terms=[
            Term("gentle", "relu(speed - 0.4)", weight=1.0),
            Term("walls", "0.05 - dist_wall", kind="hard", limit=0.0),
        ]
    )
    repeats = 5 if args.quick else 20

    # The predictor's shapes and the probes' (the heads the cost reads: k of
    # them, D -> probe_hidden -> 1), and bare matmuls of exactly those shapes.
    sizes = [D + A] + [cfg.predictor_hidden] * cfg.predictor_layers + [D]
    predictor_macs = sum(a * b for a, b in itertools.pairwise(sizes))  # per sample-step
    cost = Cost(costs, list(SIGNALS), ["x", "y"])
    k = len(cost.needed)
    probe_macs = k * cfg.probe_hidden * (D + 1)
    macs = predictor_macs + probe_macs
    weights = [torch.randn(a, b, device=device) for a, b in itertools.pairwise(sizes)]
    probe_w = torch.randn(D, k * cfg.probe_hidden, device=device)
    probe_out = torch.randn(k * cfg.probe_hidden, k, device=device)
    x = torch.randn(N, sizes[0], device=device)

    def bare(probes: bool = True):
        for _ in range(H):
            h = x
            for w in weights:
                h = h @ w
            if probes:
                (h @ probe_w) @ probe_out
        return h

    def bare_predictor():
        return bare(probes=False)

    s0 = torch.randn(D, device=device)
    goal = torch.tensor([0.5, 0.5], device=device)
    rows = []
    for name, planner_cls in PLANNERS.items():
        # plain CEM's rounds of N (iCEM's later rounds shrink): as measured before
        search = replace(CEM_300, samples=N, horizon=H, iterations=args.iterations)
        if name == "gd":
            planner = planner_cls(
                search, A, smooth_cost=Cost(costs, list(SIGNALS), ["x", "y"], smooth=True)
            )
        else:
            planner = planner_cls(search, A)
        gen = torch.Generator(device=device).manual_seed(0)

        def one_plan(p=planner, c=cost, g=gen):
            return p.plan(model, c, s0, goal, None, g)

        def plain_plan(plan=one_plan):
            with compiled.off():  # the imagination as before a compile is ready
                return plan()

        imagined: list[int] = []  # batch sizes imagined
        model.imagine = functools.partial(counted, imagined, WorldModel.imagine.__get__(model))
        one_plan()  # asks for the compile of this planner's kinds (the gradient's is not)
        compiled.wait(model)
        for _ in range(compiled.STATIC_AFTER):  # and of its batch sizes (on a CPU)
            one_plan()
        kinds = compiled.wait(model)
        compile_s = max((k["seconds"] for k in kinds), default=0.0)
        failed = [k["error"] for k in kinds if k["state"] == "failed"]
        plan_t, plain_t, matmul_t, predictor_t = timed(
            [one_plan, plain_plan, bare, bare_predictor], device, repeats
        )
        plan_s, matmul_s = statistics.median(plan_t), statistics.median(matmul_t)
        matmul_gflops = 2 * macs * N * H / matmul_s / 1e9
        # Rollouts per plan, in passes over N samples: every row imagined (CEM and MPPI
        # evaluate once per iteration, the last the final ranking; the repaired copies of
        # the plans that break the hard term are samples of the next round), and for
        # gradient descent one forward and backward (about three forwards) an iteration
        imagined.clear()
        one_plan()
        passes = sum(imagined) / N + (3 * args.iterations if name == "gd" else 0)
        rollout_gflops = 2 * macs * N * H * passes / plan_s / 1e9
        # plan GFLOP/s over bare GFLOP/s, within each round: passes x bare time / plan time
        ratio = statistics.median(b * passes / p for p, b in zip(plan_t, matmul_t, strict=True))
        predictor_ratio = statistics.median(
            b * passes / p for p, b in zip(plan_t, predictor_t, strict=True)
        )
        row = {
            "planner": name,
            "device": str(device),
            "plan_ms": round(plan_s * 1e3, 2),
            "plain_plan_ms": round(statistics.median(plain_t) * 1e3, 2),
            "compiled_speedup": round(
                statistics.median(a / b for a, b in zip(plain_t, plan_t, strict=True)), 2
            ),
            "compile_s": round(compile_s, 1),
            "compile_failed": failed[0] if failed else "",
            "rollout_gflops": float(f"{rollout_gflops:.3g}"),  # tiny shapes: not rounded to 0
            "matmul_gflops": float(f"{matmul_gflops:.3g}"),
            "ratio": round(ratio, 3),
            "passes": round(passes, 2),
            "predictor_ratio": round(predictor_ratio, 3),
        }
        rows.append(row)
        print(
            f"{name}: {row['plan_ms']} ms per plan (N={N}, H={H}, {args.iterations} "
            f"iterations, D={D}); rollouts at {row['rollout_gflops']} GFLOP/s, bare matmul "
            f"{row['matmul_gflops']} GFLOP/s, ratio {row['ratio']}; uncompiled "
            f"{row['plain_plan_ms']} ms ({row['compiled_speedup']}x), compiled in "
            f"{row['compile_s']} s {failed[0] if failed else ''}"
        )
    print(json.dumps(rows))
    save("plan_speed", rows, ap, args, device=device)
    return 0


if __name__ == "__main__":
    sys.exit(main())
