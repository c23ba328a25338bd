"""Tests of audio/datasets.py: the embedded loader, VCTK 0.92 and LibriSpeech loaders on tiny fixtures laid out like
the real datasets (with TIMIT .PHN and MFA TextGrid alignments), the split by sentence, crops and the builder."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from torch.utils.data import DataLoader

from audio.config import AudioDataConfig
from audio.corpus import VOICES
from audio.datasets import (
    AudioCrops,
    Utterance,
    build_audio_datasets,
    load_embedded,
    load_librispeech,
    load_vctk,
    read_textgrid,
    split_by_sentence,
)
from audio.io import AudioFileError
from tests.audio.conftest import TINY_SEED, TINY_SENTENCES

TEXTGRID_LONG = '''File type = "ooTextFile"
Object class = "TextGrid"

xmin = 0
xmax = 0.3
tiers? <exists>
size = 2
item []:
    item [1]:
        class = "IntervalTier"
        name = "words"
        xmin = 0
        xmax = 0.3
        intervals: size = 1
        intervals [1]:
            xmin = 0
            xmax = 0.3
            text = "ask"
    item [2]:
        class = "IntervalTier"
        name = "phones"
        xmin = 0
        xmax = 0.3
        intervals: size = 4
        intervals [1]:
            xmin = 0
            xmax = 0.05
            text = ""
        intervals [2]:
            xmin = 0.05
            xmax = 0.15
            text = "AE1"
        intervals [3]:
            xmin = 0.15
            xmax = 0.25
            text = "S"
        intervals [4]:
            xmin = 0.25
            xmax = 0.3
            text = "spn"
'''
TEXTGRID_SHORT = '''File type = "ooTextFile"
Object class = "TextGrid"

0
0.3
<exists>
2
"TextTier"
"events"
0
0.3
1
0.1
"click"
"IntervalTier"
"phones"
0
0.3
2
0
0.1
"sil"
0.1
0.3
"AH0"
'''


def _flac(path: Path, seconds: float, rate: int, hz: float) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    t = np.arange(int(seconds * rate)) / rate
    sf.write(str(path), (0.3 * np.sin(2 * np.pi * hz * t)).astype(np.float32), rate)


@pytest.fixture
def vctk_root(tmp_path: Path) -> Path:
    """Two speakers, 48 kHz flac of 0.3 s; p226_003 has no transcript and p225_003 no audio (both skipped)."""
    base = tmp_path / "vctk" / "VCTK-Corpus-0.92"
    for speaker, hz in (("p225", 200.0), ("p226", 300.0)):
        for n in ("001", "002", "003"):
            if (speaker, n) != ("p226", "003"):
                (base / "txt" / speaker).mkdir(parents=True, exist_ok=True)
                (base / "txt" / speaker / f"{speaker}_{n}.txt").write_text(f"Sentence {n} of {speaker}.\n")
            if (speaker, n) != ("p225", "003"):
                _flac(base / "wav48_silence_trimmed" / speaker / f"{speaker}_{n}_mic1.flac", 0.3, 48000, hz)
        _flac(base / "wav48_silence_trimmed" / speaker / f"{speaker}_001_mic2.flac", 0.3, 48000, hz)
    align = tmp_path / "align"
    (align / "p225").mkdir(parents=True)
    (align / "p225" / "p225_001.PHN").write_text("0 2400 h#\n2400 7200 ax\n7200 9600 dx\n9600 14400 h#\n")
    (align / "p226").mkdir()
    (align / "p226" / "p226_002_mic1.TextGrid").write_text(TEXTGRID_LONG)
    return tmp_path / "vctk"


def test_vctk_layout_and_resampling(vctk_root):
    utts = load_vctk(vctk_root, 16000, alignments=str(vctk_root.parent / "align"))
    assert [(u.speaker, u.sentence_id) for u in utts] == [("p225", "001"), ("p226", "001"), ("p225", "002"),
                                                          ("p226", "002")]
    for u in utts:
        assert u.waveform.dtype == torch.float32 and u.waveform.shape == (4800,)
        assert u.text == f"Sentence {u.sentence_id} of {u.speaker}."
    # .PHN sample numbers are at the file's 48 kHz; TextGrid: MFA's empty label and spn are silence, stress dropped
    assert [p for *_, p in utts[0].segments] == ["sil", "ah", "t", "sil"]
    assert [t for s, e, _ in utts[0].segments for t in (s, e)] == pytest.approx([0, .05, .05, .15, .15, .2, .2, .3])
    assert [p for *_, p in utts[3].segments] == ["sil", "ae", "s", "sil"]
    assert utts[1].segments is None and utts[2].segments is None
    assert [(u.speaker, u.sentence_id) for u in load_vctk(vctk_root, max_utterances=3)] == [
        ("p225", "001"), ("p226", "001"), ("p225", "002")]


def test_vctk_missing_layout(tmp_path):
    with pytest.raises(FileNotFoundError, match="VCTK-Corpus-0.92"):
        load_vctk(tmp_path)


def test_textgrid_short_format_and_missing_tier(tmp_path):
    path = tmp_path / "a.TextGrid"
    path.write_text(TEXTGRID_SHORT)
    assert read_textgrid(path) == [(0.0, 0.1, "sil"), (0.1, 0.3, "AH0")]
    with pytest.raises(ValueError, match="no interval tier named 'words'"):
        read_textgrid(path, tier="words")
    path.write_text(TEXTGRID_SHORT.replace("0.1", ".1"), encoding="utf-16")  # Praat's UTF-16, numbers like .1
    assert read_textgrid(path) == [(0.0, 0.1, "sil"), (0.1, 0.3, "AH0")]
    path.write_text("not a textgrid")
    with pytest.raises(ValueError, match="a.TextGrid"):
        read_textgrid(path)


@pytest.fixture
def librispeech_root(tmp_path: Path) -> Path:
    """Speakers 19 (two chapters) and 26 at 16 kHz; one MFA TextGrid under <speaker>/<chapter>/."""
    base = tmp_path / "ls" / "LibriSpeech" / "train-clean-100"
    for speaker, chapter, n in (("19", "198", 2), ("19", "227", 1), ("26", "495", 1)):
        folder = base / speaker / chapter
        lines = []
        for k in range(n):
            utt = f"{speaker}-{chapter}-{k:04d}"
            _flac(folder / f"{utt}.flac", 0.2, 16000, 250.0)
            lines.append(f"{utt} WORDS OF {utt}")
        (folder / f"{speaker}-{chapter}.trans.txt").write_text("\n".join(lines) + "\n")
    (tmp_path / "ls_align" / "26" / "495").mkdir(parents=True)
    (tmp_path / "ls_align" / "26" / "495" / "26-495-0000.TextGrid").write_text(TEXTGRID_SHORT)
    return tmp_path / "ls"


def test_librispeech_layout(librispeech_root):
    utts = load_librispeech(librispeech_root, alignments=str(librispeech_root.parent / "ls_align"))
    assert [u.sentence_id for u in utts] == ["19-198-0000", "26-495-0000", "19-198-0001", "19-227-0000"]
    assert utts[0].speaker == "19" and utts[0].text == "WORDS OF 19-198-0000" and utts[0].waveform.shape == (3200,)
    assert utts[1].segments == [(0.0, 0.1, "sil"), (0.1, 0.3, "ah")] and utts[0].segments is None
    assert len(load_librispeech(librispeech_root, max_utterances=2)) == 2
    with pytest.raises(FileNotFoundError, match="dev-clean"):
        load_librispeech(librispeech_root, subset="dev-clean")


def test_load_embedded(tiny_corpus, tiny_utterances):
    assert len(tiny_utterances) == TINY_SENTENCES * len(VOICES)
    assert {u.speaker for u in tiny_utterances} == set(VOICES)
    u = tiny_utterances[0]
    assert u.waveform.dtype == torch.float32 and u.waveform.ndim == 1 and u.text and u.segments
    some = load_embedded(tiny_corpus, sentence_ids=[u.sentence_id], voices=["awb", "kal"])
    assert [(v.speaker, v.sentence_id) for v in some] == [("kal", u.sentence_id), ("awb", u.sentence_id)]
    with pytest.raises(ValueError, match="hal9000"):
        load_embedded(tiny_corpus, voices=["hal9000"])
    with pytest.raises(AudioFileError, match="16000 Hz, expected 8000 Hz"):
        load_embedded(tiny_corpus, voices=["kal"], sample_rate=8000)


def test_load_embedded_without_a_build(tmp_path):
    with pytest.raises(FileNotFoundError, match="manifest.json"):
        load_embedded(tmp_path)


def _utts(speakers: int, sentences: int, length: int = 100) -> list[Utterance]:
    return [Utterance(torch.full((length,), float(k)), f"spk{s}", f"{k:03d}") for s in range(speakers)
            for k in range(sentences)]


def test_split_by_sentence():
    utts = _utts(3, 20)
    train, val = split_by_sentence(utts, 0.25, seed=0)
    train_ids, val_ids = {u.sentence_id for u in train}, {u.sentence_id for u in val}
    assert not train_ids & val_ids and len(val_ids) == 5 and len(train) + len(val) == len(utts)
    assert {u.speaker for u in val} == {"spk0", "spk1", "spk2"}
    assert [[id(u) for u in part] for part in split_by_sentence(utts, 0.25, seed=0)] == [
        [id(u) for u in train], [id(u) for u in val]]
    assert {u.sentence_id for u in split_by_sentence(utts, 0.25, seed=1)[1]} != val_ids
    assert len({u.sentence_id for u in split_by_sentence(_utts(2, 3), 0.01, 0)[1]}) == 1  # at least one held out
    assert len({u.sentence_id for u in split_by_sentence(_utts(2, 3), 0.9, 0)[0]}) == 1  # at least one kept
    assert split_by_sentence(utts, 0.0, 0)[1] == []
    with pytest.raises(ValueError, match="val_fraction"):
        split_by_sentence(utts, 1.0, 0)


def test_audio_crops_are_deterministic_and_padded():
    utts = [Utterance(torch.arange(1000, dtype=torch.float32), "b", "1"),
            Utterance(-torch.arange(1, 3001, dtype=torch.float32), "a", "2"),
            Utterance(torch.ones(10), "c", "3")]
    crops = AudioCrops(utts, ["a", "b", "c"], crop_samples=50, num_items=2000, seed=7)
    again = AudioCrops(utts, ["a", "b", "c"], crop_samples=50, num_items=2000, seed=7)
    assert len(crops) == 2000
    x, y = crops[5]
    assert x.shape == (50,) and x.dtype == torch.float32 and y.dtype == torch.long and y.ndim == 0
    assert all(torch.equal(crops[i][0], again[i][0]) and crops[i][1] == again[i][1] for i in range(50))
    other = AudioCrops(utts, ["a", "b", "c"], 50, 2000, seed=8)
    assert any(not torch.equal(crops[i][0], other[i][0]) for i in range(20))
    labels = torch.stack([crops[i][1] for i in range(2000)])
    assert abs((labels == 0).float().mean().item() - 3000 / 4010) < 0.05  # proportional to length
    for i in range(100):
        x, y = crops[i]
        if y == 2:  # shorter than the crop: zero-padded at the end
            assert x[:10].tolist() == [1.0] * 10 and not x[10:].any()
        elif y == 1:
            assert torch.equal(x, torch.arange(x[0], x[0] + 50))  # a contiguous window
    with pytest.raises(IndexError):
        crops[2000]
    with pytest.raises(ValueError, match="not in the speaker list"):
        AudioCrops(utts, ["a"], 50, 10, 0)
    batch = next(iter(DataLoader(crops, batch_size=4)))
    assert batch[0].shape == (4, 50) and batch[1].shape == (4,) and batch[1].dtype == torch.long


def test_build_audio_datasets_embedded(tiny_corpus):
    cfg = AudioDataConfig(source="embedded", root=str(tiny_corpus), num_sentences=TINY_SENTENCES, seed=TINY_SEED,
                          val_fraction=0.25)
    splits = build_audio_datasets(cfg)  # the cached corpus: no synthesis
    assert splits.speakers == sorted(VOICES)
    assert len({u.sentence_id for u in splits.val}) == 1 and len({u.sentence_id for u in splits.train}) == 3
    assert len(splits.train) + len(splits.val) == TINY_SENTENCES * len(VOICES)


def test_build_audio_datasets_vctk_and_unknown(vctk_root):
    splits = build_audio_datasets(AudioDataConfig(source="vctk", root=str(vctk_root), val_fraction=0.5))
    assert splits.speakers == ["p225", "p226"] and len(splits.train) == 2 and len(splits.val) == 2
    with pytest.raises(ValueError, match="known sources: embedded, vctk, librispeech"):
        build_audio_datasets(AudioDataConfig(source="timit"))
