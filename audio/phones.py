"""The one phone set of the audio domain, and the folding of every synthesizer's and corpus's symbols onto it.

``PHONES`` holds 40 labels: the 39 phonemes of ARPAbet as used by the CMU Pronouncing Dictionary (the phone set of
flite's and festival's US voices and of the Montreal Forced Aligner's ``english_us_arpa`` model, stress removed)
plus ``"sil"`` for silence, pauses, breaths and stop closures. The paper's phoneme probe (sec. 4.3) classifies 41
phonemes; this set is the same in spirit.

Folding (lower-case symbols; trailing ARPAbet stress digits 0/1/2 are stripped first, so MFA's ``AH0`` is ``ah``).
The allophone merges are those of Lee & Hon (1989) and Kaldi's TIMIT ``phones.60-48-39.map``:

=====================================  ======  ==============================================================
symbols                                → label  where they come from
=====================================  ======  ==============================================================
the 39 labels themselves               same    radio (festival), CMU (flite), TIMIT, MFA ARPAbet
ax, ax-h                               ah      radio, CMU, TIMIT (schwa; devoiced schwa)
axr                                    er      radio, CMU, TIMIT
ix                                     ih      TIMIT
ux                                     uw      TIMIT
hv                                     hh      radio, TIMIT (voiced h)
el / em / en, nx / eng                 l / m / n / ng   radio, CMU, TIMIT (syllabic consonants, nasal flap)
dx                                     t       radio, TIMIT (flap; the CMU dictionary spells "butter" with T)
pau, h#, brth, epi, q, sil, sp, spn    sil     radio/CMU pauses, TIMIT edges/epenthetic silence/glottal stop,
                                               MFA silence, short pause and spoken noise
bcl dcl gcl kcl pcl tcl                sil     TIMIT stop closures (the burst keeps the stop's label)
=====================================  ======  ==============================================================

Two deliberate differences from the TIMIT 39-phone evaluation set: ``ao`` and ``zh`` stay phonemes (Lee & Hon merge
them into ``aa`` and ``sh`` for scoring a recognizer; they are distinct phonemes of the CMU set the synthesizers
speak), and the flap ``dx`` folds into ``t`` instead of being a class of its own (the CMU set has no flap).

Axis legend: F frames.
"""

from __future__ import annotations

import numpy as np
import torch

SILENCE = "sil"
PHONES: tuple[str, ...] = (
    "aa", "ae", "ah", "ao", "aw", "ay", "b", "ch", "d", "dh", "eh", "er", "ey", "f", "g", "hh", "ih", "iy", "jh", "k",
    "l", "m", "n", "ng", "ow", "oy", "p", "r", "s", "sh", "t", "th", "uh", "uw", "v", "w", "y", "z", "zh", SILENCE,
)
PHONE_INDEX: dict[str, int] = {phone: i for i, phone in enumerate(PHONES)}

# Symbols that are not labels themselves (see the table in the module docstring).
_FOLDS: dict[str, str] = {
    "ax": "ah", "ax-h": "ah", "axr": "er", "ix": "ih", "ux": "uw", "hv": "hh",
    "el": "l", "em": "m", "en": "n", "nx": "n", "eng": "ng", "dx": "t",
    "pau": SILENCE, "h#": SILENCE, "brth": SILENCE, "epi": SILENCE, "q": SILENCE, "sp": SILENCE, "spn": SILENCE,
    "bcl": SILENCE, "dcl": SILENCE, "gcl": SILENCE, "kcl": SILENCE, "pcl": SILENCE, "tcl": SILENCE,
}


def fold_phone(symbol: str) -> str:
    """The label of ``PHONES`` that a phone symbol of festival (radio set), flite (CMU set), TIMIT (61 symbols) or the
    Montreal Forced Aligner (ARPAbet with stress digits) folds to.

    Args:
        symbol: Case-insensitive; surrounding blanks and trailing stress digits are ignored (``"AH0"`` → ``"ah"``).

    Returns:
        An element of ``PHONES``.

    Raises:
        ValueError: For a symbol outside these sets (the message names it).
    """
    key = symbol.strip().lower()
    if key[-1:] in ("0", "1", "2") and key[:-1].isalpha():
        key = key[:-1]
    if key in PHONE_INDEX:
        return key
    if key in _FOLDS:
        return _FOLDS[key]
    raise ValueError(f"unknown phone symbol {symbol!r}: not in the radio, CMU, TIMIT or ARPAbet sets "
                     f"(known labels: {' '.join(PHONES)})")


def frame_labels(segments: list[tuple[float, float, str]], num_frames: int, frame_seconds: float) -> torch.Tensor:
    """The phone label of each frame: the segment that covers the frame's centre ``(i + 0.5) · frame_seconds``.

    Frames whose centre lies in no segment (after the last one, before the first one, or in a gap) are silence.

    Args:
        segments: ``(start_s, end_s, phone)`` in seconds, sorted by time and not overlapping; ``phone`` is a label of
            ``PHONES`` (any symbol ``fold_phone`` knows is folded).
        num_frames: ``F``, the number of frames.
        frame_seconds: Duration of one frame, seconds (e.g. 64 / 16000 for the encoder's hop).

    Returns:
        ``[F]`` long, indices into ``PHONES``.

    Raises:
        ValueError: If ``frame_seconds`` is not positive, ``num_frames`` is negative, segments are not sorted, or a
            phone is unknown.
    """
    if frame_seconds <= 0 or num_frames < 0:
        raise ValueError(f"need frame_seconds > 0 and num_frames >= 0, got {frame_seconds}, {num_frames}")
    labels = torch.full((num_frames,), PHONE_INDEX[SILENCE], dtype=torch.long)  # [F]
    if not segments or num_frames == 0:
        return labels
    starts = np.array([s for s, _, _ in segments], dtype=np.float64)
    ends = np.array([e for _, e, _ in segments], dtype=np.float64)
    if np.any(np.diff(ends) < 0) or np.any(starts[1:] < ends[:-1] - 1e-9):
        raise ValueError("segments must be sorted by time and must not overlap")
    ids = np.array([PHONE_INDEX[fold_phone(p)] for _, _, p in segments], dtype=np.int64)
    centres = (np.arange(num_frames) + 0.5) * frame_seconds  # [F]
    k = np.searchsorted(ends, centres, side="right")  # [F] first segment ending after the centre
    inside = k < len(segments)
    inside[inside] &= starts[k[inside]] <= centres[inside]
    labels[torch.from_numpy(inside)] = torch.from_numpy(ids[k[inside]])
    return labels
