"""The paper's speech VQ-VAE (sec. 4.3): a strided-convolution encoder (64× fewer steps), any core quantizer, and a
WaveNet decoder over 256-way μ-law samples conditioned on the latents (local) and the speaker (global); or, as a
named deviation (``model.decoder: mel``), a non-causal gated convolution decoder predicting log-mel frames rendered by
Griffin-Lim (:mod:`audio.mel_decoder`).

Local conditioning: ``z_q`` stays at the code rate and the decoder WaveNet holds each code's per-layer 1×1 projection
for its 64 samples (``WaveNet(local_hop=64)``), which is exactly nearest-neighbour upsampling of ``z_q`` to the sample
rate followed by the per-layer 1×1 convolution, at 1/64 of the cost (no learned upsampler).

Axis legend: B batch, L waveform samples, N codes (``L / hop``), D code dim (G·D with G codebooks), K codebook size.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
import torchaudio.functional as AF
from einops import rearrange
from torch import nn

from audio.adversary import SpeakerAdversary
from audio.encoders import AudioEncoder, MelEncoder
from audio.config import AudioModelConfig
from audio.mel import MelSettings, cepstral_postfilter, griffin_lim, log_mel, spectral_envelope
from audio.mel_decoder import MelDecoder
from core.config import QuantizerConfig
from core.quantize import QuantizerOutput, build_quantizer
from priors.wavenet import WaveNet


def mu_law_encode(waveform: torch.Tensor, channels: int) -> torch.Tensor:
    """Waveform in [-1, 1] (clamped) → μ-law levels ``[0, channels)`` long, same shape."""
    return AF.mu_law_encoding(waveform.clamp(-1.0, 1.0), channels)


def mu_law_decode(levels: torch.Tensor, channels: int) -> torch.Tensor:
    """μ-law levels ``[0, channels)`` → waveform in [-1, 1] float, same shape."""
    return AF.mu_law_decoding(levels, channels)


@dataclass
class AudioVQVAEOutput:
    """Output of :meth:`AudioVQVAE.forward`."""

    logits: torch.Tensor | None  # wavenet: [B, 256, L] logits of the μ-law sample at each position (teacher-forced)
    mel: torch.Tensor | None  # mel: [B, M, N] predicted log-mel frames
    loss: torch.Tensor  # [] training objective
    recon_loss: torch.Tensor  # [] wavenet: cross-entropy of the μ-law targets, nats per sample;
    #                            mel: mean absolute error of the log-mel frames, nats per band and frame
    quantizer: QuantizerOutput  # z_q [B, N, D], indices [B, N] ([B, N, G]), perplexity, loss terms
    adversary_loss: torch.Tensor | None = None  # [] speaker adversary's cross-entropy, nats per frame (when enabled)
    adversary_accuracy: torch.Tensor | None = None  # [] fraction of code frames whose speaker it names
    envelope_loss: torch.Tensor | None = None  # [] mel: L1 of the spectral envelopes, nats per band and frame
    envelope_delta_loss: torch.Tensor | None = None  # [] mel: L1 of the envelopes' frame-to-frame differences,
    #                                                   nats per band and frame pair


class AudioVQVAE(nn.Module):
    """Speech VQ-VAE with any core quantizer (``quantizer.kind``: vq, ema or sq) and a WaveNet or mel decoder.

    Objective: ``recon_loss + quantizer.loss`` for vq / ema (paper eq. 3 with the decoder's log-likelihood;
    with the mel decoder an L1 loss on log-mel frames takes the log-likelihood's place);
    for sq the quantizer's term is per latent vector, so it is scaled to the scale of ``recon_loss``: by
    ``N / L = 1 / hop`` for the WaveNet (whose loss is per sample; as the image model does per sub-pixel) and by
    ``1 / M`` for the mel decoder (whose L1 is a mean per band and frame, M bands per code frame).

    Args:
        model_cfg: encoder and WaveNet sizes.
        quantizer_cfg: which core quantizer and its settings.
        num_speakers: speaker ids ``[0, num_speakers)`` of the global conditioning.
        sample_rate: Hz of the waveforms (sets the log-mel analysis, :attr:`mel_settings`).

    Shapes:
        ``forward(waveform [B, L], speaker [B]) -> AudioVQVAEOutput``; ``encode(waveform) -> indices [B, N]``;
        ``decode(indices [B, N], speaker [B]) -> waveform [B, N·hop]``. L must be a multiple of ``hop``.
    """

    def __init__(self, model_cfg: AudioModelConfig, quantizer_cfg: QuantizerConfig, num_speakers: int,
                 sample_rate: int = 16000):
        super().__init__()
        if num_speakers < 1:
            raise ValueError(f"num_speakers must be positive, got {num_speakers}")
        self.model_cfg, self.quantizer_cfg, self.num_speakers = model_cfg, quantizer_cfg, num_speakers
        self.quantizer = build_quantizer(quantizer_cfg.kind, **quantizer_cfg.build_kwargs())
        code_channels = self.quantizer.input_dim  # G·D
        self.elementwise_variance = self.quantizer.takes_log_variance
        head = 2 * code_channels if self.elementwise_variance else code_channels
        if model_cfg.encoder == "waveform":
            self.encoder = AudioEncoder(model_cfg.encoder_channels, model_cfg.num_downsamples, head,
                                        model_cfg.instance_norm)
        elif model_cfg.encoder == "mel":
            self.encoder = MelEncoder(MelSettings(sample_rate, self.hop, model_cfg.encoder_mel_fft,
                                                  model_cfg.mel_bands), model_cfg.encoder_channels,
                                      model_cfg.encoder_layers, head, model_cfg.instance_norm)
        else:
            raise ValueError(f"unknown model.encoder {model_cfg.encoder!r}; known encoders: waveform, mel")
        # the log-mel analysis at the code hop: the mel decoder's target and rendering; for either decoder the
        # Griffin-Lim rendering the speaker scorer is made robust to
        self.mel_settings = MelSettings(sample_rate, self.hop, model_cfg.mel_fft, model_cfg.mel_bands,
                                        model_cfg.griffin_lim_iters)
        if model_cfg.decoder == "wavenet":
            self.decoder = WaveNet(model_cfg.mu_law_channels, model_cfg.residual_channels, model_cfg.skip_channels,
                                   model_cfg.dilation_layers, model_cfg.dilation_cycles, model_cfg.kernel_size,
                                   local_channels=code_channels, global_classes=num_speakers,
                                   global_dim=model_cfg.speaker_dim, local_hop=self.hop)
        elif model_cfg.decoder == "mel":
            self.decoder = MelDecoder(code_channels, model_cfg.mel_bands, model_cfg.residual_channels,
                                      model_cfg.skip_channels, model_cfg.dilation_layers, model_cfg.dilation_cycles,
                                      model_cfg.kernel_size, num_speakers, model_cfg.speaker_dim)
        else:
            raise ValueError(f"unknown model.decoder {model_cfg.decoder!r}; known decoders: wavenet, mel")
        if model_cfg.speaker_adversary < 0:
            raise ValueError(f"model.speaker_adversary must be >= 0 (0: off), got {model_cfg.speaker_adversary}")
        self.adversary = (SpeakerAdversary(code_channels, num_speakers, model_cfg.speaker_adversary)
                          if model_cfg.speaker_adversary > 0 else None)

    @property
    def autoregressive(self) -> bool:
        """True for the WaveNet decoder (generation sample by sample), False for the mel decoder."""
        return self.model_cfg.decoder == "wavenet"

    @property
    def hop(self) -> int:
        """Waveform samples per code: ``2**num_downsamples`` (64)."""
        return 2 ** self.model_cfg.num_downsamples

    @property
    def receptive_field(self) -> int:
        """Waveform samples the decoder's output at t sees: the WaveNet's past samples, or the mel decoder's centred
        window of code frames times ``hop``."""
        return self.decoder.receptive_field * (1 if self.autoregressive else self.hop)

    def _z_e(self, waveform: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """``z_e`` ``[B, N, G·D]`` and SQ's element-wise ``log_var`` (same shape) or None."""
        head = self.encoder(waveform)  # [B, N, G·D (×2)]
        if self.elementwise_variance:
            z_e, log_var = head.chunk(2, dim=-1)
            return z_e, log_var
        return head, None

    def _quantize(self, waveform: torch.Tensor) -> QuantizerOutput:
        z_e, log_var = self._z_e(waveform)
        return self.quantizer(z_e) if log_var is None else self.quantizer(z_e, log_var)

    def reconstruction(self, waveform: torch.Tensor, speaker: torch.Tensor) -> torch.Tensor:
        """Evaluation-mode log-mel frames ``[B, M, N]`` (nats) of ``waveform: [B, L]`` decoded as ``speaker: [B]``
        through the nearest codes (``forward(...).mel`` in eval mode; decoder ``mel`` only), as one graph that
        ``torch.export`` traces (the logged MLflow model, :mod:`core.export`); inputs are not validated.

        Raises:
            ValueError: for the autoregressive (WaveNet) decoder, whose output is sampled, not computed.
        """
        if self.autoregressive:
            raise ValueError("the WaveNet decoder's reconstruction is sampled sample by sample; it has no one-graph "
                             "reconstruction")
        return self.decoder(self.latents_to_local(self.quantizer.nearest_latents(*self._z_e(waveform))), speaker)

    def z_e(self, waveform: torch.Tensor) -> torch.Tensor:
        """Encoder outputs ``[B, N, G·D]`` before quantization (e.g. for linear probes)."""
        return self._z_e(waveform)[0]

    def forward(self, waveform: torch.Tensor, speaker: torch.Tensor) -> AudioVQVAEOutput:
        """Encode, quantize, decode teacher-forced and compute the objective (see the class docstring).

        Args:
            waveform: ``[B, L]`` float in [-1, 1] (clamped for the μ-law targets), L a multiple of ``hop``.
            speaker: ``[B]`` long speaker ids.

        Raises:
            ValueError: for a misshapen waveform or speaker ids out of range.
        """
        q = self._quantize(waveform)
        local = self.latents_to_local(q.z_q)  # [B, D, N]
        logits = mel = envelope = delta = None
        if self.autoregressive:
            targets = mu_law_encode(waveform, self.model_cfg.mu_law_channels)  # [B, L]
            logits = self.decoder(targets, local, speaker)  # [B, 256, L]
            recon = F.cross_entropy(logits, targets)  # nats per sample
        else:
            mel = self.decoder(local, speaker)  # [B, M, N]
            target = log_mel(waveform, self.mel_settings)  # [B, M, N]
            recon = (mel - target).abs().mean()  # nats per band and frame
            if self.model_cfg.envelope_loss > 0 or self.model_cfg.envelope_delta_loss > 0:
                error = spectral_envelope(mel - target, self.model_cfg.envelope_cepstra)  # the envelope is linear
                if self.model_cfg.envelope_loss > 0:
                    envelope = error.abs().mean()
                if self.model_cfg.envelope_delta_loss > 0 and error.shape[-1] > 1:
                    delta = error.diff(dim=-1).abs().mean()  # Δenvelope(predicted) − Δenvelope(true)
        latent_weight = 1.0
        if q.loss_per == "vector":  # per code frame → per sample (wavenet) or per band and frame (mel)
            latent_weight = 1.0 / (self.hop if self.autoregressive else self.model_cfg.mel_bands)
        loss = recon + q.loss * latent_weight
        if envelope is not None:
            loss = loss + self.model_cfg.envelope_loss * envelope
        if delta is not None:
            loss = loss + self.model_cfg.envelope_delta_loss * delta
        adv_loss = adv_acc = None
        if self.adversary is not None:
            adv_loss, adv_acc = self.adversary(q.z_q, speaker)
            loss = loss + adv_loss  # the adversary minimises it; the encoder gets its reversed gradient
        return AudioVQVAEOutput(logits=logits, mel=mel, loss=loss, recon_loss=recon, quantizer=q,
                                adversary_loss=adv_loss, adversary_accuracy=adv_acc, envelope_loss=envelope,
                                envelope_delta_loss=delta)

    @staticmethod
    def latents_to_local(z_q: torch.Tensor) -> torch.Tensor:
        """Quantized latents ``[B, N, D]`` → the decoder's local conditioning ``[B, D, N]`` (at the code rate; the
        WaveNet holds each frame for ``hop`` samples)."""
        return rearrange(z_q, "b n d -> b d n")

    def codes_to_local(self, indices: torch.Tensor) -> torch.Tensor:
        """Code indices ``[B, N]`` (``[B, N, G]``) → local conditioning ``[B, D, N]`` (codebook lookup).

        Raises:
            ValueError: for indices outside ``[0, K)``.
        """
        dtype = next(self.decoder.parameters()).dtype
        return self.latents_to_local(self.quantizer.lookup(indices).to(dtype))

    @torch.no_grad()
    def encode(self, waveform: torch.Tensor) -> torch.Tensor:
        """Code indices of ``waveform [B, L]`` → ``[B, L / hop]`` long (``[B, N, G]``); deterministic in eval mode."""
        return self._quantize(waveform).indices

    def decode_mu_law(self, indices: torch.Tensor, speaker: torch.Tensor, temperature: float = 1.0,
                      generator: torch.Generator | None = None, noise: torch.Tensor | None = None,
                      method: str = "incremental") -> torch.Tensor:
        """Generate μ-law samples ``[B, N·hop]`` long from codes ``[B, N]`` and speakers ``[B]`` with the WaveNet
        decoder (see :meth:`priors.wavenet.WaveNet.generate` for ``temperature``, ``generator``, ``noise`` and
        ``method``; ``noise`` is ``[B, N·hop, 256]``)."""
        if indices.dim() < 2:
            raise ValueError(f"indices must be [B, N] (or [B, N, G]), got {tuple(indices.shape)}")
        if not self.autoregressive:
            raise ValueError("decode_mu_law needs model.decoder=wavenet; this model's decoder is mel")
        with torch.no_grad():
            local = self.codes_to_local(indices)  # [B, D, N]
        return self.decoder.generate(indices.shape[1] * self.hop, local, speaker, temperature=temperature,
                                     generator=generator, noise=noise, method=method)

    def decode(self, indices: torch.Tensor, speaker: torch.Tensor, temperature: float = 1.0,
               generator: torch.Generator | None = None, noise: torch.Tensor | None = None,
               method: str = "incremental") -> torch.Tensor:
        """Waveform ``[B, N·hop]`` in [-1, 1] generated from codes ``[B, N]`` as speakers ``[B]``.

        Speaker conversion is ``decode(encode(x), other_speaker)``. Arguments as in :meth:`decode_mu_law`; the mel
        decoder is deterministic and ignores ``temperature``, ``generator``, ``noise`` and ``method`` (its log-mel
        frames, sharpened by :func:`audio.mel.cepstral_postfilter` with ``model.postfilter``, are rendered by
        Griffin-Lim, :func:`audio.mel.griffin_lim`).
        """
        if not self.autoregressive:
            return self.render(self.decode_mel(indices, speaker))
        return mu_law_decode(self.decode_mu_law(indices, speaker, temperature, generator, noise, method),
                             self.model_cfg.mu_law_channels)

    def render(self, mel: torch.Tensor) -> torch.Tensor:
        """Waveform ``[B, N·hop]`` in [-1, 1] of log-mel frames ``[B, M, N]`` (nats): sharpened by
        :func:`audio.mel.cepstral_postfilter` with ``model.postfilter``, then rendered by Griffin-Lim
        (:func:`audio.mel.griffin_lim`)."""
        return griffin_lim(cepstral_postfilter(mel, self.model_cfg.postfilter), self.mel_settings).clamp(-1.0, 1.0)

    @torch.no_grad()
    def decode_unquantized(self, waveform: torch.Tensor, speaker: torch.Tensor) -> torch.Tensor:
        """Log-mel frames ``[B, M, N]`` decoded as ``speaker: [B]`` from the encoder's unquantized ``z_e`` of
        ``waveform: [B, L]`` (SQ: its mean), bypassing the codebook: beside :meth:`decode_mel` of the same
        waveform's codes it measures what quantization costs the output.

        Raises:
            ValueError: for a WaveNet model or a misshapen waveform.
        """
        if self.autoregressive:
            raise ValueError("decode_unquantized needs model.decoder=mel; this model's decoder is wavenet")
        dtype = next(self.decoder.parameters()).dtype
        return self.decoder(self.latents_to_local(self._z_e(waveform)[0].to(dtype)), speaker)

    @torch.no_grad()
    def decode_mel(self, indices: torch.Tensor, speaker: torch.Tensor) -> torch.Tensor:
        """Log-mel frames ``[B, M, N]`` predicted by the mel decoder from codes ``[B, N]`` as speakers ``[B]``.

        Raises:
            ValueError: for a WaveNet model or misshapen inputs.
        """
        if self.autoregressive:
            raise ValueError("decode_mel needs model.decoder=mel; this model's decoder is wavenet")
        if indices.dim() < 2:
            raise ValueError(f"indices must be [B, N] (or [B, N, G]), got {tuple(indices.shape)}")
        return self.decoder(self.codes_to_local(indices), speaker)
