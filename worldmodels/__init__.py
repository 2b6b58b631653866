"""JEPA world models: encoders, predictor, EMA target, probes, decoder, training, checkpoints."""

from worldmodels.checkpoint import load_checkpoint, save_checkpoint
from worldmodels.model import ModelConfig, WorldModel

__all__ = ["ModelConfig", "WorldModel", "load_checkpoint", "save_checkpoint"]
