"""FDPOTrainer: TRL's DPOTrainer with any registered divergence and loss shape; TRL does everything else.

Tokenisation, collation, precomputed reference log-probs, PEFT, mixed precision, accelerate and logging stay
TRL's. The override is ``_compute_loss``: TRL's picks f′ from a fixed list inline, so FDPOTrainer takes the same
sequence log-probs TRL computes (TRL's fused LM head on CUDA, plain logits elsewhere; TRL's
``compute_ref_log_probs`` for the reference) and hands the log-ratios to ``alignray.losses.preference_loss``.
Written against TRL 1.16 (pinned ``trl>=1.0,<2``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
from trl import DPOConfig, DPOTrainer
from trl.trainer.utils import selective_log_softmax

from alignray.divergences import Divergence, get_divergence
from alignray.losses import check_loss_type, preference_loss

__all__ = ["REFERENCE_COLUMNS", "FDPOConfig", "FDPOTrainer"]

REFERENCE_COLUMNS = ("ref_chosen_logps", "ref_rejected_logps")
"""Columns of reference log-probs that a preference data set may carry (computed once, shared by many runs)."""
_NON_MODEL_KEYS = {"completion_mask", *REFERENCE_COLUMNS}


@dataclass
class FDPOConfig(DPOConfig):
    """DPOConfig plus the f-divergence; TRL's own ``f_divergence_type`` is not used (it stays ``reverse_kl``)."""

    divergence: str = field(default="reverse_kl", metadata={"help": "a name of alignray.divergences.DIVERGENCES"})
    divergence_params: dict[str, Any] = field(
        default_factory=dict, metadata={"help": "e.g. {'alpha': 0.3} (the paper's α) for alpha_divergence"}
    )
    precompute_ref_log_probs: bool = field(
        default=True, metadata={"help": "score the reference once before training instead of at every step"}
    )
    fused_lm_head: bool | None = field(
        default=None,
        metadata={
            "help": "score the policy with TRL's chunked LM head; None: on CUDA only, where its Triton kernel saves "
            "memory; on CPUs plain logits are ~2x faster (bench/trainer.py)"
        },
    )

    def __post_init__(self) -> None:
        if self.bf16 is None and not self.fp16:  # TRL turns bf16 on everywhere; on a CPU it only costs precision
            self.bf16 = torch.cuda.is_available() and torch.cuda.is_bf16_supported()
        super().__post_init__()
        if len(self.loss_type) != 1:
            raise ValueError(f"loss_type={self.loss_type!r}: FDPOTrainer takes exactly one loss type")
        check_loss_type(self.loss_type[0])
        unsupported = {
            "f_divergence_type": self.f_divergence_type != "reverse_kl",
            "ld_alpha": self.ld_alpha is not None,
            "use_weighting": self.use_weighting,
            "loss_weights": self.loss_weights is not None,
            "router_aux_loss_coef": bool(self.router_aux_loss_coef),
        }
        for name, is_set in unsupported.items():
            if is_set:
                raise ValueError(f"{name}={getattr(self, name)!r} is not supported by FDPOTrainer; leave it unset")
        self.make_divergence().check_trainable()

    def make_divergence(self) -> Divergence:
        """The configured divergence (validated: unknown names and bad parameters raise ValueError)."""
        return get_divergence(self.divergence, **self.divergence_params)


