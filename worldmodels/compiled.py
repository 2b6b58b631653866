"""The imagination step compiled (``torch.compile``, inductor), in the background.

A planner imagines N x H steps a plan: the predictor, then the probes its cost
reads, on every imagined latent. Written plainly (``WorldModel.rollout`` then
``WorldModel.probe``) that is a few small matrix products and SiLUs per step,
and their launches and passes over memory cost more than their arithmetic.
Inductor fuses them into generated loops (C++ on a CPU, Triton on a GPU); on a
GPU each batch size's whole rollout is also captured once as a CUDA graph and
replayed (one launch instead of a hundred). ``benchmarks/plan_speed.py`` and
``./lab gpu-check`` measure both paths in one run.

Compiling takes 10-30 s on 2 CPU cores, so it never stands in a plan's way:
the first call of a kind (its signals, horizon, device) asks a background
thread to compile it and is answered by the plain code; calls after the
compile use the compiled one. The batch size is dynamic (one compile serves
the N samples, the repaired copies and any other batch). Inductor keeps what
it made on disk (``CACHE``), so a restart pays tracing (a few seconds), not
the compile. Where compiling fails (no C++ compiler, no Triton) the plain code
stays, and ``status`` says why.

``LAB_COMPILE=0`` turns it off (the tests do, except the one that tests it).
"""

from __future__ import annotations

import contextlib
import logging
import os
import queue
import threading
import time
import traceback
import types
import weakref
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
SIZED = 4  # at most so many batch sizes of a kind get one
SIZED_MIN = 64  # smaller batches (a few repaired plans) stay with the dynamic compile
GRAPHS = 16  # on a GPU: CUDA graphs a kind keeps (batch sizes beyond run uncaptured)


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
    """What is compiled: ``rollout`` then ``probe``, as the model writes them."""
    latents = model.rollout(s0, actions)
    return latents, model.probe(latents, names)


@dataclass
class Kind:
    """One compiled imagination: its state, and how long it took."""

    state: str = "compiling"  # compiling | ready | failed
    fn: object = None
    seconds: float = 0.0
    error: str = ""
    calls: int = 0  # plans' calls it answered
    seen: dict = field(default_factory=dict)  # batch size -> calls of it
    sized: dict = field(default_factory=dict)  # on a CPU: batch size -> its own compile
    graphs: dict = field(default_factory=dict)  # on a GPU: batch size -> captured graph
    pool: object = None  # on a GPU: the memory pool its graphs share
    lock: threading.Lock = field(default_factory=threading.Lock)  # its graphs' buffers


@dataclass
class Job:
    """A compile the worker is asked for: ``fn(*args)`` compiled and run once. Models
    and policies travel as weak references (a closed page does not wait for its
    compile); the worker drops a job whose owner is gone."""

    kind: Kind
    code_key: tuple  # the kinds that share one copy of ``fn`` (``_code``)
    fn: Callable
    args: tuple
    dynamic: bool  # dim 0 of the tensor arguments (the batch) dynamic
    size: int | None = None  # a batch size's own compile (CPU); None: the kind's


_models: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # model -> {key: Kind}
_lock = threading.Lock()
_jobs: queue.Queue = queue.Queue()
_worker: threading.Thread | None = None
_exiting: threading.Event | None = None
_codes: dict[tuple, object] = {}  # kind key -> its own copy of the function compiled


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
    key = _key(names, s0, actions)
    args = (weakref.ref(model), key[0])
    with _lock:
        kind = _models.setdefault(model, {}).get(key)
        if kind is None:
            kind = _models[model][key] = Kind()
            _ask(Job(kind, key, plain, (*args, s0[:2].clone(), actions[:2].clone()), True))
            return None
        n = s0.shape[0]
        kind.seen[n] = kind.seen.get(n, 0) + 1
        if (s0.device.type == "cpu" and kind.state == "ready" and n not in kind.sized
                and n >= SIZED_MIN and kind.seen[n] >= STATIC_AFTER
                and len(kind.sized) < SIZED):  # fmt: skip
            kind.sized[n] = None  # asked for
            _ask(Job(kind, key, plain, (*args, s0.clone(), actions.clone()), False, size=n))
    if kind.state != "ready":
        return None
    # as compiled: contiguous inference tensors (a planner's s0 is one latent expanded
    # to N rows, stride 0; its samples are made outside inference mode): each differs
    # in what dynamo checks, and a mismatch would compile again, here, on the plan's path
    s0, actions = (x.clone(memory_format=torch.contiguous_format) for x in (s0, actions))
    try:
        if s0.device.type == "cuda":
            with kind.lock:  # one set of graph buffers: one plan at a time reads them
                out = _replay(kind, model, key[0], s0, actions)
            if out is None:
                return None
        else:
            out = (kind.sized.get(s0.shape[0]) or kind.fn)(model, key[0], s0, actions)
            # (None: asked for, False: failed; the dynamic compile serves both)
    except Exception as e:  # never a plan lost to the compiled path: the plain one answers
        _fail(kind, e)
        return None
    kind.calls += 1
    return out


