"""Measure a checkpoint's probe error on held-out episodes, and store it in the checkpoint.

    ./lab calibrate --checkpoint pretrained/kitchen-state --data data/pretrain/kitchen

The agent's ``margin`` setting plans against the model's own error: a hard
guardrail must hold for every signal value within ``margin`` x the RMSE the
probes make at that step of imagination. Training measures that error at
every save (``probe_rmse`` in the checkpoint's JSON: per signal, the RMSE
at imagined steps 1..16 of open-loop rollouts on held-out windows, in the
signal's units); this measures it for a checkpoint made before that, or on
other data. By default the held-out episodes are the ones training left out
(the seed and share the checkpoint records as ``split``; seed 0 and 10 % for
a checkpoint too old to record them, as training then defaulted to), so on
the training data set the figure is never taken on training episodes.
Weights are untouched.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field

from common.config import parse_config
from common.device import choose_device
from common.errors import LabError
from worldmodels.checkpoint import load_checkpoint, resave_checkpoint
from worldmodels.data import WindowData
from worldmodels.metrics import probe_rmse, rmse_by_signal
from worldmodels.train import HORIZONS


@dataclass
class CalibrateConfig:
    checkpoint: str = field(default="", metadata={"help": "checkpoint folder", "required": True})
    data: str = field(
        default="", metadata={"help": "dataset of the checkpoint's scene", "required": True}
    )
    val_fraction: float = field(
        default=-1.0, metadata={"help": "share of episodes held out (default: as in training)"}
    )
    seed: int = field(
        default=-1, metadata={"help": "seed of the held-out split (default: as in training)"}
    )
    windows: int = field(default=2048, metadata={"help": "held-out windows measured at most"})
    device: str = field(default="auto", metadata={"help": "auto (cuda when present), cpu, cuda"})


def calibrate(cfg: CalibrateConfig) -> dict[str, list[float]]:
    """Measure, store in the checkpoint's JSON, and return {signal: [RMSE at steps 1..H]}."""
    device = choose_device(cfg.device)
    model, config = load_checkpoint(cfg.checkpoint, device)
    if model.cfg.memory:  # its windows would start from a frame, not from a belief
        raise LabError(
            f"{cfg.checkpoint} has a memory: its latent is a belief carried over the "
            "episode, which held-out windows do not give it; measure it on the agent's "
            "own episodes instead (./lab calibrate --checkpoint ... --episodes 60)"
        )
    horizon = max(HORIZONS)
    split = config.get("split") or {}
    seed = cfg.seed if cfg.seed >= 0 else int(split.get("seed", 0))
    share = cfg.val_fraction if cfg.val_fraction >= 0 else float(split.get("val_fraction", 0.1))
    data = WindowData(
        cfg.data,
        config["obs"],
        device,
        horizon,
        val_fraction=share,
        seed=seed,
        pixels=config["obs"] == "pixels",
        frames=model.frames,
    )
    if data.scene != config["scene"]:
        raise LabError(f"{cfg.data} holds {data.scene} data; the checkpoint is {config['scene']}")
    if list(data.signal_names) != list(model.signal_names):
        raise LabError(f"{cfg.data} has other signals than the checkpoint's probes")
    if len(data.val_starts(horizon)) == 0:
        raise LabError(f"{cfg.data} has no held-out episode of more than {horizon} steps")
    table = rmse_by_signal(probe_rmse(model, data, horizon, cfg.windows), data.signal_names)
    if table is None:
        raise LabError(
            f"{cfg.checkpoint}: imagined rollouts overflow (the predictor diverges), so there "
            "is no error to measure; train it again"
        )
    resave_checkpoint(model, cfg.checkpoint, config, probe_rmse=table)
    return table


def main(argv: list[str] | None = None) -> int:
    cfg = parse_config(CalibrateConfig, argv, "lab calibrate", __doc__.split("\n\n")[0])
    try:
        table = calibrate(cfg)
    except LabError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"{cfg.checkpoint}: held-out probe RMSE at imagined steps 1, 4, 16")
    for name, curve in table.items():
        picks = [curve[h - 1] for h in HORIZONS if h <= len(curve)]
        print(f"  {name:>18}: " + "  ".join(f"{x:.4g}" for x in picks))
    return 0


if __name__ == "__main__":
    sys.exit(main())
