"""What can be known about a sweep before Ray starts, checked: the output directory, the storage, the models and
lengths against the policy, and a resumed sweep's saved config. Each refusal is a ValueError (or WorldError) naming
the field, the value and the fix, raised before anything is written.
"""

from __future__ import annotations

import dataclasses
import json
import re
import tempfile
from collections.abc import Iterable
from pathlib import Path

from alignray.sweep.config import SweepConfig, check_share
from alignray.sweep.objectives import with_objectives
from alignray.sweep.searcher import study_storage_url

__all__ = ["RESUMABLE", "STUDY_NAME", "SWEEP_FILE", "check_output", "check_storage", "check_sweep", "load_resumed",
           "masked_url"]  # fmt: skip

SWEEP_FILE = "sweep.json"
"""The experiment's record: its config, study name and, once finished, its summary."""
STUDY_NAME = re.compile(r"alignray-[0-9a-f]{8}")
"""A study's generated name, which also names its Tune experiment under the storage path."""
RESUMABLE = ("num_trials", "max_failures", "max_concurrent_trials", "reuse_workers")
"""The options ``--resume`` takes anew; every other one is the saved sweep's, and giving another value is refused."""


def masked_url(url: str) -> str:
    """A storage URL fit to print: its password hidden."""
    from sqlalchemy.engine import make_url

    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:  # not a SQLAlchemy URL: print no part of it that could hold a secret
        return url.split("://", 1)[0] + "://***" if "://" in url else "***"


def check_output(config: SweepConfig) -> None:
    """Refuse an output directory that holds something else, nothing to resume, or that cannot be written; before
    Ray or a model starts."""
    try:
        _check_output(config)
    except OSError as err:  # a directory on the way that this user may not enter
        raise ValueError(
            f"output={config.output!r} cannot be used ({err.strerror or err}: {err.filename or ''}); name a "
            "directory you can write, e.g. --output runs/sweep"
        ) from None


def _check_output(config: SweepConfig) -> None:
    out = Path(config.output)
    saved = out / SWEEP_FILE
    if config.resume:
        if not saved.is_file():
            raise ValueError(f"output={config.output!r} holds no sweep to resume (no {SWEEP_FILE}); drop --resume")
        _check_writable(config.output)
        return
    if out.exists() and not out.is_dir():
        raise ValueError(f"output={config.output!r} is a file; name a directory")
    if out.is_dir() and any(out.iterdir()) and not saved.is_file():
        raise ValueError(
            f"output={config.output!r} holds files that are not an alignray sweep; --overwrite deletes only a sweep's "
            "directory: name an empty or new --output"
        )
    if out.is_dir() and any(out.iterdir()) and not config.overwrite:
        what = f"the sweep {json.loads(saved.read_text())['study']}"
        raise ValueError(
            f"output={config.output!r} already holds {what}; pass --resume to continue it, --overwrite to delete it "
            "and start again, or another --output"
        )
    _check_writable(config.output)


def _check_writable(output: str) -> None:
    """Refuse an output directory that cannot be made or written: a probe directory is made in it (or in its
    nearest existing parent) and removed at once."""
    existing = Path(output).absolute()
    while not existing.exists():
        existing = existing.parent
    if not existing.is_dir():
        raise ValueError(f"output={output!r} cannot be created: {existing} is a file; name a directory")
    try:
        tempfile.TemporaryDirectory(dir=existing, prefix=".alignray-probe-").cleanup()
    except OSError as err:
        raise ValueError(
            f"output={output!r} cannot be written: {existing} refuses new files ({err.strerror or err}); name a "
            "directory you can write, e.g. --output runs/sweep"
        ) from None


def check_storage(config: SweepConfig) -> None:
    """Open ``config.storage`` once (a SQLite file: its directory), so that a storage that cannot be opened stops the
    sweep before Ray starts; ValueError naming ``storage``, its password hidden. Writes nothing."""
    if config.storage is None:
        return
    from sqlalchemy import create_engine
    from sqlalchemy.engine import make_url

    shown = masked_url(config.storage)
    try:
        url = make_url(config.storage)
    except Exception:
        raise ValueError(f"storage={shown!r} is not a SQLAlchemy URL; expected e.g. sqlite:///study.db or "
                         "postgresql://user@host/db with --storage-password-env") from None  # fmt: skip
    url = make_url(study_storage_url(config))  # the password joined from storage_password_env, if one is named
    if url.get_backend_name() == "sqlite":
        database = Path(url.database or "")
        if not url.database or url.database == ":memory:":
            raise ValueError(f"storage={shown!r} is in memory; expected a SQLite file every trial reaches")
        # sqlite creates the file on connect: check its directory instead (the output directory is made later)
        if not (database.parent.is_dir() or database.parent.resolve() == Path(config.output).resolve()):
            raise ValueError(f"storage={shown!r} cannot be opened: the directory {database.parent} does not exist")
        if not database.is_file():
            return
    try:
        engine = create_engine(url)
        try:
            with engine.connect():
                pass
        finally:
            engine.dispose()
    except Exception as err:
        reason = str(err).splitlines()[0] if str(err) else type(err).__name__
        if url.password:
            reason = reason.replace(str(url.password), "***")
        raise ValueError(f"storage={shown!r} cannot be opened ({type(err).__name__}: {reason}); expected a "
                         "SQLAlchemy URL of a reachable database whose driver is installed") from None  # fmt: skip


