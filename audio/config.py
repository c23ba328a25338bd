"""Typed configuration of the audio experiment (loaded from ``experiments/configs/audio/*.yaml``)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

from core.config import Limits, QuantizerConfig, TrackingConfig, TrainConfig


@dataclass
class AudioDataConfig:
    """Where the speech comes from.

    ``source``: ``"embedded"`` (a parallel multi-speaker corpus synthesized on first use with Debian's festival and
    flite voices and cached under ``root``; works offline), ``"vctk"`` (``torchaudio.datasets.VCTK_092`` layout under
    ``root``) or ``"librispeech"`` (``torchaudio.datasets.LIBRISPEECH`` layout under ``root``).
    """

    source: str = "embedded"
    root: str = "data/audio"  # embedded: cache folder of the synthesized corpus; else the dataset's root
    sample_rate: int = 16000  # Hz; files at another rate are resampled (real datasets) or refused (embedded)
    num_sentences: int = 600  # embedded: distinct sentences, each read by every voice
    voices: list[str] = field(default_factory=list)  # embedded: voice names (empty: all seven)
    val_fraction: float = 0.1  # fraction of sentences held out (never heard in training)
    crop_seconds: float = 0.5  # training crops, seconds (rounded down to a multiple of the encoder's hop)
    subset: str = "train-clean-100"  # librispeech: which subset folder
    alignments: str = ""  # real datasets: folder of TIMIT .PHN files or Montreal-Forced-Aligner TextGrids
    max_utterances: int = 0  # real datasets: keep at most this many (0: all)
    seed: int = 0

    LIMITS: ClassVar[Limits] = {"sample_rate": (">=", 1), "num_sentences": (">=", 1),
                                "val_fraction": (">", 0, "<", 1), "crop_seconds": (">", 0),
                                "max_utterances": (">=", 0)}
    CHOICES: ClassVar[dict[str, tuple]] = {"source": ("embedded", "vctk", "librispeech")}


@dataclass
class AudioModelConfig:
    """The paper's speech model (sec. 4.3): 6 strided convolutions (stride 2, window 4) → 64× fewer steps, and a
    WaveNet decoder conditioned on the upsampled ``z_q`` (local) and on the speaker (global), predicting 256-way
    μ-law samples.

    ``decoder``: ``"wavenet"`` (the paper's autoregressive μ-law WaveNet) or ``"mel"`` (a deviation: the same gated
    residual block without causality, predicting log-mel frames rendered by Griffin-Lim; see
    :mod:`audio.mel_decoder`). Both read ``residual_channels``, ``skip_channels``, ``dilation_*``, ``kernel_size``
    (odd for ``mel``) and ``speaker_dim``.
    """

    decoder: str = "wavenet"
    encoder: str = "waveform"  # "waveform": the paper's strided convolutions; "mel": log-mel front end (deviation)
    encoder_channels: int = 256  # hidden channels of the encoder
    encoder_layers: int = 3  # encoder "mel": residual blocks (kernel 3) after the input convolution
    encoder_mel_fft: int = 400  # encoder "mel": STFT window of its log-mel input (25 ms at 16 kHz)
    num_downsamples: int = 6  # stride-2 window-4 convolutions; 2**6 = 64× downsampling
    mu_law_channels: int = 256  # μ-law quantization levels of the decoder's categorical output
    residual_channels: int = 64  # WaveNet
    skip_channels: int = 128
    dilation_layers: int = 10  # dilations 1, 2, …, 2**(dilation_layers-1) in each cycle
    dilation_cycles: int = 2
    kernel_size: int = 2
    speaker_dim: int = 64  # speaker embedding size (global conditioning)
    mel_bands: int = 80  # decoder "mel": log-mel bands predicted per code frame (frames ``hop`` samples apart)
    mel_fft: int = 768  # decoder "mel": STFT window (48 ms at 16 kHz) of the log-mel target and of Griffin-Lim
    griffin_lim_iters: int = 32  # decoder "mel": Griffin-Lim iterations when rendering waveforms
    envelope_loss: float = 0.0  # decoder "mel": weight of an extra L1 between the predicted and true spectral
    #                             envelopes (log-mel liftered to envelope_cepstra coefficients); 0: off (deviation)
    envelope_cepstra: int = 20
    postfilter: float = 1.0  # decoder "mel": cepstral post-filter coefficient applied to the predicted log-mel
    #                          frames before Griffin-Lim (audio.mel.cepstral_postfilter); 1.0: off (deviation)
    envelope_delta_loss: float = 0.0  # decoder "mel": weight of an L1 between the frame-to-frame differences of the
    #                                   predicted and true spectral envelopes (formant transitions); 0: off (deviation)
    instance_norm: bool = False  # normalise the encoder's hidden features per utterance and channel over time
    speaker_adversary: float = 0.0  # > 0: weight of a gradient-reversed per-frame speaker classifier on z_q

    LIMITS: ClassVar[Limits] = {"encoder_channels": (">=", 1), "encoder_layers": (">=", 0),
                                "encoder_mel_fft": (">=", 1), "num_downsamples": (">=", 1),
                                "envelope_loss": (">=", 0), "envelope_cepstra": (">=", 1),
                                "envelope_delta_loss": (">=", 0), "postfilter": (">", 0)}
    CHOICES: ClassVar[dict[str, tuple]] = {"decoder": ("wavenet", "mel"), "encoder": ("waveform", "mel")}


@dataclass
class AudioPriorConfig:
    """The second stage: a speaker-conditional causal dilated-convolution prior over the frozen VQ-VAE's codes."""

    vqvae_checkpoint: str = ""  # empty: this run's own VQ-VAE checkpoint
    crop_codes: int = 128  # training windows of this many codes
    residual_channels: int = 64
    skip_channels: int = 64
    dilation_layers: int = 6
    dilation_cycles: int = 2
    kernel_size: int = 2
    samples_per_speaker: int = 1  # utterances generated per speaker at the end (--stage sample)
    sample_seconds: float = 1.0
    temperature: float = 1.0

    LIMITS: ClassVar[Limits] = {"crop_codes": (">=", 1), "samples_per_speaker": (">=", 1),
                                "sample_seconds": (">", 0), "temperature": (">", 0)}
    train: TrainConfig = field(default_factory=lambda: TrainConfig(steps=1000, batch_size=32, lr=1e-3, eval_every=250,
                                                                   log_every=50, checkpoint_every=250))


