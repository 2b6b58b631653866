"""Cross-entropy method (Rubinstein 1999; as in PlaNet, Hafner et al. 2019, and DINO-WM).

Sample N sequences from a Gaussian around the mean, keep the K best (feasible
first, see ``base.rank``), refit the Gaussian to them, repeat. The current
mean is always one of the samples, so a warm start is never lost. With
``repair`` (``PlannerConfig``), the cheapest infeasible plans of a round are
repaired onto the hard terms (slowed down, by default: ``Planner.repaired``)
and join the next round. The iCEM settings (``noise_beta``, ``keep``, ``decay``:
``PlannerConfig``) colour the noise, carry elites between rounds and plans, and shrink
later rounds.
"""

from __future__ import annotations

import torch

from agents.planners.base import Planner, join, rank


class CEM(Planner):
    name = "cem"

    def search(self, model, cost, s0, goal, goal_latent, generator, mean, kept=None):
        cfg = self.cfg
        std = torch.full_like(mean, cfg.init_std)
        samples, carried = None, kept
        for it in range(cfg.iterations):
            # last round's repaired plans and kept elites take the last places
            samples = self.perturb(mean, std, it, carried)  # (n, H, A)
            if it == cfg.iterations - 1:
                break  # the base class evaluates the final samples
            _, _, result = self.evaluate(model, cost, s0, samples, goal, goal_latent)
            fixed = self.repaired(model, cost, s0, samples, result, goal, goal_latent)
            order = rank(result)
            elites = samples[order[: cfg.elite_count]]  # (K, H, A)
            carried = join(fixed, elites[: self.kept_count])
            mean = elites.mean(dim=0)
            std = elites.std(dim=0).clamp_min(cfg.min_std)
        return samples
