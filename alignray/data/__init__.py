"""Preference data: prompts, batched generation, reward scoring and pairing."""
