"""System 1: a reactive policy over the world model's latents (distilled from the
planner by ``experiments/distill.py``).

``pi(s_t, goal) -> a_t`` is a small MLP over the world model's latent and the goal's
task signals (scaled to [-1, 1] by the scene's goal range): one pass per action,
batched, on the model's device.

A guardrail is *trained in* when the labelling planner had it as a hard term: the
policy learns to avoid what the rule forbade in its training situations, and nothing
checks the rule when it acts (the contrast Y. LeCun's talk draws with a guardrail held
at inference time: docs/design.md). ``Agent`` can act with the policy, the planner, or
both (the policy's imagined sequence warm-starts the planner: System 1 feeding System 2,
as TD-MPC2's policy prior does for MPPI).

Saved as a folder: ``policy.safetensors`` (weights) and ``policy.json`` (shape, the
model it was distilled on, the cost set it was distilled under, training figures); a
policy refuses a model other than its own, with a message.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file
from torch import nn

from common.errors import LabError
from common.files import write_json_atomic, write_safetensors_atomic
from worldmodels import compiled
from worldmodels.checkpoint import read_config, read_made_on

log = logging.getLogger(__name__)
FORMAT, VERSION = "lab-policy", 1
WHAT = ("lab policy", "distill it again: ./lab distill --scene SCENE --checkpoint FOLDER")


@dataclass
class PolicyShape:
    """What the network is; stored in the JSON and checked against the model."""

    latent_dim: int
    goal_dim: int
    action_dim: int
    goal_low: list[float]  # the scene's goal range: goals are scaled to [-1, 1] by it
    goal_high: list[float]
    hidden: int = 256  # width of the hidden layers
    layers: int = 2  # hidden layers


class Policy(nn.Module):
    """``forward(s (B, D), goal (B, G)) -> actions (B, A)`` in [-1, 1]."""

    def __init__(self, shape: PolicyShape) -> None:
        super().__init__()
        self.shape = shape
        width = shape.latent_dim + shape.goal_dim
        blocks: list[nn.Module] = []
        for _ in range(shape.layers):
            blocks += [nn.Linear(width, shape.hidden), nn.SiLU()]
            width = shape.hidden
        self.net = nn.Sequential(*blocks, nn.Linear(width, shape.action_dim), nn.Tanh())
        low = torch.tensor(shape.goal_low, dtype=torch.float32)
        high = torch.tensor(shape.goal_high, dtype=torch.float32)
        self.register_buffer("goal_mid", (low + high) / 2)
        self.register_buffer("goal_half", ((high - low) / 2).clamp_min(1e-6))

    def forward(self, s: torch.Tensor, goal: torch.Tensor) -> torch.Tensor:
        g = (goal - self.goal_mid) / self.goal_half  # (B, G) in [-1, 1] over the goal range
        return self.net(torch.cat([s, g], dim=-1))

    @torch.no_grad()
    def imagine(self, model, s0: torch.Tensor, goal: torch.Tensor, steps: int) -> torch.Tensor:
        """The policy acted out in the world model: s0 (B, D), goal (B, G) -> the actions
        it takes (B, steps, A) along its own imagined states. The agent's proposal (batch
        1) is compiled in the background (``worldmodels.compiled.proposal``)."""
        fast = compiled.proposal(acted, self, model, s0, goal, steps)
        return acted(self, model, s0, goal, steps) if fast is None else fast


def acted(policy: Policy, model, s0: torch.Tensor, goal: torch.Tensor, steps: int):
    """``policy`` acting for ``steps`` in ``model`` from s0 (B, D): its actions (B, steps, A)."""
    s, out = s0, []
    for _ in range(steps):
        a = policy(s, goal)  # (B, A)
        out.append(a)
        s = model.rollout(s, a[:, None])[:, 0]  # (B, D): one imagined step
    return torch.stack(out, dim=1)


# --- saving and loading ---------------------------------------------------------------
def save_policy(policy: Policy, folder: str | Path, info: dict) -> Path:
    """Weights and JSON in ``folder``, each written to a temp file and renamed over."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    write_safetensors_atomic(
        folder / "policy.safetensors",
        {k: v.detach().cpu().contiguous() for k, v in policy.state_dict().items()},
    )
    write_json_atomic(
        folder / "policy.json",
        {"format": FORMAT, "version": VERSION, "shape": asdict(policy.shape), **info},
    )
    return folder


def load_policy(folder: str | Path, checkpoint: str | Path, device: torch.device) -> Policy:
    """The policy in ``folder``, for the world model in ``checkpoint``; a policy distilled
    on another model (or not a policy at all, or a damaged one) raises ``LabError``."""
    folder = Path(folder)
    meta = read_made_on(
        folder / "policy.json",
        FORMAT,
        VERSION,
        WHAT,
        checkpoint,
        "distilled",
        "Distill a policy for this model: ./lab distill",
    )
    try:
        shape = PolicyShape(**meta["shape"])
        policy = Policy(shape)
        policy.load_state_dict(load_file(folder / "policy.safetensors"))
    except (KeyError, TypeError, RuntimeError, OSError, ValueError, SafetensorError) as e:
        raise LabError(f"{folder} holds a broken policy ({e}); {WHAT[1]}") from e
    model_shape = read_config(checkpoint)["model"]
    fits = (shape.latent_dim, shape.action_dim)
    if fits != (model_shape["latent_dim"], model_shape["action_dim"]):
        raise LabError(f"{folder}'s policy does not fit this model's latent or action size")
    policy.info = meta
    return policy.to(device).eval()
