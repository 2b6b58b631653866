"""An agent planning in a scene, driven from the Plan page by a worker thread.

The page only sends commands (``step``, ``run``, ``pause``, ``reset``, new costs,
new search settings) and reads ``view()``: a copy of what to draw, made under a
lock. The run's thread takes each command in turn with the server's other work
(``app.runs.Turns``) and passes it to the agent's ``PlanSession``
(app/plansession.py) wherever the server placed it (``app.hosts``): in this
thread, in a process of its own (off the web process's interpreter lock) or in
a Ray actor on a cluster. What comes back is the new view and the steps taken;
the episode's history (frames for the video) is kept here, so a step sends
only what changed.
"""

from __future__ import annotations

import dataclasses
import io
import queue
import time

import imageio.v3 as iio
import numpy as np
import torch

from agents.cost import CostSet
from app import hosts
from app.plansession import PlanSettings, Update, View
from app.runs import Run
from common.errors import LabError

__all__ = ["PlanRun", "PlanSettings", "View"]
PAGE_OWNED = ("speed", "options")  # settings the page writes on the run, read here


class PlanRun(Run):
    """See the module docstring. Commands are queued; ``view()`` is safe from any thread."""

    kind = "plan"

    def __init__(
        self,
        settings: PlanSettings,
        costs: CostSet,
        device: torch.device,
        placement: hosts.Placement | None = None,
    ) -> None:
        """``placement``: where the agent computes (default: in this run's thread; a
        server's registry gives its own, ``app.hosts.serving``)."""
        super().__init__(f"{settings.scene} agent")
        self.settings = settings
        self.device = device
        self.placement = placement or hosts.Placement()
        self.commands: queue.Queue = queue.Queue()
        self.host: hosts.Host | None = None
        self._costs = costs
        self._cost_version = 0
        self._view = View()

    # --- commands (page thread) ----------------------------------------------------
    def send(self, name: str, *args) -> None:
        if name == "run":
            self.idle_stopped = False  # someone pressed Run: it no longer idles
        self.commands.put((name, args))

    @property
    def costs(self) -> CostSet:
        """The cost set last sent (terms that did not compile included)."""
        return self._costs

    def set_costs(self, costs: CostSet) -> int:
        """Queue a new cost; returns its version (``view().cost_version`` reaches it once
        the agent has planned with it)."""
        with self.lock:
            self._cost_version += 1
            version = self._cost_version
            self._costs = costs
        self.send("costs", costs, version)
        return version

    def view(self) -> View:
        with self.lock:
            v = self._view
            return dataclasses.replace(v, history=list(v.history))

    @property
    def running(self) -> bool:
        """Stepping on its own (Run) until paused, done or idle."""
        with self.lock:
            return self.active and self._view.running

    @property
    def plot_signals(self) -> tuple[str, ...]:
        return self._view.plot_signals

    @property
    def scene_goal_signals(self) -> tuple[str, ...]:
        """The signals a goal gives values to (a clicked goal needs two: the plotted plane)."""
        return self._view.goal_signals

    @property
    def obs(self) -> str:
        return self._view.obs

    def on_idle(self) -> None:
        """Nobody watches: pause (the scene and the episode stay as they are)."""
        self.idle_stopped = True
        self.send("pause")

    # --- the thread ----------------------------------------------------------------------
    def work(self) -> None:
        try:
            self.host = self.placement.open()  # a process or an actor starting: no turn taken
            self.host.ready()
            with self.turn():
                self._apply(self.host.start(self.settings, self._costs, self.device))
            while not self.stopping.is_set():
                try:  # a running agent steps again at once unless a command waits
                    name, args = (
                        self.commands.get_nowait()
                        if self.running
                        else self.commands.get(timeout=0.25)
                    )
                except queue.Empty:
                    if self.running:
                        with self.turn():  # a running agent queues behind others' steps
                            self._apply(self.host.handle("tick"))
                        if self.running and self.settings.speed > 0:
                            time.sleep(self.settings.speed)
                    continue
                if name == "reset" and len(args) < 2:  # the page's options for the next episode
                    args = (args[0] if args else self.settings.seed, dict(self.settings.options))
                with self.turn():
                    self._apply(self.host.handle(name, args))
        finally:
            if self.host is not None:
                self.host.close()
                self.host = None

    def _apply(self, up: Update) -> None:
        """The session's update: its view, after the episode's history so far."""
        with self.lock:
            history = self._view.history[: up.start] + up.steps
            self._view = dataclasses.replace(up.view, history=history)
            # the session's settings (a search it refused left its old ones; a reset moved
            # its seed: a reopened tab starts from this episode), copied into the object the
            # page holds and writes: its own speed and the next episode's options stay
            for f in dataclasses.fields(PlanSettings):
                if f.name not in PAGE_OWNED:
                    setattr(self.settings, f.name, getattr(up.settings, f.name))

    # --- the episode as a video (page thread; reads the history only) -------------------
    def video(self, fmt: str = "gif") -> bytes:
        """The episode so far: the real scene next to the imagined next frame."""
        frames = []
        for step in self.view().history:
            real = step["frame"]
            imag = step["imagined_frame"]
            imag = np.zeros_like(real) if imag is None else imag
            frames.append(np.concatenate([real, imag], axis=1))
        if not frames:
            raise LabError("no steps yet: run the agent first")
        buf = io.BytesIO()
        if fmt == "mp4":
            iio.imwrite(buf, np.stack(frames), extension=".mp4", fps=10, codec="libx264")
        else:
            iio.imwrite(buf, np.stack(frames), extension=".gif", duration=100, loop=0)
        return buf.getvalue()
