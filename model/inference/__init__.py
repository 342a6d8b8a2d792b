"""Inference: a model loaded from a checkpoint file alone, turning text and windows into
embeddings. Imports no training code (no Lightning).

    from model.inference import Encoder, load_checkpoint
    enc = Encoder(load_checkpoint("runs/tiny/checkpoints/last.ckpt"))
    enc.encode_text(["pour the milk"])["text-video/text"]   # (1, E)
"""

from model.inference.encoder import Encoder, WindowVectors
from model.inference.loading import CheckpointError, Loaded, load_checkpoint
from model.inference.video import VideoVectors, encode_video

__all__ = [
    "CheckpointError",
    "Encoder",
    "Loaded",
    "VideoVectors",
    "WindowVectors",
    "encode_video",
    "load_checkpoint",
]
