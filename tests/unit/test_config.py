import argparse
import dataclasses

import pytest

from flink_jobs.config import Config


def test_defaults_env_and_flags_precedence():
    env = {"PE_KAFKA_BOOTSTRAP": "10.0.0.1:9999", "PE_PARALLELISM": "3"}
    parser = argparse.ArgumentParser()
    Config.add_arguments(parser)
    args = parser.parse_args(["--parallelism", "4"])
    cfg = Config.from_env(env, overrides={k: v for k, v in vars(args).items()})
    assert cfg.kafka_bootstrap == "10.0.0.1:9999"  # env over default
    assert cfg.parallelism == 4  # flag over env
    assert cfg.topic_events == "user-events"  # default


def test_config_is_frozen_and_documented():
    cfg = Config()
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.parallelism = 2  # type: ignore[misc]
    assert all(f.metadata.get("doc") for f in dataclasses.fields(Config))


def test_rest_url_is_derived():
    assert Config.from_env({"PE_FLINK_REST_PORT": "9091"}).flink_rest_url.endswith(":9091")


def test_readme_config_table_is_current():
    from flink_jobs.config import ROOT
    from tools.gen_config_table import table

    assert table() in (ROOT / "README.md").read_text(), "run: python -m tools.gen_config_table"
