"""The oracle: the same planners, with the true simulator as the world model.

An ``OracleModel`` has the world model's interface (``encode``, ``rollout``,
``probe``, ``device``, ``signal_names``, ``decoder``), so CEM and MPPI plan
with it unchanged, and the agent runs it as it runs a JEPA. Its "latent" is
the scene's true signals vector (every signal, in ``signal_names`` order), so
a probe is a column lookup and its probe error is zero by construction. What
it imagines, it imagines by stepping a private copy of the scene (same class,
its own PyBullet client, no pixels): for each of the N sampled sequences it
restores the current state and steps the physics H times. Planning on it
gives the upper bound an evaluation compares the world model with
(docs/design.md, Contracts: Evaluation): whatever the oracle cannot do with a
search setting, no world model can do with it either.

The private copy is synced from the real scene by ``sync(scene)``, which the
agent calls after every reset and before every plan (``Scene.copy_state_from``:
body poses and velocities, joints and Python-side fields; a step of the copy
then matches a step of the real scene exactly in all four scenes). Only the
current observation and the goal observation can be encoded: the oracle
recognises them by their state vector.

Cost: N * H physics steps per iteration (about 40 us a step for Reach, 60
Wall, 95 Push, 250 Kitchen, on one core of the 2-core development machine),
and no batching, so it takes modest search settings (``ORACLE_SEARCH``).
Gradient descent needs gradients through the model, which a simulator has
not: the oracle refuses it.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import torch

import scenes
from agents.planners import CEM_300
from common.errors import LabError
from scenes.base import LabScene

# N=64, H=12, 2 iterations: 1,536 physics steps per plan, about 80 ms in
# Reach and 0.4 s in Kitchen on one core, so a 50-episode Reach evaluation
# takes about 2 minutes. The Reach oracle reaches every goal with these (a
# goal is at most ~2 m, 40 steps at full speed, away; receding horizon makes up
# for the short H). See benchmarks/agent_quality.py for the measured figures.
# plain CEM, as every oracle figure in benchmarks/results was measured
ORACLE_SEARCH = replace(CEM_300, samples=64, horizon=12, iterations=2, elites=8)
STATE_MATCH = 1e-5  # max |difference| for an observation to be recognised as a known state
PLANNERS = ("cem", "mppi")  # planners that need no gradient through the model


class OracleModel:
    """The true simulator behind the world-model interface; see the module docstring.

    ``scene``: a scene name (``"reach"``) or class; the oracle makes its own copy.
    """

    decoder = None  # nothing to decode: the oracle has no frames of its own
    exact = True  # it imagines what will happen: hard terms need no margin for its error
    device = torch.device("cpu")  # PyBullet runs on the CPU

    def __init__(self, scene: str | type[LabScene]) -> None:
        cls = scenes.scene_class(scene) if isinstance(scene, str) else scene
        self.sim: LabScene = cls(pixels=False)
        self.scene_class = cls
        self.signal_names: tuple[str, ...] = tuple(s.name for s in cls.SIGNALS)
        # state vector bytes -> latent (D,), for the states encode can recognise
        self._known: dict[bytes, torch.Tensor] = {}
        self._current: torch.Tensor | None = None  # (D,) the synced state's latent

    # --- syncing with reality ----------------------------------------------
    def sync(self, scene: LabScene) -> None:
        """Copy the real scene's state into the private copy (after reset, before a plan)."""
        if type(scene) is not self.scene_class:
            raise LabError(
                f"this oracle simulates {self.scene_class.__name__}, not {type(scene).__name__}"
            )
        sim = self.sim
        sim.copy_state_from(scene)
        self._current = self._latent(sim.signals)
        known = {self._key(sim.observation["state"]): self._current}
        # The goal's observation (the agent encodes it at reset), measured on the
        # copy: no pixels, so this is cheap.
        goal_obs, goal_signals = sim.goal_observation()
        known[self._key(goal_obs["state"])] = self._latent(goal_signals)
        self._known = known

    def close(self) -> None:
        self.sim.close()

    # --- the world-model interface ------------------------------------------
    def encode(self, obs) -> torch.Tensor:
        """Observation(s) -> latents (B, D): the true signals of a state the oracle knows
        (the synced current state or its goal); anything else raises ``LabError``."""
        x = obs["state"] if isinstance(obs, dict) else obs
        x = np.asarray(x, np.float32)
        rows = x.reshape(1, -1) if x.ndim == 1 else x  # (B, S)
        return torch.stack([self._lookup(row) for row in rows])  # (B, D)

    @torch.no_grad()
    def rollout(self, s0: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        """Imagine on the simulator: s0 (N, D), actions (N, H, A) -> latents (N, H, D).

        Every row of ``s0`` must be the synced state's latent (the planners pass the
        encoded current observation); each sequence starts from that state.
        """
        if actions.requires_grad:
            raise LabError("the oracle has no gradients: plan with cem or mppi, not gd")
        if self._current is None:
            raise LabError("the oracle is not synced to a scene: call sync(scene) first")
        N, H, _A = actions.shape
        if not torch.allclose(s0, self._current.expand_as(s0), atol=STATE_MATCH):
            raise LabError("the oracle can roll out only from the state it is synced to")
        acts = actions.detach().cpu().numpy().astype(np.float32)  # (N, H, A)
        out = np.empty((N, H, len(self.signal_names)), np.float32)  # (N, H, D)
        sim, names = self.sim, self.signal_names
        snap = sim.snapshot()
        try:
            for n in range(N):  # a simulator has no batch axis
                sim.restore(snap)
                for h in range(H):
                    signals = sim.advance(acts[n, h])
                    out[n, h] = [signals[k] for k in names]
        finally:
            sim.restore(snap)
            sim.release(snap)
        return torch.from_numpy(out)

    def probe(self, s: torch.Tensor, names=None) -> dict[str, torch.Tensor]:
        """Latents (..., D) -> {signal: (...)}: the latent is the signals, so a lookup."""
        names = self.signal_names if names is None else names
        return {k: s[..., self.signal_names.index(k)] for k in names}

    # --- helpers --------------------------------------------------------------
    def _latent(self, signals: dict[str, float]) -> torch.Tensor:
        return torch.tensor([signals[k] for k in self.signal_names], dtype=torch.float32)

    @staticmethod
    def _key(state: np.ndarray) -> bytes:
        return np.asarray(state, np.float32).tobytes()

    def _lookup(self, state: np.ndarray) -> torch.Tensor:
        hit = self._known.get(self._key(state))
        if hit is not None:
            return hit
        for key, latent in self._known.items():  # the same state, up to rounding
            if np.abs(np.frombuffer(key, np.float32) - state).max() <= STATE_MATCH:
                return latent
        raise LabError(
            "the oracle can encode only the state of the scene it is synced to (or its goal): "
            "call sync(scene) first"
        )
