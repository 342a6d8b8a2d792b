"""LightningModule around `Reserve`: optimizer, schedule, logging, zero-shot validation.

Configured through LightningCLI (train.py; `model:` in configs/*.yaml):

    model:
      size: base                  # preset; `config` fields override it
      config: {frame_size: [192, 320]}
      objectives: {span: {weight: 1.0}, mvm: {weight: 0.5}}
      lr: 4.0e-4

`vocab_size` (the data module's tokenizer) and `max_steps` (the trainer's) are linked by
the CLI. No hardware, no dataset.

The tokenizer a run used travels with its checkpoints: at each save the data module's
`tokenizer_state()` goes under `checkpoint["montage_tokenizer"]` (rebuilt by
`model.data.tokenizer.from_state`), and it is logged as hyperparameters (`tokenizer/kind`,
`tokenizer/sha256`, `tokenizer/source`) when fitting starts. Resuming with another
tokenizer than the checkpoint's is refused (the embeddings would mean other tokens).

Logged: `train/loss` and every term of `ReserveOutput.terms` (`train/span/frame`, ...),
the contrastive scales `scale/<objective>/<term>` (exp of the clipped log-scale); in
validation the same losses under `val/` (masks drawn from a fixed seed per batch, so
evaluations compare; negatives from the rank's own batch, as ranks validate different
numbers of batches) and zero-shot retrieval over the whole validation set, gathered from
every rank at the end (model/eval/evaluation.py): `val/t2v_r1`, `_r5`, `_r10`, `_medr` for t2v,
v2t, a2v, v2a (t2a, a2t, t2va where the objectives align them), `val/n` windows; and over
every real segment's still frame (model/eval/deflation.py), i2t and t2i, `val/n_stills`.
From COLLAPSE_CHECK_AFTER steps on, a span term that validation shows collapsed (at chance,
its rows alike; docs/DESIGN.md section 3.1) is reported once, as a one-line warning.

Masks are drawn from a generator seeded by (seed, step, rank): a resumed run draws the
same masks as an uninterrupted one.
"""

from __future__ import annotations

import logging
import math
from typing import Any

import lightning as L
import torch
from torch import Tensor

from model.config import ModelConfig, ObjectiveConfig
from model.data.batch import Batch
from model.data.tokenizer import CHECKPOINT_KEY
from model.distributed import local_only
from model.eval.deflation import Stills, cat_stills, embed_stills, gather_stills, stills_report
from model.eval.evaluation import (
    Embeddings,
    cat,
    embed_batch,
    gather,
    retrieval_metrics,
    retrieval_report,
)
from model.objectives.reserve import Reserve, ReserveOutput
from model.objectives.span import collapsed_terms
from model.seeding import derive_seed
from model.train.checkpoint import CheckpointError

log = logging.getLogger(__name__)

# Training steps before a collapsed span term is reported: at first every term is at chance
# and its rows alike (docs/DESIGN.md section 3.1; on the demo corpus the terms that learn
# are clear of the criterion by step 100).
COLLAPSE_CHECK_AFTER = 200


