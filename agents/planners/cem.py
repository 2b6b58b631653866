"""Cross-entropy method (Rubinstein 1999; as in PlaNet, Hafner et al. 2019, and DINO-WM).

Sample N sequences from a Gaussian around the mean, keep the K best (feasible
first, see ``base.rank``), refit the Gaussian to them, repeat. The current
mean is always one of the samples, so a warm start is never lost. With
``repair`` (``PlannerConfig``), the cheapest infeasible plans of a round are
repaired onto the hard terms (slowed down, by default: ``Planner.repaired``)
and join the next round.
"""

from __future__ import annotations

import torch

from agents.planners.base import Planner, rank


class CEM(Planner):
    name = "cem"

    def search(self, model, cost, s0, goal, goal_latent, generator, mean):
        cfg = self.cfg
        std = torch.full_like(mean, cfg.init_std)
        samples, fixed = None, None
        for it in range(cfg.iterations):
            samples = self.perturb(mean, std, generator)  # (N, H, A)
            if fixed is not None:  # last round's repaired plans take the last places
                samples[-len(fixed) :] = fixed
            if it == cfg.iterations - 1:
                break  # the base class evaluates the final samples
            _, _, result = self.evaluate(model, cost, s0, samples, goal, goal_latent)
            fixed = self.repaired(model, cost, s0, samples, result, goal, goal_latent)
            elites = samples[rank(result)[: cfg.elites]]  # (K, H, A)
            mean = elites.mean(dim=0)
            std = elites.std(dim=0).clamp_min(cfg.min_std)
        return samples
