"""Where a Plan page's agent computes: its run's thread, a process of its own, or Ray.

A class of 30 on one server is 30 agents planning. In the web process's threads
they take turns on one interpreter lock: a plan is many small torch calls, and
Python's share of them serialises (twenty students on Run were served 9.8 steps a
second between them from the server's threads, against 23.1 for one alone; from
processes 30.1 against 30.0: ``./lab bench class_load``, 2 cores). So on a CPU each
session's ``PlanSession`` lives in a process of its own (``ProcessHost``), forked
from a fork server that imported torch and PyBullet once, one started ahead
(``Spares``) so a new page does not wait; with
Ray it lives in an actor (``RayHost``) on any machine of a cluster, and the web
process only draws. On a GPU the sessions stay in the server's threads, where
they share one copy of each world model and their imagination calls are
batched into one (``worldmodels.batching``).

How many sessions compute at once (the server's ``Turns``): the cores divided by
the threads a plan uses best, ``THREADS_PER_PLAN``; the cluster's CPUs on Ray;
one on a CPU in threads (the lock); ``GPU_SLOTS`` on a GPU (the batcher merges
their calls).

    placement = serving(device)          # what this machine does best
    host = placement.open()              # a Host: start(...), handle(...), close()
"""

from __future__ import annotations

import contextlib
import functools
import logging
import multiprocessing as mp
import os
import signal
import threading
from dataclasses import dataclass, field
from typing import Protocol

import torch

from agents.cost import CostSet
from app.plansession import PlanSession, PlanSettings, Update
from common.errors import LabError
from experiments import fanout
from worldmodels import compiled
from worldmodels.batching import Shared

log = logging.getLogger(__name__)

# Torch threads a plan uses best: plans per second per core were highest at one
# thread on 2 cores (the Plan page's default search on Reach: 12.0 ms at one thread,
# 8.8 at two, so 83.1 plans a second per core against 56.6; ``./lab bench class_load``,
# ``plan_threads``)
THREADS_PER_PLAN = 1
GPU_SLOTS = 32  # sessions planning at once on one GPU: the batcher merges their calls
SPARES = 1  # processes kept started ahead of the next session
PLACEMENTS = ("thread", "process", "ray")


class Host(Protocol):
    """A ``PlanSession`` somewhere: the same calls wherever it is."""

    def ready(self) -> None: ...  # waits until it can take commands (a Ray actor starting)

    def start(self, settings: PlanSettings, costs: CostSet, device: torch.device) -> Update: ...

    def handle(self, name: str, args: tuple = ()) -> Update: ...

    def close(self) -> None: ...


class ThreadHost:
    """The session in the calling thread (one process; a GPU's sessions share models)."""

    def __init__(self, share=None) -> None:
        self.share = share  # worldmodels.batching.Shared: one model a checkpoint, batched
        self.session: PlanSession | None = None

    def ready(self) -> None:
        pass

    def start(self, settings: PlanSettings, costs: CostSet, device: torch.device) -> Update:
        self.session = PlanSession(settings, costs, device, share=self.share)
        return self.session.start()

    def handle(self, name: str, args: tuple = ()) -> Update:
        return self.session.handle(name, args)

    def close(self) -> None:
        if self.session is not None:
            self.session.close()


def _answer(call) -> tuple[str, object]:
    """A call's result as plain data that crosses a pipe or Ray: ("ok", value), ("lab",
    message) for a LabError (said to the person), ("error", message) for a fault."""
    try:
        return "ok", call()
    except LabError as e:
        return "lab", str(e)
    except Exception as e:  # a worker must report, not vanish
        log.exception("a plan session failed")
        return "error", f"{type(e).__name__}: {e}"


def _result(answer: tuple[str, object]):
    kind, value = answer
    if kind == "ok":
        return value
    if kind == "lab":
        raise LabError(value)
    raise RuntimeError(value)


def _worker(threads: int) -> None:
    """A session's own process (or Ray worker): ``threads`` torch threads, and the
    imagination not compiled unless LAB_COMPILE says so: each process would trace it again
    (seconds of a core, beside the class's plans) for 1.07x on a CPU (worldmodels.compiled),
    and with it on, one student on Run was served 13.2 steps/s, 37.3 with it off (27.0 in
    the server's threads; ``./lab bench class_load --quick``, 2 cores)."""
    torch.set_num_threads(threads)
    os.environ.setdefault(compiled.ENV, "0")


