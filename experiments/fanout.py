"""Episodes fanned out over Ray: experiments, calibrations and stress tests at scale.

    ./lab evaluate ... --ray local                  # Ray on this machine, a worker a core
    ./lab evaluate ... --ray ray://head:10001       # or join a cluster (README: Ray)

Each episode depends on its seed alone (``agents.episode.episode_seed``), so
the records are the same with and without Ray; the driver puts them back in
episode order. What the workers are given is plain data (``EpisodeSpec``):
scenes and models are built inside the workers (a PyBullet client does not
travel), each worker's torch runs one thread (oversubscribed torch threads
made four RLlib workers about 30x slower than one: ray#6102; docs/pitfalls.md,
Ray), and paths are absolute. ``ray.init``
runs once per process (the app's reruns find it initialised). Workers plan on
their CPU core (one CPU each), whatever device the driver uses. Ray is
imported here only, when asked for.
"""

from __future__ import annotations

import dataclasses
import os
import threading
from pathlib import Path

import torch

from agents.episode import run_episodes
from common.errors import LabError

ROOT = Path(__file__).resolve().parent.parent  # the repository: workers import from it
_STARTING = threading.Lock()
CHUNKS_PER_WORKER = 2  # progress moves, the load evens out; each chunk builds its agent


def connect(address: str, cpus: int | None = None):
    """``ray`` itself, initialised: "local" starts it on this machine (``cpus`` workers,
    default all cores), anything else joins that cluster address."""
    try:
        import ray
    except ImportError as e:
        raise LabError("Ray is not installed here: pip install -r requirements.txt") from e
    with _STARTING:  # two background runs of the app may ask at once
        if not ray.is_initialized():
            env = {"env_vars": {"PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}}
            kw = {"num_cpus": cpus} if address == "local" else {"address": address}
            if address == "local":
                # Ray runs its workers at nice 15: a class's agents (app.hosts.RayHost) got
                # next to nothing beside the web server on the same cores (20 students on
                # Run were served 3.6 steps/s between them: ./lab bench class_load
                # --placement ray); a cluster's own `ray start` takes it too (README)
                os.environ.setdefault("RAY_worker_niceness", "0")
            kw.update(
                runtime_env=env, include_dashboard=False, log_to_driver=False, logging_level="ERROR"
            )
            try:
                _init_for_good(ray, kw)
            except (ConnectionError, RuntimeError, ValueError) as e:
                raise LabError(f"Ray did not start at {address!r}: {e}") from e
    return ray


def _init_for_good(ray, kw: dict) -> None:
    """``ray.init`` in a thread that lives as long as the process. Ray's own processes
    (GCS, raylet) die with the thread that started them (the parent-death signal is a
    thread's): started from a Streamlit script run or an experiment's thread, they were
    killed when it ended, and the next call hung, then the process was terminated."""
    done, box = threading.Event(), {}

    def keep() -> None:
        try:
            ray.init(**kw)
        except Exception as e:  # given back to the caller
            box["error"] = e
        done.set()
        if "error" not in box:
            threading.Event().wait()  # never set: this thread holds Ray's processes

    threading.Thread(target=keep, name="lab-ray", daemon=True).start()
    done.wait()
    if "error" in box:
        raise box["error"]


def workers(ray) -> int:
    return max(1, int(ray.cluster_resources().get("CPU", 1)))


def _chunks(indices: list, n: int) -> list[list]:
    size = max(1, -(-len(indices) // n))
    return [indices[i : i + size] for i in range(0, len(indices), size)]


def _remote_episodes(spec, indices, want_errors: bool):
    """In a worker: ``run_episodes`` on one chunk, one torch thread."""
    torch.set_num_threads(1)
    errors = [] if want_errors else None
    records, _ = run_episodes(spec, indices, errors=errors)
    return records, errors


def run(
    spec,
    indices,
    address: str,
    tick=None,
    stop: threading.Event | None = None,
    errors: list | None = None,
    cpus: int | None = None,
    found=None,
):
    """``agents.episode.run_episodes`` over Ray: (records in episode order, finished).
    ``tick(n)`` after each chunk with its record count, ``found(records)`` with its
    records; ``stop`` cancels what is left (the chunks already back are kept, in order,
    up to the first missing one)."""
    ray = connect(address, cpus)
    spec = dataclasses.replace(spec, device="cpu")  # a worker is a CPU core
    remote = ray.remote(num_cpus=1)(_remote_episodes)
    chunks = _chunks(list(indices), workers(ray) * CHUNKS_PER_WORKER)
    pending = {remote.remote(spec, c, errors is not None): i for i, c in enumerate(chunks)}
    results: dict[int, tuple] = {}
    try:
        while pending:
            if stop is not None and stop.is_set():
                break
            ready, _ = ray.wait(list(pending), num_returns=1, timeout=0.5)
            for ref in ready:
                i = pending.pop(ref)
                try:
                    results[i] = ray.get(ref)
                except ray.exceptions.RayTaskError as e:
                    cause = getattr(e, "cause", None)
                    if isinstance(cause, LabError):
                        raise LabError(str(cause)) from None
                    raise LabError(f"a Ray worker failed: {cause or e}") from e
                if found is not None:
                    found(list(results[i][0]))
                if tick is not None:
                    tick(len(results[i][0]))
    finally:  # stopped, or a chunk failed: the others give their cores back
        for ref in pending:
            ray.cancel(ref, force=True)
    records: list[dict] = []
    for i in range(len(chunks)):
        if i not in results:
            return records, False
        records += results[i][0]
        if errors is not None:
            errors += results[i][1]
    return records, True
