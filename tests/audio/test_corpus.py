"""Tests of audio/corpus.py: the sentences, the parallel layout, alignments that match the audio, the cache, errors."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch

import audio.corpus as corpus
from audio.corpus import (
    TRIM_MARGIN_SECONDS,
    VOICES,
    CorpusBuildError,
    build_corpus,
    choose_sentences,
    sentence_pool,
    trim_silence,
)
from audio.io import read_audio
from audio.phones import PHONE_INDEX, SILENCE, fold_phone
from tests.audio.conftest import TINY_SEED, TINY_SENTENCES

RATE = 16000


def _segments(path: Path) -> list[tuple[float, float, str, str]]:
    rows = [line.split("\t") for line in path.read_text().splitlines()]
    return [(float(s), float(e), folded, raw) for s, e, folded, raw in rows]


# ---------------------------------------------------------------- sentences


def test_sentence_pool_is_large_clean_and_distinct():
    pool = sentence_pool()
    assert len(pool) >= 600
    assert len({s.lower() for s in pool}) == len(pool)
    for s in pool:
        assert s.isascii() and s[0].isupper() and s[-1] in ".!?" and '"' not in s
        assert 4 <= len(s.split()) <= 20


def test_choose_sentences_is_seeded_and_ids_are_stable():
    a, b = choose_sentences(10, seed=3), choose_sentences(10, seed=3)
    assert a == b and a != choose_sentences(10, seed=4)
    pool = sentence_pool()
    assert all(pool[int(i)] == text for i, text in a)  # the id is the position in the pool, whatever the seed
    with pytest.raises(ValueError, match="num_sentences"):
        choose_sentences(len(pool) + 1, seed=0)


def test_voices_name_five_real_people():
    assert list(VOICES) == ["kal", "ked", "slt_hts", "awb", "rms", "slt", "kal16"]
    assert {v.person for v in VOICES.values()} == {"kal", "ked", "slt", "awb", "rms"}


# ---------------------------------------------------------------- the built corpus


def test_corpus_is_parallel(tiny_corpus):
    manifest = json.loads((tiny_corpus / "manifest.json").read_text())
    assert manifest["voices"] == list(VOICES) and manifest["sample_rate"] == RATE and manifest["seed"] == TINY_SEED
    ids = [s["id"] for s in manifest["sentences"]]
    assert len(ids) == TINY_SENTENCES and [s["text"] for s in manifest["sentences"]] == [
        t for _, t in choose_sentences(TINY_SENTENCES, TINY_SEED)]
    assert set(manifest["speakers"]) == set(VOICES) and manifest["speakers"]["kal16"]["person"] == "kal"
    for voice in VOICES:
        assert sorted(p.stem for p in (tiny_corpus / voice).glob("*.wav")) == ids
        assert sorted(p.stem for p in (tiny_corpus / voice).glob("*.phones")) == ids
    lines = (tiny_corpus / "sentences.txt").read_text().splitlines()
    assert [line.split("\t")[0] for line in lines] == ids


@pytest.mark.parametrize("voice", list(VOICES))
def test_alignments_line_up_with_the_audio(tiny_corpus, voice):
    silent, speech = [], []
    for phones in sorted((tiny_corpus / voice).glob("*.phones")):
        waveform = read_audio(phones.with_suffix(".wav"), RATE)  # [T]; every voice at 16 kHz, slt_hts from 32 kHz
        segments = _segments(phones)
        assert all(folded in PHONE_INDEX and fold_phone(raw) == folded for _, _, folded, raw in segments)
        starts, ends = [s for s, *_ in segments], [e for _, e, *_ in segments]
        assert starts[0] == 0.0 and all(s < e for s, e in zip(starts, ends))
        assert all(abs(s - e) < 1e-4 for s, e in zip(starts[1:], ends[:-1]))  # contiguous, increasing
        assert abs(ends[-1] - waveform.shape[0] / RATE) < 0.05
        # trimmed: at most the margin of silence at each end
        assert segments[0][2] != SILENCE or segments[0][1] <= TRIM_MARGIN_SECONDS + 1e-3
        assert segments[-1][2] != SILENCE or ends[-1] - starts[-1] <= TRIM_MARGIN_SECONDS + 1e-3
        for s, e, folded, _ in segments:
            (silent if folded == SILENCE else speech).append(waveform[round(s * RATE) : round(e * RATE)])
    rms = [torch.cat(parts).pow(2).mean().sqrt() for parts in (silent, speech)]
    assert rms[0] < rms[1] / 10, f"{voice}: silence RMS {rms[0]:.4f} vs speech RMS {rms[1]:.4f}"


def test_cache_is_reused(tiny_corpus):
    files = sorted(p for p in tiny_corpus.rglob("*") if p.is_file())
    before = [p.stat().st_mtime_ns for p in files]
    again = build_corpus(tiny_corpus, TINY_SENTENCES, list(reversed(VOICES)), RATE, TINY_SEED, progress=False)
    assert again == tiny_corpus
    assert [p.stat().st_mtime_ns for p in files] == before
    assert sorted(p for p in tiny_corpus.rglob("*") if p.is_file()) == files


def test_rebuilt_when_parameters_change_or_build_was_interrupted(tmp_path):
    build_corpus(tmp_path, 2, ["kal16"], RATE, seed=0, progress=False)
    first = json.loads((tmp_path / "manifest.json").read_text())
    build_corpus(tmp_path, 2, ["kal16"], RATE, seed=1, progress=False)
    second = json.loads((tmp_path / "manifest.json").read_text())
    assert second["seed"] == 1 and [s["id"] for s in second["sentences"]] == [i for i, _ in choose_sentences(2, 1)]
    assert second["sentences"] != first["sentences"]
    wav = tmp_path / "kal16" / f"{second['sentences'][0]['id']}.wav"
    mtime = wav.stat().st_mtime_ns
    (tmp_path / "manifest.json").unlink()  # as after an interrupted build
    build_corpus(tmp_path, 2, ["kal16"], RATE, seed=1, progress=False)
    assert wav.stat().st_mtime_ns != mtime and (tmp_path / "manifest.json").is_file()


def test_unknown_voice(tmp_path):
    with pytest.raises(ValueError, match="known voices"):
        build_corpus(tmp_path, 2, ["hal9000"], progress=False)


def test_missing_program_names_the_package(tmp_path, monkeypatch):
    which = shutil.which
    monkeypatch.setattr(shutil, "which", lambda name, *a, **k: None if name == "festival" else which(name, *a, **k))
    with pytest.raises(CorpusBuildError, match=r"festival.*apt-get install -y festival"):
        build_corpus(tmp_path, 2, ["kal", "awb"], progress=False)
    assert not (tmp_path / "manifest.json").exists()


def test_missing_fortunes_names_the_package(tmp_path, monkeypatch):
    monkeypatch.setattr(corpus, "FORTUNES_DIR", tmp_path / "nowhere")
    with pytest.raises(CorpusBuildError, match="fortunes-min"):
        build_corpus(tmp_path, 2, ["awb"], progress=False)


def test_quotes_in_text_reach_festival(tmp_path):
    if shutil.which("festival") is None:
        pytest.skip("festival is not installed")
    out = corpus._synth_festival(VOICES["kal"], ['She said "hi\\" and left.'], tmp_path)
    assert len(out) == 1 and out[0][0].is_file() and any(p == "hh" for _, p in out[0][1])


def test_trim_silence_by_hand():
    rate = 100
    waveform = torch.arange(300, dtype=torch.float32)  # 3 s
    segments = [(0.0, 1.0, "pau"), (1.0, 1.5, "aa"), (1.5, 1.7, "pau"), (1.7, 2.0, "b"), (2.0, 3.0, "h#")]
    cut, kept = trim_silence(waveform, segments, rate, margin=0.1)
    assert cut.tolist() == list(range(90, 210))
    expected = [(0.0, 0.1, "pau"), (0.1, 0.6, "aa"), (0.6, 0.8, "pau"), (0.8, 1.1, "b"), (1.1, 1.2, "h#")]
    assert [p for *_, p in kept] == [p for *_, p in expected]
    assert [t for s, e, _ in kept for t in (s, e)] == pytest.approx([t for s, e, _ in expected for t in (s, e)])
    with pytest.raises(ValueError, match="no speech"):
        trim_silence(waveform, [(0.0, 3.0, "pau")], rate)
