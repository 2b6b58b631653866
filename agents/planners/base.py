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

SCALES = (1.0, 0.8, 0.6, 0.45, 0.3, 0.2)  # scale repair: how much slower a copy goes


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
    # Constraint-aware search (CEM and MPPI): after each round, this many of
    # the cheapest plans that break a hard term are repaired onto the rules and join the
    # next round's samples (at most a quarter of them). A rule that binds in part of the
    # space (slow down when the knife is low) leaves Gaussian samples almost no plan that
    # enters that part and stays within it, so without repair the feasible elites are
    # the plans that never go there: the agent freezes (Kitchen: 0 of 20 episodes).
    repair: int = 30
    # "scale": each is slowed down (actions x 0.8, 0.6, ..., 0.2, one batch) and the
    # fastest copy that keeps every hard term is kept (20 of 20); "gradient": Adam steps
    # on violation_weight x the smooth violation plus the cost, through the model (it
    # freed the agent too, at twice the plan time and 16 % violating steps)
    repair_mode: str = "scale"
    repair_steps: int = 5  # gradient repair: steps
    repair_lr: float = 0.1  # gradient repair: Adam's step on the actions


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

    def __init__(self, cfg: PlannerConfig, action_dim: int, smooth_cost: Cost | None = None):
        self.extra: torch.Tensor | None = None  # one more sample in every round (plan)
        self.cfg = cfg
        self.action_dim = action_dim
        self.smooth_cost = smooth_cost  # the same terms with smooth comparisons (gradients)

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
        extra: torch.Tensor | None = None,
    ) -> PlanRecord:
        """Search from latent ``s0`` (D,) or (1, D); ``warm`` (H, A) starts the search;
        ``extra`` (H, A) is one more sample in every round (System 1's proposal beside the
        warm start); the record's signals also hold the names in ``show`` (for display)."""
        t0 = time.perf_counter()
        s0 = s0.reshape(1, -1)
        H, A = self.cfg.horizon, self.action_dim
        mean = torch.zeros(H, A, device=s0.device) if warm is None else warm.to(s0.device)
        self.extra = None if extra is None else extra.to(s0.device)
        try:
            samples = self.search(model, cost, s0, goal, goal_latent, generator, mean)
        finally:
            self.extra = None
        latents, signals, result = self.evaluate(model, cost, s0, samples, goal, goal_latent, show)
        order = rank(result)
        return record(
            samples,
            latents,
            signals,
            result,
            order[: self.cfg.elites],
            self.cfg.iterations,
            time.perf_counter() - t0,
        )

    def search(self, model, cost, s0, goal, goal_latent, generator, mean) -> torch.Tensor:
        """Return the final samples (N, H, A) to choose from."""
        raise NotImplementedError

    def repaired(self, model, cost, s0, samples, result: CostResult, goal, goal_latent):
        """Up to ``cfg.repair`` of the cheapest infeasible ``samples`` (N, H, A), repaired
        onto the hard terms as ``cfg.repair_mode`` says (``slowed`` or ``descend``): (R, H,
        A), or None when there is nothing to repair (no hard term, or every sample keeps
        them; gradient repair without a smooth cost)."""
        R = min(self.cfg.repair, self.cfg.samples // 4)  # the rest stay free samples
        gradient = self.cfg.repair_mode == "gradient"
        if R <= 0 or not cost.judges_safety or (gradient and self.smooth_cost is None):
            return None
        infeasible = ~result.feasible
        if not bool(infeasible.any()):
            return None
        total = torch.where(infeasible, result.total, torch.full_like(result.total, torch.inf))
        pick = torch.argsort(total)[: min(R, int(infeasible.sum()))]
        if not gradient:
            return self.slowed(model, cost, s0, samples[pick], goal, goal_latent)
        return self.descend(
            model, s0, samples[pick], goal, goal_latent, self.cfg.repair_steps, self.cfg.repair_lr
        )

    def slowed(self, model, cost, s0, actions, goal, goal_latent) -> torch.Tensor:
        """Each of ``actions`` (R, H, A) at the largest of ``SCALES`` that keeps every hard
        term (all copies evaluated in one batch); where none does, its least violating."""
        scales = torch.tensor(SCALES, device=actions.device)  # (S,)
        R, S = actions.shape[0], len(SCALES)
        copies = (actions[:, None] * scales[None, :, None, None]).reshape(R * S, *actions.shape[1:])
        _, _, result = self.evaluate(model, cost, s0, copies, goal, goal_latent)
        # feasible copies first, the fastest of them; else the least violating
        score = torch.where(result.feasible, -scales.repeat(R), 1e9 + result.violation)
        best = score.reshape(R, S).argmin(dim=1)  # (R,)
        return copies.reshape(R, S, *actions.shape[1:])[torch.arange(R), best]

    def descend(self, model, s0, actions, goal, goal_latent, steps: int, lr: float, cost=None):
        """``actions`` (R, H, A) after ``steps`` of Adam on cost + violation_weight x
        violation (``cost``, by default the smooth one), through ``model.rollout``; clamped
        to [-1, 1] after each step."""
        actions = actions.detach().clone().requires_grad_(True)
        opt = torch.optim.Adam([actions], lr=lr)
        cost = cost or self.smooth_cost
        R = actions.shape[0]
        for _ in range(steps):
            with torch.enable_grad():
                latents = model.rollout(s0.expand(R, -1), actions)
                result = cost.evaluate(
                    latents, model.probe(latents, cost.needed), goal_latent, goal
                )
                loss = (result.total + self.cfg.violation_weight * result.violation).sum()
                opt.zero_grad()
                loss.backward()
            opt.step()
            with torch.no_grad():
                actions.clamp_(-1.0, 1.0)
        return actions.detach()

    def perturb(self, mean: torch.Tensor, std, generator: torch.Generator) -> torch.Tensor:
        """Samples (N, H, A): ``mean`` (H, A) plus Gaussian noise of ``std``, clipped to
        [-1, 1]; the first sample is the mean itself, so a warm start is never lost."""
        cfg = self.cfg
        # drawn where the generator lives: a CPU generator gives a CUDA search the very
        # noise it gives a CPU one (benchmarks/gpu_check.py compares the two plans)
        noise = torch.randn(
            cfg.samples, cfg.horizon, self.action_dim, generator=generator, device=generator.device
        ).to(mean.device)
        samples = (mean + std * noise).clamp(-1.0, 1.0)
        samples[0] = mean
        if self.extra is not None and len(samples) > 1:
            samples[1] = self.extra
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