def check_sweep(config: SweepConfig) -> None:
    """Everything about ``config`` that can be known before Ray starts: the output directory, the models, lengths
    against the policy's context and the evaluation pool's size; ValueError or WorldError naming the field."""
    from alignray.data.pipeline import check_against_policy as check_preferences
    from alignray.data.prompts import imdb_prompt_reviews
    from alignray.eval_config import EVAL_PROMPT_TOKENS
    from alignray.train import check_against_policy as check_training
    from alignray.train_config import TrainConfig
    from alignray.world import WorldError, check_judge, policy_context, resolve_model

    check_output(config)
    check_storage(config)
    for role in ("policy", "reward"):
        try:
            resolve_model(getattr(config, role), role)
        except WorldError as err:
            raise WorldError(f"{role}={getattr(config, role)!r}: {err}") from None
    check_judge(config.judge, config.reward)
    check_preferences(config.preference_config(str(Path(config.output) / "preferences")))
    check_training(TrainConfig(data="-", policy=config.policy, max_length=config.max_length))
    context = policy_context(config.policy)
    if EVAL_PROMPT_TOKENS[1] + config.max_new_tokens > context:
        raise ValueError(f"max_new_tokens={config.max_new_tokens} does not fit the {context}-token context after "
                         f"evaluation prompts of up to {EVAL_PROMPT_TOKENS[1]} tokens")  # fmt: skip
    pool = len(imdb_prompt_reviews("eval"))
    if config.eval_prompts > pool:
        raise ValueError(f"eval_prompts={config.eval_prompts} exceeds the {pool} reviews of the evaluation pool")
    if config.eval_prompts + config.confirmation_prompts > pool:
        raise ValueError(
            f"eval_prompts={config.eval_prompts} + confirmation_prompts={config.confirmation_prompts} exceed the "
            f"{pool} reviews of the evaluation pool (the confirmation's prompts are held out from the search's); use "
            f"confirmation_prompts <= {pool - config.eval_prompts}"
        )


def load_resumed(config: SweepConfig, given: Iterable[str] = ()) -> SweepConfig:
    """The saved config of the experiment in ``config.output``, to resume: its own settings, with the options of
    ``RESUMABLE`` among ``given`` (the fields the user set) taken from ``config``. Any other given field that differs
    from the saved value is refused, naming it; ``num_trials`` may only grow."""
    record = json.loads((Path(config.output) / SWEEP_FILE).read_text())
    study = record.get("study")
    if not isinstance(study, str) or not STUDY_NAME.fullmatch(study):
        raise ValueError(
            f"output={config.output!r}: {SWEEP_FILE} names the study {study!r}; expected a generated name like "
            "'alignray-1a2b3c4d' (the study names the Tune experiment under the storage path, so no '/', '..' or "
            "absolute path); was the file edited?"
        )
    if "preset" in set(given):
        raise ValueError(
            "--preset cannot be given with --resume: a resumed sweep keeps the settings it was started with; drop "
            "--preset (and give only --num-trials, --max-failures, --max-concurrent-trials or --reuse-workers)"
        )
    if "max_garbled_increase" not in record["config"]:
        raise ValueError(
            f"output={config.output!r} holds a sweep made before each divergence got its share of the search (one "
            "Optuna study space for all divergences, no tail fluency bound); this version cannot extend it without "
            "mixing two searches. Nothing in it was changed: read it with `python analysis/report.py "
            f"{config.output}`, and start a new sweep in another --output"
        )
    # a sweep saved before the judge existed judged nothing: resuming it judges nothing either
    saved = SweepConfig(**{"judge": "none", **with_objectives(record["config"]), "output": config.output,
                           "resume": True, "overwrite": False})  # fmt: skip
    ignored = {"output", "resume", "overwrite"}
    changed = {name: getattr(config, name) for name in set(given) - ignored if _differs(config, saved, name)}
    for name in sorted(set(changed) - set(RESUMABLE)):
        raise ValueError(
            f"{name}={changed[name]!r} differs from the resumed sweep's {name}={getattr(saved, name)!r}; a resumed "
            f"sweep keeps its settings except {', '.join(RESUMABLE)}: drop --{name.replace('_', '-')}, or start a new "
            "sweep in another --output"
        )
    if changed.get("num_trials", saved.num_trials) < saved.num_trials:
        raise ValueError(
            f"num_trials={changed['num_trials']} is fewer than the resumed sweep's {saved.num_trials}; a sweep can "
            "grow, not shrink"
        )
    resumed = dataclasses.replace(saved, **{k: v for k, v in changed.items() if k in RESUMABLE})
    check_share(resumed)  # against the saved divergences: the config parsed from the command line had the defaults
    return resumed


def _differs(config: SweepConfig, saved: SweepConfig, name: str) -> bool:
    """Whether ``config`` gives ``name`` another value than ``saved`` (local model paths compared resolved)."""
    new, old = getattr(config, name), getattr(saved, name)
    if name in ("policy", "reward", "judge") and new != "none" and Path(new).exists():
        return Path(new).resolve() != Path(old).resolve()
    return new != old
