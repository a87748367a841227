import argparse
import dataclasses
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from flink_jobs import config as config_module
from flink_jobs.config import GROUPS, PROFILE_FIELDS, ROOT, Config, ConfigError, choices, cli


def test_defaults_env_and_flags_precedence():
    env = {"PE_KAFKA_BOOTSTRAP": "10.0.0.1:9999", "PE_PARALLELISM": "3"}
    parser = argparse.ArgumentParser()
    Config.add_arguments(parser)
    args = parser.parse_args(["--parallelism", "4"])
    cfg = Config.from_env(env, overrides={k: v for k, v in vars(args).items() if k != "config"})
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


def test_schema_registry_url_is_derived():
    # a remote registry may share a port number with the local stack (Confluent's default is Flink's 8081)
    cfg = Config.from_env({"PE_SCHEMA_REGISTRY_HOST": "registry.internal", "PE_SCHEMA_REGISTRY_PORT": "8081"})
    assert cfg.event_format == "avro"  # today's behaviour unless asked
    assert cfg.schema_registry_url == "http://registry.internal:8081/apis/ccompat/v7"
    confluent_own = Config.from_env({"PE_EVENT_FORMAT": "confluent"}, overrides={"schema_registry_path": ""})
    assert confluent_own.schema_registry_url == "http://127.0.0.1:8085"


def test_readme_config_table_is_current():
    from tools.gen_config_table import table

    assert table() in (ROOT / "README.md").read_text(), "run: python -m tools.gen_config_table"


# ---- invalid values: each stops the program with the setting, its source and what is allowed ------------

CHOICE_MISTAKES = [
    # (env var, bad value, a word the message must show)
    ("PE_DELIVERY_GUARANTEE", "exactly_once", "exactly-once, at-least-once"),
    ("PE_ONNX_PROVIDER", "gpu", "auto, cuda, cpu"),
    ("PE_EXECUTION_MODE", "threads", "thread, process"),
    ("PE_KAFKA_SECURITY_PROTOCOL", "plaintext", "PLAINTEXT, SSL, SASL_SSL, SASL_PLAINTEXT"),
    ("PE_KAFKA_SASL_MECHANISM", "SCRAM-SHA-1", "SCRAM-SHA-512, SCRAM-SHA-256, PLAIN"),
    ("PE_CASSANDRA_CONSISTENCY", "SERIAL", "LOCAL_QUORUM"),
    ("PE_EVENT_FORMAT", "avro-confluent", "avro, confluent"),
]


@pytest.mark.parametrize("var,value,allowed", CHOICE_MISTAKES, ids=[m[0] for m in CHOICE_MISTAKES])
def test_an_unknown_choice_names_the_setting_and_the_allowed_values(var, value, allowed):
    with pytest.raises(ConfigError) as err:
        Config.from_env({var: value})
    msg = str(err.value)
    name = var.removeprefix("PE_").lower()
    assert f"{name} = {value!r} (env {var}): not one of" in msg
    assert allowed in msg


