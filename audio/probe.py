"""Phoneme probes of the speech codes (paper sec. 4.3).

Axis legend: N frames (one per code, i.e. per ``hop`` waveform samples), K codebook size, P phone labels, D code dim.

The paper maps every code to its most frequent phone on the training utterances and scores that mapping on held-out
utterances against frame-level phone alignments (49.3 % with 41 phones, against 7.2 % for always answering the most
frequent phone). :func:`code_phone_mapping` and :func:`mapping_accuracy` are that protocol; :func:`linear_probe` is a
stronger read-out: multinomial logistic regression (scikit-learn) from the continuous encoder output ``z_e`` to the
phone of each frame.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch


@dataclass
class ProbeResult:
    """Frame accuracies on held-out utterances (fractions in [0, 1])."""

    code_accuracy: float  # code → its most frequent training phone (the paper's protocol)
    majority_accuracy: float  # always the most frequent training phone (the paper's baseline)
    linear_accuracy: float | None  # logistic regression on z_e, or None when not computed
    frames_train: int
    frames_val: int
    num_phones_seen: int  # distinct phone labels in the training frames

    @property
    def ratio(self) -> float:
        """code_accuracy / majority_accuracy (the paper: 49.3 / 7.2 = 6.8×)."""
        return self.code_accuracy / max(self.majority_accuracy, 1e-12)

    def metrics(self) -> dict[str, float]:
        out = {"phone_accuracy": self.code_accuracy, "phone_majority_accuracy": self.majority_accuracy,
               "phone_accuracy_ratio": self.ratio}
        if self.linear_accuracy is not None:
            out["phone_linear_probe_accuracy"] = self.linear_accuracy
        return out


def _check_pairs(codes: torch.Tensor, labels: torch.Tensor) -> None:
    if codes.dim() != 1 or labels.dim() != 1 or codes.shape != labels.shape:
        raise ValueError(f"codes and labels must be 1-D of equal length, got {tuple(codes.shape)} and "
                         f"{tuple(labels.shape)}")


def code_phone_counts(codes: torch.Tensor, labels: torch.Tensor, codebook_size: int, num_phones: int) -> torch.Tensor:
    """Co-occurrence counts ``[K, P]`` (long) of frame codes ``[N]`` and frame phone labels ``[N]``.

    Raises:
        ValueError: shapes differ, or an index is outside ``[0, K)`` / ``[0, P)``.
    """
    _check_pairs(codes, labels)
    if codes.numel() and (int(codes.min()) < 0 or int(codes.max()) >= codebook_size):
        raise ValueError(f"codes must lie in [0, {codebook_size})")
    if labels.numel() and (int(labels.min()) < 0 or int(labels.max()) >= num_phones):
        raise ValueError(f"phone labels must lie in [0, {num_phones})")
    flat = codes.long() * num_phones + labels.long()
    return torch.bincount(flat, minlength=codebook_size * num_phones).view(codebook_size, num_phones)


def code_phone_mapping(counts: torch.Tensor) -> torch.Tensor:
    """Each code's most frequent phone ``[K]`` from co-occurrence counts ``[K, P]``; a code never seen in training
    maps to the overall most frequent phone (ties: the lower phone index)."""
    majority = int(counts.sum(0).argmax())
    mapping = counts.argmax(1)
    mapping[counts.sum(1) == 0] = majority
    return mapping


def mapping_accuracy(mapping: torch.Tensor, codes: torch.Tensor, labels: torch.Tensor) -> float:
    """Fraction of frames whose code maps to the frame's phone (``mapping[codes] == labels``)."""
    _check_pairs(codes, labels)
    if codes.numel() == 0:
        raise ValueError("no frames to score")
    return float((mapping[codes.long()] == labels.long()).float().mean())


def majority_accuracy(train_labels: torch.Tensor, val_labels: torch.Tensor, num_phones: int) -> float:
    """Accuracy on ``val_labels`` of always answering the most frequent phone of ``train_labels``."""
    if val_labels.numel() == 0:
        raise ValueError("no frames to score")
    majority = int(torch.bincount(train_labels.long(), minlength=num_phones).argmax())
    return float((val_labels == majority).float().mean())


def linear_probe(train_z: np.ndarray, train_labels: np.ndarray, val_z: np.ndarray, val_labels: np.ndarray,
                 max_frames: int = 20000, seed: int = 0) -> float:
    """Held-out frame accuracy of a multinomial logistic regression from ``z_e`` ``[N, D]`` to phones ``[N]``.

    Features are standardized on the training frames; at most ``max_frames`` training frames (a seeded random
    subset) are used to keep the fit to seconds.
    """
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    if len(train_z) == 0 or len(val_z) == 0:
        raise ValueError("the linear probe needs training and held-out frames")
    rng = np.random.default_rng(seed)
    if len(train_z) > max_frames:
        keep = rng.choice(len(train_z), max_frames, replace=False)
        train_z, train_labels = train_z[keep], train_labels[keep]
    # lbfgs converges in about 320 iterations on the default run's 20,000 frames (300 stopped it short, with a
    # ConvergenceWarning)
    probe = make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000))
    probe.fit(train_z, train_labels)
    return float((probe.predict(val_z) == val_labels).mean())


def probe_codes(train_codes: torch.Tensor, train_labels: torch.Tensor, val_codes: torch.Tensor,
                val_labels: torch.Tensor, codebook_size: int, num_phones: int,
                linear: tuple[np.ndarray, torch.Tensor, np.ndarray, torch.Tensor] | None = None, seed: int = 0
                ) -> tuple[ProbeResult, torch.Tensor]:
    """The whole protocol on concatenated frames: returns the result and the code → phone mapping ``[K]``.

    Args:
        train_codes, train_labels: ``[N_train]`` long, frames of the training utterances.
        val_codes, val_labels: ``[N_val]`` long, frames of the held-out utterances.
        linear: optional ``(train_z [M, D], train_z_labels [M], val_z [V, D], val_z_labels [V])``: encoder outputs
            and phone labels of (possibly fewer) training and held-out frames for the linear probe.
    """
    counts = code_phone_counts(train_codes, train_labels, codebook_size, num_phones)
    mapping = code_phone_mapping(counts)
    linear_accuracy = None
    if linear is not None:
        train_z, train_z_labels, val_z, val_z_labels = linear
        if len(train_z) != len(train_z_labels) or len(val_z) != len(val_z_labels):
            raise ValueError("the linear probe needs one phone label per z_e frame")
        linear_accuracy = linear_probe(train_z, np.asarray(train_z_labels), val_z, np.asarray(val_z_labels),
                                       seed=seed)
    result = ProbeResult(code_accuracy=mapping_accuracy(mapping, val_codes, val_labels),
                         majority_accuracy=majority_accuracy(train_labels, val_labels, num_phones),
                         linear_accuracy=linear_accuracy, frames_train=int(train_codes.numel()),
                         frames_val=int(val_codes.numel()),
                         num_phones_seen=int((counts.sum(0) > 0).sum()))
    return result, mapping
