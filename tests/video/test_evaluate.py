"""Generation metrics, shuffled actions, evaluation windows and the logged pictures."""

import numpy as np
import pytest
import torch
from skimage.metrics import structural_similarity

from video.data import Episode
from video.evaluate import build_windows, shuffle_actions
from video.protocol import MSE_FLOOR, best_of, curve, frame_scores, moving_steps, protocol_curves
from video.media import gif_frames, strip, write_gif


def _frames(n, f, size=8, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (n, f, size, size, 3), dtype=np.uint8)


def test_frame_scores_match_the_definitions():
    truth = _frames(3, 4)
    pred = truth.copy()
    pred[:, 1] = np.clip(pred[:, 1].astype(int) + 10, 0, 255)
    pred[:, 2] = _frames(3, 1, seed=1)[:, 0]
    out = {k: v.mean(0) for k, v in frame_scores(pred, truth).items()}
    assert out["psnr"].shape == out["ssim"].shape == (4,)
    assert out["psnr"][0] == pytest.approx(-10 * np.log10(MSE_FLOOR))  # identical frames: the 8-bit floor, 58.9 dB
    mse = ((pred[:, 1].astype(float) - truth[:, 1]) / 255) ** 2
    assert out["psnr"][1] == pytest.approx(np.mean(-10 * np.log10(mse.reshape(3, -1).mean(1))))
    assert out["ssim"][0] == pytest.approx(1.0)
    expected = np.mean([structural_similarity(truth[n, 2], pred[n, 2], channel_axis=-1, data_range=255)
                        for n in range(3)])
    assert out["ssim"][2] == pytest.approx(expected)
    assert out["psnr"][2] < out["psnr"][1] < out["psnr"][0]
    with pytest.raises(ValueError, match="shape mismatch"):
        frame_scores(pred[:, :2], truth)


def test_step_sets_come_from_consecutive_true_frames_and_one_try_averages_per_sample_scores():
    truth = np.zeros((3, 3, 4, 4, 3), np.uint8)
    last = np.zeros((3, 4, 4, 3), np.uint8)
    truth[1, 2] = 2  # window 1: the view changes by 2 levels into step 3
    last[2] = 1  # window 2: by 1 level from the last given frame into step 1, then stays
    assert moving_steps(last, truth, min_change=1.0).tolist() == [[False] * 3, [False, False, True], [False] * 3]
    assert moving_steps(last, truth, min_change=0.5).tolist() == [[False] * 3, [False, False, True],
                                                                 [True, False, False]]
    # window 2's steps 2 and 3 are still although they differ from the last given frame: consecutive frames decide
    moving = np.array([[False, True, True], [True, False, True]])
    scores = np.array([[1.0, 2.0, 3.0], [5.0, 6.0, 7.0]])
    assert curve(scores).tolist() == [3.0, 4.0, 5.0]
    assert curve(scores, moving).tolist() == [5.0, 2.0, 5.0]
    assert np.isnan(curve(scores, np.zeros_like(moving))).all()
    samples = np.array([[[1.0, 1.0, 1.0], [9.0, 0.0, 0.0]],   # sample 0: mean 1 / mean 3
                        [[0.0, 0.0, 4.0], [2.0, 2.0, 2.0]]])  # sample 1: mean 4/3 / mean 2
    assert best_of(samples).tolist() == [[0.0, 0.0, 4.0], [9.0, 0.0, 0.0]]  # chosen by the mean over steps
    out = protocol_curves("true_actions", {"psnr": samples}, moving)
    assert set(out) == {f"{w}psnr_true_actions{p}" for w in ("", "moving/", "still/")
                        for p in ("", "_oracle_best_of_2")}
    # one try: each sample scored on its own, the scores averaged over samples, then windows
    assert out["psnr_true_actions"].tolist() == pytest.approx([3.0, 0.75, 1.75])
    assert out["still/psnr_true_actions"].tolist() == pytest.approx([0.5, 1.0, np.nan], nan_ok=True)
    assert out["moving/psnr_true_actions_oracle_best_of_2"].tolist() == pytest.approx([9.0, 0.0, 2.0])
    assert set(protocol_curves("copy_last", {"psnr": samples[:1]}, moving)) == {
        "psnr_copy_last", "moving/psnr_copy_last", "still/psnr_copy_last"}


def test_shuffled_actions_are_a_seeded_permutation_across_windows_and_steps():
    actions = torch.arange(40).view(4, 10) % 3
    shuffled = shuffle_actions(actions, seed=0)
    assert shuffled.shape == actions.shape
    assert sorted(shuffled.flatten().tolist()) == sorted(actions.flatten().tolist())
    assert torch.equal(shuffled, shuffle_actions(actions, seed=0))
    assert (shuffled != actions).float().mean() > 0.3


