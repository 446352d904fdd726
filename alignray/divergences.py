"""f-divergences for f-DPO, each f′ computed from the log-ratio log u = log π(y|x) − log π_ref(y|x).

Adding a divergence:
    1. subclass ``Divergence``, set ``name`` and write ``f_prime`` and ``f`` as functions of ``log_ratio``;
    2. decorate it with ``@register``; it is then in ``DIVERGENCES`` and ``get_divergence(name)`` builds it;
    3. add its row to the table test in ``tests/test_divergences.py``.

α is the f-DPO paper's α everywhere in alignray: f′(u) = (1 − u^(−α))/α, α → 0 is reverse KL and α → 1 forward KL.
TRL ≥ 0.29 calls 1 − α its ``f_alpha_divergence_coef``; ``AlphaDivergence.trl_coef`` converts.

Overflow: every u^k = exp(k·log u) goes through ``bounded_exp``, exact up to exp(``EXP_BOUND``) and continued past it
by its tangent line (value and slope match), so f′ grows linearly in log u there instead of exponentially: values
and gradients stay finite in float32 for |log u| ≤ 1000 and still point the way the exact f′ does.
"""

from __future__ import annotations

import math
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor

from alignray.registry import unknown_name

__all__ = [
    "DIVERGENCES",
    "EXP_BOUND",
    "AlphaDivergence",
    "Divergence",
    "bounded_exp",
    "get_divergence",
    "register",
]

EXP_BOUND = 20.0
"""exp is exact up to exp(20) ≈ 4.9e8, i.e. for u^k within [e^−20, e^20]; a sequence log-ratio beyond ±20/k is a
policy that has left its reference far behind, where a linear (reverse-KL-like) pull is strong enough."""

_REGISTRY: dict[str, type[Divergence]] = {}


def bounded_exp(x: Tensor, bound: float = EXP_BOUND) -> Tensor:
    """exp(x) for x ≤ bound, else exp(bound)·(1 + x − bound): C¹, finite, increasing, and finite in its gradient."""
    edge = math.exp(bound)
    return torch.where(x <= bound, torch.exp(x.clamp(max=bound)), edge * (1.0 + (x - bound)))


F_CLAMP = 25.0
"""``f`` is for reporting: it clamps log u to ±25 (u within [1e-11, 7e10]) so that even (u − 1)² stays finite."""


def _clamped(log_ratio: Tensor) -> Tensor:
    return log_ratio.clamp(-F_CLAMP, F_CLAMP)


def _xlogx_from_log(log_ratio: Tensor) -> Tensor:
    """u·log u from log u."""
    x = _clamped(log_ratio)
    return torch.exp(x) * x


class Divergence:
    """Contract of an f-divergence: f′ and f as functions of the log-ratio, elementwise, same shape and dtype.

    ``f_prime`` is what f-DPO trains with and may differ from the true f′ by a constant (constants cancel in
    f′(u_w) − f′(u_l)); ``f`` is for reporting D_f. Minimal example::

        @register
        class ReverseKL(Divergence):
            name = "reverse_kl"
            def f_prime(self, log_ratio): return log_ratio + 1        # f'(u) = log u + 1
            def f(self, log_ratio): return _xlogx_from_log(log_ratio) # f(u) = u log u
    """

    name: ClassVar[str]
    strictly_convex: ClassVar[bool] = True
    """f-DPO needs f′ invertible (f strictly convex); a divergence without it cannot be trained with."""

    def f_prime(self, log_ratio: Tensor) -> Tensor:
        """f′(u) from log u; shape (...) in, shape (...) out."""
        raise NotImplementedError

    def f(self, log_ratio: Tensor) -> Tensor:
        """f(u) from log u, with f(1) = 0; shape (...) in, shape (...) out."""
        raise NotImplementedError

    @property
    def params(self) -> dict[str, float | str]:
        """The parameters the divergence was built with (empty for most)."""
        return {}

    def check_trainable(self) -> None:
        """Raise ValueError saying why, when f-DPO cannot train with this divergence."""
        if not self.strictly_convex:
            raise ValueError(f"divergence={self.name!r} cannot be trained with: f is not strictly convex")

    def __repr__(self) -> str:
        params = ", ".join(f"{k}={v!r}" for k, v in self.params.items())
        return f"get_divergence({self.name!r}{', ' if params else ''}{params})"