def proposal(fn, policy, model, s0: torch.Tensor, goal: torch.Tensor, steps: int):
    """A policy acted out in the model, ``fn(policy, model, s0, goal, steps)`` (System 1's
    proposal, batch 1: 16 steps of small products whose launches cost more than their
    arithmetic), compiled like the imagination; None until ready (the plain loop answers).
    Its output is a plain tensor: the planner may write into it."""
    if not enabled() or model.training or policy.training or s0.shape[0] != 1:
        return None
    key = (("policy proposal",), steps, goal.shape[-1], str(s0.device), s0.dtype, id(policy))
    with _lock:
        kind = _models.setdefault(model, {}).get(key)
        if kind is None:
            kind = _models[model][key] = Kind()
            args = (weakref.ref(policy), weakref.ref(model), s0.clone(), goal.clone(), steps)
            # one copy of ``fn`` for any policy of these shapes (the key without its id)
            _ask(Job(kind, key[:-1], fn, args, False))
            return None
    if kind.state != "ready":
        return None
    try:
        with torch.inference_mode():
            out = kind.fn(policy, model, s0.clone(), goal.clone(), steps)
    except Exception as e:
        _fail(kind, e)
        return None
    kind.calls += 1
    return out.clone()  # outside inference mode: an ordinary tensor


def _replay(kind: Kind, model, names, s0: torch.Tensor, actions: torch.Tensor):
    """On a GPU: the compiled rollout of this batch size as one CUDA graph, captured on
    its first call here (a few milliseconds), replayed after. Graphs are captured in the
    thread that plans, not the one that compiled: each thread has its own capture state."""
    n = s0.shape[0]
    weights = tuple(p.data_ptr() for p in model.parameters())  # moved: captured anew
    if n in kind.graphs and kind.graphs[n] is not None and kind.graphs[n][0] != weights:
        del kind.graphs[n]
    if n not in kind.graphs:
        if len(kind.graphs) >= GRAPHS:  # (repairs come in many sizes) uncaptured
            return kind.fn(model, names, s0, actions)
        kind.graphs[n] = _capture(kind, model, names, s0, actions, weights)
    if kind.graphs[n] is None:  # its capture failed: the plain path, for this size only
        return None
    _, graph, (g_s0, g_actions), (latents, signals) = kind.graphs[n]
    g_s0.copy_(s0)
    g_actions.copy_(actions)
    graph.replay()
    # its outputs are overwritten by the next replay: copies leave
    return latents.clone(), {k: v.clone() for k, v in signals.items()}


def _capture(kind: Kind, model, names, s0, actions, weights):
    """(weights, graph, its inputs, its outputs) of one batch size, or None (logged)."""
    try:
        inputs = (s0.clone(), actions.clone())  # the graph reads these, always
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):  # warm-up (cuBLAS workspaces, Triton's first launch)
            for _ in range(2):
                kind.fn(model, names, *inputs)
        torch.cuda.current_stream().wait_stream(side)
        if kind.pool is None:
            kind.pool = torch.cuda.graph_pool_handle()  # the kind's graphs replay in turn
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph, pool=kind.pool, capture_error_mode="thread_local"):
            outputs = kind.fn(model, names, *inputs)
    except Exception as e:  # out of memory at N = 100 000, say
        log.warning("no CUDA graph for %d rows: %s: %s", s0.shape[0], type(e).__name__, e)
        return None
    return weights, graph, inputs, outputs


def _fail(kind: Kind, e: Exception) -> None:
    where = traceback.extract_tb(e.__traceback__)[-1] if e.__traceback__ else None
    at = f" ({Path(where.filename).name}:{where.lineno})" if where else ""
    kind.error = f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}{at}"
    kind.state = "failed"
    kind.graphs.clear()
    if not (_exiting and _exiting.is_set()):  # at exit inductor refuses new work: no news
        log.warning("imagination stays uncompiled: %s", kind.error)


