import dataclasses
import re
from pathlib import Path

import pytest
import yaml

from alignray import metrics, train
from alignray.config import field_docs, parse_config
from alignray.data import pipeline
from alignray.data.config import PreferenceConfig
from alignray.eval_config import EvalConfig
from alignray.train_config import TrainConfig


def check_against_policy(config, **kwargs) -> None:
    """Each concept's own check against the policy, by its config's type."""
    checks = {
        TrainConfig: train.check_against_policy,
        PreferenceConfig: pipeline.check_against_policy,
        EvalConfig: metrics.check_against_policy,
    }
    checks[type(config)](config, **kwargs)


def test_every_field_has_a_one_line_doc_in_help(capsys):
    docs = field_docs(TrainConfig)
    assert set(docs) == {f for f in TrainConfig.__dataclass_fields__}
    with pytest.raises(SystemExit):
        parse_config(TrainConfig, ["--help"])
    out = capsys.readouterr().out
    assert "--learning-rate" in out and "Peak learning rate" in out and "(default: 5e-05)" in out


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--divergence", "forward-kl"], "divergence='forward-kl' is unknown; did you mean 'forward_kl'"),
        (["--divergence", "alpha_divergence", "--alpha", "1.5"], "alpha=1.5 must lie in \\(0, 1\\)"),
        (["--alpha", "0.3"], "alpha=0.3 is only for divergence='alpha_divergence'"),
        (["--divergence", "total_variation"], "zero almost everywhere"),
        (["--beta", "0"], "beta=0.0 must be > 0"),
        (["--loss-type", "hing"], "did you mean 'hinge'"),
        (["--workers", "0"], "workers=0 must be an integer >= 1"),
        (["--use-gpu", "true"], "use_gpu=True is for Ray Train workers"),
        (["--use-gpu", "maybe"], "'maybe' is not a boolean"),
    ],
)
def test_bad_values_exit_naming_the_field(capsys, argv, message):
    with pytest.raises(SystemExit) as exit_info:
        parse_config(TrainConfig, ["--data", "x.parquet", *argv])
    assert exit_info.value.code == 2
    assert re.search(message, capsys.readouterr().err)


def test_yaml_is_read_safely_and_flags_override_it(tmp_path):
    path = tmp_path / "trial.yaml"
    path.write_text("data: prefs.parquet\ndivergence: alpha_divergence\nalpha: 0.3\nbeta: 0.5\n")
    config = parse_config(TrainConfig, ["--config", str(path), "--beta", "0.2"])
    assert (config.divergence, config.alpha, config.beta, config.data) == (
        "alpha_divergence",
        0.3,
        0.2,
        "prefs.parquet",
    )
    assert config.divergence_params == {"alpha": 0.3}


def test_yaml_with_unknown_fields_or_python_tags_is_refused(tmp_path, capsys):
    typo = tmp_path / "typo.yaml"
    typo.write_text("data: x\nbetta: 0.5\n")
    with pytest.raises(SystemExit):
        parse_config(TrainConfig, ["--config", str(typo)])
    assert "unknown fields ['betta']" in capsys.readouterr().err
    unsafe = tmp_path / "unsafe.yaml"
    unsafe.write_text("data: !!python/object/apply:os.system ['echo hacked']\n")
    with pytest.raises(SystemExit):
        parse_config(TrainConfig, ["--config", str(unsafe)])
    err = capsys.readouterr().err
    assert "not valid YAML at line 1" in err and "could not determine a constructor" in err


def test_missing_data_is_named():
    with pytest.raises(ValueError, match="data='nowhere.parquet' does not exist"):
        TrainConfig(data="nowhere.parquet").validate_data()


def _from_yaml(tmp_path, cls, text: str):
    path = tmp_path / "config.yaml"
    path.write_text(text)
    return parse_config(cls, ["--config", str(path)])


@pytest.mark.parametrize(
    ("cls", "text", "field", "expected"),
    [
        (TrainConfig, "data: x\nlearning_rate: 5e-5\n", "learning_rate", 5e-5),  # PyYAML reads 5e-5 as a string
        (TrainConfig, "data: x\nbeta: 1\n", "beta", 1.0),
        (TrainConfig, "data: x\ndivergence: alpha_divergence\nalpha: '0.3'\n", "alpha", 0.3),
        (TrainConfig, "data: x\nbatch_size: '8'\n", "batch_size", 8),
        (TrainConfig, "data: 2024\n", "data", "2024"),
        (PreferenceConfig, "temperature: 2\n", "temperature", 2.0),
        (PreferenceConfig, "prompts: fixed\nfixed_prompts: [Movie, Film]\n", "fixed_prompts", ("Movie", "Film")),
        (PreferenceConfig, "use_gpu: 'yes'\n", "use_gpu", True),
        (PreferenceConfig, "scoring_actors: null\n", "scoring_actors", None),
        (EvalConfig, "num_prompts: '16'\n", "num_prompts", 16),
    ],
)
def test_yaml_values_are_converted_to_the_field_type(tmp_path, cls, text, field, expected):
    value = getattr(_from_yaml(tmp_path, cls, text), field)
    assert value == expected and type(value) is type(expected)


