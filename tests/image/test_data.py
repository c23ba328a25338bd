"""Tests of image/data.py: embedded images and crops, CIFAR-10 and ImageFolder loaders on tiny fixtures, builders."""

from __future__ import annotations

import itertools
import os
import pickle
import struct

import numpy as np
import pytest
import torch
from PIL import Image

from core.data import data_variance
from image.config import ImageDataConfig
from image.data import (
    EMBEDDED_EXCLUDED,
    EMBEDDED_HELD_OUT,
    VAL_SEED,
    EmbeddedCrops,
    TensorImages,
    build_image_datasets,
    cifar10,
    embedded_images,
    fixed_crops,
    image_folder,
)
from tests.crafted import RunsCode

# ---------------------------------------------------------------- embedded images


@pytest.fixture(scope="module")
def train_images() -> list[tuple[str, np.ndarray]]:
    return embedded_images("train")


@pytest.fixture(scope="module")
def val_images() -> list[tuple[str, np.ndarray]]:
    return embedded_images("val")


def test_embedded_split_is_disjoint_and_holds_out_the_named_images(train_images, val_images):
    train_names = [name for name, _ in train_images]
    val_names = [name for name, _ in val_images]
    assert sorted(val_names) == sorted(EMBEDDED_HELD_OUT)
    assert not set(train_names) & set(val_names)
    assert len(train_names) >= 10
    assert {"astronaut", "camera", "china", "coffee"} <= set(train_names)
    assert not set(EMBEDDED_EXCLUDED) & set(train_names + val_names)
    assert train_names == sorted(train_names)  # the crops depend on the order: it must be stable


def test_embedded_images_are_uint8_rgb(train_images, val_images):
    for name, image in train_images + val_images:
        assert image.dtype == np.uint8, name
        assert image.ndim == 3 and image.shape[2] == 3, name
        assert min(image.shape[:2]) >= 32, name


def test_embedded_gray_image_repeats_its_channel(train_images):
    camera = dict(train_images)["camera"]  # a gray photograph
    assert np.array_equal(camera[..., 0], camera[..., 1]) and np.array_equal(camera[..., 0], camera[..., 2])


def test_embedded_unknown_split_raises():
    with pytest.raises(ValueError, match="split"):
        embedded_images("test")


# ---------------------------------------------------------------- crops


def _toy_images() -> list[np.ndarray]:
    rng = np.random.default_rng(0)
    return [rng.integers(0, 256, (40, 50, 3), dtype=np.uint8), rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)]


def test_crops_are_a_pure_function_of_seed_and_index():
    images = _toy_images()
    a, b = EmbeddedCrops(images, 16, seed=3), EmbeddedCrops(images, 16, seed=3)
    x, y = a[5]
    assert y == -1
    assert x.shape == (3, 16, 16) and x.dtype == torch.float32
    assert 0.0 <= x.min() and x.max() <= 1.0
    assert torch.equal(x, b[5][0])
    _ = a[7]  # reading other items first changes nothing
    assert torch.equal(a[5][0], x)
    assert not torch.equal(a[5][0], a[6][0])
    assert not torch.equal(a[5][0], EmbeddedCrops(images, 16, seed=4)[5][0])


def test_crop_is_a_window_of_one_of_the_images():
    images = _toy_images()
    x = (EmbeddedCrops(images, 8, seed=0)[11][0] * 255).round().to(torch.uint8).permute(1, 2, 0).numpy()
    found = any(
        np.array_equal(image[t : t + 8, l : l + 8], x)
        for image in images
        for t in range(image.shape[0] - 7)
        for l in range(image.shape[1] - 7)
    )
    assert found


def test_crops_pick_images_in_proportion_to_area():
    small = np.zeros((10, 10, 3), np.uint8)
    large = np.full((30, 30, 3), 255, np.uint8)  # 9 times the area
    crops = EmbeddedCrops([small, large], 10, seed=0, length=2000)
    from_large = sum(crops[i][0].mean().item() == 1.0 for i in range(len(crops)))
    assert 0.85 < from_large / 2000 < 0.95  # expected 0.9, standard deviation about 0.007


def test_crops_reject_bad_input():
    with pytest.raises(ValueError):
        EmbeddedCrops([], 8, seed=0)
    with pytest.raises(ValueError, match="smaller"):
        EmbeddedCrops([np.zeros((7, 20, 3), np.uint8)], 8, seed=0)
    with pytest.raises(IndexError):
        EmbeddedCrops(_toy_images(), 8, seed=0, length=4)[4]


