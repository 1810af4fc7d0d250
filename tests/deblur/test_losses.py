"""LBAG losses: FFT term, SSIM term, shift-invariant minimum, gate loss, ablation switches."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from deblur import metrics
from deblur.losses import (
    FrequencyL1,
    GateLoss,
    LBAGLoss,
    LBAGLossConfig,
    SSIMLoss,
    WeightedL1,
    frequency_l1_loss,
    gate_loss,
    shift_image,
    shift_invariant_min,
    ssim_loss,
    weighted_l1_loss,
)


def _images(n=1, c=3, h=32, w=32, noise=0.1, seed=0):
    g = torch.Generator().manual_seed(seed)
    gt = torch.rand(n, c, h, w, generator=g)
    pred = (gt + noise * torch.randn(n, c, h, w, generator=g)).clamp(0, 1)
    return pred, gt


# ---------------------------------------------------------------------------------------- FFT


def test_fft_term_by_hand_constant_image():
    # rfft2 of a 4×4 image of ones: DC = 16, every other bin 0; 4×3 complex bins.
    pred = torch.ones(1, 1, 4, 4)
    target = torch.zeros(1, 1, 4, 4)
    # real/imag stacked: 24 real values, one of them 16.
    assert frequency_l1_loss(pred, target, mode="real_imag").item() == pytest.approx(16 / 24)
    # complex modulus (the default): 12 bins, one of them 16.
    assert frequency_l1_loss(pred, target).item() == pytest.approx(16 / 12)


def test_fft_term_against_numpy():
    pred, gt = _images(n=2, c=3, h=8, w=10)
    d = np.fft.rfft2(pred.double().numpy()) - np.fft.rfft2(gt.double().numpy())
    real_imag = (np.abs(d.real) + np.abs(d.imag)).reshape(2, -1).sum(1) / (2 * d[0].size)
    modulus = np.abs(d).reshape(2, -1).mean(1)
    got = frequency_l1_loss(pred, gt, reduction="none", mode="real_imag")
    np.testing.assert_allclose(got.numpy(), real_imag, rtol=1e-5)
    np.testing.assert_allclose(
        FrequencyL1(reduction="none", mode="modulus")(pred, gt).numpy(), modulus, rtol=1e-5
    )
    # The released trainer's F.l1_loss on complex tensors is the modulus form.
    ref = F.l1_loss(torch.fft.rfft2(pred), torch.fft.rfft2(gt))
    torch.testing.assert_close(frequency_l1_loss(pred, gt, mode="modulus"), ref)
    assert FrequencyL1()(pred, gt).item() == pytest.approx(modulus.mean(), rel=1e-5)


# --------------------------------------------------------------------------------------- SSIM


@pytest.mark.parametrize("channels", [1, 3])
def test_ssim_term_is_one_minus_the_metric(channels):
    pred, gt = _images(n=2, c=channels, h=32, w=40, noise=0.08, seed=channels)
    got = ssim_loss(pred, gt, reduction="none")
    for i in range(2):
        p = pred[i].permute(1, 2, 0).numpy()
        g = gt[i].permute(1, 2, 0).numpy()
        if channels == 1:
            p, g = p[..., 0], g[..., 0]
        assert got[i].item() == pytest.approx(1 - metrics.ssim(p, g), abs=2e-5)
    # The released code adds -SSIM: same gradient, offset by 1.
    neg = SSIMLoss(reduction="none", form="negative")(pred, gt)
    torch.testing.assert_close(neg, got - 1)


def test_ssim_separable_filter_matches_the_2d_window_convolution():
    """The SSIM term filters with two banded matrix products; the reference is the depthwise
    11×11 Gaussian convolution of the released code: same values and same gradients."""
    from deblur.losses import gaussian_window, ssim_per_sample

    pred, gt = _images(n=2, c=3, h=40, w=56, noise=0.1, seed=3)

    def reference(p, t):
        win = gaussian_window(11, 1.5).expand(3, 1, 11, 11)

        def blur(x):
            return F.conv2d(x, win, groups=3)

        mu1, mu2 = blur(p), blur(t)
        s1 = blur(p * p) - mu1**2
        s2 = blur(t * t) - mu2**2
        s12 = blur(p * t) - mu1 * mu2
        c1, c2 = 0.01**2, 0.03**2
        smap = ((2 * mu1 * mu2 + c1) * (2 * s12 + c2)) / ((mu1**2 + mu2**2 + c1) * (s1 + s2 + c2))
        return smap.mean(dim=(1, 2, 3))

    p1 = pred.clone().requires_grad_(True)
    p2 = pred.clone().requires_grad_(True)
    got, want = ssim_per_sample(p1, gt), reference(p2, gt)
    torch.testing.assert_close(got, want, atol=1e-6, rtol=1e-5)
    got.sum().backward()
    want.sum().backward()
    torch.testing.assert_close(p1.grad, p2.grad, atol=1e-6, rtol=1e-4)


def test_ssim_term_weighted_by_mask():
    pred, gt = _images(n=1, c=3, h=32, w=32, seed=7)
    ones = torch.ones(1, 1, 32, 32)
    torch.testing.assert_close(ssim_loss(pred, gt, ones), ssim_loss(pred, gt))
    mask = torch.zeros(1, 1, 32, 32)
    mask[..., 8:24, 8:20] = 1
    p = pred[0].permute(1, 2, 0).numpy()
    g = gt[0].permute(1, 2, 0).numpy()
    expected = 1 - metrics.ssim_weighted(p, g, mask[0, 0].numpy())
    assert ssim_loss(pred, gt, mask).item() == pytest.approx(expected, abs=2e-5)


def test_weighted_l1():
    pred, gt = _images(n=2, c=3, h=8, w=8)
    mask = torch.zeros(2, 1, 8, 8)
    mask[:, :, 2:5, 1:7] = 1
    region = (pred - gt).abs()[:, :, 2:5, 1:7]
    torch.testing.assert_close(
        WeightedL1(reduction="none")(pred, gt, mask), region.flatten(1).mean(1)
    )
    torch.testing.assert_close(weighted_l1_loss(pred, gt), F.l1_loss(pred, gt))


# ---------------------------------------------------------------------------- shift invariance


def test_shift_image_matches_released_negative_pad():
    x = torch.rand(2, 3, 6, 7)
    for dy in (-1, 0, 1):
        for dx in (-1, 0, 1):
            ref = F.pad(x, [dx, -dx, dy, -dy], mode="reflect")
            assert torch.equal(shift_image(x, dx, dy), ref)


def l1_per_sample(p, t, w=None):
    return weighted_l1_loss(p, t, w, reduction="none")


def test_one_pixel_shift_is_forgiven():
    _, gt = _images(n=1, c=3, h=16, w=16, seed=2)
    pred = shift_image(gt, 1, 0)  # the output is one pixel off the ground truth
    assert weighted_l1_loss(pred, gt).item() > 0.05
    assert shift_invariant_min(l1_per_sample, pred, gt).item() == pytest.approx(0.0, abs=1e-7)
    # a shift of 2 px is not (only {-1, 0, 1}² is searched)
    pred2 = shift_image(gt, 2, 0)
    assert shift_invariant_min(l1_per_sample, pred2, gt).item() > 0.01


def test_minimum_is_per_sample_not_over_the_batch():
    _, gt = _images(n=2, c=3, h=16, w=16, seed=3)
    pred = torch.stack([shift_image(gt[0], 1, 0), shift_image(gt[1], -1, 1)])
    per_sample = shift_invariant_min(l1_per_sample, pred, gt)
    assert per_sample.shape == (2,)
    torch.testing.assert_close(per_sample, torch.zeros(2), atol=1e-7, rtol=0)
    # one shift for the whole batch could not reach zero for both samples
    batch_min = min(
        l1_per_sample(pred, shift_image(gt, dx, dy)).mean().item()
        for dy in (-1, 0, 1)
        for dx in (-1, 0, 1)
    )
    assert batch_min > 0.05
    # every term of LBAGLoss is minimised per sample as well
    loss = LBAGLoss(LBAGLossConfig(lambda_fft=0, lambda_ssim=0, multiscale=False))
    total, terms = loss([pred], gt)
    assert total.item() == pytest.approx(0.0, abs=1e-7)


# --------------------------------------------------------------------------------------- gate


def test_gate_loss_resizes_mask_nearest():
    g = torch.Generator().manual_seed(4)
    mask = (torch.rand(2, 1, 16, 16, generator=g) > 0.5).float()
    gate = torch.rand(2, 1, 4, 4, generator=g).clamp_min(0.1)
    expected = ((gate - mask[..., ::4, ::4]) ** 2).mean()
    torch.testing.assert_close(gate_loss(gate, mask), expected)
    torch.testing.assert_close(GateLoss()(gate, mask), expected)
    # same as the released F.interpolate(mask, scale_factor=0.25, mode="nearest")
    ref = F.mse_loss(gate, F.interpolate(mask, scale_factor=0.25, mode="nearest"))
    torch.testing.assert_close(gate_loss(gate, mask), ref)


def _fake_lbag_batch(seed=5, size=64):
    g = torch.Generator().manual_seed(seed)
    gt = torch.rand(2, 3, size, size, generator=g)
    outs = []
    for k in (4, 2, 1):
        h = size // k
        outs.append(torch.rand(2, 3, h, h, generator=g).requires_grad_())
    gates = [torch.rand(2, 1, size // k, size // k, generator=g).clamp_min(0.1) for k in (4, 2, 1)]
    mask = (torch.rand(2, 1, size, size, generator=g) > 0.5).float()
    return outs, gates, gt, mask


def test_lbag_loss_terms_and_total():
    outs, gates, gt, mask = _fake_lbag_batch()
    total, terms = LBAGLoss()((outs, gates), gt, mask=mask)
    expected_keys = {f"{t}/s{i}" for t in ("l1", "fft", "ssim", "gate") for i in range(3)}
    assert set(terms) == expected_keys
    lam = {"l1": 1.0, "fft": 0.1, "ssim": 1.0, "gate": 0.1}
    recomposed = sum(lam[k.split("/")[0]] * v for k, v in terms.items())
    assert total.item() == pytest.approx(recomposed.item(), rel=1e-6)
    # ground truth resized by bilinear, as MIMO-UNet / the released trainer
    gt4 = F.interpolate(gt, scale_factor=0.25, mode="bilinear")
    l1_s0 = shift_invariant_min(l1_per_sample, outs[0], gt4).mean()
    assert terms["l1/s0"].item() == pytest.approx(l1_s0.item(), rel=1e-6)
    # gate terms against masks resized nearest
    for i, (k, gate) in enumerate(zip((4, 2, 1), gates, strict=True)):
        ref = F.mse_loss(gate, mask[..., ::k, ::k])
        assert terms[f"gate/s{i}"].item() == pytest.approx(ref.item(), rel=1e-6)
    total.backward()
    assert all(o.grad is not None and torch.isfinite(o.grad).all() for o in outs)


def test_ablation_switches_remove_terms():
    outs, gates, gt, mask = _fake_lbag_batch(seed=6)
    full_total, full = LBAGLoss()(outs, gt, gates=gates, mask=mask)

    total, terms = LBAGLoss(LBAGLossConfig(lambda_fft=0))(outs, gt, gates=gates, mask=mask)
    assert not any(k.startswith("fft/") for k in terms)
    fft = sum(0.1 * v for k, v in full.items() if k.startswith("fft/"))
    assert total.item() == pytest.approx((full_total - fft).item(), rel=1e-6)

    _, terms = LBAGLoss(LBAGLossConfig(lambda_ssim=0, lambda_gate=0))(
        outs, gt, gates=gates, mask=mask
    )
    assert {k.split("/")[0] for k in terms} == {"l1", "fft"}

    _, terms = LBAGLoss(LBAGLossConfig(multiscale=False, multiscale_gate=False))(
        outs, gt, gates=gates, mask=mask
    )
    assert set(terms) == {"l1/s2", "fft/s2", "ssim/s2", "gate/s2"}

    # no gates (MIMO-UNet+ / lbag_no_gate): no gate term, no mask needed
    _, terms = LBAGLoss()(outs, gt)
    assert not any(k.startswith("gate/") for k in terms)

    # shift invariance off: plain L1 against the unshifted ground truth (never smaller)
    _, plain = LBAGLoss(LBAGLossConfig(shift_invariant=False))(outs, gt)
    assert plain["l1/s2"].item() == pytest.approx(F.l1_loss(outs[2], gt).item(), rel=1e-6)
    assert plain["l1/s2"] >= full["l1/s2"]

    with pytest.raises(ValueError, match="mask"):
        LBAGLoss()(outs, gt, gates=gates)


def test_config_defaults_are_the_released_ones():
    cfg = LBAGLossConfig()
    assert (cfg.lambda_l1, cfg.lambda_fft, cfg.lambda_ssim, cfg.lambda_gate) == (1, 0.1, 1, 0.1)
    assert cfg.shift_invariant and tuple(cfg.shifts) == (-1, 0, 1)
