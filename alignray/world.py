"""One place for loading models: the policy, its tokenizer, the reward model and the judge, by preset, local path or
hub id.

``"tiny-imdb"`` (the default) is the embedded world under ``alignray/assets/tiny-imdb``; ``"lvwerra-imdb"`` names the
hub models of the original assignment for clusters that reach the hub, with the DPO paper's ground-truth sentiment
classifier (``siebert/sentiment-roberta-large-english``, whose IMDB set-up the f-DPO paper follows) as its judge.
The judge is a second sentiment classifier that is never optimised: it checks the reward for hacking. Any other string
is a local directory written by ``save_pretrained`` or a hub id; both go through the same ``from_pretrained`` call.
"""

from __future__ import annotations

import hashlib
import logging
import os
import socket
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from transformers import (
    AutoConfig,
    AutoModelForCausalLM,
    AutoModelForSequenceClassification,
    AutoTokenizer,
    PreTrainedModel,
    PreTrainedTokenizerBase,
)

__all__ = [
    "ASSETS",
    "PRESETS",
    "RewardModel",
    "JUDGE_OFF",
    "WorldError",
    "check_judge",
    "check_same_tokenizer",
    "same_model",
    "weights_fingerprint",
    "load_policy",
    "load_reward",
    "pick_device",
    "policy_context",
    "quiet_libraries",
    "quiet_ray_data",
    "resolve_model",
]

log = logging.getLogger(__name__)

ASSETS = Path(__file__).parent / "assets"
PRESETS: dict[str, dict[str, str]] = {
    "tiny-imdb": {role: str(ASSETS / "tiny-imdb" / role) for role in ("policy", "reward", "judge")},
    "lvwerra-imdb": {
        "policy": "lvwerra/gpt2-imdb",
        "reward": "lvwerra/distilbert-imdb",
        "judge": "siebert/sentiment-roberta-large-english",
    },
}
ROLES = ("policy", "reward", "judge")
JUDGE_OFF = "none"
"""The judge setting that turns the judge off."""
_HUB_HOST = "huggingface.co"


class WorldError(RuntimeError):
    """A model could not be found or fetched; the message says what is missing and how to get it."""


def quiet_libraries() -> None:
    """Silence the libraries' own console output in this process (a sweep trial, the reference task): warnings about
    their future versions, weight-loading and dataset progress bars, and their info logs. Errors still show."""
    import warnings

    import datasets
    import transformers

    os.environ["TQDM_DISABLE"] = "1"  # TRL's reference pass and any other bare tqdm
    os.environ["HF_HUB_DISABLE_PROGRESS_BARS"] = "1"
    warnings.filterwarnings("ignore", category=FutureWarning)
    warnings.filterwarnings("ignore", category=DeprecationWarning)
    warnings.filterwarnings("ignore", category=UserWarning, module=r"(torch|transformers|trl|datasets)\b")
    transformers.utils.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()
    datasets.utils.logging.set_verbosity_error()
    datasets.utils.logging.disable_progress_bar()
    for name in ("transformers", "trl", "datasets", "accelerate"):
        logging.getLogger(name).setLevel(logging.ERROR)


def quiet_ray_data() -> None:
    """Keep Ray Data's progress, which it logs line by line when it has no terminal, out of this driver's log. Only
    the process that runs a dataset needs it: workers never import Ray Data for it."""
    from ray.data import DataContext

    logging.getLogger("ray.data").setLevel(logging.WARNING)
    DataContext.get_current().enable_progress_bars = False


def pick_device(device: str | torch.device | None = None) -> torch.device:
    """The requested device, else the first GPU when one is present, else the CPU (said once in the log)."""
    if device is not None:
        return torch.device(device)
    if torch.cuda.is_available():
        return torch.device("cuda")
    log.info("No GPU found, running on CPU")
    return torch.device("cpu")


def resolve_model(name: str, role: str) -> str:
    """Turn a preset name, local path or hub id into what ``from_pretrained`` takes, failing early and clearly.

    ``role`` is ``"policy"``, ``"reward"`` or ``"judge"`` and picks the member of a preset.
    """
    if role not in ROLES:
        raise ValueError(f"role={role!r} is unknown; known: {', '.join(map(repr, ROLES))}")
    name = PRESETS[name][role] if name in PRESETS else name
    path = Path(name).expanduser()
    if path.exists() or name.startswith((".", "/", "~")) or name.count("/") > 1:  # hub ids: [owner/]name
        if not (path / "config.json").is_file():
            hint = "build it with `make world`" if "tiny-imdb" in str(path) else "point to a save_pretrained directory"
            raise WorldError(f"Model path {path} has no config.json: {hint}. Presets: {', '.join(PRESETS)}.")
        return str(path)
    _ensure_hub_reachable(name)
    return name


