"""The audio job end to end on the tiny embedded corpus, and how the command line picks its stages."""

from pathlib import Path

import pytest
import torch

from audio.config import AudioConfig
from audio.experiment import STAGES, plan_stages
from core.stages import parse_stages
from audio.model import AudioVQVAE
from core.config import load_config
from audio.frozen import load_frozen_vqvae
from experiments import run
from tests.audio.conftest import TINY_SEED, TINY_SENTENCES

TINY = ["--config", str(Path(run.__file__).resolve().parent / "configs" / "audio" / "debug.yaml")]  # the tiny setting


CONFIGS = Path(run.__file__).resolve().parent / "configs"


@pytest.mark.parametrize("path", sorted(CONFIGS.glob("audio/*.yaml")), ids=lambda p: p.name)
def test_every_audio_config_loads_and_builds(path):
    cfg = load_config(AudioConfig, path, [])
    model = AudioVQVAE(cfg.model, cfg.quantizer, num_speakers=7)
    # the paper's K = 512 except in the tiny copy and the CPU default (2048, a named deviation)
    assert model.hop == 64
    assert model.quantizer.codebook_size == {"debug.yaml": 16, "default.yaml": 2048}.get(path.name, 512)
    assert model.autoregressive == (cfg.model.decoder == "wavenet")
    # the paper's decoder except in the default and its tiny copy
    assert (path.name in ("default.yaml", "debug.yaml")) == (cfg.model.decoder == "mel")


def _artifacts(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())


DECODERS = {"wavenet": ["model.decoder=wavenet", "model.kernel_size=2"],
            "mel": ["model.decoder=mel", "model.kernel_size=3", "model.mel_bands=20", "model.mel_fft=256",
                    "model.griffin_lim_iters=2", "model.instance_norm=true", "model.speaker_adversary=0.5",
                    "model.encoder=mel", "model.encoder_mel_fft=256", "eval.convert_max_seconds=0"]}


