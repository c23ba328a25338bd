"""Speech datasets of the audio experiments: the embedded synthesized corpus, VCTK 0.92 and LibriSpeech.

Every source loads into a list of ``Utterance`` (whole waveforms in memory, mono float32 at one sample rate); the
split holds out whole sentences; training reads fixed-length crops through ``AudioCrops``.

Axis legend: T samples (time), N items.
"""

from __future__ import annotations

import json
import random
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from audio.config import AudioDataConfig
from audio.corpus import build_corpus
from audio.io import audio_sample_rate, read_audio
from audio.phones import SILENCE, fold_phone

VCTK_LAYOUT = ("<root>/VCTK-Corpus-0.92/wav48_silence_trimmed/<speaker>/<speaker>_<nnn>_mic1.flac and "
               "<root>/VCTK-Corpus-0.92/txt/<speaker>/<speaker>_<nnn>.txt (torchaudio.datasets.VCTK_092)")
LIBRISPEECH_LAYOUT = ("<root>/LibriSpeech/<subset>/<speaker>/<chapter>/<speaker>-<chapter>-<utt>.flac and "
                      "<speaker>-<chapter>.trans.txt (torchaudio.datasets.LIBRISPEECH)")

Segments = list[tuple[float, float, str]]  # (start_s, end_s, folded phone)


@dataclass
class Utterance:
    """One recording of one sentence by one speaker."""

    waveform: torch.Tensor  # [T] float32 in [-1, 1]
    speaker: str
    sentence_id: str  # embedded corpus: equal ids read the same sentence; VCTK: only in the shared passages
    #                   (match readings by normalised text, audio.convert_stage.sentence_key)
    text: str = ""
    segments: Segments | None = None  # (start_s, end_s, folded phone), sorted; None where no alignment is known


@dataclass
class AudioSplits:
    """Training and held-out utterances; no sentence of ``val`` is in ``train``."""

    train: list[Utterance]
    val: list[Utterance]
    speakers: list[str]  # sorted; a speaker's index is its position here


def load_embedded(root: str | Path, sentence_ids: list[str] | None = None, voices: list[str] | None = None,
                  sample_rate: int = 16000) -> list[Utterance]:
    """The utterances of a corpus built by ``audio.corpus.build_corpus``, with their phone segments.

    Args:
        root: The corpus folder (holding ``manifest.json``).
        sentence_ids: Keep only these sentences (``None``: all of the manifest).
        voices: Keep only these voices (``None``: all of the manifest).
        sample_rate: Hz the corpus must have been built at (files are not resampled).

    Returns:
        Utterances ordered by voice (manifest order) then sentence id; ``speaker`` is the voice's short name.

    Raises:
        FileNotFoundError: If ``root`` holds no finished build.
        ValueError: For voices or sentence ids the manifest does not have.
        AudioFileError: If a wav file is unreadable or at another sample rate.
    """
    root = Path(root)
    manifest_path = root / "manifest.json"
    if not manifest_path.is_file():
        raise FileNotFoundError(f"{manifest_path} is missing: {root} holds no finished corpus (run build_corpus)")
    manifest = json.loads(manifest_path.read_text())
    texts = {s["id"]: s["text"] for s in manifest["sentences"]}
    for name, wanted, known in (("voices", voices, manifest["voices"]), ("sentence ids", sentence_ids, texts)):
        unknown = sorted(set(wanted or ()) - set(known))
        if unknown:
            raise ValueError(f"{name} {unknown[:10]} are not in the corpus under {root}")
    out = []
    for voice in manifest["voices"]:
        if voices is not None and voice not in voices:
            continue
        for sentence_id, text in texts.items():
            if sentence_ids is not None and sentence_id not in sentence_ids:
                continue
            waveform = read_audio(root / voice / f"{sentence_id}.wav", sample_rate)  # [T]
            rows = (line.split("\t") for line in (root / voice / f"{sentence_id}.phones").read_text().splitlines())
            segments = [(float(r[0]), float(r[1]), r[2]) for r in rows if r[0]]
            out.append(Utterance(waveform, voice, sentence_id, text, segments))
    return out


# --- alignments -------------------------------------------------------------------------------------------------

_TEXTGRID_TOKEN = re.compile(
    r'"((?:[^"]|"")*)"|\[\d*\]|(<exists>|<absent>)|([-+]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][-+]?\d+)?)|\S')


