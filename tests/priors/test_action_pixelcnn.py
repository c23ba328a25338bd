"""Action-conditional prior: causality within the frame by gradients, use of the context and the action, cached ==
naive sampling, latent rollouts, errors."""

import pytest
import torch
import torch.nn.functional as F

from priors.action_pixelcnn import ActionConditionalPixelCNN

K, ACTIONS, CONTEXT = 8, 3, 2


pytestmark = pytest.mark.usefixtures("one_thread")


def _model(num_layers=4, kernel_size=5, seed=0, context_frames=CONTEXT):
    torch.manual_seed(seed)
    return ActionConditionalPixelCNN(K, ACTIONS, context_frames, channels=12, num_layers=num_layers,
                                     kernel_size=kernel_size, context_channels=8, context_blocks=2,
                                     code_embedding_dim=4, action_embedding_dim=5).double().eval()


def _codes(shape, seed=1):
    return torch.randint(0, K, shape, generator=torch.Generator().manual_seed(seed))


def _gradients(model, r, c, height=6, width=6):
    """Gradient magnitudes of ``logits[:, :, r, c].sum()`` w.r.t. the embedded current frame ``[H, W]`` and the
    embedded context ``[k, H, W]``."""
    emb = torch.randn(2, model.pixelcnn.channels, height, width, dtype=torch.double, requires_grad=True)
    ctx = torch.randn(2, model.context_frames, model.code_embedding.embedding_dim, height, width, dtype=torch.double,
                      requires_grad=True)
    model._forward_embedded(emb, ctx, torch.tensor([0, 2]))[:, :, r, c].sum().backward()
    return emb.grad.abs().sum(dim=(0, 1)), ctx.grad.abs().sum(dim=(0, 2))


@pytest.mark.parametrize("r, c", [(0, 0), (0, 4), (3, 0), (2, 3), (5, 5)])
def test_logits_see_exactly_the_earlier_codes_of_the_frame_and_the_context(r, c):
    current, context = _gradients(_model(), r, c)
    before = torch.arange(36).reshape(6, 6) < r * 6 + c  # raster order
    assert torch.all(current[~before] == 0), "logits see the current or a later code of the frame"
    assert torch.all(current[before] > 0), "an earlier code of the frame is invisible"
    assert torch.all(context.sum(dim=(1, 2)) > 0), "a context frame is ignored"
    assert context[:, r, c].min() > 0  # every context frame at the same position


def test_changing_later_codes_leaves_earlier_logits_unchanged():
    model = _model()
    codes, context, actions = _codes((2, 5, 5)), _codes((2, CONTEXT, 5, 5), seed=2), torch.tensor([1, 2])
    changed = codes.clone()
    changed[:, 2, 3:] = (changed[:, 2, 3:] + 1) % K
    changed[:, 3:] = (changed[:, 3:] + 1) % K
    a, b = model(codes, context, actions), model(changed, context, actions)
    flat_a, flat_b = a.flatten(2), b.flatten(2)
    assert torch.equal(flat_a[..., :2 * 5 + 4], flat_b[..., :2 * 5 + 4])  # up to and including (2, 3)
    assert not torch.equal(flat_a[..., 2 * 5 + 4:], flat_b[..., 2 * 5 + 4:])


def test_the_action_and_the_context_change_the_logits():
    model = _model()
    codes, context = _codes((3, 5, 5)), _codes((3, CONTEXT, 5, 5), seed=2)
    actions = torch.tensor([0, 1, 2])
    base = model(codes, context, actions)
    other_action = model(codes, context, (actions + 1) % ACTIONS)
    assert (base - other_action).abs().amax(dim=(1, 2, 3)).min() > 1e-6  # every element changes
    other_context = model(codes, (context + 1) % K, actions)
    assert (base - other_context).abs().amax(dim=(1, 2, 3)).min() > 1e-6


def test_cached_sampling_equals_naive_sampling():
    model = _model(num_layers=3)
    context, actions = _codes((3, CONTEXT, 5, 6), seed=4), torch.tensor([0, 1, 2])
    draws = {method: model.sample(context, actions, temperature=0.8, generator=torch.Generator().manual_seed(5),
                                  method=method) for method in ("naive", "cached")}
    assert draws["cached"].shape == (3, 5, 6) and draws["cached"].dtype == torch.long
    assert torch.equal(draws["naive"], draws["cached"])
    assert draws["cached"].unique().numel() > 2


def test_rollout_feeds_generated_frames_back_as_context():
    model = _model(num_layers=2, kernel_size=3)
    given, actions = _codes((2, 4, 4, 4), seed=6), torch.tensor([[0, 2, 1], [1, 1, 0]])
    rollout = model.generate(given, actions, generator=torch.Generator().manual_seed(7))
    assert rollout.shape == (2, 3, 4, 4) and rollout.dtype == torch.long
    # the same draws, step by step: each frame sampled from the last k frames (given, then generated)
    generator = torch.Generator().manual_seed(7)
    frames = list(given.unbind(1))
    for i in range(3):
        step = model.sample(torch.stack(frames[-CONTEXT:], 1), actions[:, i], generator=generator)
        assert torch.equal(step, rollout[:, i])
        frames.append(step)
    naive = model.generate(given, actions, generator=torch.Generator().manual_seed(7), method="naive")
    assert torch.equal(naive, rollout)


def test_loss_is_cross_entropy_and_a_few_steps_learn_an_action_dependent_frame():
    torch.manual_seed(0)
    model = ActionConditionalPixelCNN(K, ACTIONS, 1, channels=16, num_layers=2, kernel_size=3, context_channels=16,
                                      context_blocks=1, code_embedding_dim=4, action_embedding_dim=4)
    context = _codes((6, 1, 4, 4), seed=8)
    actions = torch.arange(6) % ACTIONS
    target = (context[:, 0] + actions[:, None, None]) % K  # the next frame depends on the context and the action
    torch.testing.assert_close(model.loss(target, context, actions),
                               F.cross_entropy(model(target, context, actions), target))
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    first = float(model.loss(target, context, actions).detach())
    for _ in range(150):
        loss = model.loss(target, context, actions)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    assert float(loss.detach()) < 0.1 * first


def test_invalid_inputs_raise_value_error():
    model = _model()
    codes, context, actions = _codes((2, 4, 4)), _codes((2, CONTEXT, 4, 4)), torch.tensor([0, 1])
    with pytest.raises(ValueError, match="context"):
        model(codes, context[:, :1], actions)  # too few context frames
    with pytest.raises(ValueError, match="grid"):
        model(codes, _codes((2, CONTEXT, 4, 5)), actions)
    with pytest.raises(ValueError, match="context codes"):
        model(codes, context + K, actions)
    with pytest.raises(ValueError, match="actions"):
        model(codes, context, torch.tensor([0, ACTIONS]))
    with pytest.raises(ValueError, match="actions"):
        model(codes, context, torch.tensor([0]))
    with pytest.raises(ValueError):
        model(codes + K, context, actions)
    with pytest.raises(ValueError, match="G ≥"):
        model.generate(context[:, :1], torch.zeros(2, 3, dtype=torch.long))
    with pytest.raises(ValueError, match="actions"):
        model.generate(context, torch.zeros(3, 3, dtype=torch.long))
    with pytest.raises(ValueError):
        ActionConditionalPixelCNN(K, 0, 2)
