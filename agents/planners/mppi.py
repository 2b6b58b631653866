"""Model-predictive path integral control (Williams et al. 2017; TD-MPC2's planner).

Each iteration perturbs the mean, weights every sample by
``softmax(-(cost + violation_weight * violation) / temperature)`` (costs
scaled by their spread, so the temperature is unit-free) and moves the mean
to the weighted average. The mean is a sample too, so it is evaluated and
ranked with the rest.
"""

from __future__ import annotations

import torch

from agents.planners.base import Planner, join


class MPPI(Planner):
    name = "mppi"

    def search(self, model, cost, s0, goal, goal_latent, generator, mean, kept=None):
        cfg = self.cfg
        samples, carried = None, kept
        for it in range(cfg.iterations):
            samples = self.perturb(mean, cfg.init_std, it, carried)  # (n, H, A)
            if it == cfg.iterations - 1:
                break
            _, _, result = self.evaluate(model, cost, s0, samples, goal, goal_latent)
            fixed = self.repaired(model, cost, s0, samples, result, goal, goal_latent)
            score = result.total + cfg.violation_weight * result.violation  # (n,)
            best = torch.topk(score, min(self.kept_count, len(score)), largest=False).indices
            carried = join(fixed, samples[best])
            scale = score.std().clamp_min(1e-6)
            w = torch.softmax(-(score - score.min()) / (cfg.temperature * scale), dim=0)
            mean = torch.einsum("n,nha->ha", w, samples)
        return samples
