"""What every lesson shares: the ``Live`` record a lesson reports into, the
``Lesson`` that describes one (its text and settings beside its code, in its own
module), the episodes the lessons collect for themselves, the search they plan with,
and the intervals that say how far a figure may vary."""

from __future__ import annotations

import copy
import math
import shutil
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from agents.planners import CEM_300
from common.errors import LabError
from common.paths import home
from scenes.collect import CollectConfig, collect, stale

# the search every lesson plans with unless it says otherwise: plain CEM at N = 300, the
# Plan page's default before iCEM and the search the lessons' reference figures were
# measured with (at iCEM N = 30 three of their texts' claims change: issue 31's note)
SEARCH = CEM_300


class Live:
    """What a lesson has found so far; written by its thread, copied by the page."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.stage = ""
        self.done, self.total = 0, 1
        self.rows: list[dict] = []
        self.figures: dict = {}
        self.pictures: dict[str, np.ndarray] = {}
        # figure -> (low, high): how far it may vary, 95 % (``wilson``, or a bootstrap
        # over episodes); and what ran (``Lesson.setup``), for the page and the CSV
        self.intervals: dict[str, tuple[float, float]] = {}
        self.settings: dict[str, str] = {}

    def say(self, stage: str, done: int | None = None, total: int | None = None) -> None:
        with self.lock:
            self.stage = stage
            if total is not None:
                self.total = total
            if done is not None:
                self.done = done

    def tick(self) -> None:
        with self.lock:
            self.done += 1

    def add(self, **row) -> None:
        with self.lock:
            self.rows.append(row)

    def replace(self, match: dict, rows: list[dict]) -> None:
        """The rows that hold every item of ``match`` give way to ``rows`` (a curve
        redrawn as its mean takes in another episode)."""
        with self.lock:
            keep = [r for r in self.rows if any(r.get(k) != v for k, v in match.items())]
            self.rows = keep + rows

    def set(self, **figures) -> None:
        with self.lock:
            self.figures.update(figures)

    def picture(self, name: str, image: np.ndarray) -> None:
        with self.lock:
            self.pictures[name] = image

    def interval(self, **spans: tuple[float, float]) -> None:
        with self.lock:
            self.intervals.update(
                {k: (round(lo, 4), round(hi, 4)) for k, (lo, hi) in spans.items()}
            )

    def copy(self) -> Live:
        with self.lock:
            out = copy.copy(self)
            out.lock = threading.Lock()
            out.rows, out.figures = list(self.rows), dict(self.figures)
            out.pictures = dict(self.pictures)
            out.intervals, out.settings = dict(self.intervals), dict(self.settings)
        return out


def stopped(stop) -> None:
    if stop is not None and stop.is_set():
        raise LabError("the lesson was stopped before it finished")


_COLLECTING = threading.Lock()


def episodes_for(scene: str, episodes: int, pixels: bool, seed: int) -> Path:
    """A few exploration episodes of ``scene`` the lessons collect once and keep in
    the workspace (``runs/lessons/<scene>-<pixels|state>-<seed>``, resumable); seeds
    unlike the shipped models' data, so every episode is new to them."""
    out = home() / "runs" / "lessons" / f"{scene}-{'pixels' if pixels else 'state'}-{seed}"
    cfg = CollectConfig(
        scene=scene,
        out=str(out),
        episodes=episodes,
        pixels=pixels,
        seed=seed,
        workers=1,
        episodes_per_shard=episodes,
        progress=False,
    )
    with _COLLECTING:  # two people starting the same lesson at once: one collects
        if stale(cfg):  # made by an older version of the scene or of these settings:
            shutil.rmtree(out)  # a cache the lessons keep, made anew
        collect(cfg)
    return out


def wilson(k: float, n: int, z: float = 1.96) -> tuple[float, float]:
    """The 95 % Wilson score interval of a rate of ``k`` in ``n`` (E. B. Wilson, 1927):
    unlike the normal approximation it stays within [0, 1] and is not zero-wide at 0 or
    1 of n, which a few episodes give often. ``n`` = 0: (0, 1), nothing known."""
    if n <= 0:
        return 0.0, 1.0
    p = min(max(k / n, 0.0), 1.0)
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z / (1 + z * z / n) * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    return max(0.0, centre - half), min(1.0, centre + half)


def step_interval(summary: dict, name: str = "violation_step_rate") -> tuple[float, float]:
    """The bootstrap interval over episodes ``experiments.evaluate`` gives a step rate
    (steps of one episode are not independent: resampling whole episodes says how far
    the rate may vary from one set of episodes to another)."""
    row = summary.get(name) or {}
    lo, hi = row.get("low"), row.get("high")
    value = row.get("value") or 0.0
    return (float(value if lo is None else lo), float(value if hi is None else hi))


@dataclass
class Panel:
    """One panel of a lesson's headline chart, drawn from its figures: a measure (the
    y axis, in words), its unit, whether lower is better, and its bars, each
    ``(group, bar, figure key)``: groups along x, bars side by side within a group."""

    measure: str
    unit: str  # "%": the figures are rates drawn as percentages
    bars: list[tuple[str, str, str]]
    lower_better: bool = False

    @property
    def percent(self) -> bool:
        return self.unit == "%"


@dataclass
class Lesson:
    """One lesson: what the page says (title, claim, what it shows, what to try) and
    the experiment it runs, ``run(live, device, stop, turn, quick) -> figures``."""

    key: str
    nav: str  # its short name in the navigation
    title: str
    claim: str
    run: Callable
    shows: str  # what the result shows
    next: str  # what to try next
    chart: dict = field(default_factory=dict)  # how the page draws the rows
    needs: tuple[str, ...] = ()  # the shipped checkpoints it loads (pretrained/<name>)
    scenes: tuple[str, ...] = ()  # the scenes it can run on, its default first
    rule: str | dict = ""  # the rule it holds (or "none"), in words; or one per scene
    situation: str | dict = ""  # what "a new situation" is here, if it has one
    episodes: tuple[int, int] = (0, 0)  # (quick, full): episodes a figure is a rate over
    counted: str = ""  # what those episodes are, in words
    words: dict[str, str] = field(default_factory=dict)  # figure key -> its name in words
    panels: list[Panel] = field(default_factory=list)  # the headline chart
    seed_means: str = ""  # what the seed chooses

    def setup(self, quick: bool, seed: int, scene: str | None = None) -> dict[str, str]:
        """What a run with these settings runs, in words: the page's "what ran" line
        and the CSV's header."""
        scene = scene or (self.scenes[0] if self.scenes else "")
        rule = self.rule.get(scene, "") if isinstance(self.rule, dict) else self.rule
        situation = self.situation
        if isinstance(situation, dict):
            situation = situation.get(scene, "none on this scene")
        out = {"lesson": self.title, "scene": scene.capitalize(), "rule": rule}
        if situation:
            out["a new situation"] = situation
        n = self.episodes[0 if quick else 1]
        out["episodes"] = f"{n} {self.counted}" + (" (the short version)" if quick else "")
        chooses = f"; it chooses {self.seed_means}" if self.seed_means else ""
        out["seed"] = f"{seed}{chooses} (the shipped figures ran with 0)"
        return out

    def figure_intervals(self, figures: dict, quick: bool = False) -> dict:
        """Intervals of shipped figures, which carry none: Wilson's on each success rate
        over the lesson's episodes (a step rate's needs the episodes: a run gives it)."""
        n = self.episodes[0 if quick else 1]
        return {
            k: wilson(round(v * n), n)
            for k, v in figures.items()
            if "success" in k and isinstance(v, int | float) and n
        }
