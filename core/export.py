"""Every training stage's final model as an MLflow model (``mlflow.pytorch``), saved as a ``torch.export`` program
(MLflow's "pt2" format: loading it never unpickles anything) with an input example, a tensor signature, the
stage's resolved config (model params), the weight hash of the VQ-VAE it belongs to (tag ``vqvae_hash``) and,
when ``tracking.register_model`` is set, a version in the model registry named ``<register_model>-<stage>``.

What a stage logs is a :class:`ModelExample`: a module whose ``forward`` is one traceable graph (the VQ-VAEs'
``reconstruction`` method: encode → nearest code → decode, the evaluation-mode forward without its checks; a
prior's forward: codes → logits), inputs to trace it with, and which axes may change size. Loading it back::

    import mlflow
    model = mlflow.pytorch.load_model("runs:/<run id>/model")  # a torch.nn.Module (torch.export's module())
    x_hat = model(x)  # image VQ-VAE: [B, 3, H, W] in [0, 1] → its reconstruction
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np
import torch

from core.checkpoint import state_hash


class MethodModule(torch.nn.Module):
    """``forward(x[, a[, b]])`` = ``call(model, x[, a[, b]])``: exports one computation of a model (a VQ-VAE's
    ``reconstruction``, a prior's logits under its conditioning) with the model's weights and buffers. The fixed
    arity (up to three tensors) is what ``torch.export`` needs; ``call`` is traced, not stored."""

    def __init__(self, model: torch.nn.Module, call: Callable[..., torch.Tensor]):
        super().__init__()
        self.model = model
        self.call = call

    def forward(self, x: torch.Tensor, a: torch.Tensor | None = None, b: torch.Tensor | None = None) -> torch.Tensor:
        return self.call(self.model, *(t for t in (x, a, b) if t is not None))


@dataclass(frozen=True)
class ModelExample:
    """A stage's model as logged: ``module(*inputs)`` is traced by ``torch.export``.

    Attributes:
        module: the traceable module (evaluation mode is set before tracing).
        inputs: example inputs by name, in ``forward``'s order (a few items; stored as the model's input example;
            the names are the signature's).
        dynamic: per input, the axes whose size may differ from the example's (batch, length, sides).
        output_dynamic: the output's axes that change with them.
        tags: extra tags of the logged model (e.g. what the output is).
    """

    module: torch.nn.Module
    inputs: dict[str, torch.Tensor]
    dynamic: tuple[tuple[int, ...], ...]
    output_dynamic: tuple[int, ...] = (0,)
    tags: dict[str, str] = field(default_factory=dict)

    def __post_init__(self):
        if len(self.dynamic) != len(self.inputs):
            raise ValueError(f"dynamic names axes of {len(self.dynamic)} inputs, but there are {len(self.inputs)}")


def reconstruction_example(model: torch.nn.Module, inputs: dict[str, torch.Tensor],
                           dynamic: tuple[tuple[int, ...], ...], output_dynamic: tuple[int, ...],
                           output: str) -> ModelExample:
    """A VQ-VAE logged as its ``reconstruction`` method (inputs → evaluation-mode reconstruction)."""
    return ModelExample(MethodModule(model, lambda m, *i: m.reconstruction(*i)), dict(inputs), dynamic,
                        output_dynamic, {"output": output, "vqvae_hash": state_hash(model)})


def model_tags(example: ModelExample, stage: str, extra: dict[str, Any]) -> dict[str, str]:
    """The logged model's tags: the stage, the VQ-VAE weight hash it belongs to and the example's own tags."""
    tags = {"stage": stage, **{k: str(v) for k, v in example.tags.items()}}
    if "derived.vqvae_hash" in extra:  # a later stage's model: the VQ-VAE it was fitted to
        tags["vqvae_hash"] = str(extra["derived.vqvae_hash"])
    return tags


def tensor_signature(module: torch.nn.Module, inputs: dict[str, torch.Tensor], dynamic: tuple[tuple[int, ...], ...],
                     output_dynamic: tuple[int, ...]) -> Any:
    """The MLflow ``ModelSignature`` of ``module(*inputs)`` (run once, in evaluation mode, without gradients): one
    named ``TensorSpec`` per input and one ``output``, with -1 on the ``dynamic`` axes."""
    from mlflow.models import ModelSignature
    from mlflow.types import Schema, TensorSpec

    module.eval()
    with torch.no_grad():
        output = module(*inputs.values())

    def spec(t: torch.Tensor, axes: tuple[int, ...], name: str) -> TensorSpec:
        return TensorSpec(np.dtype(str(t.dtype).removeprefix("torch.")),
                          tuple(-1 if i in axes else n for i, n in enumerate(t.shape)), name)

    return ModelSignature(Schema([spec(t, a, k) for (k, t), a in zip(inputs.items(), dynamic)]),
                          Schema([spec(output, output_dynamic, "output")]))