NUMBER_MISTAKES = [
    ("PE_PARALLELISM", "0", "out of range 1..32768"),
    ("PE_MAX_PARALLELISM", "40000", "out of range 1..32768"),
    ("PE_CHECKPOINT_INTERVAL_MS", "5", "out of range >= 10"),
    ("PE_FLINK_REST_PORT", "70000", "out of range 1..65535"),
    ("PE_IDLE_SOURCE_TIMEOUT_MS", "0", "out of range >= 1"),
    ("PE_TOPIC_PARTITIONS", "0", "out of range 1..10000"),
    ("PE_MAX_OUT_OF_ORDERNESS_MS", "-1", "out of range >= 0"),
    ("PE_VALUE_MID_SPEND", "-5", "out of range >= 0"),
    ("PE_PARALLELISM", "two", "not a whole number"),
    ("PE_PARALLELISM", "1.5", "not a whole number"),
    ("PE_VALUE_HIGH_SPEND", "lots", "not a number"),
    ("PE_EMIT_FEATURES", "ture", "not a boolean"),
    ("PE_TOPIC_EVENTS", "user events", "not a Kafka topic name"),
    ("PE_CASSANDRA_KEYSPACE", "my-keyspace", "not a CQL keyspace name"),
    ("PE_KAFKA_BOOTSTRAP", "localhost", "is not host:port"),
    ("PE_MODEL_PATH", " ", "must not be empty"),
    ("PE_SCHEMA_REGISTRY_PORT", "0", "out of range 1..65535"),
    ("PE_SCHEMA_REGISTRY_TIMEOUT_MS", "10", "out of range 100..600000"),
    ("PE_SCHEMA_REGISTRY_HOST", "http://registry:8081", "a host name or address only"),
    ("PE_SCHEMA_REGISTRY_PATH", "apis/ccompat/v7/", "absolute URL path"),
]


@pytest.mark.parametrize("var,value,expected", NUMBER_MISTAKES, ids=[f"{m[0]}={m[1]}" for m in NUMBER_MISTAKES])
def test_a_bad_number_or_name_is_refused_with_the_rule(var, value, expected):
    with pytest.raises(ConfigError) as err:
        Config.from_env({var: value})
    assert f"(env {var})" in str(err.value) and expected in str(err.value)


CROSS_FIELD_MISTAKES = [
    ({"PE_PARALLELISM": "200"}, "parallelism cannot exceed max_parallelism"),
    ({"PE_PARALLELISM": "8", "PE_MAX_PARALLELISM": "4"}, "parallelism cannot exceed max_parallelism"),
    ({"PE_STATE_TTL_MS": "86400000"}, "state_ttl_ms must be 0 (off) or >= idle_expiry_ms"),
    ({"PE_LIFECYCLE_AT_RISK_MS": "999999999999"}, "at-risk must come before dormant"),
    ({"PE_FLUSH_LIVE_PENDING": "300", "PE_FLUSH_MAX_PENDING": "100"}, "the live bound cannot hold back more"),
    ({"PE_VALUE_MID_PURCHASES": "9"}, "the 'medium' tier needs <= the 'high' tier"),
    ({"PE_VALUE_MID_SPEND": "1000"}, "the 'medium' tier needs <= the 'high' tier"),
    ({"PE_PROMETHEUS_PORT": "8081"}, "port 8081 is used twice in the local stack"),
    ({"PE_METRICS_PORT": "9040"}, "port 9042 is used twice in the local stack"),
    ({"PE_SCHEMA_REGISTRY_PORT": "9042"}, "port 9042 is used twice in the local stack"),
    ({"PE_EVENT_FORMAT": "confluent", "PE_SCHEMA_REGISTRY_HOST": " "}, "confluent needs a schema registry"),
    ({"PE_PREDICTION_FORMAT": "confluent", "PE_SCHEMA_REGISTRY_HOST": " "}, "confluent needs a schema registry"),
]


@pytest.mark.parametrize("env,expected", CROSS_FIELD_MISTAKES, ids=[str(m[0]) for m in CROSS_FIELD_MISTAKES])
def test_cross_field_rules(env, expected):
    with pytest.raises(ConfigError) as err:
        Config.from_env(env)
    assert expected in str(err.value)
    for var in env:  # both sides of the rule are named
        assert var.removeprefix("PE_").lower() in str(err.value)


def test_state_ttl_off_and_equal_limits_are_fine():
    Config.from_env({"PE_STATE_TTL_MS": "0"})
    Config.from_env({"PE_PARALLELISM": "128", "PE_MAX_PARALLELISM": "128"})
    Config.from_env({"PE_VALUE_MID_PURCHASES": "5", "PE_VALUE_HIGH_PURCHASES": "5"})


