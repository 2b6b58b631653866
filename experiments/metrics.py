"""The evaluation's figures from its episode records: pure functions of the records.

Each figure comes with a 95 % percentile-bootstrap interval over episodes (episodes
resampled with replacement, 1000 times, seeded; ratios are pooled over the resampled
episodes' steps). ``experiments/evaluate.py``'s docstring lists the figures.
"""

from __future__ import annotations

import numpy as np

from agents.episode import rounded

BOOTSTRAP = 1000  # resamples for the intervals


CONFIDENCE = 0.95


def plan_ms_per_step(episodes: list[dict]) -> float:
    """Mean ms per plan over every step of ``episodes`` (records of ``run_episode``): each
    episode's mean weighted by its steps."""
    steps = sum(e["steps"] for e in episodes)
    return sum(e["plan_ms"] * e["steps"] for e in episodes) / max(steps, 1)


def metrics(eps: list[dict], seed: int) -> dict[str, dict]:
    """The summary of one agent's episodes, with bootstrap intervals (see module docstring)."""
    E, H = len(eps), len(eps[0]["probe_n"])
    counts = resamples(E, seed)

    def col(key):
        return np.array([float(e[key]) for e in eps])

    def ratio(num: np.ndarray, den: np.ndarray) -> dict:
        with np.errstate(invalid="ignore", divide="ignore"):
            r = (counts @ num) / (counts @ den)  # (B+1,)
        return interval(r)

    success = col("success")
    steps = col("steps")
    out = {
        "success_rate": ratio(success, np.ones(E)),
        "steps_to_goal": ratio(success * steps, success),
        "violation_step_rate": ratio(col("violation_steps"), steps),
        "violation_episode_rate": ratio((col("violation_steps") > 0).astype(float), np.ones(E)),
        "false_safe_rate": ratio(col("false_safe_steps"), col("feasible_steps")),
        # the share of steps where no sampled plan kept the hard terms (the fallback acted)
        "no_safe_plan_rate": ratio(col("none_feasible_steps"), steps),
    }
    if all("return" in e for e in eps):  # the benchmark's own (scenes.safety): per episode
        out["episode_return"] = ratio(col("return"), np.ones(E))
        out["episode_cost"] = ratio(col("cost"), np.ones(E))
    rules = dict.fromkeys(k for e in eps for k in e.get("violation_steps_by_rule", {}))
    for rule in rules:  # each rule apart (results saved before they were counted have none)
        broke = np.array([float(e.get("violation_steps_by_rule", {}).get(rule, 0)) for e in eps])
        out[f"violation_step_rate/{rule}"] = ratio(broke, steps)
    sse = np.array([e["probe_sse"] for e in eps]).reshape(E, H)  # (E, H)
    n = np.array([e["probe_n"] for e in eps], float).reshape(E, H)
    with np.errstate(invalid="ignore", divide="ignore"):
        rmse = np.sqrt((counts @ sse) / (counts @ n))  # (B+1, H)
    for h in range(H):
        out[f"probe_rmse_h{h + 1}"] = interval(rmse[:, h])
    return out


def resamples(E: int, seed: int) -> np.ndarray:
    """(B+1, E): how often each of ``E`` episodes is drawn in each bootstrap resample,
    seeded; row 0 is the data itself."""
    draws = np.random.default_rng([seed, E]).integers(0, E, size=(BOOTSTRAP, E))
    return np.vstack([np.ones(E), np.stack([np.bincount(d, minlength=E) for d in draws])])


def mean_interval(values, seed: int = 0) -> tuple[float, float]:
    """The bootstrap interval (as ``metrics``') of the mean of per-episode ``values``."""
    x = np.asarray(values, float)
    if len(x) == 0:
        return 0.0, 0.0
    counts = resamples(len(x), seed)
    r = interval((counts @ x) / counts.sum(axis=1))
    return r["low"], r["high"]


def interval(r: np.ndarray) -> dict:
    """r (B+1,): the estimate then its bootstrap replicates -> value, low, high."""
    value = r[0]
    if not np.isfinite(value):
        return {"value": None, "low": None, "high": None}
    reps = r[1:][np.isfinite(r[1:])]
    a = (1 - CONFIDENCE) / 2
    low, high = np.quantile(reps, [a, 1 - a]) if len(reps) else (value, value)
    # A percentile interval of a ratio can miss its own estimate by a rounding
    # hair; widen it to contain the estimate.
    return {
        "value": rounded(value),
        "low": rounded(min(low, value)),
        "high": rounded(max(high, value)),
    }