def read_textgrid(path: Path, tier: str = "phones") -> list[tuple[float, float, str]]:
    """The intervals ``(start_s, end_s, label)`` of tier ``tier`` of a Praat TextGrid (long or short text format).

    Both formats list the same values in the same order; only the quoted strings, numbers and ``<exists>`` matter
    (keys such as ``xmin =`` and indices such as ``[1]`` are skipped), as in Praat's own reader.

    Raises:
        ValueError: If the file is not a TextGrid or has no interval tier named ``tier`` (the message names the file).
    """
    tokens = []
    raw = path.read_bytes()
    text = raw.decode("utf-16") if raw[:2] in (b"\xff\xfe", b"\xfe\xff") else raw.decode("utf-8-sig", "replace")
    for m in _TEXTGRID_TOKEN.finditer(text):  # Praat writes UTF-16 with a byte-order mark when it must
        if m.group(1) is not None:
            tokens.append(m.group(1).replace('""', '"'))
        elif m.group(2) is not None:
            tokens.append(m.group(2))
        elif m.group(3) is not None:
            tokens.append(float(m.group(3)))
    try:
        if tokens[:2] != ["ooTextFile", "TextGrid"] or tokens[4] != "<exists>":
            raise ValueError("not a TextGrid text file")
        pos = 6  # after the header: "ooTextFile" "TextGrid" xmin xmax <exists> size
        for _ in range(int(tokens[5])):
            kind, name, count = tokens[pos], tokens[pos + 1], int(tokens[pos + 4])
            width = 3 if kind == "IntervalTier" else 2
            body = tokens[pos + 5 : pos + 5 + width * count]
            pos += 5 + width * count
            if kind == "IntervalTier" and name == tier:
                return [(float(body[i]), float(body[i + 1]), str(body[i + 2])) for i in range(0, len(body), 3)]
    except (IndexError, TypeError, ValueError) as e:
        raise ValueError(f"malformed TextGrid {path}: {e}") from e
    raise ValueError(f"TextGrid {path} has no interval tier named {tier!r}")


def _fold_aligned(label: str) -> str:
    """Folds an aligner's label; empty labels (MFA's silence) are silence."""
    return SILENCE if not label.strip() else fold_phone(label)


def read_alignment(path: Path, sample_rate: int) -> Segments:
    """Folded phone segments from a TIMIT ``.PHN`` file (``start_sample end_sample phone`` at ``sample_rate`` Hz)
    or a TextGrid (tier ``phones``), sorted by time.

    Raises:
        ValueError: For a malformed file or an unknown phone (the message names the file).
    """
    try:
        if path.suffix.lower() == ".phn":
            rows = [line.split() for line in path.read_text().splitlines() if line.strip()]
            segments = [(int(a) / sample_rate, int(b) / sample_rate, _fold_aligned(p)) for a, b, p in rows]
        else:
            segments = [(s, e, _fold_aligned(p)) for s, e, p in read_textgrid(path)]
    except ValueError as e:
        raise ValueError(f"cannot read alignment {path}: {e}") from e
    return sorted(segments)


def _find_alignment(folder: str, speaker: str, stems: list[str], sample_rate: int,
                    subfolders: tuple[str, ...] = ()) -> Segments | None:
    """The alignment of an utterance under ``folder``: ``[<speaker>/[<sub>/]]<stem>.{PHN,phn,TextGrid}``."""
    if not folder:
        return None
    base = Path(folder)
    for directory in (base / speaker, *(base / speaker / s for s in subfolders), base):
        for stem in stems:
            for suffix in (".PHN", ".phn", ".TextGrid"):
                if (directory / f"{stem}{suffix}").is_file():
                    return read_alignment(directory / f"{stem}{suffix}", sample_rate)
    return None


# --- real datasets ----------------------------------------------------------------------------------------------


def _interleave(by_speaker: dict[str, list], max_items: int) -> list:
    """Round-robin over the speakers (sorted), so that the first ``max_items`` cover every speaker (0: all)."""
    lists = [by_speaker[s] for s in sorted(by_speaker)]
    out = [v[rank] for rank in range(max((len(v) for v in lists), default=0)) for v in lists if rank < len(v)]
    return out[:max_items] if max_items > 0 else out


