"""Batched, left-padded sampling with the KV cache: many prompts per ``generate`` call, never one at a time."""

from __future__ import annotations

import torch
from tqdm.auto import tqdm
from transformers import PreTrainedModel, PreTrainedTokenizerBase

__all__ = ["sample_continuations"]


@torch.inference_mode()
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
    """One sampled continuation per prompt (the continuation only, special tokens dropped).

    ``sampling`` goes to ``generate`` (``temperature``, ``top_k``, ``top_p``...); the default is pure sampling
    from the model's distribution (``top_k=0``, ``top_p=1``). The tokenizer must pad on the left.
    """
    if tokenizer.padding_side != "left":
        raise ValueError("tokenizer.padding_side must be 'left' for batched generation")
    options = {"do_sample": True, "top_k": 0, "top_p": 1.0, "temperature": 1.0, **sampling}
    generator_state = torch.random.get_rng_state()
    torch.manual_seed(seed)
    texts: list[str] = []
    try:
        for start in tqdm(range(0, len(prompts), batch_size), desc="generate", disable=not progress):
            batch = tokenizer(prompts[start : start + batch_size], return_tensors="pt", padding=True)
            batch = batch.to(model.device)
            out = model.generate(
                **batch, max_new_tokens=max_new_tokens, pad_token_id=tokenizer.pad_token_id, **options
            )
            texts += tokenizer.batch_decode(out[:, batch["input_ids"].shape[1] :], skip_special_tokens=True)
    finally:
        torch.random.set_rng_state(generator_state)
    return texts