def register(cls: type[Divergence]) -> type[Divergence]:
    """Register a Divergence subclass under its ``name``; a name may be registered once."""
    if cls.name in _REGISTRY:
        raise ValueError(f"divergence {cls.name!r} is already registered (by {_REGISTRY[cls.name].__name__})")
    _REGISTRY[cls.name] = cls
    return cls


def get_divergence(name: str, **params) -> Divergence:
    """Build a registered divergence; an unknown name or a bad parameter raises ValueError naming it."""
    if name not in _REGISTRY:
        raise unknown_name("divergence", name, _REGISTRY)
    try:
        return _REGISTRY[name](**params)
    except TypeError as err:
        raise ValueError(f"divergence={name!r} does not take {sorted(params)}: {err}") from None


@register
class ReverseKL(Divergence):
    """Reverse KL, standard DPO: f(u) = u log u."""

    name = "reverse_kl"

    def f_prime(self, log_ratio: Tensor) -> Tensor:
        return log_ratio + 1.0  # log u + 1

    def f(self, log_ratio: Tensor) -> Tensor:
        return _xlogx_from_log(log_ratio)


@register
class ForwardKL(Divergence):
    """Forward KL: f(u) = −log u; mass-covering, keeps diversity."""

    name = "forward_kl"

    def f_prime(self, log_ratio: Tensor) -> Tensor:
        return -bounded_exp(-log_ratio)  # −1/u

    def f(self, log_ratio: Tensor) -> Tensor:
        return -log_ratio


@register
class AlphaDivergence(Divergence):
    """α-divergence, α ∈ (0, 1) the paper's: f(u) = (u^(1−α) − (1−α)u − α)/(α(α−1)); between reverse and forward KL."""

    name = "alpha_divergence"

    def __init__(self, alpha: float = 0.5) -> None:
        if not isinstance(alpha, int | float) or not 0.0 < float(alpha) < 1.0:
            raise ValueError(
                f"alpha={alpha!r} must lie in (0, 1) (the paper's α; α → 0 is reverse_kl, α → 1 is forward_kl)"
            )
        self.alpha = float(alpha)

    @property
    def params(self) -> dict[str, float]:
        return {"alpha": self.alpha}

    @property
    def trl_coef(self) -> float:
        """TRL's ``f_alpha_divergence_coef`` for this α (TRL ≥ 0.29 uses 1 − α)."""
        return 1.0 - self.alpha

    def f_prime(self, log_ratio: Tensor) -> Tensor:
        return (1.0 - bounded_exp(-self.alpha * log_ratio)) / self.alpha  # (1 − u^(−α))/α

    def f(self, log_ratio: Tensor) -> Tensor:
        a, x = self.alpha, _clamped(log_ratio)
        return (torch.exp((1.0 - a) * x) - (1.0 - a) * torch.exp(x) - a) / (a * (a - 1.0))


@register
class JensenShannon(Divergence):
    """Jensen–Shannon: f(u) = u log u − (u+1) log((u+1)/2)."""

    name = "js_divergence"

    def f_prime(self, log_ratio: Tensor) -> Tensor:
        return math.log(2.0) + F.logsigmoid(log_ratio)  # log(2u/(1+u))

    def f(self, log_ratio: Tensor) -> Tensor:
        x = _clamped(log_ratio)
        u = torch.exp(x)
        return u * x - (u + 1.0) * (F.softplus(x) - math.log(2.0))


@register
class PearsonChi2(Divergence):
    """Pearson χ²: f(u) = (u − 1)²."""

    name = "pearson_chi2"

    def f_prime(self, log_ratio: Tensor) -> Tensor:
        return 2.0 * (bounded_exp(log_ratio) - 1.0)  # 2(u − 1)

    def f(self, log_ratio: Tensor) -> Tensor:
        return torch.expm1(_clamped(log_ratio)) ** 2


