"""``./lab distill``: System 1 from System 2, a policy distilled from the planner.

The policy (``agents/policy.py``) is trained by imitating the planner with DAgger
(Ross et al., 2011) entirely inside the world model: each round draws starts and goals
from the exploration data (``--data``: a random row of a random episode, with that
episode's goal) or from scene resets (observations only: the simulator is never
stepped; what the shipped policies were made from), rolls the
current policy forward in imagination, asks the planner what it would do at the states
the policy visits, adds those labels to everything labelled so far and fits the policy
again. Plain imitation would train only on the planner's own states and drift where
the policy goes; DAgger labels where the policy goes.

It runs with a progress bar and resumes exactly (each round is seeded by the seed and
its number; the state after each round is saved atomically).
"""

from __future__ import annotations

import json
import logging
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file
from tqdm import tqdm

import scenes
from agents.cost import Cost, CostSet
from agents.planners import PLANNERS, PlannerConfig
from agents.policy import Policy, PolicyShape, load_policy, save_policy
from common.config import parse_config
from common.device import choose_device
from common.errors import LabError
from common.files import write_json_atomic, write_safetensors_atomic
from scenes.dataset import Dataset
from worldmodels.checkpoint import latent_identity, load_checkpoint

log = logging.getLogger(__name__)


@dataclass
class DistillConfig:
    """``./lab distill``: a policy from the planner, by DAgger inside the world model."""

    scene: str = field(default="", metadata={"help": "scene name", "required": True})
    checkpoint: str = field(default="", metadata={"help": "world model folder", "required": True})
    costs: str = field(default="", metadata={"help": "cost set JSON (default: the task alone)"})
    out: str = field(default="", metadata={"help": "policy folder (default runs/policy-<scene>)"})
    data: str = field(
        default="",
        metadata={
            "help": "exploration dataset: starts and goals from its episodes "
            "(default: from scene resets)"
        },
    )
    rounds: int = field(default=6, metadata={"help": "DAgger rounds"})
    states: int = field(default=256, metadata={"help": "states the planner labels per round"})
    rollout: int = field(default=20, metadata={"help": "imagined steps the policy acts per start"})
    samples: int = field(default=300, metadata={"help": "labelling planner: CEM samples N"})
    iterations: int = field(default=5, metadata={"help": "labelling planner: CEM iterations"})
    horizon: int = field(default=16, metadata={"help": "labelling planner: horizon H"})
    steps: int = field(default=600, metadata={"help": "optimiser steps per round"})
    batch: int = field(default=256, metadata={"help": "labels per optimiser step"})
    lr: float = field(default=1e-3, metadata={"help": "Adam learning rate"})
    hidden: int = field(default=256, metadata={"help": "policy width"})
    seed: int = field(default=0, metadata={"help": "every round is seeded from (seed, round)"})
    device: str = field(default="auto", metadata={"help": "auto, cpu or cuda"})
    progress: bool = field(default=True, metadata={"help": "show a progress bar"})


def _starts(scene, key: str, count: int, seed: int):
    """``count`` observations (``key``: state or pixels) and goals from scene resets
    (nothing is stepped)."""
    resets = getattr(scene, "EXPLORE_RESETS", ({},))
    obs, goals = [], []
    for i in range(count):
        o, _ = scene.reset(seed=seed * 100_003 + i, options=dict(resets[i % len(resets)]))
        obs.append(o[key])
        goals.append(np.asarray(scene.goal, np.float32))
    return obs, np.stack(goals)


def _starts_from_data(data, key: str, count: int, seed: int):
    """``count`` observations and goals from an exploration dataset (``scenes.dataset``
    ``Episodes``): each a random row of a random episode, with that episode's goal."""
    rng = np.random.default_rng([seed, 0xDA7A])
    eps = rng.integers(0, len(data.episodes), count)
    first, rows = data.episodes[eps, 0], data.episodes[eps, 1]
    row = first + (rng.random(count) * rows).astype(np.int64)
    return list(data.arrays[key][row]), data.goals[eps].astype(np.float32)


