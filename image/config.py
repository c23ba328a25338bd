"""Typed configuration of the image experiment (loaded from ``experiments/configs/image/*.yaml``)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

from core.config import ConfigError, Limits, QuantizerConfig, TrackingConfig, TrainConfig


@dataclass
class ImageDataConfig:
    """Where the images come from.

    ``source``: ``"embedded"`` (natural images shipped inside the scikit-image and scikit-learn wheels and, with
    ``debian_photos``, photographs of Debian's wallpaper packages (:mod:`image.photos`), cut into random crops;
    works offline), ``"cifar10"`` (``torchvision.datasets.CIFAR10`` layout under ``root``) or
    ``"folder"`` (``root/train/<class>/*`` and ``root/val/<class>/*``, the ImageNet layout, read with
    ``torchvision.datasets.ImageFolder``).
    """

    source: str = "embedded"
    root: str = ""
    crop_size: int = 32  # embedded: side of the random crops, pixels
    val_crops: int = 2048  # embedded: fixed, seeded validation crops of each held-out set
    debian_photos: bool = True  # embedded: train on the Debian wallpaper photos too (image.photos)
    colour_augment: str = "none"  # embedded training crops: "none" or "channel_permutation" (see EmbeddedCrops)
    photo_root: str = "/usr/share"  # embedded: where the Debian photo packages installed wallpapers/ and backgrounds/
    image_size: int = 128  # folder: images are resized and center-cropped to this side
    num_workers: int = 0

    LIMITS: ClassVar[Limits] = {"crop_size": (">=", 1), "val_crops": (">=", 1), "image_size": (">=", 1),
                                "num_workers": (">=", 0)}
    CHOICES: ClassVar[dict[str, tuple]] = {"source": ("embedded", "cifar10", "folder"),
                                           "colour_augment": ("none", "channel_permutation")}


@dataclass
class ImageModelConfig:
    """Encoder/decoder of the paper (sec. 4.1): strided 4×4 convolutions and ReLU–3×3–ReLU–1×1 residual blocks."""

    in_channels: int = 3
    hidden_channels: int = 256  # paper: 256 hidden units
    residual_channels: int = 256  # hidden units inside each residual block
    num_residual_blocks: int = 2
    num_downsamples: int = 2  # each halves H and W: 32×32 → 8×8, 128×128 → 32×32
    # kernel of the decoder's first convolution, out of the code space: 3 (the reference implementation's 3×3, so
    # each position decodes from its 3×3 code neighbourhood; +0.6 dB held-out on the embedded default) or 1 (1×1)
    decoder_input_kernel: int = 3
    likelihood: str = "gaussian"  # decoder p(x|z_q): "gaussian" (MSE; paper eq. 3) or "categorical" (256-way softmax)
    # latent maps: 1 (the VQ-VAE paper's model), 2 (VQ-VAE-2: bottom at 2^num_downsamples×, top 2× coarser) or 3
    # (bottom, middle, top; VQ-VAE-2's Fig. 3). Several levels: image.hierarchy (vq/ema, one codebook, gaussian)
    levels: int = 1
    # levels > 1, training only: the probability that an item is decoded from its top levels alone (1 … levels − 1
    # of them, uniformly; the levels below are zero vectors, as in progressive decoding), so the decoder learns to
    # read the upper levels on their own. A deviation from VQ-VAE-2 (0 = the paper)
    level_dropout: float = 0.0

    LIMITS: ClassVar[Limits] = {"in_channels": (">=", 1), "hidden_channels": (">=", 1),
                                "residual_channels": (">=", 1), "num_residual_blocks": (">=", 0),
                                "num_downsamples": (">=", 0), "decoder_input_kernel": (">=", 1),
                                "levels": (">=", 1, "<=", 3), "level_dropout": (">=", 0.0, "<", 1.0)}
    CHOICES: ClassVar[dict[str, tuple]] = {"likelihood": ("gaussian", "categorical")}


@dataclass
class ImagePriorConfig:
    """The second stage: a gated PixelCNN over the frozen VQ-VAE's codes (paper sec. 4.1–4.2)."""

    vqvae_checkpoint: str = ""  # empty: this run's own VQ-VAE checkpoint
    code_items: int = 50000  # training images whose codes are extracted (all of a finite dataset if larger)
    channels: int = 64
    num_layers: int = 8
    kernel_size: int = 5
    class_conditional: bool = True  # condition on the class label where the dataset has labels
    samples: int = 32  # images sampled and decoded at the end
    temperature: float = 1.0
    # model.levels > 1 (VQ-VAE-2): causal self-attention blocks after the top level's PixelCNN (PixelSNAIL-style;
    # a named deviation, off by default: the paper's top prior is a PixelSNAIL, ours a gated PixelCNN) and their heads
    top_attention_blocks: int = 0
    attention_heads: int = 4
    train: TrainConfig = field(default_factory=lambda: TrainConfig(steps=1000, batch_size=64, lr=1e-3, eval_every=250,
                                                                   log_every=50, checkpoint_every=250))

    LIMITS: ClassVar[Limits] = {"code_items": (">=", 1), "channels": (">=", 1), "num_layers": (">=", 1),
                                "kernel_size": (">=", 1), "samples": (">=", 1), "temperature": (">", 0),
                                "top_attention_blocks": (">=", 0), "attention_heads": (">=", 1)}


@dataclass
class ImageConfig:
    """The whole image experiment."""

    data: ImageDataConfig = field(default_factory=ImageDataConfig)
    model: ImageModelConfig = field(default_factory=ImageModelConfig)
    quantizer: QuantizerConfig = field(default_factory=QuantizerConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    prior: ImagePriorConfig = field(default_factory=ImagePriorConfig)
    tracking: TrackingConfig = field(default_factory=lambda: TrackingConfig(experiment_name="vqvae-image"))

    def check(self) -> None:
        """Rules across sections (raises :class:`ConfigError`): the hierarchical model takes a vq or ema
        quantizer with one codebook per level and the gaussian likelihood; attention heads divide the prior's width."""
        if self.model.levels > 1 and (self.quantizer.kind == "sq" or self.quantizer.groups != 1
                                      or self.model.likelihood != "gaussian"):
            raise ConfigError(f"model.levels={self.model.levels} takes quantizer.kind vq or ema, "
                              f"quantizer.groups=1 and model.likelihood=gaussian, got {self.quantizer.kind}, "
                              f"{self.quantizer.groups}, {self.model.likelihood}")
        if self.model.level_dropout and self.model.levels == 1:
            raise ConfigError("model.level_dropout needs model.levels > 1")
        multiple = 2 ** (self.model.num_downsamples + self.model.levels - 1)
        side = {"embedded": ("data.crop_size", self.data.crop_size),
                "folder": ("data.image_size", self.data.image_size),
                "cifar10": ("the CIFAR-10 image side", 32)}[self.data.source]
        if side[1] % multiple:
            raise ConfigError(f"{side[0]} ({side[1]}) must be a multiple of {multiple}, the coarsest latent map's "
                              f"downsampling (2^(model.num_downsamples + model.levels - 1))")
        if self.prior.top_attention_blocks and self.prior.channels % self.prior.attention_heads:
            raise ConfigError(f"prior.attention_heads ({self.prior.attention_heads}) must divide prior.channels "
                              f"({self.prior.channels})")
