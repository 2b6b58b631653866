"""The cost module: a task term plus guardrail terms, on a batch of imagined futures.

A cost set (saved as JSON, so guardrail designs can be shared) holds:

* the task term: ``reward``, the probed per-step reward, maximised (the
  Bullet-Safety-Gym tasks, which have no goal: ``scenes.safety``); or ``signal``
  distance (the probed task signals against the goal's, e.g. x-y for Reach: the
  default, it reached the goal in 100 % of the prototype's episodes) or ``latent``
  distance to the goal
  observation's embedding: steps to go where the model has a distance head
  (``worldmodels/distance.py``; Reach 20 of 20 episodes, no label in the
  cost), else the plain Euclidean distance (4 of 20);
* guardrail terms, each an expression over the scene's signals (see
  ``agents.expressions``), soft (``weight * expr`` added to the cost) or hard
  (``expr <= limit`` at every step of the horizon, else the plan is
  infeasible), each with an on/off switch. A term may also read the goal:
  ``goal_<task signal>`` (``goal_x`` in Reach, ``goal_block_x`` in Push) is
  the goal's value of that signal, so a subgoal can follow the goal (Push:
  "get behind the block", ``scenes.push.BEHIND_BLOCK``).

``Cost.evaluate`` turns imagined latents ``(N, H, D)`` and their probed
signals ``{name: (N, H)}`` into per-term costs ``(N, H)``, a total ``(N,)``,
the hard terms' total violation ``(N,)`` and a feasibility mask ``(N,)``, in
one batch. A term whose expression does not compile is reported (message and
column) and the last good version of that term stays in force.

With margins (``Cost.set_margins``: per signal, how far the model's imagined
value may be from the real one at each step of the horizon, e.g. the
checkpoint's measured probe RMSE times ``AgentConfig.margin``) a hard term
must hold for every combination of its signals at the ends of those
intervals: the term is evaluated at the 2^m corners (m signals it reads) and
the worst value counts. That is the exact worst case for expressions that
are monotone or convex in each signal (a threshold, a product of a relu and
a comparison, an absolute value), which covers guardrails as they are
usually written; for others it checks the corners only.
"""

from __future__ import annotations

import itertools
import json
import math
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch

from agents.expressions import Expression, ExpressionError, compile_expression
from common.errors import LabError
from common.files import parse_versioned_json, read_versioned_json

# format, version, what a cost set file is, what to do about another one
COSTS_FORMAT = ("lab-costs", 1, "lab cost set", "save it again from the Plan page")
TASKS = ("signal", "latent", "reward")  # the task term's kinds (CostSet.task)
NAN_COST = 1e6  # what a NaN or infinite term costs: never chosen over a finite plan


def goal_names(task_signals) -> list[str]:
    """The names a term reads the goal by: ``goal_<task signal>``, in the task's order."""
    return [f"goal_{k}" for k in task_signals]


def term_names(signals, task_signals) -> list[str]:
    """Every name a term may use: the signals, then the goal's."""
    return [*signals, *goal_names(task_signals)]


def real_values(signals: dict[str, float], task_signals, goal) -> dict[str, torch.Tensor]:
    """One real step as a term reads it: each signal and the goal's values (``goal``, in
    ``task_signals`` order) as (1, 1) tensors."""
    values = {k: torch.tensor([[float(v)]]) for k, v in signals.items()}
    for name, v in zip(goal_names(task_signals), goal, strict=True):
        values[name] = torch.tensor([[float(v)]])
    return values


def _finite(x: torch.Tensor) -> torch.Tensor:
    """NaN and +-inf (a term that cannot be evaluated there) cost ``NAN_COST``."""
    return torch.nan_to_num(x, nan=NAN_COST, posinf=NAN_COST, neginf=NAN_COST)


@dataclass
class Term:
    """One guardrail (or extra objective) term."""

    name: str
    expression: str
    kind: str = "soft"  # "soft": weight * expr is added; "hard": expr <= limit at every step
    weight: float = 1.0  # soft terms
    limit: float = 0.0  # hard terms
    enabled: bool = True


