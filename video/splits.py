"""The video experiment's episodes: the training and held-out splits, recorded once (or read from disk)."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

from video.config import VideoConfig
from video.data import Episode
from video.record import load_or_record


@dataclasses.dataclass
class Splits:
    """The recorded (or on-disk) training and held-out episodes."""

    train: list[Episode]
    val: list[Episode]
    action_names: list[str]
    key: str  # identifies the episodes (keys the code cache)


def load_splits(cfg: VideoConfig) -> Splits:
    """Record both splits (or reuse the cache, or read ``data.root``).

    Raises:
        ValueError: the two splits name different actions.
    """
    cache = cfg.data.cache_dir or str(Path(cfg.train.output_dir) / "episodes")
    train, train_manifest = load_or_record(cfg.env, cfg.data, "train", cache)
    val, val_manifest = load_or_record(cfg.env, cfg.data, "val", cache)
    if train_manifest["action_names"] != val_manifest["action_names"]:
        raise ValueError(f"training and held-out episodes name different actions: "
                         f"{train_manifest['action_names']} vs {val_manifest['action_names']}")
    key = json.dumps([train_manifest.get("config"), train_manifest["episodes"], val_manifest.get("config"),
                      val_manifest["episodes"]], sort_keys=True)
    return Splits(train, val, list(train_manifest["action_names"]), key)
