"""The config of one f-DPO training run (``alignray.train``), beside what it configures."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from alignray.config import check_learning_rates, check_positive, coerce_fields
from alignray.divergences import get_divergence
from alignray.losses import check_loss_type

__all__ = ["POINTS", "TrainConfig"]

POINTS = "points"
"""The directory under a run's ``out`` that holds the models saved along training (``save_points``), ``step-<n>/``
each."""


@dataclass(frozen=True)
class TrainConfig:
    """One f-DPO training run: a preference file in, a ``save_pretrained`` policy and ``metrics.json`` out."""

    data: str
    """Preference data: a parquet file (or directory of them) with prompt, chosen and rejected columns."""
    out: str = "runs/train"
    """Directory for the trained policy (``model/``) and ``metrics.json``."""
    policy: str = "tiny-imdb"
    """Policy to start from and to stay near: a preset (tiny-imdb, lvwerra-imdb), a local path or a hub id."""
    divergence: str = "reverse_kl"
    """f-divergence by name (alignray.divergences.DIVERGENCES)."""
    alpha: float | None = None
    """The paper's α ∈ (0, 1), for alpha_divergence only (α → 0: reverse KL, α → 1: forward KL)."""
    beta: float = 0.1
    """Strength of the divergence constraint β > 0."""
    loss_type: str = "sigmoid"
    """Loss shape: sigmoid (DPO), hinge (RSO/TRL) or ipo."""
    learning_rate: float = 5e-5
    """Peak learning rate (linear decay)."""
    epochs: float = 1.0
    """Passes over the preference data."""
    batch_size: int = 16
    """Pairs per optimizer step and worker."""
    max_length: int = 128
    """Tokens of prompt + completion kept per pair (longer ones are truncated)."""
    seed: int = 0
    """Seed of initialisation order, shuffling and dropout."""
    workers: int = 1
    """Data-parallel workers; more than 1 runs on Ray Train (TorchTrainer)."""
    use_gpu: bool = False
    """Give each Ray Train worker a GPU (workers > 1); a single run uses a GPU whenever one is present."""
    precompute_ref: bool = True
    """Score the reference policy once before training instead of at every step."""
    save_points: int = 1
    """Models kept along the run (the Trainer's ``save_steps`` as the fraction 1/save_points: every
    ceil(steps / save_points) steps): 3 keeps the model after about a third and two thirds of the steps
    (``points/step-<n>/``) beside the final one (``model/``); a run of fewer steps than that keeps fewer. 1: the
    final model only."""

    def __post_init__(self) -> None:
        coerce_fields(self)
        if self.divergence != "alpha_divergence" and self.alpha is not None:
            raise ValueError(
                f"alpha={self.alpha!r} is only for divergence='alpha_divergence', not {self.divergence!r}"
            )
        get_divergence(self.divergence, **self.divergence_params).check_trainable()
        check_loss_type(self.loss_type)
        check_positive(
            self, floats=("beta", "learning_rate", "epochs"),
            ints=("batch_size", "max_length", "workers", "save_points"),
        )  # fmt: skip
        check_learning_rates(self, "learning_rate")
        if self.use_gpu and self.workers == 1:
            raise ValueError("use_gpu=True is for Ray Train workers (workers > 1); a single run finds a GPU itself")

    @property
    def divergence_params(self) -> dict[str, float]:
        """Parameters for ``get_divergence`` (``{'alpha': α}`` for alpha_divergence)."""
        return {} if self.alpha is None else {"alpha": self.alpha}

    def validate_data(self) -> Path:
        """The data path, or ValueError naming ``data`` when it is missing, unreadable, lacks a column of
        prompt/chosen/rejected or has no rows (parquet metadata only: no rows are read)."""
        import pyarrow.parquet as pq

        path = Path(self.data)
        if not path.exists():
            raise ValueError(f"data={self.data!r} does not exist; expected a parquet file with prompt/chosen/rejected")
        files = sorted(path.glob("*.parquet")) if path.is_dir() else [path]
        if not files:
            raise ValueError(f"data={self.data!r} holds no parquet files; expected prompt/chosen/rejected parquet")
        rows = 0
        for file in files:
            try:
                metadata = pq.ParquetFile(file).metadata
            except Exception as err:  # pyarrow's ArrowInvalid and OSError: not a parquet file
                raise ValueError(f"data={self.data!r}: {file} is not a readable parquet file ({err})") from None
            missing = [c for c in ("prompt", "chosen", "rejected") if c not in metadata.schema.names]
            if missing:
                raise ValueError(
                    f"data={self.data!r} lacks columns {missing}; expected prompt, chosen and rejected "
                    f"(it has {metadata.schema.names})"
                )
            rows += metadata.num_rows
        if rows == 0:
            raise ValueError(f"data={self.data!r} has no rows; expected at least one prompt/chosen/rejected pair")
        return path
