"""The outside instruments (PocketSphinx ASR, Resemblyzer's GE2E speaker encoder) checked on inputs whose answer is
known before they score a model: real speech is read and identified, noise and shuffled speech are not."""

import numpy as np
import pytest
import torch

from audio.recogniser import SpeechRecogniser, normalise_text, word_errors
from audio.speaker_encoder import SpeakerEncoder, centroids, equal_error_rate, identify


def test_normalise_text_keeps_words_and_inner_apostrophes():
    assert normalise_text("Don't -- PANIC!  It's 42 o’clock.") == "don't panic it's 42 o'clock"
    assert normalise_text("...") == ""


def test_word_errors_count_substitutions_deletions_insertions_pooled():
    # "a b c" vs "a x c d": one substitution and one insertion; "d e" vs "": two deletions → 4 errors / 5 words
    errors = word_errors(["A b c.", "d e"], ["a x c d", ""])
    assert (errors.errors, errors.words) == (4, 5) and errors.rate == pytest.approx(0.8)
    assert word_errors(["the same words"], ["The same, words!"]).rate == 0.0
    with pytest.raises(ValueError, match="references but"):
        word_errors(["a"], [])
    with pytest.raises(ValueError, match="contain a word"):
        word_errors(["!"], ["a"])


def _by_voice(utterances, voices):
    return {v: [u for u in utterances if u.speaker == v] for v in voices}


def test_recogniser_reads_real_speech_and_not_noise_or_shuffled_speech(tiny_utterances):
    asr = SpeechRecogniser(16000)
    utts = [u for u in tiny_utterances if u.speaker in ("slt", "rms", "slt_hts")]
    texts = [u.text for u in utts]
    real = asr.word_errors([u.waveform for u in utts], texts)[0]
    assert real.words > 20 and real.rate < 0.35, real
    gen = torch.Generator().manual_seed(0)
    noise = [0.1 * torch.randn(u.waveform.shape, generator=gen) for u in utts]
    assert asr.word_errors(noise, texts)[0].rate > 0.8
    # 50 ms pieces in a random order: the sounds stay, the words go
    shuffled = []
    for u in utts:
        pieces = list(u.waveform.split(800))
        order = torch.randperm(len(pieces), generator=gen)
        shuffled.append(torch.cat([pieces[i] for i in order]))
    assert asr.word_errors(shuffled, texts)[0].rate > 0.7
    with pytest.raises(ValueError, match="mono"):
        asr.transcribe(torch.zeros(2, 100))


def test_speaker_encoder_identifies_held_out_sentences_of_real_voices(tiny_utterances):
    voices = ["awb", "kal", "rms", "slt"]  # four different recorded people
    by_voice = _by_voice(tiny_utterances, voices)
    enc = SpeakerEncoder(16000)
    enrol = [(u.waveform, i) for i, v in enumerate(voices) for u in by_voice[v][:2]]
    tests = [(u.waveform, i) for i, v in enumerate(voices) for u in by_voice[v][2:]]
    centre = centroids(enc.embed([w for w, _ in enrol]), [s for _, s in enrol], len(voices))
    emb = enc.embed([w for w, _ in tests])
    assert emb.shape == (len(tests), 256) and np.allclose(np.linalg.norm(emb, axis=1), 1, atol=1e-4)
    said, cos = identify(emb, centre)
    assert (said == np.asarray([s for _, s in tests])).all()
    assert cos.shape == (len(tests), len(voices))
    with pytest.raises(ValueError, match="no enrolment"):
        centroids(emb[:1], [0], 2)


def test_equal_error_rate_on_known_trials():
    assert equal_error_rate(np.array([0.9, 0.8, 0.7]), np.array([0.1, 0.2])) == 0.0
    assert equal_error_rate(np.array([0.1, 0.2]), np.array([0.9, 0.8])) == 1.0
    # one target below one non-target out of 4 + 4 trials: EER 0.25
    assert equal_error_rate(np.array([0.9, 0.8, 0.7, 0.3]), np.array([0.6, 0.2, 0.1, 0.0])) == pytest.approx(0.25)
    with pytest.raises(ValueError, match="trials"):
        equal_error_rate(np.array([]), np.array([0.1]))
