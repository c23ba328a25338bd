"""Atomic, strict checkpoints holding everything needed to resume a run exactly.

A checkpoint is one ``torch.save`` dict: ``model``, ``optimizer``, ``step``, ``config`` (plain dict), ``rng``
(torch CPU/CUDA, numpy and Python states, all stored as tensors and numbers) and any ``extra`` entries. It is
written to a temporary file in the same folder, flushed, then renamed over the target, so a crash never leaves a
truncated checkpoint.

Checkpoints hold only tensors, plain containers, strings and numbers, and are read with
``torch.load(weights_only=True)``: a crafted or foreign ``.pt`` file cannot run code; it is refused with a message
naming it.
"""

from __future__ import annotations

import hashlib
import pickle
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from core.stored_config import migrate_stored, same_value
from core.files import atomic_save

LATEST = "latest.pt"


def stage_checkpoint(output_dir: str | Path, stage: str) -> Path:
    """Where a stage's latest checkpoint lives: ``<output_dir>/<stage>/checkpoints/latest.pt``."""
    return Path(output_dir) / stage / "checkpoints" / LATEST


def check_fits(payload: dict[str, Any], expected: dict[str, Any], what: str = "prior") -> None:
    """Refuse a checkpoint fitted to something else: every ``expected[key]`` must equal ``payload[key]`` (lists and
    tuples compare alike), e.g. the codebook size, the VQ-VAE's weight hash, the speakers or the latent grid.

    Raises:
        ValueError: naming the first key that differs, with both values.
    """
    for key, want in expected.items():
        if not same_value(payload.get(key), want):
            raise ValueError(f"the {what}'s {key} ({payload.get(key)}) differs from the one it is used with ({want})")


def earlier_stage_checkpoint(configured: str, output_dir: str | Path, stage: str = "vqvae") -> Path:
    """The checkpoint a later stage builds on: ``configured`` (e.g. ``prior.vqvae_checkpoint``) when set, else
    this run's own :func:`stage_checkpoint` of ``stage``."""
    return Path(configured) if configured else stage_checkpoint(output_dir, stage)


def rng_state() -> dict[str, Any]:
    """Current states of every random number generator a run uses, as tensors and numbers only (loadable with
    ``weights_only=True``): torch's byte state, numpy's MT19937 key ``[624]`` with its position and cached
    Gaussian, Python's Mersenne-Twister words ``[625]``."""
    _, keys, pos, has_gauss, gauss = np.random.get_state()
    version, words, python_gauss = random.getstate()
    state = {"torch": torch.get_rng_state(),
             "numpy": {"keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(pos),
                       "has_gauss": int(has_gauss), "gauss": float(gauss)},
             "python": {"version": int(version), "words": torch.tensor(words, dtype=torch.int64),
                        "gauss": python_gauss}}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    """Restore states saved by :func:`rng_state`."""
    torch.set_rng_state(state["torch"])
    n = state["numpy"]
    np.random.set_state(("MT19937", n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["gauss"]))
    p = state["python"]
    random.setstate((p["version"], tuple(int(w) for w in p["words"].tolist()), p["gauss"]))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


_SCALARS = (str, bytes, int, float, bool, type(None))  # exact types: numpy's float64 subclasses float
_TORCH = (torch.Tensor, torch.Size, torch.dtype, torch.device)


def check_plain(value: Any, where: str = "checkpoint") -> None:
    """Refuse anything ``torch.load(weights_only=True)`` would not read back: only tensors, dicts, lists, tuples,
    strings and numbers pass.

    Raises:
        TypeError: naming the entry (``checkpoint['extra']['x']``) and its type.
    """
    if isinstance(value, dict):
        for key, item in value.items():
            check_plain(key, f"{where} key")
            check_plain(item, f"{where}[{key!r}]")
    elif isinstance(value, (list, tuple)):
        for i, item in enumerate(value):
            check_plain(item, f"{where}[{i}]")
    elif type(value) not in _SCALARS and not isinstance(value, _TORCH):
        raise TypeError(f"{where} is a {type(value).__module__}.{type(value).__name__}; a checkpoint holds only "
                        f"tensors, containers, strings and numbers")


def save_checkpoint(path: str | Path, *, model: torch.nn.Module, optimizer: torch.optim.Optimizer | None,
                    step: int, config: dict, **extra: Any) -> Path:
    """Write a checkpoint atomically (temporary file + rename) and return its path.

    Raises:
        TypeError: if an entry is not a tensor, container, string or number (:func:`check_plain`); nothing is written.
    """
    payload = {"model": model.state_dict(), "optimizer": optimizer.state_dict() if optimizer else None,
               "step": step, "config": config, "rng": rng_state(), **extra}
    check_plain(payload)
    return atomic_save(path, payload)


