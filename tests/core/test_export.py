"""The logged-model path: every quantizer's traceable nearest code equals its evaluation-mode forward, and every
domain's logged module exports with ``torch.export`` and computes what the model computes, at other sizes too."""

import pytest
import torch
from torch.export import Dim

from audio.config import AudioModelConfig
from audio.model import AudioVQVAE
from core.config import QuantizerConfig
from core.errors import out_of_range
from core.export import MethodModule, ModelExample, reconstruction_example
from core.quantize import build_quantizer
from image.config import ImageModelConfig
from image.hierarchy import build_image_vqvae
from priors.action_pixelcnn import ActionConditionalPixelCNN
from priors.pixelcnn import GatedPixelCNN
from priors.wavenet import WaveNet

pytestmark = pytest.mark.usefixtures("one_thread")

KINDS = [("vq", {}), ("ema", {}), ("sq", {}), ("sq", {"fused": True}), ("sq", {"variance": "elementwise"}),
         ("sq", {"variance": "elementwise", "fused": True})]


@pytest.mark.parametrize("groups", [1, 2])
@pytest.mark.parametrize("kind,extra", KINDS, ids=lambda v: str(v))
def test_nearest_latents_are_the_eval_forward_codes(kind, extra, groups):
    torch.manual_seed(0)
    q = build_quantizer(kind, codebook_size=64, code_dim=4, groups=groups,
                        **({"beta": 0.25} if kind != "sq" else {}), **extra).eval()
    z_e = 2.0 * torch.randn(3, 5, 7, 4 * groups)
    log_var = torch.randn_like(z_e) if extra.get("variance") == "elementwise" else None
    out = q(z_e) if log_var is None else q(z_e, log_var)
    got = q.nearest_latents(z_e, log_var)
    assert torch.equal(got, out.z_q)
    if kind != "sq":  # brute force: the code at the smallest L2 distance
        flat = z_e.reshape(-1, groups, 4)
        books = q.codebooks()
        idx = torch.stack([torch.cdist(flat[:, g], books[g]).argmin(1) for g in range(groups)], 1)
        assert torch.equal(idx.reshape(out.indices.shape), out.indices)


def _exported(example: ModelExample):
    example.module.eval()
    shapes = tuple({axis: Dim.AUTO for axis in axes} for axes in example.dynamic)
    return torch.export.export(example.module, tuple(example.inputs.values()), dynamic_shapes=shapes).module()


@pytest.mark.parametrize("levels,kind", [(1, "ema"), (1, "sq"), (2, "vq")])
def test_image_reconstruction_exports_and_equals_the_eval_forward_at_other_sizes(levels, kind):
    torch.manual_seed(0)
    model = build_image_vqvae(ImageModelConfig(hidden_channels=8, residual_channels=4, levels=levels),
                              QuantizerConfig(kind=kind, codebook_size=16, code_dim=4)).eval()
    example = reconstruction_example(model, {"x": torch.rand(2, 3, 32, 32)}, dynamic=((0, 2, 3),),
                                     output_dynamic=(0, 2, 3), output="reconstruction")
    exported = _exported(example)
    for shape in [(2, 3, 32, 32), (3, 3, 64, 48)]:
        x = torch.rand(shape)
        assert torch.equal(exported(x), model(x).x_hat)


def test_audio_mel_reconstruction_exports_with_a_speaker_and_refuses_the_wavenet_decoder():
    torch.manual_seed(0)
    kw = dict(encoder="mel", encoder_channels=8, encoder_layers=1, residual_channels=8, skip_channels=8,
              dilation_layers=2, kernel_size=3, speaker_dim=4, mel_bands=20, mel_fft=256)
    model = AudioVQVAE(AudioModelConfig(decoder="mel", **kw), QuantizerConfig(kind="ema", codebook_size=16,
                                                                              code_dim=8), 3).eval()
    model(0.1 * torch.randn(1, 1280), torch.tensor([0]))  # builds the cached mel filterbank outside the trace,
    # as training has by the time a stage logs its model
    example = reconstruction_example(model, {"waveform": 0.1 * torch.randn(2, 1280), "speaker": torch.tensor([0, 2])},
                                     dynamic=((0, 1), (0,)), output_dynamic=(0, 2), output="log-mel")
    exported = _exported(example)
    x, speaker = 0.1 * torch.randn(3, 1920), torch.tensor([1, 2, 0])
    assert torch.equal(exported(x, speaker), model(x, speaker).mel)
    wavenet = AudioVQVAE(AudioModelConfig(decoder="wavenet", **kw), QuantizerConfig(kind="vq", codebook_size=16,
                                                                                   code_dim=8), 3)
    with pytest.raises(ValueError, match="sampled"):
        wavenet.reconstruction(x, speaker)


def test_priors_logits_export_and_equal_their_forward():
    torch.manual_seed(0)
    pixelcnn = GatedPixelCNN(16, channels=8, num_layers=2, num_classes=3).eval()
    wavenet = WaveNet(16, 8, 8, 2, 1, 2, global_classes=3).eval()
    video = ActionConditionalPixelCNN(16, 4, 2, channels=8, num_layers=2, kernel_size=3, context_channels=8,
                                      context_blocks=1, code_embedding_dim=4, action_embedding_dim=4).eval()
    cases = [(pixelcnn, lambda m, c, y: m(c, y), {"codes": torch.randint(16, (2, 4, 4)), "label": torch.tensor([0, 2])}),
             (wavenet, lambda m, c, s: m(c, global_ids=s), {"codes": torch.randint(16, (2, 12)),
                                                            "speaker": torch.tensor([1, 2])}),
             (video, lambda m, t, c, a: m(t, c, a), {"codes": torch.randint(16, (2, 4, 4)),
                                                     "context": torch.randint(16, (2, 2, 4, 4)),
                                                     "actions": torch.tensor([0, 3])})]
    for model, call, inputs in cases:
        example = ModelExample(MethodModule(model, call), inputs, tuple((0,) for _ in inputs))
        exported = _exported(example)
        more = {k: torch.cat([v, v[:1]]) for k, v in inputs.items()}  # another batch size
        assert torch.equal(exported(*more.values()), call(model, *more.values()))


def test_range_checks_still_refuse_bad_codes_outside_export():
    assert out_of_range(torch.tensor([0, 16]), 16) and out_of_range(torch.tensor([-1]), 16)
    assert not out_of_range(torch.tensor([0, 15]), 16) and not out_of_range(torch.zeros(0, dtype=torch.long), 16)
    with pytest.raises(ValueError, match="lie in"):
        GatedPixelCNN(16, channels=8, num_layers=2)(torch.full((1, 4, 4), 16))
