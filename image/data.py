"""Image datasets of the VQ-VAE image experiments: embedded natural images, CIFAR-10 and ImageNet-style folders.

Every dataset yields ``(x, y)`` with ``x`` a ``[C, H, W]`` float tensor in [0, 1] and ``y`` an ``int`` class label
(``-1`` where the source has no labels), so that the trainer and ``data_variance`` treat all sources alike.

Axis legend: N items, C colour channels (3, RGB), H W image height and width, S side of a square crop.
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

import numpy as np
import skimage.data
import torch
from PIL import Image
from torch.utils.data import Dataset
from torchvision import datasets, transforms

from image.cifar import cifar10  # noqa: F401  (part of this module's API: the cifar10 source)
from image.config import ImageDataConfig
from image.photos import debian_photos

EMBEDDED_HELD_OUT = ("chelsea", "flower", "motorcycle_right", "grass")  # embedded images used only for validation
# Photos in neither split: motorcycle_left is the stereo twin of the held-out motorcycle_right (the same scene).
EMBEDDED_TWINS = ("motorcycle_left",)
VAL_SEED = 12345  # seed of the embedded validation crops, fixed so that runs with different training seeds compare

# Files of the wheels' image folders that are not natural photographs, decided by looking at each one. Only *.png and
# *.jpg are read at all, so no_time_for_that_tiny.gif, multipage*.tif, lfw_subset.npy, motorcycle_disp.npz and
# lbpcascade_frontalface_opencv.xml never enter. Kept after inspection: microaneurysms (a 102×102 crop of a retinal
# fundus photograph), clock_motion (a photograph of a clock blurred by motion), page and text (photographs of a printed
# page and of handwriting).
EMBEDDED_EXCLUDED = (
    "chessboard_GRAY",  # synthetic 8-level chessboard
    "chessboard_RGB",  # synthetic chessboard
    "color",  # synthetic hue/saturation colour wheel
    "horse",  # binary silhouette with an alpha channel
    "logo",  # the scikit-image logo, a drawing
    "phantom",  # Shepp–Logan phantom, synthetic
)
_EMBEDDED_SUFFIXES = (".png", ".jpg")

FOLDER_LAYOUT = "root/{train,val}/<class_name>/<image>.{jpg,png,...} (the ImageNet layout)"


def _embedded_files() -> list[Path]:
    """Paths of the candidate image files shipped with scikit-image and scikit-learn, sorted by name."""
    folders = [Path(os.path.dirname(skimage.data.__file__))]
    # find_spec locates scikit-learn without importing sklearn.datasets, which takes about a second.
    sklearn_spec = importlib.util.find_spec("sklearn")
    if sklearn_spec is not None and sklearn_spec.submodule_search_locations:
        folders += [Path(p) / "datasets" / "images" for p in sklearn_spec.submodule_search_locations]
    files = [f for d in folders if d.is_dir() for f in d.iterdir() if f.suffix.lower() in _EMBEDDED_SUFFIXES]
    return sorted(files, key=lambda f: f.stem)


def embedded_images(split: str) -> list[tuple[str, np.ndarray]]:
    """The natural photographs shipped inside the scikit-image and scikit-learn wheels (works offline).

    The files are read directly (never through ``skimage.data.<name>()``, which may try to download). Synthetic
    images are left out (see ``EMBEDDED_EXCLUDED``), and so is ``EMBEDDED_TWINS`` (the stereo twin of a held-out
    photo); ``EMBEDDED_HELD_OUT`` go to ``"val"``, the others to ``"train"``.

    Args:
        split: ``"train"`` or ``"val"``.

    Returns:
        ``(name, image)`` pairs sorted by name; ``name`` is the file stem, ``image`` is ``[H, W, 3]`` uint8 (gray
        images have their channel repeated, an alpha channel is dropped).

    Raises:
        ValueError: For an unknown split, or if two files share a name.
    """
    if split not in ("train", "val"):
        raise ValueError(f"unknown split {split!r}; expected 'train' or 'val'")
    images: dict[str, np.ndarray] = {}
    for path in _embedded_files():
        name = path.stem
        if name in EMBEDDED_EXCLUDED or name in EMBEDDED_TWINS or (name in EMBEDDED_HELD_OUT) != (split == "val"):
            continue
        if name in images:
            raise ValueError(f"two embedded images are named {name!r}; the train/val split would be ambiguous")
        with Image.open(path) as img:
            images[name] = np.asarray(to_rgb8(img), dtype=np.uint8)  # [H, W, 3]
    return sorted(images.items())


COLOUR_AUGMENTS = ("none", "channel_permutation")
_CHANNEL_ORDERS = ((0, 1, 2), (0, 2, 1), (1, 0, 2), (1, 2, 0), (2, 0, 1), (2, 1, 0))
_MASK64 = (1 << 64) - 1


def _splitmix64(x: int) -> int:
    """One step of the SplitMix64 generator: a fast, well-mixed 64-bit hash of ``x``."""
    x = (x + 0x9E3779B97F4A7C15) & _MASK64
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & _MASK64
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & _MASK64
    return x ^ (x >> 31)


def _uniforms(seed: int, index: int, count: int = 3) -> list[float]:
    """``count`` uniforms in [0, 1) that are a pure function of ``(seed, index)`` (SplitMix64; ~100× cheaper than
    creating a NumPy generator per item)."""
    state = _splitmix64((seed << 32) ^ index)
    out = []
    for _ in range(count):
        state = _splitmix64(state)
        out.append((state >> 11) * 2.0**-53)
    return out


def to_tensor(image: np.ndarray) -> torch.Tensor:
    """``[H, W, 3]`` uint8 → ``[3, H, W]`` float32 in [0, 1]."""
    return torch.from_numpy(np.ascontiguousarray(image.transpose(2, 0, 1))).float().div_(255.0)  # [3, H, W]


class EmbeddedCrops(Dataset):
    """Random square crops of a few large images; item ``i`` is a pure function of ``(seed, i)``.

    The crop of item ``i`` is drawn from uniforms hashed from ``(seed, i)`` (SplitMix64): first the image, with probability
    proportional to its area (so every pixel position is about equally likely), then a uniform top-left corner.
    Workers, restarts and resumed runs therefore see the same crop for the same index.

    Args:
        images: ``[H, W, 3]`` uint8 arrays, each at least ``crop_size`` on both sides.
        crop_size: Side ``S`` of the crops, pixels.
        seed: Non-negative seed of the crops.
        length: Number of items (crops are drawn afresh per index, so this only sets the epoch size).
        colour_augment: ``"none"`` or ``"channel_permutation"`` (each crop's RGB channels in one of the 6 orders,
            drawn from the same hash: widens the colours seen in training; a deviation from the paper).

    Raises:
        ValueError: If ``images`` is empty, an image is not ``[H, W, 3]`` uint8, or one is smaller than ``crop_size``.
    """

    def __init__(self, images: list[np.ndarray], crop_size: int, seed: int, length: int = 2**20,
                 colour_augment: str = "none") -> None:
        if colour_augment not in COLOUR_AUGMENTS:
            raise ValueError(f"unknown colour_augment {colour_augment!r}; known: {', '.join(COLOUR_AUGMENTS)}")
        self.permute = colour_augment == "channel_permutation"
        if not images:
            raise ValueError("EmbeddedCrops needs at least one image")
        if crop_size < 1 or length < 0 or seed < 0:
            raise ValueError(f"need crop_size >= 1, length >= 0, seed >= 0; got {crop_size}, {length}, {seed}")
        for k, image in enumerate(images):
            if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
                raise ValueError(f"image {k} must be [H, W, 3] uint8, got {image.shape} {image.dtype}")
            if min(image.shape[:2]) < crop_size:
                raise ValueError(f"image {k} of size {image.shape[:2]} is smaller than crop_size={crop_size}")
        self.images = list(images)
        self.crop_size = crop_size
        self.seed = seed
        self.length = length
        areas = np.array([image.shape[0] * image.shape[1] for image in images], dtype=np.float64)
        self._cdf = np.cumsum(areas / areas.sum())  # [number of images]

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        """Returns ``(x, -1)`` with ``x`` the crop of item ``i``, ``[3, S, S]`` float32 in [0, 1]."""
        if not 0 <= i < self.length:
            raise IndexError(f"index {i} out of range for {self.length} crops")
        u_image, u_top, u_left, u_colour = _uniforms(self.seed, i, 4)
        image = self.images[min(int(np.searchsorted(self._cdf, u_image, side="right")), len(self.images) - 1)]
        s = self.crop_size
        top = int(u_top * (image.shape[0] - s + 1))
        left = int(u_left * (image.shape[1] - s + 1))
        crop = image[top : top + s, left : left + s]
        if self.permute:
            crop = crop[:, :, _CHANNEL_ORDERS[int(u_colour * len(_CHANNEL_ORDERS))]]
        return to_tensor(crop), -1  # [3, S, S]


def fixed_crops(images: list[np.ndarray], crop_size: int, count: int, seed: int) -> torch.Tensor:
    """The first ``count`` crops of ``EmbeddedCrops(images, crop_size, seed)``, a fixed evaluation set.

    Returns:
        ``[count, 3, S, S]`` float32 in [0, 1].
    """
    crops = EmbeddedCrops(images, crop_size, seed, length=count)
    if count == 0:
        return torch.empty(0, 3, crop_size, crop_size)
    return torch.stack([crops[i][0] for i in range(count)])  # [N, 3, S, S]


class TensorImages(Dataset):
    """Images held in memory as one tensor.

    Args:
        images: ``[N, 3, H, W]`` float in [0, 1].
        labels: ``[N]`` long; ``None`` gives ``-1`` for every item.
    """

    def __init__(self, images: torch.Tensor, labels: torch.Tensor | None = None) -> None:
        if images.ndim != 4:
            raise ValueError(f"images must be [N, C, H, W], got shape {tuple(images.shape)}")
        if labels is None:
            labels = torch.full((images.shape[0],), -1, dtype=torch.long)
        if labels.shape != (images.shape[0],):
            raise ValueError(f"labels must be [{images.shape[0]}], got shape {tuple(labels.shape)}")
        self.images = images
        self.labels = labels.long()

    def __len__(self) -> int:
        return self.images.shape[0]

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        """Returns ``(x, y)``, ``x`` ``[3, H, W]``, ``y`` an int."""
        return self.images[i], int(self.labels[i])


def to_rgb8(img: Image.Image) -> Image.Image:
    """``img`` as 8-bit RGB with its full range kept.

    PIL's ``convert("RGB")`` clips 16-bit grayscale (modes ``I;16*`` and ``I``, e.g. 16-bit PNGs) at 255, turning
    most of the image white; here they are scaled by 255/65535. Palette images with transparency go through RGBA
    (the alpha channel is dropped, as for RGBA images).

    Raises:
        ValueError: for floating-point images (mode ``F``), whose range is unknown.
    """
    if img.mode.startswith("I;16") or img.mode == "I":
        values = np.asarray(img, dtype=np.float64)  # [H, W] in 0..65535
        gray = np.clip(np.round(values * (255.0 / 65535.0)), 0, 255).astype(np.uint8)
        return Image.fromarray(gray).convert("RGB")  # [H, W] uint8 → L → RGB
    if img.mode == "F":
        raise ValueError("floating-point (mode F) images are not supported: their value range is unknown")
    if img.mode in ("P", "PA"):
        img = img.convert("RGBA")
    return img.convert("RGB")


def load_rgb(path: str) -> Image.Image:
    """The image at ``path`` as 8-bit RGB (:func:`to_rgb8`; ``ImageFolder``'s loader, and the reconstruct stage's);
    ``ValueError`` naming ``path`` if it cannot be read."""
    try:
        with Image.open(path) as img:
            return to_rgb8(img)  # converting loads the pixels, so a truncated file fails here
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as e:
        raise ValueError(f"cannot read image {path}: {e}") from e


def image_folder(root: str, split: str, image_size: int) -> Dataset:
    """Images in the ImageNet layout ``root/<split>/<class_name>/<image>``, read with ``torchvision``'s ``ImageFolder``.

    Each image is converted to RGB, resized so its shorter side is ``image_size`` and center-cropped to a square.

    Args:
        root: Dataset folder.
        split: Sub-folder, ``"train"`` or ``"val"``.
        image_size: Side of the output images, pixels.

    Returns:
        Dataset of ``(x, label)``, ``x`` ``[3, image_size, image_size]`` float32 in [0, 1], ``label`` the index of
        the class folder in sorted order. Reading an unreadable file raises ``ValueError`` naming it.

    Raises:
        FileNotFoundError: If ``root/<split>`` is missing or holds no class folder with images.
    """
    split_dir = os.path.join(root, split)
    if not os.path.isdir(split_dir):
        raise FileNotFoundError(f"image folder {split_dir} does not exist; expected {FOLDER_LAYOUT}")
    transform = transforms.Compose(
        [transforms.Resize(image_size), transforms.CenterCrop(image_size), transforms.ToTensor()]
    )
    try:
        return datasets.ImageFolder(split_dir, transform=transform, loader=load_rgb)
    except FileNotFoundError as e:  # no class folders, or a class folder without images
        raise FileNotFoundError(f"no images found in {split_dir} ({e}); expected {FOLDER_LAYOUT}") from e


def _embedded_datasets(cfg: ImageDataConfig, seed: int) -> tuple[Dataset, Dataset]:
    train_images = [image for _, image in embedded_images("train")]
    if cfg.debian_photos:
        train_images += [image for _, image in debian_photos("train", cfg.photo_root)]
    train = EmbeddedCrops(train_images, cfg.crop_size, seed, colour_augment=cfg.colour_augment)
    val_images = [image for _, image in embedded_images("val")]
    return train, TensorImages(fixed_crops(val_images, cfg.crop_size, cfg.val_crops, seed=VAL_SEED))


def build_extra_val_sets(cfg: ImageDataConfig) -> dict[str, Dataset]:
    """Further held-out sets evaluated next to the main one, by name (metric prefix).

    ``embedded``: ``{"nature": cfg.val_crops fixed crops (seed VAL_SEED) of the Debian "nature" photos}`` (see
    :mod:`image.photos`), photos no training crop comes from. Other sources: empty.

    Raises:
        FileNotFoundError: if a photo is missing (the message says how to install the packages).
    """
    if cfg.source != "embedded":
        return {}
    images = [image for _, image in debian_photos("nature", cfg.photo_root)]
    return {"nature": TensorImages(fixed_crops(images, cfg.crop_size, cfg.val_crops, seed=VAL_SEED))}


def _cifar10_datasets(cfg: ImageDataConfig, seed: int) -> tuple[Dataset, Dataset]:
    return cifar10(cfg.root, train=True), cifar10(cfg.root, train=False)


def _folder_datasets(cfg: ImageDataConfig, seed: int) -> tuple[Dataset, Dataset]:
    return image_folder(cfg.root, "train", cfg.image_size), image_folder(cfg.root, "val", cfg.image_size)


_BUILDERS = {"embedded": _embedded_datasets, "cifar10": _cifar10_datasets, "folder": _folder_datasets}
_NEEDS_ROOT = ("cifar10", "folder")


def build_image_datasets(cfg: ImageDataConfig, seed: int) -> tuple[Dataset, Dataset]:
    """The (train, val) datasets that ``cfg.source`` names.

    ``embedded``: random crops of the training images (the wheels' photos, plus the Debian training photos when
    ``cfg.debian_photos``) seeded by ``seed``, and ``cfg.val_crops`` fixed crops of the four held-out wheel images
    seeded by ``VAL_SEED``. ``cifar10``: the train and test splits. ``folder``: ``train`` and ``val``.

    Raises:
        ValueError: For an unknown source, or an empty ``cfg.root`` where the source reads files.
    """
    if cfg.source not in _BUILDERS:
        raise ValueError(f"unknown data.source {cfg.source!r}; known sources: {', '.join(_BUILDERS)}")
    if cfg.source in _NEEDS_ROOT and not cfg.root:
        raise ValueError(f"data.root must be set for data.source={cfg.source!r}")
    return _BUILDERS[cfg.source](cfg, seed)