def test_every_mistake_is_reported_at_once():
    with pytest.raises(ConfigError) as err:
        Config.from_env({"PE_DELIVERY_GUARANTEE": "exactly_once", "PE_ONNX_PROVIDER": "gpu", "PE_PARALLELISM": "x",
                         "PE_STATE_TTL_MS": "5"})
    assert len(err.value.problems) == 4, err.value.problems


def test_direct_construction_is_checked_too():
    with pytest.raises(ConfigError, match="delivery_guarantee"):
        Config(delivery_guarantee="exactly_once")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="must be a int, not str"):
        Config(parallelism="2")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="parallelism"):
        dataclasses.replace(Config(), parallelism=0)


def test_a_cli_exits_with_status_2_and_the_message(capsys):
    with pytest.raises(SystemExit) as exit_:
        cli(argparse.ArgumentParser(prog="tool"), ["--delivery-guarantee", "exactly_once"], ("job",))
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert "delivery_guarantee = 'exactly_once' (flag --delivery-guarantee): not one of exactly-once" in err


def test_config_check_command_refuses_a_bad_environment():
    env = {"PATH": "/usr/bin:/bin", "PE_DELIVERY_GUARANTEE": "exactly_once"}
    proc = subprocess.run([sys.executable, "-m", "flink_jobs.config", "--check"], cwd=ROOT, env=env,
                          capture_output=True, text=True)
    assert proc.returncode == 2 and "PE_DELIVERY_GUARANTEE" in proc.stderr and "at-least-once" in proc.stderr


# ---- the YAML file: flag > env > file > default -----------------------------------------------------------


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "pe.yaml"
    path.write_text(textwrap.dedent(text))
    return path


def test_config_file_values_and_precedence(tmp_path):
    path = write(tmp_path, """
        parallelism: 3
        topic-events: from-file          # dashes work as in the flags
        emit_features: true
        value_mid_spend: 50.5
        checkpoint_interval_ms: 7000
        kafka_bootstrap: file-host:9092
    """)
    cfg, sources = Config.resolve(
        env={"PE_PARALLELISM": "2", "PE_KAFKA_BOOTSTRAP": "env-host:9092"},
        overrides={"kafka_bootstrap": "flag-host:9092"},
        config_file=path,
    )
    assert cfg.kafka_bootstrap == "flag-host:9092" and sources["kafka_bootstrap"] == "flag --kafka-bootstrap"
    assert cfg.parallelism == 2 and sources["parallelism"] == "env PE_PARALLELISM"  # env over file
    assert cfg.topic_events == "from-file" and sources["topic_events"] == f"file {path}"  # file over default
    assert cfg.emit_features is True and cfg.value_mid_spend == 50.5 and cfg.checkpoint_interval_ms == 7000
    assert cfg.topic_dlq == "user-events-dlq" and sources["topic_dlq"] == "default"


def test_config_file_from_the_environment_and_from_the_flag(tmp_path):
    path = write(tmp_path, "topic_events: from-file\n")
    assert Config.from_env({"PE_CONFIG_FILE": str(path)}).topic_events == "from-file"
    parser = argparse.ArgumentParser()
    cfg, _ = cli(parser, ["--config", str(path)], ("topics",))
    assert cfg.topic_events == "from-file"


FILE_MISTAKES = [
    ("paralellism: 2\n", "unknown setting 'paralellism'; did you mean parallelism"),
    ("delivery_guarantee: exactly_once\n", "(file {path}): not one of exactly-once, at-least-once"),
    ("parallelism: 2.5\n", "parallelism = 2.5 (file {path}): not a whole number"),
    ("emit_features: maybe\n", "not a boolean"),
    ("parallelism:\n", "parallelism has no value"),
    ("- parallelism: 2\n", "must be a mapping of setting: value"),
    ("parallelism: [1, 2]\n", "not a whole number"),
    ("topic_events: {a: 1}\n", "not a single value"),
    ("parallelism: 2\n  bad indent: [\n", "not valid YAML"),
]


