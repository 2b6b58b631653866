"""The imagination step compiled (``torch.compile``, inductor), in the background.

A planner imagines N x H steps a plan: the predictor, then the probes its cost
reads, on every imagined latent. Written plainly (``WorldModel.rollout`` then
``WorldModel.probe``) that is a few small matrix products and SiLUs per step,
and their launches and passes over memory cost more than their arithmetic.
Inductor fuses them into generated loops (C++ on a CPU, Triton on a GPU).
``benchmarks/plan_speed.py``, ``benchmarks/compile_pays.py`` and ``./lab
gpu-check`` measure the compiled path against the plain one in one run.

How it is kept, in three parts:

* **Entries.** One ``Entry`` per (kind, batch size), each with one ``State``
  (pending, compiling, ready, failed). A kind is what one compile serves: the
  signals read, the horizon, the action size, the device, the dtype. Its
  entry of batch size ``None`` is its dynamic compile (any batch, asked for by
  the kind's first call and answered by the plain code until ready); an
  entry of a batch size N is what that size gets of its own once it is
  planned often: on a CPU a compile with N fixed (inductor's loops then know
  their bounds), on a GPU the kind's rollout at N captured as one CUDA graph
  and replayed (one launch instead of a hundred).
* **The rule** of when a batch size gets its own entry: ``specialise``, a
  pure function of the device, the size and how often it was planned.
* **The compiler**: one worker thread that takes the jobs in turn and ends when
  none is left, so compiling (10-30 s on 2 CPU cores) never stands in a plan's
  way. Inductor
  keeps what it made on disk (``CACHE``): a restart pays tracing (a few
  seconds), not the compile. Where compiling fails (no C++ compiler, no
  Triton) the plain code stays, and ``status`` says why.

It stays on a CPU too, for it pays there, if little: CEM at N = 1000, H = 16, 5
iterations on the Reach model, compiled and plain plans interleaved over 150
rounds on an idle 2-core machine, 29.9 against 32.0 ms (1.07x; 1.17x per round)
and 45.4 against 48.1 ms with a hard term (1.06x; 1.12x) (``./lab bench
compile_pays``, benchmarks/results/compile_pays.json). ``LAB_COMPILE=0`` turns it
off (the tests do, except the ones that test it).
"""

from __future__ import annotations

import atexit
import contextlib
import enum
import logging
import os
import queue
import threading
import time
import traceback
import types
import weakref
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch

log = logging.getLogger(__name__)

ENV = "LAB_COMPILE"
CACHE = Path(__file__).resolve().parents[1] / ".cache" / "inductor"
# On a CPU a batch size planned often gets a compile of its own, its shapes fixed:
# inductor's loops then know their bounds (N = 1000, H = 16: 0.9 of the time of the
# dynamic compile's pass, benchmarks/plan_speed.py)
STATIC_AFTER = 3  # calls of one batch size before it gets a compile of its own (CPU)
SIZED = 4  # at most so many batch sizes of a kind get one (CPU)
SIZED_MIN = 64  # smaller batches (a few repaired plans) stay with the dynamic compile
GRAPHS = 16  # on a GPU: CUDA graphs a kind keeps (batch sizes beyond run uncaptured)
EXIT_WAIT = 120.0  # s: at exit, how long the compile under way may take to finish


# --- on or off ---------------------------------------------------------------

_here = threading.local()  # off() in this thread only


def enabled() -> bool:
    return os.environ.get(ENV, "1") != "0" and not getattr(_here, "off", False)


@contextlib.contextmanager
def off():
    """The plain path for the calls inside, in this thread (benchmarks and tests compare
    the two; a lesson times two models alike while the server's other runs compile)."""
    before = getattr(_here, "off", False)
    _here.off = True
    try:
        yield
    finally:
        _here.off = before


def plain(model, names: tuple[str, ...], s0: torch.Tensor, actions: torch.Tensor):
    """The imagination uncompiled, safe beside the worker (``beside_compiles``)."""
    return beside_compiles(traced, model, names, s0, actions)


def traced(model, names: tuple[str, ...], s0: torch.Tensor, actions: torch.Tensor):
    """What is compiled: ``rollout`` then ``probe``, as the model writes them (each kind
    compiles its own copy of this function: ``_own_copy``)."""
    latents = model.rollout(s0, actions)
    return latents, model.probe(latents, names)