def test_fixed_crops_are_deterministic_and_match_the_dataset():
    images = _toy_images()
    crops = fixed_crops(images, 12, count=6, seed=1)
    assert crops.shape == (6, 3, 12, 12) and crops.dtype == torch.float32
    assert torch.equal(crops, fixed_crops(images, 12, count=6, seed=1))
    assert torch.equal(crops[4], EmbeddedCrops(images, 12, seed=1)[4][0])
    assert not torch.equal(crops, fixed_crops(images, 12, count=6, seed=2))


def test_tensor_images_returns_items_and_default_labels():
    images = torch.rand(5, 3, 4, 4)
    x, y = TensorImages(images)[2]
    assert torch.equal(x, images[2]) and y == -1
    assert TensorImages(images, torch.arange(5))[3][1] == 3
    assert len(TensorImages(images)) == 5
    with pytest.raises(ValueError):
        TensorImages(images, torch.arange(4))


# ---------------------------------------------------------------- CIFAR-10 fixture


class _Py2StringPickler(pickle._Pickler):
    """Writes ``bytes`` as Python 2 ``str`` opcodes, as in the real CIFAR-10 files (pickled by Python 2).

    Loaded with ``encoding="latin1"`` (what torchvision does) they become ``str``; with ``encoding="bytes"`` they stay
    ``bytes`` — the ``b"data"`` keys of the CIFAR website's snippet.
    """

    dispatch = pickle._Pickler.dispatch.copy()

    def _save_py2_str(self, obj: bytes) -> None:
        if len(obj) < 256:
            self.write(pickle.SHORT_BINSTRING + bytes([len(obj)]) + obj)
        else:
            self.write(pickle.BINSTRING + struct.pack("<i", len(obj)) + obj)
        self.memoize(obj)

    dispatch[bytes] = _save_py2_str


def _write_py2_pickle(path, obj) -> None:
    with open(path, "wb") as f:
        _Py2StringPickler(f, protocol=2).dump(obj)


def _batch(first_label: int, n: int = 3) -> dict:
    data = np.arange(n * 3072, dtype=np.int64).reshape(n, 3072) % 251  # pixel (c, h, w) of item i: known values
    labels = [(first_label + i) % 10 for i in range(n)]
    return {b"batch_label": b"fixture batch", b"labels": labels, b"data": data.astype(np.uint8), b"filenames": []}


@pytest.fixture
def cifar_root(tmp_path):
    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    for k in range(1, 6):
        _write_py2_pickle(folder / f"data_batch_{k}", _batch(first_label=k))
    _write_py2_pickle(folder / "test_batch", _batch(first_label=7, n=2))
    names = [b"airplane", b"automobile", b"bird", b"cat", b"deer", b"dog", b"frog", b"horse", b"ship", b"truck"]
    _write_py2_pickle(folder / "batches.meta", {b"label_names": names, b"num_cases_per_batch": 3})
    return tmp_path


def test_cifar_fixture_has_the_real_key_types(cifar_root):
    with open(cifar_root / "cifar-10-batches-py" / "data_batch_1", "rb") as f:
        assert b"data" in pickle.load(f, encoding="bytes")
    with open(cifar_root / "cifar-10-batches-py" / "data_batch_1", "rb") as f:
        assert "data" in pickle.load(f, encoding="latin1")


def test_cifar10_reads_pixels_and_labels(cifar_root):
    train, test = cifar10(str(cifar_root), train=True), cifar10(str(cifar_root), train=False)
    assert len(train) == 15 and len(test) == 2
    x, y = train[4]  # item 1 of data_batch_2
    assert x.shape == (3, 32, 32) and x.dtype == torch.float32
    assert y == 3
    expected = _batch(first_label=2)[b"data"][1].reshape(3, 32, 32)  # rows are R plane, G plane, B plane
    assert torch.allclose(x, torch.from_numpy(expected).float() / 255)
    assert test[1][1] == 8
    assert train.classes[3] == "cat"


def test_cifar10_missing_dataset_names_the_layout(tmp_path):
    with pytest.raises(FileNotFoundError, match="cifar-10-batches-py"):
        cifar10(str(tmp_path), train=True)


def test_cifar10_missing_file_is_named(cifar_root):
    os.remove(cifar_root / "cifar-10-batches-py" / "data_batch_4")
    with pytest.raises(FileNotFoundError, match="data_batch_4"):
        cifar10(str(cifar_root), train=False)


