"""A high level in the same latent space: latent macro-actions and a predictor over them.

    ./lab highlevel --checkpoint pretrained/wall-state --data data/wall

The world model predicts one primitive step ahead, and a planner that imagines
16 steps cannot see a way that is longer (Wall's door, getting behind Push's
block). HWM (Hierarchical Planning with Latent World Models, 2026) adds a second
level to the same model:

* a macro-action encoder maps a chunk of ``k`` primitive actions (``k`` x A
  numbers) to a small latent action ``z`` (``code`` numbers);
* a high-level predictor maps ``(s_t, z)`` to ``s_t+k``, in the frozen world
  model's latent space (the targets are its encoder's latents of the real state
  ``k`` steps later: no collapse to guard against, the encoder does not move).

Both are trained together on the exploration data's own chunks, rolled out
``chunks`` macro-steps ahead (the error of chaining them, not of one, is what
long plans meet). A planner then searches ``z`` sequences: its [-1, 1] box is
mapped onto the range the encoder gave the data's chunks (the 1st to 99th
percentile of each dimension, as HWM bounds its latent actions), so what it
samples is what the predictor was trained on. ``agents/hierarchy.py`` plans with
it and hands the low level its first predicted latent as the subgoal.

Beside it, with ``--subgoal``, a second way to the subgoal that needs no search:
a subgoal policy (HIQL, Park et al. 2023) maps ``(s_t, goal latent)`` to the
latent to be at ``k`` steps on. It is trained by advantage-weighted regression on
the data's own chunks: the target is the real ``s_t+k``, weighted by
``exp(beta x A)`` where ``A`` is how many steps nearer the goal ``s_t+k`` is than
``s_t``, read by the model's steps-to-go head (``worldmodels/distance.py``); goals
are later states of the same episode (hindsight) or, a share of the time, any
state. Its subgoals are states the data visited, where a planner over a learned
predictor finds the states the predictor gets wrong.

Saved as a folder: ``high.safetensors`` and ``high.json`` (shape, the world
model it was trained on, its figures); refused with a message for another model.
Training saves every ``save_every`` steps (weights and the optimiser's state) and
goes on exactly from there.
"""

from __future__ import annotations

import json
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from safetensors import SafetensorError
from safetensors.torch import load_file
from torch import nn

from common.config import parse_config
from common.device import choose_device
from common.errors import LabError
from common.files import write_json_atomic, write_safetensors_atomic
from scenes.dataset import window_starts
from worldmodels.checkpoint import latent_identity, load_checkpoint, read_made_on
from worldmodels.data import WindowData
from worldmodels.distance import encode_rows
from worldmodels.model import mlp

FORMAT, VERSION = "lab-highlevel", 1
WHAT = ("lab high level", "train it again: ./lab highlevel --checkpoint FOLDER --data DATA")
CODE_RANGE = (1.0, 99.0)  # percentiles of the data's codes the planner's box spans
AWR_CLIP = 50.0  # the subgoal policy's largest advantage weight


@dataclass
class HighShape:
    """What the networks are; stored in the JSON and checked against the model."""

    latent_dim: int
    action_dim: int
    k: int = 8  # primitive steps per macro-action
    code: int = 8  # size of a latent macro-action
    hidden: int = 256  # width of the high-level predictor
    layers: int = 2  # its hidden layers
    members: int = 1  # predictors in the ensemble (their spread: where the model is unsure)
    subgoal: bool = False  # a subgoal policy too (HIQL: ``propose``)