RETRIES = 1000  # a traced moment lasts microseconds; these many are never all hit


def beside_compiles(fn, *args):
    """``fn(*args)``, safe beside the worker. Inductor traces small functions with
    ``torch.fx.symbolic_trace`` while it compiles, and for that moment patches
    ``nn.Module.__call__`` for every thread: a module called from another thread then
    raises ``NameError: module is not installed as a submodule`` before it runs
    (``./lab bench safety_gym``'s first plans hit it). Nothing ran, so it runs again."""
    for _ in range(RETRIES):
        try:
            return fn(*args)
        except NameError as e:
            if "not installed as a submodule" not in str(e) or _worker is None:
                raise
            time.sleep(1e-4)
    return fn(*args)


# --- entries -----------------------------------------------------------------


class State(enum.Enum):
    PENDING = "pending"  # asked for: queued for the worker, or (a CUDA graph) for its capture
    COMPILING = "compiling"  # the worker is at it
    READY = "ready"
    FAILED = "failed"  # ``error`` says why; the plain path answers in its place


BUSY = (State.PENDING, State.COMPILING)


@dataclass
class Entry:
    """A kind at one batch size (None: any, the kind's dynamic compile): its one state,
    what answers once ready, ``fn(model, names, s0, actions)``, and how it went."""

    state: State = State.PENDING
    fn: Callable | None = None
    seconds: float = 0.0  # its compile's
    error: str = ""
    calls: int = 0  # plans' calls it answered
    weights: tuple = ()  # a CUDA graph: the weights' addresses it read (moved: captured anew)
    # the kind's entry (batch None) on a GPU: its graphs share one memory pool, so a replay
    # overwrites what another left; the lock lets one plan at a time replay them
    pool: object = None
    lock: threading.Lock = field(default_factory=threading.Lock)


@dataclass
class Book:
    """A model's entries, by (kind, batch size), and the calls each batch size has had
    of a kind before it got an entry of its own (what ``specialise`` reads)."""

    entries: dict[tuple, Entry] = field(default_factory=dict)
    seen: Counter = field(default_factory=Counter)

    def own(self, kind: tuple) -> int:
        """How many batch sizes of ``kind`` have an entry of their own."""
        return sum(1 for k, n in self.entries if k == kind and n is not None)


_books: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # model -> Book
_lock = threading.Lock()  # over the books and their entries' states


def _book(model) -> Book:
    return _books.setdefault(model, Book())


def specialise(device: str, n: int, seen: int, own: int) -> bool:
    """Whether batch size ``n`` of a kind, planned ``seen`` times, gets an entry of its own
    beside the ``own`` the kind has. On a GPU at once (a graph's capture takes a few ms),
    up to ``GRAPHS``; on a CPU a batch of ``SIZED_MIN`` rows or more once planned
    ``STATIC_AFTER`` times (a compile takes seconds: the repairs' odd sizes are not worth
    one), up to ``SIZED``."""
    if device == "cuda":
        return own < GRAPHS
    return n >= SIZED_MIN and seen >= STATIC_AFTER and own < SIZED


# --- the compiler: one worker thread -----------------------------------------


@dataclass
class Job:
    """A compile the worker is asked for: ``fn(*args)`` compiled and run once, the
    result ``entry``'s. Models and policies travel as weak references (a closed page
    does not wait for its compile); the worker drops a job whose owner is gone."""

    entry: Entry
    code_key: tuple  # the kinds that share one copy of ``fn`` (``_code``)
    fn: Callable
    args: tuple
    dynamic: bool  # dim 0 of the tensor arguments (the batch) dynamic


_jobs: queue.Queue = queue.Queue()
_worker: threading.Thread | None = None
_registered = False  # _stop registered to run at exit
_exiting = threading.Event()
_codes: dict[tuple, object] = {}  # kind -> its own copy of the function compiled