def _serve(conn, threads: int) -> None:
    """A session process's main: commands from the pipe, answers back, until closed."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the server's: it closes us
    _worker(threads)
    session: PlanSession | None = None
    try:
        while True:
            try:
                method, args = conn.recv()
            except (EOFError, OSError):  # the server is gone
                break
            if method == "close":
                break
            if method == "start":
                session = PlanSession(*args)
                conn.send(_answer(session.start))
            else:
                conn.send(_answer(functools.partial(session.handle, *args)))
    finally:
        if session is not None:
            session.close()


def _context():
    """Where session processes come from: a fork server that imported torch, PyBullet and
    the agent once, so a new session is a fork of it (20 students arriving together waited
    up to 40 s for their spawned processes to import all that on 2 cores:
    ``./lab bench class_load``), never a fork of the threaded web server itself.
    Spawned where there is no fork server (Windows)."""
    if "forkserver" not in mp.get_all_start_methods():
        return mp.get_context("spawn")
    ctx = mp.get_context("forkserver")
    ctx.set_forkserver_preload(["app.hosts"])
    return ctx


class ProcessHost:
    """The session in a process of its own (``_serve``), over a pipe."""

    def __init__(self, threads: int = THREADS_PER_PLAN) -> None:
        ctx = _context()
        self.conn, child = ctx.Pipe()
        self.proc = ctx.Process(target=_serve, args=(child, threads), name="lab-plan", daemon=True)
        self.proc.start()
        child.close()
        self._lock = threading.Lock()

    @property
    def alive(self) -> bool:
        return self.proc.is_alive()

    def ready(self) -> None:
        pass

    def _call(self, method: str, *args):
        with self._lock:
            try:
                self.conn.send((method, args))
                # a long plan may take its time; a process that died is said at once
                while not self.conn.poll(0.5):
                    if not self.proc.is_alive():
                        raise EOFError
                answer = self.conn.recv()
            except (EOFError, OSError) as e:
                self.proc.join(1)
                raise LabError(
                    f"the agent's process ended (exit code {self.proc.exitcode}): "
                    "start it again (the server's log says why)"
                ) from e
        return _result(answer)

    def start(self, settings: PlanSettings, costs: CostSet, device: torch.device) -> Update:
        return self._call("start", settings, costs, device)

    def handle(self, name: str, args: tuple = ()) -> Update:
        return self._call("handle", name, args)

    def close(self) -> None:
        with contextlib.suppress(OSError, ValueError):
            self.conn.send(("close", ()))
        self.proc.join(5)
        if self.proc.is_alive():
            self.proc.terminate()
            self.proc.join(5)
        self.conn.close()


class Spares:
    """Session processes started ahead: a new session takes one (even forked from the
    fork server, a process takes a moment) and another starts behind it."""

    def __init__(self, keep: int = SPARES, threads: int = THREADS_PER_PLAN) -> None:
        self.keep, self.threads = keep, threads
        self._ready: list[ProcessHost] = []
        self._lock = threading.Lock()
        self._filling = False

    def take(self) -> ProcessHost:
        host = None
        with self._lock:
            while self._ready and host is None:
                host = self._ready.pop(0)
                if not host.alive:
                    host.close()
                    host = None
        self.fill()
        return host or ProcessHost(self.threads)

    def close(self) -> None:
        """End the spares (a server shutting down, a test done)."""
        self.keep = 0
        with self._lock:
            ready, self._ready = self._ready, []
        for host in ready:
            host.close()

    def fill(self) -> None:
        """Start processes in the background until ``keep`` are ready."""
        with self._lock:
            if self._filling or len(self._ready) >= self.keep:
                return
            self._filling = True
        threading.Thread(target=self._fill, name="lab-spares", daemon=True).start()

    def _fill(self) -> None:
        try:
            while True:
                with self._lock:
                    if len(self._ready) >= self.keep:
                        return
                host = ProcessHost(self.threads)
                with self._lock:
                    self._ready.append(host)
        finally:
            with self._lock:
                self._filling = False


class _RaySession:
    """A Ray actor holding one ``PlanSession`` (answers as plain data: ``_answer``)."""

    def __init__(self, threads: int) -> None:
        _worker(threads)
        self.session: PlanSession | None = None

    def ping(self) -> bool:
        return True

    def start(self, settings, costs, device):
        def go():
            self.session = PlanSession(settings, costs, device)
            return self.session.start()

        return _answer(go)

    def handle(self, name, args):
        return _answer(lambda: self.session.handle(name, args))

    def close(self) -> None:
        if self.session is not None:
            self.session.close()


@functools.cache
def _ray_session(ray):
    """The actor class, made once: no CPU reserved for an actor's life (a class of 30
    would wait for 30 free cores; the server's turns let as many plan at once as the
    cluster has cores), and the actors spread over the cluster's machines."""
    return ray.remote(num_cpus=0, scheduling_strategy="SPREAD")(_RaySession)


