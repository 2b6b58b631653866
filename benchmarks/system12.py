"""System 1 against System 2, and where a guardrail lives (``experiments.system12``).

    ./lab bench system12 [--quick] [--scenes reach,kitchen[,wall,push]] [--episodes N]
    ./lab bench system12 --interleaved   # the warm start's time alone, designs in turn

Per scene, the shipped state model and the policy distilled from its planner
(``pretrained/policy-<scene>``, made by ``./lab pretrain``; ``--policy-dir`` for
another folder holding ``policy-<scene>``): one decision's time of each, success of
the policy, the planner and both, violations of a rule typed after distillation,
and (Kitchen) of the trained-in rule in a situation outside the data.

Goals set for System 1: the policy decides >= 50x faster than the planner; its success
>= 0.8 x the planner's on Reach and Kitchen; with the policy as warm start the planner
at 2 iterations succeeds at least as often as at 3 without it, in <= 0.7x the time;
under the new rule the policy breaks it on >= 10x more real steps than the planner
that holds it (<= 1 % of steps with the margin and stop fallback).
The last line is JSON: one object per scene.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from common.device import choose_device  # noqa: E402
from common.results import save  # noqa: E402
from experiments.system12 import Setup, compare, warm_start_times  # noqa: E402

EPISODES = {"reach": 20, "kitchen": 10, "wall": 10, "push": 10}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="3 episodes a design")
    ap.add_argument(
        "--interleaved",
        action="store_true",
        help="only the warm start's time: each episode run by every design in "
        "turn (experiments.system12.warm_start_times)",
    )
    ap.add_argument("--scenes", default="reach,kitchen")
    ap.add_argument("--episodes", type=int, default=0, help="per design (default 20 / 10)")
    ap.add_argument("--policy-dir", default=str(ROOT / "pretrained"))
    ap.add_argument("--device", default="auto")
    args = ap.parse_args()
    device = choose_device(args.device)
    rows = []
    for key in [s for s in args.scenes.split(",") if s]:
        n = 3 if args.quick else args.episodes or EPISODES.get(key, 10)
        setup = Setup(
            scene=key,
            checkpoint=str(ROOT / "pretrained" / f"{key}-state"),
            policy=str(Path(args.policy_dir) / f"policy-{key}"),
            episodes=n,
            device=device,
        )
        t0 = time.perf_counter()
        say = lambda what, key=key: print(f"{key}: {what}", flush=True)  # noqa: E731
        if args.interleaved:
            row = {"scene": key, "episodes": n, **warm_start_times(setup, progress=say)}
            row["seconds"] = round(time.perf_counter() - t0, 1)
            rows.append(row)
            print(" ".join(f"{k}={v}" for k, v in row.items()), flush=True)
            continue
        row = compare(setup, progress=say)
        row["seconds"] = round(time.perf_counter() - t0, 1)
        rows.append(row)
        print(
            f"{key} ({n} episodes a design, {device}): policy {row['policy_ms']} ms vs "
            f"planner {row['planner_ms']} ms per decision ({row['speedup']}x); success "
            f"policy {row['policy_success']}, planner {row['planner_success']}, both (2 it) "
            f"{row['both_success']} in {row['both_ms']} ms vs {row['planner_step_ms']} ms "
            f"({row['both_ms'] / row['planner_step_ms']:.2f}x); the planner alone at 2 it "
            f"{row['planner2_success']} in {row['planner2_step_ms']} ms"
            + (
                f"; new rule broken on {row['new_rule_violation_policy']} of the policy's "
                f"steps vs {row['new_rule_violation_planner']} of the planner's"
                if "new_rule_violation_policy" in row
                else ""
            )
            + (
                f"; shifted: {row['shifted_violation_policy']} vs "
                f"{row['shifted_violation_planner']}"
                if "shifted_violation_policy" in row
                else ""
            ),
            flush=True,
        )
    print(json.dumps(rows))
    variant = "interleaved" if args.interleaved else ""
    save(
        "system12", rows, ap, args, device=device, variant=variant, ignore=("device", "interleaved")
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
