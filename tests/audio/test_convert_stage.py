"""Which held-out sentences are converted, how readings of one sentence are matched, and how the renderings of a
sentence set are enumerated for scoring."""

import torch

from audio.convert_stage import conversion_sources, person_of, sentence_key
from audio.datasets import AudioSplits, Utterance
from audio.sentence_scores import SentenceSet, transcript_table


def _utt(speaker, sentence_id, text):
    return Utterance(torch.zeros(64), speaker, sentence_id, text)


def test_readings_are_matched_by_text_not_by_utterance_number():
    # VCTK: p1_030 and p2_030 are different sentences; p1_030 and p2_031 are the same one
    a, b, c = _utt("p1", "030", "Ask her to bring these things."), _utt("p2", "030", "It was a dark night."), \
        _utt("p2", "031", "ask her to bring these things")
    assert sentence_key(a) != sentence_key(b) and sentence_key(a) == sentence_key(c)
    assert sentence_key(_utt("p1", "007", "")) == "007"  # no text: the id


def test_conversion_sources_prefer_sentences_every_speaker_read():
    val = [_utt("p1", "030", "shared words"), _utt("p2", "099", "Shared words!"), _utt("p1", "010", "only p1"),
           _utt("p2", "005", "only p2")]
    chosen = conversion_sources(AudioSplits([], val, ["p1", "p2"]), 1)
    assert [(u.speaker, u.sentence_id) for u in chosen] == [("p1", "030"), ("p2", "099")]


def test_person_of_folds_voices_built_from_one_recorded_speaker():
    assert person_of("kal16") == person_of("kal") == "kal" and person_of("slt_hts") == "slt"
    assert person_of("p225") == "p225"


def test_sentence_set_enumerates_conversions_and_reconstructions():
    decoded = [torch.arange(3.0)[:, None].expand(3, 4), 10 + torch.arange(3.0)[:, None].expand(3, 4)]
    s = SentenceSet(["one", "two"], [1, 0], [torch.zeros(4)] * 2, [torch.zeros(4)] * 2, decoded)
    waves, targets, sources, texts = s.conversions()
    assert targets == [0, 2, 1, 2] and sources == [1, 1, 0, 0] and texts == ["one", "one", "two", "two"]
    assert [float(w[0]) for w in waves] == [0.0, 2.0, 11.0, 12.0]
    assert [float(w[0]) for w in s.reconstructions()] == [1.0, 10.0]


def test_transcript_table_names_the_sentence_and_rendering_of_every_transcript():
    decoded = [torch.zeros(3, 4), torch.zeros(3, 4)]
    s = SentenceSet(["one", "two"], [1, 0], [torch.zeros(4)] * 2, [torch.zeros(4)] * 2, decoded)
    s.transcripts = {"wer_real": ["r0", "r1"], "wer_unquantized": ["u0", "u1"], "wer": ["c0", "c1", "c2", "c3"]}
    rows = transcript_table(s, ["a", "b", "c"])
    assert [(r["sentence"], r["source"], r["rendering"], r["heard"]) for r in rows] == [
        ("0", "b", "real", "r0"), ("0", "b", "unquantized", "u0"), ("1", "a", "real", "r1"),
        ("1", "a", "unquantized", "u1"), ("0", "b", "a", "c0"), ("0", "b", "c", "c1"),
        ("1", "a", "b", "c2"), ("1", "a", "c", "c3")]
