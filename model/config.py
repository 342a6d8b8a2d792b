"""Model and objective configuration: plain dataclasses, presets by name.

`ModelConfig` sizes the encoders and the joint transformer; `ObjectiveConfig` selects
and weights the losses (an objective is on when its `weight` is above zero). Both are
plain typed dataclasses so LightningCLI / jsonargparse can fill them from YAML.

Presets: `tiny` (a CPU trains it in minutes), `base` and `large` (MERLOT Reserve's
widths and depths, docs/DESIGN.md section 3).

A value that cannot work raises ValueError naming its key as the CLI spells it
(`model.config.frame_size: ...`, `model.objectives.mvm.distance: ...`); the checks are
not asserts, so `python -O` keeps them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, fields, replace

# Audio sub-segments per segment: fixed by the sample format (docs/DESIGN.md section 2).
from shards.schema import SUBSEGMENTS as SUBSEGMENTS

PAD_ID = 0  # text padding token id; never attended to
MASK_ID = 1  # text MASK token id; replaces a masked sub-segment's words in the joint input
# Reserved for the span objective's masked audio. Tokenizers never emit it: it is the id of
# the byte NUL (byte b is id b + 2), which they drop from text.
MASKAUDIO_ID = 2


def require(ok: bool, key: str, problem: str) -> None:
    """Raise ValueError("<key>: <problem>") unless ok: a bad value in the user's config."""
    if not ok:
        raise ValueError(f"{key}: {problem}")


# ModelConfig fields that count something: at least 1.
POSITIVE = ("width", "heads", "patch_size", "frame_pool", "audio_frames", "audio_patch")
POSITIVE += ("audio_pool", "n_mels", "max_text_len", "max_segments", "segment_groups")
POSITIVE += ("embed_dim",)


