"""The embedded speech corpus: the same sentences read by seven synthetic voices, with exact phone timings, offline.

The paper trains on VCTK (109 speakers reading parallel sentences). Its embedded stand-in is synthesized on first use
with Debian's festival and flite voices, which are concatenations or statistical models of five real recorded people
(kal, ked, slt, awb, rms) behind seven voices. The synthesizer also reports where each phone lies, so the phoneme
probe has exact labels (VCTK needs a forced aligner for that).

Sentences are single English sentences of 4–20 words cleaned from Debian's fortunes files (``fortunes``,
``literature``, ``riddles`` of ``fortunes-min``); ``seed`` chooses ``num_sentences`` of them. A sentence's id is its
position in the cleaned pool, so a sentence keeps its id across seeds and sizes.

Silence trimming, like VCTK's silence-trimmed release: each utterance is cut to ``TRIM_MARGIN_SECONDS`` of silence
before its first and after its last non-silent phone, and the phone times are shifted accordingly. Without it, the
synthesizers' long leading and trailing pauses would make "sil" the majority phone and inflate the probe's baseline.

Layout under ``root``: ``<voice>/<sentence_id>.wav`` (16-bit PCM, ``sample_rate``), ``<voice>/<sentence_id>.phones``
(one segment a line: ``start_s<TAB>end_s<TAB>folded_phone<TAB>raw_symbol``), ``sentences.txt`` (``id<TAB>text``) and
``manifest.json``, written last: a build that was interrupted has no manifest and is redone. The manifest lists what
belongs to the build; files of an earlier build with other parameters may remain beside it and are ignored.

Axis legend: T samples (time).
"""

from __future__ import annotations

import json
import random
import re
import shutil
import subprocess
import tempfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from tqdm import tqdm

from audio.io import read_audio, write_audio
from audio.phones import SILENCE, fold_phone
from core.files import atomic_write_text

BUILDER_VERSION = 1  # bump when the output of a build changes for the same parameters
TRIM_MARGIN_SECONDS = 0.05  # silence kept before the first and after the last non-silent phone
FORTUNES_DIR = Path("/usr/share/games/fortunes")  # where Debian's fortunes-min installs its files
FORTUNES_FILES = ("fortunes", "literature", "riddles")
CHUNK_SENTENCES = 50  # sentences per synthesizer task
WORKERS = 2  # synthesizer processes running at once


class CorpusBuildError(RuntimeError):
    """The embedded corpus cannot be built (missing Debian packages, a synthesizer failure); the message says why."""


@dataclass(frozen=True)
class VoiceSpec:
    """One synthetic voice, a "speaker" of the corpus.

    Attributes:
        engine: ``"festival"`` or ``"flite"``.
        engine_voice: The voice's name for the engine (``kal_diphone``, ``awb`` …).
        person: The real recorded speaker behind the voice (several voices can share one).
        package: The Debian package that ships the voice.
        description: Accent, sex and kind of synthesis.
    """

    engine: str
    engine_voice: str
    person: str
    package: str
    description: str


VOICES: dict[str, VoiceSpec] = {
    "kal": VoiceSpec("festival", "kal_diphone", "kal", "festvox-kallpc16k", "US male, diphone (LPC)"),
    "ked": VoiceSpec("festival", "ked_diphone", "ked", "festvox-kdlpc16k", "US male, diphone (LPC)"),
    "slt_hts": VoiceSpec("festival", "cmu_us_slt_arctic_hts", "slt", "festvox-us-slt-hts",
                         "US female (CMU ARCTIC slt), HMM-based (HTS)"),
    "awb": VoiceSpec("flite", "awb", "awb", "flite", "Scottish English male (CMU ARCTIC awb), clustergen"),
    "rms": VoiceSpec("flite", "rms", "rms", "flite", "US male (CMU ARCTIC rms), clustergen"),
    "slt": VoiceSpec("flite", "slt", "slt", "flite", "US female (CMU ARCTIC slt), clustergen"),
    "kal16": VoiceSpec("flite", "kal16", "kal", "flite", "US male, diphone"),
}

_SENTENCE_OK = re.compile(r"^[A-Z][A-Za-z ,;:'!?.\-]*[.!?]$")
_SENTENCE_END = re.compile(r"(?<=[.!?])(?<!\bMr\.)(?<!\bMrs\.)(?<!\bDr\.)(?<!\bSt\.)\s+(?=[A-Z])")
_ATTRIBUTION_OR_SPEAKER = re.compile(r"^\s*(--|[A-Z][\w .]*:\t)")  # "-- Author" lines, "Name:<TAB>" dialogue turns


