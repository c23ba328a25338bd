"""The paper's speech VQ-VAE (sec. 4.3): a strided-convolution encoder (64× fewer steps), any core quantizer, and a
WaveNet decoder over 256-way μ-law samples conditioned on the latents (local) and the speaker (global).

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

from audio.config import AudioModelConfig
from core.config import QuantizerConfig
from core.quantize import QuantizerOutput, build_quantizer
from priors.wavenet import WaveNet


def mu_law_encode(waveform: torch.Tensor, channels: int) -> torch.Tensor:
    """Waveform in [-1, 1] (clamped) → μ-law levels ``[0, channels)`` long, same shape."""
    return AF.mu_law_encoding(waveform.clamp(-1.0, 1.0), channels)


def mu_law_decode(levels: torch.Tensor, channels: int) -> torch.Tensor:
    """μ-law levels ``[0, channels)`` → waveform in [-1, 1] float, same shape."""
    return AF.mu_law_decoding(levels, channels)


class AudioEncoder(nn.Module):
    """``[B, L]`` waveform → ``z_e [B, L / 2**n, out_dim]``: n Conv1d(kernel 4, stride 2, padding 1) + ReLU, then a
    1×1 convolution into the code space (paper sec. 4.3: six strided convolutions, 64× downsampling).

    Args:
        channels: hidden channels of the strided convolutions.
        num_downsamples: n.
        out_dim: size of the code space (G·D, or 2·G·D when the quantizer also needs a log-variance).
    """

    def __init__(self, channels: int, num_downsamples: int, out_dim: int):
        super().__init__()
        if num_downsamples < 1:
            raise ValueError(f"num_downsamples must be >= 1, got {num_downsamples}")
        layers: list[nn.Module] = []
        for i in range(num_downsamples):
            layers += [nn.Conv1d(1 if i == 0 else channels, channels, 4, stride=2, padding=1), nn.ReLU()]
        layers.append(nn.Conv1d(channels, out_dim, 1))
        self.net = nn.Sequential(*layers)
        self.hop = 2 ** num_downsamples

    def forward(self, waveform: torch.Tensor) -> torch.Tensor:
        """Raises ValueError unless ``waveform`` is a float ``[B, L]`` with L a positive multiple of the hop."""
        if waveform.dim() != 2 or not waveform.is_floating_point() or waveform.shape[1] % self.hop \
                or waveform.shape[1] == 0:
            raise ValueError(f"waveform must be a float tensor [B, L] with L a positive multiple of {self.hop}, "
                             f"got {waveform.dtype} {tuple(waveform.shape)}")
        z = self.net(waveform.unsqueeze(1))  # [B, D, N]
        return rearrange(z, "b d n -> b n d")  # [B, N, D]


@dataclass
class AudioVQVAEOutput:
    """Output of :meth:`AudioVQVAE.forward`."""

    logits: torch.Tensor  # [B, 256, L] decoder logits of the μ-law sample at each position (teacher-forced)
    loss: torch.Tensor  # [] training objective
    recon_loss: torch.Tensor  # [] cross-entropy of the μ-law targets, nats per sample
    quantizer: QuantizerOutput  # z_q [B, N, D], indices [B, N] ([B, N, G]), perplexity, loss terms


class AudioVQVAE(nn.Module):
    """Speech VQ-VAE with any core quantizer (``quantizer.kind``: vq, ema or sq) and a WaveNet decoder.

    Objective: ``recon_loss + quantizer.loss`` for vq / ema (paper eq. 3 with the decoder's log-likelihood);
    for sq the quantizer's term is per latent vector, so it is scaled by ``N / L = 1 / hop`` to put the sum on the
    same per-sample scale as ``recon_loss`` (as the image model does per sub-pixel).

    Args:
        model_cfg: encoder and WaveNet sizes.
        quantizer_cfg: which core quantizer and its settings.
        num_speakers: speaker ids ``[0, num_speakers)`` of the global conditioning.

    Shapes:
        ``forward(waveform [B, L], speaker [B]) -> AudioVQVAEOutput``; ``encode(waveform) -> indices [B, N]``;
        ``decode(indices [B, N], speaker [B]) -> waveform [B, N·hop]``. L must be a multiple of ``hop``.
    """

    def __init__(self, model_cfg: AudioModelConfig, quantizer_cfg: QuantizerConfig, num_speakers: int):
        super().__init__()
        if num_speakers < 1:
            raise ValueError(f"num_speakers must be positive, got {num_speakers}")
        self.cfg, self.quantizer_cfg, self.num_speakers = model_cfg, quantizer_cfg, num_speakers
        self.quantizer = build_quantizer(quantizer_cfg.kind, **quantizer_cfg.build_kwargs())
        code_channels = self.quantizer.input_dim  # G·D
        self.elementwise_variance = quantizer_cfg.kind == "sq" and quantizer_cfg.variance == "elementwise"
        head = 2 * code_channels if self.elementwise_variance else code_channels
        self.encoder = AudioEncoder(model_cfg.encoder_channels, model_cfg.num_downsamples, head)
        self.decoder = WaveNet(model_cfg.mu_law_channels, model_cfg.residual_channels, model_cfg.skip_channels,
                               model_cfg.dilation_layers, model_cfg.dilation_cycles, model_cfg.kernel_size,
                               local_channels=code_channels, global_classes=num_speakers,
                               global_dim=model_cfg.speaker_dim, local_hop=self.hop)

    @property
    def hop(self) -> int:
        """Waveform samples per code: ``2**num_downsamples`` (64)."""
        return 2 ** self.cfg.num_downsamples

    @property
    def receptive_field(self) -> int:
        """Past samples the decoder's logits at t see (the WaveNet's receptive field, in samples)."""
        return self.decoder.receptive_field

    def _quantize(self, waveform: torch.Tensor) -> QuantizerOutput:
        head = self.encoder(waveform)  # [B, N, G·D (×2)]
        if self.elementwise_variance:
            z_e, log_var = head.chunk(2, dim=-1)
            return self.quantizer(z_e, log_var)
        return self.quantizer(head)

    def z_e(self, waveform: torch.Tensor) -> torch.Tensor:
        """Encoder outputs ``[B, N, G·D]`` before quantization (e.g. for linear probes)."""
        head = self.encoder(waveform)
        return head.chunk(2, dim=-1)[0] if self.elementwise_variance else head

    def forward(self, waveform: torch.Tensor, speaker: torch.Tensor) -> AudioVQVAEOutput:
        """Encode, quantize, decode teacher-forced and compute the objective (see the class docstring).

        Args:
            waveform: ``[B, L]`` float in [-1, 1] (clamped for the μ-law targets), L a multiple of ``hop``.
            speaker: ``[B]`` long speaker ids.

        Raises:
            ValueError: for a misshapen waveform or speaker ids out of range.
        """
        q = self._quantize(waveform)
        targets = mu_law_encode(waveform, self.cfg.mu_law_channels)  # [B, L]
        logits = self.decoder(targets, self.latents_to_local(q.z_q), speaker)  # [B, 256, L]
        recon = F.cross_entropy(logits, targets)  # nats per sample
        latent_weight = 1.0 / self.hop if self.quantizer_cfg.kind == "sq" else 1.0
        return AudioVQVAEOutput(logits=logits, loss=recon + q.loss * latent_weight, recon_loss=recon, quantizer=q)

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
        return self.latents_to_local(self.quantizer.lookup(indices).to(self.decoder.embedding.weight.dtype))

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
        with torch.no_grad():
            local = self.codes_to_local(indices)  # [B, D, N]
        return self.decoder.generate(indices.shape[1] * self.hop, local, speaker, temperature=temperature,
                                     generator=generator, noise=noise, method=method)

    def decode(self, indices: torch.Tensor, speaker: torch.Tensor, temperature: float = 1.0,
               generator: torch.Generator | None = None, noise: torch.Tensor | None = None,
               method: str = "incremental") -> torch.Tensor:
        """Waveform ``[B, N·hop]`` in [-1, 1] generated from codes ``[B, N]`` as speakers ``[B]``.

        Speaker conversion is ``decode(encode(x), other_speaker)``. Arguments as in :meth:`decode_mu_law`.
        """
        return mu_law_decode(self.decode_mu_law(indices, speaker, temperature, generator, noise, method),
                             self.cfg.mu_law_channels)
