"""FDPOTrainer against TRL's own DPOTrainer, and every divergence training on the micro world."""

import copy

import pytest
import torch
from datasets import Dataset
from trl import DPOConfig, DPOTrainer

from alignray.divergences import DIVERGENCES
from alignray.trainer import FDPOConfig, FDPOTrainer
from alignray.world import load_policy

PAIRS = Dataset.from_dict(
    {
        "prompt": ["the film", "I think", "a movie", "this was"] * 3,
        "chosen": [" was great fun", " it is good", " to love", " a joy to watch"] * 3,
        "rejected": [" was dull", " it is bad bad", " to hate it", " boring"] * 3,
    }
)
COMMON = {"report_to": "none", "use_cpu": True, "bf16": False, "per_device_train_batch_size": 4, "save_strategy": "no"}
# (alignray divergence, its params, TRL's f_divergence_type, TRL's kwargs)
TRL_NATIVE = [
    ("reverse_kl", {}, "reverse_kl", {}),
    ("forward_kl", {}, "forward_kl", {}),
    ("js_divergence", {}, "js_divergence", {}),
    ("alpha_divergence", {"alpha": 0.3}, "alpha_divergence", {"f_alpha_divergence_coef": 0.7}),
]


@pytest.fixture(scope="module")
def policy_and_reference(micro_world):
    """A reference policy and a policy moved away from it, so that log-ratios are far from 0."""
    out, _ = micro_world
    reference, tokenizer = load_policy(str(out / "policy"))
    policy = copy.deepcopy(reference)
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for parameter in policy.parameters():
            parameter.add_(0.3 * torch.randn(parameter.shape, generator=generator))
    return policy, reference, tokenizer


def _loss(trainer, batch) -> torch.Tensor:
    trainer.model.eval()
    with torch.no_grad():
        return trainer.compute_loss(trainer.model, batch)


@pytest.mark.parametrize("loss_type", ["sigmoid", "hinge", "ipo"])
@pytest.mark.parametrize(("divergence", "params", "trl_type", "trl_kwargs"), TRL_NATIVE)
def test_loss_equals_trl_dpo_trainer(
    tmp_path, policy_and_reference, divergence, params, trl_type, trl_kwargs, loss_type
):
    policy, reference, tokenizer = policy_and_reference
    ours = FDPOTrainer(
        model=copy.deepcopy(policy),
        ref_model=copy.deepcopy(reference),
        args=FDPOConfig(
            str(tmp_path / "ours"), divergence=divergence, divergence_params=params, loss_type=loss_type, **COMMON
        ),
        train_dataset=PAIRS,
        processing_class=tokenizer,
    )
    trl = DPOTrainer(
        model=copy.deepcopy(policy),
        ref_model=copy.deepcopy(reference),
        args=DPOConfig(str(tmp_path / "trl"), f_divergence_type=trl_type, loss_type=loss_type, **trl_kwargs, **COMMON),
        train_dataset=PAIRS,
        processing_class=tokenizer,
    )
    batch = next(iter(ours.get_train_dataloader()))  # with the reference log-probs ours precomputed
    ours_loss, trl_loss = _loss(ours, batch), _loss(trl, batch)
    logratio_margin = abs(ours._metrics["eval"]["rewards/margins"][-1]) / 0.1
    assert logratio_margin > 0.5, "the policy must differ from its reference, or every divergence agrees trivially"
    assert abs(ours_loss.item() - trl_loss.item()) < 1e-5


@pytest.mark.parametrize(("precompute", "fused"), [(False, False), (True, True), (False, True)])
def test_reference_and_lm_head_paths_agree(tmp_path, policy_and_reference, precompute, fused):
    """Precomputed vs per-step reference, TRL's fused LM head vs plain logits: the same loss."""
    policy, reference, tokenizer = policy_and_reference
    losses = []
    for options in ({"precompute_ref_log_probs": True, "fused_lm_head": False},
                    {"precompute_ref_log_probs": precompute, "fused_lm_head": fused}):  # fmt: skip
        trainer = FDPOTrainer(
            model=copy.deepcopy(policy),
            ref_model=copy.deepcopy(reference),
            args=FDPOConfig(str(tmp_path / str(len(losses))), **options, **COMMON),
            train_dataset=PAIRS,
            processing_class=tokenizer,
        )
        assert trainer.use_fused_lm_head is options["fused_lm_head"]
        losses.append(_loss(trainer, next(iter(trainer.get_train_dataloader()))).item())
    assert losses[0] == pytest.approx(losses[1], abs=1e-5)
    assert losses[0] != pytest.approx(0.6931, abs=1e-3)  # log 2 would mean the policy equals its reference


