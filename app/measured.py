"""The benchmarks' figures in words, for the pages: each sentence is filled from the
benchmark's results file (``common.results``: ``benchmarks/results/<name>.json``), so a
page quotes what was last measured, never a copy of it.

A results file that is missing or damaged does not break a page: its sentence says
which command measures it.
"""

from __future__ import annotations

from collections.abc import Callable

from common import results
from common.errors import LabError
from experiments.system12 import NEW_RULES


def said(name: str, sentence: Callable[[object], str]) -> str:
    """``sentence(figures)`` of benchmark result ``name``, or what to run to measure it."""
    try:
        return sentence(results.figures(name))
    except LabError as e:
        return f"Not measured yet ({e})"
    except (KeyError, TypeError, IndexError, ZeroDivisionError, ValueError) as e:
        return (
            f"The figures in {results.path(name)} are not the ones this page reads "
            f"({type(e).__name__}: {e}): measure them again with ./lab bench "
            f"{name.split('-')[0]}"
        )


def pct(rate: float) -> str:
    """A rate as a percentage with two significant digits: 0.0014 -> '0.14 %'."""
    return f"{100 * rate:.2g} %"


def count(rate: float, n: int) -> int:
    """Episodes out of ``n`` from a success rate."""
    return round(rate * n)


def span(values, digits: str = "g") -> str:
    """'a' or 'a-b', the smallest to the largest of ``values``."""
    lo, hi = min(values), max(values)
    return f"{lo:{digits}}" if lo == hi else f"{lo:{digits}}-{hi:{digits}}"


def by_scene(rows: list[dict]) -> dict[str, dict]:
    return {r["scene"]: r for r in rows}


# --- ./lab bench agent_quality, the Kitchen guardrail part -------------------------------
def margin() -> str:
    def sentence(rows) -> str:
        d = {r["design"]: r for r in rows if r.get("experiment") == "kitchen_guardrail"}
        plain, m1, stop = d["spec"], d["spec+margin"], d["spec+margin+stop"]
        return (
            f"Kitchen, the knife rule, {plain['episodes']} episodes: planned on the imagined "
            f"values it was broken on {pct(plain['violation_step_rate'])} of real steps; with a "
            f"margin of 1, {pct(m1['violation_step_rate'])}; with 1 and the stop fallback, "
            f"{pct(stop['violation_step_rate'])} (success {plain['success']:.2f}, "
            f"{m1['success']:.2f} and {stop['success']:.2f})"
        )

    return said("agent_quality", sentence)


# --- ./lab bench guardrail_science -------------------------------------------------------
def guardrails() -> str:
    def sentence(f) -> str:
        n, rules = f["episodes"], f["fresh_rules"]
        knife_low = rules["kitchen: slow with the knife low"]
        held = sum(
            r["calibrated_step1"]["success"] >= 0.9 * r["unguarded"]["success"]
            and r["calibrated_step1"]["violation_step_rate"] < 0.01
            for r in rules.values()
        )
        gentle = rules["push: gentle with the block"]["calibrated_step1"]
        cover = [
            v
            for scene, per in f["coverage"].items()
            if not scene.endswith("_pooled_steps")
            for v in per.values()
            if v is not None
        ]
        knife, delta = f["knife"], f.get("delta", 0.05)
        return (
            f"Six rules written afresh, two per scene, {n} episodes each: plain CEM froze on "
            "Kitchen's 'with the knife low, at most 0.3 m/s' "
            f"({count(knife_low['plain']['success'], n)} of {n} reached the goal) and repair "
            f"freed it ({count(knife_low['repair']['success'], n)} of {n}); with the "
            f"calibrated margin (delta {delta:g}) over the first imagined step {held} of the "
            f"{len(rules)} kept 0.9x the unguarded success or more at under 1 % violating "
            "steps. Push's 'gentle with the block' is the model's limit: its block-speed "
            "error when pushing is above the 0.2 m/s limit, so no push is certified "
            f"(success {gentle['success']:.2f}). The bound covered {span(cover, '.2f')} of "
            f"fresh episodes' errors per signal; the knife rule at delta {delta:g} kept "
            f"{pct(knife['violation_step_rate'])} of real steps violating at "
            f"{knife['success']:.2f} success. A stress test found "
            f"{f['stress_failures_cem']} knife-rule failures in {f['stress_episodes']} "
            f"episodes, uniform sampling {f['stress_failures_random']}"
        )

    return said("guardrail_science", sentence)


