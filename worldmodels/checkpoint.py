"""World-model checkpoints: safetensors weights plus a JSON config, written atomically.

A checkpoint is a folder::

    config.json                         format, version, scene, obs kind, model shape,
                                        signals and their normalisation, training step,
                                        the weights file's name and size, figures
    weights-<step>-<tag>.safetensors    every tensor of the model, by name

Writes are atomic: new weights go to a new file name, then ``config.json`` is
replaced in one rename to point at them, then the old weights are removed. A
crash at any moment leaves the old checkpoint or the new one, never half of
each. Loading rebuilds the model from the JSON, then loads the tensors with
safetensors (which cannot run code: nothing is ever unpickled) and checks
every name and shape; anything that does not match raises ``LabError`` with a
plain message, and the caller's current model is untouched.
"""

from __future__ import annotations

import functools
import hashlib
import math
import time
import uuid
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file

from common.errors import LabError
from common.files import read_versioned_json, write_json_atomic, write_safetensors_atomic
from worldmodels.model import ModelConfig, WorldModel

FORMAT = "lab-worldmodel"
VERSION = 1


def save_checkpoint(model: WorldModel, folder: str | Path, info: dict, half: bool = False) -> Path:
    """Write ``model`` to ``folder``; ``info`` (scene, normalisation, step) goes in the JSON.

    ``half`` stores floating tensors as float16 (half the size, for the
    shipped checkpoints); they are loaded back as float32.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    step = int(info.get("step", 0))
    name = f"weights-{step:08d}-{uuid.uuid4().hex[:8]}.safetensors"
    tensors = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    if half:
        tensors = {k: v.half() if v.is_floating_point() else v for k, v in tensors.items()}
    write_safetensors_atomic(folder / name, tensors)
    config = {
        **info,
        "format": FORMAT,
        "version": VERSION,
        "model": model.cfg.to_dict(),
        "weights": name,
        "weights_bytes": (folder / name).stat().st_size,
        "weights_dtype": "float16" if half else "float32",
        "saved_at": time.strftime("%Y-%m-%dT%H:%M:%S"),
    }
    write_json_atomic(folder / "config.json", config)
    for old in folder.glob("weights-*.safetensors"):
        if old.name != name:
            old.unlink(missing_ok=True)
    return folder


def resave_checkpoint(model: WorldModel, folder: str | Path, config: dict, **updates) -> Path:
    """Save ``model`` back over the checkpoint it was loaded from (``config``, its JSON), in
    the same precision, with ``updates`` to the JSON's figures (a refit, a measurement)."""
    own = ("format", "version", "model", "weights", "weights_bytes", "weights_dtype", "saved_at")
    info = {k: v for k, v in config.items() if k not in own}
    half = config.get("weights_dtype") == "float16"
    return save_checkpoint(model, folder, {**info, **updates}, half=half)


def update_config(folder: str | Path, **updates) -> None:
    """Add or replace figures in a checkpoint's JSON (a measurement); the weights file
    is untouched, so the checkpoint stays the same model."""
    folder = Path(folder)
    config = read_config(folder)
    write_json_atomic(folder / "config.json", {**config, **updates})


LATENT_PARTS = ("encoder.", "predictor.")  # what gives the latents their meaning


def latent_identity(folder: str | Path) -> str:
    """A fingerprint of what the checkpoint's latents mean: a hash of its encoder and
    predictor tensors as stored. A decoder refit or a calibration saves the weights again
    under a new file name but keeps it; any training changes it. Things made on a model's
    latents (a distilled policy) are matched to the model by it."""
    folder = Path(folder)
    config = read_config(folder)
    return _identity(str(folder.resolve()), str(config.get("weights")))


def read_made_on(
    path: Path, fmt: str, version: int, what: tuple[str, str], checkpoint, done: str, redo: str
) -> dict:
    """The JSON at ``path`` of a thing made on a world model's latents (a distilled policy,
    a high level), checked for format and for being made on ``checkpoint``'s model: one
    made on another raises ``LabError`` saying it was ``done`` on that one, and ``redo``."""
    meta = read_versioned_json(path, fmt, version, *what)
    if meta.get("model_id") != latent_identity(checkpoint):
        raise LabError(
            f"{path.parent} was {done} on the world model {meta.get('checkpoint')!r}, not on "
            f"{checkpoint}: its latents mean other things there. {redo}"
        )
    return meta


