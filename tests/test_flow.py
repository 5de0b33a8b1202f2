"""Flow matching: schedules, path and loss, samplers, checked against analytic answers."""

from __future__ import annotations

import math

import pytest
import torch

from tessera.flow.loss import add_noise, flow_loss
from tessera.flow.samplers import cfg, guided, holding, impose, sample_euler, sample_heun, sdedit_start
from tessera.flow.schedules import forcing_times, sample_t, shift_t, timesteps, token_shift, unshift_t

# Data x0 ~ N(M, S^2) elementwise, noise ~ N(0, 1).
M, S = 0.7, 0.5


def gaussian_velocity(x_t: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """The exact flow-matching velocity E[noise - x0 | x_t] for x0 ~ N(M, S^2), noise ~ N(0, 1).

    With a = 1 - t: x_t = a x0 + t noise is Gaussian with mean a M and variance a^2 S^2 + t^2, and
    Cov(noise - x0, x_t) = t - a S^2, so E[v | x_t] = -M + (t - a S^2) / (a^2 S^2 + t^2) (x_t - a M).
    Its ODE carries noise z at t = 1 to M + S z at t = 0 exactly (x_t = a M + sqrt(a^2 S^2 + t^2) z).
    """
    t = t[:, None, :, None, None].to(x_t.dtype)  # (B, 1, T_z, 1, 1)
    a = 1 - t
    return -M + (t - a * S**2) / (a**2 * S**2 + t**2) * (x_t - a * M)


def _noise(shape=(4, 2, 3, 8, 8), seed=0) -> torch.Tensor:
    return torch.randn(shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


# ---- schedules ----------------------------------------------------------------------------------------


def test_shift_t_fixes_ends_and_matches_flux_form():
    t = torch.linspace(0.01, 0.99, 50, dtype=torch.float64)
    assert shift_t(0.0, 3.0) == 0.0 and shift_t(1.0, 3.0) == 1.0
    torch.testing.assert_close(shift_t(t, 1.0), t)
    mu = 0.9
    torch.testing.assert_close(shift_t(t, math.exp(mu)), math.exp(mu) / (math.exp(mu) + 1 / t - 1))
    torch.testing.assert_close(unshift_t(shift_t(t, 3.0), 3.0), t)
    assert (shift_t(t, 3.0) > t).all()  # a shift above 1 moves time towards noise
    with pytest.raises(ValueError, match="shift"):
        shift_t(t, 0.0)


def test_token_shift_endpoints_and_extrapolation():
    assert token_shift(256) == pytest.approx(math.exp(0.5))
    assert token_shift(4096) == pytest.approx(math.exp(1.15))
    assert token_shift(2176) == pytest.approx(math.exp(0.825))  # midpoint
    assert token_shift(4096 + 3840) == pytest.approx(math.exp(1.8))  # linear beyond the range
    with pytest.raises(ValueError, match="num_tokens"):
        token_shift(0)


def test_sample_t_is_logit_normal_and_shifted():
    g = torch.Generator().manual_seed(0)
    t = sample_t((200_000,), generator=g)
    assert t.dtype == torch.float32 and ((t > 0) & (t < 1)).all()
    logit = torch.logit(t.double())
    assert abs(logit.mean().item()) < 0.01 and abs(logit.std().item() - 1) < 0.01
    probs = torch.tensor([0.1, 0.25, 0.5, 0.75, 0.9], dtype=torch.float64)
    expected = torch.sigmoid(torch.distributions.Normal(0.0, 1.0).icdf(probs))
    torch.testing.assert_close(torch.quantile(t.double(), probs), expected, atol=3e-3, rtol=0)

    s = 3.0
    t_s = sample_t((200_000,), shift=s, generator=g)
    assert torch.median(t_s).item() == pytest.approx(shift_t(0.5, s), abs=3e-3)  # = s / (s + 1)
    assert (unshift_t(t_s.double(), s).median() - 0.5).abs() < 3e-3


def test_timesteps_monotone_from_start_to_zero():
    for shift in (1.0, 3.0, token_shift(1024)):
        ts = timesteps(10, shift)
        assert ts.shape == (11,) and ts[0] == 1.0 and ts[-1] == 0.0
        assert (ts[1:] < ts[:-1]).all()
        torch.testing.assert_close(ts, shift_t(torch.linspace(1, 0, 11, dtype=torch.float64), shift))
    ts = timesteps(10, 3.0, start=0.6)
    assert ts[0] == 0.6 and ts[-1] == 0.0 and (ts[1:] < ts[:-1]).all()
    # A trimmed schedule spaces its steps like the full one over the same range (uniform in u).
    u = unshift_t(ts, 3.0)
    torch.testing.assert_close(u[:-1] - u[1:], torch.full((10,), u[0].item() / 10, dtype=torch.float64))
    with pytest.raises(ValueError, match="steps"):
        timesteps(0)
    with pytest.raises(ValueError, match="start"):
        timesteps(4, start=1.5)


# ---- path and loss ------------------------------------------------------------------------------------


def test_add_noise_per_frame_time():
    x0, noise = _noise(seed=1), _noise(seed=2)
    t = torch.tensor([[0.0, 1.0, 0.25]]).expand(4, 3)
    x_t = add_noise(x0, noise, t)
    torch.testing.assert_close(x_t[:, :, 0], x0[:, :, 0])
    torch.testing.assert_close(x_t[:, :, 1], noise[:, :, 1])
    torch.testing.assert_close(x_t[:, :, 2], 0.75 * x0[:, :, 2] + 0.25 * noise[:, :, 2])
    torch.testing.assert_close(add_noise(x0, noise, torch.full((4,), 0.3)), 0.7 * x0 + 0.3 * noise)
    with pytest.raises(ValueError, match="T_z"):
        add_noise(x0, noise, torch.zeros(4, 5))


def test_flow_loss_target_normalisation_and_mask():
    x0, noise = _noise(seed=1).float(), _noise(seed=2).float()
    v = noise - x0
    mask = torch.tensor([[1, 0, 1], [0, 0, 1], [1, 1, 1], [0, 1, 0]])
    assert flow_loss(v, x0, noise, mask).item() == 0.0

    # Error 1 everywhere in one loss frame and 0 elsewhere: the loss is 1 / (number of loss frames).
    v_pred = v.clone()
    v_pred[0, :, 0] += 1.0
    assert flow_loss(v_pred, x0, noise, mask).item() == pytest.approx(1 / mask.sum().item())
    assert flow_loss(v_pred, x0, noise).item() == pytest.approx(1 / 12)  # no mask: all frames

    # Changing the prediction at masked frames (even to NaN) changes neither the loss nor its gradient.
    v_pred = (v + 0.1 * torch.randn_like(v)).requires_grad_()
    loss = flow_loss(v_pred, x0, noise, mask)
    other = v_pred.detach().clone()
    other[mask[:, None, :, None, None].expand_as(other) == 0] = float("nan")
    assert flow_loss(other, x0, noise, mask).item() == loss.item()
    loss.backward()
    assert (v_pred.grad[:, :, 1][mask[:, 1] == 0] == 0).all()

    nothing = flow_loss(v_pred, x0, noise, torch.zeros(4, 3))
    assert nothing.item() == 0.0 and nothing.requires_grad
    with pytest.raises(ValueError, match="loss_mask"):
        flow_loss(v, x0, noise, torch.ones(4, 2))


# ---- samplers -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("sampler", [sample_euler, sample_heun])
def test_constant_velocity_is_exact(sampler):
    noise = _noise()
    c = _noise(seed=3)
    x0 = sampler(lambda x, t: c, noise, timesteps(7, 3.0))  # a non-uniform schedule
    torch.testing.assert_close(x0, noise - c, atol=1e-12, rtol=0)


@pytest.mark.parametrize("sampler", [sample_euler, sample_heun])
def test_a_time_per_frame_steps_each_frame_on_its_own_times(sampler):
    """Diffusion forcing's schedule (`forcing_times`: 3 blocks of 2, 2 and 1 frames, each 2 steps behind
    the one before): with a velocity that treats frames apart, every frame ends where sampling it alone on
    its own times would, bit for bit (Heun's last step stays Euler frame by frame); with ar_step 0 the
    schedule is the one-time schedule, bit for bit."""
    noise, ts = _noise((2, 2, 5, 4, 4)), timesteps(4, 3.0)
    matrix = forcing_times(ts, 5, 2, 2)
    assert matrix.shape == (4 + 2 * 2 + 1, 5)  # steps + (blocks - 1) * ar_step iterations
    assert all(len(set(r[::2].tolist())) == 3 for r in matrix[3:6])  # three blocks at three times
    x = sampler(gaussian_velocity, noise, matrix)
    for f in range(5):
        alone = sampler(gaussian_velocity, noise[:, :, f : f + 1], torch.unique_consecutive(matrix[:, f]))
        assert torch.equal(x[:, :, f : f + 1], alone), f
    same = sampler(gaussian_velocity, noise, forcing_times(ts, 5, 0, 2))
    assert torch.equal(same, sampler(gaussian_velocity, noise, ts))


def _error(sampler, steps: int, shift: float, noise: torch.Tensor) -> float:
    x0 = sampler(gaussian_velocity, noise, timesteps(steps, shift))
    return (x0 - (M + S * noise)).abs().max().item()


@pytest.mark.parametrize("shift", [1.0, 3.0])
def test_samplers_reach_the_gaussian_with_the_right_order(shift):
    noise = _noise((4, 4, 2, 16, 16))
    # With many steps Heun reaches the exact transport of each noise sample, so mean and std are right.
    x0 = sample_heun(gaussian_velocity, noise, timesteps(256, shift))
    torch.testing.assert_close(x0, M + S * noise, atol=1e-3, rtol=0)
    z = noise.flatten()
    assert x0.mean().item() == pytest.approx(M, abs=4 * S / math.sqrt(z.numel()))
    assert x0.std().item() == pytest.approx(S, rel=0.03)

    # The field bends most near t = 0, where a shift above 1 puts few steps: shift 3 needs more steps.
    euler_32, euler_64 = _error(sample_euler, 32, shift, noise), _error(sample_euler, 64, shift, noise)
    heun_32, heun_64 = _error(sample_heun, 32, shift, noise), _error(sample_heun, 64, shift, noise)
    assert heun_32 < euler_32 / 4 and heun_64 < euler_64 / 8
    assert 3.3 < heun_32 / heun_64 < 4.7  # second order: doubling the steps quarters the error
    assert 1.7 < euler_32 / euler_64 < 2.3  # first order: halves it


@pytest.mark.parametrize("sampler", [sample_euler, sample_heun])
def test_given_frames_come_back_exactly_and_are_fed_clean_at_t0(sampler):
    noise, x0_given = _noise(seed=4), _noise(seed=5)
    given = torch.tensor([[True, False, False], [False, False, True], [False] * 3, [True, True, False]])
    seen = []

    def model_fn(x, t):
        seen.append((x.clone(), t.clone()))
        return gaussian_velocity(x, t)

    x0 = impose(sampler(holding(model_fn, x0_given, given), noise, timesteps(6, 2.0)), x0_given, given)
    g5 = given[:, None, :, None, None].expand_as(x0)
    assert torch.equal(x0[g5], x0_given[g5])
    for x, t in seen:
        assert torch.equal(x[g5], x0_given[g5]) and (t[given] == 0).all() and (t[~given] > 0).all()
    # The analytic model is elementwise, so the other frames match an unconditioned run.
    free = sampler(gaussian_velocity, noise, timesteps(6, 2.0))
    torch.testing.assert_close(x0[~g5], free[~g5])


def test_sdedit_strength_zero_returns_source_and_one_ignores_it():
    x_src, noise = _noise(seed=6), _noise(seed=7)
    calls = []

    def model_fn(x, t):
        calls.append(t)
        return gaussian_velocity(x, t)

    out = sample_heun(model_fn, sdedit_start(x_src, noise, 0.0), timesteps(5, 3.0, start=0.0))
    assert torch.equal(out, x_src) and not calls
    out = sample_heun(gaussian_velocity, sdedit_start(x_src, noise, 1.0), timesteps(5, 3.0, start=1.0))
    torch.testing.assert_close(out, sample_heun(gaussian_velocity, noise, timesteps(5, 3.0)))
    start = sdedit_start(x_src, noise, 0.4)
    torch.testing.assert_close(start, 0.6 * x_src + 0.4 * noise)


def _old_sampler(name, model_fn, noise, ts, x0_given, given, given_noise=None):
    """The samplers as they were before given frames became a wrapper: the frames held inside the loop."""

    def velocity(x, t):
        t_frames = torch.full(x.shape[:1] + x.shape[2:3], t, dtype=torch.float64)
        if given_noise is not None:
            noised = add_noise(x0_given, given_noise, t_frames[:, 0])
            return model_fn(torch.where(given[:, None, :, None, None], noised, x), t_frames)
        t_frames = t_frames.masked_fill(given, 0.0)
        return model_fn(torch.where(given[:, None, :, None, None], x0_given, x), t_frames)

    x, ts = noise, ts.tolist()
    for t, t_next in zip(ts[:-1], ts[1:], strict=True):
        v = velocity(x, t)
        if name == "euler" or t_next == 0:
            x = x + (t_next - t) * v
        else:
            x = x + (t_next - t) * (v + velocity(x + (t_next - t) * v, t_next)) / 2
    return torch.where(given[:, None, :, None, None], x0_given, x)


@pytest.mark.parametrize("name, sampler", [("euler", sample_euler), ("heun", sample_heun)])
@pytest.mark.parametrize("at_noise", [False, True])
def test_holding_wrapper_gives_the_same_bits_as_frames_held_inside_the_sampler(name, sampler, at_noise):
    noise, x0_given, held_noise = _noise(seed=4), _noise(seed=5), _noise(seed=11) if at_noise else None
    given = torch.tensor([[True, False, False], [False, False, True], [False] * 3, [True, True, False]])
    fn = guided(lambda x, t: torch.cat([gaussian_velocity(x[:4], t[:4]), -x[4:]]), 3.0, (0.1, 0.9))
    ts = timesteps(5, 2.0)
    new = impose(sampler(holding(fn, x0_given, given, held_noise), noise, ts), x0_given, given)
    assert torch.equal(new, _old_sampler(name, fn, noise, ts, x0_given, given, held_noise))


def test_guided_runs_one_batch_and_mixes_branches():
    c_v, u_v = _noise(seed=8), _noise(seed=9)
    batch_sizes = []

    def batched(x, t):  # first half conditional, second half unconditional
        batch_sizes.append(x.shape[0])
        B = x.shape[0] // 2
        return torch.cat([c_v[:B] + 0 * x[:B], u_v[:B] + 0 * x[B:]])

    x, t = _noise(seed=10), torch.rand(4, 3, dtype=torch.float64)
    assert torch.equal(guided(batched, 1.0)(x, t), c_v)
    torch.testing.assert_close(guided(batched, 4.5)(x, t), u_v + 4.5 * (c_v - u_v))
    assert torch.equal(guided(batched, 4.5)(x, t), guided(batched, 4.5, rule=cfg)(x, t))  # cfg: the default
    assert batch_sizes == [8, 8, 8, 8]


def test_a_guidance_rule_passed_in_mixes_the_branches_it_is_given():
    c_v, u_v, x = _noise(seed=8), _noise(seed=9), _noise(seed=10)
    t = torch.rand(4, 3, dtype=torch.float64)
    seen = []

    def rule(v_c, v_u, x_in, t_in, g):  # e.g. guidance only along x, as a projection rule would
        seen.append((x_in, t_in, g))
        return v_c + (g - 1) * ((v_c - v_u) * x_in).sum() / (x_in * x_in).sum() * x_in

    fn = guided(lambda x2, t2: torch.cat([c_v, u_v]), 2.5, rule=rule)
    along = ((c_v - u_v) * x).sum() / (x * x).sum()
    torch.testing.assert_close(fn(x, t), c_v + 1.5 * along * x)
    assert seen[0][0] is x and seen[0][1] is t and seen[0][2] == 2.5
    assert torch.equal(guided(lambda x2, t2: torch.cat([c_v, u_v]), 1.0, rule=rule)(x, t), c_v)  # g = 1: off


def test_guidance_interval_guides_inside_and_runs_the_caption_alone_outside():
    c_v, u_v = _noise(seed=8), _noise(seed=9)
    batch_sizes = []

    def batched(x, t):  # 2B rows: conditional then unconditional; B rows: conditional only
        batch_sizes.append(x.shape[0])
        return torch.cat([c_v, u_v]) if x.shape[0] == 8 else c_v + 0 * x

    x = _noise(seed=10)
    fn = guided(batched, 4.5, interval=(0.2, 0.8))
    for t_gen, inside in ((0.9, False), (0.8, True), (0.5, True), (0.2, True), (0.1, False)):
        t = torch.full((4, 3), t_gen, dtype=torch.float64)
        t[:, 0] = 0.0  # a given frame: the generated frames' time decides
        want = u_v + 4.5 * (c_v - u_v) if inside else c_v
        torch.testing.assert_close(fn(x, t), want)
    assert batch_sizes == [4, 8, 8, 8, 4]  # outside the interval: half the batch, half the work


def test_sampler_rejects_bad_inputs():
    noise = _noise()
    with pytest.raises(ValueError, match="decrease"):
        sample_euler(gaussian_velocity, noise, torch.tensor([0.0, 0.5, 1.0]))
    with pytest.raises(ValueError, match="bool"):
        holding(gaussian_velocity, noise, torch.zeros(4, 3))
    with pytest.raises(ValueError, match=r"\(B, T_z\) = \(4, 3\)"):
        holding(gaussian_velocity, noise, torch.zeros(4, 2, dtype=torch.bool))
    with pytest.raises(ValueError, match="B, C, T_z, H, W"):
        sample_euler(gaussian_velocity, noise[0], timesteps(2))
    with pytest.raises(ValueError, match=r"T_z = 3\) times per latent frame"):
        sample_euler(gaussian_velocity, noise, forcing_times(timesteps(2), 4, 1))


def test_progress_bar_does_not_change_the_result(capsys):
    noise = _noise()
    ts = timesteps(3)
    quiet = sample_heun(gaussian_velocity, noise, ts)
    loud = sample_heun(gaussian_velocity, noise, ts, progress=True)
    assert torch.equal(quiet, loud) and "heun" in capsys.readouterr().err


@pytest.mark.parametrize("sampler", [sample_euler, sample_heun])
def test_progress_callback_reports_each_step_after_it_is_taken(sampler):
    noise, calls, reports = _noise(seed=8), [], []

    def model_fn(x, t):
        calls.append(len(reports))
        return gaussian_velocity(x, t)

    out = sampler(model_fn, noise, timesteps(4, 2.0), progress=lambda i, n: reports.append((i, n)))
    assert reports == [(1, 4), (2, 4), (3, 4), (4, 4)]
    assert calls[0] == 0 and calls[-1] == 3  # step k's model calls come before its report
    assert torch.equal(out, sampler(gaussian_velocity, noise, timesteps(4, 2.0)))
