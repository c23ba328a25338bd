"""Fixtures of the audio tests: a tiny embedded corpus (4 sentences read by all seven voices), built once per session.

Tests that need it are skipped, with the reason, where festival/flite are not installed (CI installs them).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from audio.corpus import CorpusBuildError, build_corpus
from audio.datasets import Utterance, load_embedded

TINY_SENTENCES = 4
TINY_SEED = 0


@pytest.fixture(scope="session")
def tiny_corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Root of a corpus of ``TINY_SENTENCES`` sentences × 7 voices at 16 kHz (about 3 s to build)."""
    root = tmp_path_factory.mktemp("embedded_corpus")
    try:
        return build_corpus(root, TINY_SENTENCES, sample_rate=16000, seed=TINY_SEED, progress=False)
    except CorpusBuildError as e:
        pytest.skip(f"cannot synthesize the embedded corpus here: {e}")


@pytest.fixture(scope="session")
def tiny_utterances(tiny_corpus: Path) -> list[Utterance]:
    """All utterances of ``tiny_corpus``, with their phone segments."""
    return load_embedded(tiny_corpus)