class ReserveModule(L.LightningModule):
    def __init__(
        self,
        size: str = "base",
        config: dict[str, Any] | None = None,
        objectives: ObjectiveConfig | None = None,
        vocab_size: int | None = None,
        lr: float = 4e-4,
        weight_decay: float = 0.1,
        betas: tuple[float, float] = (0.9, 0.98),
        eps: float = 1e-6,
        warmup_steps: int = 1000,
        max_steps: int | None = None,
        min_lr_ratio: float = 0.0,
        seed: int = 0,
    ) -> None:
        """size: preset name; config: ModelConfig fields overriding it; vocab_size: the
        tokenizer's, overriding both; the rest: AdamW and a linear-warmup then cosine
        schedule to min_lr_ratio at max_steps (constant after warmup when None); seed: masks."""
        super().__init__()
        self.save_hyperparameters()
        overrides = dict(config or {})
        if vocab_size is not None:
            overrides["vocab_size"] = vocab_size
        model_config = ModelConfig.from_name(size, **overrides)
        self.model = Reserve(model_config, objectives or ObjectiveConfig())
        self._val_embeddings: list[Embeddings] = []
        self._val_stills: list[Stills] = []
        self._val_span: dict[str, list[float]] = {}  # span objective's parts, per val batch
        self._warned: set[str] = set()  # span terms already reported as collapsed
        log.info("Reserve %s: %.1fM parameters", size, self.model.num_params() / 1e6)

    @property
    def model_config(self) -> ModelConfig:
        return self.model.config

    def forward(self, batch: Batch) -> Tensor:
        return self.model(batch).loss

    def _generator(self, *parts: object) -> torch.Generator:
        """A generator for one step's masks, the same in every run: (seed, parts, rank)."""
        g = torch.Generator(device=self.device)
        return g.manual_seed(derive_seed(self.hparams.seed, *parts, self.global_rank))

    def _step(self, batch: Batch, stage: str, generator: torch.Generator) -> ReserveOutput:
        out = self.model(batch, generator)
        sync = stage != "train"
        n = batch.batch_size
        self.log(f"{stage}/loss", out.loss, prog_bar=True, batch_size=n, sync_dist=sync)
        self.log_dict(
            {f"{stage}/{k}": v for k, v in out.terms.items()}, batch_size=n, sync_dist=sync
        )
        return out

    def training_step(self, batch: Batch, batch_idx: int) -> Tensor:
        loss = self._step(batch, "train", self._generator("train", self.global_step)).loss
        self.log_dict(contrastive_scales(self.model))
        return loss

    # ------------------------------------------------------------------ validation

    def on_validation_epoch_start(self) -> None:
        self._val_embeddings = []
        self._val_stills = []
        self._val_span = {}

    def validation_step(self, batch: Batch, batch_idx: int) -> Tensor:
        with local_only():  # ranks run different numbers of validation batches: no collective
            out = self._step(batch, "val", self._generator("val", batch_idx))
        if not self.trainer.sanity_checking:
            self._val_embeddings.append(embed_batch(self.model, batch))
            self._val_stills.append(embed_stills(self.model, batch))
            for k, v in out.terms.items():
                if k.startswith("span/"):
                    self._val_span.setdefault(k, []).append(float(v))
        return out.loss

    def on_validation_epoch_end(self) -> None:
        """Zero-shot retrieval over every rank's validation windows (a collective), and a
        warning for each span term that has collapsed (rank 0's windows)."""
        if self.trainer.sanity_checking:
            return
        self._warn_collapsed({k: sum(v) / len(v) for k, v in self._val_span.items()})
        local = (
            cat(self._val_embeddings)
            if self._val_embeddings
            else Embeddings.empty(self.model_config.embed_dim, self.device)
        )
        dim = self.model_config.embed_dim
        local_stills = (
            cat_stills(self._val_stills) if self._val_stills else Stills.empty(dim, self.device)
        )
        self._val_embeddings, self._val_stills = [], []
        windows, stills = gather(local), gather_stills(local_stills)
        report = retrieval_report(windows) | stills_report(stills)
        self.log_dict(retrieval_metrics(report, prefix="val/"))
        self.log("val/n", float(windows.n))
        self.log("val/n_stills", float(stills.present.sum()))

    def _warn_collapsed(self, means: dict[str, float]) -> None:
        """Log once per term, from COLLAPSE_CHECK_AFTER steps on, each span term that has
        collapsed on the validation windows (model.objectives.span.collapsed_terms)."""
        if self.global_step < COLLAPSE_CHECK_AFTER or self.global_rank != 0:
            return
        for term, account in collapsed_terms(means).items():
            if term not in self._warned:
                self._warned.add(term)
                log.warning(
                    "step %d: held out, %s. A small model learns it with shorter joint "
                    "sequences (model.config.segment_groups; docs/DESIGN.md section 3.1)",
                    self.global_step,
                    account,
                )

    # ------------------------------------------------------------------ the tokenizer

    def _tokenizer_state(self) -> dict[str, Any] | None:
        """The data module's tokenizer record, or None without one (plain dataloaders)."""
        trainer = self._trainer
        datamodule = getattr(trainer, "datamodule", None) if trainer is not None else None
        state = getattr(datamodule, "tokenizer_state", None)
        return state() if callable(state) else None

    def on_fit_start(self) -> None:
        state = self._tokenizer_state()
        if state is None:
            return
        record = {f"tokenizer/{k}": state[k] or "" for k in ("kind", "sha256", "source")}
        for logger in self.loggers:
            logger.log_hyperparams(record)

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        state = self._tokenizer_state()
        if state is not None:
            checkpoint[CHECKPOINT_KEY] = state

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        saved, now = checkpoint.get(CHECKPOINT_KEY), self._tokenizer_state()
        if not isinstance(saved, dict) or now is None:
            return
        if (saved.get("kind"), saved.get("sha256")) != (now["kind"], now["sha256"]):
            raise CheckpointError(
                f"checkpoint trained with the {saved.get('kind')} tokenizer "
                f"{saved.get('sha256') or ''} ({saved.get('source') or 'no file'}), but "
                f"data.tokenizer gives the {now['kind']} tokenizer {now['sha256'] or ''} "
                f"({now['source'] or 'no file'}); give data.tokenizer the checkpoint's"
            )

    # ------------------------------------------------------------------ optimization

    def configure_optimizers(self) -> dict[str, Any]:
        hp = self.hparams
        decay = [p for p in self.parameters() if p.requires_grad and p.dim() >= 2]
        no_decay = [p for p in self.parameters() if p.requires_grad and p.dim() < 2]
        fused = all(p.is_cuda for p in self.parameters())
        optimizer = torch.optim.AdamW(
            [  # names show in LearningRateMonitor's keys
                {"params": decay, "weight_decay": hp.weight_decay, "name": "decay"},
                {"params": no_decay, "weight_decay": 0.0, "name": "no_decay"},
            ],
            lr=hp.lr,
            betas=tuple(hp.betas),
            eps=hp.eps,
            fused=fused,
        )
        scheduler = torch.optim.lr_scheduler.LambdaLR(
            optimizer, lambda step: lr_factor(step, hp.warmup_steps, hp.max_steps, hp.min_lr_ratio)
        )
        return {
            "optimizer": optimizer,
            "lr_scheduler": {"scheduler": scheduler, "interval": "step"},
        }


def contrastive_scales(model: Reserve) -> dict[str, Tensor]:
    """`scale/<objective>/<term>` -> exp(clipped log-scale) of every learned contrastive scale."""
    return {f"scale/{name}": value for name, value in model.scales().items()}


def lr_factor(step: int, warmup: int, total: int | None, min_ratio: float = 0.0) -> float:
    """Linear warmup to 1 over `warmup` steps, then cosine to `min_ratio` at `total`."""
    if step < warmup:
        return (step + 1) / warmup
    if total is None or total <= warmup:
        return 1.0
    progress = min(1.0, (step - warmup) / (total - warmup))
    return min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * progress))
