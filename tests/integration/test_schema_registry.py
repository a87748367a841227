"""Shops producing with Confluent's serializer: the Confluent wire format through a real schema
registry (deploy/registry.sh: Apicurio Registry, Confluent-compatible API), Kafka, Flink and Cassandra.

Producers register user_event.avsc (v1) and a v2 that adds an optional field with a default, with
confluent_kafka's AvroSerializer, as a shop's Python producer would. Both kinds of event are applied
exactly as the offline replay says; records of an incompatible writer schema, of an id the registry
does not know and without the Confluent framing land in the DLQ with their reasons. The job writes
its predictions in the same format (prediction_format=confluent): they are read back here with
confluent_kafka's AvroDeserializer, as a consuming team would."""

from __future__ import annotations

import collections
import copy
import json
import struct
import urllib.request
from collections.abc import Iterator

import pytest
from confluent_kafka.schema_registry import SchemaRegistryClient
from confluent_kafka.schema_registry.avro import AvroDeserializer, AvroSerializer
from confluent_kafka.serialization import MessageField, SerializationContext

from flink_jobs.config import Config
from tools import replay
from tools.kafka_io import AvroCodec, collect, producer
from udfs import schemas

from . import drills
from .conftest import isolated, job

N = 1200
N_INCOMPATIBLE = 7


def _registry_up(cfg: Config) -> None:
    try:
        with urllib.request.urlopen(f"{cfg.schema_registry_url}/subjects", timeout=5) as r:
            json.load(r)
    except Exception as exc:  # a missing registry is a failure, never a skip
        pytest.fail(f"no schema registry at {cfg.schema_registry_url} ({exc}); make test starts it, "
                    "by hand: bash deploy/registry.sh start")


def _schema(change) -> str:  # noqa: ANN001 - a function editing the field list
    doc = copy.deepcopy(schemas.avro(schemas.EVENT))
    change(doc["fields"])
    return json.dumps(doc)


def _add_coupon(fields: list) -> None:
    at = next(i for i, f in enumerate(fields) if f["name"] == "category_id") + 1
    fields.insert(at, {"name": "coupon", "type": ["null", "string"], "default": None, "doc": "added in v2"})


def _drop_item_id(fields: list) -> None:
    fields[:] = [f for f in fields if f["name"] != "item_id"]


@pytest.fixture(scope="module")
def cfg() -> Iterator[Config]:
    with isolated(event_format="confluent", prediction_format="confluent") as c:
        _registry_up(c)
        yield c


@pytest.fixture(scope="module")
def outcome(cfg: Config):
    events = replay.load(cfg, "taobao-head", N)
    registry = SchemaRegistryClient({"url": cfg.schema_registry_url})
    subject = SerializationContext(cfg.topic_events, MessageField.VALUE)  # subject <topic>-value
    v1 = AvroSerializer(registry, schemas.avro_text(schemas.EVENT))
    v2 = AvroSerializer(registry, _schema(_add_coupon))
    # a producer that dropped a field the job requires; the registry's NONE compatibility lets it register
    old = AvroSerializer(registry, _schema(_drop_item_id))
    p = producer(cfg)
    sent = collections.Counter()
    with job(cfg) as job_id:
        for i, ev in enumerate(events):  # v1 and v2 interleaved, in the replay's order
            record = ev._asdict()
            if i % 2:
                record["coupon"] = f"c-{i}" if i % 3 else None
            value = (v2 if i % 2 else v1)(record, subject)
            sent["v2" if i % 2 else "v1"] += 1
            p.produce(cfg.topic_events, key=ev.user_id.encode(), value=value)
            p.poll(0)
        for i, ev in enumerate(events[:N_INCOMPATIBLE]):
            record = {k: v for k, v in ev._asdict().items() if k != "item_id"} | {"event_id": f"old-{i}"}
            p.produce(cfg.topic_events, key=b"k", value=old(record, subject))
        unknown = registry.get_latest_version(f"{cfg.topic_events}-value").schema_id + 10_000
        p.produce(cfg.topic_events, key=b"k", value=b"\0" + struct.pack(">I", unknown) + b"\2x")
        p.produce(cfg.topic_events, key=b"k", value=AvroCodec(schemas.EVENT).encode(events[0]._asdict()))
        assert p.flush(60) == 0
        preds = collect(cfg, cfg.topic_predictions, N, timeout_s=300, settle_s=6)
        dead = collect(cfg, cfg.topic_dlq, N_INCOMPATIBLE + 2, timeout_s=60, settle_s=3)
        failures = drills.exception_history(cfg, job_id)
    versions = registry.get_versions(f"{cfg.topic_events}-value")
    predictions_schema = registry.get_latest_version(f"{cfg.topic_predictions}-value").schema.schema_str
    return dict(events=events, sent=sent, preds=preds, dead=dead, versions=versions,
                failures=failures, predictions_schema=predictions_schema,
                unknown=unknown)


def test_v1_and_v2_events_are_applied_exactly_as_the_offline_replay(cfg, outcome):
    assert outcome["sent"] == {"v1": N // 2, "v2": N // 2}
    assert len(outcome["versions"]) == 3, "v1, v2 and the incompatible schema are registered"
    ctx = SerializationContext(cfg.topic_predictions, MessageField.VALUE)
    reader = AvroDeserializer(SchemaRegistryClient({"url": cfg.schema_registry_url}))
    preds = [reader(m.value(), ctx) for m in outcome["preds"]]
    assert len(preds) == N
    drills.assert_exact(cfg, drills.offline(cfg, outcome["events"]), preds)


def test_predictions_are_in_the_wire_format_under_their_subject(outcome):
    assert all(m.value()[:1] == b"\0" for m in outcome["preds"])
    assert json.loads(outcome["predictions_schema"])["fields"] == schemas.avro(schemas.PREDICTION)["fields"]


def test_incompatible_unknown_and_unframed_records_are_dead_lettered_with_their_reason(outcome):
    dead = drills.decode(outcome["dead"], schemas.DEAD_LETTER)
    reasons = collections.Counter(d["reason"] for d in dead)
    assert reasons == {"schema_incompatible": N_INCOMPATIBLE, "unknown_schema_id": 1, "bad_magic_byte": 1}, dead
    incompatible = [d for d in dead if d["reason"] == "schema_incompatible"]
    assert all("item_id: required" in d["detail"] for d in incompatible), incompatible[0]["detail"]
    unknown = next(d for d in dead if d["reason"] == "unknown_schema_id")
    assert f"schema id {outcome['unknown']} " in unknown["detail"]


def test_nothing_failed_the_job(outcome):
    # the registry answered throughout: bad records are data, never a reason to fail the source task
    assert outcome["failures"] == []
