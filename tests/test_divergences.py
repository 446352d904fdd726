import math

import numpy as np
import pytest
import torch

from alignray.divergences import DIVERGENCES, EXP_BOUND, Divergence, get_divergence, register

ALPHA = 0.3

# The table of ../shared/MISSION.md in float64 numpy, u = π/π_ref: name -> (f, f′).
TABLE = {
    "reverse_kl": (lambda u: u * np.log(u), lambda u: np.log(u) + 1),
    "forward_kl": (lambda u: -np.log(u), lambda u: -1 / u),
    "alpha_divergence": (
        lambda u: (u ** (1 - ALPHA) - (1 - ALPHA) * u - ALPHA) / (ALPHA * (ALPHA - 1)),
        lambda u: (1 - u**-ALPHA) / ALPHA,
    ),
    "js_divergence": (
        lambda u: u * np.log(u) - (u + 1) * np.log((u + 1) / 2),
        lambda u: np.log(2 * u / (1 + u)),
    ),
    "pearson_chi2": (lambda u: (u - 1) ** 2, lambda u: 2 * (u - 1)),
    "neyman_chi2": (lambda u: (1 - u) ** 2 / u, lambda u: 1 - 1 / u**2),
    "hellinger": (lambda u: (np.sqrt(u) - 1) ** 2, lambda u: 1 - 1 / np.sqrt(u)),
    "jeffrey": (lambda u: (u - 1) * np.log(u), lambda u: np.log(u) + 1 - 1 / u),
    "gan": (
        lambda u: u * np.log(u) - (u + 1) * np.log(u + 1) + 2 * np.log(2),
        lambda u: np.log(u) - np.log(u + 1),
    ),
    "total_variation": (lambda u: 0.5 * np.abs(u - 1), lambda u: 0.5 * np.sign(u - 1)),
}
TRAINABLE = [name for name in DIVERGENCES if name != "total_variation"]


def build(name: str, **params) -> Divergence:
    return get_divergence(name, alpha=ALPHA) if name == "alpha_divergence" else get_divergence(name, **params)


def test_the_ten_names_are_registered():
    assert set(DIVERGENCES) == set(TABLE)
    assert len(DIVERGENCES) == 10