# --- ./lab bench system12 (and --interleaved) --------------------------------------------
def system12() -> str:
    def warm(f) -> str:
        s = by_scene(f)
        reach, kitchen = s["reach"], s["kitchen"]
        return (
            "with the policy's proposal in its search the planner at 2 iterations succeeds "
            f"in {reach['both2_success']:.2f} and {kitchen['both2_success']:.2f} of episodes "
            f"(at 3: {reach['planner3_success']:.2f} and {kitchen['planner3_success']:.2f}), "
            f"in {reach['both2_ratio']:g}x (Reach) and {kitchen['both2_ratio']:g}x (Kitchen) "
            "the time, the proposal included; the planner alone at 2 iterations succeeds in "
            f"{reach['planner2_success']:.2f} and {kitchen['planner2_success']:.2f}, in "
            f"{reach['planner2_ratio']:g}x and {kitchen['planner2_ratio']:g}x"
        )

    def sentence(rows) -> str:
        s = by_scene(rows)
        reach, kitchen = s["reach"], s["kitchen"]

        def both(r) -> str:
            n, a, b = r["episodes"], r["policy_success"], r["planner_success"]
            if a == b:
                return f"{count(a, n)} of {n} each"
            return f"policy {count(a, n)}, planner {count(b, n)} of {n}"

        return (
            f"the policy decides in {span([r['policy_ms'] for r in rows])} ms, the planner in "
            f"{span([r['planner_ms'] for r in rows])} ms "
            f"({span([r['speedup'] for r in rows])}x); on their own episodes the policy and "
            f"the planner reach the goal: Reach {both(reach)}; Kitchen {both(kitchen)}; "
            + said("system12-interleaved", warm)
            + ". A rule typed after distillation: the policy, which never saw it, broke it on "
            f"{pct(reach['new_rule_violation_policy'])} (Reach, {NEW_RULES['reach'].name}) "
            f"and {pct(kitchen['new_rule_violation_policy'])} (Kitchen, "
            f"{NEW_RULES['kitchen'].name}) of real steps; the planner holding it, with the "
            "search repairing plans onto the rule, on "
            f"{pct(reach['new_rule_violation_planner'])} and "
            f"{pct(kitchen['new_rule_violation_planner'])} (success "
            f"{reach['new_rule_success_planner']:g} and "
            f"{kitchen['new_rule_success_planner']:g}). The knife rule in a new situation (the "
            "person walking at 0.8 m/s): trained in, broken on "
            f"{pct(kitchen['shifted_violation_policy'])} of steps; held at inference time, "
            f"{pct(kitchen['shifted_violation_planner'])}."
        )

    return said("system12", sentence)


# --- ./lab bench label_free --------------------------------------------------------------
def label_free() -> str:
    def sentence(rows) -> str:
        r = {(x["scene"], x["obs"]): x for x in rows}
        rs, rp = r["reach", "state"], r["reach", "pixels"]
        wall, push = r["wall", "state"], r["push", "state"]

        def k(row, name: str) -> str:
            return f"{count(row[f'{name}_success'], row['episodes'])}"

        def of(row, name: str) -> str:
            return f"{k(row, name)} of {row['episodes']}"

        return (
            "Reach, goal given as an observation, no label in the cost: from state "
            f"{of(rs, 'latent')} episodes reach the goal on the steps-to-go distance "
            f"({rs['steps_latent']} steps), {of(rs, 'plain')} on the plain latent distance, "
            f"{of(rs, 'signal')} on the probed x-y ({rs['steps_signal']} steps); from pixels, "
            f"the goal an image, {of(rp, 'latent')} ({rp['steps_latent']} steps) against "
            f"{of(rp, 'plain')} plain and {of(rp, 'signal')} probed ({rp['steps_signal']} "
            f"steps). Wall, the goal in the other room: {of(wall, 'latent')} "
            f"({wall['steps_latent']} steps) with no subgoal written, against "
            f"{k(wall, 'plain')} plain, {k(wall, 'signal')} probed and {k(wall, 'oracle')} for "
            f"the oracle on the goal term alone; Push {of(push, 'latent')} against "
            f"{k(push, 'plain')} plain and {k(push, 'signal')} probed"
        )

    return said("label_free", sentence)