@functools.lru_cache(maxsize=64)
def _identity(folder: str, weights: str) -> str:
    try:
        tensors = load_file(str(Path(folder) / weights), device="cpu")
    except (SafetensorError, OSError, ValueError) as e:
        raise LabError(f"{folder}/{weights} is not a readable safetensors file ({e})") from e
    h = hashlib.sha256()
    for name in sorted(k for k in tensors if k.startswith(LATENT_PARTS)):
        t = tensors[name].contiguous()
        h.update(f"{name}:{t.dtype}:{tuple(t.shape)};".encode())
        h.update(t.view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()[:16]


def objective(config: dict) -> str:
    """What trained a checkpoint's latent, from its config.json: "jepa" or "generative"
    (``ModelConfig.objective``; a config from before the setting existed is a JEPA's)."""
    model = config.get("model")
    return str(model.get("objective", "jepa")) if isinstance(model, dict) else "jepa"


def read_config(folder: str | Path) -> dict:
    """The checkpoint's JSON, checked for format and version."""
    folder = Path(folder)
    if folder.is_file():
        raise LabError(f"{folder} is a file: give the checkpoint folder (the one with config.json)")
    path = folder / "config.json"
    if not path.is_file():
        raise LabError(f"no checkpoint at {folder}: it has no config.json")
    config = read_versioned_json(
        path, FORMAT, VERSION, "lab world-model checkpoint", "train it again or use a matching lab"
    )
    for key in ("model", "weights", "weights_bytes", "scene"):
        if key not in config:
            raise LabError(f"{path} lacks {key!r}: the checkpoint is incomplete")
    return config


def load_checkpoint(
    folder: str | Path, device: torch.device | str = "cpu"
) -> tuple[WorldModel, dict]:
    """Rebuild the model from the JSON and load its weights; (model, config)."""
    folder = Path(folder)
    config = read_config(folder)
    try:
        cfg = ModelConfig.from_dict(config["model"])
        model = WorldModel(cfg)
    except (TypeError, ValueError) as e:
        raise LabError(f"{folder}/config.json describes a model this lab cannot build: {e}") from e
    path = folder / str(config["weights"])
    if path.parent != folder or not path.is_file():
        raise LabError(f"{folder}: the weights file {config['weights']!r} is missing")
    size = path.stat().st_size
    if size != config["weights_bytes"]:
        raise LabError(
            f"{path} has {size} bytes, the config says {config['weights_bytes']}: the file is "
            "truncated or was replaced; save the checkpoint again"
        )
    try:
        tensors = load_file(str(path), device="cpu")
    except (SafetensorError, OSError, ValueError) as e:
        raise LabError(f"{path} is not a readable safetensors file ({e})") from e

    expected = model.state_dict()
    missing = sorted(set(expected) - set(tensors))
    extra = sorted(set(tensors) - set(expected))
    if missing or extra:
        raise LabError(
            f"{path} does not hold this model's weights: missing {missing[:4]}"
            f"{'...' if len(missing) > 4 else ''}, unexpected {extra[:4]}"
            f"{'...' if len(extra) > 4 else ''}"
        )
    for k, v in expected.items():
        if tensors[k].is_floating_point():
            tensors[k] = tensors[k].to(v.dtype)  # float16 shipped weights load as float32
        if tensors[k].shape != v.shape:
            raise LabError(
                f"{path}: tensor {k} has shape {tuple(tensors[k].shape)}, but the config builds "
                f"{tuple(v.shape)}"
            )
        if not torch.isfinite(tensors[k].float()).all():
            raise LabError(f"{path}: tensor {k} holds NaN or infinity; the training diverged")
    model.load_state_dict(tensors)
    model.probe_rmse = _probe_rmse(config, cfg.signals, folder)
    model.probe_conformal = _probe_conformal(config, cfg.signals, folder)
    return model.to(device).eval(), config


def _probe_conformal(config: dict, signals: tuple[str, ...], folder: Path) -> dict | None:
    """The checkpoint's calibrated bounds ({delta: {signal: [bound at steps 1..H]}}, from
    ``probe_conformal``, made by ``./lab calibrate --episodes``), checked; None when never
    calibrated. A bound may be infinite (null in the JSON: too few errors for that delta)."""
    entry = config.get("probe_conformal")
    if not entry:
        return None
    try:
        out = {}
        for delta, table in zip(entry["deltas"], entry["bounds"], strict=True):
            rows = {k: [math.inf if x is None else float(x) for x in v] for k, v in table.items()}
            if set(rows) != set(signals) or not all(rows.values()):
                raise ValueError
            if any(x < 0 or math.isnan(x) for v in rows.values() for x in v):
                raise ValueError
            out[float(delta)] = rows
        return out
    except (KeyError, TypeError, ValueError, AttributeError):
        raise LabError(
            f"{folder}/config.json: 'probe_conformal' should hold 'deltas' and a 'bounds' "
            "table per delta for each of the model's signals; calibrate it again with "
            "./lab calibrate --episodes N"
        ) from None


def _probe_rmse(config: dict, signals: tuple[str, ...], folder: Path) -> dict | None:
    """The checkpoint's measured probe error ({signal: [RMSE at steps 1..H]}), checked;
    None when it was never measured (or measured on a diverging rollout: not finite)."""
    table = config.get("probe_rmse")
    if not table:  # older checkpoints: never measured (./lab calibrate measures it)
        return None

    def number(x) -> bool:
        return isinstance(x, int | float) and not isinstance(x, bool) and not x < 0

    ok = isinstance(table, dict) and set(table) == set(signals)
    ok = ok and all(isinstance(v, list) and v and all(map(number, v)) for v in table.values())
    if not ok:
        raise LabError(
            f"{folder}/config.json: 'probe_rmse' should map each of the model's signals to a "
            "list of non-negative numbers; measure it again with ./lab calibrate"
        )
    if not all(math.isfinite(x) for v in table.values() for x in v):
        return None
    return {k: [float(x) for x in v] for k, v in table.items()}