def _ask(job: Job) -> None:
    """(Under ``_lock``.) Queue ``job``, and start a worker unless one is at work. The
    worker ends when the queue is empty: a thread that ran compiled CPU kernels and lived
    on slowed every later torch call of the process about 2x (bare matrix products 127
    -> 47 GFLOP/s in ``./lab bench plan_speed --quick``), one that ends does not. A
    daemon, so an idle process exits at once; at exit ``_stop`` lets the compile under
    way finish (a thread killed inside one aborts the process: inductor's C++ threads)
    and drops the jobs still queued."""
    global _worker, _registered
    _jobs.put(job)
    if _worker is None:
        os.environ.setdefault("TORCHINDUCTOR_CACHE_DIR", str(CACHE))
        worker = threading.Thread(target=_work, name="lab-compile", daemon=True)
        try:
            worker.start()
        except RuntimeError as e:  # the interpreter is shutting down: no new threads
            job.entry.state, job.entry.error = State.FAILED, str(e)
            return
        _worker = worker
        if not _registered:
            atexit.register(_stop)  # after the main thread is done, before daemons die
            _registered = True


def _stop() -> None:
    _exiting.set()
    worker = _worker
    if worker is not None:
        worker.join(EXIT_WAIT)


def _work() -> None:
    global _worker
    while True:
        with _lock:  # _ask queues under the lock: no job is left without a worker
            if _jobs.empty() or _exiting.is_set():
                _worker = None
                return
            job = _jobs.get_nowait()
        if job is None:
            return
        try:
            _run(job)
        except Exception as e:  # whatever it was, the worker goes on to the next job
            _fail(job.entry, e)


def _run(job: Job) -> None:
    """Compile ``job`` and run it once (under inference mode, as it will be called); its
    entry ready or failed."""
    args = [a() if isinstance(a, weakref.ref) else a for a in job.args]
    if any(a is None for a in args):  # its model or policy is gone: so is the entry
        _forget(job.entry)
        return
    entry = job.entry
    entry.state = State.COMPILING
    t0 = time.perf_counter()
    try:
        # (not mode="reduce-overhead": its CUDA graphs, made in this thread, failed in
        # the planning one on an H200; _capture makes them there instead)
        fn = torch.compile(_code(job.code_key, job.fn), dynamic=None if job.dynamic else False)
        if job.dynamic:
            for a in args:
                if isinstance(a, torch.Tensor):
                    torch._dynamo.mark_dynamic(a, 0)
        with torch.inference_mode():
            fn(*args)
    except Exception as e:  # no compiler, no Triton, an op inductor cannot do
        _fail(entry, e)
    else:
        entry.fn = fn
        entry.state = State.READY  # after its fn: a plan reads the state first
    entry.seconds = time.perf_counter() - t0


def _forget(entry: Entry) -> None:
    """Take ``entry`` out of its book (a proposal's whose policy is gone: its model may
    live on, and ``wait`` would wait for it)."""
    with _lock:
        for book in _books.values():
            for key in [k for k, e in book.entries.items() if e is entry]:
                del book.entries[key]


def _code(key: tuple, fn):
    """The copy of ``fn`` that kinds of ``key`` share, whatever their model: dynamo's
    entries on it then serve a second model of the same shapes at once (an evaluation
    loads its model afresh), and their number stays bounded by the shapes seen."""
    with _lock:
        return _codes.setdefault(key, _own_copy(fn))


def _own_copy(fn):
    """A copy of ``fn`` with a code object of its own. Dynamo keeps its compiled entries
    on the code object, and a limited number of them (then falls back to plain Python
    without a word): each kind keeps its own (one dynamic, up to ``SIZED`` fixed)."""
    return types.FunctionType(
        fn.__code__.replace(), fn.__globals__, fn.__name__, fn.__defaults__, fn.__closure__
    )


def _fail(entry: Entry, e: Exception) -> None:
    where = traceback.extract_tb(e.__traceback__)[-1] if e.__traceback__ else None
    at = f" ({Path(where.filename).name}:{where.lineno})" if where else ""
    entry.error = f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}{at}"
    entry.state = State.FAILED
    if not _exiting.is_set():  # at exit inductor refuses new work: no news
        log.warning("imagination stays uncompiled: %s", entry.error)


# --- what planners call ------------------------------------------------------


def _key(names, s0: torch.Tensor, actions: torch.Tensor) -> tuple:
    return tuple(names), actions.shape[1], actions.shape[2], str(s0.device), s0.dtype


