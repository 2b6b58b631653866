"""PPO-Lagrangian, the field's trained-in baseline, on the lab's Bullet-Safety-Gym scenes.

    ./lab ppol --scene ballcircle --steps 500000 [--cost-limit 10] [--kp --ki --kd]
        [--rule "abs(x)" --limit 5] [--out runs/ppol-ballcircle] [--resume]

A policy trained with the rule in its objective (Ray, Achiam & Amodei 2019; the
baseline of every safe-RL table, FSRL's among them): Stable-Baselines3's PPO on the
task's reward minus lambda times the step's cost, over 1 + lambda (so the scale its
critic learns stays put), lambda >= 0 set after every rollout by a PID controller on
the mean cost of the episodes the rollout ended, less the limit (10 an episode, as the
published tables; FSRL's controller, ``Multiplier``). The step's cost is the task's own
(``info["cost"]``), or with ``--rule`` 1 where the lab's expression on the real signals
exceeds ``--limit``: the very text the planner holds at inference time, so a new rule
is a new training run, whose environment steps count.

Saved without pickle, as a folder: ``policy.safetensors`` (the actor-critic's weights)
and ``ppol.json`` (the settings, lambda, the observation and reward normalisers, the
environment steps, and the curve: each rollout's ended episodes' mean return and cost
against environment steps), after every rollout. ``--resume`` goes on from the folder
(the optimiser's moments start afresh); Ctrl-C keeps what is trained.
"""

from __future__ import annotations

import math
import sys
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import ClassVar

import gymnasium as gym
import numpy as np
import torch
from tqdm import tqdm

import scenes
from agents.cost import Term
from agents.episode import HardTerms, episode_seed
from agents.statepolicy import (
    CLIP_OBS,
    FORMAT,
    VERSION,
    StatePolicy,
    load_state_policy,
    read_record,
    read_weights,
)
from common.config import parse_config
from common.errors import LabError
from common.files import write_json_atomic, write_safetensors_atomic

NET = [64, 64]  # the actor's and the critics' hidden layers (FSRL's PPO-L: 128, 128)
TRAIN_STREAM = 0x9901  # a resumed run's seeds, apart from evaluation's (episode_seed)
# what --resume needs to be the same: the task, the rule, the multiplier, the rollouts
RESUMED = ("scene", "rule", "limit", "cost_limit", "kp", "ki", "kd", "envs", "n_steps")


@dataclass
class PPOLConfig:
    scene: str = field(default="ballcircle", metadata={"help": "a Bullet-Safety-Gym task"})
    steps: int = field(default=500_000, metadata={"help": "environment steps to train for"})
    cost_limit: float = field(default=10.0, metadata={"help": "cost allowed per episode"})
    rule: str = field(
        default="", metadata={"help": "a rule's expression on the signals (empty: the task's)"}
    )
    limit: float = field(default=0.0, metadata={"help": "the rule's limit"})
    envs: int = field(default=4, metadata={"help": "episodes run side by side"})
    n_steps: int = field(default=1024, metadata={"help": "steps per environment a rollout"})
    # lambda's PID controller on the episodes' cost over the limit (Stooke et al. 2020),
    # FSRL's gains but for ki: FSRL's 0.0005 integrates over ~250 updates (1 M steps);
    # 200 000 steps give 49, and its lambda stayed a P controller's, the cost over the
    # limit. 20 seeded episodes after 200 704 steps (./lab ppol --ki K, measure), return
    # / cost: BallCircle ki 0.0005 697 / 42, 0.0025 619 / 12, 0.005 605 / 3.1; CarCircle
    # 0.0005 239 / 55, 0.005 194 / 0.2. --kp 0 --kd 0 --ki R is plain gradient ascent at
    # rate R (at 0.05: BallCircle 581 / 0.25, but CarCircle stood still, 3.3 / 0)
    kp: float = field(default=0.05, metadata={"help": "lambda per unit of cost over the limit"})
    ki: float = field(default=0.005, metadata={"help": "lambda per unit of summed excess"})
    kd: float = field(default=0.1, metadata={"help": "lambda per unit of the excess' rise"})
    seed: int = 0
    out: str = field(default="", metadata={"help": "the policy's folder (runs/ppol-<scene>)"})
    resume: bool = field(default=False, metadata={"help": "go on from --out"})

    def term(self) -> Term | None:
        return Term("rule", self.rule, kind="hard", limit=self.limit) if self.rule else None