def load_vctk(root: str | Path, sample_rate: int = 16000, alignments: str = "", max_utterances: int = 0,
              mic: str = "mic1") -> list[Utterance]:
    """VCTK 0.92 in the ``torchaudio.datasets.VCTK_092`` layout (see ``VCTK_LAYOUT``), resampled to ``sample_rate``.

    Utterances without a transcript or without an audio file of ``mic`` are skipped, as torchaudio does.
    ``sentence_id`` is the utterance number (``"001"``): speakers read the same script under the same low numbers.
    ``max_utterances > 0`` keeps that many, taken round-robin over the speakers in order of utterance number.
    Alignments: ``alignments/<speaker>/<speaker>_<nnn>[_mic1].{PHN,TextGrid}`` (``.PHN`` samples at the file's rate).

    Raises:
        FileNotFoundError: If the layout is not found under ``root`` (the message shows it).
        AudioFileError: For an unreadable audio file.
    """
    base = Path(root) / "VCTK-Corpus-0.92"
    txt_dir, wav_dir = base / "txt", base / "wav48_silence_trimmed"
    if not txt_dir.is_dir() or not wav_dir.is_dir():
        raise FileNotFoundError(f"no VCTK 0.92 under {root}; expected {VCTK_LAYOUT}")
    by_speaker: dict[str, list] = {}
    for speaker_dir in sorted(p for p in txt_dir.iterdir() if p.is_dir()):
        speaker = speaker_dir.name
        for txt in sorted(speaker_dir.glob(f"{speaker}_*.txt")):
            audio = wav_dir / speaker / f"{txt.stem}_{mic}.flac"
            if audio.is_file():
                by_speaker.setdefault(speaker, []).append((speaker, txt, audio))

    def load(item: tuple[str, Path, Path]) -> Utterance:
        speaker, txt, audio = item
        segments = _find_alignment(alignments, speaker, [txt.stem, audio.stem], audio_sample_rate(audio))
        return Utterance(read_audio(audio, sample_rate, resample=True), speaker, txt.stem.split("_", 1)[1],
                         txt.read_text().strip(), segments)

    return _load_all(_interleave(by_speaker, max_utterances), load)


def load_librispeech(root: str | Path, subset: str = "train-clean-100", sample_rate: int = 16000,
                     alignments: str = "", max_utterances: int = 0) -> list[Utterance]:
    """LibriSpeech in the ``torchaudio.datasets.LIBRISPEECH`` layout (see ``LIBRISPEECH_LAYOUT``).

    ``sentence_id`` is the utterance id (``"19-198-0001"``); LibriSpeech has no parallel sentences.
    ``max_utterances > 0`` keeps that many, taken round-robin over the speakers.
    Alignments: ``alignments/<speaker>/[<chapter>/]<utt_id>.{PHN,TextGrid}`` (MFA mirrors the input folders).

    Raises:
        FileNotFoundError: If ``root/LibriSpeech/<subset>`` is missing.
        ValueError: If a listed utterance has no transcript line.
        AudioFileError: For an unreadable audio file.
    """
    base = Path(root) / "LibriSpeech" / subset
    if not base.is_dir():
        raise FileNotFoundError(f"no LibriSpeech subset {subset!r} under {root}; expected {LIBRISPEECH_LAYOUT}")
    by_speaker: dict[str, list] = {}
    for chapter_dir in sorted(p for p in base.glob("*/*") if p.is_dir()):
        speaker, chapter = chapter_dir.parent.name, chapter_dir.name
        trans = chapter_dir / f"{speaker}-{chapter}.trans.txt"
        lines = trans.read_text().splitlines() if trans.is_file() else []
        texts = dict(line.split(" ", 1) for line in lines if " " in line)
        for audio in sorted(chapter_dir.glob("*.flac")):
            if audio.stem not in texts:
                raise ValueError(f"{audio} has no line in {trans}")
            by_speaker.setdefault(speaker, []).append((speaker, chapter, audio, texts[audio.stem].strip()))

    def load(item: tuple[str, str, Path, str]) -> Utterance:
        speaker, chapter, audio, text = item
        segments = _find_alignment(alignments, speaker, [audio.stem], audio_sample_rate(audio), (chapter,))
        return Utterance(read_audio(audio, sample_rate, resample=True), speaker, audio.stem, text, segments)

    return _load_all(_interleave(by_speaker, max_utterances), load)


def _load_all(items: list, load: Callable) -> list[Utterance]:
    if not items:
        raise FileNotFoundError("no utterances found (check the dataset root and layout)")
    return [load(item) for item in items]


# --- splits and crops -------------------------------------------------------------------------------------------


def split_by_sentence(utterances: list[Utterance], val_fraction: float, seed: int,
                      ) -> tuple[list[Utterance], list[Utterance]]:
    """Holds out a seeded ``val_fraction`` of the sentence ids: their utterances (every speaker) go to val only.

    The number held out is ``round(val_fraction · sentences)``, at least 1 and at most ``sentences − 1`` when
    ``val_fraction > 0`` and there are two sentences or more. Both lists keep the input order.

    Raises:
        ValueError: If ``val_fraction`` is outside [0, 1).
    """
    if not 0 <= val_fraction < 1:
        raise ValueError(f"val_fraction must be in [0, 1), got {val_fraction}")
    ids = sorted({u.sentence_id for u in utterances})
    n_val = round(val_fraction * len(ids))
    if val_fraction > 0 and len(ids) >= 2:
        n_val = min(max(n_val, 1), len(ids) - 1)
    held_out = set(random.Random(seed).sample(ids, n_val))
    train = [u for u in utterances if u.sentence_id not in held_out]
    return train, [u for u in utterances if u.sentence_id in held_out]