@pytest.mark.parametrize("decoder", sorted(DECODERS))
def test_speaker_convert_runs_end_to_end(decoder, tiny_corpus, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # the default MLflow store is ./mlflow.db
    args = ["audio", "--speaker-convert", f"data.root={tiny_corpus}", f"data.num_sentences={TINY_SENTENCES}",
            f"data.seed={TINY_SEED}", "data.val_fraction=0.25", f"train.output_dir={tmp_path / 'out'}", *TINY,
            *DECODERS[decoder]]
    metrics = run.main(args)
    ckpt = tmp_path / "out" / "vqvae" / "checkpoints" / "latest.pt"
    frozen = load_frozen_vqvae(ckpt, torch.device("cpu"))
    model, cfg, speakers = frozen.model, frozen.cfg, frozen.extras["speakers"]
    assert len(speakers) == 7 and cfg.train.steps == 3 and model.hop == 64 and cfg.model.decoder == decoder
    # a reading run's post-filter replaces the stored one: rendering only, the trained weights are the same
    sharpened = load_frozen_vqvae(ckpt, torch.device("cpu"), postfilter=1.3)
    assert sharpened.model.model_cfg.postfilter == sharpened.cfg.model.postfilter == 1.3 != cfg.model.postfilter
    assert sharpened.vqvae_hash == frozen.vqvae_hash
    for key in ("recon_loss", "perplexity", "phone_accuracy", "phone_majority_accuracy",
                "phone_linear_probe_accuracy", "convert/target_speaker_accuracy", "convert/mcd",
                "convert/mcd_unconverted", "convert/reconstruction_speaker_accuracy",
                "convert/ge2e_target_accuracy", "convert/ge2e_source_accuracy", "convert/ge2e_eer",
                "convert/ge2e_real_accuracy", "convert/ge2e_target_person_accuracy",
                "convert/scorer_clean_accuracy", "convert/scorer_noise_10db_accuracy", "convert/scorer_mu_law_accuracy",
                "convert/scorer_griffin_lim_accuracy", "convert/scorer_gain_agreement", "convert/chance_accuracy",
                "convert/source_speaker_accuracy", "convert/target_speaker_accuracy_awb",
                "nll_bits_per_code", "sample/utterances"):
        assert key in metrics, key
    assert ("bits_per_sample" in metrics) == (decoder == "wavenet")
    # word error rates need whole sentences: the mel run converts them whole, the wavenet run cuts them to 0.1 s
    wer = ("convert/wer", "convert/wer_reconstruction", "convert/wer_real", "convert/wer_griffin_lim",
           "convert/wer_unquantized")
    assert all((k in metrics) == (decoder == "mel") for k in wer)
    if decoder == "mel":
        assert metrics["convert/wer_real"] < 0.5 and metrics["convert/wer"] >= 0  # real speech is read
        assert metrics["convert/wer_words"] > 7 * 3
    assert 0.0 <= metrics["convert/target_speaker_accuracy"] <= 1.0
    assert metrics["convert/chance_accuracy"] == pytest.approx(1 / 7)
    assert metrics["convert/conversions"] == 7 * 6  # one clip per speaker into each of the six others
    assert metrics["convert/mcd"] > 0
    assert (tmp_path / "out" / "prior" / "checkpoints" / "latest.pt").is_file()
    assert (tmp_path / "out" / "probe" / "mapping.pt").is_file()
    files = _artifacts(tmp_path / "mlartifacts")
    assert any(f.endswith("reconstructions/step_0000003/spectrograms.png") for f in files)
    # per source speaker, its first clip into each of the six other voices: source, conversion, target's rendering
    assert sum(f.endswith(".wav") and "/conversions/" in f for f in files) == 7 * 6 * 3
    assert sum(f.endswith("spectrograms.png") and "/conversions/" in f for f in files) == 7 * 6
    assert any(f.endswith("transcripts.json") for f in files) == (decoder == "mel")
    assert sum(f.endswith(".wav") and "/samples/" in f for f in files) == 7
    assert (tmp_path / "mlflow.db").is_file()

    # the probe alone reuses the trained VQ-VAE and gives the same numbers as at the end of training
    again = run.main(["audio", "--probe", f"data.root={tiny_corpus}", f"data.num_sentences={TINY_SENTENCES}",
                      "data.val_fraction=0.25", f"train.output_dir={tmp_path / 'out'}", *TINY])
    assert again["phone_accuracy"] == pytest.approx(metrics["phone_accuracy"])


@pytest.mark.parametrize("stage, convert, probe, trained, expected", [
    ("all", False, False, False, ["vqvae", "prior", "sample"]),
    ("all", True, False, False, ["vqvae", "convert", "prior", "sample"]),
    ("all", True, False, True, ["convert"]),
    ("all", False, True, True, ["probe"]),
    ("all", False, True, False, ["vqvae"]),
    ("prior", False, False, True, ["prior"]),
    ("vqvae", True, False, True, ["vqvae", "convert"]),
    ("vqvae,prior", True, False, True, ["vqvae", "convert", "prior"]),
    ("prior,sample", False, False, True, ["prior", "sample"]),
])
def test_plan_stages(stage, convert, probe, trained, expected):
    assert plan_stages(parse_stages(stage, STAGES), convert, probe, trained) == expected


def test_unknown_stage_is_refused():
    with pytest.raises(ValueError, match="unknown stage 'decode'; known stages: all, vqvae"):
        parse_stages("decode", STAGES)
    with pytest.raises(ValueError, match="all cannot be combined"):
        parse_stages("all,prior", STAGES)


def test_code_windows_skip_short_utterances_and_keep_codes_whole():
    from audio.prior_stage import CodeWindows

    codes = [torch.arange(10), torch.arange(100, 103), torch.arange(200, 230)]
    windows = CodeWindows(codes, [0, 1, 2], length=5, num_items=200, seed=3)
    seen = set()
    for i in range(len(windows)):
        window, speaker = windows[i]
        assert window.dtype == torch.long and window.shape == (5,)
        assert torch.equal(window, torch.arange(int(window[0]), int(window[0]) + 5))  # consecutive, never padded
        seen.add(int(speaker))
    assert seen == {0, 2}  # the 3-code utterance is left out
    assert torch.equal(windows[17][0], CodeWindows(codes, [0, 1, 2], 5, 200, seed=3)[17][0])
    with pytest.raises(ValueError, match="lower prior.crop_codes"):
        CodeWindows(codes, [0, 1, 2], length=31, num_items=1, seed=0)
