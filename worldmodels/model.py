"""The JEPA world model: encoders, predictor, EMA target, probes and decoder.

An action-conditioned joint-embedding predictive architecture (LeCun 2022,
"A path towards autonomous machine intelligence"; I-JEPA, Assran et al.
2023; V-JEPA 2-AC, 2025): an encoder maps an observation to a latent ``s``;
a predictor maps ``(s_t, a_t)`` to ``s_t+1``; the training target is the
next observation's embedding by an exponential-moving-average copy of the
encoder. It never predicts pixels.

Beside it, on detached latents (so they never shape the representation):

* probes, one small head per named signal, read positions, speeds and
  distances out of any latent, real or imagined; guardrails are written over
  their names;
* a decoder turns a latent into a 64x64 image, for display only.

The contract the agent and the app use: ``encode(obs) -> (B, D)``,
``rollout(s0 (B, D), actions (B, H, A)) -> (B, H, D)``, ``probe(s (..., D))
-> {name: (...)}``, ``decode(s (B, D)) -> uint8 (B, 64, 64, 3)``; batched,
on one device.
"""

from __future__ import annotations

import copy
import itertools
from dataclasses import asdict, dataclass, field

import torch
from torch import nn
from torch.nn import functional as F

from common.errors import LabError
from worldmodels import compiled


@dataclass
class ModelConfig:
    """Shapes of the model; saved in every checkpoint's JSON."""

    obs: str = "state"  # "state" (the scene's state vector) or "pixels" (64x64 RGB)
    state_dim: int = 4  # S, length of the state vector
    action_dim: int = 2  # A
    latent_dim: int = 64  # D: small enough for fast planning, large enough for Push
    hidden: int = 256  # width of the state encoder's MLP (runs once per step: can be wide)
    predictor_hidden: int = 64  # width of the predictor: it runs N x H times per plan, so its
    # size sets the planning speed (64 x 2 layers with 32-wide probes: CEM at N=1000, H=16,
    # 5 iterations in about 43-58 ms on 2 cores, about twice that at 128 and 64). Kitchen
    # and Push ship the wide shape: the knife guardrail and pushing need the accuracy
    # (worldmodels/pretrain.py)
    predictor_layers: int = 2  # hidden layers of the residual predictor
    channels: tuple[int, ...] = (32, 64, 96, 128)  # pixel encoder: 4 stride-2 convs, 64 -> 4
    frames: int = 1  # pixels: the encoder sees this many consecutive frames (2: it sees motion)
    last_action: bool = False  # pixels: the encoder also gets the action just taken
    # pixels: entries of the scene's state vector the encoder also reads, the robot's own
    # sensors (its joints and hand: the scene's ``PROPRIO``), as DINO-WM reads
    # proprioception beside the image; () for none
    proprio: tuple[int, ...] = ()
    signals: tuple[str, ...] = ()  # names the probes read (signals that do not depend on the goal)
    probe_hidden: int = 32  # one head per signal: D -> probe_hidden -> 1 (the cost reads
    # them on every imagined latent: at 64 they were a third of a plan's work)
    decoder: bool = True  # train a display decoder (needs pixels in the data)
    # A head whose embedding distances count steps to go (worldmodels/distance.py; 0: none,
    # the latent task term is then the plain latent distance)
    distance_dim: int = 0
    # Its form: "metric" (Euclidean: as many steps there as back) or "quasi" (an interval
    # quasimetric, IQE: steps from s to g need not be steps from g to s: Push's block is
    # pushed, never pulled); see worldmodels/distance.py
    distance_kind: str = "metric"
    # What trains the latent: "jepa" (latent prediction against EMA targets, VICReg;
    # worldmodels.loss) or "generative" (every imagined latent decoded and compared
    # with the real frame in pixels: worldmodels.generative, the lessons' contrast)
    objective: str = "jepa"
    # Pixels: the latent is a belief carried from step to step, the prediction from the
    # last one corrected by what is seen (``BeliefUpdate``; trained by worldmodels.memory):
    # what left the view stays in it
    memory: bool = False
    # The belief's correction passes a gate in 0..1 per latent dimension (the Kalman
    # gain's size, as a GRU's update gate), learned from the innovation and the prior: a
    # hidden person's dimensions can be kept shut whatever the frame says
    memory_gate: bool = False

    def to_dict(self) -> dict:
        d = asdict(self)
        d["channels"], d["signals"] = list(self.channels), list(self.signals)
        d["proprio"] = list(self.proprio)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> ModelConfig:
        known = {f for f in cls.__dataclass_fields__}
        unknown = set(d) - known
        if unknown:
            raise LabError(f"unknown model settings {sorted(unknown)}")
        d = dict(d)
        d["channels"], d["signals"] = tuple(d.get("channels", ())), tuple(d.get("signals", ()))
        d["proprio"] = tuple(d.get("proprio", ()))
        return cls(**d)


