"""What every planner shares: evaluating action sequences, ranking, the plan record.

A planner searches action sequences ``(N, H, A)`` in [-1, 1] for the one whose
imagined future (``model.rollout`` then ``model.probe``) has the lowest cost,
among those that keep every hard guardrail. It knows the model only through
``rollout(s0 (N, D), actions (N, H, A)) -> (N, H, D)`` and ``probe(s) ->
{name: (...)}`` (or ``imagine``, the two fused, where a model has it: the
JEPA's is faster), so a linear toy, the JEPA and the true simulator (the
oracle) all plug in. Everything is batched over samples on the model's
device; the only Python loops run over iterations (and the horizon, inside
rollout).

Ranking: feasible samples first, by cost; when none is feasible, samples are
ranked by total violation, then cost, and the record says so
(``none_feasible``): the agent then acts on the least violating plan or stops,
as its fallback setting says.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import torch

from agents.cost import Cost, CostResult


@dataclass
class PlannerConfig:
    """Search settings shared by the planners."""

    samples: int = 300  # N action sequences per iteration
    horizon: int = 16  # H steps imagined ahead
    iterations: int = 3  # refinement rounds
    elites: int = 30  # CEM: best samples refitted; MPPI: unused
    init_std: float = 0.5  # spread of the first samples around the warm start
    min_std: float = 0.05  # CEM keeps at least this spread
    temperature: float = 0.5  # MPPI: softmax temperature on costs (relative to their spread)
    lr: float = 0.1  # gradient descent: Adam's step on the actions
    violation_weight: float = 100.0  # gradient descent and MPPI: price of one unit of violation


@dataclass
class PlanRecord:
    """What a plan was, and why (the app draws all of it)."""

    actions: torch.Tensor  # (H, A) the chosen sequence
    latents: torch.Tensor  # (H, D) its imagined latents
    samples: torch.Tensor  # (N, H, A) the last iteration's samples
    signals: dict[str, torch.Tensor]  # name -> (N, H) their probed signals
    terms: dict[str, torch.Tensor]  # name -> (N, H) per-term costs
    total: torch.Tensor  # (N,)
    violation: torch.Tensor  # (N,)
    feasible: torch.Tensor  # (N,) bool
    elites: torch.Tensor  # (K,) indices into samples, best first
    chosen: int  # index of the chosen sample
    none_feasible: bool
    iterations: int
    seconds: float
    info: dict = field(default_factory=dict)


def imagine(model, s0: torch.Tensor, actions: torch.Tensor, names: list[str]):
    """Latents (N, H, D) and the signals ``names`` {name: (N, H)} of the rollouts of
    ``actions`` from ``s0`` (N, D): the model's fused ``imagine`` where it has one (the
    JEPA), else ``rollout`` then ``probe`` (the oracle, toy models)."""
    fused = getattr(model, "imagine", None)
    if fused is not None:
        return fused(s0, actions, names)
    latents = model.rollout(s0, actions)
    return latents, model.probe(latents, names)


def rank(result: CostResult) -> torch.Tensor:
    """Indices best first: by violation (0 for feasible ones), then by cost."""
    order = torch.argsort(result.total, stable=True)
    return order[torch.argsort(result.violation[order], stable=True)]


class Planner:
    """Base class: subclasses implement ``search``."""

    name = "base"

    def __init__(self, cfg: PlannerConfig, action_dim: int) -> None:
        self.cfg = cfg
        self.action_dim = action_dim

    @torch.inference_mode()
    def evaluate(
        self,
        model,
        cost: Cost,
        s0: torch.Tensor,
        actions: torch.Tensor,
        goal: torch.Tensor,
        goal_latent: torch.Tensor | None,
        show: tuple[str, ...] = (),
    ):
        """actions (N, H, A) -> latents (N, H, D), signals {name: (N, H)}, CostResult.

        Only the signals the cost reads are probed, plus those in ``show``."""
        names = cost.needed + [n for n in show if n not in cost.needed]
        latents, signals = imagine(model, s0.expand(actions.shape[0], -1), actions, names)
        return latents, signals, cost.evaluate(latents, signals, goal_latent, goal)

    def plan(
        self,
        model,
        cost: Cost,
        s0: torch.Tensor,
        goal: torch.Tensor,
        goal_latent: torch.Tensor | None,
        generator: torch.Generator,
        warm: torch.Tensor | None = None,
        show: tuple[str, ...] = (),
    ) -> PlanRecord:
        """Search from latent ``s0`` (D,) or (1, D); ``warm`` (H, A) starts the search;
        the record's signals also hold the names in ``show`` (for display)."""
        t0 = time.perf_counter()
        s0 = s0.reshape(1, -1)
        H, A = self.cfg.horizon, self.action_dim
        mean = torch.zeros(H, A, device=s0.device) if warm is None else warm.to(s0.device)
        samples = self.search(model, cost, s0, goal, goal_latent, generator, mean)
        latents, signals, result = self.evaluate(model, cost, s0, samples, goal, goal_latent, show)
        order = rank(result)
        return record(samples, latents, signals, result, order[: self.cfg.elites],
                      self.cfg.iterations, time.perf_counter() - t0)  # fmt: skip

    def search(self, model, cost, s0, goal, goal_latent, generator, mean) -> torch.Tensor:
        """Return the final samples (N, H, A) to choose from."""
        raise NotImplementedError

    def perturb(self, mean: torch.Tensor, std, generator: torch.Generator) -> torch.Tensor:
        """Samples (N, H, A): ``mean`` (H, A) plus Gaussian noise of ``std``, clipped to
        [-1, 1]; the first sample is the mean itself, so a warm start is never lost."""
        cfg = self.cfg
        noise = torch.randn(
            cfg.samples, cfg.horizon, self.action_dim, generator=generator, device=mean.device
        )
        samples = (mean + std * noise).clamp(-1.0, 1.0)
        samples[0] = mean
        return samples


def record(samples, latents, signals, result: CostResult, elites, iterations: int, seconds):
    """The plan record of evaluated ``samples`` (N, H, A): ``elites`` (K,) best first, the
    first of them the chosen one."""
    best = int(elites[0])
    return PlanRecord(
        actions=samples[best].clone(),
        latents=latents[best].clone(),  # not a view that keeps all N rollouts alive
        samples=samples,
        signals=signals,
        terms=result.terms,
        total=result.total,
        violation=result.violation,
        feasible=result.feasible,
        elites=elites,
        chosen=best,
        none_feasible=not bool(result.feasible.any()),
        iterations=iterations,
        seconds=seconds,
    )


def shift(actions: torch.Tensor) -> torch.Tensor:
    """Warm start for the next step: drop the first action, repeat the last (H, A)."""
    return torch.cat([actions[1:], actions[-1:]], dim=0)