def _usable(model, s0: torch.Tensor) -> bool:
    # the compiled graphs are made for planning: inference mode, an evaluated model,
    # a batch of at least two (dynamo specialises sizes 0 and 1)
    return (
        enabled() and torch.is_inference_mode_enabled() and not model.training and s0.shape[0] >= 2
    )


def imagine(model, s0: torch.Tensor, actions: torch.Tensor, names):
    """The compiled ``plain(model, names, s0, actions)``, or None while it is not ready
    (the first such call asks for the compile) or cannot be used here."""
    if not _usable(model, s0):
        return None
    kind, n, device = _key(names, s0, actions), s0.shape[0], s0.device.type
    with _lock:
        book = _book(model)
        main = book.entries.get((kind, None))
        if main is None:
            main = book.entries[kind, None] = Entry()
            args = (weakref.ref(model), kind[0], s0[:2].clone(), actions[:2].clone())
            _ask(Job(main, kind, traced, args, dynamic=True))
            return None
        if main.state is not State.READY:
            return None
        own = book.entries.get((kind, n))
        if own is None:
            book.seen[kind, n] += 1
            if specialise(device, n, book.seen[kind, n], book.own(kind)):
                own = book.entries[kind, n] = Entry()
                if device != "cuda":  # (a graph is captured below, in this thread)
                    args = (weakref.ref(model), kind[0], s0.clone(), actions.clone())
                    _ask(Job(own, kind, traced, args, dynamic=False))
    # as compiled: contiguous inference tensors (a planner's s0 is one latent expanded
    # to N rows, stride 0; its samples are made outside inference mode): each differs
    # in what dynamo checks, and a mismatch would compile again, here, on the plan's path
    s0, actions = (x.clone(memory_format=torch.contiguous_format) for x in (s0, actions))
    if device == "cuda":
        with main.lock:
            return _replay(main, own, model, kind[0], s0, actions)
    entry = own if own is not None and own.state is State.READY else main
    return _call(entry, model, kind[0], s0, actions)


def _call(entry: Entry, *args):
    try:
        out = entry.fn(*args)
    except Exception as e:  # never a plan lost to the compiled path: the plain one answers
        _fail(entry, e)
        return None
    entry.calls += 1
    return out


def _replay(main: Entry, own: Entry | None, model, names, s0, actions):
    """On a GPU (under ``main.lock``): this batch size's graph, captured on its first call
    here, replayed after; beyond ``GRAPHS`` sizes the dynamic compile uncaptured; None
    where its capture failed (the plain path, for this size only)."""
    if own is None:
        return _call(main, model, names, s0, actions)
    weights = tuple(p.data_ptr() for p in model.parameters())
    if own.state is State.READY and own.weights != weights:  # moved: captured anew
        own.state = State.PENDING
    if own.state is State.PENDING:
        _capture(main, own, model, names, s0, actions, weights)
    if own.state is not State.READY:
        return None
    return _call(own, model, names, s0, actions)


def _capture(main: Entry, own: Entry, model, names, s0, actions, weights) -> None:
    """The kind's compiled rollout at this batch size as one CUDA graph, ``own``'s. In the
    thread that plans, not the one that compiled: each thread has its own capture state."""
    t0 = time.perf_counter()
    try:
        inputs = (s0.clone(), actions.clone())  # the graph reads these, always
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):  # warm-up (cuBLAS workspaces, Triton's first launch)
            for _ in range(2):
                main.fn(model, names, *inputs)
        torch.cuda.current_stream().wait_stream(side)
        if main.pool is None:
            main.pool = torch.cuda.graph_pool_handle()  # the kind's graphs replay in turn
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph, pool=main.pool, capture_error_mode="thread_local"):
            latents, signals = main.fn(model, names, *inputs)
    except Exception as e:  # out of memory at N = 100 000, say
        own.error, own.state = f"{type(e).__name__}: {e}", State.FAILED
        log.warning("no CUDA graph for %d rows: %s", s0.shape[0], own.error)
        return

    def replay(_model, _names, s0: torch.Tensor, actions: torch.Tensor):
        inputs[0].copy_(s0)
        inputs[1].copy_(actions)
        graph.replay()
        # its outputs are overwritten by the next replay: copies leave
        return latents.clone(), {k: v.clone() for k, v in signals.items()}

    own.fn, own.weights, own.seconds = replay, weights, time.perf_counter() - t0
    own.state = State.READY