def test_windows_give_real_context_the_next_actions_and_the_recorded_future():
    t = 20
    frames = (np.arange(t + 1)[:, None, None, None] + np.zeros((1, 4, 4, 3))).astype(np.uint8)  # value = index
    episode = Episode(frames, np.arange(t) % 3, np.zeros(t, np.float32), np.zeros(t, bool), np.zeros(t, bool), 0,
                      "x")
    codes = [torch.arange(t + 1)[:, None, None].expand(t + 1, 2, 2)]
    windows = build_windows([episode], codes, given=6, generated=10, stride=4, count=8)
    assert windows.starts == [0, 4] and windows.given_codes.shape == (2, 6, 2, 2)
    assert windows.given_codes[1, :, 0, 0].tolist() == [4, 5, 6, 7, 8, 9]
    assert windows.truth[1, :, 0, 0, 0].tolist() == list(range(10, 20))
    assert windows.actions[1].tolist() == (np.arange(9, 19) % 3).tolist()  # a_9 leads from frame 9 to frame 10
    with pytest.raises(ValueError, match="no held-out episode has 22 frames"):
        build_windows([episode], codes, given=6, generated=16, stride=4, count=8)


def test_strips_and_gifs_show_context_generated_and_truth(tmp_path):
    given, generated, truth = _frames(2, 6, seed=2), _frames(2, 10, seed=3), _frames(2, 10, seed=4)
    picture = strip(given, generated, truth)
    cell = 64 + 4  # 8-pixel frames are upscaled to 64 and get a 2-pixel border
    assert picture.shape == (2 * 3 * cell, 10 * cell, 3) and picture.dtype == np.uint8
    assert strip(given, generated, None).shape == (2 * 2 * cell, 10 * cell, 3)
    shuffled = _frames(2, 10, seed=5)
    assert strip(given, generated, truth, shuffled).shape == (2 * 4 * cell, 10 * cell, 3)
    assert gif_frames(given, generated, truth, shuffled)[-1].shape == (2 * cell, 3 * cell, 3)
    pictures = gif_frames(given, generated, truth)
    assert len(pictures) == 16 and pictures[0].shape == (2 * cell, 2 * cell, 3)
    path = write_gif(pictures, tmp_path / "gifs" / "x.gif")
    from PIL import Image

    with Image.open(path) as gif:
        assert gif.n_frames == 16


def test_residual_decoding_adds_the_decoded_change_to_the_last_given_frame():
    from core.config import QuantizerConfig
    from image.config import ImageModelConfig
    from image.model import ImageVQVAE
    from video.data import to_float, to_uint8
    from video.evaluate import decode_float, decode_residual, residual_offset

    torch.manual_seed(0)
    vqvae = ImageVQVAE(ImageModelConfig(hidden_channels=8, residual_channels=4, num_residual_blocks=1),
                       QuantizerConfig(kind="vq", codebook_size=16, code_dim=4)).eval()
    anchor_codes = torch.randint(0, 16, (3, 4, 4))  # [N, h, w]: 16×16 frames
    anchor_frames = _frames(3, 1, size=16)[:, 0]  # [N, H, W, 3] uint8
    codes = torch.stack([anchor_codes, torch.randint(0, 16, (3, 4, 4))], 1)  # step 1 repeats the anchor's codes
    frames = decode_residual(vqvae, codes, residual_offset(vqvae, anchor_codes, anchor_frames))
    assert frames.shape == (3, 2, 16, 16, 3) and frames.dtype == np.uint8
    assert np.array_equal(frames[:, 0], anchor_frames)  # unchanged codes give the real frame back exactly
    change = decode_float(vqvae, codes[:, 1:]) - decode_float(vqvae, anchor_codes[:, None])
    assert np.array_equal(frames[:, 1:], to_uint8(to_float(anchor_frames)[:, None] + change))
    assert not np.array_equal(frames[:, 1], anchor_frames)


def test_code_repeat_share_counts_codes_equal_to_the_previous_frame():
    from video.evaluate import code_repeat_curves, code_repeat_share

    anchor = torch.zeros(2, 2, 2, dtype=torch.long)  # [N, h, w]
    codes = torch.zeros(2, 3, 2, 2, dtype=torch.long)  # [N, F, h, w]
    codes[0, 1, 0, 0] = 5  # window 0: one of 4 codes changes at step 1, and changes back at step 2
    codes[1, 1:] = 7  # window 1: every code changes at step 1, then stays
    share = code_repeat_share(codes, anchor)
    np.testing.assert_allclose(share, [[1.0, 0.75, 0.75], [1.0, 0.0, 1.0]])
    moving = np.array([[False, True, True], [False, True, False]])
    c = code_repeat_curves("x", share[None], moving)
    np.testing.assert_allclose(c["code_repeat_x"], [1.0, 0.375, 0.875])
    np.testing.assert_allclose(c["moving/code_repeat_x"][1:], [0.375, 0.75])
    np.testing.assert_allclose(c["still/code_repeat_x"][[0, 2]], [1.0, 1.0])
    assert np.isnan(c["moving/code_repeat_x"][0]) and np.isnan(c["still/code_repeat_x"][1])
