"""A model from a checkpoint file alone: its hyperparameters, weights and tokenizer.

A checkpoint written by ``train.py fit`` holds everything needed to use it: the model's
hyperparameters (``hyper_parameters``: the preset, its overrides, the objectives, the
vocabulary size), the weights (``state_dict``, keys under ``model.``), the loader's shapes
(``datamodule_hyper_parameters``) and, when the run trained with a tokenizer other than
bytes, the tokenizer itself (``montage_tokenizer``). It is read with
``torch.load(weights_only=True)``: nothing in it runs. No Lightning is imported.

    loaded = load_checkpoint("runs/tiny/checkpoints/last.ckpt")
    loaded.model          # Reserve, eval mode, on CPU
    loaded.tokenizer      # what turned the run's words into ids
"""

from __future__ import annotations

import dataclasses
import hashlib
import pickle
import typing
from dataclasses import dataclass
from typing import Any

import torch

from model.config import ModelConfig, ObjectiveConfig
from model.data import tokenizer as tokenizers
from model.data.collate import DecodeConfig
from model.data.tokenizer import Tokenizer
from model.objectives.reserve import Reserve
from shards.layout import read_whole

PREFIX = "model."  # the LightningModule holds the Reserve as `self.model`
READ_ERRORS = (pickle.UnpicklingError, RuntimeError, EOFError, OSError, ValueError)


class CheckpointError(ValueError):
    """A checkpoint that cannot be used; the message is one line naming the file."""


@dataclass
class Loaded:
    model: Reserve
    tokenizer: Tokenizer
    decode: DecodeConfig  # the shapes a window is brought to for this model
    source: str  # the checkpoint's URL
    digest: str  # sha256 of the weights as loaded (what an index was made with)


def read(url: str) -> dict[str, Any]:
    """The checkpoint dict at a path or fsspec URL, weights_only; one-line errors."""
    try:
        with read_whole(url) as f:
            state = torch.load(f, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise CheckpointError(f"{url}: no such checkpoint") from None
    except READ_ERRORS as exc:
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise CheckpointError(f"{url}: not a loadable checkpoint ({first})") from None
    if not isinstance(state, dict):
        raise CheckpointError(f"{url}: holds a {type(state).__name__}, not a checkpoint")
    return state


def objectives_from(raw: dict[str, Any] | None, where: str) -> ObjectiveConfig:
    """ObjectiveConfig from the plain dict a checkpoint stores (None: the defaults)."""
    if raw is None:
        return ObjectiveConfig()
    if isinstance(raw, ObjectiveConfig):
        return raw
    hints = typing.get_type_hints(ObjectiveConfig)
    known = {f.name for f in dataclasses.fields(ObjectiveConfig)}
    unknown = sorted(set(raw) - known)
    if unknown:
        raise CheckpointError(f"{where}: objectives {unknown} are unknown to this version")
    try:
        return ObjectiveConfig(**{k: hints[k](**v) for k, v in raw.items()})
    except (TypeError, ValueError) as exc:
        raise CheckpointError(f"{where}: objectives do not parse ({exc})") from None


def model_config_from(hp: dict[str, Any], where: str) -> ModelConfig:
    overrides = dict(hp.get("config") or {})
    if hp.get("vocab_size") is not None:
        overrides["vocab_size"] = hp["vocab_size"]
    try:
        return ModelConfig.from_name(hp.get("size", "base"), **overrides)
    except (TypeError, ValueError) as exc:
        raise CheckpointError(f"{where}: model hyperparameters do not parse ({exc})") from None


def tokenizer_from(state: dict[str, Any], where: str) -> Tokenizer:
    """The run's tokenizer: ``montage_tokenizer`` when the checkpoint carries one, else
    bytes (a checkpoint from a run whose data module named another tokenizer but did not
    carry it cannot be used: its ids would mean nothing)."""
    carried = state.get(tokenizers.CHECKPOINT_KEY)
    if carried is not None:
        try:
            return tokenizers.from_state(carried)
        except ValueError as exc:
            raise CheckpointError(f"{where}: its tokenizer cannot be rebuilt: {exc}") from None
    spec = (state.get("datamodule_hyper_parameters") or {}).get("tokenizer", "bytes")
    if spec not in (None, "bytes"):
        raise CheckpointError(f"{where}: trained with tokenizer {spec!r}, which it does not carry")
    return tokenizers.from_state(None)


def digest_of(weights: dict[str, torch.Tensor]) -> str:
    h = hashlib.sha256()
    for name in sorted(weights):
        h.update(name.encode())
        h.update(weights[name].detach().float().cpu().numpy().tobytes())
    return h.hexdigest()


def load_checkpoint(url: str) -> Loaded:
    """The model a checkpoint holds, in eval mode on the CPU (move it with ``.to``)."""
    url = str(url)
    state = read(url)
    hp = state.get("hyper_parameters")
    weights = state.get("state_dict")
    if not isinstance(hp, dict) or not isinstance(weights, dict):
        raise CheckpointError(f"{url}: no hyper_parameters or state_dict (not from train.py fit)")
    config = model_config_from(hp, url)
    model = Reserve(config, objectives_from(hp.get("objectives"), url))
    own = {k[len(PREFIX) :]: v for k, v in weights.items() if k.startswith(PREFIX)}
    problems = model.load_state_dict(own, strict=False)
    if problems.missing_keys or problems.unexpected_keys:
        missing, extra = problems.missing_keys, problems.unexpected_keys
        raise CheckpointError(
            f"{url}: weights do not fit the model ({len(missing)} missing, e.g. "
            f"{missing[:1]}; {len(extra)} unexpected, e.g. {extra[:1]})"
        )
    decode = DecodeConfig(
        frame_size=config.frame_size,
        max_segments=config.max_segments,
        max_text_len=config.max_text_len,
        audio_frames=config.audio_frames,
        n_mels=config.n_mels,
    )
    tok = tokenizer_from(state, url)
    return Loaded(model.eval(), tok, decode, url, digest_of(own))