# --- ./lab bench hierarchy ---------------------------------------------------------------
def hierarchy() -> str:
    def sentence(rows) -> str:
        s = by_scene(rows)
        wall, push = s["wall"], s["push"]
        n = wall["episodes"]

        def k(row, name: str) -> int:
            return count(row[f"{name}_success"], row["episodes"])

        return (
            f"{n} seeded episodes a design, CEM N=300, 3 iterations. Wall: the learned "
            f"subgoal policy reaches the goal in {k(wall, 'learned')} of {n} "
            f"({wall['steps_learned']} steps) with no subgoal written, the hand-written door "
            f"subgoal in {k(wall, 'hand_subgoal')} ({wall['steps_hand_subgoal']} steps), the "
            f"goal term alone in {k(wall, 'flat')}; planning over macro-actions (HWM) on the "
            f"steps to go in {k(wall, 'hwm')}. Push: the learned high level gets the block "
            f"home in {k(push, 'learned')} (subgoal policy) and {k(push, 'hwm')} (HWM) of "
            f"{push['episodes']}, against the hand-written subgoal's "
            f"{k(push, 'hand_subgoal')}; the scene's own scripted controller as the high "
            f"level, with the same low level, in {k(push, 'scripted_high')}"
        )

    return said("hierarchy", sentence)


# --- ./lab bench search_efficiency -------------------------------------------------------
def search() -> str:
    def sentence(rows) -> str:
        found = {(r["scene"], r["setting"]): r for r in rows}
        scenes = [sc for sc in ("reach", "wall", "kitchen") if (sc, "icem") in found]
        first = found[(scenes[0], "icem")]

        def at(scene: str) -> str:
            cem, icem = found[(scene, "cem")], found[(scene, "icem")]
            return (
                f"{scene.capitalize()} N = {icem['smallest_n']} with iCEM "
                f"({icem['plan_ms_interleaved']} ms a decision against "
                f"{icem['default_ms_interleaved']} ms, {icem['speedup']}x), "
                f"{cem['smallest_n'] or 'none under 1000'} with plain CEM"
            )

        text = (
            f"Over {first['episodes']} seeded episodes a point, the smallest N that kept plain "
            f"CEM's success and steps at N = 1000: " + "; ".join(at(sc) for sc in scenes)
        )
        repair = [r for r in rows if r["setting"].startswith("repair")]
        if repair:
            r = repair[0]
            text += (
                f". With the knife rule held, repair cost {r['repair_overhead']:.0%} over a "
                f"plan with no hard term at N = {r['samples']}"
            )
        peer = found.get(("reach", "pytorch_mppi"))
        if peer and peer.get("icem_speedup"):
            text += (
                f"; pytorch_mppi, on the same model and cost, needed N = {peer['smallest_n']} "
                f"on Reach, {peer['plan_ms_interleaved']} ms a decision: "
                f"{peer['icem_speedup']}x iCEM's"
            )
        return text + " (plain CEM at N = 300 for the times' comparison, interleaved)"

    return said("search_efficiency", sentence)


def trained_in() -> str:
    def sentence(rows) -> str:
        def task(r) -> str:
            name = r["task"].removeprefix("Safety").removesuffix("-v0")
            text = (
                f"{name}: trained under the old rule it breaks `{r['new_rule']}` on "
                f"{r['ppol_old_new_cost']:g} steps an episode"
            )
            if "planner_new_cost" in r:
                kept = r["planner_new_return"] / r["planner_return"]
                text += (
                    f", the planner with the expression edited on {r['planner_new_cost']:g}, "
                    f"keeping {kept:.2f} of its return, nothing retrained"
                )
            steps = f"{r['ppol_retrain_env_steps']:,}".replace(",", " ")
            return text + (
                f"; trained again, {r['ppol_retrained_return']:g} / "
                f"{r['ppol_retrained_cost']:g} (return / cost) after {steps} more "
                "environment steps"
            )

        n = rows[0]["episodes"]
        return f"Over {n} seeded episodes a task: " + ". ".join(task(r) for r in rows)

    return said("trained_in", sentence)


def hierarchy_rows() -> list[dict]:
    """The hierarchy benchmark's rows, one per scene ([] when not measured)."""
    try:
        rows = results.figures("hierarchy")
    except LabError:
        return []
    return rows if isinstance(rows, list) else []


def record(name: str) -> dict | None:
    """The whole results record (figures, command, date, machine), or None if missing."""
    try:
        return results.read(name)
    except LabError:
        return None
