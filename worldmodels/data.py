"""Training data on the device: a dataset's rows as tensors, windows sampled by index.

The whole dataset goes to the device once (Reach with pixels, 50k frames, is
about 600 MB of uint8); a batch is then an index computation and one gather,
with no Python loop over samples. Episodes are split into train and
held-out sets by a seeded permutation, so windows never mix the two.
"""

from __future__ import annotations

import numpy as np
import torch

from common.errors import LabError
from scenes.dataset import Dataset, window_starts
from worldmodels.model import Normalisation


class WindowData:
    """Rows of one dataset on ``device``, with train and validation window starts."""

    def __init__(
        self,
        root: str,
        obs: str,
        device: torch.device,
        horizon: int,
        val_fraction: float = 0.1,
        seed: int = 0,
        pixels: bool = True,
        frames: int = 1,
    ) -> None:
        ds = Dataset(root)
        if obs == "pixels" and not ds.pixels:
            raise LabError(
                f"{root} was collected without pixels: train with --obs state, "
                "or collect again with pixels"
            )
        self.scene = ds.scene
        self.manifest = ds.manifest
        goal = set(ds.manifest.get("goal_signals", []))
        self.signal_names = [n for n in ds.signal_names if n not in goal]
        cols = [ds.signal_names.index(n) for n in self.signal_names]
        self.has_pixels = ds.pixels and (pixels or obs == "pixels")
        keys = ("state", "actions", "signals", "success")
        keys += ("pixels",) if self.has_pixels else ()
        ep = ds.load(keys)
        self.episodes = ep.episodes
        n_eps = len(ep.episodes)
        n_val = max(1, round(n_eps * val_fraction)) if n_eps > 1 else 0
        order = np.random.default_rng(seed).permutation(n_eps)
        self.val_ids, self.train_ids = np.sort(order[:n_val]), np.sort(order[n_val:])
        self.horizon = horizon
        train_starts = window_starts(ep.episodes, horizon, self.train_ids)
        if len(train_starts) == 0:
            raise LabError(
                f"{root} has no training window of {horizon} steps: episodes are too "
                "short or too few"
            )

        to = lambda a: torch.as_tensor(a, device=device)  # noqa: E731
        self.state = to(ep.arrays["state"])  # (N, S) float32
        self.actions = to(ep.arrays["actions"])  # (N, A)
        self.signals = to(ep.arrays["signals"][:, cols])  # (N, n)
        self.success = ep.arrays["success"]  # (N,) bool numpy: the scene counted it reached
        self.pixels = to(ep.arrays["pixels"]) if self.has_pixels else None  # (N, 64, 64, 3) uint8
        self.obs_kind = obs
        self.frames = frames if obs == "pixels" else 1
        # Row r's previous row in its episode (an episode's first row is its own:
        # the scenes start at rest), for stacking frames.
        prev = np.arange(len(self.state)) - 1
        prev[ep.episodes[:, 0]] = ep.episodes[:, 0]
        self.prev = to(prev)
        # The action taken just before each row (zero at an episode's start).
        self.last_action = self.actions[self.prev] * to(prev != np.arange(len(prev)))[:, None]
        self.train_starts = to(train_starts)
        self.device = device

        train_rows = np.concatenate([np.arange(s, s + n) for s, n in ep.episodes[self.train_ids]])
        st, sg = ep.arrays["state"][train_rows], ep.arrays["signals"][train_rows][:, cols]
        self.norm = Normalisation(
            state_mean=st.mean(0).tolist(),
            state_std=np.maximum(st.std(0), 1e-3).tolist(),
            signal_mean=sg.mean(0).tolist(),
            signal_std=np.maximum(sg.std(0), 1e-3).tolist(),
        )

    def obs_at(self, rows: torch.Tensor) -> torch.Tensor:
        """The model's input at ``rows`` (any shape R): state (*R, S), pixels (*R, 64, 64, 3),
        or with F stacked frames (*R, F, 64, 64, 3), oldest first."""
        if self.obs_kind != "pixels":
            return self.state[rows]
        stack = [rows]
        for _ in range(self.frames - 1):
            stack.insert(0, self.prev[stack[0]])
        return self.pixels[rows] if self.frames == 1 else self.pixels[torch.stack(stack, -1)]

    def inputs(self, rows: torch.Tensor) -> dict[str, torch.Tensor]:
        """What ``WorldModel.encode`` takes for ``rows``: the observation, the last action
        and the state (a pixel model with proprio reads the robot's own part of it)."""
        return {
            self.obs_kind: self.obs_at(rows),
            "last_action": self.last_action[rows],
            "state": self.state[rows],
        }

    def val_starts(self, horizon: int, limit: int = 1024) -> torch.Tensor:
        """Evenly spread validation window starts (at most ``limit``)."""
        starts = window_starts(self.episodes, horizon, self.val_ids)
        if len(starts) > limit:
            starts = starts[np.linspace(0, len(starts) - 1, limit).astype(int)]
        return torch.as_tensor(starts, device=self.device)

    def windows(self, starts: torch.Tensor, horizon: int) -> dict[str, torch.Tensor]:
        """Gather windows: obs/signals/state/last_action (B, H+1, ...), actions (B, H, A)."""
        rows = starts[:, None] + torch.arange(horizon + 1, device=self.device)  # (B, H+1)
        batch = {
            "obs": self.obs_at(rows),
            "state": self.state[rows],
            "actions": self.actions[rows[:, :-1]],
            "last_action": self.last_action[rows],
            "signals": self.signals[rows],
        }
        if self.pixels is not None:
            # The decoder sees only each window's first frame: gather just that.
            if self.obs_kind != "pixels":
                batch["pixels"] = self.pixels[rows[:, :1]]
            else:  # the current frame of each stack
                batch["pixels"] = batch["obs"] if self.frames == 1 else batch["obs"][:, :, -1]
        return batch

    def sample(self, batch_size: int, generator: torch.Generator) -> dict[str, torch.Tensor]:
        """A random batch of training windows of ``self.horizon`` steps."""
        pick = torch.randint(
            len(self.train_starts), (batch_size,), generator=generator, device=generator.device
        )
        return self.windows(self.train_starts[pick.to(self.device)], self.horizon)
