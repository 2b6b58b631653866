"""A policy trained by reinforcement learning on the scene's raw state: the field's
trained-in baseline, PPO-Lagrangian (``experiments/ppol.py`` trains it).

Unlike System 1 (``agents.policy``), it reads no world model: ``pi(state) -> action`` is
the actor of Stable-Baselines3's ``MlpPolicy`` (tanh layers, its Gaussian's mean as the
action) after the observation normaliser it was trained with (clipped at ``CLIP_OBS``
standard deviations), batched, on any device. A rule it was trained under is in its
weights; nothing checks one when it acts.

Its folder holds ``policy.safetensors`` (the actor-critic's weights, the critic's unused
here) and ``ppol.json`` (format ``lab-ppol``: the settings, among them the scene, the
hidden layers, the normaliser, lambda and the training curve). It is rebuilt from those
two files with plain torch: no pickle, and Stable-Baselines3 is needed only to train.
"""

from __future__ import annotations

from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file
from torch import nn

import scenes
from common.errors import LabError
from common.files import read_versioned_json

FORMAT, VERSION, WHAT = "lab-ppol", 1, "PPO-Lagrangian policy's record"
CLIP_OBS = 10.0  # normalised observations are clipped to this many standard deviations


def read_record(folder: str | Path) -> dict:
    """``ppol.json`` of a trained policy's folder, its fields checked; a clear error for
    anything else (no file, not JSON, another format, a field missing or of a wrong type)."""
    path = Path(folder) / "ppol.json"
    if not path.exists():
        raise LabError(f"{folder} holds no PPO-Lagrangian policy (no ppol.json)")
    record = read_versioned_json(path, FORMAT, VERSION, WHAT, "train one: ./lab ppol")
    config, obs = record.get("config"), record.get("obs_rms")
    fits = (
        isinstance(config, dict)
        and isinstance(config.get("scene"), str)
        and isinstance(config.get("rule"), str)
        and isinstance(config.get("limit"), int | float)
        and isinstance(record.get("net"), list)
        and all(isinstance(n, int) and 0 < n <= 4096 for n in record["net"])
        and isinstance(record.get("env_steps"), int)
        and isinstance(record.get("curve"), list)
        and isinstance(obs, dict)
        and isinstance(obs.get("mean"), list)
        and isinstance(obs.get("var"), list)
        and len(obs["mean"]) == len(obs["var"])
    )
    if not fits:
        raise LabError(f"{path} is damaged: a field is missing or of a wrong type")
    return record


def read_weights(folder: str | Path) -> dict[str, torch.Tensor]:
    try:
        return load_file(str(Path(folder) / "policy.safetensors"))
    except (OSError, SafetensorError) as e:
        raise LabError(f"{folder}/policy.safetensors cannot be read ({e})") from e


class StatePolicy(nn.Module):
    """``forward(state (B, S)) -> actions (B, A)`` in [-1, 1]; ``record`` its ``ppol.json``."""

    def __init__(self, record: dict, weights: dict[str, torch.Tensor]) -> None:
        super().__init__()
        self.record = record
        self.scene = str(record["config"]["scene"])
        obs = record["obs_rms"]
        mean = torch.as_tensor(obs["mean"], dtype=torch.float32)
        std = torch.sqrt(torch.as_tensor(obs["var"], dtype=torch.float32) + 1e-8)
        self.register_buffer("mean", mean)
        self.register_buffer("std", std)
        layers: list[nn.Module] = []
        width = len(mean)
        for i, hidden in enumerate(record["net"]):
            layers.append(nn.Linear(width, int(hidden)))
            layers.append(nn.Tanh())
            width = int(hidden)
            self._take(layers[-2], weights, f"mlp_extractor.policy_net.{2 * i}")
        self.body = nn.Sequential(*layers)
        head = weights["action_net.weight"]
        self.head = nn.Linear(width, head.shape[0])
        self._take(self.head, weights, "action_net")

    @staticmethod
    def _take(layer: nn.Linear, weights: dict[str, torch.Tensor], name: str) -> None:
        w, b = weights[f"{name}.weight"], weights[f"{name}.bias"]
        if w.shape != layer.weight.shape or b.shape != layer.bias.shape:
            raise ValueError(f"{name} is {tuple(w.shape)}, the record says {layer.weight.shape}")
        with torch.no_grad():
            layer.weight.copy_(w)
            layer.bias.copy_(b)

    def forward(self, state: torch.Tensor) -> torch.Tensor:
        x = ((state - self.mean) / self.std).clamp(-CLIP_OBS, CLIP_OBS)
        return self.head(self.body(x)).clamp(-1.0, 1.0)


def load_state_policy(folder: str | Path, scene: str | None, device: torch.device) -> StatePolicy:
    """The policy in ``folder`` for ``scene`` (None: the scene it was trained on); one
    trained on another scene, or a damaged or foreign folder, raises ``LabError`` with
    what to do."""
    record = read_record(folder)
    try:
        policy = StatePolicy(record, read_weights(folder))
    except (KeyError, TypeError, ValueError, RuntimeError) as e:
        raise LabError(f"{folder} holds a broken PPO-Lagrangian policy ({e})") from e
    key = policy.scene if scene is None else scene.lower()
    if policy.scene != key:
        raise LabError(f"{folder} was trained on {policy.scene}, not {key}: train one there")
    cls = scenes.scene_class(key)
    if (len(policy.mean), policy.head.out_features) != (len(cls.STATE), cls.ACTION_DIM):
        raise LabError(f"{folder}'s policy does not fit {key}'s state or action size")
    return policy.to(device).eval()


def trained_policies(folders) -> dict[str, dict]:
    """Of ``folders`` (paths), those holding a readable PPO-Lagrangian policy: folder ->
    its record (damaged or foreign ones left out)."""
    out = {}
    for folder in folders:
        try:
            out[str(folder)] = read_record(folder)
        except LabError:
            continue
    return out
