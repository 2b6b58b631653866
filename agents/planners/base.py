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

import functools
import time
from dataclasses import dataclass, field

import torch

from agents.cost import Cost, CostResult
from common.errors import LabError

# Scale repair: how much slower a copy goes. Not 1.0: the plans repaired break a rule as
# they are (the model is deterministic), so a copy at full speed never holds; without it,
# Kitchen's 10 seeded knife episodes were step for step the same, on 5/6 of the rows.
SCALES = (0.8, 0.6, 0.45, 0.3, 0.2)


@dataclass
class PlannerConfig:
    """Search settings shared by the planners."""

    # N action sequences per iteration. iCEM at N = 30 (the three settings below) reached
    # the goal as often as plain CEM at N = 1000, and in no more steps, on Reach, Wall
    # (learned high level) and Kitchen (knife rule held), at a third of the plan time of
    # plain CEM at N = 300, the default before (``./lab bench search_efficiency``)
    samples: int = 30
    horizon: int = 16  # H steps imagined ahead
    iterations: int = 3  # refinement rounds
    elites: int = 0  # CEM: best samples refitted (0: a tenth of N, at least 4: elite_count)
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
    # "scale": a fifth as many plans, each slowed down (actions x 0.8, 0.6, ..., 0.2),
    # every copy a sample of the next round, whose own ranking keeps the copies that hold
    # (20 of 20; judging the copies in a batch of their own before cost 84 % over a plan
    # with no hard term, folded into the next round 13 % at iCEM N = 30: ``./lab bench
    # search_efficiency``); "gradient": Adam steps on violation_weight x the smooth
    # violation plus the cost, through the model (it freed the agent too, at twice the
    # plan time and 16 % violating steps)
    repair_mode: str = "scale"
    repair_steps: int = 5  # gradient repair: steps
    repair_lr: float = 0.1  # gradient repair: Adam's step on the actions
    # Sample-efficient search (iCEM, Pinneri et al. 2020), CEM and MPPI: on by default
    # (0, 0, 1.0 is plain CEM). ``noise_beta``: the noise's power falls as
    # 1 / f^beta along the horizon (0 white; iCEM 2-2.5: smooth, time-correlated plans,
    # as a body's actions are). ``keep``: this fraction of a round's elites joins the
    # next round's samples, and of the last round's the next plan's (shifted a step),
    # so a good plan found once is not lost to fresh noise (iCEM 0.3). ``decay``: round
    # i draws N / decay^i samples (at least twice the elites; iCEM 1.25).
    noise_beta: float = 2.0
    keep: float = 0.3
    decay: float = 1.25

    def __post_init__(self) -> None:
        for name, ok, want in (
            ("samples", self.samples >= 1, "at least 1"),
            ("horizon", self.horizon >= 1, "at least 1"),
            ("elites", self.elites >= 0, "0 (a tenth of N) or more"),
            ("noise_beta", 0.0 <= self.noise_beta <= 4.0, "between 0 (white) and 4"),
            ("keep", 0.0 <= self.keep <= 1.0, "a fraction, 0 to 1"),
            ("decay", self.decay >= 1.0, "1 (no decay) or more"),
        ):
            if not ok:
                raise LabError(f"search setting {name} = {getattr(self, name)!r}: must be {want}")

    @property
    def elite_count(self) -> int:
        """CEM's elites: ``elites``, or where it is 0 a tenth of N (at least 4, at most N)."""
        return min(self.elites or max(self.samples // 10, 4), self.samples)


# The search that every figure measured before iCEM became the default was made with:
# plain CEM, N = 300, 30 elites. The benchmarks whose reference files hold such figures
# (and the lessons, System 1 and 2, the high level's own search) pin it, so that they
# reproduce; ``./lab bench search_efficiency`` measures the two searches side by side.
CEM_300 = PlannerConfig(samples=300, elites=30, noise_beta=0.0, keep=0.0, decay=1.0)


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
    kept: torch.Tensor | None = None  # (k, H, A) elites the next plan starts from (keep)


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
    rounds: int | None = None  # rounds of samples a plan draws (None: ``iterations``)

    def __init__(self, cfg: PlannerConfig, action_dim: int, smooth_cost: Cost | None = None):
        self.extra: torch.Tensor | None = None  # one more sample in every round (plan)
        self.noise: torch.Tensor | None = None  # this plan's noise, every round (draw_noise)
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
        kept: torch.Tensor | None = None,
    ) -> PlanRecord:
        """Search from latent ``s0`` (D,) or (1, D); ``warm`` (H, A) starts the search;
        ``extra`` (H, A) is one more sample in every round (System 1's proposal beside the
        warm start); ``kept`` (k, H, A), the last plan's kept elites shifted a step
        (``shift``), join the first round; the record's signals also hold the names in
        ``show`` (for display)."""
        t0 = time.perf_counter()
        s0 = s0.reshape(1, -1)
        H, A = self.cfg.horizon, self.action_dim
        mean = torch.zeros(H, A, device=s0.device) if warm is None else warm.to(s0.device)
        self.extra = None if extra is None else extra.to(s0.device)
        self.noise = self.draw_noise(generator, s0.device)
        if kept is not None and kept.shape[1:] != (H, A):
            kept = None  # a plan of another horizon (a settings change): nothing to carry
        try:
            samples = self.search(model, cost, s0, goal, goal_latent, generator, mean, kept=kept)
        finally:
            self.extra, self.noise = None, None
        latents, signals, result = self.evaluate(model, cost, s0, samples, goal, goal_latent, show)
        order = rank(result)
        plan = record(
            samples,
            latents,
            signals,
            result,
            order[: self.cfg.elite_count],
            self.cfg.iterations,
            time.perf_counter() - t0,
        )
        plan.kept = samples[order[: self.kept_count]].clone() if self.kept_count else None
        return plan

    @property
    def kept_count(self) -> int:
        """How many elites a round hands on (``keep``)."""
        return round(self.cfg.keep * self.cfg.elite_count)

    def sizes(self) -> list[int]:
        """Samples drawn in each round: N, then N / decay^i (at least twice the elites)."""
        cfg = self.cfg
        floor = min(cfg.samples, 2 * cfg.elite_count)
        return [max(int(cfg.samples / cfg.decay**i), floor) for i in range(self.n_rounds)]

    @property
    def n_rounds(self) -> int:
        return self.rounds or max(self.cfg.iterations, 1)

    def draw_noise(self, generator: torch.Generator, device) -> torch.Tensor:
        """Every round's noise in one call, (rounds x N, H, A) on ``device``: white, or
        coloured by ``noise_beta``; each round takes its first ``sizes()[i]`` rows."""
        cfg = self.cfg
        rounds = self.n_rounds
        # drawn where the generator lives: a CPU generator gives a CUDA search the very
        # noise it gives a CPU one (benchmarks/gpu_check.py compares the two plans)
        noise = torch.randn(
            rounds * cfg.samples,
            cfg.horizon,
            self.action_dim,
            generator=generator,
            device=generator.device,
        )
        if cfg.noise_beta:
            noise = coloured(noise, cfg.noise_beta)
        return noise.to(device)

    def search(
        self, model, cost, s0, goal, goal_latent, generator, mean, kept=None
    ) -> torch.Tensor:
        """Return the final samples (N, H, A) to choose from (``kept``: see ``plan``)."""
        raise NotImplementedError

    def repaired(self, model, cost, s0, samples, result: CostResult, goal, goal_latent):
        """Plans for the next round made from the cheapest infeasible ``samples`` (N, H,
        A), repaired onto the hard terms as ``cfg.repair_mode`` says: (R, H, A), or None
        when there is nothing to repair (no hard term, or every sample keeps them; gradient
        repair without a smooth cost). At most ``cfg.repair`` plans and a quarter of N:
        the rest stay free samples."""
        R = min(self.cfg.repair, self.cfg.samples // 4)
        gradient = self.cfg.repair_mode == "gradient"
        if R <= 0 or not cost.judges_safety or (gradient and self.smooth_cost is None):
            return None
        infeasible = ~result.feasible
        if not bool(infeasible.any()):
            return None
        if not gradient:
            R = max(R // len(SCALES), 1)  # each repaired plan makes len(SCALES) copies
        total = torch.where(infeasible, result.total, torch.full_like(result.total, torch.inf))
        pick = torch.topk(total, min(R, int(infeasible.sum())), largest=False).indices
        if not gradient:
            return slowed(samples[pick])
        return self.descend(
            model, s0, samples[pick], goal, goal_latent, self.cfg.repair_steps, self.cfg.repair_lr
        )

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

    def perturb(self, mean: torch.Tensor, std, round_: int, carried=None) -> torch.Tensor:
        """Round ``round_``'s samples (n, H, A): ``mean`` (H, A) plus its share of the
        plan's noise (``draw_noise``) times ``std``, clipped to [-1, 1]. The first sample is
        the mean itself, so a warm start is never lost; then System 1's proposal
        (``extra``); ``carried`` (k, H, A), elites kept from before, take the last places."""
        n = self.sizes()[round_]
        start = round_ * self.cfg.samples
        samples = (mean + std * self.noise[start : start + n]).clamp(-1.0, 1.0)
        samples[0] = mean
        if self.extra is not None and n > 1:
            samples[1] = self.extra
        if carried is not None and len(carried):
            k = min(len(carried), n - 2)
            if k > 0:
                samples[n - k :] = carried[:k]
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
    """Warm start for the next step: drop the first action, repeat the last (H, A); on
    a batch of plans (k, H, A), each of them."""
    return torch.cat([actions[..., 1:, :], actions[..., -1:, :]], dim=-2)


def slowed(actions: torch.Tensor) -> torch.Tensor:
    """Each of ``actions`` (R, H, A) at every one of ``SCALES``: (R x S, H, A), plan by
    plan. Not judged here: they join the next round's samples, whose ranking keeps the
    copies that hold the rules (feasible first) and among them the cheapest, in the
    evaluation that round makes anyway."""
    scales = torch.tensor(SCALES, device=actions.device, dtype=actions.dtype)
    return (actions[:, None] * scales[None, :, None, None]).reshape(-1, *actions.shape[1:])


def join(*parts: torch.Tensor | None) -> torch.Tensor | None:
    """The plans of ``parts`` (each (k, H, A) or None) as one batch; None if none."""
    parts = [p for p in parts if p is not None and len(p)]
    return torch.cat(parts) if parts else None


def coloured(white: torch.Tensor, beta: float) -> torch.Tensor:
    """``white`` noise (..., H, A) coloured along H: power falling as 1 / f^beta (the
    lowest frequency, 1 / H, stands in for f = 0, as iCEM's sampler does), each entry
    still of unit variance. A circular filter, the same linear map for every sample: one
    (H, H) product (``colouring``)."""
    H = white.shape[-2]
    rows = white.transpose(-2, -1)  # (..., A, H): one GEMM over every sample's rows
    out = rows.reshape(-1, H) @ colouring(H, beta).to(white.device).T
    return out.reshape(rows.shape).transpose(-2, -1)


@functools.cache
def colouring(H: int, beta: float) -> torch.Tensor:
    """The (H, H) matrix that colours white noise along a horizon of H (``coloured``): the
    filter applied to the identity, in float64 then float32. Cached: a filter made per plan
    through the FFT took 24 ms on 2 cores, the product takes microseconds."""
    f = torch.fft.rfftfreq(H, dtype=torch.float64).abs().clamp_min(1.0 / H)
    gain = f ** (-beta / 2)
    # the variance of an entry is the mean of gain^2 over the full (two-sided) spectrum
    full = torch.fft.fftfreq(H, dtype=torch.float64).abs().clamp_min(1.0 / H) ** (-beta)
    gain = gain / full.mean().sqrt()
    eye = torch.eye(H, dtype=torch.float64)
    # column k of the filter applied to the identity is the response to a unit at step k
    return torch.fft.irfft(torch.fft.rfft(eye, dim=0) * gain[:, None], n=H, dim=0).float()
