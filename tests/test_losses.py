import pytest
import torch
import torch.nn.functional as F

from alignray.divergences import DIVERGENCES, get_divergence
from alignray.losses import LOSS_TYPES, preference_loss

torch.manual_seed(0)
CHOSEN, REJECTED = torch.randn(16, dtype=torch.float64) * 3, torch.randn(16, dtype=torch.float64) * 3
KL = get_divergence("reverse_kl")


def test_sigmoid_with_reverse_kl_is_dpo():
    expected = -F.logsigmoid(0.1 * (CHOSEN - REJECTED))
    torch.testing.assert_close(preference_loss(CHOSEN, REJECTED, KL, beta=0.1), expected)


def test_hinge_is_the_rso_form():
    expected = torch.relu(1 - 0.5 * (CHOSEN - REJECTED))
    torch.testing.assert_close(preference_loss(CHOSEN, REJECTED, KL, beta=0.5, loss_type="hinge"), expected)


@pytest.mark.parametrize("name", DIVERGENCES)
def test_ipo_sees_no_margin_where_the_policy_equals_its_reference(name):
    """f′(1) is taken off before the per-token average: zero log-ratios give a zero margin at any lengths."""
    divergence = get_divergence(name)
    zeros, lengths_w, lengths_l = torch.zeros(16), torch.full((16,), 4.0), torch.arange(1.0, 17.0)
    got = preference_loss(zeros, zeros, divergence, 0.2, "ipo", chosen_lengths=lengths_w, rejected_lengths=lengths_l)
    torch.testing.assert_close(got, torch.full((16,), (1 / (2 * 0.2)) ** 2))


def test_ipo_averages_the_log_ratio_per_token_for_reverse_kl():
    lengths_w, lengths_l = torch.full((16,), 4.0), torch.full((16,), 2.0)
    got = preference_loss(CHOSEN, REJECTED, KL, 0.2, "ipo", chosen_lengths=lengths_w, rejected_lengths=lengths_l)
    torch.testing.assert_close(got, (CHOSEN / 4 - REJECTED / 2 - 1 / (2 * 0.2)) ** 2)
    unnormalised = preference_loss(CHOSEN, REJECTED, KL, 0.2, "ipo")
    torch.testing.assert_close(unnormalised, (CHOSEN - REJECTED - 2.5) ** 2)


@pytest.mark.parametrize("loss_type", LOSS_TYPES)
@pytest.mark.parametrize("name", DIVERGENCES)
def test_every_pair_gives_one_finite_loss_per_pair(name, loss_type):
    divergence = get_divergence(name)
    loss = preference_loss(CHOSEN.float(), REJECTED.float(), divergence, beta=0.1, loss_type=loss_type)
    assert loss.shape == (16,) and torch.isfinite(loss).all()


def test_a_loss_falls_as_the_margin_grows():
    margins = torch.linspace(-5, 5, 11)
    for loss_type in ("sigmoid", "hinge"):
        loss = preference_loss(margins, torch.zeros(11), KL, beta=1.0, loss_type=loss_type)
        assert (loss[1:] <= loss[:-1]).all() and loss[0] > loss[-1]


def test_bad_loss_type_and_beta_are_named():
    with pytest.raises(ValueError, match="loss_type='hinj' is unknown; did you mean 'hinge'"):
        preference_loss(CHOSEN, REJECTED, KL, loss_type="hinj")
    with pytest.raises(ValueError, match="beta=0 must be > 0"):
        preference_loss(CHOSEN, REJECTED, KL, beta=0)
