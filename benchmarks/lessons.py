"""The lessons: each claim's experiment, as the Lessons pages run it.

    ./lab bench lessons [--quick] [--only blur,collapse]

Runs every lesson of ``experiments.lessons`` (the same function the page runs, with the
shipped checkpoints) and prints its figures and wall-clock seconds. Goals set for
the lessons: every lesson in at most 120 s on 2 cores; the generative model's h16 sharpness
ratio (image-gradient energy of its predicted frame over the real frame's) at most
0.5; the collapse lesson's effective rank at most 2 without the EMA target and
VICReg and at least 10 with them. Also printed: probe nRMSE at h16 from each model
of the blur lesson, and open-loop against receding-horizon success.

Last line: one JSON object, one entry per lesson: ``seconds`` and its figures; also
written to ``benchmarks/results/lessons.json`` (``lessons-partial.json`` for a short or
``--only`` run), which the Lessons pages show before anything runs.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

from common.results import save  # noqa: E402
from experiments.lessons import LESSONS, Live, run_lesson  # noqa: E402

SECONDS_GOAL = 120.0


def goals(key: str, row: dict) -> list[tuple[str, bool]]:
    """(what, met) for each goal set for the lessons that this lesson's row carries."""
    out = [(f"{key}: at most {SECONDS_GOAL:g} s", row["seconds"] <= SECONDS_GOAL)]
    if key == "blur":
        out.append(("generative h16 sharpness <= 0.5", row["generative_sharpness_h16"] <= 0.5))
    if key == "collapse":
        out.append(("rank without <= 2", row["rank_without"] <= 2))
        out.append(("rank with >= 10", row["rank_with"] >= 10))
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="each lesson's short version")
    ap.add_argument("--only", default="", help="comma-separated lesson keys (default: all)")
    args = ap.parse_args()
    torch.set_num_threads(2)
    device = torch.device("cpu")
    keys = [k for k in args.only.split(",") if k] or list(LESSONS)
    unknown = [k for k in keys if k not in LESSONS]
    if unknown:
        print(f"unknown lessons {unknown}; choose from {', '.join(LESSONS)}", file=sys.stderr)
        return 2
    report = {}
    for key in keys:
        live = Live()
        t0 = time.perf_counter()
        figures = run_lesson(key, live, device, quick=args.quick)
        row = {"seconds": round(time.perf_counter() - t0, 1), **figures}
        report[key] = row
        print(f"{key}: " + " ".join(f"{k}={v}" for k, v in row.items()), flush=True)
        for what, met in goals(key, row):
            print(f"  goal {what}: {'met' if met else 'NOT met'}", flush=True)
    print(json.dumps(report))
    save("lessons", report, ap, args, device=device)
    return 0


if __name__ == "__main__":
    sys.exit(main())
