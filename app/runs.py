"""Long work owned by the server process: worker threads found again by a run id.

Streamlit reruns a page script on every click and forgets everything a
closed tab had (docs/pitfalls.md, Streamlit: threads). So collection, training, episodes and
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
WATCHED_SECONDS = 5.0  # a page that polled this recently is drawing


class Eta:
    """Seconds left in work done in parts of counted units (designs of episodes, a
    lesson's stages), from the times units finished.

    Each part has its own pace: a design that plans with hard terms and a margin can
    take many times as long per episode as one that does not, so the units left of the
    part under way go at that part's pace, measured from its own finished units. A part
    not yet begun is guessed at the mean pace per unit of weight of the parts measured
    so far, times its ``weights`` entry (its relative cost per unit). Without weights
    the part under way is not guessed: until one of its units finishes the time left is
    None (in a run of two designs the second took 9 times as long per episode as the
    first, and the first's pace said 2 s for 18 s). Between finished units the estimate
    counts down with the clock: it never grows because time passes (``elapsed x left /
    done`` rose by a second every second while one long unit ran). Once it has counted
    down to nothing with work left, it is None (unknown) until the next unit ends.
    """

    def __init__(
        self,
        parts: list[int],
        weights: list[float] | None = None,
        done: int = 0,
        clock=time.monotonic,
    ) -> None:
        """``parts``: units in each part, in order; ``done``: units already finished
        before this estimate began (work resumed from a checkpoint: not timed)."""
        self.parts = [max(0, int(n)) for n in parts]
        self.known = weights is not None  # relative costs given, not assumed equal
        self.weights = [float(w) for w in weights] if weights else [1.0] * len(self.parts)
        if len(self.weights) != len(self.parts):
            raise ValueError("one weight per part")
        self.total = sum(self.parts)
        self.clock = clock
        self.done = min(max(0, int(done)), self.total)
        self.first = [0] * len(self.parts)  # units of each part done before the timing
        self.start: dict[int, float] = {}  # part -> when its first timed unit began
        self.last: dict[int, float] = {}  # part -> when its last unit finished
        now = clock()
        for i, (lo, n) in enumerate(self._spans()):
            self.first[i] = min(max(self.done - lo, 0), n)
            if self.first[i] < n and i not in self.start and self.done >= lo:
                self.start[i] = now
        self.left: float | None = None  # seconds left when the last unit finished ...
        self.at = now  # ... at this time

    def _spans(self) -> list[tuple[int, int]]:
        out, lo = [], 0
        for n in self.parts:
            out.append((lo, n))
            lo += n
        return out

    def update(self, done: int) -> None:
        """``done`` units of ``total`` are finished now (ignored unless it moved on)."""
        done = min(int(done), self.total)
        if done <= self.done:
            return
        now = self.clock()
        for i, (lo, n) in enumerate(self._spans()):
            before = min(max(self.done - lo, 0), n)
            after = min(max(done - lo, 0), n)
            if after > before and i in self.start:
                self.last[i] = now
            elif after > before:  # it began within this jump: its units are not timed
                self.first[i] = after
            if i not in self.start and lo <= done and after < n:
                self.start[i] = now  # the part under way begins as the last one ends
        self.done, self.at = done, now
        self.left = self._left()

    def _pace(self, i: int) -> float | None:
        """Seconds per unit of weight of part ``i``, from its own timed units."""
        lo, n = self._spans()[i]
        timed = min(self.done - lo, n) - self.first[i]
        if timed <= 0 or i not in self.start or i not in self.last:
            return None
        return (self.last[i] - self.start[i]) / timed / self.weights[i]

    def _left(self) -> float | None:
        paces = [p for i in range(len(self.parts)) if (p := self._pace(i)) is not None]
        guess = sum(paces) / len(paces) if paces else None
        left = 0.0
        for i, (lo, n) in enumerate(self._spans()):
            units = n - min(max(self.done - lo, 0), n)
            if units == 0:
                continue
            pace = self._pace(i)
            if pace is None and lo <= self.done and not self.known:  # under way: no guess
                return None
            pace = guess if pace is None else pace
            if pace is None:
                return None
            left += pace * self.weights[i] * units
        return left

    @property
    def under_way(self) -> int | None:
        """The index of the part being worked on, None when all are done."""
        for i, (lo, n) in enumerate(self._spans()):
            if lo <= self.done < lo + n:
                return i
        return None

    def seconds(self) -> float | None:
        """Seconds left now, or None when unknown (nothing measured, or overdue)."""
        if self.done >= self.total or self.left is None:
            return None
        left = self.left - (self.clock() - self.at)
        return left if left > 0 else None


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
        # units per part of the work and their relative cost, for the time left (Eta);
        # None: one part of ``total`` equal units (a new part whenever total changes)
        self.parts: list[int] | None = None
        self.weights: list[float] | None = None
        self.clock = time.monotonic  # what the estimates read the time from
        self.pace = Eta([0])

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
        """Seconds left (``Eta``: each part at its own pace, counting down between
        units), or None while unknown."""
        with self.lock:
            return self.pace.seconds()

    def _new_pace(self, done: int, total: int) -> Eta:
        if self.parts is not None and sum(self.parts) == total:
            return Eta(self.parts, self.weights, done, self.clock)
        return Eta([total], None, done, self.clock)

    def progress(self, done: int, total: int) -> None:
        """A callback for the work's own loops (``collect``, ``evaluate``). A new total,
        or a count that went back, starts a new estimate (a lesson's next stage)."""
        with self.lock:
            if total != self.pace.total or done < self.pace.done:
                self.pace = self._new_pace(done, total)  # what is done already: not timed
            self.done, self.total = done, total
            self.pace.update(done)

    def on_idle(self) -> None:
        """Nobody watches: stop at a checkpoint (default: stop)."""
        self.idle_stopped = True
        self.stop()

    # --- the thread ----------------------------------------------------------------
    def _main(self) -> None:
        with self.lock:
            self.status = "running"
            # timed from now: what an earlier thread finished (a resumed run) is not
            self.pace = self._new_pace(self.done, self.total)
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
    """Compute taken in turns, first come first served, ``slots`` at a time (one, or as
    many as the server's placement computes at once: ``app.hosts``).

    Every run of the server (each person's agent, a training run, an experiment) does its
    work in units (a step and its plan, an optimiser step, an episode's step); each unit
    takes a turn. With one slot each unit has torch's threads (both cores) to itself and
    no run can starve another: an agent on Run, a training run and four people pressing
    Step are served in the order they asked. Unbounded, five planners' OpenMP teams
    oversubscribed the two cores and a step waited behind whole bursts (five people
    stepping on one server: benchmarks/app_load.py).
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


class DrawPace:
    """How often a Plan page whose agent runs redraws: every ``LEVELS[0]`` s, or slower
    when the server's pages together would spend more than ``DRAW_CORES`` of its cores
    drawing (a page's redraw costs it ``seconds()`` of CPU, measured as pages draw).
    With twenty agents on Run on 2 cores, the pages' redraws every 0.6 s kept the web
    process 0.8 cores busy, and the agents were served less than one agent alone
    (``./lab bench class_load``): drawing is what a person sees, serving is what the
    agent does; a class's redraws slow down so that its agents are served. Intervals
    come in a few levels: a new one redraws the whole page."""

    LEVELS = (0.6, 1.0, 1.5, 2.5, 4.0)
    DRAW_CORES = 0.5

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._cost: float | None = None  # CPU seconds a redraw takes (moving average)

    def drew(self, cpu_seconds: float) -> None:
        with self._lock:
            c = self._cost
            self._cost = cpu_seconds if c is None else 0.9 * c + 0.1 * cpu_seconds

    def seconds(self) -> float:
        with self._lock:
            return self._cost or 0.0

    def interval(self, pages: int) -> float:
        """The redraw interval for ``pages`` running pages drawing at once."""
        need = pages * self.seconds() / self.DRAW_CORES
        return next((s for s in self.LEVELS if s >= need), self.LEVELS[-1])


class Registry:
    """Every run of this server process by id; thread-safe; reaps idle runs."""

    def __init__(
        self,
        idle_seconds: float = IDLE_SECONDS,
        forget_seconds: float = FORGET_SECONDS,
        slots: int = 1,
        placement=None,
    ) -> None:
        """``slots``: units of work at once (``Turns``); ``placement``: where the Plan
        page's agents compute (``app.hosts.Placement``; None: in their runs' threads)."""
        self.idle_seconds = idle_seconds
        self.forget_seconds = forget_seconds
        self._runs: dict[str, Run] = {}
        self._lock = threading.Lock()
        self.turns = Turns(slots)
        self.placement = placement
        self.drawing = DrawPace()
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

    def redraw(self, run: Run) -> float:
        """Seconds between redraws of ``run``'s page while its agent runs (``DrawPace``),
        counting the running runs someone watched in the last few seconds."""
        now = time.monotonic()
        pages = sum(
            1
            for r in self.runs(run.kind)
            if getattr(r, "running", False) and now - r.last_seen < WATCHED_SECONDS
        )
        return self.drawing.interval(max(1, pages))

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
