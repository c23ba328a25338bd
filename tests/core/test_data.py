"""Batches as a pure function of the step."""

import pytest

from core.data import StepBatchSampler, step_batch_indices


def test_each_epoch_is_a_permutation_and_batches_do_not_depend_on_history():
    n, b = 10, 4
    stream = [i for step in range(5) for i in step_batch_indices(n, b, seed=3, step=step)]
    assert sorted(stream[:10]) == list(range(10)) and sorted(stream[10:20]) == list(range(10))
    assert step_batch_indices(n, b, 3, 4) == stream[16:20]
    assert step_batch_indices(n, b, 4, 0) != step_batch_indices(n, b, 3, 0)


def test_sampler_starts_at_any_step():
    full = list(StepBatchSampler(7, 3, 0, 0, 6))
    assert list(StepBatchSampler(7, 3, 0, 4, 6)) == full[4:] and len(StepBatchSampler(7, 3, 0, 4, 6)) == 2


def test_invalid_sizes_raise():
    with pytest.raises(ValueError):
        step_batch_indices(0, 4, 0, 0)
