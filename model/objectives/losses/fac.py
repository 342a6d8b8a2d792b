"""MMV's fine-and-coarse loss (docs/DESIGN.md section 3.9).

Two terms, both on cosine similarity over a temperature `tau` (0.07), on the batch
gathered from every process:

- fine space, video against audio (NCE, both directions averaged), over the items that
  have audio, with `x_ij = cos(v_i, a_j) / tau`:

      L_va = 1/2 [ mean_i (LSE_j x_ij - x_ii) + mean_i (LSE_j x_ji - x_ii) ]

- coarse space, video (through the fine-to-coarse head) against its K candidate captions:
  MIL-NCE (`model/objectives/losses/milnce.py`) on `cos(c_i, t_jk) / tau`.

      L_fac = w_va * L_va + w_vt * L_vt

The term "chance" is L_fac when every score is equal (what an untrained model that maps
everything to one point scores), computed from the masks; it carries no gradient.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from model.distributed import gather_features
from model.objectives.losses.common import masked_row_col
from model.objectives.losses.milnce import MilNceLoss


def nce(a: Tensor, b: Tensor, valid: Tensor, temperature: float) -> Tensor:
    """a, b (N, E) paired rows, valid (N,) bool -> symmetric NCE over the valid rows of the
    gathered batch (each direction's mean, averaged); zero when no row is valid."""
    assert a.shape == b.shape and a.dim() == 2, f"a {tuple(a.shape)} vs b {tuple(b.shape)}"
    a, b, valid = gather_features(a.float(), b.float(), valid)
    logits = F.normalize(a, dim=-1) @ F.normalize(b, dim=-1).T / temperature  # (N, N)
    row, col = masked_row_col(logits, valid)
    return (row + col) / 2


class FacLoss(nn.Module):
    def __init__(
        self, temperature: float = 0.07, audio_weight: float = 1.0, text_weight: float = 1.0
    ) -> None:
        super().__init__()
        assert temperature > 0, f"temperature must be > 0, got {temperature}"
        self.temperature = temperature
        self.audio_weight = audio_weight
        self.text_weight = text_weight
        self.milnce = MilNceLoss()

    def forward(
        self,
        video: Tensor,
        audio: Tensor,
        audio_valid: Tensor,
        coarse: Tensor,
        text: Tensor,
        candidates: Tensor,
    ) -> tuple[Tensor, dict[str, Tensor]]:
        """video, audio (N, E) fine embeddings and audio_valid (N,) bool; coarse (N, E) the
        video's coarse embedding, text (N, K, E) its candidate captions, candidates (N, K) bool.

        Returns the weighted loss, its two terms ("va", "vt") and its value at chance.
        """
        va = nce(video, audio, audio_valid, self.temperature)
        # cos / tau as a dot product: one side normalized and divided by tau, the other normalized
        query = F.normalize(coarse.float(), dim=-1) / self.temperature
        vt = self.milnce(query, F.normalize(text.float(), dim=-1), candidates)
        total = self.audio_weight * va + self.text_weight * vt
        valid, candidates = gather_features(audio_valid, candidates)
        level = self.audio_weight * nce_chance(valid) + self.text_weight * milnce_chance(candidates)
        return total, {"va": va, "vt": vt, "chance": level.to(total.device)}


def nce_chance(valid: Tensor) -> Tensor:
    """NCE with all scores equal: log of the number of valid rows (0 with none)."""
    return valid.sum().clamp(min=1).float().log()


def milnce_chance(candidates: Tensor) -> Tensor:
    """MIL-NCE with all scores equal. Item i with k_i valid captions, among n items holding
    C captions in all: log(C + n k_i) - log k_i, averaged over the items (0 with none)."""
    k = candidates.sum(1).float()  # (N,)
    items = k > 0
    per_item = torch.log(k.sum() + items.sum() * k.clamp(min=1)) - k.clamp(min=1).log()
    return torch.where(items, per_item, torch.zeros_like(per_item)).sum() / items.sum().clamp(min=1)