@dataclass
class ModelConfig:
    """Sizes of the encoders and the joint transformer (all share one width)."""

    width: int = 768
    heads: int = 12
    mlp_ratio: float = 4.0
    dropout: float = 0.0
    # frame encoder (ViT)
    frame_size: tuple[int, int] = (192, 320)  # (H, W) the loader resizes/crops to
    patch_size: int = 16
    vision_layers: int = 12
    frame_pool: int = 2  # average-pool the ViT grid by this factor before the joint encoder
    frame_mean: tuple[float, float, float] = (0.485, 0.456, 0.406)
    frame_std: tuple[float, float, float] = (0.229, 0.224, 0.225)
    # audio encoder over one sub-segment's log-mel block (time-major: frames x mels)
    n_mels: int = 64
    audio_frames: int = 60  # spectrogram frames per sub-segment
    audio_patch: int = 2  # spectrogram frames per audio token
    audio_layers: int = 12
    audio_pool: int = 5  # average-pool audio tokens by this factor before the joint encoder
    # text
    vocab_size: int = 32768
    pad_id: int = PAD_ID
    mask_id: int = MASK_ID
    max_text_len: int = 32  # L: most tokens in one sub-segment
    span_layers: int = 4
    # joint transformer
    joint_layers: int = 12
    max_segments: int = 16  # S: segments in a window
    segment_groups: int = 2  # the joint encoder sees a window in this many consecutive groups
    embed_dim: int = 768  # width of the contrastive / retrieval embedding spaces

    def __post_init__(self) -> None:
        self.frame_size = tuple(self.frame_size)
        self.frame_mean = tuple(self.frame_mean)
        self.frame_std = tuple(self.frame_std)
        key = "model.config."
        for name in POSITIVE:
            value = getattr(self, name)
            require(value >= 1, key + name, f"must be >= 1, got {value}")
        require(
            self.width % self.heads == 0,
            key + "width",
            f"{self.width} is not divisible by heads ({self.heads})",
        )
        require(
            len(self.frame_size) == 2, key + "frame_size", f"must be [H, W], got {self.frame_size}"
        )
        h, w = self.frame_size
        cell = self.patch_size * self.frame_pool
        require(
            h > 0 and w > 0 and h % cell == 0 and w % cell == 0,
            key + "frame_size",
            f"{list(self.frame_size)} must be a multiple of patch_size * frame_pool = {cell}",
        )
        require(
            self.audio_frames % (self.audio_patch * self.audio_pool) == 0,
            key + "audio_frames",
            f"{self.audio_frames} must be a multiple of "
            f"audio_patch * audio_pool = {self.audio_patch * self.audio_pool}",
        )
        require(
            self.max_segments % self.segment_groups == 0,
            key + "segment_groups",
            f"{self.segment_groups} does not divide max_segments ({self.max_segments})",
        )
        require(self.pad_id != self.mask_id, key + "mask_id", "must differ from pad_id")
        for name in ("pad_id", "mask_id"):
            token = getattr(self, name)
            require(
                0 <= token < self.vocab_size,
                key + name,
                f"{token} lies outside the vocabulary (vocab_size {self.vocab_size})",
            )

    @property
    def patch_grid(self) -> tuple[int, int]:
        """ViT patch grid (Hp, Wp)."""
        return self.frame_size[0] // self.patch_size, self.frame_size[1] // self.patch_size

    @property
    def frame_tokens(self) -> int:
        """Nv: tokens one frame contributes to the joint sequence (after pooling)."""
        hp, wp = self.patch_grid
        return (hp // self.frame_pool) * (wp // self.frame_pool)

    @property
    def audio_tokens(self) -> int:
        """Na: tokens one audio sub-segment contributes to the joint sequence."""
        return self.audio_frames // self.audio_patch // self.audio_pool

    @classmethod
    def from_name(cls, name: str, **overrides: object) -> ModelConfig:
        """A preset (`tiny`, `base`, `large`) with fields overridden by keyword."""
        require(
            name in PRESETS, "model.size", f"unknown size {name!r}; choose from {sorted(PRESETS)}"
        )
        names = {f.name for f in fields(cls)}
        for key in overrides:
            require(key in names, f"model.config.{key}", "not a ModelConfig field")
        return replace(PRESETS[name], **overrides)


PRESETS: dict[str, ModelConfig] = {
    # Trains on a CPU in minutes: small frames, two layers per stack.
    "tiny": ModelConfig(
        width=64,
        heads=4,
        frame_size=(64, 96),
        vision_layers=2,
        audio_patch=4,
        audio_layers=2,
        audio_pool=5,
        vocab_size=512,
        max_text_len=16,
        span_layers=1,
        joint_layers=2,
        segment_groups=1,
        embed_dim=64,
    ),
    # MERLOT Reserve Base: width 768, 12 joint layers, 12-layer ViT, 12-layer audio, 4-layer span.
    "base": ModelConfig(),
    # MERLOT Reserve Large: width 1024, 24 joint layers, 24-layer ViT.
    "large": ModelConfig(
        width=1024,
        heads=16,
        vision_layers=24,
        audio_layers=12,
        span_layers=4,
        joint_layers=24,
        embed_dim=1024,
    ),
}


# ----------------------------------------------------------------------------- objectives


FRAME_TERMS = ("vision_free", "masked_frames")
MASK_BUDGETS = ("per_view", "shared")
AUDIO_NEGATIVES = ("all", "masked")


@dataclass
class SpanLossConfig:
    """MERLOT Reserve contrastive span loss: frame, audio and text terms.

    The defaults are Reserve's released recipe (docs/DESIGN.md section 3.1). The recipe
    Montage used before, kept for comparison, is: mask_budget shared, frame_term
    masked_frames, audio_negatives masked, neighbour_text_p 0, mask_audio_token false,
    borrow_tokens false.
    """

    weight: float = 1.0
    # share of a sample's real sub-segments MASKed: in each view (per_view, Reserve: 12 + 12
    # of 48, disjoint), or one budget split between the two views (shared)
    mask_rate: float = 0.25
    mask_budget: str = "per_view"
    # frame term: a separate pass without frames, one pooling token per segment over its
    # audio or its words (vision_free, Reserve); or MASKed frames in the text view
    frame_term: str = "vision_free"
    frame_mask_rate: float = 0.25  # masked_frames only: share of a sample's frames MASKed
    pass_words_p: float = 0.5  # vision_free only: chance that a sample's pass sees words
    # audio term negatives: the other masked audio plus every unmasked sub-segment's (all),
    # or the other masked audio only (masked)
    audio_negatives: str = "all"
    # audio view: chance that a masked sub-segment's neighbours show their words, not audio
    neighbour_text_p: float = 0.8
    mask_audio_token: bool = True  # text view: MASK queries the words, MASKAUDIO the audio
    borrow_tokens: bool = True  # an empty text-view MASK borrows a token from a neighbour
    init_log_scale: float = 1.0
    max_log_scale: float = math.log(100.0)

    def __post_init__(self) -> None:
        key = "model.objectives.span."
        for name in ("mask_rate", "frame_mask_rate", "pass_words_p", "neighbour_text_p"):
            rate = getattr(self, name)
            require(0.0 <= rate <= 1.0, key + name, f"{rate} is not in [0, 1]")
        for name, choices in (
            ("mask_budget", MASK_BUDGETS),
            ("frame_term", FRAME_TERMS),
            ("audio_negatives", AUDIO_NEGATIVES),
        ):
            value = getattr(self, name)
            require(value in choices, key + name, f"{value!r}; choose from {list(choices)}")
        require(
            self.mask_budget == "shared" or self.mask_rate <= 0.5,
            key + "mask_rate",
            f"{self.mask_rate} per view leaves the two views no disjoint room (at most 0.5)",
        )

    @classmethod
    def legacy(cls, **overrides: object) -> SpanLossConfig:
        """The recipe Montage used before Reserve's (kept to compare the two in one run)."""
        return cls(**{**LEGACY_SPAN, **overrides})


# SpanLossConfig fields of the recipe Montage used before Reserve's (bench/configs/span-legacy.yaml).
LEGACY_SPAN = {
    "mask_budget": "shared",
    "frame_term": "masked_frames",
    "audio_negatives": "masked",
    "neighbour_text_p": 0.0,
    "mask_audio_token": False,
    "borrow_tokens": False,
}


EAO_PAIRS = ("t-v", "t-a", "v-a", "t-va", "v-ta", "a-tv")


def _eao_weights() -> dict[str, float]:
    return {"t-v": 1.0, "t-a": 0.1, "v-a": 0.1, "t-va": 0.1, "v-ta": 0.1, "a-tv": 0.1}


@dataclass
class CombinatorialLossConfig:
    """Everything at Once: NormSoftmax over modality pairs and fused pairs, per segment."""

    weight: float = 0.0
    temperature: float = 0.05
    pair_weights: dict[str, float] = field(default_factory=_eao_weights)

    def __post_init__(self) -> None:
        key = "model.objectives.combinatorial."
        unknown = sorted(set(self.pair_weights) - set(EAO_PAIRS))
        require(
            not unknown, key + "pair_weights", f"unknown pairs {unknown}; choose from {EAO_PAIRS}"
        )
        require(self.temperature > 0, key + "temperature", f"must be > 0, got {self.temperature}")


@dataclass
class MilNceLossConfig:
    """MIL-NCE between a frame and the K sub-segment captions nearest to it in time."""

    weight: float = 0.0
    num_candidates: int = 3  # K

    def __post_init__(self) -> None:
        require(
            self.num_candidates >= 1,
            "model.objectives.milnce.num_candidates",
            f"must be >= 1 (at least one candidate caption), got {self.num_candidates}",
        )


@dataclass
class FacLossConfig:
    """MMV's fine and coarse spaces: video-audio NCE in the fine space, video-text MIL-NCE in
    the coarse space that video (and audio) reach through one fine-to-coarse head."""

    weight: float = 0.0
    temperature: float = 0.07  # both terms score cosine similarity / temperature
    audio_weight: float = 1.0  # of the video-audio NCE term
    text_weight: float = 1.0  # of the video-text MIL-NCE term
    num_candidates: int = 3  # K captions per frame, as in milnce

    def __post_init__(self) -> None:
        key = "model.objectives.fac."
        require(self.temperature > 0, key + "temperature", f"must be > 0, got {self.temperature}")
        for name in ("audio_weight", "text_weight"):  # FAC is both terms; milnce is text alone
            value = getattr(self, name)
            require(value > 0, key + name, f"must be > 0, got {value}")
        require(
            self.num_candidates >= 1,
            key + "num_candidates",
            f"must be >= 1 (at least one candidate caption), got {self.num_candidates}",
        )


@dataclass
class MvmLossConfig:
    """Masked visual modelling (VIOLETv2) on frame patches, predicted from the joint output."""

    weight: float = 0.0
    targets: tuple[str, ...] = ("pixel", "hog")  # any of "pixel", "hog"; their losses are averaged
    mask_ratio: float = 0.3  # share of pooled frame cells (frame_pool^2 patches each) masked
    distance: str = "l2"  # "l1" or "l2"
    norm_pixels: bool = True  # pixel target normalised per patch (mean 0, var 1)
    hog_bins: int = 9
    hog_cell: int = 8  # pixels; a patch holds (patch_size / hog_cell)^2 cells

    def __post_init__(self) -> None:
        self.targets = tuple(self.targets)
        key = "model.objectives.mvm."
        require(
            bool(self.targets) and set(self.targets) <= {"pixel", "hog"},
            key + "targets",
            f"must be 'pixel' and/or 'hog', got {list(self.targets)}",
        )
        require(
            self.distance in ("l1", "l2"),
            key + "distance",
            f"must be l1 or l2, got {self.distance!r}",
        )
        require(
            0.0 < self.mask_ratio < 1.0, key + "mask_ratio", f"{self.mask_ratio} is not in (0, 1)"
        )
        require(self.hog_bins >= 1, key + "hog_bins", f"must be >= 1, got {self.hog_bins}")
        require(self.hog_cell >= 1, key + "hog_cell", f"must be >= 1, got {self.hog_cell}")


@dataclass
class MerlotLossConfig:
    """MERLOT: frame-transcript matching, attention-masked language modelling, reordering.

    The objective's loss is the weighted sum of its three terms; a term with weight 0
    builds no head and costs nothing.
    """

    weight: float = 0.0
    match_weight: float = 1.0  # contrastive frame <-> its segment's transcript
    mlm_weight: float = 1.0  # masked language modelling over frames + words
    order_weight: float = 1.0  # temporal reordering of shuffled frames
    temperature: float = 0.05  # of the matching term's cosine similarities
    mask_rate: float = 0.2  # share of a window's word tokens masked
    attention_share: float = 0.5  # of those, the share taken where the frames attend most
    reorder_rate: float = 0.4  # share of windows whose frames are (partly) shuffled

    def __post_init__(self) -> None:
        key = "model.objectives.merlot."
        for name in ("match_weight", "mlm_weight", "order_weight"):
            value = getattr(self, name)
            require(value >= 0, key + name, f"must be >= 0, got {value}")
        require(
            self.weight <= 0 or self.match_weight + self.mlm_weight + self.order_weight > 0,
            key + "weight",
            "needs a term with weight > 0 (match_weight, mlm_weight or order_weight)",
        )
        require(self.temperature > 0, key + "temperature", f"must be > 0, got {self.temperature}")
        require(
            0.0 < self.mask_rate <= 1.0, key + "mask_rate", f"{self.mask_rate} is not in (0, 1]"
        )
        for name in ("attention_share", "reorder_rate"):
            rate = getattr(self, name)
            require(0.0 <= rate <= 1.0, key + name, f"{rate} is not in [0, 1]")


@dataclass
class ObjectiveConfig:
    """Which losses train the model and how much each weighs (weight 0 = off)."""

    span: SpanLossConfig = field(default_factory=SpanLossConfig)
    combinatorial: CombinatorialLossConfig = field(default_factory=CombinatorialLossConfig)
    milnce: MilNceLossConfig = field(default_factory=MilNceLossConfig)
    mvm: MvmLossConfig = field(default_factory=MvmLossConfig)
    merlot: MerlotLossConfig = field(default_factory=MerlotLossConfig)
    fac: FacLossConfig = field(default_factory=FacLossConfig)

    def __post_init__(self) -> None:
        require(
            any(w > 0 for w in self.weights().values()),
            "model.objectives",
            "at least one objective needs weight > 0",
        )

    def weights(self) -> dict[str, float]:
        return {
            "span": self.span.weight,
            "combinatorial": self.combinatorial.weight,
            "milnce": self.milnce.weight,
            "mvm": self.mvm.weight,
            "merlot": self.merlot.weight,
            "fac": self.fac.weight,
        }

    def enabled(self) -> list[str]:
        return [name for name, w in self.weights().items() if w > 0]

    @classmethod
    def only(cls, name: str) -> ObjectiveConfig:
        """Exactly one objective on, with weight 1 and defaults otherwise."""
        cfg = cls()
        require(
            name in cfg.weights(),
            "objective",
            f"unknown {name!r}; choose from {list(cfg.weights())}",
        )
        for other in cfg.weights():
            getattr(cfg, other).weight = 1.0 if other == name else 0.0
        return cfg
