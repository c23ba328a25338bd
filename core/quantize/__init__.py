"""Vector quantizers of VQ-VAE, its EMA variant and SQ-VAE, behind one contract (``z_e: [..., D]`` in,
a typed output dataclass out)."""

from core.quantize.base import CodebookQuantizer, NonFiniteInputError
from core.quantize.distance import nearest_code, squared_distances
from core.quantize.ema import EMAVectorQuantizer
from core.quantize.output import QuantizerOutput, SQOutput, VQOutput
from core.quantize.sq import GaussianSQVectorQuantizer, gumbel_temperature
from core.quantize.vq import VectorQuantizer

QUANTIZERS = {"vq": VectorQuantizer, "ema": EMAVectorQuantizer, "sq": GaussianSQVectorQuantizer}


def build_quantizer(kind: str, **kwargs) -> CodebookQuantizer:
    """Build a quantizer by its config name (``"vq"``, ``"ema"`` or ``"sq"``).

    Raises:
        ValueError: for an unknown kind (the message lists the known ones).
    """
    if kind not in QUANTIZERS:
        raise ValueError(f"unknown quantizer kind {kind!r}; known kinds: {sorted(QUANTIZERS)}")
    return QUANTIZERS[kind](**kwargs)


__all__ = ["CodebookQuantizer", "EMAVectorQuantizer", "GaussianSQVectorQuantizer", "NonFiniteInputError",
           "QUANTIZERS", "QuantizerOutput", "SQOutput", "VQOutput", "VectorQuantizer", "build_quantizer",
           "gumbel_temperature", "nearest_code", "squared_distances"]
