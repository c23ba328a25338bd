"""Nearest-code search and distances against brute force."""

import pytest
import torch

from core.quantize import nearest_code, squared_distances


@pytest.mark.parametrize("n", [1, 1023, 1024, 2500])
def test_nearest_code_equals_brute_force(n):
    g = torch.Generator().manual_seed(n)
    z = torch.randn(n, 16, generator=g)
    codebook = torch.randn(64, 16, generator=g)
    expected = torch.cdist(z.double(), codebook.double()).argmin(-1)
    assert torch.equal(nearest_code(z, codebook), expected)


def test_nearest_code_breaks_exact_ties_towards_lowest_index():
    codebook = torch.tensor([[1.0, 0.0], [-1.0, 0.0], [1.0, 0.0]])
    z = torch.tensor([[0.0, 0.0], [2.0, 0.0]])
    assert nearest_code(z, codebook).tolist() == [0, 0]


def test_nearest_code_rejects_mismatched_dimension():
    with pytest.raises(ValueError, match="dimension"):
        nearest_code(torch.randn(4, 3), torch.randn(8, 5))


def test_nearest_code_of_empty_input_is_empty():
    out = nearest_code(torch.randn(0, 4), torch.randn(8, 4))
    assert out.shape == (0,) and out.dtype == torch.long


def test_squared_distances_equal_brute_force_plain_and_weighted():
    g = torch.Generator().manual_seed(1)
    z, e = torch.randn(10, 5, generator=g), torch.randn(7, 5, generator=g)
    brute = ((z[:, None, :] - e[None]) ** 2).sum(-1)
    torch.testing.assert_close(squared_distances(z, e), brute, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(squared_distances(z, e, torch.tensor(0.3)), 0.3 * brute, rtol=1e-5, atol=1e-5)
    w = torch.rand(10, 5, generator=g)
    weighted = (w[:, None, :] * (z[:, None, :] - e[None]) ** 2).sum(-1)
    torch.testing.assert_close(squared_distances(z, e, w), weighted, rtol=1e-5, atol=1e-5)