@dataclass
class CostSet:
    """Everything the cost is made of; JSON round-trips it."""

    # "signal" (probed task signals vs the goal's), "latent" (to the goal's embedding) or
    # "reward" (the probed "reward" signal, maximised: the tasks without a goal)
    task: str = "signal"
    task_weight: float = 1.0
    terms: list[Term] = field(default_factory=list)
    # the person's name for the set, as written ("my knife rule 0.6"); its file's name is
    # made safe apart from it, so lists and legends show this one
    name: str = ""

    def to_json(self) -> str:
        fmt, version = COSTS_FORMAT[:2]
        return json.dumps({"format": fmt, "version": version, **asdict(self)}, indent=1)

    @classmethod
    def from_json(cls, text: str, source: str = "the text") -> CostSet:
        """A cost set from its JSON; anything else raises ``LabError`` naming ``source``."""
        return cls._from_dict(parse_versioned_json(text, *COSTS_FORMAT, source), source)

    @classmethod
    def _from_dict(cls, d: dict, source: str) -> CostSet:
        """Each field checked for its type, a term named by its place (``term 2``), so a
        hand-edited file is told exactly what to change."""
        try:
            terms = d.get("terms", [])
            if not isinstance(terms, list):
                raise LabError("'terms' must be a list of terms, [{...}, ...]")
            name = d.get("name", "")
            if not isinstance(name, str):
                raise LabError(f"'name' must be text, not {_kind_of(name)}")
            out = cls(
                task=d.get("task", "signal"),
                task_weight=_number(d.get("task_weight", 1.0), "'task_weight'"),
                terms=[_term(i, t) for i, t in enumerate(terms, start=1)],
                name=name,
            )
            out.check()
        except LabError as e:
            raise LabError(f"{source}: {e}") from e
        return out

    def save(self, path: str | Path) -> None:
        Path(path).write_text(self.to_json())

    @classmethod
    def load(cls, path: str | Path) -> CostSet:
        return cls._from_dict(read_versioned_json(Path(path), *COSTS_FORMAT), str(path))

    def check_names(self, names: list[str], source: str = "the cost set") -> None:
        """Every term compiles over ``names`` (a scene's signals and goal values), else
        ``LabError`` naming the term, the unknown name and the names there are: a set
        written for another scene would otherwise be loaded with its terms left out, and
        the agent would plan with no guardrail."""
        for i, t in enumerate(self.terms, start=1):
            try:
                compile_expression(t.expression, names)
            except ExpressionError as e:
                unknown = re.match(r"unknown name ('[^']*')", e.message)
                why = (
                    f"reads {unknown.group(1)}, which this scene does not have; "
                    f"its names are: {', '.join(names)}"
                    if unknown
                    else str(e)
                )
                raise LabError(f"{source}: term {i} ({t.name!r}): {why}") from e

    def check(self) -> None:
        if self.task not in TASKS:
            raise LabError(f"task must be 'signal', 'latent' or 'reward', not {self.task!r}")
        names = [t.name for t in self.terms]
        if len(set(names)) != len(names):
            raise LabError("two terms share a name; names must be unique")
        if not _finite_number(self.task_weight):
            raise LabError("the task weight must be a finite number")
        for t in self.terms:
            if not (isinstance(t.name, str) and isinstance(t.expression, str)):
                raise LabError(f"term {t.name!r}: its name and expression must be text")
            if t.kind not in ("soft", "hard"):
                raise LabError(f"term {t.name!r}: kind must be 'soft' or 'hard'")
            if not (_finite_number(t.weight) and _finite_number(t.limit)):
                raise LabError(f"term {t.name!r}: weight and limit must be finite numbers")
            if not isinstance(t.enabled, bool):
                raise LabError(f"term {t.name!r}: enabled must be true or false")


def _finite_number(v) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)


def _kind_of(v) -> str:
    """What a JSON value is, in a user's words."""
    if isinstance(v, bool):
        return f"true/false ({str(v).lower()})"
    if isinstance(v, int | float):
        return f"a number ({v!r})"
    if isinstance(v, str):
        return f"text ({v!r})"
    if v is None:
        return "null"
    return "a list" if isinstance(v, list) else "an object"


def _number(v, what: str) -> float:
    if not _finite_number(v):
        raise LabError(f"{what} must be a finite number, not {_kind_of(v)}")
    return float(v)


# A term's fields in a cost set file: (what it must be, default or None when required)
TERM_FIELDS = {
    "name": ("text", None),
    "expression": ("text", None),
    "kind": ("'soft' or 'hard'", "soft"),
    "weight": ("a finite number", 1.0),
    "limit": ("a finite number", 0.0),
    "enabled": ("true or false", True),
}