BAD_VALUES = [
    (TrainConfig, "learning_rate", "fast", "learning_rate='fast' is not a number; expected a finite number"),
    (TrainConfig, "learning_rate", float("inf"), "learning_rate=inf is not finite; expected a finite number"),
    (TrainConfig, "beta", float("-inf"), "beta=-inf is not finite"),
    (TrainConfig, "epochs", "nan", "epochs='nan' is not finite"),
    (TrainConfig, "batch_size", True, "batch_size=True is a boolean; expected an integer"),
    (TrainConfig, "max_length", 12.5, "max_length=12.5 is not an integer; expected an integer"),
    (TrainConfig, "beta", False, "beta=False is a boolean; expected a finite number"),
    (TrainConfig, "alpha", "a third", "alpha='a third' is not a number; expected a finite number or None"),
    (TrainConfig, "use_gpu", "maybe", "use_gpu='maybe' is not a boolean; expected true or false"),
    (TrainConfig, "policy", True, "policy=True is a boolean; expected a string"),
    (TrainConfig, "seed", None, "seed=None is not allowed; expected an integer"),
    (PreferenceConfig, "min_margin", float("nan"), "min_margin=nan is not finite; expected a finite number"),
    (
        PreferenceConfig,
        "fixed_prompts",
        "Movie",
        "fixed_prompts='Movie' is a single string, not a list; expected a list",
    ),
    (PreferenceConfig, "fixed_prompts", ["Movie", None], "fixed_prompts=\\['Movie', None\\] holds something other"),
    (PreferenceConfig, "hi", float("inf"), "hi=inf is not finite"),
    (PreferenceConfig, "generation_actors", True, "generation_actors=True is a boolean; expected an integer or None"),
    (EvalConfig, "max_new_tokens", True, "max_new_tokens=True is a boolean; expected an integer"),
    (EvalConfig, "num_prompts", "many", "num_prompts='many' is not an integer"),
]


def _required(cls) -> dict:
    """The fields a config needs besides the one under test."""
    return {TrainConfig: {"data": "x"}, PreferenceConfig: {"prompts": "fixed", "fixed_prompts": ["a"]}}.get(cls, {})


@pytest.mark.parametrize(("cls", "field", "value", "message"), BAD_VALUES)
def test_bad_values_are_refused_in_python_naming_field_value_and_what_is_allowed(cls, field, value, message):
    with pytest.raises(ValueError, match=message):
        cls(**{**_required(cls), field: value})


@pytest.mark.parametrize(("cls", "field", "value", "message"), BAD_VALUES)
def test_bad_values_are_refused_from_yaml_with_the_same_message(tmp_path, capsys, cls, field, value, message):
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump({**_required(cls), field: value}))
    with pytest.raises(SystemExit):
        parse_config(cls, ["--config", str(path)])
    assert re.search(message, capsys.readouterr().err)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("min_margin: .nan\n", "min_margin=nan is not finite"),
        ("batch_size: true\n", "batch_size=True is a boolean"),
        ("prompts: fixed\nfixed_prompts: Movie\n", "fixed_prompts='Movie' is a single string, not a list"),
        ("lo: -.inf\n", "lo=-inf is not finite"),
    ],
)
def test_the_issue_s_yaml_examples_are_refused(tmp_path, capsys, text, message):
    with pytest.raises(SystemExit):
        _from_yaml(tmp_path, PreferenceConfig, text)
    assert message in capsys.readouterr().err


def test_command_line_values_go_through_the_same_conversion(capsys):
    config = parse_config(PreferenceConfig, ["--prompts", "fixed", "--fixed-prompts", "Movie", "--temperature", "2"])
    assert config.fixed_prompts == ("Movie",) and config.temperature == 2.0
    with pytest.raises(SystemExit):
        parse_config(TrainConfig, ["--data", "x", "--batch-size", "2.5"])
    assert "batch_size='2.5' is not an integer; expected an integer" in capsys.readouterr().err


def test_an_integer_temperature_reaches_generation_as_a_float():
    from alignray.data.generation import sampling_options

    config = PreferenceConfig(temperature=2)
    sampling_options(**config.sampling)  # HF's TemperatureLogitsWarper refuses an int


def test_a_converted_config_round_trips_through_asdict_as_ray_workers_rebuild_it():
    config = TrainConfig(data="x", learning_rate="5e-5", batch_size="4")
    assert TrainConfig(**dataclasses.asdict(config)) == config


