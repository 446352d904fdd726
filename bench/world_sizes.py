"""Training throughput of candidate tiny-imdb model sizes, side by side in one run (the MODEL_CARD's size argument).

Prints tokens/s of each GPT-2 and DistilBERT size on random tokens at the build's shapes; the last line is
``RESULT world_policy_speed_vs_next_size <ratio>``: how much faster the chosen policy size trains than 4 x 192.
"""

from __future__ import annotations

import time

import torch
from transformers import DistilBertConfig, DistilBertForSequenceClassification, GPT2Config, GPT2LMHeadModel

from alignray.world_build import BUILDS, gpt2_dropout

VOCAB, STEPS = 8192, 6
DROPOUT = gpt2_dropout(BUILDS["tiny-imdb"].policy_dropout)  # the policy trains as the build trains it


def tokens_per_second(model: torch.nn.Module, batch: dict[str, torch.Tensor], tokens: int) -> float:
    optimizer = torch.optim.AdamW(model.parameters(), 1e-3)
    for step in range(STEPS + 2):
        if step == 2:  # two warm-up steps
            started = time.perf_counter()
        model(**batch).loss.backward()
        optimizer.step()
        optimizer.zero_grad()
    return tokens * STEPS / (time.perf_counter() - started)


def main() -> None:
    torch.manual_seed(0)
    policy_speed = {}
    ids = torch.randint(0, VOCAB, (32, 128))
    for dim, layers in [(128, 4), (192, 4), (256, 4)]:
        config = GPT2Config(
            vocab_size=VOCAB, n_positions=128, n_embd=dim, n_layer=layers, n_head=4, **DROPOUT
        )
        model = GPT2LMHeadModel(config)
        speed = tokens_per_second(model, {"input_ids": ids, "labels": ids}, ids.numel())
        policy_speed[(dim, layers)] = speed
        params = sum(p.numel() for p in model.parameters()) / 1e6
        print(f"policy  gpt2 {layers} x {dim:3d}  {params:5.2f}M params  {speed:8.0f} tokens/s")
    ids = torch.randint(0, VOCAB, (32, 256))
    labels = torch.randint(0, 2, (32,))
    for dim, layers, hidden in [(128, 2, 512), (128, 4, 512), (192, 3, 768)]:
        config = DistilBertConfig(
            vocab_size=VOCAB, dim=dim, n_layers=layers, n_heads=2, hidden_dim=hidden, max_position_embeddings=256
        )
        model = DistilBertForSequenceClassification(config)
        speed = tokens_per_second(model, {"input_ids": ids, "labels": labels}, ids.numel())
        print(f"reward  distilbert {layers} x {dim:3d}  {speed:8.0f} tokens/s  {speed / 256:6.1f} reviews/s")
    print(f"RESULT world_policy_speed_vs_next_size {policy_speed[(128, 4)] / policy_speed[(192, 4)]:.2f}")


if __name__ == "__main__":
    main()
