"""Photographs from Debian's desktop-wallpaper packages: more varied training images and a second held-out set.

The packages are installed by the README's set-up and ``.ci/run`` (``apt-get install -y`` of ``DEBIAN_PHOTO_PACKAGES``)
and work offline afterwards. Each file was looked at and kept only if it is a photograph (the packages also ship
drawings and renders, which are left out). Every photo is resized with Lanczos filtering so that its short side is
``PHOTO_SHORT_SIDE`` pixels: the scale of the scikit-image photos (astronaut is 512²), where a 32×32 crop holds a
patch of texture rather than a flat patch of a 4K wallpaper.

Sets:

* ``"train"`` — 11 photos of ``plasma-workspace-wallpapers`` (KDE Visual Design Group, GPL-2+) and 2 of
  ``lomiri-wallpapers-20.04`` (Lukas Baubkus and Aury88, CC-BY-SA-3.0);
* ``"nature"`` — the 12 photos of ``mate-backgrounds``' ``nature`` folder (GPL-2+; authors in the package's
  copyright file): meadows, flowers, leaves, water drops, a dune. Never used for training; the second held-out set.

Licences and authors are in each package's ``/usr/share/doc/<package>/copyright``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

PHOTO_SHORT_SIDE = 512
DEFAULT_PHOTO_ROOT = "/usr/share"
DEBIAN_PHOTO_PACKAGES = ("plasma-workspace-wallpapers", "lomiri-wallpapers-20.04", "mate-backgrounds")

_PLASMA = "wallpapers/{}/contents/images/{}"
# set name → (package, path under the root, name)
DEBIAN_PHOTOS: dict[str, tuple[tuple[str, str, str], ...]] = {
    "train": (
        *(("plasma-workspace-wallpapers", _PLASMA.format(name, size), name) for name, size in (
            ("BytheWater", "1920x1080.jpg"), ("ColdRipple", "1920x1080.jpg"), ("ColorfulCups", "2560x1600.jpg"),
            ("DarkestHour", "1920x1080.jpg"), ("EveningGlow", "1920x1080.jpg"), ("FallenLeaf", "1920x1080.jpg"),
            ("Grey", "1920x1080.jpg"), ("Kite", "1920x1080.jpg"), ("OneStandsOut", "1920x1080.jpg"),
            ("Path", "1920x1080.jpg"), ("summer_1am", "1920x1080.jpg"))),
        ("lomiri-wallpapers-20.04", "backgrounds/Kleiber_by_Lukas_Baubkus.jpg", "Kleiber"),
        ("lomiri-wallpapers-20.04", "backgrounds/Infinite-Sea_by_Aury88.jpg", "Infinite-Sea"),
    ),
    "nature": tuple(("mate-backgrounds", f"backgrounds/mate/nature/{name}.jpg", name) for name in (
        "Aqua", "Blinds", "Dune", "FreshFlower", "Garden", "GreenMeadow", "LadyBird", "RainDrops", "Storm",
        "TwoWings", "Wood", "YellowFlower")),
}


def install_hint() -> str:
    """The command that installs the photo packages."""
    return f"apt-get install -y {' '.join(DEBIAN_PHOTO_PACKAGES)}"


def resize_short_side(image: Image.Image, short_side: int = PHOTO_SHORT_SIDE) -> Image.Image:
    """``image`` scaled (Lanczos, aspect kept) so that its shorter side is ``short_side`` pixels; never enlarged."""
    w, h = image.size
    scale = short_side / min(w, h)
    if scale >= 1.0:
        return image
    return image.resize((max(round(w * scale), short_side), max(round(h * scale), short_side)), Image.LANCZOS)


def debian_photos(which: str, root: str = DEFAULT_PHOTO_ROOT) -> list[tuple[str, np.ndarray]]:
    """The photos of set ``which`` as ``(name, [H, W, 3] uint8)`` pairs, short side ``PHOTO_SHORT_SIDE``.

    Args:
        which: ``"train"`` or ``"nature"`` (see the module docstring).
        root: folder that holds ``wallpapers/`` and ``backgrounds/`` (``/usr/share`` where the packages install).

    Raises:
        ValueError: for an unknown set name.
        FileNotFoundError: if a photo is missing; the message names the file, its package and the install command.
    """
    if which not in DEBIAN_PHOTOS:
        raise ValueError(f"unknown photo set {which!r}; known: {', '.join(DEBIAN_PHOTOS)}")
    out = []
    for package, relative, name in DEBIAN_PHOTOS[which]:
        path = Path(root) / relative
        if not path.is_file():
            raise FileNotFoundError(f"photo {path} of the Debian package {package} is missing; install the photo "
                                    f"packages with: {install_hint()}")
        with Image.open(path) as img:
            out.append((name, np.asarray(resize_short_side(img.convert("RGB")), dtype=np.uint8)))
    return out
