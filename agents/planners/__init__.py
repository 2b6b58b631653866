"""Planners: one base, one file each; a new planner is one file plus one line here."""

from agents.planners.base import CEM_300, Planner, PlannerConfig, PlanRecord, rank, shift
from agents.planners.cem import CEM
from agents.planners.gd import GradientDescent
from agents.planners.mppi import MPPI

PLANNERS = {"cem": CEM, "mppi": MPPI, "gd": GradientDescent}

__all__ = [
    "CEM",
    "CEM_300",
    "MPPI",
    "PLANNERS",
    "GradientDescent",
    "PlanRecord",
    "Planner",
    "PlannerConfig",
    "rank",
    "shift",
]