@register
class NeymanChi2(Divergence):
    """Neyman χ²: f(u) = (1 − u)²/u."""

    name = "neyman_chi2"

    def f_prime(self, log_ratio: Tensor) -> Tensor:
        return 1.0 - bounded_exp(-2.0 * log_ratio)  # 1 − 1/u²

    def f(self, log_ratio: Tensor) -> Tensor:
        x = _clamped(log_ratio)
        return torch.expm1(x) ** 2 * torch.exp(-x)


@register
class Hellinger(Divergence):
    """Squared Hellinger: f(u) = (√u − 1)²."""

    name = "hellinger"

    def f_prime(self, log_ratio: Tensor) -> Tensor:
        return 1.0 - bounded_exp(-0.5 * log_ratio)  # 1 − 1/√u

    def f(self, log_ratio: Tensor) -> Tensor:
        return torch.expm1(0.5 * _clamped(log_ratio)) ** 2


@register
class Jeffrey(Divergence):
    """Jeffrey (symmetrised KL): f(u) = (u − 1) log u."""

    name = "jeffrey"

    def f_prime(self, log_ratio: Tensor) -> Tensor:
        return log_ratio + 1.0 - bounded_exp(-log_ratio)  # log u + 1 − 1/u

    def f(self, log_ratio: Tensor) -> Tensor:
        x = _clamped(log_ratio)
        return torch.expm1(x) * x


@register
class GAN(Divergence):
    """GAN: f(u) = u log u − (u+1) log(u+1) + 2 log 2 (shifted so f(1) = 0).

    Its f′ is JS's minus log 2, a constant that cancels in f′(u_w) − f′(u_l): it trains exactly like js_divergence.
    """

    name = "gan"

    def f_prime(self, log_ratio: Tensor) -> Tensor:
        return F.logsigmoid(log_ratio)  # log u − log(u + 1)

    def f(self, log_ratio: Tensor) -> Tensor:
        x = _clamped(log_ratio)
        return torch.exp(x) * x - (torch.exp(x) + 1.0) * F.softplus(x) + 2.0 * math.log(2.0)


_TV_SURROGATES = ("tanh",)


@register
class TotalVariation(Divergence):
    """Total variation: f(u) = ½|u − 1|, f′(u) = ½·sign(u − 1).

    f′ is a step: its gradient is zero almost everywhere and f is not strictly convex, so f-DPO (which needs f′
    invertible) would train nothing. Training is refused unless ``surrogate="tanh"`` is asked for: then
    f′(u) ≈ ½·tanh(log u / temperature), strictly increasing, and the step as temperature → 0. ``f`` stays the true TV.
    """

    name = "total_variation"

    def __init__(self, surrogate: str | None = None, temperature: float = 1.0) -> None:
        if surrogate is not None and surrogate not in _TV_SURROGATES:
            raise ValueError(f"surrogate={surrogate!r} is unknown for total_variation; known: {_TV_SURROGATES}")
        if not temperature > 0:
            raise ValueError(f"temperature={temperature!r} must be > 0")
        self.surrogate, self.temperature = surrogate, float(temperature)

    @property
    def strictly_convex(self) -> bool:  # type: ignore[override]
        return self.surrogate is not None

    @property
    def params(self) -> dict[str, float | str]:
        return {} if self.surrogate is None else {"surrogate": self.surrogate, "temperature": self.temperature}

    def check_trainable(self) -> None:
        if self.surrogate is None:
            raise ValueError(
                "divergence='total_variation' cannot be trained with: f′(u) = ½·sign(u − 1) is a step, so its "
                "gradient is zero almost everywhere and f-DPO (which needs f′ invertible, f strictly convex) would "
                "change nothing. Ask for the smooth surrogate by name: "
                "get_divergence('total_variation', surrogate='tanh')."
            )

    def f_prime(self, log_ratio: Tensor) -> Tensor:
        if self.surrogate == "tanh":
            return 0.5 * torch.tanh(log_ratio / self.temperature)
        return 0.5 * torch.sign(log_ratio)

    def f(self, log_ratio: Tensor) -> Tensor:
        return 0.5 * torch.expm1(_clamped(log_ratio)).abs()


DIVERGENCES: tuple[str, ...] = tuple(_REGISTRY)
"""The registered names, in registration order."""