@dataclass
class AudioEvalConfig:
    """What is measured after training: phoneme probes and speaker conversion."""

    probe_utterances: int = 0  # training utterances used to fit the probes (0: all)
    convert_utterances: int = 2  # held-out utterances per source speaker converted into every other speaker
    convert_max_seconds: float = 0.0  # 0: whole held-out sentences are converted; > 0: cut to this length
    reconstructions: int = 2  # held-out utterances reconstructed and logged as wav
    temperature: float = 1.0  # sampling temperature of the WaveNet decoder

    LIMITS: ClassVar[Limits] = {"probe_utterances": (">=", 0), "convert_utterances": (">=", 1),
                                "convert_max_seconds": (">=", 0), "reconstructions": (">=", 0),
                                "temperature": (">", 0)}


@dataclass
class AudioConfig:
    """The whole audio experiment."""

    data: AudioDataConfig = field(default_factory=AudioDataConfig)
    model: AudioModelConfig = field(default_factory=AudioModelConfig)
    quantizer: QuantizerConfig = field(default_factory=QuantizerConfig)
    train: TrainConfig = field(default_factory=lambda: TrainConfig(batch_size=8))
    prior: AudioPriorConfig = field(default_factory=AudioPriorConfig)
    eval: AudioEvalConfig = field(default_factory=AudioEvalConfig)
    tracking: TrackingConfig = field(default_factory=lambda: TrackingConfig(experiment_name="vqvae-audio"))
