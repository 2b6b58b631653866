"""Imagination for many agents at once: one world model per checkpoint, calls batched.

On a GPU a plan's imagination is a few dozen small kernel launches whatever its
batch: one person's 1000 samples leave the card mostly idle, and thirty people
planning at once launch thirty times as much for work one call does in about
the same time. So a server's agents (threads of one process) share each world
model (``Shared``), and ``WorldModel.imagine`` hands its calls to the model's
``Batcher``: the first call to arrive opens a batch and waits for the others of
the same kind (horizon, action size, dtype, the signals read: one compiled kind),
until every thread that called so in the last second has joined or ``window``
seconds have passed (a lone agent does not wait at all), runs them as one call
and gives each caller its rows (dynamic batching, as model servers do). Every
caller's own cost is then evaluated on its share. Calls that need gradients
(gradient-descent planning) are not merged: a shared graph cannot be walked
back twice.

    shared = Shared(window=0.002)
    model, config = shared.load(folder, device)   # the same object for every session
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch

from worldmodels.checkpoint import load_checkpoint

WINDOW_S = 0.002  # at most this long a batch waits for more calls (a plan's step: 1-5 ms)
RECENT_S = 1.0  # a thread that called this recently is expected to call again


@dataclass
class _Call:
    s0: torch.Tensor
    actions: torch.Tensor
    names: tuple[str, ...]
    out: tuple | None = None


@dataclass
class _Batch:
    calls: list[_Call] = field(default_factory=list)
    done: bool = False
    error: BaseException | None = None


class Batcher:
    """Merges concurrent ``imagine`` calls of one model (see the module docstring).
    ``calls`` and ``batches`` count what came in and what ran."""

    def __init__(self, run, window: float = WINDOW_S) -> None:
        """``run(s0, actions, names) -> (latents, {name: values})``: the unbatched call."""
        self.run = run
        self.window = window
        self.calls = 0
        self.batches = 0
        self._cv = threading.Condition()
        self._open: dict[tuple, _Batch] = {}
        self._seen: dict[tuple, dict[int, float]] = {}  # kind -> thread -> when it called

    def _expected(self, key: tuple, now: float) -> int:
        """Threads that called with this kind within RECENT_S (forgetting the others)."""
        seen = self._seen.get(key, {})
        for t in [t for t, at in seen.items() if now - at > RECENT_S]:
            del seen[t]
        return len(seen)

    def imagine(self, s0: torch.Tensor, actions: torch.Tensor, names):
        call = _Call(s0, actions, tuple(names))
        key = (actions.shape[1:], actions.dtype, s0.shape[1:], s0.device, call.names)
        with self._cv:
            self.calls += 1
            self._seen.setdefault(key, {})[threading.get_ident()] = time.monotonic()
            batch = self._open.get(key)
            leader = batch is None
            if leader:
                batch = self._open[key] = _Batch()
            batch.calls.append(call)
            if leader:
                end = time.monotonic() + self.window
                while len(batch.calls) < self._expected(key, time.monotonic()):
                    left = end - time.monotonic()
                    if left <= 0:
                        break
                    self._cv.wait(left)
                del self._open[key]  # later calls open the next batch
                self.batches += 1
            else:
                self._cv.notify_all()  # the leader counts who has come
                self._cv.wait_for(lambda: batch.done)
        if leader:
            try:
                self._run(batch.calls)
            except BaseException as e:
                batch.error = e
            with self._cv:
                batch.done = True
                self._cv.notify_all()
        if batch.error is not None:
            raise batch.error
        return call.out

    def _run(self, calls: list[_Call]) -> None:
        if len(calls) == 1:
            c = calls[0]
            c.out = self.run(c.s0, c.actions, c.names)
            return
        latents, signals = self.run(
            torch.cat([c.s0 for c in calls]), torch.cat([c.actions for c in calls]), calls[0].names
        )
        sizes = [len(c.s0) for c in calls]
        parts = latents.split(sizes)
        values = {n: v.split(sizes) for n, v in signals.items()}  # one kind: the same names
        for i, c in enumerate(calls):
            c.out = parts[i], {n: v[i] for n, v in values.items()}


class Shared:
    """World models loaded once per checkpoint and device for every session of a server,
    each with a ``Batcher`` (a checkpoint saved again since is loaded again)."""

    def __init__(self, window: float = WINDOW_S) -> None:
        self.window = window
        self._models: dict[tuple, tuple] = {}
        self._lock = threading.Lock()

    def load(self, folder, device: torch.device):
        folder = Path(folder).resolve()
        try:  # a missing folder is load_checkpoint's to say; a file renamed meanwhile, too
            stamp = max((f.stat().st_mtime_ns for f in folder.iterdir()), default=0)
        except OSError:
            stamp = 0
        key = (str(folder), str(device), stamp)
        with self._lock:
            if key not in self._models:
                model, config = load_checkpoint(folder, device=device)
                model.batcher = Batcher(model.imagine_now, self.window)
                # a checkpoint saved again replaces its older copy (sessions on it keep theirs)
                for old in [k for k in self._models if k[:2] == key[:2]]:
                    del self._models[old]
                self._models[key] = model, config
            model, config = self._models[key]
        return model, dict(config)