def _term(i: int, t) -> Term:
    """Term ``i`` (1-based) of a cost set file, every field checked (a name that
    was a number gave Python's own 'missing 1 required positional argument')."""
    where = f"term {i}"
    if not isinstance(t, dict):
        raise LabError(
            f"{where} must be an object with {', '.join(TERM_FIELDS)}, not {_kind_of(t)}"
        )
    if isinstance(t.get("name"), str) and t["name"].strip():
        where += f" ({t['name']!r})"
    unknown = sorted(set(t) - set(TERM_FIELDS))
    if unknown:
        raise LabError(
            f"{where}: unknown field {unknown[0]!r}; a term has {', '.join(TERM_FIELDS)}"
        )
    values = {}
    for key, (must, default) in TERM_FIELDS.items():
        if key not in t:
            if default is None:
                raise LabError(f"{where}: '{key}' is missing; it must be {must}")
            values[key] = default
            continue
        v = t[key]
        ok = {
            "text": isinstance(v, str),
            "'soft' or 'hard'": v in ("soft", "hard"),
            "a finite number": _finite_number(v),
            "true or false": isinstance(v, bool),
        }[must]
        if not ok:
            raise LabError(f"{where}: '{key}' must be {must}, not {_kind_of(v)}")
        values[key] = float(v) if must == "a finite number" else v
    if not values["name"].strip():
        raise LabError(f"{where}: 'name' is empty; give the term a name")
    return Term(**values)


@dataclass
class CostResult:
    """The breakdown travels with the total (the app shows it)."""

    terms: dict[str, torch.Tensor]  # name -> (N, H), weighted for soft terms
    total: torch.Tensor  # (N,) task + soft terms, summed over the horizon
    violation: torch.Tensor  # (N,) hard terms' excess over their limits, summed
    feasible: torch.Tensor  # (N,) bool: every hard term within its limit at every step


