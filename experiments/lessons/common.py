"""What every lesson shares: the ``Live`` record a lesson reports into, the
``Lesson`` that describes one (its text beside its code, in its own module), the
episodes the lessons collect for themselves, and the search they plan with."""

from __future__ import annotations

import copy
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from agents.planners import PlannerConfig
from common.errors import LabError
from common.paths import home
from scenes.collect import CollectConfig, collect

# the search every lesson plans with unless it says otherwise: the Plan page's default
SEARCH = PlannerConfig(samples=300, horizon=16, iterations=3)


class Live:
    """What a lesson has found so far; written by its thread, copied by the page."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.stage = ""
        self.done, self.total = 0, 1
        self.rows: list[dict] = []
        self.figures: dict = {}
        self.pictures: dict[str, np.ndarray] = {}

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

    def copy(self) -> Live:
        with self.lock:
            out = copy.copy(self)
            out.lock = threading.Lock()
            out.rows, out.figures = list(self.rows), dict(self.figures)
            out.pictures = dict(self.pictures)
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
    cfg = CollectConfig(scene=scene, out=str(out), episodes=episodes, pixels=pixels, seed=seed,
                        workers=1, episodes_per_shard=episodes, progress=False)  # fmt: skip
    with _COLLECTING:  # two people starting the same lesson at once: one collects
        collect(cfg)
    return out


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
