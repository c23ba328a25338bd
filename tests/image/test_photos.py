"""The Debian wallpaper photos: sets, scale, missing-package errors, and the installed files."""

import numpy as np
import pytest
from PIL import Image

from image.data import EMBEDDED_HELD_OUT, EMBEDDED_TWINS, embedded_images
from image.photos import (
    DEBIAN_PHOTOS,
    PHOTO_SHORT_SIDE,
    debian_photos,
    install_hint,
    resize_short_side,
)


def _fake_root(tmp_path, which, size=(1000, 600)):
    for _, relative, _ in DEBIAN_PHOTOS[which]:
        path = tmp_path / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.new("RGB", size, (10, 200, 30)).save(path)
    return tmp_path


def test_resize_keeps_the_aspect_and_never_enlarges():
    assert resize_short_side(Image.new("RGB", (2560, 1600))).size == (819, 512)
    assert resize_short_side(Image.new("RGB", (1600, 2560))).size == (512, 819)
    assert resize_short_side(Image.new("RGB", (300, 200))).size == (300, 200)


def test_photos_are_read_from_the_root_at_the_common_scale(tmp_path):
    photos = debian_photos("nature", str(_fake_root(tmp_path, "nature")))
    assert [name for name, _ in photos] == [name for _, _, name in DEBIAN_PHOTOS["nature"]]
    for _, image in photos:
        assert image.shape == (PHOTO_SHORT_SIDE, 853, 3) and image.dtype == np.uint8
        assert tuple(image[100, 100]) == (10, 200, 30)


def test_a_missing_photo_names_the_file_its_package_and_the_install_command(tmp_path):
    root = _fake_root(tmp_path, "train")
    _, relative, _ = DEBIAN_PHOTOS["train"][3]
    (root / relative).unlink()
    with pytest.raises(FileNotFoundError, match="plasma-workspace-wallpapers is missing.*apt-get install -y"):
        debian_photos("train", str(root))
    with pytest.raises(ValueError, match="unknown photo set 'test'"):
        debian_photos("test", str(root))
    assert "mate-backgrounds" in install_hint()


def test_the_sets_share_no_photo_and_the_stereo_twin_is_in_no_split():
    train = {relative for _, relative, _ in DEBIAN_PHOTOS["train"]}
    nature = {relative for _, relative, _ in DEBIAN_PHOTOS["nature"]}
    assert len(train) == 13 and len(nature) == 12 and not train & nature
    names = {name for name, _ in embedded_images("train")} | {name for name, _ in embedded_images("val")}
    assert "motorcycle_left" in EMBEDDED_TWINS and not names & set(EMBEDDED_TWINS)
    assert {name for name, _ in embedded_images("val")} == set(EMBEDDED_HELD_OUT)


def test_the_installed_packages_hold_every_photo():
    """The README's set-up and .ci/run install the packages: every listed photo must be there and differ."""
    for which in DEBIAN_PHOTOS:
        photos = debian_photos(which)
        assert all(min(image.shape[:2]) == PHOTO_SHORT_SIDE for _, image in photos)
        means = {round(float(image.mean()), 3) for _, image in photos}
        assert len(means) == len(photos)  # no file listed twice
