"""Batched, left-padded sampling with the KV cache: many prompts per ``generate`` call, never one at a time.

Sampling is Gumbel-max: ``generate`` decodes greedily over scores + Gumbel noise, which draws exactly from
softmax(scores) (after temperature, top-k and top-p). It gives the same distribution as ``do_sample=True`` but skips
``torch.multinomial``, which on CPUs is the slowest step of batched generation (bench/data.py).
"""

from __future__ import annotations

import torch
from tqdm.auto import tqdm
from transformers import (
    LogitsProcessor,
    LogitsProcessorList,
    PreTrainedModel,
    PreTrainedTokenizerBase,
    TemperatureLogitsWarper,
    TopKLogitsWarper,
    TopPLogitsWarper,
)

__all__ = ["Generator", "GumbelSampler", "generate_batch", "sample_continuations", "sampling_options"]


class GumbelSampler(LogitsProcessor):
    """Adds Gumbel(0, 1) noise to the scores, so that their arg-max is a sample of softmax(scores)."""

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        uniform = torch.rand_like(scores, dtype=torch.float32).clamp_(min=torch.finfo(torch.float32).tiny)
        return scores - torch.log(-torch.log(uniform)).to(scores.dtype)


def sampling_options(temperature: float = 1.0, top_k: int = 0, top_p: float = 1.0) -> dict:
    """``generate`` keyword arguments for sampling at these settings (top_k=0 and top_p=1 switch those off)."""
    warpers: list[LogitsProcessor] = []
    if temperature != 1.0:
        warpers.append(TemperatureLogitsWarper(temperature))
    if top_k > 0:
        warpers.append(TopKLogitsWarper(top_k))
    if top_p < 1.0:
        warpers.append(TopPLogitsWarper(top_p))
    return {"do_sample": False, "num_beams": 1, "logits_processor": LogitsProcessorList([*warpers, GumbelSampler()])}


def sample_continuations(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    prompts: list[str],
    max_new_tokens: int = 48,
    batch_size: int = 64,
    seed: int = 0,
    progress: bool = False,
    **sampling,
) -> list[str]:
    """One sampled continuation per prompt (the continuation only, special tokens dropped), ``batch_size`` prompts
    per ``generate_batch`` call; the global torch RNGs (the CPU's and, with CUDA, every GPU's, which
    ``torch.manual_seed`` reseeds too) are left as they were."""
    cpu_state = torch.random.get_rng_state()
    cuda_states = torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None
    texts: list[str] = []
    try:
        for start in tqdm(range(0, len(prompts), batch_size), desc="generate", disable=not progress):
            batch = prompts[start : start + batch_size]
            texts += generate_batch(model, tokenizer, batch, max_new_tokens, seed + start, **sampling)["completion"]
    finally:
        torch.random.set_rng_state(cpu_state)
        if cuda_states is not None:
            torch.cuda.set_rng_state_all(cuda_states)
    return texts


@torch.inference_mode()
def generate_batch(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    prompts: list[str],
    max_new_tokens: int,
    seed: int,
    reference: PreTrainedModel | None = None,
    **sampling,
) -> dict[str, list]:
    """One batched ``generate`` call: a completion per prompt, its token ids, and with ``reference`` the statistics
    the evaluation needs, each summed over the completion's tokens (up to and including its first eos):

    ``logp`` (log π of the sampled tokens, from the raw logits), ``entropy`` (the policy's next-token entropy),
    ``ref_logp`` (log π_ref of the same tokens) and ``tokens`` (how many were summed). ``sampling`` (temperature,
    top_k, top_p) goes to ``sampling_options``: pure sampling by default. The tokenizer must pad on the left.
    """
    if tokenizer.padding_side != "left":
        raise ValueError("tokenizer.padding_side must be 'left' for batched generation")
    options = sampling_options(**sampling)
    batch = tokenizer(prompts, return_tensors="pt", padding=True).to(model.device)
    torch.manual_seed(seed)
    out = model.generate(
        **batch,
        max_new_tokens=max_new_tokens,
        pad_token_id=tokenizer.pad_token_id,
        return_dict_in_generate=True,
        output_logits=reference is not None,
        **options,
    )
    start = batch["input_ids"].shape[1]
    new = out.sequences[:, start:]
    eos_seen = (new == tokenizer.eos_token_id).cumsum(dim=1)
    generated = (eos_seen == 0) | ((eos_seen == 1) & (new == tokenizer.eos_token_id))  # up to the first eos
    content = generated & (new != tokenizer.eos_token_id) & (new != tokenizer.pad_token_id)
    result: dict[str, list] = {
        "completion": tokenizer.batch_decode(new, skip_special_tokens=True),
        "completion_ids": [row[mask].tolist() for row, mask in zip(new.cpu(), content.cpu(), strict=True)],
    }
    if reference is None:
        return result
    log_probs = torch.stack(out.logits, dim=1).float().log_softmax(dim=-1)  # (B, T, V), before any warping
    logp = log_probs.gather(-1, new.unsqueeze(-1)).squeeze(-1)
    entropy = -(log_probs.exp() * log_probs).sum(dim=-1)
    mask = torch.cat([batch["attention_mask"], generated.long()], dim=1)
    positions = (mask.cumsum(dim=1) - 1).clamp(min=0)
    ref_logits = reference(input_ids=out.sequences, attention_mask=mask, position_ids=positions).logits
    ref_log_probs = ref_logits[:, start - 1 : -1].float().log_softmax(dim=-1)
    ref_logp = ref_log_probs.gather(-1, new.unsqueeze(-1)).squeeze(-1)
    weights = generated.float()
    result["logp"] = (logp * weights).sum(dim=1).tolist()
    result["entropy"] = (entropy * weights).sum(dim=1).tolist()
    result["ref_logp"] = (ref_logp * weights).sum(dim=1).tolist()
    result["tokens"] = weights.sum(dim=1).long().tolist()
    return result


class Generator:
    """Ray Data actor holding a policy (and, for evaluation, its reference): one completion per row.

    Rows carry ``row`` (a unique integer) and ``prompt``; each batch is sampled with seed ``seed + min(row)``,
    so the same rows in the same batches give the same completions on every run.
    """

    def __init__(
        self,
        policy: str,
        max_new_tokens: int,
        seed: int,
        sampling: dict | None = None,
        reference: str | None = None,
        threads: int | None = None,
    ) -> None:
        from alignray.world import load_policy, quiet_libraries

        quiet_libraries()  # an actor's loading bars and warnings would reach the job log once per actor
        if threads:
            torch.set_num_threads(threads)
        self.model, self.tokenizer = load_policy(policy)
        self.reference = load_policy(reference, device=self.model.device)[0] if reference else None
        self.max_new_tokens, self.seed, self.sampling = max_new_tokens, seed, sampling or {}

    def __call__(self, batch):
        out = generate_batch(
            self.model,
            self.tokenizer,
            batch["prompt"].tolist(),
            self.max_new_tokens,
            self.seed + int(batch["row"].min()),
            self.reference,
            **self.sampling,
        )
        return batch.assign(**out)
