"""The ``mel`` decoder of the speech VQ-VAE: the WaveNet block without causality, predicting log-mel frames.

A deviation from the paper (whose decoder is the autoregressive μ-law WaveNet, :class:`priors.wavenet.WaveNet`),
named by ``model.decoder: mel``: a WaveNet-style sampler needs 10⁵–10⁶ steps before its samples carry a clean voice,
far beyond a CPU budget, while a feed-forward spectrogram decoder learns the speaker's spectral envelope within
hundreds of steps. The waveform is rendered by Griffin-Lim (:func:`audio.mel.griffin_lim`).

Network: ``z_q`` (one frame per code) through a 1×1 convolution into R channels → L residual layers, layer ``i`` of a
cycle a *centred* (non-causal) convolution of odd kernel k and dilation ``2**i`` whose ``[a, b]`` output, plus the
layer's conditioning (a 1×1 projection of ``z_q`` and a projection of the speaker embedding), is gated
``tanh(a) · σ(b)`` → a 1×1 convolution into a residual part (added to the layer input) and a skip part → the sum of
the skips through ReLU → 1×1 → ReLU → 1×1 into M log-mel bands.

Axis legend: B batch, D code dim, N frames (one per code), R residual channels, S skip channels, M mel bands,
L layers.
"""

from __future__ import annotations

import torch
from torch import nn

from core.errors import out_of_range
from priors.gated_layer import gate


class MelDecoder(nn.Module):
    """Non-causal gated dilated convolutions from ``z_q [B, D, N]`` and speakers ``[B]`` to log-mel ``[B, M, N]``.

    Args:
        code_channels: D.
        num_mels: M.
        residual_channels: R.
        skip_channels: S (also the hidden width of the output head).
        dilation_layers: layers per cycle; dilations ``1, 2, …, 2**(dilation_layers - 1)``.
        dilation_cycles: repeats of the cycle.
        kernel_size: odd k ≥ 3 (centred taps).
        num_speakers: speaker ids ``[0, num_speakers)``.
        speaker_dim: size of the speaker embedding.

    Raises:
        ValueError: for non-positive sizes or an even kernel.
    """

    def __init__(self, code_channels: int, num_mels: int, residual_channels: int, skip_channels: int,
                 dilation_layers: int, dilation_cycles: int, kernel_size: int, num_speakers: int, speaker_dim: int):
        super().__init__()
        sizes = dict(code_channels=code_channels, num_mels=num_mels, residual_channels=residual_channels,
                     skip_channels=skip_channels, dilation_layers=dilation_layers, dilation_cycles=dilation_cycles,
                     num_speakers=num_speakers, speaker_dim=speaker_dim)
        for name, value in sizes.items():
            if value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value}")
        if kernel_size < 3 or kernel_size % 2 == 0:
            raise ValueError(f"the mel decoder needs an odd kernel_size >= 3 (centred taps), got {kernel_size}")
        self.num_mels, self.num_speakers, self.residual_channels = num_mels, num_speakers, residual_channels
        dilations = [2 ** i for _ in range(dilation_cycles) for i in range(dilation_layers)]
        self.num_layers = len(dilations)
        self.input = nn.Conv1d(code_channels, residual_channels, 1)
        self.convs = nn.ModuleList(nn.Conv1d(residual_channels, 2 * residual_channels, kernel_size, dilation=d,
                                             padding=(kernel_size - 1) // 2 * d) for d in dilations)
        self.outs = nn.ModuleList(nn.Conv1d(residual_channels, skip_channels + residual_channels, 1)
                                  for _ in dilations)
        cond_out = self.num_layers * 2 * residual_channels  # every layer's gate term in one map
        self.local_proj = nn.Conv1d(code_channels, cond_out, 1, bias=False)
        self.speaker_embedding = nn.Embedding(num_speakers, speaker_dim)
        self.speaker_proj = nn.Linear(speaker_dim, cond_out, bias=False)
        self.head = nn.Sequential(nn.ReLU(), nn.Conv1d(skip_channels, skip_channels, 1), nn.ReLU(),
                                  nn.Conv1d(skip_channels, num_mels, 1))
        self.receptive_field = sum((kernel_size - 1) * d for d in dilations) + 1  # frames, centred on the output

    def forward(self, z_q: torch.Tensor, speaker: torch.Tensor) -> torch.Tensor:
        """Log-mel ``[B, M, N]`` from latents ``z_q [B, D, N]`` (frame n of the output centred on code n) and
        speaker ids ``[B]``.

        Raises:
            ValueError: for a misshapen ``z_q`` or speaker ids out of range.
        """
        if z_q.dim() != 3 or z_q.shape[1] != self.input.in_channels or z_q.shape[2] < 1:
            raise ValueError(f"z_q must be [B, {self.input.in_channels}, N] with N >= 1, got {tuple(z_q.shape)}")
        if speaker.shape != (z_q.shape[0],) or speaker.dtype != torch.long:
            raise ValueError(f"speaker must be a long tensor [{z_q.shape[0]}], got {speaker.dtype} "
                             f"{tuple(speaker.shape)}")
        if out_of_range(speaker, self.num_speakers):
            raise ValueError(f"speaker ids must lie in [0, {self.num_speakers})")
        cond = self.local_proj(z_q) + self.speaker_proj(self.speaker_embedding(speaker))[:, :, None]  # [B, L·2R, N]
        h = self.input(z_q)  # [B, R, N]
        skips = 0
        # split, not slices: its backward is one concatenation, where each slice's backward fills a zero [B, L·2R, N]
        for conv, out, c in zip(self.convs, self.outs, cond.split(2 * self.residual_channels, dim=1)):
            g = out(gate(conv(h) + c))  # [B, R + S, N]
            h = h + g[:, :self.residual_channels]
            skips = skips + g[:, self.residual_channels:]
        return self.head(skips)  # [B, M, N]