def mlp(sizes: list[int]) -> nn.Sequential:
    """Linear layers with SiLU between them (none after the last): smooth for the
    gradient planner, and on CPU its backward costs a fraction of GELU's."""
    layers: list[nn.Module] = []
    for i in range(len(sizes) - 1):
        layers.append(nn.Linear(sizes[i], sizes[i + 1]))
        if i < len(sizes) - 2:
            layers.append(nn.SiLU())
    return nn.Sequential(*layers)


class StateEncoder(nn.Module):
    """State vector (B, S), normalised by the data's mean and std -> (B, D)."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.net = mlp([cfg.state_dim, cfg.hidden, cfg.hidden, cfg.latent_dim])
        self.register_buffer("mean", torch.zeros(cfg.state_dim))
        self.register_buffer("std", torch.ones(cfg.state_dim))

    def forward(self, state: torch.Tensor, *_pixel_inputs) -> torch.Tensor:
        """``state`` (B, S); what a pixel encoder also takes (the last action, the state
        for its proprio) is ignored: the state holds it already."""
        return self.net((state - self.mean) / self.std)


ACTION_LATENT = 8  # latent dimensions a pixel encoder gives the last action (last_action=True)
PROPRIO_LATENT = 16  # ... and the robot's own sensors (proprio)


class PixelEncoder(nn.Module):
    """uint8 pixels (B, 64, 64, 3), or (B, F, 64, 64, 3) for F stacked frames -> (B, D).

    Four stride-2 convolutions. A single frame shows where things are, not
    how fast they move: with ``frames=2`` the first layer sees the previous
    frame beside the current one (channels stacked). At 64x64 a Reach step
    moves the disc 0.7 pixel on average, too little to read a speed from, so
    with ``last_action`` the encoder is also given the action the agent just
    took (an efference copy: the agent knows what it did, no sensor needed;
    it explains 79 % of Reach's next velocity). It gets ``ACTION_LATENT``
    latent dimensions of its own: added to the image's embedding at a
    comparable scale it took over the latent (effective rank 2 after 250
    steps); as 2 more inputs among the 2048 image features no probe could
    read it. Either way the latent, and the EMA targets the predictor is
    trained against, hold how things move, not only where they are.

    With ``proprio`` it also reads the robot's own sensors, the entries of the
    state vector the scene names as its body (hand position and velocity, joint
    angles: a cat knows where its paw is without looking), normalised, through
    a small MLP into ``PROPRIO_LATENT`` dimensions of their own (DINO-WM's
    proprioceptive embedding beside the image's). What is not the robot's, the
    person, is known from the frames alone. Kitchen's hand speed is the
    commanded speed except where the workspace's edge cuts it (65 % of its
    exploration steps): from 64x64 frames the edge is too far to read. The
    occluded kitchen's pixel model missed the hand speed one step ahead by 0.141
    m/s RMS (held out) without, 0.099 with (``./lab pretrain --scenes occluded``).
    """

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.frames = cfg.frames
        layers: list[nn.Module] = []
        c_in = 3 * cfg.frames
        for c in cfg.channels:
            layers += [nn.Conv2d(c_in, c, 4, stride=2, padding=1), nn.GroupNorm(8, c), nn.SiLU()]
            c_in = c
        self.conv = nn.Sequential(*layers)
        side = 64 // 2 ** len(cfg.channels)
        self.action_in = None
        image_dims = cfg.latent_dim
        if cfg.last_action:
            image_dims -= ACTION_LATENT
            self.action_in = nn.Linear(cfg.action_dim, ACTION_LATENT, bias=False)
            nn.init.normal_(self.action_in.weight, std=1.0)
        self.proprio_in = None
        if cfg.proprio:
            image_dims -= PROPRIO_LATENT
            self.register_buffer("proprio_index", torch.tensor(cfg.proprio, dtype=torch.long))
            self.register_buffer("mean", torch.zeros(cfg.state_dim))  # the state's, as
            self.register_buffer("std", torch.ones(cfg.state_dim))  # StateEncoder's
            self.proprio_in = mlp([len(cfg.proprio), cfg.hidden // 2, PROPRIO_LATENT])
        self.head = nn.Linear(c_in * side * side, image_dims)

    def forward(
        self,
        pixels: torch.Tensor,
        last_action: torch.Tensor | None = None,
        state: torch.Tensor | None = None,
    ) -> torch.Tensor:
        if self.frames > 1:  # (B, F, 64, 64, 3) -> (B, 64, 64, F*3), oldest frame first
            pixels = pixels.permute(0, 2, 3, 1, 4).flatten(3)
        x = pixels.permute(0, 3, 1, 2).float() / 255.0 - 0.5  # (B, 3F, 64, 64) in [-0.5, 0.5]
        s = self.head(self.conv(x).flatten(1))  # (B, D - the dimensions below)
        parts = [s]
        if self.action_in is not None:
            if last_action is None:  # at rest
                last_action = s.new_zeros(len(s), self.action_in.in_features)
            parts.append(self.action_in(last_action.to(s.dtype)))
        if self.proprio_in is not None:
            if state is None:
                raise LabError(
                    "this model also reads the robot's own sensors (proprio): "
                    "the observation must hold its state vector"
                )
            idx = self.proprio_index
            body = (state.to(s.dtype)[:, idx] - self.mean[idx]) / self.std[idx]
            parts.append(self.proprio_in(body))
        return parts[0] if len(parts) == 1 else torch.cat(parts, dim=1)


class Predictor(nn.Module):
    """``s_t+1 = s_t + f(s_t, a_t)``: a residual MLP on the concatenation."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        sizes = [cfg.latent_dim + cfg.action_dim] + [cfg.predictor_hidden] * cfg.predictor_layers
        self.net = mlp([*sizes, cfg.latent_dim])
        # Start near the identity: the first prediction is "nothing moves".
        nn.init.zeros_(self.net[-1].weight)
        nn.init.zeros_(self.net[-1].bias)

    def forward(self, s: torch.Tensor, a: torch.Tensor) -> torch.Tensor:
        return s + self.net(torch.cat([s, a], dim=-1))

    def unroll(self, s0: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        """``forward`` stepped over the horizon: s0 (B, D), actions (B, H, A) -> (B, H,
        D). The first layer's action part for every step is one product before the loop,
        so a step is the products on the latent alone: no concatenation and no module
        calls, which at the N = 30 of a default plan cost more than the arithmetic (a
        Reach plan: 6.2 -> 4.5 ms on 2 cores, ``./lab bench search_efficiency``)."""
        B, H, A = actions.shape
        D = s0.shape[-1]
        (w1, b1), *hidden, (w_out, b_out) = [
            (m.weight, m.bias) for m in self.net if isinstance(m, nn.Linear)
        ]
        # (H, B, hidden): step t's rows contiguous
        steps = actions.transpose(0, 1).reshape(H * B, A)
        pre = F.linear(steps, w1[:, D:], b1).view(H, B, -1)
        w_s = w1[:, :D].T
        out = []
        s = s0
        for t in range(H):
            h = F.silu(torch.addmm(pre[t], s, w_s))
            for w, b in hidden:
                h = F.silu(F.linear(h, w, b))
            s = s + F.linear(h, w_out, b_out)
            out.append(s)
        return torch.stack(out, dim=1)


class BeliefUpdate(nn.Module):
    """A belief corrected by what is seen, as a Kalman filter corrects its estimate:
    ``s_t = prior + K(innovation, prior)``, where the prior is the predictor's ``s_t``
    from ``s_t-1`` and the last action, and the innovation ``e - expect(prior)`` is how
    the frame's embedding ``e`` differs from the one the prior expects to see
    (``expect``). Where the frame shows what the belief expected, nothing is corrected
    and the belief carries on: a person the belief puts behind a screen is expected
    not to be seen, so a frame without them keeps them. The filtering step of a
    recurrent state-space model (Dreamer's RSSM: prior from the dynamics, posterior
    from the observation), in latent space.

    Both parts start as the identity plus a zero-initialised MLP: ``expect(s) = s``, ``K
    = innovation``, so ``s_t = e``: the model it grows from, until training teaches it
    what a frame cannot show. Training pulls ``expect`` of beliefs, real and imagined,
    to the real embeddings (``worldmodels.memory``): a belief must explain what is seen
    (Dreamer's reconstruction, in the encoder's space: no pixels)."""

    def __init__(self, cfg: ModelConfig, hidden: int = 128) -> None:
        super().__init__()
        d = cfg.latent_dim
        self.seen = mlp([d, hidden, d])
        self.gain = mlp([2 * d, hidden, d])
        self.gate = mlp([2 * d, hidden, d]) if cfg.memory_gate else None
        for net in (self.seen, self.gain, self.gate):
            if net is not None:
                nn.init.zeros_(net[-1].weight)
                nn.init.zeros_(net[-1].bias)
        if self.gate is not None:  # open: sigmoid(4) = 0.98 of the correction passes
            nn.init.constant_(self.gate[-1].bias, 4.0)

    def expect(self, s: torch.Tensor) -> torch.Tensor:
        """Beliefs (..., D) -> the frame embeddings they expect (..., D)."""
        return s + self.seen(s)

    def forward(self, e: torch.Tensor, prior: torch.Tensor) -> torch.Tensor:
        innovation = e - self.expect(prior)
        both = torch.cat([innovation, prior], dim=-1)
        correction = innovation + self.gain(both)
        if self.gate is not None:
            correction = torch.sigmoid(self.gate(both)) * correction
        return prior + correction


def surprise(latent: torch.Tensor, expected: torch.Tensor) -> torch.Tensor:
    """How far a latent is from what the model expected of it: (..., D) each -> (...), the
    RMS over the latent's dimensions (violation of expectation, as V-JEPA measures it)."""
    return (latent - expected).pow(2).mean(-1).sqrt()


PROBE_BLOCK = 2048  # rows of latents the probes take at a time (see Probes.normalised)


class Probes(nn.Module):
    """One two-layer head per signal, all evaluated in one batched einsum.

    Heads are independent (no shared layer), so a probe says what the latent
    holds about its own signal. They output normalised values; ``forward``
    maps them back to the signal's units.
    """

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        n, d, h = len(cfg.signals), cfg.latent_dim, cfg.probe_hidden
        self.w1 = nn.Parameter(torch.randn(n, d, h) / d**0.5)
        self.b1 = nn.Parameter(torch.zeros(n, h))
        self.w2 = nn.Parameter(torch.randn(n, h) / h**0.5)
        self.b2 = nn.Parameter(torch.zeros(n))
        self.register_buffer("mean", torch.zeros(n))
        self.register_buffer("std", torch.ones(n))

    def normalised(self, s: torch.Tensor, idx: list[int] | None = None) -> torch.Tensor:
        """(..., D) -> (..., k) in units of each signal's std (k = len(idx), all by default).

        The k first layers run as one (D, k*h) matrix product: a batched
        einsum over heads was several times slower on a CPU.
        """
        w1, b1, w2, b2 = self.w1, self.b1, self.w2, self.b2
        if idx is not None:
            w1, b1, w2, b2 = w1[idx], b1[idx], w2[idx], b2[idx]
        k, d, hid = w1.shape
        lead = s.shape[:-1]
        flat = s.reshape(-1, d)  # (M, D)
        w1 = w1.permute(1, 0, 2).reshape(d, k * hid)
        b1 = b1.reshape(-1)

        def heads(rows: torch.Tensor) -> torch.Tensor:
            h = F.silu(torch.addmm(b1, rows, w1)).view(-1, k, hid)  # (m, k, h)
            return (h * w2).sum(dim=-1) + b2  # (m, k)

        # In blocks of rows, on a CPU: a planner probes N x H = 16000 latents at once,
        # and the (M, k*h) hidden layer of all of them (16 MB) falls out of the cache:
        # three to four times slower than the same work in blocks of 2048. Not on a GPU
        # (800 blocks at N = 100 000: 6x slower) nor compiled (inductor fuses the layers).
        if torch.compiler.is_compiling() or s.device.type != "cpu" or len(flat) <= PROBE_BLOCK:
            out = heads(flat)
        else:
            out = torch.cat([heads(rows) for rows in flat.split(PROBE_BLOCK)])
        return out.view(*lead, k)

    def forward(self, s: torch.Tensor, idx: list[int] | None = None) -> torch.Tensor:
        mean, std = (self.mean, self.std) if idx is None else (self.mean[idx], self.std[idx])
        return self.normalised(s, idx) * std + mean


IQE_COMPONENT = 8  # numbers per component of an interval quasimetric embedding


class DistanceHead(nn.Module):
    """Latent (..., D) -> embedding (..., E) whose distances (``between``) count the
    steps from one state to another (trained by ``worldmodels.distance``, the model
    frozen): Euclidean (``metric``) or an interval quasimetric (``quasi``)."""

    def __init__(self, cfg: ModelConfig, hidden: int = 128) -> None:
        super().__init__()
        if cfg.distance_kind not in ("metric", "quasi"):
            raise LabError(f"unknown distance kind {cfg.distance_kind!r}: metric or quasi")
        if cfg.distance_kind == "quasi" and cfg.distance_dim % IQE_COMPONENT:
            raise LabError(f"a quasimetric head's size must be a multiple of {IQE_COMPONENT}")
        self.kind = cfg.distance_kind
        self.net = mlp([cfg.latent_dim, hidden, hidden, cfg.distance_dim])

    def forward(self, s: torch.Tensor) -> torch.Tensor:
        return self.net(s)

    def between(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        """Embeddings (..., E) -> the steps from ``a`` to ``b`` (...)."""
        if self.kind == "metric":
            return torch.linalg.vector_norm(a - b, dim=-1)
        return iqe(a, b)


def iqe(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Interval quasimetric embedding (Wang and Isola 2022, QRL's distance): per
    component of ``IQE_COMPONENT`` numbers, the length of the union of the intervals
    ``[a_j, max(a_j, b_j)]``; the mean and the largest of the components, averaged. Zero
    from a to b where b is nowhere above a; the triangle inequality holds, symmetry need
    not."""
    a, b = torch.broadcast_tensors(a, b)
    a = a.unflatten(-1, (-1, IQE_COMPONENT))  # (..., K, c)
    b = b.unflatten(-1, (-1, IQE_COMPONENT))
    up = (b > a).to(a.dtype)
    ends = torch.cat([a, torch.maximum(a, b)], dim=-1)  # (..., K, 2c)
    steps = torch.cat([up, -up], dim=-1)  # an interval opens at a_j and closes at b_j
    ends, order = ends.sort(dim=-1)
    covered = steps.gather(-1, order).cumsum(-1)[..., :-1] > 0.5
    length = (ends.diff(dim=-1) * covered).sum(-1)  # (..., K)
    return 0.5 * (length.mean(-1) + length.amax(-1))


class Decoder(nn.Module):
    """Latent (B, D) -> image (B, 3, 64, 64) in [0, 1], for display only.

    Deliberately thin (64 -> 48 -> 32 -> 16 -> 8 channels over 4 -> 64
    pixels): it trains beside the world model on every step, and on a CPU a
    wide up-sampling stack at 64x64 would cost more than the model itself.
    """

    WIDTHS = (64, 48, 32, 16, 8)

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        w = self.WIDTHS
        self.fc = nn.Linear(cfg.latent_dim, w[0] * 4 * 4)
        layers: list[nn.Module] = []
        for c_in, c_out in itertools.pairwise(w):
            layers += [nn.ConvTranspose2d(c_in, c_out, 4, stride=2, padding=1), nn.SiLU()]
        layers.append(nn.Conv2d(w[-1], 3, 3, padding=1))
        self.net = nn.Sequential(*layers)

    def forward(self, s: torch.Tensor) -> torch.Tensor:
        x = self.fc(s).view(-1, self.WIDTHS[0], 4, 4)  # (B, C, 4, 4)
        return torch.sigmoid(self.net(x))  # (B, 3, 64, 64)


class WorldModel(nn.Module):
    """Encoder + EMA target + predictor + probes + decoder; see the module docstring."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        if cfg.obs not in ("state", "pixels"):
            raise LabError(f"obs must be 'state' or 'pixels', not {cfg.obs!r}")
        if cfg.objective not in ("jepa", "generative"):
            raise LabError(f"objective must be 'jepa' or 'generative', not {cfg.objective!r}")
        if cfg.objective == "generative" and not (cfg.obs == "pixels" and cfg.decoder):
            raise LabError("a generative model predicts pixels: it needs pixels and a decoder")
        if cfg.memory and cfg.obs != "pixels":
            raise LabError("memory is for a pixel model: a state holds what it needs")
        if cfg.frames < 1 or (cfg.obs == "state" and (cfg.frames != 1 or cfg.last_action)):
            raise LabError(
                f"frames {cfg.frames}, last_action {cfg.last_action}: a state model takes one "
                "state and no last action; a pixel model at least one frame"
            )
        if cfg.proprio and (
            cfg.obs != "pixels" or not all(0 <= i < cfg.state_dim for i in cfg.proprio)
        ):
            raise LabError(
                f"proprio {list(cfg.proprio)}: entries of the state vector "
                f"(0..{cfg.state_dim - 1}) a pixel model reads beside its frames"
            )
        body = ACTION_LATENT * cfg.last_action + PROPRIO_LATENT * bool(cfg.proprio)
        if cfg.obs == "pixels" and cfg.latent_dim <= body:
            raise LabError(
                f"latent_dim {cfg.latent_dim}: the last action and the robot's sensors take "
                f"{body} of a pixel model's latent dimensions, the frames need more"
            )
        self.cfg = cfg
        self.encoder = StateEncoder(cfg) if cfg.obs == "state" else PixelEncoder(cfg)
        # The target encoder follows the online one by EMA and gets no
        # gradient (I-JEPA): a slowly moving target resists collapse.
        self.target_encoder = copy.deepcopy(self.encoder).requires_grad_(False)
        self.predictor = Predictor(cfg)
        self.probes = Probes(cfg)
        self.decoder = Decoder(cfg) if cfg.decoder else None
        self.distance = DistanceHead(cfg) if cfg.distance_dim else None
        self.memory = BeliefUpdate(cfg) if cfg.memory else None
        # Held-out probe RMSE per signal at imagined steps 1..H, in the signals' units,
        # as measured when the checkpoint was saved (``load_checkpoint`` sets it; None
        # when unmeasured). The agent's ``margin`` plans against it.
        self.probe_rmse: dict[str, list[float]] | None = None
        self.probe_conformal: dict[float, dict[str, list[float]]] | None = None  # delta ->
        # a server's agents sharing this model merge their imagination calls through it
        # (worldmodels.batching); None: every call runs alone
        self.batcher = None

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    @property
    def signal_names(self) -> tuple[str, ...]:
        return self.cfg.signals

    @property
    def frames(self) -> int:
        """How many consecutive observations ``encode`` wants (the agent keeps them)."""
        return self.cfg.frames

    def obs_tensor(self, obs) -> torch.Tensor:
        """The model's input from an observation dict or a batch of them (numpy or torch).

        State: (S,) or (B, S). Pixels: (64, 64, 3) or (B, 64, 64, 3); a model
        of F > 1 frames also takes (B, F, 64, 64, 3), oldest first, and reads
        a lone frame as F copies of it (nothing moving: a goal image, the
        first step of an episode).
        """
        x = obs[self.cfg.obs] if isinstance(obs, dict) else obs
        x = torch.as_tensor(x, device=self.device)
        if self.cfg.obs == "state":
            return x.unsqueeze(0) if x.dim() == 1 else x
        if x.dim() == 3:
            x = x.unsqueeze(0)
        if self.cfg.frames > 1 and x.dim() == 4:
            x = x.unsqueeze(1).expand(-1, self.cfg.frames, -1, -1, -1)
        return x

    # --- the contract -------------------------------------------------------
    def encode(self, obs) -> torch.Tensor:
        """See ``_encode``; safe beside a compile in the background (``compiled``)."""
        return compiled.beside_compiles(self._encode, obs)

    def _encode(self, obs) -> torch.Tensor:
        """Observation(s) -> latents (B, D). ``obs``: dict or array, batched or not. A
        dict may hold ``last_action`` ((A,) or (B, A)) for a model that reads it; without
        one the scene is taken to be at rest. A model with memory also takes ``belief``
        (B, D), the latent of the step before (``observe``), and corrects the
        predictor's step from it; without one nothing is remembered yet."""
        return self._observe(obs)[0]

    def observe(self, obs) -> tuple[torch.Tensor, torch.Tensor]:
        """See ``_observe``; safe beside a compile in the background, as ``encode``."""
        return compiled.beside_compiles(self._observe, obs)

    def _observe(self, obs) -> tuple[torch.Tensor, torch.Tensor]:
        """``encode``, with what the model expected: (latents, priors), each (B, D). Given
        ``obs["belief"]``, the latent of the step before, the prior is the predictor's
        step from it on the last action, and a model with memory corrects it by the frame
        (its latent is then a belief); without a belief, nothing is remembered yet and
        both are the frame's own latent. Their gap is the model's surprise
        (``surprise``)."""
        x = self.obs_tensor(obs)
        extra = obs if isinstance(obs, dict) else {}

        def per_row(key: str, width: int) -> torch.Tensor | None:
            """``obs[key]`` ((width,) or (B, width)) as float32 rows, one per observation."""
            v = extra.get(key)
            if v is None:
                return None
            v = torch.as_tensor(v, dtype=torch.float32, device=self.device)
            return v.reshape(-1, width).expand(len(x), -1)

        last = per_row("last_action", self.cfg.action_dim)
        if self.cfg.obs == "state":
            e = self.encoder(x.float())
        else:
            state = per_row("state", self.cfg.state_dim) if self.cfg.proprio else None
            e = self.encoder(x, last if self.cfg.last_action else None, state)
        belief = extra.get("belief")
        if belief is None:
            return e, e
        belief = torch.as_tensor(belief, dtype=e.dtype, device=e.device).reshape(-1, len(e[0]))
        a = e.new_zeros(len(e), self.cfg.action_dim) if last is None else last
        prior = self.predictor(belief.expand(len(e), -1), a)
        return (e if self.memory is None else self.memory(e, prior)), prior

    def rollout(self, s0: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        """Imagine: s0 (B, D), actions (B, H, A) -> latents s_1..s_H (B, H, D).

        A Python loop over the horizon only; every step is batched over B.
        """
        return self.predictor.unroll(s0, actions)  # (B, H, D)

    def imagine(
        self, s0: torch.Tensor, actions: torch.Tensor, names
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """``rollout`` and then ``probe(names)`` on every imagined latent: latents (B, H,
        D) and {name: (B, H)}. What a planner calls, N x H steps a plan.

        In a plan (inference mode, an evaluated model) the two are compiled by inductor
        once per kind, in the background (``worldmodels.compiled``), and the plain calls
        answer until that is done. At N = 1000, H = 16 the compiled pass took 7.0 ms on 2
        CPU cores against 7.2 for the hand-fused one it replaced (and 1.6 against 1.9 at
        180 rows); on an H200, with each batch size's rollout a CUDA graph, 0.35 against
        2.1 ms (``benchmarks/plan_speed.py``, ``./lab gpu-check``).
        """
        if self.batcher is not None and not torch.is_grad_enabled():
            return self.batcher.imagine(s0, actions, names)
        return self.imagine_now(s0, actions, names)

    def imagine_now(
        self, s0: torch.Tensor, actions: torch.Tensor, names
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """``imagine`` for this call alone (no batching with other callers)."""
        fast = compiled.imagine(self, s0, actions, names)
        if fast is not None:
            return fast
        return compiled.plain(self, tuple(names), s0, actions)

    def probe(self, s: torch.Tensor, names=None) -> dict[str, torch.Tensor]:
        """Latents (..., D) -> {signal name: (...)} in the signal's units.

        ``names`` limits the probes run (a planner needs only what its cost reads).
        """
        names = list(self.cfg.signals) if names is None else list(names)
        if not names:
            return {}
        idx = [self.cfg.signals.index(n) for n in names]
        if torch.compiler.is_compiling():  # inside the compiled imagination (traced)
            values = self.probes(s, idx)  # (..., k)
        else:  # a plain call, maybe beside the worker
            values = compiled.beside_compiles(self.probes, s, idx)
        return {name: values[..., i] for i, name in enumerate(names)}

    def goal_distance(self, s: torch.Tensor, goal: torch.Tensor) -> torch.Tensor:
        """Latents (..., D) and a goal's (D,) -> (...): steps to go, where the model has a
        distance head (``worldmodels.distance``); else the plain latent distance."""
        if self.distance is None:
            return torch.linalg.vector_norm(s - goal, dim=-1)
        return self.distance.between(self.distance(s), self.distance(goal))

    def decode(self, s: torch.Tensor) -> torch.Tensor:
        """Latents (B, D) -> uint8 images (B, 64, 64, 3)."""
        if self.decoder is None:
            raise LabError("this model has no decoder: it was trained on data without pixels")
        img = self.decoder(s)  # (B, 3, 64, 64) in [0, 1]
        return (img.permute(0, 2, 3, 1) * 255).round().clamp(0, 255).to(torch.uint8)


@dataclass
class Normalisation:
    """Data statistics the model keeps (state input, probe outputs)."""

    state_mean: list[float] = field(default_factory=list)
    state_std: list[float] = field(default_factory=list)
    signal_mean: list[float] = field(default_factory=list)
    signal_std: list[float] = field(default_factory=list)

    def apply(self, model: WorldModel) -> None:
        with torch.no_grad():
            if isinstance(model.encoder, StateEncoder) or model.cfg.proprio:
                for enc in (model.encoder, model.target_encoder):
                    enc.mean.copy_(torch.tensor(self.state_mean))
                    enc.std.copy_(torch.tensor(self.state_std))
            model.probes.mean.copy_(torch.tensor(self.signal_mean))
            model.probes.std.copy_(torch.tensor(self.signal_std))
