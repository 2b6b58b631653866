"""Gradient descent on the action sequences (Adam), through the world model.

A batch of sequences (the warm start and perturbations of it) is optimised
together: the loss is the cost plus ``violation_weight`` times the hard
terms' violation, with smooth comparisons so the guardrails have a gradient
(the cost is compiled with ``smooth=True`` for this planner). Actions are
kept in [-1, 1] by clamping after each step. The samples are then ranked
exactly (hard comparisons) by the base class.
"""

from __future__ import annotations

from agents.planners.base import Planner


class GradientDescent(Planner):
    name = "gd"
    rounds = 1  # one batch of samples; ``iterations`` counts Adam's steps

    def search(self, model, cost, s0, goal, goal_latent, generator, mean, kept=None):
        cfg = self.cfg
        start = self.perturb(mean, cfg.init_std, 0, kept)
        return self.descend(
            model, s0, start, goal, goal_latent, cfg.iterations, cfg.lr, self.smooth_cost or cost
        )