class FDPOTrainer(DPOTrainer):
    """f-DPO: loss = ℓ(β·(f′(u_w) − f′(u_l))) with u = π/π_ref and ℓ the configured loss shape.

    Logs TRL's ``rewards/{chosen,rejected,accuracies,margins}`` (β·log-ratio, as TRL) and ``logps/*``, plus
    ``rewards/f_margins``, the mean β·(f′(u_w) − f′(u_l)) that the loss actually sees.
    """

    _tag_names = ["trl", "dpo", "f-dpo", "alignray"]

    def __init__(self, *args, **kwargs) -> None:
        config = kwargs.get("args")
        if not isinstance(config, FDPOConfig):
            raise TypeError(f"FDPOTrainer needs args=FDPOConfig(...), got {type(config).__name__}")
        self.divergence = config.make_divergence()
        super().__init__(*args, **kwargs)
        fused = config.fused_lm_head
        self.use_fused_lm_head = self.accelerator.device.type == "cuda" if fused is None else fused

    def _precompute_ref_logps(self, dataset, name: str, batch_size: int):
        """TRL's precompute, skipped when the data already carries ``REFERENCE_COLUMNS`` (a sweep scores its
        reference once for all trials, see ``alignray.sweep.driver``)."""
        if all(column in dataset.column_names for column in REFERENCE_COLUMNS):
            return dataset
        return super()._precompute_ref_logps(dataset, name, batch_size)

    def _policy_token_logps(self, model, model_kwargs, labels, length: int) -> tuple[torch.Tensor, Any]:
        """Per-token log-probs of the labels, shape (2B, length), zero where the label is masked."""
        if self.use_fused_lm_head:
            outputs = model(**model_kwargs, use_cache=False, labels=labels, fused_lm_head=True)
            return outputs.log_probs[:, -length:], outputs
        outputs = model(**model_kwargs, use_cache=False)
        logits, targets = outputs.logits[:, -length - 1 : -1], labels[:, -length:]
        mask = targets != -100
        return selective_log_softmax(logits, targets.clamp(min=0)) * mask, outputs

    def _compute_loss(self, model, inputs, return_outputs):
        mode = "train" if self.model.training else "eval"
        completion_mask = inputs["completion_mask"]
        shift_mask = completion_mask[..., 1:]
        model_kwargs = {k: v for k, v in inputs.items() if k not in _NON_MODEL_KEYS}
        labels = inputs["input_ids"].masked_fill(completion_mask == 0, -100)
        token_logps, outputs = self._policy_token_logps(model, model_kwargs, labels, shift_mask.size(1))
        logps = token_logps.sum(dim=1)
        chosen_logps, rejected_logps = logps.chunk(2, dim=0)  # TRL's batch is [chosen..., rejected...]

        if self.precompute_ref_logps:
            ref_chosen_logps, ref_rejected_logps = inputs["ref_chosen_logps"], inputs["ref_rejected_logps"]
        else:
            reference = self.ref_model if self.ref_model is not None else self.model  # PEFT: adapter switched off
            ref_chosen_logps, ref_rejected_logps = self.compute_ref_log_probs(reference, inputs)

        chosen_logratios = chosen_logps - ref_chosen_logps
        rejected_logratios = rejected_logps - ref_rejected_logps
        chosen_lengths, rejected_lengths = completion_mask.sum(dim=1).chunk(2, dim=0)  # as TRL's ipo counts them
        losses = preference_loss(
            chosen_logratios,
            rejected_logratios,
            self.divergence,
            beta=self.beta,
            loss_type=self.loss_types[0],
            chosen_lengths=chosen_lengths,
            rejected_lengths=rejected_lengths,
        )
        loss = losses.mean()
        if not torch.isfinite(loss):
            raise FloatingPointError(
                f"non-finite f-DPO loss {loss.item()} with {self.divergence!r}, beta={self.beta}, "
                f"loss_type={self.loss_types[0]!r} at step {self.state.global_step}; log-ratios "
                f"chosen {chosen_logratios.detach().tolist()}, rejected {rejected_logratios.detach().tolist()}"
            )
        self._log_pair_metrics(mode, chosen_logps, rejected_logps, chosen_logratios, rejected_logratios)
        return (loss, outputs) if return_outputs else loss

    @torch.no_grad()
    def _log_pair_metrics(self, mode, chosen_logps, rejected_logps, chosen_logratios, rejected_logratios) -> None:
        gather = self.accelerator.gather
        chosen_rewards = self.beta * chosen_logratios.detach()
        rejected_rewards = self.beta * rejected_logratios.detach()
        f_margins = self.beta * (
            self.divergence.f_prime(chosen_logratios.detach()) - self.divergence.f_prime(rejected_logratios.detach())
        )
        metrics = self._metrics[mode]
        metrics["rewards/chosen"].append(gather(chosen_rewards).mean().item())
        metrics["rewards/rejected"].append(gather(rejected_rewards).mean().item())
        metrics["rewards/accuracies"].append(gather((chosen_rewards > rejected_rewards).float()).mean().item())
        metrics["rewards/margins"].append(gather(chosen_rewards - rejected_rewards).mean().item())
        metrics["rewards/f_margins"].append(gather(f_margins).mean().item())
        metrics["logps/chosen"].append(gather(chosen_logps.detach()).mean().item())
        metrics["logps/rejected"].append(gather(rejected_logps.detach()).mean().item())
