"""Typed configuration of the image experiment (loaded from ``experiments/configs/image/*.yaml``)."""

from __future__ import annotations

from dataclasses import dataclass, field

from core.config import QuantizerConfig, TrackingConfig, TrainConfig


@dataclass
class ImageDataConfig:
    """Where the images come from.

    ``source``: ``"embedded"`` (natural images shipped inside the scikit-image and scikit-learn wheels, cut into
    random crops; works offline), ``"cifar10"`` (``torchvision.datasets.CIFAR10`` layout under ``root``) or
    ``"folder"`` (``root/train/<class>/*`` and ``root/val/<class>/*``, the ImageNet layout, read with
    ``torchvision.datasets.ImageFolder``).
    """

    source: str = "embedded"
    root: str = ""
    crop_size: int = 32  # embedded: side of the random crops, pixels
    val_crops: int = 2048  # embedded: fixed, seeded validation crops of the held-out images
    image_size: int = 128  # folder: images are resized and center-cropped to this side
    num_workers: int = 0


@dataclass
class ImageModelConfig:
    """Encoder/decoder of the paper (sec. 4.1): strided 4×4 convolutions and ReLU–3×3–ReLU–1×1 residual blocks."""

    in_channels: int = 3
    hidden_channels: int = 256  # paper: 256 hidden units
    residual_channels: int = 256  # hidden units inside each residual block
    num_residual_blocks: int = 2
    num_downsamples: int = 2  # each halves H and W: 32×32 → 8×8, 128×128 → 32×32


@dataclass
class ImageConfig:
    """The whole image experiment."""

    data: ImageDataConfig = field(default_factory=ImageDataConfig)
    model: ImageModelConfig = field(default_factory=ImageModelConfig)
    quantizer: QuantizerConfig = field(default_factory=QuantizerConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    tracking: TrackingConfig = field(default_factory=lambda: TrackingConfig(experiment_name="vqvae-image"))