def sentence_pool() -> list[str]:
    """Every distinct sentence of the fortunes files that passes the cleaning, in file order.

    Overstrikes are removed, words hyphenated across lines rejoined, quotes dropped and repeated ``!?.`` collapsed;
    a sentence is kept if it has 4–20 words, starts with a capital, ends with ``.``, ``!`` or ``?``, holds only ASCII
    letters, blanks and ``,;:'!?.-``, has no ``--`` or ellipsis, is at most 30 % capitals, and is not a duplicate
    (ignoring case and punctuation).

    Raises:
        CorpusBuildError: If a fortunes file is missing.
    """
    sentences, seen = [], set()
    for name in FORTUNES_FILES:
        path = FORTUNES_DIR / name
        if not path.is_file():
            raise CorpusBuildError(f"{path} is missing; install it with: sudo apt-get install -y fortunes-min")
        text = re.sub(r".\x08", "", path.read_text(encoding="ascii", errors="replace"))  # overstrikes
        for entry in re.split(r"^%\s*$", text, flags=re.M):
            body = "\n".join(ln.strip() for ln in entry.splitlines() if not _ATTRIBUTION_OR_SPEAKER.match(ln))
            body = re.sub(r"(?<=[a-z])-\n(?=[a-z])", "", body).replace('"', " ")
            body = re.sub(r"([!?.])[!?.]+", r"\1", body.replace("...", " ... "))
            for s in _SENTENCE_END.split(re.sub(r"\s+", " ", body).strip()):
                s = s.strip()
                letters = sum(c.isalpha() for c in s)
                if (not _SENTENCE_OK.match(s) or "--" in s or "..." in s or not 4 <= len(s.split()) <= 20
                        or sum(c.isupper() for c in s) > 0.3 * letters):
                    continue
                key = re.sub(r"[^a-z ]", "", s.lower())
                if key not in seen:
                    seen.add(key)
                    sentences.append(s)
    return sentences


def choose_sentences(num_sentences: int, seed: int) -> list[tuple[str, str]]:
    """``num_sentences`` ``(sentence_id, text)`` pairs chosen from ``sentence_pool()`` by ``seed``, sorted by id.

    Raises:
        ValueError: If the pool holds fewer than ``num_sentences`` sentences, or ``num_sentences < 1``.
    """
    pool = sentence_pool()
    if not 1 <= num_sentences <= len(pool):
        raise ValueError(f"num_sentences must be in [1, {len(pool)}] (the cleaned fortunes), got {num_sentences}")
    chosen = sorted(random.Random(seed).sample(range(len(pool)), num_sentences))
    return [(f"{i:04d}", pool[i]) for i in chosen]


def _normalize_voices(voices: list[str] | None) -> list[str]:
    if not voices:
        return list(VOICES)
    unknown = sorted(set(voices) - set(VOICES))
    if unknown:
        raise ValueError(f"unknown voices {unknown}; known voices: {', '.join(VOICES)}")
    return [v for v in VOICES if v in voices]  # canonical order, no duplicates


def check_dependencies(voices: list[str]) -> None:
    """Raises ``CorpusBuildError`` naming the missing Debian packages (and the ``apt-get`` command) needed to
    synthesize ``voices``: the festival/flite programs, the festival voices and the fortunes files."""
    missing: list[str] = []
    engines = {VOICES[v].engine for v in voices}
    for engine in sorted(engines):
        if shutil.which(engine) is None:
            missing.append(engine)
    if "festival" in engines and "festival" not in missing:
        result = subprocess.run(["festival", "--pipe"], input="(print (voice.list))\n", capture_output=True, text=True,
                                timeout=60)
        installed = set(re.findall(r"[\w-]+", result.stdout))
        missing += [VOICES[v].package for v in voices
                    if VOICES[v].engine == "festival" and VOICES[v].engine_voice not in installed]
    if "flite" in engines and "flite" not in missing:
        result = subprocess.run(["flite", "-lv"], capture_output=True, text=True, timeout=60)
        if any(VOICES[v].engine_voice not in result.stdout.split() for v in voices if VOICES[v].engine == "flite"):
            missing.append("flite")
    if any(not (FORTUNES_DIR / name).is_file() for name in FORTUNES_FILES):
        missing.append("fortunes-min")
    if missing:
        packages = " ".join(dict.fromkeys(missing))
        raise CorpusBuildError(f"the embedded speech corpus needs the Debian packages {packages}; install them with: "
                               f"sudo apt-get update && sudo apt-get install -y {packages}")


