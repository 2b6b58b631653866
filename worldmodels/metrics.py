"""How far imagination can be trusted: probe error of open-loop rollouts, and baselines.

For held-out windows, the model encodes the first observation, imagines H
steps on the real actions, and its probes read the signals of each imagined
latent. The error at horizon h, per signal, is the RMSE divided by that
signal's standard deviation in the data (nRMSE: 1 is as bad as predicting
the mean), averaged over signals. Two baselines, in the same units:

* copy-last: nothing moves (the signals at t+h are those at t);
* linear: a linear dynamics model ``x_t+1 = [x_t, a_t, 1] W`` fitted by least
  squares on the training states, rolled out on the same actions, with a
  linear read-out of the signals from the state.
"""

from __future__ import annotations

import torch

from worldmodels.data import WindowData
from worldmodels.model import WorldModel


def _nrmse(pred: torch.Tensor, true: torch.Tensor, std: torch.Tensor) -> torch.Tensor:
    """pred, true (B, H, n) -> nRMSE per horizon step (H,), averaged over signals."""
    rmse = ((pred - true) ** 2).mean(dim=0).sqrt()  # (H, n)
    return (rmse / std).mean(dim=-1)


@torch.no_grad()
def probe_rmse(
    model: WorldModel, data: WindowData, horizon: int, limit: int = 1024
) -> torch.Tensor:
    """RMSE of probed imagined signals at steps 1..H, per signal, in the signals' units (H, n).

    What ``AgentConfig.margin`` plans against: the model's measured error at
    each step of imagination, on held-out windows.
    """
    was = model.training
    model.eval()
    starts = data.val_starts(horizon, limit)
    w = data.windows(starts, horizon)
    s0 = model.encode(data.inputs(starts))  # (B, D)
    imagined = model.rollout(s0, w["actions"])  # (B, H, D)
    pred = model.probes(imagined)  # (B, H, n)
    model.train(was)
    return ((pred - w["signals"][:, 1:]) ** 2).mean(dim=0).sqrt()


def rmse_by_signal(rmse: torch.Tensor, names) -> dict[str, list[float]] | None:
    """(H, n) -> {name: [RMSE at steps 1..H]}, as checkpoints store it (``probe_rmse``);
    None when a rollout diverged (not finite): that measures nothing a margin could use."""
    if not bool(torch.isfinite(rmse).all()):
        return None
    return {k: [round(float(x), 5) for x in rmse[:, i]] for i, k in enumerate(names)}


def model_nrmse(
    model: WorldModel, data: WindowData, horizon: int, limit: int = 1024
) -> torch.Tensor:
    """nRMSE of probed imagined signals at steps 1..H (H,) on held-out windows."""
    return nrmse_curve(probe_rmse(model, data, horizon, limit), data)


def nrmse_curve(rmse: torch.Tensor, data: WindowData) -> torch.Tensor:
    """Per-signal RMSE (H, n) -> nRMSE per step (H,), averaged over signals."""
    return (rmse / data_std(data)).mean(dim=-1)


def data_std(data: WindowData) -> torch.Tensor:
    return torch.tensor(data.norm.signal_std, device=data.device)


@torch.no_grad()
def copy_last_nrmse(data: WindowData, horizon: int, limit: int = 1024) -> torch.Tensor:
    w = data.windows(data.val_starts(horizon, limit), horizon)
    sig = w["signals"]
    return _nrmse(sig[:, :1].expand(-1, horizon, -1), sig[:, 1:], data_std(data))


@torch.no_grad()
def linear_nrmse(data: WindowData, horizon: int, limit: int = 1024) -> torch.Tensor:
    # Fit on training transitions (row t -> t+1 inside an episode).
    starts = data.train_starts
    x = data.state[starts].double()
    a = data.actions[starts].double()
    x1 = data.state[starts + 1].double()
    ones = torch.ones(len(x), 1, dtype=x.dtype, device=x.device)
    W = torch.linalg.lstsq(torch.cat([x, a, ones], 1), x1).solution  # (S+A+1, S)
    sig = data.signals[starts].double()
    R = torch.linalg.lstsq(torch.cat([x, ones], 1), sig).solution  # (S+1, n)

    w = data.windows(data.val_starts(horizon, limit), horizon)
    xt = w["state"][:, 0].double()
    one = torch.ones(len(xt), 1, dtype=xt.dtype, device=xt.device)
    preds = []
    for t in range(horizon):
        xt = torch.cat([xt, w["actions"][:, t].double(), one], 1) @ W
        preds.append(torch.cat([xt, one], 1) @ R)
    pred = torch.stack(preds, 1).float()  # (B, H, n)
    return _nrmse(pred, w["signals"][:, 1:], data_std(data))