class Multiplier:
    """lambda, shared by the environments (they run in this process) and the callback;
    ``step`` moves it by a PID controller on the excess of cost over the limit, as FSRL
    does (Stooke, Achiam & Abbeel 2020): lambda = max(0, kp e + ki I + kd max(0, de)),
    I = max(0, I + e). The P part falls as soon as the cost is back within the limit;
    the I part still unwinds, and a small ki keeps it small."""

    def __init__(self, value: float = 0.0, integral: float = 0.0, error: float = 0.0) -> None:
        self.value, self.integral, self.error = value, integral, error

    def step(self, excess: float, kp: float, ki: float, kd: float) -> None:
        rise = max(0.0, excess - self.error)
        self.integral = max(0.0, self.integral + excess)
        self.error = excess
        self.value = max(0.0, kp * excess + ki * self.integral + kd * rise)

    def state(self) -> dict:
        return {"lambda": self.value, "integral": self.integral, "error": self.error}


class CostedTask(gym.Env):
    """A lab scene as Stable-Baselines3 takes it: the state vector, the task's reward less
    lambda times the step's cost (over 1 + lambda), episodes cut at the scene's length;
    ``info["cost"]`` the step's cost and, at an episode's end, ``info["lab_episode"]`` its
    return (the task's reward alone), cost and length."""

    metadata: ClassVar[dict] = {"render_modes": []}

    def __init__(self, scene: str, rule: Term | None, multiplier: Multiplier) -> None:
        self.scene = scenes.scene_class(scene)(pixels=False)
        cls = type(self.scene)
        if cls.TASK_SIGNALS:
            raise LabError(f"{scene}: PPO-Lagrangian here trains on the safety tasks' reward")
        names = [s.name for s in cls.SIGNALS]
        self.hard = HardTerms([rule], names, []) if rule else None
        self.multiplier = multiplier
        self.max_steps = cls.MAX_EPISODE_STEPS
        dim = self.scene.observation_space["state"].shape
        self.observation_space = gym.spaces.Box(-np.inf, np.inf, dim, np.float32)
        self.action_space = gym.spaces.Box(-1.0, 1.0, (cls.ACTION_DIM,), np.float32)
        self.t, self.ret, self.cost = 0, 0.0, 0.0

    def step_cost(self, signals: dict[str, float]) -> float:
        if self.hard is None:
            return float(signals["cost"] > 0)
        return float(self.hard.violated(signals, np.zeros(0)))

    def reset(self, *, seed=None, options=None):
        obs, _ = self.scene.reset(seed=seed, options=options)
        self.t, self.ret, self.cost = 0, 0.0, 0.0
        return obs["state"], {}

    def step(self, action):
        obs, reward, terminated, _, info = self.scene.step(np.clip(action, -1.0, 1.0))
        diverged = "error" in info
        cost = 1.0 if diverged else self.step_cost(self.scene.signals)
        reward = 0.0 if diverged or not math.isfinite(reward) else float(reward)
        self.t += 1
        self.ret += reward
        self.cost += cost
        lam = self.multiplier.value
        out = {"cost": cost}
        truncated = self.t >= self.max_steps
        if terminated or truncated or diverged:
            out["lab_episode"] = {"return": self.ret, "cost": self.cost, "steps": self.t}
        shaped = (reward - lam * cost) / (1.0 + lam)
        return obs["state"], shaped, bool(terminated or diverged), bool(truncated), out

    def close(self):
        self.scene.close()