@pytest.mark.parametrize("text,expected", FILE_MISTAKES, ids=[m[0].split(":")[0] for m in FILE_MISTAKES])
def test_config_file_mistakes_name_the_file(tmp_path, text, expected):
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as err:
        Config.from_env({}, config_file=path)
    assert expected.format(path=path) in str(err.value)
    assert str(path) in str(err.value)


def test_a_missing_config_file_is_an_error(tmp_path):
    with pytest.raises(ConfigError, match="cannot read it"):
        Config.from_env({}, config_file=tmp_path / "nope.yaml")


def test_shell_path_needs_no_third_party_module(tmp_path):
    """deploy/lib.sh runs `python3 -m flink_jobs.config --shell` before the venv exists: importing the
    config must need the standard library only, and PyYAML only when a file is given."""
    fake = tmp_path / "no_yaml"
    (fake / "yaml").mkdir(parents=True)
    (fake / "yaml" / "__init__.py").write_text("raise ImportError('PyYAML hidden by the test')\n")
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": f"{fake}:{ROOT}", "PE_PARALLELISM": "2"}
    probe = ("import sys, flink_jobs.config; "
             "print(sorted({m.split('.')[0] for m in sys.modules} - set(sys.stdlib_module_names) - {'__main__'}))")
    # -S: no site-packages, as a bare python3 before `make venv`
    out = subprocess.run([sys.executable, "-S", "-c", probe], cwd=ROOT, env=env, capture_output=True, text=True,
                         check=True)
    assert out.stdout.strip() == "['flink_jobs', 'udfs']", out.stdout
    shell = subprocess.run([sys.executable, "-S", "-m", "flink_jobs.config", "--shell"], cwd=ROOT, env=env,
                           capture_output=True, text=True)
    assert shell.returncode == 0 and "export PE_PARALLELISM=2" in shell.stdout, shell.stderr
    path = write(tmp_path, "parallelism: 2\n")
    with_file = subprocess.run([sys.executable, "-S", "-m", "flink_jobs.config", "--shell", "--config", str(path)],
                               cwd=ROOT, env=env, capture_output=True, text=True)
    assert with_file.returncode == 2 and "needs PyYAML" in with_file.stderr


# ---- option groups: each CLI shows what it uses ------------------------------------------------------------


def test_every_setting_is_in_exactly_one_option_group():
    grouped = [n for _, names in GROUPS.values() for n in names]
    names = [f.name for f in dataclasses.fields(Config)]
    assert sorted(set(names) - set(grouped)) == [], "add the new setting to config.GROUPS"
    assert len([n for n in grouped if n in names]) == len(names), "a setting is in two groups"