def test_cifar10_garbage_batch_raises_value_error_naming_it(cifar_root):
    (cifar_root / "cifar-10-batches-py" / "data_batch_3").write_bytes(os.urandom(1000))
    with pytest.raises(ValueError, match="data_batch_3"):
        cifar10(str(cifar_root), train=True)


def test_cifar10_wrong_keys_or_width_raise_value_error_naming_the_file(cifar_root):
    folder = cifar_root / "cifar-10-batches-py"
    _write_py2_pickle(folder / "data_batch_2", {b"pixels": np.zeros((3, 3072), np.uint8), b"labels": [0, 1, 2]})
    with pytest.raises(ValueError, match="data_batch_2"):
        cifar10(str(cifar_root), train=True)
    bad = _batch(first_label=0, n=2)
    bad[b"data"] = bad[b"data"][:, :1536]  # 2 × 1536 values still reshape to one 32×32×3 image, with 2 labels
    _write_py2_pickle(folder / "test_batch", bad)
    with pytest.raises(ValueError, match="test_batch"):
        cifar10(str(cifar_root), train=False)


# ---------------------------------------------------------------- ImageFolder fixture


@pytest.fixture
def folder_root(tmp_path):
    rng = np.random.default_rng(0)
    for split in ("train", "val"):
        for name in ("cat", "dog"):
            (tmp_path / split / name).mkdir(parents=True)
            Image.fromarray(rng.integers(0, 256, (20, 30, 3), dtype=np.uint8)).save(tmp_path / split / name / "a.png")
    Image.fromarray(rng.integers(0, 256, (24, 16), dtype=np.uint8)).save(tmp_path / "train" / "dog" / "b.jpg")
    return tmp_path


def test_image_folder_loads_resized_rgb_with_class_labels(folder_root):
    train = image_folder(str(folder_root), "train", image_size=8)
    assert len(train) == 3
    labels = [train[i][1] for i in range(3)]
    assert labels == [0, 1, 1]  # cat/a.png, dog/a.png, dog/b.jpg
    for i in range(3):
        x = train[i][0]
        assert x.shape == (3, 8, 8) and x.dtype == torch.float32
        assert 0.0 <= x.min() and x.max() <= 1.0
    assert len(image_folder(str(folder_root), "val", image_size=8)) == 2


def test_image_folder_corrupt_file_raises_value_error_naming_it(folder_root):
    bad = folder_root / "train" / "cat" / "broken.png"
    bad.write_bytes(os.urandom(200))
    dataset = image_folder(str(folder_root), "train", image_size=8)
    index = [path for path, _ in dataset.samples].index(str(bad))
    with pytest.raises(ValueError, match="broken.png"):
        dataset[index]


def test_image_folder_missing_or_empty_split_raises(folder_root, tmp_path):
    with pytest.raises(FileNotFoundError, match="class_name"):
        image_folder(str(folder_root), "test", image_size=8)
    (tmp_path / "empty" / "train").mkdir(parents=True)
    with pytest.raises(FileNotFoundError, match="class_name"):
        image_folder(str(tmp_path / "empty"), "train", image_size=8)
    (tmp_path / "empty" / "train" / "cat").mkdir()
    with pytest.raises(FileNotFoundError, match="class_name"):
        image_folder(str(tmp_path / "empty"), "train", image_size=8)


# ---------------------------------------------------------------- builders and variance


def test_build_embedded_datasets(val_images):
    cfg = ImageDataConfig(source="embedded", crop_size=16, val_crops=10)
    train, val = build_image_datasets(cfg, seed=0)
    assert isinstance(train, EmbeddedCrops) and train.crop_size == 16
    assert len(val) == 10 and val[0][0].shape == (3, 16, 16) and val[0][1] == -1
    expected = fixed_crops([image for _, image in val_images], 16, 10, seed=VAL_SEED)
    assert torch.equal(torch.stack([val[i][0] for i in range(10)]), expected)
    other_train, other_val = build_image_datasets(cfg, seed=1)
    assert torch.equal(other_val.images, val.images)  # validation does not depend on the training seed
    assert not torch.equal(other_train[0][0], train[0][0])


def test_build_cifar10_and_folder(cifar_root, folder_root):
    train, test = build_image_datasets(ImageDataConfig(source="cifar10", root=str(cifar_root)), seed=0)
    assert (len(train), len(test)) == (15, 2)
    train, val = build_image_datasets(ImageDataConfig(source="folder", root=str(folder_root), image_size=8), seed=0)
    assert (len(train), len(val)) == (3, 2)


