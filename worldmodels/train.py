"""Train a JEPA world model: command line and a Python API a worker thread can drive.

    ./lab train --scene reach --obs state --data data/reach --out runs/reach-state

The run folder holds the checkpoint other parts pick (``checkpoint/``) and
the state for an exact resume (``resume.json`` and ``resume.safetensors``:
weights with the EMA target, optimiser moments, step, the sampler's RNG).
Ctrl-C (or ``Trainer.stop()``) saves both and stops; running the same command
again goes on from that step and takes the same next step an uninterrupted
run would. Nothing is pickled: tensors go to safetensors, the rest to JSON.

``Trainer`` runs the loop in the calling thread (``run``) or in a daemon
thread (``start``), never touching Streamlit; ``snapshot()`` returns a copy
of the progress (step, loss terms, validation figures, effective rank) made
under a lock; ``pause()``, ``resume()`` and ``stop()`` take effect between
steps.
"""

from __future__ import annotations

import contextlib
import copy
import logging
import math
import sys
import threading
import time
from collections import deque
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from safetensors import SafetensorError
from safetensors.torch import load_file

import scenes
from common.config import parse_config
from common.device import choose_device
from common.errors import LabError
from common.files import read_versioned_json, write_json_atomic, write_safetensors_atomic
from worldmodels.checkpoint import save_checkpoint
from worldmodels.data import WindowData
from worldmodels.loss import LossConfig, effective_rank, ema_momentum, ema_update
from worldmodels.metrics import nrmse_curve, probe_rmse, rmse_by_signal
from worldmodels.model import ModelConfig, WorldModel
from worldmodels.objective import losses

log = logging.getLogger(__name__)
HORIZONS = (1, 4, 16)
# what a resume file written before a setting existed meant
BEFORE = {"probe_hidden": 64, "objective": "jepa"}
RESUME_FORMAT, RESUME_VERSION = "lab-train-resume", 1


@dataclass
class TrainConfig:
    """What to train on and how; saved in the run folder."""

    data: str = field(
        default="", metadata={"help": "dataset folder (from ./lab collect)", "required": True}
    )
    out: str = field(default="", metadata={"help": "run folder (default runs/<scene>-<obs>)"})
    scene: str = field(default="", metadata={"help": "scene name, checked against the data"})
    obs: str = field(
        default="state", metadata={"help": "what the encoder sees", "choices": ["state", "pixels"]}
    )
    steps: int = field(default=3000, metadata={"help": "optimiser steps in all"})
    seconds: float = field(
        default=0.0,
        metadata={"help": "stop (and save) after this many seconds of training; 0: no limit"},
    )
    batch: int = field(default=256, metadata={"help": "windows per step"})
    lr: float = field(default=1e-3, metadata={"help": "Adam learning rate (cosine decay to 10%)"})
    latent_dim: int = field(default=64, metadata={"help": "D, size of the latent"})
    hidden: int = field(default=256, metadata={"help": "width of the state encoder's MLP"})
    predictor_hidden: int = field(
        default=ModelConfig.predictor_hidden,
        metadata={"help": "width of the predictor's MLP (sets the planning speed)"},
    )
    predictor_layers: int = field(default=2, metadata={"help": "hidden layers of the predictor"})
    probe_hidden: int = field(
        default=ModelConfig.probe_hidden,
        metadata={"help": "width of each signal's probe head (the cost reads them every step)"},
    )
    horizon: int = field(default=8, metadata={"help": "open-loop steps in the loss"})
    frames: int = field(
        default=2,
        metadata={"help": "pixels: consecutive frames the encoder sees (2: it sees motion)"},
    )
    last_action: bool = field(
        default=True,
        metadata={"help": "pixels: the encoder also gets the action just taken"},
    )
    proprio: bool = field(
        default=False,
        metadata={
            "help": "pixels: the encoder also reads the robot's own sensors (the scene's "
            "PROPRIO entries of its state: hand, joints)"
        },
    )
    var_weight: float = field(default=1.0, metadata={"help": "VICReg variance weight (0: off)"})
    cov_weight: float = field(default=0.04, metadata={"help": "VICReg covariance weight (0: off)"})
    ema: bool = field(default=True, metadata={"help": "EMA target encoder (off: collapse demo)"})
    objective: str = field(
        default="jepa",
        metadata={
            "help": "jepa (latent prediction) or generative (predicts the next frames in "
            "pixels, for comparison: worldmodels/generative.py)",
            "choices": ["jepa", "generative"],
        },
    )
    decoder: bool = field(
        default=True, metadata={"help": "train the display decoder (needs pixels)"}
    )
    eval_every: int = field(default=500, metadata={"help": "steps between evaluations and saves"})
    val_fraction: float = field(default=0.1, metadata={"help": "share of episodes held out"})
    seed: int = field(
        default=0, metadata={"help": "seed of the initial weights, split and batches"}
    )
    device: str = field(default="auto", metadata={"help": "auto (cuda when present), cpu or cuda"})
    progress: bool = field(default=True, metadata={"help": "show a progress bar"})

    def loss_config(self) -> LossConfig:
        return LossConfig(
            horizon=self.horizon,
            var_weight=self.var_weight,
            cov_weight=self.cov_weight,
            ema=self.ema and self.objective == "jepa",  # a generative model has no target
        )