class SequenceCrops(Dataset):
    """Fixed-length crops of labelled 1-D sequences (waveforms, code sequences); item ``i`` is a pure function of
    ``(seed, i)``.

    The sequence of item ``i`` is drawn with probability proportional to its length (so every step is about equally
    likely), then a uniform start. Sequences shorter than the crop are zero-padded at the end.

    Args:
        sequences: The pool, each ``[T_u]``.
        labels: One integer label per sequence.
        length: Length of the crops, steps.
        num_items: Number of items (crops are drawn afresh per index, so this only sets the epoch size).
        seed: Seed of the crops.

    Raises:
        ValueError: For an empty pool, a non-positive crop or a negative ``num_items``.
    """

    def __init__(self, sequences: list[torch.Tensor], labels: list[int], length: int, num_items: int,
                 seed: int) -> None:
        if not sequences or length < 1 or num_items < 0:
            raise ValueError(f"need sequences, a crop length >= 1 and num_items >= 0; got {len(sequences)} "
                             f"sequences, {length}, {num_items}")
        self.sequences, self.labels = sequences, labels
        self.length, self.num_items, self.seed = length, num_items, seed
        sizes = np.array([q.shape[0] for q in sequences], dtype=np.float64)
        self._cdf = np.cumsum(sizes / sizes.sum())  # [number of sequences]

    def __len__(self) -> int:
        return self.num_items

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Returns ``(crop [length], label)`` (the label a 0-dim long tensor)."""
        if not 0 <= i < self.num_items:
            raise IndexError(f"index {i} out of range for {self.num_items} crops")
        u_sequence, u_start = np.random.default_rng([self.seed, i]).random(2)
        k = min(int(np.searchsorted(self._cdf, u_sequence, side="right")), len(self.sequences) - 1)
        sequence = self.sequences[k]
        start = int(u_start * (max(sequence.shape[0] - self.length, 0) + 1))
        crop = sequence[start : start + self.length].clone()  # [<= length], not a view
        if crop.shape[0] < self.length:
            crop = torch.nn.functional.pad(crop, (0, self.length - crop.shape[0]))  # [length]
        return crop, torch.tensor(self.labels[k], dtype=torch.long)


class AudioCrops(SequenceCrops):
    """Fixed-length waveform crops of utterances (:class:`SequenceCrops`), labelled with the speaker; utterances
    shorter than the crop are zero-padded (zeros are digital silence).

    Args:
        utterances: The pool; each ``waveform`` ``[T]``.
        speakers: Speaker names; item labels are indices into this list.
        crop_samples: Length of the crops, samples.
        num_items: Number of items.
        seed: Seed of the crops.

    Items are ``(waveform [crop_samples] float32, speaker index)``.

    Raises:
        ValueError: For an empty pool, a non-positive crop, a negative ``num_items`` or a speaker not in ``speakers``.
    """

    def __init__(self, utterances: list[Utterance], speakers: list[str], crop_samples: int, num_items: int,
                 seed: int) -> None:
        unknown = sorted({u.speaker for u in utterances} - set(speakers))
        if unknown:
            raise ValueError(f"speakers {unknown} are not in the speaker list {speakers}")
        index = {s: k for k, s in enumerate(speakers)}
        super().__init__([u.waveform.float() for u in utterances], [index[u.speaker] for u in utterances],
                         crop_samples, num_items, seed)
        self.crop_samples = crop_samples


_SOURCES = ("embedded", "vctk", "librispeech")


def build_audio_datasets(cfg: AudioDataConfig) -> AudioSplits:
    """Loads ``cfg.source`` (building the embedded corpus first if needed) and splits it by sentence.

    Raises:
        ValueError: For an unknown source (the message lists the known ones) or an empty root of a real dataset.
    """
    if cfg.source == "embedded":
        root = build_corpus(cfg.root, cfg.num_sentences, cfg.voices or None, cfg.sample_rate, cfg.seed)
        utterances = load_embedded(root, voices=cfg.voices or None, sample_rate=cfg.sample_rate)
    elif cfg.source in ("vctk", "librispeech"):
        if not cfg.root:
            raise ValueError(f"data.root must be set for data.source={cfg.source!r}")
        if cfg.source == "vctk":
            utterances = load_vctk(cfg.root, cfg.sample_rate, cfg.alignments, cfg.max_utterances)
        else:
            utterances = load_librispeech(cfg.root, cfg.subset, cfg.sample_rate, cfg.alignments, cfg.max_utterances)
    else:
        raise ValueError(f"unknown data.source {cfg.source!r}; known sources: {', '.join(_SOURCES)}")
    train, val = split_by_sentence(utterances, cfg.val_fraction, cfg.seed)
    return AudioSplits(train, val, sorted({u.speaker for u in utterances}))