@pytest.mark.parametrize(
    ("config", "message"),
    [
        (TrainConfig(data="x", max_length=129), "max_length=129 exceeds the 128-token context of policy='tiny-imdb'"),
        (
            PreferenceConfig(max_new_tokens=121),
            "max_new_tokens=121 after prompts of up to 8 tokens exceeds the 128-token context of policy='tiny-imdb'; "
            "use max_new_tokens <= 120",
        ),
        (
            PreferenceConfig(max_new_tokens=100, max_prompt_tokens=30),
            "max_new_tokens=100 after prompts of up to 30 tokens exceeds",
        ),
        (EvalConfig(max_new_tokens=121), "max_new_tokens=121 after prompts of up to 8 tokens exceeds"),
    ],
)
def test_lengths_beyond_the_policy_context_are_refused(config, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        check_against_policy(config)


def test_lengths_within_the_policy_context_pass():
    check_against_policy(TrainConfig(data="x", max_length=128))
    check_against_policy(PreferenceConfig(max_new_tokens=120))
    check_against_policy(EvalConfig(max_new_tokens=120), eval_pool=256)


def test_fixed_prompts_are_measured_with_the_policy_tokenizer():
    from alignray.world import load_tokenizer

    prompt = "this film " * 20
    tokens = len(load_tokenizer("tiny-imdb")(prompt, add_special_tokens=False)["input_ids"])
    fits = PreferenceConfig(prompts="fixed", fixed_prompts=("short", prompt), max_new_tokens=128 - tokens)
    check_against_policy(fits)
    with pytest.raises(ValueError, match=f"after prompts of up to {tokens} tokens exceeds the 128-token context"):
        check_against_policy(dataclasses.replace(fits, max_new_tokens=129 - tokens))


def test_more_evaluation_prompts_than_the_pool_holds_are_refused():
    from alignray.data.prompts import imdb_prompt_reviews

    pool = len(imdb_prompt_reviews("eval"))
    check_against_policy(EvalConfig(num_prompts=pool))
    with pytest.raises(ValueError, match=f"num_prompts={pool + 1} exceeds the {pool} reviews of the evaluation pool"):
        check_against_policy(EvalConfig(num_prompts=pool + 1))


def test_a_reference_with_another_tokenizer_is_refused(micro_world):
    out, _ = micro_world
    config = EvalConfig(policy=str(out / "policy"), reference="tiny-imdb", max_new_tokens=8)
    with pytest.raises(ValueError, match=f"reference='tiny-imdb' has another tokenizer than policy='{out}/policy'"):
        check_against_policy(config, eval_pool=256)
    check_against_policy(dataclasses.replace(config, reference=str(out / "policy")), eval_pool=256)


@pytest.mark.parametrize(
    ("job", "argv", "message"),
    [
        ("train", ["--data", "tests/conftest.py", "--max-length", "1024"], "max_length=1024 exceeds the 128-token"),
        ("build_preferences", ["--max-new-tokens", "200"], "max_new_tokens=200 after prompts of up to 8 tokens"),
        ("evaluate", ["--num-prompts", "100000"], "num_prompts=100000 exceeds the"),
    ],
)
def test_jobs_refuse_what_the_policy_cannot_hold_before_any_work(job, argv, message):
    import importlib

    main = importlib.import_module(f"jobs.{job}").main
    with pytest.raises(SystemExit, match=re.escape(message)):
        main(argv)


@pytest.mark.parametrize("job", ["sweep", "train", "evaluate", "build_preferences"])
def test_every_jobs_help_prints_every_field(job, capsys):
    import importlib

    main = importlib.import_module(f"jobs.{job}").main
    with pytest.raises(SystemExit) as done:
        main(["--help"])
    assert done.value.code == 0
    out = capsys.readouterr().out
    assert "--seed" in out and "usage:" in out
    if job == "sweep":  # a docstring with a per cent sign: argparse must not read it as a format
        assert "95%" in out


def test_the_sweep_takes_two_objectives_on_the_command_line_each_with_a_direction(capsys):
    from alignray.sweep.config import SweepConfig

    config = parse_config(SweepConfig, ["--objectives", "reward/mean", "kl/ref:min"])
    assert config.objectives == ("reward/mean", "kl/ref:min")
    assert [(o.metric, o.direction) for o in config.objective_pair] == [("reward/mean", "max"), ("kl/ref", "min")]
    for argv, message in [
        (["reward/mean", "kl/ref:down"], "objectives: 'kl/ref:down' has the direction 'down'"),
        (["reward/mean", "diversity/word_entropie"], "did you mean 'diversity/word_entropy'"),
        (["reward/mean"], "gives 1; expected exactly two objectives"),
    ]:
        with pytest.raises(SystemExit):
            parse_config(SweepConfig, ["--objectives", *argv])
        assert message in capsys.readouterr().err


def test_the_bounds_calibration_sweep_the_docs_quote_loads_without_bounds():
    from alignray.sweep.config import SWEEP_PRESETS, SweepConfig

    path = Path(__file__).resolve().parents[1] / "docs" / "calibrate_bounds.yaml"
    config = parse_config(SweepConfig, ["--config", str(path)], presets=SWEEP_PRESETS)
    assert config.max_kl is None and config.max_nonword_increase is None and config.max_garbled_increase is None
    assert (config.sampler, config.num_trials, config.confirmation_prompts) == ("random", 12, 0)
    assert config.learning_rate_max == 2e-3 > SweepConfig().learning_rate_max