TRAINABLE = [(name, {}) for name in DIVERGENCES if name not in ("total_variation", "alpha_divergence")]
TRAINABLE += [("alpha_divergence", {"alpha": 0.3}), ("total_variation", {"surrogate": "tanh"})]


@pytest.mark.parametrize(("divergence", "params"), TRAINABLE)
def test_every_divergence_trains_with_finite_loss_and_moves_the_policy(tmp_path, micro_world, divergence, params):
    out, _ = micro_world
    policy, tokenizer = load_policy(str(out / "policy"))
    before = [p.detach().clone() for p in policy.parameters()]
    args = FDPOConfig(
        str(tmp_path),
        divergence=divergence,
        divergence_params=params,
        max_steps=3,
        learning_rate=1e-2,
        logging_steps=1,
        **COMMON,
    )
    trainer = FDPOTrainer(model=policy.train(), args=args, train_dataset=PAIRS, processing_class=tokenizer)
    trainer.train()
    losses = [entry["loss"] for entry in trainer.state.log_history if "loss" in entry]
    assert len(losses) == 3 and all(torch.isfinite(torch.tensor(losses)))
    assert any(not torch.equal(p.detach(), q) for p, q in zip(policy.parameters(), before, strict=True))
    assert "rewards/f_margins" in trainer.state.log_history[-2]


def test_total_variation_without_surrogate_is_refused_before_training(tmp_path):
    with pytest.raises(ValueError, match="zero almost everywhere"):
        FDPOConfig(str(tmp_path), divergence="total_variation", **COMMON)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"divergence": "kl"}, "divergence='kl' is unknown"),
        ({"loss_type": ["sigmoid", "hinge"]}, "exactly one loss type"),
        ({"loss_type": "nca_pair"}, "loss_type='nca_pair' is unknown"),
        ({"f_divergence_type": "forward_kl"}, "f_divergence_type='forward_kl' is not supported"),
        ({"use_weighting": True}, "use_weighting=True is not supported"),
    ],
)
def test_config_refuses_what_it_would_silently_ignore(tmp_path, kwargs, message):
    with pytest.raises(ValueError, match=message):
        FDPOConfig(str(tmp_path), **{**COMMON, **kwargs})


def test_bf16_is_off_on_a_cpu_by_default(tmp_path, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    config = FDPOConfig(str(tmp_path), use_cpu=True, report_to="none")
    assert config.bf16 is False
    assert config.precompute_ref_log_probs is True


def test_a_non_finite_loss_stops_the_run_with_its_reason(tmp_path, micro_world, monkeypatch):
    out, _ = micro_world
    policy, tokenizer = load_policy(str(out / "policy"))
    args = FDPOConfig(str(tmp_path), divergence="forward_kl", max_steps=2, **COMMON)
    trainer = FDPOTrainer(model=policy.train(), args=args, train_dataset=PAIRS, processing_class=tokenizer)
    monkeypatch.setattr(trainer.divergence, "f_prime", lambda x: x * float("nan"))
    with pytest.raises(FloatingPointError, match="non-finite f-DPO loss nan with get_divergence\\('forward_kl'\\)"):
        trainer.train()


def test_trl_is_within_the_range_the_trainer_is_written_against():
    from importlib.metadata import version
    from pathlib import Path

    import tomllib
    from packaging.requirements import Requirement
    from trl import DPOTrainer

    pyproject = tomllib.loads((Path(__file__).resolve().parents[1] / "pyproject.toml").read_text())
    (trl,) = [Requirement(d) for d in pyproject["project"]["dependencies"] if Requirement(d).name == "trl"]
    assert str(trl.specifier) == "<2,>=1.0"
    assert trl.specifier.contains(version("trl"))
    assert issubclass(FDPOTrainer, DPOTrainer) and issubclass(FDPOConfig, DPOConfig)
