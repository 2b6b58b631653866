"""Exploration policies for collecting world-model data.

White-noise actions make a velocity-controlled body jitter in place: the data
then covers a small blob around each start. Temporally correlated noise (an
AR(1) process, the discrete Ornstein-Uhlenbeck process used for exploration in
DDPG, Lillicrap et al. 2016) makes long smooth strokes that cross the floor.

Random strokes alone rarely pass the Wall scene's door, seldom touch the Push
block and never carry the Kitchen knife to the board at different speeds, so
a share of episodes follows the scene's scripted controller with correlated
noise on top and a random speed: those visit the goal region, contact the
block, pass the door and pass the person both slowly and fast.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np

from scenes.base import LabScene


@dataclass
class ExplorationConfig:
    """How exploration episodes are driven; saved in each dataset's manifest."""

    correlation: float = field(
        default=0.9,
        metadata={
            "help": "AR(1) coefficient of the action noise per step: 0 is white noise, "
            "near 1 long smooth strokes"
        },
    )
    walk_scale: tuple[float, float] = field(
        default=(0.4, 1.2),
        metadata={"help": "range of the random walk's standard deviation, drawn per episode"},
    )
    guided_fraction: float = field(
        default=0.4,
        metadata={"help": "share of episodes that follow the scripted controller plus noise"},
    )
    guided_noise: float = field(
        default=0.4, metadata={"help": "standard deviation of the noise on guided episodes"}
    )
    guided_speed: tuple[float, float] = field(
        default=(0.2, 1.0),
        metadata={"help": "range of the speed factor of guided episodes, drawn per episode"},
    )
    wander_after_success: bool = field(
        default=True,
        metadata={"help": "a guided episode turns into a random walk once it reaches its goal"},
    )

    def to_dict(self) -> dict:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}


class ExplorationPolicy:
    """Per-episode mixture of correlated random walks and noisy scripted runs.

    ``begin_episode`` draws the mode and its scales from ``rng``; ``act``
    returns the next action ``(A,)`` in [-1, 1] for ``scene`` (the unwrapped
    env, whose ``scripted_action`` it may call).
    """

    def __init__(
        self,
        cfg: ExplorationConfig,
        action_dim: int,
        rng: np.random.Generator,
        scripted: bool = True,
    ):
        self.cfg = cfg
        self.scripted = scripted  # False: the scene has no scripted controller to follow
        self.rng = rng
        self.action_dim = action_dim
        self.noise = np.zeros((1, action_dim))
        self.t = 0
        self.guided = False
        self.scale = 1.0
        self.speed = 1.0
        self.reached = False

    def begin_episode(self, steps: int = 1000) -> None:
        """Draw this episode's mode, scales and its whole noise sequence."""
        cfg = self.cfg
        self.guided = bool(self.rng.random() < cfg.guided_fraction) and self.scripted
        self.scale = float(self.rng.uniform(*cfg.walk_scale))
        self.speed = float(self.rng.uniform(*cfg.guided_speed))
        # AR(1) with unit stationary variance: x_t = rho x_{t-1} + sqrt(1 - rho^2) eps_t,
        # drawn for the whole episode at once (off the per-step path).
        rho = cfg.correlation
        eps = self.rng.normal(0.0, 1.0, (steps, self.action_dim))
        eps[1:] *= np.sqrt(1.0 - rho * rho)
        for t in range(1, steps):
            eps[t] += rho * eps[t - 1]
        self.noise = eps  # (T, A)
        self.t = 0
        self.reached = False

    def act(self, scene: LabScene, success: bool = False) -> np.ndarray:
        noise = self.noise[min(self.t, len(self.noise) - 1)]
        self.t += 1
        self.reached = self.reached or success
        if self.guided and not (self.reached and self.cfg.wander_after_success):
            action = self.speed * scene.scripted_action() + self.cfg.guided_noise * noise
        else:
            action = self.scale * noise
        return np.minimum(np.maximum(action, -1.0), 1.0).astype(np.float32)
