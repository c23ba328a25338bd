"""The paper's code → phone probe on hand-made frames, and the linear probe on separable features."""

import numpy as np
import pytest
import torch

from audio.probe import (code_phone_counts, code_phone_mapping, linear_probe, majority_accuracy, mapping_accuracy,
                         probe_codes)


def test_mapping_on_a_hand_made_case():
    # code 0 is mostly phone 2, code 1 always phone 0, code 2 split 1:2 between phones 1 and 3, code 3 never seen
    codes = torch.tensor([0, 0, 0, 0, 1, 1, 2, 2, 2])
    labels = torch.tensor([2, 2, 2, 1, 0, 0, 1, 3, 3])
    counts = code_phone_counts(codes, labels, codebook_size=4, num_phones=4)
    assert counts.tolist() == [[0, 1, 3, 0], [2, 0, 0, 0], [0, 1, 0, 2], [0, 0, 0, 0]]
    mapping = code_phone_mapping(counts)
    majority = 2  # phone 2 has 3 frames, more than any other
    assert mapping.tolist() == [2, 0, 3, majority]
    val_codes = torch.tensor([0, 1, 2, 3, 3])
    val_labels = torch.tensor([2, 0, 1, 2, 0])
    assert mapping_accuracy(mapping, val_codes, val_labels) == pytest.approx(3 / 5)
    assert majority_accuracy(labels, val_labels, 4) == pytest.approx(2 / 5)


def test_probe_codes_ratio_and_phones_seen():
    codes = torch.tensor([0, 1, 2, 0, 1, 2])
    labels = torch.tensor([0, 1, 2, 0, 1, 2])
    result, mapping = probe_codes(codes, labels, codes, labels, codebook_size=3, num_phones=5)
    assert result.code_accuracy == 1.0
    assert result.majority_accuracy == pytest.approx(1 / 3)
    assert result.ratio == pytest.approx(3.0)
    assert result.num_phones_seen == 3
    assert result.linear_accuracy is None
    assert set(result.metrics()) == {"phone_accuracy", "phone_majority_accuracy", "phone_accuracy_ratio"}


def test_bad_inputs_raise():
    with pytest.raises(ValueError, match="equal length"):
        code_phone_counts(torch.tensor([0, 1]), torch.tensor([0]), 2, 2)
    with pytest.raises(ValueError, match=r"codes must lie in \[0, 2\)"):
        code_phone_counts(torch.tensor([0, 2]), torch.tensor([0, 1]), 2, 2)
    with pytest.raises(ValueError, match="phone labels"):
        code_phone_counts(torch.tensor([0, 1]), torch.tensor([0, 5]), 2, 2)
    with pytest.raises(ValueError, match="no frames"):
        mapping_accuracy(torch.tensor([0]), torch.tensor([], dtype=torch.long), torch.tensor([], dtype=torch.long))


def test_linear_probe_reads_separable_features():
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 3, 600)
    centres = np.array([[4.0, 0.0], [0.0, 4.0], [-4.0, -4.0]])
    z = centres[labels] + rng.normal(0, 0.5, (600, 2))
    acc = linear_probe(z[:400], labels[:400], z[400:], labels[400:])
    assert acc > 0.97
    shuffled = linear_probe(z[:400], rng.permutation(labels[:400]), z[400:], labels[400:])
    assert shuffled < 0.6