def _rms(rms) -> dict:
    return {
        "mean": np.asarray(rms.mean).tolist(),
        "var": np.asarray(rms.var).tolist(),
        "count": float(rms.count),
    }


def _set_rms(rms, d: dict) -> None:
    rms.mean = np.asarray(d["mean"], np.float64)
    rms.var = np.asarray(d["var"], np.float64)
    rms.count = float(d["count"])


def save(folder: Path, policy, cfg: PPOLConfig, state: dict) -> None:
    """The weights (safetensors) and ``ppol.json``, each written whole or not at all."""
    folder.mkdir(parents=True, exist_ok=True)
    write_safetensors_atomic(
        folder / "policy.safetensors",
        {k: v.detach().cpu().contiguous() for k, v in policy.state_dict().items()},
    )
    record = {"format": FORMAT, "version": VERSION, "config": asdict(cfg), "net": NET, **state}
    write_json_atomic(folder / "ppol.json", record)


read = read_record  # ``ppol.json`` of a trained policy's folder (agents.statepolicy)


def _model(env, cfg: PPOLConfig):
    from stable_baselines3 import PPO

    return PPO(
        "MlpPolicy",
        env,
        n_steps=cfg.n_steps,
        batch_size=min(256, cfg.n_steps * cfg.envs),
        n_epochs=10,
        learning_rate=3e-4,
        gamma=0.99,
        gae_lambda=0.95,
        clip_range=0.2,
        policy_kwargs={"net_arch": NET},
        seed=cfg.seed,
        device="cpu",
        verbose=0,
    )


