"""Gradient descent on the action sequences (Adam), through the world model.

A batch of sequences (the warm start and perturbations of it) is optimised
together: the loss is the cost plus ``violation_weight`` times the hard
terms' violation, with smooth comparisons so the guardrails have a gradient
(the cost is compiled with ``smooth=True`` for this planner). Actions are
kept in [-1, 1] by clamping after each step. The samples are then ranked
exactly (hard comparisons) by the base class.
"""

from __future__ import annotations

import torch

from agents.planners.base import Planner


class GradientDescent(Planner):
    name = "gd"

    def search(self, model, cost, s0, goal, goal_latent, generator, mean):
        cfg = self.cfg
        actions = self.perturb(mean, cfg.init_std, generator).requires_grad_(True)
        opt = torch.optim.Adam([actions], lr=cfg.lr)
        grad_cost = self.smooth_cost or cost
        N = actions.shape[0]
        for _ in range(cfg.iterations):
            with torch.enable_grad():
                latents = model.rollout(s0.expand(N, -1), actions)
                result = grad_cost.evaluate(
                    latents, model.probe(latents, grad_cost.needed), goal_latent, goal
                )
                loss = (result.total + cfg.violation_weight * result.violation).sum()
                opt.zero_grad()
                loss.backward()
            opt.step()
            with torch.no_grad():
                actions.clamp_(-1.0, 1.0)
        return actions.detach()
