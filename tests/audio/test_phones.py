"""Tests of audio/phones.py: the phone set, folding of each synthesizer's and corpus's symbols, frame labels."""

from __future__ import annotations

import pytest
import torch

from audio.phones import PHONE_INDEX, PHONES, SILENCE, fold_phone, frame_labels

RADIO = ("aa ae ah ao aw ax axr ay b ch d dh dx eh el em en er ey f g hh hv ih iy jh k l m n nx ng ow oy p r s sh t th "
         "uh uw v w y z zh pau h# brth").split()  # festival's radio_phones.scm: 50 symbols
CMU = ("aa ae ah ao aw ax axr ay b ch d dh eh el em en er ey f g hh ih iy jh k l m n nx ng ow oy p r s sh t th uh uw "
       "v w y z zh pau").split()  # flite's US English phone set
TIMIT = ("aa ae ah ao aw ax ax-h axr ay b bcl ch d dcl dh dx eh el em en eng epi er ey f g gcl h# hh hv ih ix iy jh k "
         "kcl l m n ng nx ow oy p pau pcl q r s sh t tcl th uh uw ux v w y z zh").split()  # TIMIT's 61 symbols


def test_phone_set():
    assert len(PHONES) == 40 and len(set(PHONES)) == 40
    assert SILENCE == "sil" and SILENCE in PHONES
    assert all(PHONES[i] == p for p, i in PHONE_INDEX.items()) and len(PHONE_INDEX) == 40


@pytest.mark.parametrize("symbols", [RADIO, CMU, TIMIT], ids=["radio", "cmu", "timit"])
def test_every_symbol_of_each_set_folds(symbols):
    assert all(fold_phone(s) in PHONE_INDEX for s in symbols)


def test_sizes_of_the_sets():
    assert len(RADIO) == 50 and len(TIMIT) == 61


@pytest.mark.parametrize("symbol, label", [
    ("aa", "aa"), ("zh", "zh"), ("ao", "ao"),  # phonemes of the CMU set stay themselves
    ("ax", "ah"), ("ax-h", "ah"), ("axr", "er"), ("ix", "ih"), ("ux", "uw"), ("hv", "hh"),
    ("el", "l"), ("em", "m"), ("en", "n"), ("nx", "n"), ("eng", "ng"), ("dx", "t"),
    ("pau", "sil"), ("h#", "sil"), ("brth", "sil"), ("epi", "sil"), ("q", "sil"),
    ("bcl", "sil"), ("dcl", "sil"), ("gcl", "sil"), ("kcl", "sil"), ("pcl", "sil"), ("tcl", "sil"),
    ("AH0", "ah"), ("ER1", "er"), ("IY2", "iy"), ("sil", "sil"), ("sp", "sil"), ("spn", "sil"), (" T ", "t"),
])
def test_fold_known_symbols(symbol, label):
    assert fold_phone(symbol) == label


@pytest.mark.parametrize("symbol", ["xx", "", "ah3", "a#"])
def test_fold_unknown_symbol_raises_naming_it(symbol):
    with pytest.raises(ValueError, match=f"unknown phone symbol {symbol!r}"):
        fold_phone(symbol)


def test_frame_labels_by_hand():
    segments = [(0.0, 0.1, "sil"), (0.1, 0.25, "aa"), (0.3, 0.4, "b")]  # a gap between 0.25 and 0.3 s
    # frame centres: 0.025 0.075 0.125 0.175 0.225 0.275 0.325 0.375 0.425 0.475
    expected = ["sil", "sil", "aa", "aa", "aa", "sil", "b", "b", "sil", "sil"]
    labels = frame_labels(segments, 10, 0.05)
    assert labels.dtype == torch.long and labels.shape == (10,)
    assert [PHONES[i] for i in labels] == expected


def test_frame_centre_on_a_boundary_belongs_to_the_later_segment():
    labels = frame_labels([(0.0, 0.15, "s"), (0.15, 0.3, "iy")], 3, 0.1)  # centres 0.05, 0.15, 0.25
    assert [PHONES[i] for i in labels] == ["s", "iy", "iy"]


def test_frame_labels_fold_raw_symbols_and_handle_empty():
    assert PHONES[frame_labels([(0.0, 1.0, "pau")], 1, 0.5)[0]] == SILENCE
    assert frame_labels([], 3, 0.1).tolist() == [PHONE_INDEX[SILENCE]] * 3
    assert frame_labels([(0.0, 1.0, "aa")], 0, 0.1).shape == (0,)


def test_frame_labels_reject_unsorted_segments():
    with pytest.raises(ValueError, match="sorted"):
        frame_labels([(0.2, 0.3, "aa"), (0.0, 0.1, "b")], 4, 0.1)