class HighLevel(nn.Module):
    """``encode_actions((B, k, A)) -> z (B, code)``; ``step(s (B, D), z) -> s_t+k``."""

    def __init__(self, shape: HighShape) -> None:
        super().__init__()
        self.shape = shape
        self.encoder = mlp([shape.k * shape.action_dim, 128, 128, shape.code])
        sizes = [shape.latent_dim + shape.code] + [shape.hidden] * shape.layers
        self.predictors = nn.ModuleList(
            [mlp([*sizes, shape.latent_dim]) for _ in range(shape.members)]
        )
        for p in self.predictors:  # start at "nothing moves"
            nn.init.zeros_(p[-1].weight)
            nn.init.zeros_(p[-1].bias)
        self.proposer = None
        if shape.subgoal:  # (s_t, goal) -> the latent k steps on, towards the goal
            self.proposer = mlp([2 * shape.latent_dim, 256, 256, shape.latent_dim])
            nn.init.zeros_(self.proposer[-1].weight)
            nn.init.zeros_(self.proposer[-1].bias)
        # the data's code range (CODE_RANGE), set after training: the planner's box
        self.register_buffer("code_low", -torch.ones(shape.code))
        self.register_buffer("code_high", torch.ones(shape.code))
        self.info: dict = {}

    def encode_actions(self, actions: torch.Tensor) -> torch.Tensor:
        """(..., k, A) primitive actions -> (..., code)."""
        return self.encoder(actions.flatten(-2))

    def step(self, s: torch.Tensor, z: torch.Tensor, member: int = 0) -> torch.Tensor:
        """s (B, D), z (B, code) -> the latent k steps on (B, D): residual, as the low level."""
        return s + self.predictors[member](torch.cat([s, z], dim=-1))

    def from_box(self, u: torch.Tensor) -> torch.Tensor:
        """A planner's macro-actions in [-1, 1] (..., code) -> codes in the data's range."""
        mid, half = (self.code_high + self.code_low) / 2, (self.code_high - self.code_low) / 2
        return mid + half * u

    def propose(self, s: torch.Tensor, goal: torch.Tensor) -> torch.Tensor:
        """The subgoal policy: latents s (B, D) and the goal's (B, D) -> the latent to be at
        k steps on (B, D)."""
        if self.proposer is None:
            raise LabError("this high level has no subgoal policy: train it with --subgoal")
        return s + self.proposer(torch.cat([s, goal.expand_as(s)], dim=-1))

    def rollouts(self, s0: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        """s0 (B, D), codes (B, L, code) -> each member's latents after each macro-action
        (E, B, L, D), each member chaining its own predictions."""
        out = []
        for e in range(len(self.predictors)):
            s, path = s0, []
            for i in range(z.shape[1]):
                s = self.step(s, z[:, i], e)
                path.append(s)
            out.append(torch.stack(path, dim=1))
        return torch.stack(out)

    def rollout(self, s0: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        """s0 (B, D), codes (B, L, code) -> the latents after each macro-action (B, L, D):
        the members' mean."""
        return self.rollouts(s0, z).mean(dim=0)


DOUBT = "doubt"  # the signal a high-level cost reads the ensemble's disagreement by


class MacroModel:
    """The high level as a planner sees a model: ``rollout`` over macro-actions in [-1,
    1] (mapped to the data's code range), and the world model's probes and distance on
    the predicted latents (they live in its latent space). One more signal, ``doubt``:
    how far the ensemble's members disagree on the probed signals (the root mean
    variance across members, in units of each signal's spread; 0 for one member): a
    planner that searches a learned model finds the plans it gets wrong (Push: a block
    that drifts to the goal untouched), and a cost on ``doubt`` keeps it where the
    members agree, as PETS and MOPO do with theirs."""

    def __init__(self, high: HighLevel, model) -> None:
        self.high, self.model = high, model

    @property
    def signal_names(self):
        return (*self.model.signal_names, DOUBT)

    def imagine(self, s0: torch.Tensor, u: torch.Tensor, names):
        """Latents (N, L, D), the members' mean, and the signals ``names`` on them."""
        paths = self.high.rollouts(s0, self.high.from_box(u))  # (E, N, L, D)
        latents = paths.mean(dim=0)
        signals = self.model.probe(latents, [n for n in names if n != DOUBT])
        if DOUBT in names:
            if len(paths) == 1:
                signals[DOUBT] = latents.new_zeros(latents.shape[:-1])
            else:
                probed = self.model.probes.normalised(paths)  # (E, N, L, n)
                signals[DOUBT] = probed.var(dim=0).mean(dim=-1).sqrt()
        return latents, signals

    def rollout(self, s0: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
        return self.high.rollout(s0, self.high.from_box(u))

    def probe(self, s: torch.Tensor, names=None) -> dict[str, torch.Tensor]:
        names = self.model.signal_names if names is None else names
        return self.model.probe(s, [n for n in names if n != DOUBT])


# --- saving and loading ---------------------------------------------------------------
def save_high(high: HighLevel, folder: str | Path, info: dict, extra: dict | None = None) -> Path:
    """Weights (and ``extra`` tensors: the optimiser's state) and JSON in ``folder``, each
    written to a temp file and renamed over."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    tensors = {k: v.detach().cpu().contiguous() for k, v in high.state_dict().items()}
    tensors.update({f"optim.{k}": v.cpu().contiguous() for k, v in (extra or {}).items()})
    write_safetensors_atomic(folder / "high.safetensors", tensors)
    meta = {"format": FORMAT, "version": VERSION, "shape": asdict(high.shape), **info}
    write_json_atomic(folder / "high.json", meta)
    return folder


def load_high(
    folder: str | Path, checkpoint: str | Path, device: torch.device, with_optim: bool = False
):
    """The high level in ``folder`` for the world model in ``checkpoint``; one trained on
    another model (or not a high level, or a damaged one) raises ``LabError``. With
    ``with_optim``: (high level, the optimiser's saved tensors)."""
    folder = Path(folder)
    meta = read_made_on(
        folder / "high.json",
        FORMAT,
        VERSION,
        WHAT,
        checkpoint,
        "trained",
        "Train a high level for this model: ./lab highlevel",
    )
    try:
        shape = HighShape(**meta["shape"])
        high = HighLevel(shape)
        tensors = load_file(folder / "high.safetensors")
        own = {k: v for k, v in tensors.items() if not k.startswith("optim.")}
        high.load_state_dict(own)
    except (KeyError, TypeError, RuntimeError, OSError, ValueError, SafetensorError) as e:
        raise LabError(f"{folder} holds a broken high level ({e}); {WHAT[1]}") from e
    high.info = meta
    high = high.to(device).eval()
    if not with_optim:
        return high
    return high, {k[6:]: v for k, v in tensors.items() if k.startswith("optim.")}


# --- training -------------------------------------------------------------------------
@dataclass
class HighConfig:
    """./lab highlevel: macro-action encoder and high-level predictor, the model frozen."""

    checkpoint: str = field(default="", metadata={"help": "world model folder", "required": True})
    data: str = field(default="", metadata={"help": "exploration data folder", "required": True})
    out: str = field(default="", metadata={"help": "folder (default runs/high-<scene>)"})
    k: int = field(default=8, metadata={"help": "primitive steps per macro-action"})
    code: int = field(default=8, metadata={"help": "size of a latent macro-action"})
    hidden: int = field(default=256, metadata={"help": "width of the high-level predictor"})
    members: int = field(default=1, metadata={"help": "predictors in the ensemble"})
    subgoal: bool = field(
        default=False,
        metadata={"help": "train a subgoal policy too (needs the model's steps-to-go head)"},
    )
    beta: float = field(default=0.5, metadata={"help": "subgoal policy: advantage temperature"})
    other_goals: float = field(
        default=0.3, metadata={"help": "subgoal policy: share of goals from anywhere in the data"}
    )
    reached: float = field(
        default=0.0,
        metadata={
            "help": "subgoal policy: share of its examples from episodes that reached their "
            "own goal, aimed at the state that first counted as reaching it"
        },
    )
    pool: int = field(
        default=1,
        metadata={
            "help": "draw batch x pool windows and train on batch of them, in proportion "
            "to their error (1: uniform)"
        },
    )
    chunks: int = field(default=4, metadata={"help": "macro-steps chained in training"})
    probe_weight: float = field(
        default=1.0,
        metadata={"help": "weight of the probed signals' error (in units of their spread)"},
    )
    steps: int = field(default=3000, metadata={"help": "training steps"})
    batch: int = field(default=512, metadata={"help": "windows a step"})
    lr: float = field(default=1e-3, metadata={"help": "Adam's step"})
    save_every: int = field(default=500, metadata={"help": "save (and resume from) every N"})
    seed: int = field(default=0, metadata={"help": "sampling and initial weights"})
    device: str = field(default="auto", metadata={"help": "auto, cpu or cuda"})
    progress: bool = field(default=True, metadata={"help": "show a progress bar"})


class HighTrainer:
    """Trains a high level on a frozen world model's latents; ``run()`` goes on from the
    last save."""

    FREE = ("steps", "progress", "device", "out", "save_every")  # may change on resume

    def __init__(self, cfg: HighConfig, device: torch.device | None = None) -> None:
        if min(cfg.k, cfg.code, cfg.hidden, cfg.chunks, cfg.batch, cfg.save_every, cfg.members) < 1:
            raise LabError("--k, --code, --hidden, --chunks, --batch and --save-every must be >= 1")
        self.cfg = cfg
        self.device = device or choose_device(cfg.device)
        self.model, config = load_checkpoint(cfg.checkpoint, self.device)
        self.scene = str(config.get("scene"))
        obs = self.model.cfg.obs
        data = WindowData(
            cfg.data,
            obs,
            self.device,
            horizon=1,
            val_fraction=0.1,
            pixels=obs == "pixels",
            frames=self.model.cfg.frames,
        )
        if data.scene != self.scene:
            raise LabError(f"{cfg.data} is {data.scene} data; the model is {self.scene}'s")
        span = cfg.k * cfg.chunks
        self.train_starts = torch.as_tensor(window_starts(data.episodes, span, data.train_ids))
        self.val_starts = torch.as_tensor(window_starts(data.episodes, span, data.val_ids))
        if len(self.train_starts) == 0 or len(self.val_starts) == 0:
            raise LabError(f"{cfg.data} has no episode of {span} steps (k x chunks) to train on")
        self.actions = data.actions
        self.latents = encode_rows(self.model, data)  # (N, D), the targets
        # the real signals the model's probes read, in units of their spread: what a
        # planner reads off the predicted latents (Push: where the block is)
        names = list(self.model.signal_names)
        cols = [data.signal_names.index(n) for n in names]
        probes = self.model.probes
        self.signals = (data.signals[:, cols] - probes.mean) / probes.std  # (N, n)
        self.model.requires_grad_(False)
        # how far latents move in k steps: the loss is in units of it
        moved = self.latents[self.train_starts + cfg.k] - self.latents[self.train_starts]
        self.scale = float(moved.square().sum(-1).mean())
        if cfg.subgoal:
            if self.model.distance is None:
                raise LabError(
                    f"a subgoal policy is trained on the model's steps-to-go head, and "
                    f"{cfg.checkpoint} has none: ./lab distance --checkpoint FOLDER --data DATA"
                )
            with torch.no_grad():  # the embedding whose distances count steps
                self.phi = torch.cat([self.model.distance(z) for z in self.latents.split(4096)])
            ends = torch.as_tensor(data.episodes[:, 0] + data.episodes[:, 1])
            self.end_of = torch.repeat_interleave(ends, torch.as_tensor(data.episodes[:, 1]))
            self.reached_starts, self.reached_goal = self._reached(data)
        shape = HighShape(
            self.model.cfg.latent_dim,
            self.model.cfg.action_dim,
            cfg.k,
            cfg.code,
            cfg.hidden,
            members=cfg.members,
            subgoal=cfg.subgoal,
        )
        torch.manual_seed(cfg.seed)
        self.high = HighLevel(shape).to(self.device)
        self.opt = torch.optim.Adam(self.high.parameters(), lr=cfg.lr)
        self.out = Path(cfg.out or Path("runs") / f"high-{self.scene}")
        self.step, self.history = 0, []
        self._resume_if_any()

    def _resume_if_any(self) -> None:
        meta_file = self.out / "high.json"
        if not meta_file.exists():
            return
        meta = json.loads(meta_file.read_text())
        fixed = lambda c: {k: v for k, v in c.items() if k not in self.FREE}  # noqa: E731
        if fixed(meta.get("config", {})) != fixed(asdict(self.cfg)):
            raise LabError(f"{self.out} holds a high level with other settings: pick --out")
        high, optim = load_high(self.out, self.cfg.checkpoint, self.device, with_optim=True)
        self.high.load_state_dict(high.state_dict())
        self.step, self.history = int(meta["step"]), list(meta.get("history", []))
        if optim:
            state = self.opt.state_dict()
            for i in range(len(state["param_groups"][0]["params"])):
                state["state"][i] = {
                    k: optim[f"{i}.{k}"].to(self.device) for k in ("step", "exp_avg", "exp_avg_sq")
                }
            self.opt.load_state_dict(state)

    def _windows(self, starts: torch.Tensor):
        """Windows' first latents (B, D), codes' actions (B, chunks, k, A), and the rows
        each macro-step ends on (B, chunks)."""
        cfg = self.cfg
        span = torch.arange(cfg.k * cfg.chunks)
        rows = (starts[:, None] + span).to(self.actions.device)
        actions = self.actions[rows].view(len(starts), cfg.chunks, cfg.k, -1)
        ends = (starts[:, None] + cfg.k * torch.arange(1, cfg.chunks + 1)).to(self.device)
        return self.latents[starts.to(self.device)], actions, ends

    def _errors(self, starts: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Each macro-step's squared latent error in units of a k-step move, and its
        probed signals' mean squared error in units of their spread: (B, chunks) each."""
        s0, actions, ends = self._windows(starts)
        pred = self.high.rollouts(s0, self.high.encode_actions(actions))  # (E, B, chunks, D)
        latent = (pred - self.latents[ends]).square().sum(-1) / self.scale
        probed = (self.model.probes.normalised(pred) - self.signals[ends]).square().mean(-1)
        return latent.mean(0), probed.mean(0)  # each member learns the whole loss

    def _loss(self, starts: torch.Tensor) -> torch.Tensor:
        latent, probed = self._errors(starts)
        return latent + self.cfg.probe_weight * probed

    def _reached(self, data) -> tuple[torch.Tensor, torch.Tensor]:
        """Rows of training episodes at least k before the episode first reached its own
        goal, and that row for each (empty without ``reached``)."""
        if not self.cfg.reached:
            return torch.zeros(0, dtype=torch.long), torch.zeros(0, dtype=torch.long)
        starts, goals = [], []
        for first, rows in data.episodes[data.train_ids]:
            hit = np.flatnonzero(data.success[first : first + rows])
            if len(hit) and hit[0] >= self.cfg.k:
                starts.append(np.arange(first, first + hit[0] - self.cfg.k + 1))
                goals.append(np.full(len(starts[-1]), first + hit[0]))
        if not starts:
            raise LabError(f"no training episode of {self.cfg.data} reached its goal: --reached 0")
        return torch.as_tensor(np.concatenate(starts)), torch.as_tensor(np.concatenate(goals))

    def _goals(self, starts: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
        """A goal row for each start: a later row of its episode (at least k on), or with
        probability ``other_goals`` any row."""
        k = self.cfg.k
        span = (self.end_of[starts] - (starts + k)).float()
        later = starts + k + (torch.rand(len(starts), generator=gen) * span).long()
        anywhere = torch.randint(len(self.latents), (len(starts),), generator=gen)
        pick = torch.rand(len(starts), generator=gen) < self.cfg.other_goals
        return torch.where(pick, anywhere, later)

    def _subgoal_terms(self, starts: torch.Tensor, goals: torch.Tensor):
        """Per start: the proposal's squared error to the real s_t+k (units of a k-step
        move), its advantage weight, and the steps the proposal gains towards the goal."""
        k, dev = self.cfg.k, self.device
        t, g = starts.to(dev), goals.to(dev)
        s, nxt, goal = self.latents[t], self.latents[t + k], self.latents[g]
        to_goal = lambda phi: self.model.distance.between(phi, self.phi[g])  # noqa: E731
        here = to_goal(self.phi[t])
        weight = torch.exp(self.cfg.beta * (here - to_goal(self.phi[t + k]))).clamp(max=AWR_CLIP)
        proposal = self.high.propose(s, goal)
        error = (proposal - nxt).square().sum(-1) / self.scale
        with torch.no_grad():
            gain = here - to_goal(self.model.distance(proposal))
        return error, weight, gain

    def evaluate(self) -> dict:
        """Held-out error of the first and the last chained macro-step (1.0: no better than
        "nothing moves"), their probed signals' RMSE, and (with a subgoal policy) the steps
        its proposals gain towards held-out goals."""
        with torch.no_grad():
            latent, probed = (e.mean(0) for e in self._errors(self.val_starts[:4096]))
            out = {
                "val_error_first": round(float(latent[0]), 4),
                "val_error_last": round(float(latent[-1]), 4),
                "val_probe_rmse_first": round(float(probed[0].sqrt()), 4),
                "val_probe_rmse_last": round(float(probed[-1].sqrt()), 4),
            }
            if self.cfg.subgoal:  # steps a proposal gains towards held-out goals (k at best)
                starts = self.val_starts[:4096]
                gen = torch.Generator().manual_seed(self.cfg.seed)
                _, _, gain = self._subgoal_terms(starts, self._goals(starts, gen))
                out["val_subgoal_gain"] = round(float(gain.mean()), 3)
        return out

    def set_code_range(self) -> None:
        """The planner's box: the CODE_RANGE percentiles of the training chunks' codes."""
        with torch.no_grad():
            starts = self.train_starts[:: max(1, len(self.train_starts) // 20000)]
            _, actions, _ = self._windows(starts)
            z = self.high.encode_actions(actions).flatten(0, 1).cpu().numpy()
        low, high = np.percentile(z, CODE_RANGE, axis=0)
        self.high.code_low.copy_(torch.as_tensor(low, dtype=torch.float32))
        high = np.maximum(high, low + 1e-3)
        self.high.code_high.copy_(torch.as_tensor(high, dtype=torch.float32))

    def _save(self) -> None:
        self.set_code_range()
        state = self.opt.state_dict()["state"]
        optim = {f"{i}.{k}": torch.as_tensor(v) for i, s in state.items() for k, v in s.items()}
        info = {
            "scene": self.scene,
            "checkpoint": str(self.cfg.checkpoint),
            "model_id": latent_identity(self.cfg.checkpoint),
            "data": str(self.cfg.data),
            "step": self.step,
            "history": self.history,
            "config": asdict(self.cfg),
            "figures": self.history[-1] if self.history else {},
        }
        save_high(self.high, self.out, info, optim)

    def run(self, progress=None, stop=None) -> dict:
        """Train to ``cfg.steps`` (or until ``stop`` is set); ``progress(done, total,
        figures)``. The last figures."""
        cfg = self.cfg
        t0 = time.perf_counter()
        while self.step < cfg.steps:
            if stop is not None and stop.is_set():
                break
            block = min(cfg.save_every - self.step % cfg.save_every, cfg.steps - self.step)
            gen = torch.Generator().manual_seed(cfg.seed * 1_000_003 + self.step)
            self.high.train()
            for _ in range(block):
                pick = torch.randint(len(self.train_starts), (cfg.batch * cfg.pool,), generator=gen)
                starts = self.train_starts[pick]
                if cfg.pool > 1:  # the windows it gets most wrong, in proportion
                    with torch.no_grad():
                        worst = self._loss(starts).sum(-1).cpu()
                    starts = starts[torch.multinomial(worst + 1e-6, cfg.batch, generator=gen)]
                loss = self._loss(starts).mean()
                if cfg.subgoal:
                    sub, goals = starts, self._goals(starts, gen)
                    n = round(cfg.reached * len(sub))
                    if n:  # aimed at the goals episodes reached
                        pick = torch.randint(len(self.reached_starts), (n,), generator=gen)
                        sub = torch.cat([sub[n:], self.reached_starts[pick]])
                        goals = torch.cat([goals[n:], self.reached_goal[pick]])
                    error, weight, _ = self._subgoal_terms(sub, goals)
                    loss = loss + (weight * error).mean()
                self.opt.zero_grad(set_to_none=True)
                loss.backward()
                self.opt.step()
                self.step += 1
                if not torch.isfinite(loss):
                    raise LabError(f"the high level diverged at step {self.step}")
            self.high.eval()
            seconds = round(time.perf_counter() - t0, 1)
            figures = {
                "step": self.step,
                "train_error": round(float(loss.detach()), 4),
                **self.evaluate(),
                "seconds": seconds,
            }
            self.history.append(figures)
            self._save()
            if progress is not None:
                progress(self.step, cfg.steps, figures)
        return self.history[-1] if self.history else {}


def main(argv: list[str] | None = None) -> int:
    from tqdm import tqdm

    cfg = parse_config(HighConfig, argv, "lab highlevel", __doc__.split("\n\n")[0])
    try:
        trainer = HighTrainer(cfg)
    except LabError as e:
        print(f"lab highlevel: {e}", file=sys.stderr)
        return 2
    bar = tqdm(
        total=cfg.steps,
        initial=trainer.step,
        desc="high level",
        disable=None if cfg.progress else True,
    )

    def tick(done: int, total: int, figures: dict) -> None:
        bar.update(done - bar.n)
        bar.set_postfix(figures)

    try:
        figures = trainer.run(tick)
    except LabError as e:
        print(f"lab highlevel: {e}", file=sys.stderr)
        return 2
    finally:
        bar.close()
    print(json.dumps(figures))
    print(f"saved {trainer.out}/high.safetensors and high.json")
    return 0


if __name__ == "__main__":
    sys.exit(main())
