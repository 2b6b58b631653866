"""Long work owned by the server process: worker threads found again by a run id.

Streamlit reruns a page script on every click and forgets everything a
closed tab had (PITFALLS.md). So collection, training, episodes and
experiments run in a ``Run``: a plain thread that never calls ``st.*`` and
writes what the page shows into fields under a lock. Runs live in one
process-wide ``Registry`` (``st.cache_resource``), keyed by a short id that
the page puts in its URL (``?<kind>=<id>``): a reloaded or reopened tab finds
its run again; another browser session never sees it unless given the URL.

Pages poll with fragments and every poll ``touch``es the run. A reaper
thread asks runs nobody has polled for ``idle_seconds`` to stop at a
checkpoint (training saves and can resume; collection keeps its shards; an
episode pauses; an experiment keeps the episodes it finished), and forgets
finished runs nobody has looked at for ``forget_seconds``.
"""

from __future__ import annotations

import contextlib
import logging
import os
import secrets
import threading
import time
from collections.abc import Iterator

log = logging.getLogger(__name__)

IDLE_SECONDS = float(os.environ.get("LAB_IDLE_SECONDS", "120"))
FORGET_SECONDS = float(os.environ.get("LAB_FORGET_SECONDS", "3600"))


class Run:
    """Base: a worker thread with a status, a progress fraction and an error.

    Subclasses implement ``work()`` (runs in the thread; check ``self.stopping``
    between units of work) and may override ``on_idle()``.
    """

    kind = "run"

    def __init__(self, title: str) -> None:
        self.id = secrets.token_urlsafe(6)
        self.title = title
        self.lock = threading.RLock()
        self.status = "starting"  # starting, running, paused, stopped, finished, error
        self.error = ""
        self.done = 0  # units of work finished (episodes, steps) ...
        self.total = 0  # ... of this many
        self.started = time.monotonic()
        self.last_seen = time.monotonic()
        self.stopping = threading.Event()
        self.idle_stopped = False  # stopped by the reaper, not by a person
        self.idle_since = 0.0  # last_seen when the reaper last acted on it
        self.thread: threading.Thread | None = None
        self.turns: Turns | None = None  # the server's, given by Registry.add

    def turn(self) -> contextlib.AbstractContextManager:
        """A unit of compute, in turn with every other run of the server (``Turns``)."""
        return self.turns.take() if self.turns is not None else contextlib.nullcontext()

    # --- any thread --------------------------------------------------------------
    def start(self) -> Run:
        self.thread = threading.Thread(target=self._main, name=f"lab-{self.kind}", daemon=True)
        self.thread.start()
        return self

    def restart(self) -> None:
        """Run ``work()`` again in a new thread: it goes on from what the last one saved
        (collection from its shards, training from its resume state)."""
        if not self.active:
            self.stopping = threading.Event()
            self.idle_stopped = False
            self.status, self.error = "starting", ""
            self.start()

    def view(self):
        """A copy of what the page draws (runs that have one override this)."""
        raise NotImplementedError

    def wait(self, until, timeout: float = 5.0):
        """Poll ``view()`` until ``until(view)`` holds, time runs out or the thread ends;
        returns the last view (a page waits so for the answer to its own command)."""
        end = time.monotonic() + timeout
        v = self.view()
        while not until(v) and time.monotonic() < end and self.active:
            time.sleep(0.01)
            v = self.view()
        return v

    def touch(self) -> None:
        """Someone is watching (a page polled this run)."""
        self.last_seen = time.monotonic()

    def stop(self) -> None:
        self.stopping.set()

    @property
    def active(self) -> bool:
        return self.thread is not None and self.thread.is_alive()

    @property
    def eta(self) -> float | None:
        """Seconds left at the pace so far, or None before the first unit."""
        if self.done <= 0 or self.total <= self.done:
            return None
        return (time.monotonic() - self.started) * (self.total - self.done) / self.done

    def progress(self, done: int, total: int) -> None:
        """A callback for the work's own loops (``collect``, ``evaluate``)."""
        with self.lock:
            self.done, self.total = done, total

    def on_idle(self) -> None:
        """Nobody watches: stop at a checkpoint (default: stop)."""
        self.idle_stopped = True
        self.stop()

    # --- the thread ----------------------------------------------------------------
    def _main(self) -> None:
        with self.lock:
            self.status = "running"
        try:
            self.work()
            with self.lock:
                if self.status == "running":
                    self.status = "stopped" if self.stopping.is_set() else "finished"
        except Exception as e:  # a worker must report, not vanish
            log.exception("%s %s failed", self.kind, self.id)
            with self.lock:
                self.status, self.error = "error", f"{type(e).__name__}: {e}"

    def work(self) -> None:
        raise NotImplementedError