class Cost:
    """A compiled cost set for one scene's signals; see the module docstring."""

    def __init__(
        self,
        costs: CostSet,
        signals: list[str],
        task_signals: list[str],
        smooth: bool = False,
        distance=None,
        beside: float = 0.0,
    ) -> None:
        costs.check()
        # the latent task term's distance, (N, H, D) and (D,) -> (N, H): the model's
        # steps to go where it has them (WorldModel.goal_distance); else Euclidean
        self.distance = distance
        # Beside a signal task, the distance to ``goal_latent`` at this weight, as the
        # term "subgoal" (a hierarchy's low level: the goal, and the way to its subgoal)
        self.beside = beside
        self.signals = list(signals)
        self.task_signals = list(task_signals)
        self.smooth = smooth  # smooth comparisons, for the gradient planner
        self.costs = CostSet(costs.task, costs.task_weight, [])
        self.compiled: dict[str, Expression] = {}
        self.errors: dict[str, ExpressionError] = {}
        self.margins: dict[str, torch.Tensor] = {}  # signal -> (H,) half-width per step
        self.goal_names = goal_names(task_signals)
        self.reads_goal = False  # whether a term reads the goal (set by update)
        self.update(costs)

    def set_margins(self, margins: dict[str, torch.Tensor] | None) -> None:
        """Hard terms must hold within ``margins[name][h]`` of each imagined signal at step
        h (a horizon longer than a margin's curve reuses its last value); None: none."""
        self.margins = {k: v for k, v in (margins or {}).items() if k in self.signals}

    def _hard_value(self, name: str, signals: dict[str, torch.Tensor]) -> torch.Tensor:
        """The hard term's value (N, H), at its worst over the margins' corners."""
        fn = self.compiled[name]
        wide = [k for k in sorted(fn.names) if k in self.margins]
        if not wide:
            return fn(signals)
        H = next(iter(signals.values())).shape[-1]
        half = {}
        for k in wide:
            m = self.margins[k].to(signals[k])
            half[k] = torch.cat([m, m[-1:].expand(max(H - len(m), 0))])[:H]  # (H,)
        worst = None
        for signs in itertools.product((-1.0, 1.0), repeat=len(wide)):
            moved = dict(signals)
            for k, sign in zip(wide, signs, strict=True):
                moved[k] = signals[k] + sign * half[k]
            value = fn(moved)
            worst = value if worst is None else torch.maximum(worst, value)  # NaN stays NaN
        return worst

    def update(self, costs: CostSet) -> dict[str, ExpressionError]:
        """Take a new cost set; a term that does not compile keeps its last good version.

        Returns the errors by term name (empty when all compiled).
        """
        costs.check()
        errors: dict[str, ExpressionError] = {}
        kept: list[Term] = []
        compiled: dict[str, Expression] = {}
        old = {t.name: t for t in self.costs.terms}
        for term in costs.terms:
            try:
                compiled[term.name] = compile_expression(
                    term.expression, term_names(self.signals, self.task_signals), self.smooth
                )
                kept.append(term)
            except ExpressionError as e:
                errors[term.name] = e
                if term.name in old:  # the last good version stays in force
                    kept.append(old[term.name])
                    compiled[term.name] = self.compiled[term.name]
        self.costs = CostSet(costs.task, costs.task_weight, kept)
        self.compiled, self.errors = compiled, errors
        self.reads_goal = any(fn.names.intersection(self.goal_names) for fn in compiled.values())
        return errors

    @property
    def judges_safety(self) -> bool:
        """Whether a plan can be infeasible: an enabled hard term is in force."""
        return any(t.kind == "hard" and t.enabled for t in self.costs.terms)

    @property
    def needed(self) -> list[str]:
        """The signals this cost reads: a planner probes only these."""
        names = {"signal": set(self.task_signals), "reward": {"reward"}}.get(self.costs.task, set())
        for term in self.costs.terms:
            names |= self.compiled[term.name].names
        return [n for n in self.signals if n in names]

    def _latent_distance(self, latents: torch.Tensor, goal_latent) -> torch.Tensor:
        if goal_latent is None:
            raise LabError("the latent task term needs the goal's embedding")
        if self.distance is not None:
            return self.distance(latents, goal_latent)  # (N, H)
        return torch.linalg.vector_norm(latents - goal_latent, dim=-1)

    def evaluate(
        self,
        latents: torch.Tensor,
        signals: dict[str, torch.Tensor],
        goal_latent: torch.Tensor | None,
        goal: torch.Tensor,
    ) -> CostResult:
        """latents (N, H, D), signals {name: (N, H)}, goal_latent (D,), goal (G,) task values."""
        N = latents.shape[0]
        terms: dict[str, torch.Tensor] = {}
        goal = goal.to(latents.dtype)
        if self.reads_goal:  # the goal's values, as (N, H) views
            shape = next(iter(signals.values())).shape if signals else latents.shape[:2]
            signals = dict(signals)
            for i, name in enumerate(self.goal_names):
                signals[name] = goal[i].expand(shape)
        if self.costs.task == "reward":  # each imagined step's reward, to be maximised
            dist = -signals["reward"]
        elif self.costs.task == "latent":
            dist = self._latent_distance(latents, goal_latent)  # (N, H)
        else:
            # sqrt of a sum of squares, one (N, H) signal at a time: stacking them to
            # (N, H, G) for vector_norm cost a tenth of a CEM plan's cost evaluation
            squares = [(signals[k] - goal[i]).square() for i, k in enumerate(self.task_signals)]
            dist = torch.stack(squares).sum(dim=0).sqrt()  # (N, H)
        dist = _finite(dist)  # a NaN probe: never chosen
        terms["task"] = self.costs.task_weight * dist
        total = terms["task"].sum(dim=1)
        if self.beside and self.costs.task == "signal":
            terms["subgoal"] = self.beside * _finite(self._latent_distance(latents, goal_latent))
            total = total + terms["subgoal"].sum(dim=1)
        violation = torch.zeros(N, device=latents.device, dtype=latents.dtype)
        for term in self.costs.terms:
            if term.kind == "hard":
                value = self._hard_value(term.name, signals)  # (N, H)
            else:
                value = self.compiled[term.name](signals)
            if term.kind == "soft":
                cost = _finite(term.weight * value)
                terms[term.name] = cost
                if term.enabled:
                    total = total + cost.sum(dim=1)
            else:
                excess = _finite(value - term.limit).clamp_min_(0.0)
                terms[term.name] = excess
                if term.enabled:
                    violation = violation + excess.sum(dim=1)
        return CostResult(terms, total, violation, violation <= 0)
