"""Encoders of the speech VQ-VAE: the paper's strided convolutions over the waveform, and a log-mel front end.

- :class:`AudioEncoder` (``model.encoder: waveform``, the paper's, sec. 4.3): six strided convolutions (stride 2,
  window 4) over the raw waveform, 64× fewer steps.
- :class:`MelEncoder` (``model.encoder: mel``, a deviation): the log-mel spectrogram at the code hop (its own
  analysis window, ``model.encoder_mel_fft``; 25 ms by default, short enough to leave the harmonics of the voice's
  pitch unresolved) through a few non-causal residual convolutions. It gives the codes the short-time spectral
  envelope — the formants that carry the phones — directly, instead of leaving a small waveform network to learn a
  filterbank within a CPU budget.

Both return ``z_e [B, N, out_dim]`` with ``N = L / hop`` and can normalise their last hidden features per utterance
and channel over time (``instance_norm``).

Axis legend: B batch, L waveform samples, N code frames, C hidden channels, M mel bands.
"""

from __future__ import annotations

import torch
from einops import rearrange
from torch import nn

from audio.mel import MelSettings, log_mel

MEL_OFFSET, MEL_SCALE = 5.0, 3.0  # (log-mel + 5) / 3 puts speech log-amplitudes (about −11.5 … 1) near [−2, 2]


def _check_waveform(waveform: torch.Tensor, hop: int) -> None:
    if waveform.dim() != 2 or not waveform.is_floating_point() or waveform.shape[1] % hop or waveform.shape[1] == 0:
        raise ValueError(f"waveform must be a float tensor [B, L] with L a positive multiple of {hop}, "
                         f"got {waveform.dtype} {tuple(waveform.shape)}")


class AudioEncoder(nn.Module):
    """``[B, L]`` waveform → ``z_e [B, L / 2**n, out_dim]``: n Conv1d(kernel 4, stride 2, padding 1) + ReLU, then a
    1×1 convolution into the code space (paper sec. 4.3: six strided convolutions, 64× downsampling).

    Args:
        channels: hidden channels of the strided convolutions.
        num_downsamples: n.
        out_dim: size of the code space (G·D, or 2·G·D when the quantizer also needs a log-variance).
        instance_norm: normalise the last hidden features per item and channel over time (zero mean, unit
            variance, no affine) before the 1×1 projection, removing each utterance's global feature statistics
            (a deviation from the paper, as in instance-normalised voice-conversion encoders).
    """

    def __init__(self, channels: int, num_downsamples: int, out_dim: int, instance_norm: bool = False):
        super().__init__()
        if num_downsamples < 1:
            raise ValueError(f"num_downsamples must be >= 1, got {num_downsamples}")
        layers: list[nn.Module] = []
        for i in range(num_downsamples):
            layers += [nn.Conv1d(1 if i == 0 else channels, channels, 4, stride=2, padding=1), nn.ReLU()]
        if instance_norm:
            layers.append(nn.InstanceNorm1d(channels))
        layers.append(nn.Conv1d(channels, out_dim, 1))
        self.net = nn.Sequential(*layers)
        self.hop = 2 ** num_downsamples

    def forward(self, waveform: torch.Tensor) -> torch.Tensor:
        """Raises ValueError unless ``waveform`` is a float ``[B, L]`` with L a positive multiple of the hop."""
        _check_waveform(waveform, self.hop)
        z = self.net(waveform.unsqueeze(1))  # [B, D, N]
        return rearrange(z, "b d n -> b n d")  # [B, N, D]


class MelEncoder(nn.Module):
    """``[B, L]`` waveform → log-mel ``[B, M, N]`` (frames ``hop`` apart) → ``z_e [B, N, out_dim]``.

    Network: ``(log-mel + 5) / 3`` → Conv1d(M, C, 3) → ``layers`` residual blocks ``h + Conv1d(C, C, 1)(ReLU(
    Conv1d(C, C, 3)(ReLU(h))))`` → ReLU → optional instance norm → Conv1d(C, out_dim, 1). Receptive field
    ``2·(layers + 1) + 1`` frames plus the analysis window.

    Args:
        mel: the encoder's log-mel analysis (``hop`` = the code hop).
        channels: C.
        layers: residual blocks.
        out_dim: size of the code space.
        instance_norm: as in :class:`AudioEncoder`.

    Raises:
        ValueError: for non-positive sizes.
    """

    def __init__(self, mel: MelSettings, channels: int, layers: int, out_dim: int, instance_norm: bool = False):
        super().__init__()
        if channels < 1 or layers < 0 or out_dim < 1:
            raise ValueError(f"MelEncoder needs channels >= 1, layers >= 0, out_dim >= 1; got {channels}, {layers}, "
                             f"{out_dim}")
        self.mel, self.hop = mel, mel.hop
        self.input = nn.Conv1d(mel.n_mels, channels, 3, padding=1)
        self.blocks = nn.ModuleList(nn.Sequential(nn.ReLU(), nn.Conv1d(channels, channels, 3, padding=1), nn.ReLU(),
                                                  nn.Conv1d(channels, channels, 1)) for _ in range(layers))
        self.norm = nn.InstanceNorm1d(channels) if instance_norm else nn.Identity()
        self.output = nn.Conv1d(channels, out_dim, 1)
        self.receptive_field = 2 * (layers + 1) + 1  # code frames

    def forward(self, waveform: torch.Tensor) -> torch.Tensor:
        """Raises ValueError unless ``waveform`` is a float ``[B, L]`` with L a positive multiple of the hop."""
        _check_waveform(waveform, self.hop)
        h = self.input((log_mel(waveform, self.mel) + MEL_OFFSET) / MEL_SCALE)  # [B, C, N]
        for block in self.blocks:
            h = h + block(h)
        z = self.output(self.norm(torch.relu(h)))  # [B, D, N]
        return rearrange(z, "b d n -> b n d")  # [B, N, D]
