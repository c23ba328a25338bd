"""CIFAR-10 (the python-pickle version) read without executing code from the files.

The batches are Python pickles. ``pickle.load`` (what ``torchvision.datasets.CIFAR10`` calls) runs whatever a file
asks for, so a crafted ``data_batch_1`` could run a shell command. Here every file goes through
:class:`RestrictedUnpickler`, which admits only what a CIFAR-10 batch is made of — numpy arrays of numbers
(rebuilt through numpy's ``_reconstruct``, ``ndarray`` and ``dtype``), lists, dicts, str, bytes, ints — and refuses
any other global with a ``ValueError`` naming the file.

Axis legend: N images, C colour channels (3), H W height and width (32).
"""

from __future__ import annotations

import io
import os
import pickle
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

CIFAR10_FOLDER = "cifar-10-batches-py"
CIFAR10_TRAIN = tuple(f"data_batch_{k}" for k in range(1, 6))
CIFAR10_TEST = ("test_batch",)
CIFAR10_META = "batches.meta"
CIFAR10_LAYOUT = (
    "<root>/cifar-10-batches-py/{data_batch_1..data_batch_5,test_batch,batches.meta} "
    "(the python-pickle version from https://www.cs.toronto.edu/~kriz/cifar.html, extracted under data.root)"
)

# (module, name) pairs a CIFAR-10 pickle may name: numpy's array rebuilding, and the bytes codec Python 3 pickles use
_ALLOWED_GLOBALS = {
    ("numpy.core.multiarray", "_reconstruct"): ("numpy._core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "_reconstruct"): ("numpy._core.multiarray", "_reconstruct"),
    ("numpy", "ndarray"): ("numpy", "ndarray"),
    ("numpy", "dtype"): ("numpy", "dtype"),
    ("_codecs", "encode"): ("_codecs", "encode"),
}


class RestrictedUnpickler(pickle.Unpickler):
    """An unpickler that admits only numpy arrays of numbers, lists, dicts, tuples, str, bytes, ints and floats.

    Raises:
        pickle.UnpicklingError: for any other global the stream names (e.g. ``os.system``).
    """

    def find_class(self, module: str, name: str) -> Any:
        target = _ALLOWED_GLOBALS.get((module, name))
        if target is None:
            raise pickle.UnpicklingError(f"refused global {module}.{name}: a CIFAR-10 file holds only arrays, "
                                         "lists, dicts, strings and numbers")
        return getattr(__import__(target[0], fromlist=[target[1]]), target[1])


def restricted_load(path: str) -> Any:
    """The object pickled in ``path``, read by :class:`RestrictedUnpickler` (strings decoded as latin-1, as
    torchvision does).

    Raises:
        ValueError: naming ``path`` if the file is not such a pickle, names a refused global, or holds an array of
            Python objects.
    """
    try:
        with open(path, "rb") as f:
            obj = RestrictedUnpickler(io.BytesIO(f.read()), encoding="latin1").load()
    except Exception as e:  # unpickling of arbitrary bytes fails in many ways
        raise ValueError(f"malformed CIFAR-10 file {path}: {type(e).__name__}: {e}") from e
    for value in obj.values() if isinstance(obj, dict) else ():
        if isinstance(value, np.ndarray) and value.dtype.hasobject:
            raise ValueError(f"malformed CIFAR-10 file {path}: an array of Python objects was refused")
    return obj


def _read_batch(path: str) -> tuple[np.ndarray, list[int]]:
    """``(data [n, 3072] uint8, labels [n])`` of one batch file.

    Raises:
        ValueError: naming ``path`` unless it holds ``{"data": [n, 3072] uint8, "labels": [n] ints}``.
    """
    entry = restricted_load(path)
    if not isinstance(entry, dict) or "data" not in entry or not ("labels" in entry or "fine_labels" in entry):
        raise ValueError(f"malformed CIFAR-10 file {path}: expected a dict with 'data' and 'labels'")
    data, labels = entry["data"], entry.get("labels", entry.get("fine_labels"))
    if not isinstance(data, np.ndarray) or data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3 * 32 * 32:
        raise ValueError(f"malformed CIFAR-10 file {path}: 'data' must be [n, 3072] uint8")
    if len(labels) != data.shape[0]:
        raise ValueError(f"malformed CIFAR-10 file {path}: {len(labels)} labels for {data.shape[0]} images")
    return data, [int(y) for y in labels]


class CIFAR10(Dataset):
    """CIFAR-10 (python-pickle version) under ``root``, every file read by :func:`restricted_load`.

    Deviation from ``torchvision.datasets.CIFAR10``, on purpose: no pickle code runs, and files are checked to exist
    (not by md5), so re-packed copies and small fixtures laid out like the real dataset load too.

    Attributes:
        data: ``[N, H, W, C]`` uint8. targets: ``[N]`` ints in [0, 10). classes: the ten class names.

    Raises:
        FileNotFoundError: if a file of the layout is missing (the message names it and the layout).
        ValueError: if a file is malformed or refused (the message names it).
    """

    def __init__(self, root: str, train: bool):
        folder = os.path.join(root, CIFAR10_FOLDER)
        for name in CIFAR10_TRAIN + CIFAR10_TEST + (CIFAR10_META,):
            if not os.path.isfile(os.path.join(folder, name)):
                raise FileNotFoundError(f"CIFAR-10 file {os.path.join(folder, name)} is missing; "
                                        f"expected {CIFAR10_LAYOUT}")
        meta_path = os.path.join(folder, CIFAR10_META)
        meta = restricted_load(meta_path)
        if not isinstance(meta, dict) or not isinstance(meta.get("label_names"), list):
            raise ValueError(f"malformed CIFAR-10 file {meta_path}: expected a dict with 'label_names'")
        self.classes = [str(name) for name in meta["label_names"]]
        batches = [_read_batch(os.path.join(folder, name)) for name in (CIFAR10_TRAIN if train else CIFAR10_TEST)]
        self.data = np.concatenate([d for d, _ in batches]).reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)  # [N, H, W, C]
        self.targets = [y for _, labels in batches for y in labels]

    def __len__(self) -> int:
        return len(self.targets)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        """``(x [3, 32, 32] float32 in [0, 1], label)``."""
        x = torch.from_numpy(np.ascontiguousarray(self.data[index])).permute(2, 0, 1).float() / 255  # [C, H, W]
        return x, self.targets[index]


def cifar10(root: str, train: bool) -> Dataset:
    """CIFAR-10 under ``root``: the 50,000 training images if ``train``, else the 10,000 test images (:class:`CIFAR10`)."""
    return CIFAR10(root, train)