def _ask(job: Job) -> None:
    """(Under ``_lock``.) Queue ``job``, and start a worker unless one is at work. Not a
    daemon: one killed at exit in the middle of a compile aborts the process (inductor's
    C++ threads), so the exit waits for the compile under way (seconds) and drops the
    ones still asked."""
    global _worker, _exiting
    _jobs.put(job)
    if _worker is None:
        os.environ.setdefault("TORCHINDUCTOR_CACHE_DIR", str(CACHE))
        if _exiting is None:
            _exiting = threading.Event()
            try:  # before non-daemon threads are joined at exit
                threading._register_atexit(_exiting.set)
            except RuntimeError:  # the interpreter is already shutting down
                _exiting.set()
        _worker = threading.Thread(target=_work, name="lab-compile")
        _worker.start()


def _work() -> None:
    global _worker
    try:
        _jobs_until_done()
    finally:  # whatever ends it, the next job starts a worker again
        with _lock:
            _worker = None


def _jobs_until_done() -> None:
    while True:
        with _lock:
            if _jobs.empty() or _exiting.is_set():
                return
            job = _jobs.get_nowait()
        _run(job)


def _run(job: Job) -> None:
    """Compile ``job`` and run it once (under inference mode, as it will be called), then
    hand the compiled function to its kind: its own (``ready``) or a batch size's."""
    args = [a() if isinstance(a, weakref.ref) else a for a in job.args]
    if any(a is None for a in args):  # its model or policy is gone
        return
    t0 = time.perf_counter()
    try:
        # (not mode="reduce-overhead": its CUDA graphs, made in this thread, failed in
        # the planning one on an H200; _replay captures them there instead)
        fn = torch.compile(_code(job.code_key, job.fn), dynamic=None if job.dynamic else False)
        if job.dynamic:
            for a in args:
                if isinstance(a, torch.Tensor):
                    torch._dynamo.mark_dynamic(a, 0)
        with torch.inference_mode():
            fn(*args)
    except Exception as e:  # no compiler, no Triton, an op inductor cannot do
        if job.size is not None:  # the dynamic compile still serves this size
            job.kind.sized[job.size] = False
            return
        _fail(job.kind, e)
    else:
        if job.size is not None:
            job.kind.sized[job.size] = fn
            return
        job.kind.fn, job.kind.state = fn, "ready"
    job.kind.seconds = time.perf_counter() - t0


def _code(key: tuple, fn):
    """The copy of ``fn`` that kinds of ``key`` share, whatever their model: dynamo's
    entries on it then serve a second model of the same shapes at once (an evaluation
    loads its model afresh), and their number stays bounded by the shapes seen."""
    with _lock:
        return _codes.setdefault(key, _own(fn))


def _own(fn):
    """A copy of ``fn`` with a code object of its own. Dynamo keeps its compiled entries
    on the code object, and a limited number of them (then falls back to plain Python
    without a word): each kind keeps its own (one dynamic, up to ``SIZED`` fixed)."""
    return types.FunctionType(fn.__code__.replace(), fn.__globals__, fn.__name__,
                              fn.__defaults__, fn.__closure__)  # fmt: skip


def status(model) -> list[dict]:
    """Each kind compiled for ``model``: signals, horizon, device, state, seconds, error."""
    with _lock:
        try:
            kinds = dict(_models.get(model) or {})
        except TypeError:  # not a model of ours (unhashable, no weak references)
            kinds = {}
        return [
            dict(signals=list(k[0]), horizon=k[1], device=k[3], state=v.state,
                 seconds=round(v.seconds, 1), calls=v.calls, error=v.error,
                 sizes=sorted(n for n, fn in v.sized.items() if fn),
                 sizing=any(fn is None for fn in v.sized.values()))
            for k, v in kinds.items()
        ]  # fmt: skip


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
    failed = [k["error"] for k in kinds if k["state"] == "failed"]
    if failed:
        return f"imagination uncompiled ({failed[0]})"
    if any(k["state"] == "compiling" for k in kinds):
        return "imagination compiling (plain until then)"
    return "imagination compiled"


def settle(timeout: float = 600.0) -> None:
    """Block until no compile is under way or asked for, whatever the model (benchmarks
    that load their models afresh: time them after their kinds are compiled)."""
    end = time.monotonic() + timeout
    while _worker is not None and time.monotonic() < end:
        time.sleep(0.1)


def wait(model, timeout: float = 600.0) -> list[dict]:
    """Block until no kind of ``model`` is compiling (benchmarks, tests); its status."""
    end = time.monotonic() + timeout

    def busy(k: dict) -> bool:
        return k["state"] == "compiling" or k["sizing"]

    while any(busy(k) for k in status(model)) and time.monotonic() < end:
        time.sleep(0.1)
    return status(model)