class Distiller:
    """The DAgger loop and its saved state; ``run()`` goes on from the last saved round."""

    def __init__(self, cfg: DistillConfig, device: torch.device | None = None) -> None:
        self.cfg = cfg
        self.device = device or choose_device(cfg.device)
        self.model, self.model_config = load_checkpoint(cfg.checkpoint, device=self.device)
        key = scenes.scene_key(cfg.scene)
        if scenes.scene_key(str(self.model_config["scene"])) != key:
            raise LabError(f"{cfg.checkpoint} is a {self.model_config['scene']} model, not {key}")
        self.scene = scenes.make(key).unwrapped
        self.dataset = self._dataset(cfg, key)  # None: starts from scene resets
        self.costs = CostSet.load(cfg.costs) if cfg.costs else CostSet()
        if self.costs.task != "signal":
            raise LabError("distillation labels goals by their task signals: use the signal task")
        task = list(self.scene.TASK_SIGNALS)
        self.cost = Cost(self.costs, list(self.model.signal_names), task)
        self.planner = PLANNERS["cem"](
            PlannerConfig(samples=cfg.samples, horizon=cfg.horizon, iterations=cfg.iterations),
            self.scene.ACTION_DIM,
        )
        shape = PolicyShape(
            latent_dim=self.model.cfg.latent_dim,
            goal_dim=len(task),
            action_dim=self.scene.ACTION_DIM,
            goal_low=[float(x) for x in self.scene.GOAL_LOW],
            goal_high=[float(x) for x in self.scene.GOAL_HIGH],
            hidden=cfg.hidden,
        )
        torch.manual_seed(cfg.seed)
        self.policy = Policy(shape).to(self.device)
        self.out = Path(cfg.out or Path("runs") / f"policy-{key}")
        self.round = 0
        self.data = {
            k: torch.zeros(0, n)
            for k, n in (("s", shape.latent_dim), ("goal", shape.goal_dim), ("a", shape.action_dim))
        }
        self.history: list[dict] = []
        self._resume_if_any()

    def _dataset(self, cfg: DistillConfig, key: str):
        """The exploration data the starts and goals come from, checked, or None."""
        if not cfg.data:
            return None
        data = Dataset(cfg.data)
        if scenes.scene_key(data.scene) != key:
            raise LabError(f"{cfg.data} holds {data.scene} data, not {key}")
        obs = self.model.cfg.obs
        if obs == "pixels" and (not data.pixels or getattr(self.model, "frames", 1) > 1):
            raise LabError(
                f"{cfg.data}: a pixel model needs single frames the dataset holds; "
                "distil it from scene resets (leave --data out)"
            )
        return data.load(("state", "pixels") if obs == "pixels" else ("state",))

    def _resume_if_any(self) -> None:
        state = self.out / "distill.json"
        if not state.exists():
            return
        meta = json.loads(state.read_text())
        free = ("rounds", "progress", "device", "out")  # may change between runs

        def fixed(config: dict) -> dict:
            return {k: v for k, v in config.items() if k not in free}

        saved = {"data": "", **meta.get("config", {})}  # made before --data: from resets
        if fixed(saved) != fixed(asdict(self.cfg)):
            raise LabError(f"{self.out} holds a distillation with other settings: pick --out")
        self.policy = load_policy(self.out, self.cfg.checkpoint, self.device).train()
        if self.policy.info.get("costs") != json.loads(self.costs.to_json()):
            raise LabError(f"{self.out} was distilled under another cost set: pick --out")
        self.round, self.history = int(meta["round"]), list(meta["history"])
        labels = self.out / "labels.safetensors"
        if labels.exists():
            self.data = load_file(labels)
        elif self.round < self.cfg.rounds:  # shipped policies leave their labels out
            raise LabError(f"{self.out} has no labels.safetensors to go on from: pick --out")
        # the files are written one by one: a save cut short leaves them disagreeing, and
        # going on from there would not equal a straight run
        count = self.history[-1]["labels"] if self.history else 0
        if self.policy.info.get("rounds") != self.round or (
            labels.exists() and len(self.data["a"]) != count
        ):
            raise LabError(f"{self.out} was saved only in part (interrupted): pick --out")

    def _save(self) -> None:
        info = {
            "scene": self.scene.spec.id if self.scene.spec else self.cfg.scene,
            "checkpoint": str(self.cfg.checkpoint),
            "model_id": latent_identity(self.cfg.checkpoint),
            "costs": json.loads(self.costs.to_json()),
            "rounds": self.round,
            "labels": len(self.data["a"]),
            "figures": self.history[-1] if self.history else {},
        }
        self.out.mkdir(parents=True, exist_ok=True)
        write_safetensors_atomic(
            self.out / "labels.safetensors", {k: v.contiguous() for k, v in self.data.items()}
        )
        save_policy(self.policy, self.out, info)
        write_json_atomic(
            self.out / "distill.json",
            {"round": self.round, "history": self.history, "config": asdict(self.cfg)},
        )

    @torch.no_grad()
    def _label(self, s: torch.Tensor, goals: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
        """What the planner would do first at each state (B, D) for its goal (B, G): the
        mean first action of its final elites (B, A). The single best sample's action,
        which the agent acts on, carries the sampling noise of one draw; the elites' mean
        is CEM's own estimate of the best action, a steadier target."""
        out = []
        for i in range(len(s)):
            plan = self.planner.plan(self.model, self.cost, s[i], goals[i], None, gen)
            out.append(plan.samples[plan.elites, 0].mean(dim=0))  # (A,)
        return torch.stack(out)

    def _visit(self, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        """States the current policy reaches in imagination, with their goals: each start
        is acted out for a random number of steps (0 to ``rollout``)."""
        cfg = self.cfg
        key = self.model.cfg.obs
        seed = cfg.seed * 1000 + self.round
        if self.dataset is None:
            obs, goals = _starts(self.scene, key, cfg.states, seed)
        else:
            obs, goals = _starts_from_data(self.dataset, key, cfg.states, seed)
        s = self.model.encode(np.stack(obs))  # (B, D)
        g = torch.as_tensor(goals, device=self.device)
        stop_at = torch.randint(0, cfg.rollout + 1, (len(s),), generator=gen, device="cpu")
        if self.round == 0:
            stop_at.zero_()  # an untrained policy goes nowhere worth labelling: the starts
        with torch.no_grad():
            out = s.clone()
            for t in range(int(stop_at.max())):
                s = self.model.rollout(s, self.policy(s, g)[:, None])[:, 0]
                keep = (stop_at == t + 1).to(self.device)
                out[keep] = s[keep]
        return out, g

    def _fit(self, gen: torch.Generator) -> dict:
        """Adam on the mean squared action error over every label so far; 10 % of this
        round's labels held out for the figures (and trained on from the next round)."""
        cfg = self.cfg
        n = len(self.data["a"])
        held = torch.arange(n - max(1, cfg.states // 10), n)
        train = torch.arange(0, held[0])
        s, g, a = (self.data[k].to(self.device) for k in ("s", "goal", "a"))
        opt = torch.optim.Adam(self.policy.parameters(), lr=cfg.lr)

        def loss_on(rows: torch.Tensor) -> torch.Tensor:
            return (self.policy(s[rows], g[rows]) - a[rows]).square().mean()

        with torch.no_grad():
            before = float(loss_on(held))
        self.policy.train()
        for _ in range(cfg.steps):
            rows = train[torch.randint(0, len(train), (cfg.batch,), generator=gen)]
            loss = loss_on(rows)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        self.policy.eval()
        with torch.no_grad():
            after = float(loss_on(held))
        return {"held_out_mse_before": round(before, 5), "held_out_mse_after": round(after, 5)}

    def run(self, progress=None, stop=None) -> list[dict]:
        """Rounds until ``cfg.rounds`` (or ``stop`` is set); ``progress(done, total)``."""
        cfg = self.cfg
        while self.round < cfg.rounds:
            if stop is not None and stop.is_set():
                break
            t0 = time.perf_counter()
            gen = torch.Generator().manual_seed(cfg.seed * 1000 + self.round)
            plan_gen = torch.Generator(device=self.device).manual_seed(cfg.seed * 1000 + self.round)
            s, g = self._visit(gen)
            a = self._label(s, g, plan_gen)
            for k, v in (("s", s), ("goal", g), ("a", a)):
                self.data[k] = torch.cat([self.data[k], v.cpu()])
            figures = self._fit(gen)
            self.round += 1
            self.history.append(
                {
                    "round": self.round,
                    "labels": len(self.data["a"]),
                    "seconds": round(time.perf_counter() - t0, 2),
                    **figures,
                }
            )
            self._save()
            if progress is not None:
                progress(self.round, cfg.rounds)
        return self.history

    def close(self) -> None:
        self.scene.close()


def main(argv: list[str] | None = None) -> int:
    cfg = parse_config(DistillConfig, argv, "lab distill", __doc__.split("\n\n")[0])
    try:
        distiller = Distiller(cfg)
    except LabError as e:
        print(f"lab distill: {e}", file=sys.stderr)
        return 2
    bar = tqdm(
        total=cfg.rounds,
        initial=distiller.round,
        desc="DAgger rounds",
        disable=None if cfg.progress else True,
    )

    def tick(done: int, total: int) -> None:
        bar.update(done - bar.n)
        bar.set_postfix(distiller.history[-1])

    try:
        history = distiller.run(progress=tick)
    finally:
        distiller.close()
        bar.close()
    for h in history:
        print(json.dumps(h))
    print(f"saved {distiller.out}/policy.safetensors and policy.json")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