def train(cfg: PPOLConfig, progress: bool = True) -> Path:
    """Train (or, with ``cfg.resume``, go on training) to ``cfg.steps`` environment steps;
    the folder written (see the module docstring)."""
    from stable_baselines3.common.callbacks import BaseCallback
    from stable_baselines3.common.vec_env import DummyVecEnv, VecNormalize

    key = scenes.scene_key(cfg.scene)
    folder = Path(cfg.out or f"runs/ppol-{key}")
    if cfg.steps < 1 or cfg.envs < 1 or cfg.cost_limit < 0:
        raise LabError("steps and envs must be at least 1 and the cost limit 0 or more")
    state = {"lambda": 0.0, "env_steps": 0, "curve": []}
    if cfg.resume:
        old = read(folder)
        kept = old["config"]
        differ = [k for k in RESUMED if kept.get(k) != (key if k == "scene" else getattr(cfg, k))]
        if differ or old.get("pid") is None or old.get("net") != NET:
            raise LabError(
                f"{folder} was trained with other settings ({', '.join(differ) or 'network'}"
                "): --resume goes on only with the same ones; train it again without"
            )
        state = {k: old[k] for k in ("env_steps", "curve", "obs_rms", "ret_rms", "pid")}
    pid = state.get("pid") or {}
    multiplier = Multiplier(pid.get("lambda", 0.0), pid.get("integral", 0.0), pid.get("error", 0.0))
    rule = cfg.term()
    cfg = replace(cfg, scene=key, out=str(folder))
    venv = DummyVecEnv([lambda: CostedTask(key, rule, multiplier) for _ in range(cfg.envs)])
    env = VecNormalize(venv, norm_obs=True, norm_reward=True, clip_obs=CLIP_OBS)
    model = _model(env, cfg)  # seeds torch, numpy and the environments with cfg.seed
    if cfg.resume:  # a stream of its own from where it stopped, not the first run's again
        seeds = np.random.SeedSequence([cfg.seed, state["env_steps"]], spawn_key=(TRAIN_STREAM,))
        model.set_random_seed(int(seeds.generate_state(1)[0] % 2**31))
        _set_rms(env.obs_rms, state["obs_rms"])
        _set_rms(env.ret_rms, state["ret_rms"])
        model.policy.load_state_dict(read_weights(folder))
    bar = tqdm(
        total=cfg.steps,
        initial=min(state["env_steps"], cfg.steps),
        unit="step",
        desc=f"ppo-lagrangian {key}",
        disable=not progress,
    )

    class Lagrangian(BaseCallback):
        """Counts the ended episodes; after each rollout counts its steps, moves lambda and
        notes the curve; saves once the policy has learnt from it (a stop loses at most
        the rollout under way, whose steps the record does not count)."""

        def __init__(self) -> None:
            super().__init__()
            self.ended: list[dict] = []

        def _on_step(self) -> bool:
            self.ended += [i["lab_episode"] for i in self.locals["infos"] if "lab_episode" in i]
            bar.update(cfg.envs)
            return True

        def _on_rollout_end(self) -> None:
            state["env_steps"] += cfg.envs * cfg.n_steps  # a whole rollout collected
            if self.ended:
                cost = float(np.mean([e["cost"] for e in self.ended]))
                ret = float(np.mean([e["return"] for e in self.ended]))
                multiplier.step(cost - cfg.cost_limit, cfg.kp, cfg.ki, cfg.kd)
                state["curve"].append(
                    {
                        "env_steps": state["env_steps"],
                        "return": round(ret, 2),
                        "cost": round(cost, 2),
                        "episodes": len(self.ended),
                        "lambda": round(multiplier.value, 4),
                    }
                )
                bar.set_postfix(ret=f"{ret:.0f}", cost=f"{cost:.1f}", lam=f"{multiplier.value:.2f}")
                self.ended = []

        def _on_rollout_start(self) -> None:
            if state["env_steps"]:  # the last rollout learnt from
                keep()

    def keep() -> None:
        state["lambda"], state["pid"] = multiplier.value, multiplier.state()
        state["obs_rms"], state["ret_rms"] = _rms(env.obs_rms), _rms(env.ret_rms)
        save(folder, model.policy, cfg, state)

    left = cfg.steps - state["env_steps"]
    try:
        if left > 0:
            model.learn(total_timesteps=left, callback=Lagrangian(), progress_bar=False)
    except KeyboardInterrupt:
        print(f"stopped: {folder} keeps {state['env_steps']} steps (--resume goes on)")
    finally:
        keep()
        bar.close()
        env.close()
    return folder


def load(folder: str | Path) -> StatePolicy:
    """The trained policy in ``folder``, on the CPU, for the scene it was trained on."""
    return load_state_policy(folder, None, torch.device("cpu"))


def measure(policy: StatePolicy, episodes: int, seed: int = 0, rule: Term | None = None):
    """Return and cost of each of ``episodes`` seeded episodes (the lab's evaluation seeds,
    ``episode_seed``): cost by ``rule`` where given, else the task's own."""
    env = CostedTask(policy.scene, rule, Multiplier())
    rows = []
    try:
        for i in range(episodes):
            state, _ = env.reset(seed=episode_seed(seed, i))
            while True:
                with torch.inference_mode():
                    x = torch.as_tensor(state, device=policy.mean.device)[None]
                    action = policy(x)[0].cpu().numpy()
                state, _r, _end, _cut, info = env.step(action)
                if "lab_episode" in info:
                    rows.append(info["lab_episode"])
                    break
    finally:
        env.close()
    return rows


def main(argv: list[str] | None = None) -> int:
    cfg = parse_config(PPOLConfig, argv, "lab ppol", __doc__.split("\n\n")[0])
    try:
        folder = train(cfg)
        rec = read(folder)
    except LabError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    last = rec["curve"][-1] if rec["curve"] else {}
    print(
        f"{folder}: {rec['env_steps']} steps; last rollout's episodes: return "
        f"{last.get('return')}, cost {last.get('cost')}, lambda {rec['lambda']:.3f}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