def policy_context(policy: str) -> int:
    """The positions the policy can attend to, from its config.json alone (no weights are loaded)."""
    model_config = AutoConfig.from_pretrained(resolve_model(policy, "policy"), trust_remote_code=False)
    for key in ("n_positions", "max_position_embeddings"):
        if isinstance(getattr(model_config, key, None), int):
            return getattr(model_config, key)
    raise ValueError(f"policy={policy!r}: its config.json states no context length (n_positions)")


def _ensure_hub_reachable(repo_id: str) -> None:
    """Fail at once when a hub id is neither cached nor fetchable, instead of retrying for minutes."""
    from huggingface_hub import try_to_load_from_cache

    if isinstance(try_to_load_from_cache(repo_id, "config.json"), str):
        return
    offline = os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes")
    reason = "HF_HUB_OFFLINE is set"
    if not offline:
        try:
            socket.create_connection((_HUB_HOST, 443), timeout=3).close()
            return
        except OSError as err:
            reason = f"{_HUB_HOST} is unreachable ({err.__class__.__name__})"
    raise WorldError(
        f"Cannot fetch hub model {repo_id!r}: {reason} and it is not in the local cache. "
        f"Use the embedded world ('tiny-imdb'), a local save_pretrained path, or a machine that reaches the hub."
    )


def _from_pretrained(cls, source: str, **kwargs):
    local = Path(source).is_dir()
    return cls.from_pretrained(source, trust_remote_code=False, use_safetensors=True if local else None, **kwargs)


def load_tokenizer(name: str = "tiny-imdb", role: str = "policy") -> PreTrainedTokenizerBase:
    """The tokenizer of a policy (left-padded for batched generation, pad = eos when it has none) or reward."""
    source = resolve_model(name, role)
    tokenizer = AutoTokenizer.from_pretrained(source, trust_remote_code=False)
    if role == "policy":
        tokenizer.padding_side = "left"
        if tokenizer.pad_token is None:
            tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def check_same_tokenizer(policy: str, reference: str) -> None:
    """Raise ValueError unless ``reference`` has the tokenizer of ``policy`` (the same vocabulary).

    Evaluation scores the policy's token ids with the reference: under another vocabulary those ids are other words,
    and kl/ref and fluency/ref_perplexity would be numbers about nothing.
    """
    ours, theirs = load_tokenizer(policy, "policy").get_vocab(), load_tokenizer(reference, "policy").get_vocab()
    if ours != theirs:
        raise ValueError(
            f"reference={reference!r} has another tokenizer than policy={policy!r} ({len(theirs)} vs {len(ours)} "
            f"tokens, {len(theirs.items() ^ ours.items())} entries differ): the reference must score the policy's "
            "token ids, so give a reference with the policy's tokenizer (e.g. the SFT policy it was trained from)"
        )


def load_policy(
    name: str = "tiny-imdb", device: str | torch.device | None = None, dtype: torch.dtype | None = None
) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """A causal LM and its tokenizer, on ``pick_device(device)``, in eval mode."""
    source = resolve_model(name, "policy")
    model = _from_pretrained(AutoModelForCausalLM, source, dtype=dtype)
    tokenizer = load_tokenizer(name, "policy")
    if model.generation_config.pad_token_id is None:
        model.generation_config.pad_token_id = tokenizer.pad_token_id
    return model.to(pick_device(device)).eval(), tokenizer


def weights_fingerprint(model: PreTrainedModel) -> str:
    """A short hash of a model's parameters (names, shapes and float32 values, tied weights once): what derived
    weights were computed against. A rebuilt world or a moved hub revision gives another one; a dtype round trip
    that changes no value does not."""
    digest = hashlib.sha256()
    for name, p in sorted(model.named_parameters()):
        digest.update(f"{name}:{tuple(p.shape)};".encode())
        digest.update(p.detach().to("cpu", torch.float32).contiguous().numpy().tobytes())
    return digest.hexdigest()[:16]