def test_build_rejects_unknown_source_and_empty_root():
    with pytest.raises(ValueError, match="embedded.*cifar10.*folder"):
        build_image_datasets(ImageDataConfig(source="mnist"), seed=0)
    for source in ("cifar10", "folder"):
        with pytest.raises(ValueError, match="data.root"):
            build_image_datasets(ImageDataConfig(source=source, root=""), seed=0)


def test_data_variance_matches_hand_computation():
    images = torch.rand(7, 3, 5, 4)
    dataset = TensorImages(images)
    expected = np.var(images.numpy().astype(np.float64))
    assert data_variance(dataset) == pytest.approx(expected, rel=1e-9)
    first_three = np.var(images[:3].numpy().astype(np.float64))
    assert data_variance(dataset, max_items=3) == pytest.approx(first_three, rel=1e-9)
    tiny = TensorImages(torch.tensor([[[[0.0]]], [[[1.0]]], [[[1.0]]], [[[1.0]]]]))  # values 0, 1, 1, 1
    assert data_variance(tiny) == pytest.approx(0.1875)  # mean 3/4, mean of squares 3/4 - 9/16
    with pytest.raises(ValueError):
        data_variance(TensorImages(torch.rand(0, 3, 2, 2)))


def test_channel_permutation_reorders_the_channels_of_the_same_crop():
    rng = np.random.default_rng(0)
    images = [rng.integers(0, 256, (40, 50, 3), dtype=np.uint8)]
    plain = EmbeddedCrops(images, 8, seed=3)
    permuted = EmbeddedCrops(images, 8, seed=3, colour_augment="channel_permutation")
    orders = set()
    for i in range(60):
        x, y = plain[i][0], permuted[i][0]
        order = next(o for o in itertools.permutations(range(3)) if torch.equal(x[list(o)], y))
        orders.add(order)
    assert len(orders) == 6  # every channel order occurs; the crop itself is the same
    with pytest.raises(ValueError, match="unknown colour_augment 'hue'"):
        EmbeddedCrops(images, 8, seed=3, colour_augment="hue")


def test_a_crafted_cifar_batch_runs_nothing_and_is_refused_by_name(cifar_root, tmp_path):
    marker = tmp_path / "code_ran"
    batch = _batch(first_label=0)
    batch[b"labels"] = RunsCode(marker)
    _write_py2_pickle(cifar_root / "cifar-10-batches-py" / "data_batch_5", batch)
    with pytest.raises(ValueError, match="data_batch_5.*refused global (posix|os).system"):
        cifar10(str(cifar_root), train=True)
    assert not marker.exists()


def test_a_cifar_array_of_python_objects_is_refused(cifar_root):
    batch = _batch(first_label=0)
    batch[b"data"] = np.array([[1, "x"]], dtype=object)
    _write_py2_pickle(cifar_root / "cifar-10-batches-py" / "test_batch", batch)
    with pytest.raises(ValueError, match="test_batch.*(objects|refused)"):
        cifar10(str(cifar_root), train=False)


def test_sixteen_bit_and_palette_images_keep_their_range(tmp_path):
    from image.data import load_rgb

    ramp = (np.arange(64 * 64, dtype=np.uint32).reshape(64, 64) * 16).astype(np.uint16)  # 0 .. 65520
    Image.fromarray(ramp).save(tmp_path / "deep.png")  # a 16-bit grayscale PNG
    with Image.open(tmp_path / "deep.png") as img:
        assert img.mode.startswith("I")  # the mode that convert("RGB") clips at 255
        assert np.asarray(img.convert("RGB")).mean() > 250  # the clipping this guards against
    rgb = np.asarray(load_rgb(str(tmp_path / "deep.png")))
    assert rgb.shape == (64, 64, 3) and np.array_equal(rgb[..., 0], rgb[..., 2])
    assert np.array_equal(rgb[..., 0], np.round(ramp / 257.0).astype(np.uint8))  # 65535 → 255, scaled not clipped

    colours = np.array([[255, 0, 0], [0, 128, 255], [10, 200, 30]], dtype=np.uint8)
    index = np.arange(12).reshape(3, 4) % 3
    pal = Image.fromarray(index.astype(np.uint8), mode="P")
    pal.putpalette(colours.reshape(-1).tolist())
    pal.info["transparency"] = 1
    pal.save(tmp_path / "pal.png")
    assert np.array_equal(np.asarray(load_rgb(str(tmp_path / "pal.png"))), colours[index])
    Image.fromarray(np.zeros((4, 4), np.float32)).save(tmp_path / "float.tiff")
    with pytest.raises(ValueError, match="float.tiff.*mode F"):
        load_rgb(str(tmp_path / "float.tiff"))