class Turns:
    """Compute taken in turns, first come first served, ``slots`` at a time.

    Every run of the server (each person's agent, a training run, an experiment) does its
    work in units (a step and its plan, an optimiser step, an episode's step); each unit
    takes a turn. With one slot each unit has torch's threads (both cores) to itself and
    no run can starve another: an agent on Run, a training run and four people pressing
    Step are served in the order they asked. Unbounded, five planners' OpenMP teams
    oversubscribed the two cores and a step waited behind whole bursts (issue 16).
    Tickets make it fair: a run that ends a turn and asks again queues behind the others
    (a plain lock or semaphore lets it barge straight back in).
    """

    def __init__(self, slots: int = 1) -> None:
        self.slots = slots
        self._cv = threading.Condition()
        self._issued = 0  # tickets handed out
        self._finished = 0  # turns ended

    @contextlib.contextmanager
    def take(self) -> Iterator[None]:
        with self._cv:
            ticket = self._issued
            self._issued += 1
            self._cv.wait_for(lambda: ticket < self._finished + self.slots)
        try:
            yield
        finally:
            with self._cv:
                self._finished += 1
                self._cv.notify_all()

    @property
    def waiting(self) -> int:
        """Turns asked for and not yet begun."""
        with self._cv:
            return max(0, self._issued - self._finished - self.slots)


class Registry:
    """Every run of this server process by id; thread-safe; reaps idle runs."""

    def __init__(
        self, idle_seconds: float = IDLE_SECONDS, forget_seconds: float = FORGET_SECONDS
    ) -> None:
        self.idle_seconds = idle_seconds
        self.forget_seconds = forget_seconds
        self._runs: dict[str, Run] = {}
        self._lock = threading.Lock()
        self.turns = Turns()
        self._reaper = threading.Thread(target=self._reap_forever, name="lab-reaper", daemon=True)
        self._reaper.start()

    def add(self, run: Run) -> Run:
        run.turns = self.turns
        with self._lock:
            self._runs[run.id] = run
        return run

    def get(self, run_id: str | None, kind: str | None = None) -> Run | None:
        """The run with this id (and kind), or None."""
        if not run_id:
            return None
        with self._lock:
            run = self._runs.get(run_id)
        if run is None or (kind is not None and run.kind != kind):
            return None
        return run

    def runs(self, kind: str | None = None) -> list[Run]:
        with self._lock:
            return [r for r in self._runs.values() if kind is None or r.kind == kind]

    def reap(self) -> None:
        """Idle runs stop at a checkpoint (once per idle spell); runs unwatched for
        ``forget_seconds`` are stopped for good and dropped."""
        now = time.monotonic()
        for run in self.runs():
            idle = now - run.last_seen
            if idle > self.forget_seconds:
                run.stop()
                if not run.active:
                    with self._lock:
                        self._runs.pop(run.id, None)
            elif idle > self.idle_seconds and run.active and run.idle_since != run.last_seen:
                log.info("run %s (%s) unwatched for %.0f s: stopping", run.id, run.kind, idle)
                run.idle_since = run.last_seen
                run.on_idle()

    def _reap_forever(self) -> None:
        while True:
            time.sleep(min(5.0, self.idle_seconds / 4))
            try:
                self.reap()
            except Exception:  # the reaper must outlive any one run's failure
                log.exception("reaping failed")
