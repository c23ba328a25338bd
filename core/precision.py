"""The precision a training stage runs in: ``train.precision`` (``fp32`` or ``bf16`` autocast), checked against
what the device runs at native speed.
"""

from __future__ import annotations

import torch


def native_bf16(device: torch.device) -> bool:
    """Whether bfloat16 autocast runs on ``device`` at native speed: always on CUDA; on a CPU when oneDNN has
    bfloat16 kernels for it (AVX-512 or AMX). Elsewhere PyTorch emulates it: on a 2-core AVX2-only CPU one training
    step of the audio default took 10.6 s in bf16 against 0.68 s in fp32."""
    if device.type != "cpu":
        return True
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):  # a build without oneDNN: trust the configured precision
        return True


def training_precision(requested: str, device: torch.device) -> str:
    """The precision a stage trains in: ``requested``, except ``"bf16"`` on a CPU without native bfloat16
    (:func:`native_bf16`), which trains in ``"fp32"`` after a one-line warning: bf16 is a speed option, and
    emulated it makes a run many times slower."""
    if requested == "bf16" and not native_bf16(device):
        print("warning: train.precision=bf16 asked for, but this CPU has no native bfloat16 (oneDNN: no AVX-512 "
              "or AMX); bf16 is emulated and many times slower here, so this stage trains in fp32")
        return "fp32"
    return requested