def _scheme_string(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _synth_festival(spec: VoiceSpec, texts: list[str], work: Path) -> list[tuple[Path, list[tuple[float, str]]]]:
    """Synthesizes ``texts`` with one festival process; returns ``(wav path, [(end_s, raw phone)])`` per text."""
    lines = [f"(voice_{spec.engine_voice})"]
    for k, text in enumerate(texts):
        lines += [f"(set! utt (utt.synth (Utterance Text {_scheme_string(text)})))",
                  f'(utt.save.wave utt "{k}.wav")', f'(utt.save.segs utt "{k}.segs")']
    (work / "script.scm").write_text("\n".join(lines) + "\n")
    result = subprocess.run(["festival", "-b", "script.scm"], cwd=work, capture_output=True, text=True)
    out = []
    for k, text in enumerate(texts):
        wav, segs = work / f"{k}.wav", work / f"{k}.segs"
        if result.returncode != 0 or not segs.is_file():
            raise CorpusBuildError(f"festival voice {spec.engine_voice} failed on {text!r} "
                                   f"(exit {result.returncode}): {result.stderr.strip()[-500:]}")
        body = segs.read_text().split("#", 1)[1]  # header, then "end_s 100 phone" lines
        out.append((wav, [(float(t), p) for t, _, p in (ln.split() for ln in body.splitlines() if ln.strip())]))
    return out


def _synth_flite(spec: VoiceSpec, texts: list[str], work: Path) -> list[tuple[Path, list[tuple[float, str]]]]:
    """Synthesizes ``texts`` with one flite process each; ``-psdur`` prints ``phone:end_s`` pairs."""
    out = []
    for k, text in enumerate(texts):
        wav = work / f"{k}.wav"
        result = subprocess.run(["flite", "-voice", spec.engine_voice, "-psdur", "-t", text, "-o", str(wav)],
                                capture_output=True, text=True)
        if result.returncode != 0 or not wav.is_file():
            raise CorpusBuildError(f"flite voice {spec.engine_voice} failed on {text!r} "
                                   f"(exit {result.returncode}): {result.stderr.strip()[-500:]}")
        pairs = [tok.rsplit(":", 1) for tok in result.stdout.split() if ":" in tok]
        out.append((wav, [(float(t), p) for p, t in pairs]))
    return out


def trim_silence(waveform: torch.Tensor, segments: list[tuple[float, float, str]], sample_rate: int,
                 margin: float = TRIM_MARGIN_SECONDS) -> tuple[torch.Tensor, list[tuple[float, float, str]]]:
    """Cuts an utterance to ``margin`` seconds of silence around its non-silent phones and shifts the phone times.

    Args:
        waveform: ``[T]``.
        segments: ``(start_s, end_s, raw symbol)`` sorted by time; silence is what ``fold_phone`` maps to ``"sil"``.
        sample_rate: Hz.
        margin: Seconds of silence kept at each end (less where the recording has less).

    Returns:
        The cut ``[T']`` waveform and the segments that overlap it, clipped to it, with times from its start.

    Raises:
        ValueError: If no segment is speech.
    """
    speech = [k for k, (_, _, p) in enumerate(segments) if fold_phone(p) != SILENCE]
    if not speech:
        raise ValueError("the utterance holds no speech segment")
    first = max(0, round((segments[speech[0]][0] - margin) * sample_rate))
    last = min(waveform.shape[0], round((segments[speech[-1]][1] + margin) * sample_rate))
    t0, t1 = first / sample_rate, last / sample_rate
    kept = [(max(s, t0) - t0, min(e, t1) - t0, p) for s, e, p in segments if min(e, t1) - max(s, t0) > 1e-6]
    return waveform[first:last].clone(), kept  # [T']


def _render(voice: str, items: list[tuple[str, str]], root: Path, sample_rate: int) -> None:
    """Synthesizes, resamples, trims and writes ``items`` (``(sentence_id, text)``) for one voice."""
    spec = VOICES[voice]
    synth = _synth_festival if spec.engine == "festival" else _synth_flite
    with tempfile.TemporaryDirectory(dir=root, prefix=".synth-") as work:
        results = synth(spec, [text for _, text in items], Path(work))
        for (sentence_id, text), (wav, ends) in zip(items, results):
            waveform = read_audio(wav, sample_rate, resample=True)  # [T]; slt_hts is 32 kHz
            starts = [0.0] + [t for t, _ in ends[:-1]]
            raw = [(s, e, p) for s, (e, p) in zip(starts, ends)]
            try:
                waveform, segments = trim_silence(waveform, raw, sample_rate)
            except ValueError as e:
                raise CorpusBuildError(f"voice {voice} on {text!r}: {e}") from e
            write_audio(root / voice / f"{sentence_id}.wav", waveform, sample_rate)
            rows = "".join(f"{s:.5f}\t{e:.5f}\t{fold_phone(p)}\t{p}\n" for s, e, p in segments)
            atomic_write_text(root / voice / f"{sentence_id}.phones", rows)


def _manifest_matches(root: Path, expected: dict) -> bool:
    """Whether ``root`` holds a finished build with the parameters of ``expected`` and all its files."""
    try:
        manifest = json.loads((root / "manifest.json").read_text())
    except (OSError, ValueError):
        return False
    keys = ("builder_version", "sample_rate", "seed", "num_sentences", "voices")
    if any(manifest.get(k) != expected[k] for k in keys):
        return False
    ids = [s["id"] for s in manifest.get("sentences", [])]
    return all((root / v / f"{i}{ext}").is_file()
               for v in manifest["voices"] for i in ids for ext in (".wav", ".phones"))


def build_corpus(root: str | Path, num_sentences: int, voices: list[str] | None = None, sample_rate: int = 16000,
                 seed: int = 0, progress: bool = True) -> Path:
    """Synthesizes the parallel corpus under ``root``, or returns at once if a finished build with these parameters
    is there (the cache).

    Synthesis runs ``WORKERS`` synthesizer processes at once over chunks of ``CHUNK_SENTENCES`` sentences; every
    output is resampled to ``sample_rate`` and silence-trimmed (see the module docstring).

    Args:
        root: Cache folder (created if missing).
        num_sentences: Distinct sentences; every voice reads all of them.
        voices: Short names from ``VOICES`` (``None`` or empty: all seven).
        sample_rate: Hz of the written wav files.
        seed: Chooses the sentences.
        progress: Show a progress bar while synthesizing (when stderr is a terminal).

    Returns:
        ``root`` as a ``Path``.

    Raises:
        CorpusBuildError: If Debian packages are missing (the message names them and the ``apt-get`` command) or a
            synthesizer fails.
        ValueError: For an unknown voice or a ``num_sentences`` outside [1, size of the sentence pool].
    """
    root = Path(root)
    voices = _normalize_voices(voices)
    expected = {"builder_version": BUILDER_VERSION, "sample_rate": sample_rate, "seed": seed,
                "num_sentences": num_sentences, "voices": voices}
    if _manifest_matches(root, expected):
        return root
    check_dependencies(voices)
    sentences = choose_sentences(num_sentences, seed)
    root.mkdir(parents=True, exist_ok=True)
    (root / "manifest.json").unlink(missing_ok=True)  # from here on, the folder is not a finished build
    for voice in voices:
        (root / voice).mkdir(exist_ok=True)
    chunks = [sentences[i : i + CHUNK_SENTENCES] for i in range(0, len(sentences), CHUNK_SENTENCES)]
    tasks = [(voice, chunk) for chunk in chunks for voice in voices]
    with ThreadPoolExecutor(max_workers=WORKERS) as pool:  # threads that each drive one synthesizer process
        futures = [pool.submit(_render, voice, chunk, root, sample_rate) for voice, chunk in tasks]
        try:
            for future in tqdm(futures, desc=f"synthesizing {len(sentences)} sentences x {len(voices)} voices",
                               unit="chunk", disable=None if progress else True):
                future.result()
        except BaseException:
            for future in futures:  # a failure (or Ctrl-C) stops the build after the running chunks
                future.cancel()
            raise
    atomic_write_text(root / "sentences.txt", "".join(f"{i}\t{text}\n" for i, text in sentences))
    manifest = {
        **expected,
        "trim_margin_seconds": TRIM_MARGIN_SECONDS,
        "sentence_source": "Debian fortunes-min: " + ", ".join(FORTUNES_FILES),
        "speakers": {v: asdict(VOICES[v]) for v in voices},
        "sentences": [{"id": i, "text": text} for i, text in sentences],
    }
    atomic_write_text(root / "manifest.json", json.dumps(manifest, indent=1) + "\n")
    return root
