import re

import pytest

from alignray.config import TrainConfig, field_docs, parse_config


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
    with pytest.raises(Exception, match="could not determine a constructor"):
        parse_config(TrainConfig, ["--config", str(unsafe)])


def test_missing_data_is_named():
    with pytest.raises(ValueError, match="data='nowhere.parquet' does not exist"):
        TrainConfig(data="nowhere.parquet").validate_data()
