"""gather_features: identity on one process; on two gloo processes the gathered losses
equal the single-process losses on the concatenated batch, and so do the gradients."""

import torch
from torch import nn

from model.distributed import gather_features
from model.objectives.losses import CombinatorialLoss, ContrastiveSpanLoss, MilNceLoss
from tests.helpers import average_over_ranks, on_gloo_ranks

ROWS = (5, 3)  # unequal rows per rank, as at the end of an epoch
FEATURES, EMBED = 6, 4


def test_gather_features_is_identity_on_one_process():
    x = torch.randn(3, 2, requires_grad=True)
    mask = torch.tensor([True, False, True])
    gx, gm = gather_features(x, mask)
    assert gx is x and gm is mask


def _data():
    """The full batch, identical in every process (rank r uses its ROWS[r] slice)."""
    g = torch.Generator().manual_seed(0)
    n = sum(ROWS)
    return {
        "x": torch.randn(n, FEATURES, generator=g),
        "y": torch.randn(n, FEATURES, generator=g),
        "valid": torch.rand(n, generator=g) < 0.8,
        "cand_text": torch.randn(n, 3, FEATURES, generator=g),
        "cand": torch.rand(n, 3, generator=g) < 0.6,
        "present": {m: torch.rand(n, generator=g) < 0.8 for m in "tva"},
    }


def _losses(data, rows):
    """All three gathered losses on `rows` of the data, through small linear encoders.

    Returns (losses, parameter gradients); the modules are seeded identically everywhere.
    """
    torch.manual_seed(1)
    enc = nn.ModuleDict(
        {k: nn.Linear(FEATURES, EMBED) for k in ("x", "y", "t", "v", "a", "va", "ta", "tv")}
    )
    span = ContrastiveSpanLoss(("audio",), init_log_scale=1.5)
    eao = CombinatorialLoss(
        {"t-v": 1.0, "t-a": 0.1, "v-a": 0.1, "t-va": 0.1, "v-ta": 0.1, "a-tv": 0.1}
    )
    x, y, valid = data["x"][rows], data["y"][rows], data["valid"][rows]
    losses = {
        "span": span({"audio": (enc["x"](x), enc["y"](y), valid)})["audio"],
        "milnce": MilNceLoss()(enc["x"](x), enc["t"](data["cand_text"][rows]), data["cand"][rows]),
        "combinatorial": eao(
            {k: enc[k](x if len(k) == 1 else y) for k in ("t", "v", "a", "va", "ta", "tv")},
            {m: p[rows] for m, p in data["present"].items()},
        )[0],
    }
    params = dict(enc.named_parameters()) | {"scale": span.log_scales["audio"]}
    grads = {}
    for name, loss in losses.items():
        gs = torch.autograd.grad(loss, list(params.values()), allow_unused=True)
        grads[name] = {
            k: torch.zeros_like(p) if g is None else g
            for (k, p), g in zip(params.items(), gs, strict=True)
        }
    return {k: v.detach() for k, v in losses.items()}, grads


def _rank(rank, world):
    start = sum(ROWS[:rank])
    losses, grads = _losses(_data(), slice(start, start + ROWS[rank]))
    for per_loss in grads.values():
        average_over_ranks(per_loss.values())
    return {"losses": losses, "grads": grads}


def test_two_process_gathered_losses_equal_single_process_on_concatenated_batch(tmp_path):
    got = on_gloo_ranks(_rank, len(ROWS), tmp_path / "rank0.pt")
    ref_losses, ref_grads = _losses(_data(), slice(0, sum(ROWS)))
    for name, ref in ref_losses.items():
        torch.testing.assert_close(
            got["losses"][name], ref, atol=1e-5, rtol=1e-5, msg=f"{name} loss"
        )
        for p, g in ref_grads[name].items():
            torch.testing.assert_close(
                got["grads"][name][p], g, atol=1e-5, rtol=1e-5, msg=f"{name} grad {p}"
            )
        assert any(g.abs().sum() > 0 for g in ref_grads[name].values())