def proposal(fn, policy, model, s0: torch.Tensor, goal: torch.Tensor, steps: int):
    """A policy acted out in the model, ``fn(policy, model, s0, goal, steps)`` (System 1's
    proposal, batch 1: 16 steps of small products whose launches cost more than their
    arithmetic), compiled like the imagination; None until ready (the plain loop answers).
    Its output is a plain tensor: the planner may write into it."""
    if not enabled() or model.training or policy.training or s0.shape[0] != 1:
        return None
    kind = (("policy proposal",), steps, goal.shape[-1], str(s0.device), s0.dtype, id(policy))
    with _lock:
        book = _book(model)
        entry = book.entries.get((kind, None))
        if entry is None:
            entry = book.entries[kind, None] = Entry()
            args = (weakref.ref(policy), weakref.ref(model), s0.clone(), goal.clone(), steps)
            # one copy of ``fn`` for any policy of these shapes (the kind without its id)
            _ask(Job(entry, kind[:-1], fn, args, dynamic=False))
            return None
    if entry.state is not State.READY:
        return None
    with torch.inference_mode():
        out = _call(entry, policy, model, s0.clone(), goal.clone(), steps)
    return None if out is None else out.clone()  # outside inference mode: an ordinary tensor


# --- what the page and the benchmarks read -----------------------------------


def status(model) -> list[dict]:
    """Each kind asked for ``model``: signals, horizon, device, state (its dynamic
    compile's), seconds, calls (all its entries'), error, ``sizes`` (the batch sizes
    with an entry of their own ready) and ``sizing`` (one of them still busy)."""
    with _lock:
        try:
            book = _books.get(model)
        except TypeError:  # not a model of ours (unhashable, no weak references)
            book = None
        entries = dict(book.entries) if book is not None else {}
    rows = []
    for (kind, n), main in entries.items():
        if n is not None:
            continue
        own = {m: e for (k, m), e in entries.items() if k == kind and m is not None}
        rows.append(
            dict(
                signals=list(kind[0]),
                horizon=kind[1],
                device=kind[3],
                state=main.state.value,
                seconds=round(main.seconds, 1),
                error=main.error,
                calls=main.calls + sum(e.calls for e in own.values()),
                sizes=sorted(m for m, e in own.items() if e.state is State.READY),
                sizing=any(e.state in BUSY for e in own.values()),
            )
        )
    return rows


def label(model) -> str:
    """A few words on how ``model`` imagines now, for the page ("" where nothing was
    asked: the oracle, the policy alone)."""
    if getattr(model, "imagine", None) is None:  # the oracle steps a simulator
        return ""
    if not enabled():
        why = f" ({ENV}=0)" if os.environ.get(ENV, "1") == "0" else ""
        return f"imagination uncompiled{why}"
    kinds = status(model)
    if not kinds:
        return ""
    failed = [k["error"] for k in kinds if k["state"] == State.FAILED.value]
    if failed:
        return f"imagination uncompiled ({failed[0]})"
    if any(k["state"] != State.READY.value for k in kinds):
        return "imagination compiling (plain until then)"
    return "imagination compiled"


def _busy(model=None) -> bool:
    """Whether an entry of ``model`` (None: of any model) is pending or compiling."""
    with _lock:
        books = list(_books.values()) if model is None else [_books.get(model) or Book()]
        return any(e.state in BUSY for b in books for e in b.entries.values())


def settle(timeout: float = 600.0) -> None:
    """Block until no compile is under way or asked for, whatever the model (benchmarks
    that load their models afresh: time them after their kinds are compiled)."""
    end = time.monotonic() + timeout
    while _busy() and time.monotonic() < end:
        time.sleep(0.1)


def wait(model, timeout: float = 600.0) -> list[dict]:
    """Block until no entry of ``model`` is pending or compiling (benchmarks, tests); its
    status."""
    end = time.monotonic() + timeout
    while _busy(model) and time.monotonic() < end:
        time.sleep(0.1)
    return status(model)