class RayHost:
    """The session in a Ray actor on a machine of the cluster; it plans on that machine's
    CPU with ``THREADS_PER_PLAN`` threads."""

    def __init__(self, address: str) -> None:
        self.ray = fanout.connect(address)  # Ray is imported there, only when asked for
        self.actor = _ray_session(self.ray).remote(THREADS_PER_PLAN)

    def ready(self) -> None:
        """Wait for the actor's worker process (a fresh interpreter: seconds)."""
        self._call_raw("ping")

    def _call_raw(self, method: str, *args):
        try:
            return self.ray.get(getattr(self.actor, method).remote(*args))
        except self.ray.exceptions.RayError as e:
            raise LabError(f"the agent's Ray actor failed: {e}") from e

    def _call(self, method: str, *args):
        return _result(self._call_raw(method, *args))

    def start(self, settings: PlanSettings, costs: CostSet, device: torch.device) -> Update:
        return self._call("start", settings, costs, torch.device("cpu"))

    def handle(self, name: str, args: tuple = ()) -> Update:
        return self._call("handle", name, args)

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.ray.get(self.actor.close.remote(), timeout=10)
        with contextlib.suppress(Exception):
            self.ray.kill(self.actor)


@dataclass
class Placement:
    """Where a server's sessions compute: ``kind`` one of PLACEMENTS; ``address`` Ray's."""

    kind: str = "thread"
    address: str = ""
    spares: Spares | None = field(default=None, repr=False)
    share: object = field(default=None, repr=False)  # worldmodels.batching.Shared (GPU)
    problem: str = ""  # why the placement asked for is not the one in use (shown on Plan)

    def __post_init__(self) -> None:
        if self.kind not in PLACEMENTS:
            raise LabError(f"placement {self.kind!r}: one of {', '.join(PLACEMENTS)}")
        if self.kind == "ray" and not self.address:
            raise LabError("Ray needs an address: local, HEAD:6379 or ray://HEAD:10001")
        if self.kind == "process" and self.spares is None:
            self.spares = Spares()

    def open(self) -> Host:
        if self.kind == "process":
            return self.spares.take()
        if self.kind == "ray":
            return RayHost(self.address)
        return ThreadHost(self.share)

    def close(self) -> None:
        """End the processes started ahead (a server shutting down, a test done)."""
        if self.spares is not None:
            self.spares.close()

    def label(self) -> str:
        """Where, in words (the Plan page's caption)."""
        return {
            "process": "in a process of its own",
            "ray": f"in a Ray actor at {self.address}",
            "thread": "imagination batched with the class's" if self.share else "in the server",
        }[self.kind]

    def slots(self) -> int:
        """How many sessions compute at once (the module docstring)."""
        if self.kind == "process":
            return max(1, cores() // THREADS_PER_PLAN)
        if self.kind == "ray":
            return fanout.workers(fanout.connect(self.address))
        return GPU_SLOTS if self.share is not None else 1


def serving(device: torch.device, ray: str = "", placement: str = "") -> Placement:
    """What a server does best here: Ray when given an address; on a GPU the server's
    threads with shared, batched models; on a CPU of more than one core, processes.
    ``placement`` (``LAB_PLACEMENT``) overrides the choice."""
    kind = placement or ("ray" if ray else "thread" if device.type == "cuda" else "process")
    if kind == "process" and cores() < 2:
        kind = "thread"
    share = None
    if kind == "thread" and device.type == "cuda":
        share = Shared()
    place = Placement(kind, ray, share=share)
    if place.spares is not None:
        place.spares.fill()  # the first student need not wait for a process either
    return place


def cores() -> int:
    """The cores this process may run on (a container's share, not the machine's)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