@dataclass
class Progress:
    """A copy of where training stands, for the app and the command line."""

    status: str = "starting"  # starting, running, paused, stopped, finished, error
    step: int = 0
    total: int = 0
    elapsed: float = 0.0  # seconds of training (pauses excluded)
    eta: float | None = None  # seconds left (eta_seconds); None until an evaluation is timed
    losses: dict[str, float] = field(default_factory=dict)
    validation: dict[str, float] = field(default_factory=dict)
    latent_std: list[float] = field(default_factory=list)  # per dimension, held-out
    history: list[dict] = field(default_factory=list)  # {"step", "loss/...", "val/..."}
    samples: dict[str, np.ndarray] = field(default_factory=dict)  # "real", "decoded" uint8
    checkpoint: str = ""
    error: str = ""


ETA_WINDOW = 50  # recent steps whose wall time sets the pace of the time-left estimate


def eta_seconds(
    step: int, total: int, eval_every: int, recent: list[float], eval_s: float | None
) -> float | None:
    """Seconds left: the remaining steps at the pace of the ``recent`` steps' wall times
    (a moving window: the first steps are slow, and the app's server shares its cores),
    plus the evaluations still to come at ``eval_s`` each (the last one's duration). None
    until an evaluation has been timed: they are much of a run (from step time alone and
    from step 4, the first estimate said "about 54 s left" of a run that took 150 s)."""
    if eval_s is None or not recent or step > total:
        return None
    # evaluations from this step's on (it is estimated before this step's evaluation
    # runs): every eval_every steps ...
    evals = total // eval_every - (step - 1) // eval_every
    evals += total % eval_every != 0  # ... and once at the end
    return (total - step) * sum(recent) / len(recent) + evals * eval_s


def lr_at(step: int, cfg: TrainConfig) -> float:
    """Cosine decay from lr to lr/10 over the run; a pure function of the step."""
    frac = min(step / max(cfg.steps, 1), 1.0)
    return cfg.lr * (0.1 + 0.9 * (math.cos(math.pi * frac) + 1) / 2)