def help_of(module: str, *args: str) -> str:
    proc = subprocess.run([sys.executable, "-m", module, *args, "--help"], cwd=ROOT, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


@pytest.mark.parametrize("module,args,shown,hidden", [
    ("tools.replay", (), ["--kafka-bootstrap", "--topic-events", "--file", "Kafka topics:"],
     ["--cassandra-hosts", "--parallelism", "--onnx-provider"]),
    ("tools.tail_predictions", (), ["--topic-predictions"], ["--cassandra-hosts", "--model-path"]),
    ("tools.show_profile", (), ["--cassandra-keyspace"], ["--kafka-bootstrap", "--parallelism"]),
    ("tools.recommend", (), ["--cassandra-keyspace", "--json"], ["--kafka-bootstrap", "--popular-window-ms"]),
    ("flink_jobs.submit", ("start",), ["--popular-window-ms", "--recommend-n"], ["--metrics-port"]),
    ("flink_jobs.submit", ("stop",), ["--flink-rest-host", "--savepoint"], ["--kafka-bootstrap", "--model-path"]),
    ("flink_jobs.submit", ("start",), ["--from-savepoint", "--model-path", "--parallelism"], ["--metrics-port"]),
])
def test_cli_help_shows_only_the_options_it_uses(module, args, shown, hidden):
    text = help_of(module, *args)
    for flag in shown:
        assert flag in text, f"{module}: {flag} missing"
    for flag in hidden:
        assert flag not in text, f"{module}: {flag} shown but not used"
    assert "--config FILE" in text


# ---- one source of the profile settings' defaults -----------------------------------------------------------


def test_training_and_serving_start_from_the_same_profile_settings():
    from udfs.profile import DEFAULT_SETTINGS  # what training's replay uses
    from udfs.settings import ProfileSettings

    serving = Config.from_env({}).profile_settings()  # what the job's operators use
    assert serving == DEFAULT_SETTINGS == ProfileSettings()
    core = {f.name: f for f in dataclasses.fields(ProfileSettings)}
    cfg_fields = {f.name: f for f in dataclasses.fields(Config)}
    for core_name, cfg_name in PROFILE_FIELDS.items():
        assert cfg_fields[cfg_name].default == core[core_name].default, cfg_name
    # every core setting is either a feature parameter (schemas/features.json) or comes from the config
    from udfs import schemas

    params = set(schemas.features_doc()["params"])
    feature_fields = {n for n in core if n in params or n == "windows"}
    assert set(core) - feature_fields == set(PROFILE_FIELDS), "map the new ProfileSettings field in PROFILE_FIELDS"


def test_popularity_and_recommend_settings_take_the_core_defaults_and_reach_the_core():
    from flink_jobs.config import POPULARITY_FIELDS, RECOMMEND_FIELDS
    from udfs.settings import PopularitySettings, RecommendSettings

    cfg = Config()
    for core_cls, mapping in ((PopularitySettings, POPULARITY_FIELDS), (RecommendSettings, RECOMMEND_FIELDS)):
        core = core_cls()
        for core_name, cfg_name in mapping.items():
            if cfg_name != "max_out_of_orderness_ms":  # the job's lateness, shared with the profile
                assert getattr(cfg, cfg_name) == getattr(core, core_name), cfg_name
    env = {"PE_POPULAR_WINDOW_MS": str(6 * 3_600_000), "PE_RECOMMEND_POPULAR_WEIGHT": "0.5",
           "PE_MAX_OUT_OF_ORDERNESS_MS": "1000"}
    c = Config.from_env(env)
    assert c.popularity_settings().window_ms == 6 * 3_600_000 and c.popularity_settings().lateness_ms == 1000
    assert c.recommend_settings().popular_weight == 0.5


@pytest.mark.parametrize("env", [
    {"PE_POPULAR_WINDOW_MS": "5400000"},  # 1.5 slides
    {"PE_POPULAR_SLIDE_MS": "1000000"},  # not a multiple of the 5 min emit interval (nor divides the window)
    {"PE_POPULAR_TOP_ITEMS": "100", "PE_POPULAR_BUCKET_ITEMS": "64"},
])
def test_inconsistent_popularity_windows_are_refused(env):
    with pytest.raises(ConfigError):
        Config.from_env(env)


def test_a_profile_setting_changed_in_the_config_reaches_the_core():
    s = Config.from_env({"PE_MAX_OUT_OF_ORDERNESS_MS": "1000", "PE_VALUE_HIGH_SPEND": "900.5"}).profile_settings()
    assert s.lateness_ms == 1000 and s.value_high_spend == 900.5


def test_choices_agree_with_the_modules_that_use_them():
    from cassandra import ConsistencyLevel

    from flink_jobs.security import MECHANISMS, PROTOCOLS
    from udfs.scorer import PROVIDER_CHOICES

    assert set(choices("kafka_security_protocol")) == set(PROTOCOLS)
    assert set(choices("kafka_sasl_mechanism")) == set(MECHANISMS)
    assert set(choices("onnx_provider")) == set(PROVIDER_CHOICES)
    assert set(choices("cassandra_consistency")) <= set(ConsistencyLevel.name_to_value)
    assert config_module.choices("parallelism") == ()