@pytest.mark.parametrize("name", DIVERGENCES)
def test_f_prime_and_f_match_the_table_in_float64(name):
    x = np.linspace(-6.0, 6.0, 241)
    f, f_prime = TABLE[name]
    div = build(name)
    got = div.f_prime(torch.tensor(x, dtype=torch.float64)).numpy()
    np.testing.assert_allclose(got, f_prime(np.exp(x)), rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(div.f(torch.tensor(x, dtype=torch.float64)).numpy(), f(np.exp(x)), rtol=1e-9, atol=1e-9)
    assert div.f(torch.zeros(1, dtype=torch.float64)).item() == pytest.approx(0.0, abs=1e-12)


@pytest.mark.parametrize("name", DIVERGENCES)
def test_f_prime_is_the_derivative_of_f(name):
    x = torch.linspace(-3.0, 3.0, 60, dtype=torch.float64).requires_grad_()  # 60 points: x = 0 is not among them
    div = build(name)
    (df_dx,) = torch.autograd.grad(div.f(x).sum(), x)
    expected = div.f_prime(x.detach()).numpy()
    np.testing.assert_allclose((df_dx / x.exp()).detach().numpy(), expected, rtol=1e-8, atol=1e-8)


@pytest.mark.parametrize("name", DIVERGENCES)
def test_extreme_log_ratios_give_finite_values_and_gradients_in_float32(name):
    x = torch.linspace(-1000.0, 1000.0, 2001).requires_grad_()
    div = build(name)
    value = div.f_prime(x)
    (grad,) = torch.autograd.grad(value.sum(), x)
    assert torch.isfinite(value).all() and torch.isfinite(grad).all()
    assert torch.isfinite(div.f(x.detach())).all()
    if div.strictly_convex:
        assert (value[1:] >= value[:-1]).all(), "f′ must not decrease"


@pytest.mark.parametrize(
    ("name", "scale"),
    [("forward_kl", -1.0), ("alpha_divergence", -ALPHA), ("pearson_chi2", 1.0), ("neyman_chi2", -2.0),
     ("hellinger", -0.5), ("jeffrey", -1.0)],
)  # fmt: skip
def test_past_the_exp_bound_f_prime_keeps_the_slope_it_has_there(name, scale):
    div = build(name)
    edge = EXP_BOUND / scale  # the log-ratio where exp(scale · log u) reaches its bound
    far = torch.tensor([edge, edge * 50.0], requires_grad=True)
    (grad,) = torch.autograd.grad(div.f_prime(far).sum(), far)
    assert torch.isfinite(grad).all()
    assert grad[1] == pytest.approx(grad[0].item(), rel=1e-3)
    assert grad[1] > 1e6  # still a strong pull, not a zero gradient


@pytest.mark.parametrize("name", TRAINABLE)
def test_sigmoid_loss_pulls_the_right_way_at_extremes(name):
    from alignray.losses import preference_loss

    chosen = torch.tensor([-1000.0, -50.0, 0.0], requires_grad=True)
    rejected = torch.tensor([1000.0, 50.0, 0.0], requires_grad=True)
    loss = preference_loss(chosen, rejected, build(name), beta=0.1).sum()
    grad_chosen, grad_rejected = torch.autograd.grad(loss, [chosen, rejected])
    assert torch.isfinite(loss)
    assert torch.isfinite(grad_chosen).all() and torch.isfinite(grad_rejected).all()
    # Raising the chosen log-ratio or lowering the rejected one must lower the loss; where f′ saturates on one
    # side (Pearson as u → 0, JS as u → ∞) the other side carries the whole pull.
    assert (grad_chosen <= 0).all() and (grad_rejected >= 0).all()
    assert (grad_rejected - grad_chosen > 0).all()


def test_total_variation_is_refused_for_training_with_the_reason():
    tv = get_divergence("total_variation")
    assert not tv.strictly_convex
    with pytest.raises(ValueError, match="zero almost everywhere.*surrogate='tanh'"):
        tv.check_trainable()
    x = torch.linspace(-3, 3, 7, requires_grad=True)
    (grad,) = torch.autograd.grad(tv.f_prime(x).sum(), x)
    assert torch.count_nonzero(grad) == 0


def test_total_variation_tanh_surrogate_trains_and_tends_to_the_step():
    smooth = get_divergence("total_variation", surrogate="tanh", temperature=0.01)
    smooth.check_trainable()
    assert smooth.strictly_convex
    x = torch.tensor([-2.0, -0.5, 0.5, 2.0])
    torch.testing.assert_close(smooth.f_prime(x), 0.5 * torch.sign(x))
    with pytest.raises(ValueError, match="surrogate='cubic' is unknown"):
        get_divergence("total_variation", surrogate="cubic")


@pytest.mark.parametrize("loss_type", ["sigmoid", "hinge", "ipo"])
def test_gan_trains_exactly_like_js(loss_type):
    from alignray.losses import preference_loss

    torch.manual_seed(0)
    chosen, rejected = torch.randn(64) * 5, torch.randn(64) * 5
    js = preference_loss(chosen, rejected, get_divergence("js_divergence"), beta=0.5, loss_type=loss_type)
    gan = preference_loss(chosen, rejected, get_divergence("gan"), beta=0.5, loss_type=loss_type)
    torch.testing.assert_close(gan, js, rtol=1e-6, atol=1e-6)
    gap = get_divergence("js_divergence").f_prime(chosen) - get_divergence("gan").f_prime(chosen)
    torch.testing.assert_close(gap, torch.full_like(gap, math.log(2)))


def test_alpha_moves_from_reverse_kl_to_forward_kl():
    x = torch.linspace(-2, 2, 9, dtype=torch.float64)
    slope = lambda div: div.f_prime(x) - div.f_prime(torch.zeros_like(x))  # noqa: E731
    torch.testing.assert_close(slope(get_divergence("alpha_divergence", alpha=1e-6)), x, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(
        slope(get_divergence("alpha_divergence", alpha=1 - 1e-6)),
        slope(get_divergence("forward_kl")),
        rtol=1e-5,
        atol=1e-5,
    )
    assert get_divergence("alpha_divergence", alpha=0.3).trl_coef == pytest.approx(0.7)


@pytest.mark.parametrize("alpha", [0.0, 1.0, -0.2, 1.5, "0.3"])
def test_bad_alpha_is_named(alpha):
    with pytest.raises(ValueError, match=f"alpha={alpha!r} must lie in \\(0, 1\\)"):
        get_divergence("alpha_divergence", alpha=alpha)


def test_unknown_name_suggests_the_closest():
    with pytest.raises(ValueError, match="divergence='forward_k1' is unknown; did you mean 'forward_kl'\\? Known: "):
        get_divergence("forward_k1")


def test_parameters_a_divergence_does_not_take_are_refused():
    with pytest.raises(ValueError, match="divergence='reverse_kl' does not take \\['alpha'\\]"):
        get_divergence("reverse_kl", alpha=0.5)


def test_a_name_registers_once():
    class Again(Divergence):
        name = "reverse_kl"

    with pytest.raises(ValueError, match="'reverse_kl' is already registered"):
        register(Again)