@dataclass
class RewardModel:
    """A sentiment classifier whose reward for a text is its POSITIVE logit."""

    model: PreTrainedModel
    tokenizer: PreTrainedTokenizerBase
    max_length: int = 512

    @property
    def positive_index(self) -> int:
        """Index of the POSITIVE label, read from ``config.label2id`` (never assumed to be 1)."""
        by_name = {str(k).upper(): int(v) for k, v in self.model.config.label2id.items()}
        if "POSITIVE" not in by_name:
            raise WorldError(f"Reward model labels {sorted(by_name)} have no POSITIVE label to take the logit of")
        return by_name["POSITIVE"]

    @torch.inference_mode()
    def logits(self, texts: list[str], batch_size: int = 64) -> np.ndarray:
        """Classifier logits of ``texts``, shape (len(texts), num_labels), float32, in batches of ``batch_size``."""
        out = [np.zeros((0, self.model.config.num_labels), dtype=np.float32)]
        for start in range(0, len(texts), batch_size):
            batch = self.tokenizer(
                list(texts[start : start + batch_size]),
                padding=True,
                truncation=True,
                max_length=self.max_length,
                return_tensors="pt",
            ).to(self.model.device)
            out.append(self.model(**batch).logits.float().cpu().numpy())
        return np.concatenate(out)

    def score(self, texts: list[str], batch_size: int = 64) -> np.ndarray:
        """Rewards of ``texts`` (their POSITIVE logits), shape (len(texts),), float32."""
        return self.logits(texts, batch_size)[:, self.positive_index]

    def is_positive(self, texts: list[str], batch_size: int = 64) -> np.ndarray:
        """Whether the classifier calls each text positive (POSITIVE is its arg-max label), shape (len(texts),)."""
        return self.logits(texts, batch_size).argmax(axis=1) == self.positive_index


def same_model(a: str, role_a: str, b: str, role_b: str) -> bool:
    """Whether two settings name one model: presets read as their member for the role, local paths resolved (no
    model is loaded and the hub is not asked)."""

    def source(name: str, role: str) -> str:
        name = PRESETS[name][role] if name in PRESETS else name
        path = Path(name).expanduser()
        return str(path.resolve()) if path.exists() else name

    return source(a, role_a) == source(b, role_b)


def check_judge(judge: str, reward: str) -> bool:
    """Refuse a ``judge`` that is not a sentiment classifier with a POSITIVE label, from its config.json alone (no
    weights load); True when it is the reward itself (allowed, but then nothing independent checks the reward).
    ``JUDGE_OFF`` is always accepted. Each refusal is a ValueError naming the field."""
    if judge == JUDGE_OFF:
        return False
    try:
        source = resolve_model(judge, "judge")
    except WorldError as err:
        raise ValueError(f"judge={judge!r}: {err}") from None
    try:
        found = AutoConfig.from_pretrained(source, trust_remote_code=False)
    except (OSError, ValueError) as err:
        raise ValueError(f"judge={judge!r}: its config.json cannot be read ({err})") from None
    architectures = getattr(found, "architectures", None) or []
    if not any(a.endswith("ForSequenceClassification") for a in architectures):
        raise ValueError(
            f"judge={judge!r} is not a sequence classifier (its architectures: {architectures or 'none stated'}); "
            f"give a sentiment classifier (a preset, a local path or a hub id), or {JUDGE_OFF!r} for no judge"
        )
    labels = sorted(str(k) for k in (getattr(found, "label2id", None) or {}))
    if "POSITIVE" not in {label.upper() for label in labels}:
        raise ValueError(
            f"judge={judge!r} has no POSITIVE label (its labels: {labels}): the judge's score is its POSITIVE logit, "
            "as the reward's; give a sentiment classifier with a POSITIVE label"
        )
    return same_model(judge, "judge", reward, "reward")


def load_reward(
    name: str = "tiny-imdb", device: str | torch.device | None = None, role: str = "reward"
) -> RewardModel:
    """The reward model (or, with ``role="judge"``, the judge) of a preset, path or hub id, on ``pick_device(device)``,
    in eval mode."""
    source = resolve_model(name, role)
    model = _from_pretrained(AutoModelForSequenceClassification, source)
    tokenizer = load_tokenizer(name, role)
    limit = min(tokenizer.model_max_length, model.config.max_position_embeddings)
    return RewardModel(model.to(pick_device(device)).eval(), tokenizer, max_length=limit)