class Trainer:
    """One training run; see the module docstring."""

    def __init__(self, cfg: TrainConfig, device: torch.device | None = None) -> None:
        if not cfg.data:
            raise LabError("say which data to train on: --data data/<scene>")
        self.device = device or choose_device(cfg.device)
        self.data = WindowData(
            cfg.data,
            cfg.obs,
            self.device,
            cfg.horizon,
            cfg.val_fraction,
            cfg.seed,
            pixels=cfg.decoder,
            frames=cfg.frames,
        )
        if cfg.scene and scenes.scene_key(cfg.scene) != self.data.scene:
            raise LabError(f"{cfg.data} holds {self.data.scene} data, not {cfg.scene}")
        self.cfg = copy.copy(cfg)
        self.cfg.scene = self.data.scene
        self.cfg.out = cfg.out or f"runs/{self.data.scene}-{cfg.obs}"
        self.out = Path(self.cfg.out)
        self.loss_cfg = cfg.loss_config()
        self.eval_horizon = min(max(HORIZONS), int(self.data.episodes[:, 1].min()) - 1)
        self.probe_rmse: dict[str, list[float]] = {}  # held-out, per signal and step (margins)
        # which episodes were held out (./lab calibrate measures on the same ones)
        self.split = {"seed": cfg.seed, "val_fraction": cfg.val_fraction}

        torch.manual_seed(cfg.seed)
        model_cfg = ModelConfig(
            obs=cfg.obs,
            state_dim=int(self.data.state.shape[1]),
            action_dim=int(self.data.actions.shape[1]),
            latent_dim=cfg.latent_dim,
            hidden=cfg.hidden,
            predictor_hidden=cfg.predictor_hidden,
            predictor_layers=cfg.predictor_layers,
            probe_hidden=cfg.probe_hidden,
            frames=self.data.frames,
            last_action=bool(cfg.last_action and cfg.obs == "pixels"),
            proprio=self._proprio(),
            signals=tuple(self.data.signal_names),
            decoder=bool(cfg.decoder and self.data.has_pixels),
            objective=cfg.objective,
        )
        self.model = WorldModel(model_cfg).to(self.device)
        self.data.norm.apply(self.model)
        self.model.target_encoder.load_state_dict(self.model.encoder.state_dict())
        trainable = [p for p in self.model.parameters() if p.requires_grad]
        self.opt = torch.optim.Adam(trainable, lr=cfg.lr)
        self.gen = torch.Generator().manual_seed(cfg.seed)
        self.step = 0
        self.elapsed = 0.0

        self._lock = threading.Lock()
        self._progress = Progress(total=cfg.steps)
        self._run_flag = threading.Event()  # set: running; clear: paused
        self._run_flag.set()
        self._stop_flag = threading.Event()
        self._thread: threading.Thread | None = None
        self.turn = contextlib.nullcontext  # each step in it: the app passes its turns
        self._resume_if_any()

    def _proprio(self) -> tuple[int, ...]:
        """The state entries a pixel model with ``proprio`` reads (the scene's PROPRIO)."""
        if not (self.cfg.proprio and self.cfg.obs == "pixels"):
            return ()
        scene = scenes.scene_class(self.data.scene)
        if not scene.PROPRIO:
            raise LabError(f"{self.data.scene} names no sensors of the robot's own (PROPRIO)")
        names = [s.name for s in scene.STATE]
        return tuple(names.index(n) for n in scene.PROPRIO)

    # --- control (any thread) ------------------------------------------------
    def start(self) -> threading.Thread:
        """Train in a daemon thread; returns it."""
        self._thread = threading.Thread(target=self._run_safely, name="lab-train", daemon=True)
        self._thread.start()
        return self._thread

    def pause(self) -> None:
        self._run_flag.clear()
        self._set(status="paused")

    def resume(self) -> None:
        self._set(status="running")
        self._run_flag.set()

    def stop(self) -> None:
        """Save and stop after the current step (also wakes a paused run)."""
        self._stop_flag.set()
        self._run_flag.set()

    def snapshot(self) -> Progress:
        with self._lock:
            return copy.deepcopy(self._progress)

    def join(self, timeout: float | None = None) -> None:
        if self._thread is not None:
            self._thread.join(timeout)

    # --- the loop ---------------------------------------------------------------
    def _run_safely(self) -> None:
        try:
            self.run()
        except Exception as e:  # a worker thread must report, not vanish
            log.exception("training failed")
            self._set(status="error", error=f"{type(e).__name__}: {e}")

    def run(self, bar=None) -> Progress:
        cfg = self.cfg
        self._set(status="running", step=self.step)
        budget_start = self.elapsed
        recent: deque[float] = deque(maxlen=ETA_WINDOW)  # wall seconds of the last steps
        eval_s = None  # wall seconds of the last evaluation and save
        while self.step < cfg.steps:
            if not self._run_flag.is_set():
                self._run_flag.wait()
            if self._stop_flag.is_set():
                break
            if cfg.seconds and self.elapsed - budget_start >= cfg.seconds:
                break
            began = time.perf_counter()  # wall time, waiting for a turn included
            with self.turn():  # the app's server shares its cores in turns (app.runs.Turns)
                t0 = time.perf_counter()
                terms = self.train_step()
            self.elapsed += time.perf_counter() - t0
            recent.append(time.perf_counter() - began)
            eta = eta_seconds(self.step, cfg.steps, cfg.eval_every, list(recent), eval_s)
            with self._lock:
                p = self._progress
                p.step, p.elapsed, p.eta, p.losses = self.step, self.elapsed, eta, terms
                if self.step % 10 == 0 or self.step == 1:
                    p.history.append(
                        {"step": self.step, **{f"loss/{k}": v for k, v in terms.items()}}
                    )
            if bar is not None:
                bar.update(1)
                if self.step % 10 == 0:
                    bar.set_postfix({k: f"{v:.3g}" for k, v in terms.items() if k != "total"})
            if self.step % cfg.eval_every == 0 or self.step == cfg.steps:
                t0 = time.perf_counter()
                with self.turn():  # the heaviest part, in turn with the server's others
                    self.evaluate_and_save()
                eval_s = time.perf_counter() - t0
        if self.step % cfg.eval_every != 0 and self.step != cfg.steps:
            self.evaluate_and_save()  # stopped early: keep what was learnt
        status = "finished" if self.step >= cfg.steps else "stopped"
        self._set(status=status)
        return self.snapshot()

    def train_step(self) -> dict[str, float]:
        """One optimiser step; returns the loss terms as floats."""
        model, cfg = self.model, self.cfg
        model.train()
        for group in self.opt.param_groups:
            group["lr"] = lr_at(self.step, cfg)
        batch = self.data.sample(cfg.batch, self.gen)
        terms = losses(model, batch, self.loss_cfg)
        self.opt.zero_grad(set_to_none=True)
        terms["total"].backward()
        self.opt.step()
        if self.loss_cfg.ema:
            m = ema_momentum(self.step, cfg.steps, self.loss_cfg.ema_start, self.loss_cfg.ema_end)
            ema_update(model, m)
        self.step += 1
        return {k: float(v.detach()) for k, v in terms.items()}

    @torch.no_grad()
    def evaluate(self) -> dict[str, float]:
        """Held-out figures: probe nRMSE of imagined signals, effective rank, latent spread."""
        model = self.model
        model.eval()
        val = {}
        if self.eval_horizon >= 1:
            rmse = probe_rmse(model, self.data, self.eval_horizon)  # (H, n), signal units
            curve = nrmse_curve(rmse, self.data)
            self.probe_rmse = rmse_by_signal(rmse, self.data.signal_names) or {}
            for h in HORIZONS:
                if h <= self.eval_horizon:
                    val[f"nrmse_h{h}"] = float(curve[h - 1])
        rows = self.data.val_starts(0, limit=2048)
        z = model.encode(self.data.inputs(rows))  # (N, D)
        val["effective_rank"] = effective_rank(z)
        std = z.std(dim=0)
        samples = {}
        if model.decoder is not None and self.data.pixels is not None:
            pick = rows[torch.linspace(0, len(rows) - 1, 6).long()]
            samples = {
                "real": self.data.pixels[pick].cpu().numpy(),
                "decoded": model.decode(model.encode(self.data.inputs(pick))).cpu().numpy(),
            }
        model.train()
        with self._lock:
            p = self._progress
            p.validation, p.latent_std, p.samples = val, std.cpu().tolist(), samples
            p.history.append({"step": self.step, **{f"val/{k}": v for k, v in val.items()}})
        return val

    def evaluate_and_save(self) -> None:
        val = self.evaluate()
        info = {
            "scene": self.data.scene,
            "obs": self.cfg.obs,
            "step": self.step,
            "train_seconds": round(self.elapsed, 2),
            "normalisation": asdict(self.data.norm),
            "validation": val,
            "split": self.split,
            "probe_rmse": self.probe_rmse,
            "data": str(self.cfg.data),
        }
        path = save_checkpoint(self.model, self.out / "checkpoint", info)
        self._save_resume()
        self._set(checkpoint=str(path))

    # --- exact resume -------------------------------------------------------------
    def _save_resume(self) -> None:
        """Weights (EMA included), optimiser moments and the sampler RNG to safetensors."""
        tensors = {
            f"model.{k}": v.detach().cpu().contiguous() for k, v in self.model.state_dict().items()
        }
        opt = self.opt.state_dict()
        for idx, state in opt["state"].items():
            for k, v in state.items():
                tensors[f"opt.{idx}.{k}"] = torch.as_tensor(v).detach().cpu().contiguous()
        tensors["rng.sampler"] = self.gen.get_state()
        write_safetensors_atomic(self.out / "resume.safetensors", tensors)
        with self._lock:
            history = list(self._progress.history)
        write_json_atomic(
            self.out / "resume.json",
            {
                "format": RESUME_FORMAT,
                "version": RESUME_VERSION,
                "config": asdict(self.cfg),
                "step": self.step,
                "elapsed": self.elapsed,
                "history": history[-2000:],
            },
        )

    def _resume_if_any(self) -> None:
        meta_path, tensor_path = self.out / "resume.json", self.out / "resume.safetensors"
        if not meta_path.exists():
            return
        try:
            meta = read_versioned_json(
                meta_path,
                RESUME_FORMAT,
                RESUME_VERSION,
                "training resume state",
                "start over in another --out",
            )
            tensors = load_file(str(tensor_path))
        except (OSError, ValueError, SafetensorError) as e:
            raise LabError(
                f"{self.out} holds a damaged resume state ({e}); "
                "delete the folder to start over, or use another --out"
            ) from e
        old = meta.get("config", {})
        fixed = (
            "obs",
            "latent_dim",
            "hidden",
            "predictor_hidden",
            "predictor_layers",
            "probe_hidden",
            "horizon",
            "seed",
            "batch",
            "ema",
            "decoder",
            "objective",
        )
        diff = [k for k in fixed if old.get(k, BEFORE.get(k)) != getattr(self.cfg, k)]
        if diff:
            raise LabError(
                f"{self.out} holds a run with other settings ({', '.join(diff)}): "
                "use the same settings to resume, or another --out"
            )
        state = {k[6:]: v for k, v in tensors.items() if k.startswith("model.")}
        self.model.load_state_dict({k: v.to(self.device) for k, v in state.items()})
        opt = self.opt.state_dict()
        for idx in range(len(opt["param_groups"][0]["params"])):
            keys = [k for k in tensors if k.startswith(f"opt.{idx}.")]
            if keys:
                opt["state"][idx] = {
                    k.split(".", 2)[2]: tensors[k].to(self.device)
                    if tensors[k].dim() > 0
                    else tensors[k]
                    for k in keys
                }
        self.opt.load_state_dict(opt)
        self.gen.set_state(tensors["rng.sampler"])
        self.step = int(meta["step"])
        self.elapsed = float(meta.get("elapsed", 0.0))
        with self._lock:
            self._progress.history = list(meta.get("history", []))
            self._progress.step = self.step
        log.info("resuming %s from step %d", self.out, self.step)

    def _set(self, **kw) -> None:
        with self._lock:
            for k, v in kw.items():
                setattr(self._progress, k, v)


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    cfg = parse_config(
        TrainConfig, argv, "lab train", "Train a JEPA world model on collected data."
    )
    try:
        trainer = Trainer(cfg)
    except LabError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(
        f"training {trainer.data.scene} from {cfg.obs} on {trainer.device}, "
        f"{len(trainer.data.train_ids)} train / {len(trainer.data.val_ids)} held-out episodes, "
        f"into {trainer.out}"
    )
    from tqdm import tqdm  # the command line's bar (a bare GPU machine has no tqdm)

    bar = tqdm(
        total=cfg.steps,
        initial=trainer.step,
        unit="step",
        desc="train",
        disable=None if cfg.progress else True,
        dynamic_ncols=True,
    )
    try:
        result = trainer.run(bar)
    except KeyboardInterrupt:
        bar.close()
        trainer.evaluate_and_save()
        print(f"\nstopped at step {trainer.step}; saved. Run the same command to resume.")
        return 130
    bar.close()
    val = ", ".join(f"{k} {v:.3f}" for k, v in result.validation.items())
    print(f"{result.status} at step {result.step} in {result.elapsed:.1f} s; held-out: {val}")
    print(f"checkpoint: {result.checkpoint}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