def read_checkpoint(path: str | Path) -> dict[str, Any]:
    """Read a checkpoint dict onto the CPU.

    Read with ``torch.load(weights_only=True)``: only tensors, plain containers, strings and numbers are admitted,
    so a crafted file cannot run code.

    Raises:
        FileNotFoundError: if ``path`` does not exist.
        ValueError: if the file is not a checkpoint of this suite, is truncated, or holds anything else than
            tensors, containers, strings and numbers (a crafted or foreign pickle).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:  # weights_only refused an object: foreign or crafted
        lines = [line.strip() for line in str(exc).splitlines() if "GLOBAL" in line]
        if not lines:
            raise ValueError(f"{path} is not a readable checkpoint (not a torch.save file)") from exc
        first = lines[0].rstrip(".")
        raise ValueError(f"{path} was refused: it holds objects other than tensors, containers and numbers, so it is "
                         f"not a checkpoint of this suite (or was written by an older version) and was not "
                         f"loaded ({first})") from exc
    except Exception as exc:  # truncated or foreign files
        raise ValueError(f"{path} is not a readable checkpoint: {type(exc).__name__}: {exc}") from exc
    if not isinstance(payload, dict) or not {"model", "step", "config"} <= set(payload):
        raise ValueError(f"{path} is not a checkpoint of this suite (missing model/step/config)")
    payload["config"] = migrate_stored(payload["config"])  # keys renamed since it was written
    return payload


def load_checkpoint(path: str | Path, model: torch.nn.Module, optimizer: torch.optim.Optimizer | None = None,
                    restore_rng: bool = True) -> dict[str, Any]:
    """Load model (strictly), optimizer and RNG states from ``path``; returns the checkpoint dict."""
    payload = read_checkpoint(path)
    model.load_state_dict(payload["model"], strict=True)
    if optimizer is not None and payload.get("optimizer") is not None:
        optimizer.load_state_dict(payload["optimizer"])
    if restore_rng and "rng" in payload:
        set_rng_state(payload["rng"])
    return payload


def state_hash(module: torch.nn.Module) -> str:
    """SHA-256 (first 16 hex digits) of a module's state dict: names, shapes, dtypes and values, in order."""
    digest = hashlib.sha256()
    for name, tensor in module.state_dict().items():
        t = tensor.detach().cpu().contiguous()
        digest.update(f"{name}:{tuple(t.shape)}:{t.dtype}".encode())
        digest.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return digest.hexdigest()[:16]


def load_frozen(path: str | Path, build: Callable[[dict[str, Any]], torch.nn.Module],
                device: torch.device | str = "cpu") -> tuple[torch.nn.Module, dict[str, Any], str]:
    """A trained model for a later stage: ``build(payload)`` makes the module from the checkpoint's stored config,
    the weights load strictly, and the module is put in eval mode with gradients off.

    Returns ``(model, checkpoint payload, hash of the weights)`` (see :func:`state_hash`).

    Raises:
        FileNotFoundError / ValueError: for a missing or foreign checkpoint, or weights that do not fit the model.
    """
    payload = read_checkpoint(path)
    model = build(payload)
    model.load_state_dict(payload["model"], strict=True)
    model.to(device).eval().requires_grad_(False)
    return model, payload, state_hash(model)


# checkpoint entries that are not a frozen model's extras
_STANDARD_ENTRIES = ("model", "optimizer", "step", "config", "rng", "mlflow_run_id")


@dataclass(frozen=True)
class FrozenVQVAE:
    """A trained VQ-VAE as the later stages use it (eval mode, gradients off).

    Attributes:
        model: the module.
        cfg: the experiment config stored with the weights, as the domain reads it (its config dataclass, or the
            plain dict where the checkpoint may come from another domain).
        vqvae_hash: :func:`state_hash` of the weights; caches and priors are keyed by it.
        extras: the checkpoint's other entries (e.g. ``speakers``).
    """

    model: torch.nn.Module
    cfg: Any
    vqvae_hash: str
    extras: dict[str, Any] = field(default_factory=dict)


def load_frozen_vqvae(path: str | Path, read_config: Callable[[dict[str, Any]], Any],
                      build: Callable[[Any, dict[str, Any]], torch.nn.Module],
                      device: torch.device | str = "cpu") -> FrozenVQVAE:
    """The VQ-VAE of a checkpoint: ``read_config(stored config dict)`` gives its config, ``build(config, payload)``
    the module, whose weights then load strictly (:func:`load_frozen`).

    Raises:
        FileNotFoundError / ValueError: for a missing or foreign checkpoint, or weights that do not fit the model.
    """
    read: dict[str, Any] = {}

    def built(payload: dict[str, Any]) -> torch.nn.Module:
        read["cfg"] = read_config(payload["config"])
        return build(read["cfg"], payload)

    model, payload, vqvae_hash = load_frozen(path, built, device)
    extras = {k: v for k, v in payload.items() if k not in _STANDARD_ENTRIES}
    return FrozenVQVAE(model, read["cfg"], vqvae_hash, extras)
