"""Domain-free plots every experiment logs: the codebook-usage histogram.

Axis legend: G codebooks, K codebook size.
"""

from __future__ import annotations

import numpy as np

from core.metrics import CodebookUsage


def usage_histogram(usage: CodebookUsage):
    """A matplotlib figure of the code counts of an evaluation pass, sorted by use (summed over codebooks)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    counts = np.sort(usage.counts.sum(0).numpy())[::-1]  # [K]
    fig, ax = plt.subplots(figsize=(8, 3))
    ax.bar(np.arange(len(counts)), counts, width=1.0)
    ax.set_xlabel("code (sorted by use)")
    ax.set_ylabel("assignments on the held-out split")
    ax.set_title(f"codebook usage {usage.codebook_usage:.1%}, perplexity {usage.perplexity:.1f}")
    fig.tight_layout()
    return fig
