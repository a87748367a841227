"""Offline checks of deploy/: Kubernetes manifests, the job image definition and the monitoring config.

- FlinkDeployments validate against the operator's CRD schema (vendored excerpt in deploy/k8s/crds/,
  see its SOURCE.md), strictly: a field the CRD does not know fails here, because Kubernetes would
  silently prune it. Then what the schema cannot say: HA, shared checkpoint storage, savepoint
  upgrades, thread mode, the PythonDriver running flink_jobs/profile_job.py, PE_* config from a
  ConfigMap that agrees with the deployment, no secrets in args or Flink config, GPU resources.
- Kafka and Cassandra: replication 3, min.insync.replicas 2, NetworkTopologyStrategy, LOCAL_QUORUM.
- deploy/image/Dockerfile, statically (no Docker engine here): every COPY source is in the repo or
  made by a named make target, versions agree with requirements/pom, no floating tags.
- deploy/monitoring/alerts.yml: rule structure, every metric name is one Flink or the job exports.
Each checker returns a list of problems; the tests also feed deliberately broken copies to prove the
checks can fail.
"""

from __future__ import annotations

import copy
import re
import xml.etree.ElementTree as ET
import zipfile
from importlib.util import find_spec
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from flink_jobs.config import Config

ROOT = Path(__file__).resolve().parents[2]
K8S = ROOT / "deploy" / "k8s"
CRD = K8S / "crds" / "flinkdeployments.flink.apache.org-v1.yml"
DOCKERFILE = ROOT / "deploy" / "image" / "Dockerfile"
MONITORING = ROOT / "deploy" / "monitoring"
IMAGE_ROOT = "/opt/profile-engine"  # where the Dockerfile puts the repository's files
JOB_MODULE = "flink_jobs/profile_job.py"
SHARED_FS = ("s3://", "s3a://", "s3p://", "gs://", "abfss://", "oss://", "hdfs://")
SECRET_WORDS = re.compile(r"secret|password|passwd|token|access[-_.]?key|credential", re.I)


# --------------------------------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------------------------------
def pinned(path: Path, name: str) -> str:
    """Version pinned as name==version in a requirements file."""
    for line in path.read_text(encoding="utf-8").splitlines():
        m = re.fullmatch(rf"{re.escape(name)}==(\S+)", line.strip(), flags=re.I)
        if m:
            return m.group(1)
    raise AssertionError(f"{name} is not pinned in {path.name}")


FLINK_VERSION = pinned(ROOT / "requirements.txt", "apache-flink")
FLINK_ENUM = "v{}_{}".format(*FLINK_VERSION.split(".")[:2])  # 2.2.1 -> v2_2


def pom_value(pom: Path, tag: str) -> str:
    ns = {"m": "http://maven.apache.org/POM/4.0.0"}
    node = ET.parse(pom).getroot().find(f"m:{tag}", ns)
    assert node is not None and node.text, f"no {tag} in {pom}"
    return node.text.strip()


def pom_property(pom: Path, name: str) -> str:
    return pom_value(pom, f"properties/m:{name}")


def manifests() -> list[tuple[Path, dict[str, Any]]]:
    out = []
    for path in sorted(K8S.rglob("*.yaml")):
        if "crds" in path.parts:
            continue
        for doc in yaml.safe_load_all(path.read_text(encoding="utf-8")):
            if doc:
                out.append((path, doc))
    return out


def of_kind(kind: str) -> list[tuple[Path, dict[str, Any]]]:
    return [(p, d) for p, d in manifests() if d.get("kind") == kind]


def configmaps() -> dict[str, dict[str, str]]:
    return {d["metadata"]["name"]: d.get("data", {}) for _, d in of_kind("ConfigMap")}


def secrets() -> set[str]:
    return {d["metadata"]["name"] for _, d in of_kind("Secret")}


def flink_deployments() -> list[tuple[Path, dict[str, Any]]]:
    found = of_kind("FlinkDeployment")
    assert found, "no FlinkDeployment in deploy/k8s"
    return found


# --------------------------------------------------------------------------------------------------
# FlinkDeployment: schema
# --------------------------------------------------------------------------------------------------
def strict(schema: Any) -> Any:
    """The CRD schema with additionalProperties: false on every object that lists its properties and
    does not keep unknown fields: the API server prunes unknown fields silently, we fail instead."""
    if isinstance(schema, dict):
        out = {k: strict(v) for k, v in schema.items()}
        if (
            "properties" in out
            and "additionalProperties" not in out
            and not out.get("x-kubernetes-preserve-unknown-fields")
        ):
            out["additionalProperties"] = False
        return out
    if isinstance(schema, list):
        return [strict(v) for v in schema]
    return schema


def spec_validator() -> jsonschema.Draft7Validator:
    crd = yaml.safe_load(CRD.read_text(encoding="utf-8"))
    assert crd["spec"]["names"]["kind"] == "FlinkDeployment"
    version = next(v for v in crd["spec"]["versions"] if v["name"] == "v1beta1")
    schema = strict(version["schema"]["openAPIV3Schema"]["properties"]["spec"])
    jsonschema.Draft7Validator.check_schema(schema)
    return jsonschema.Draft7Validator(schema)


VALIDATOR = spec_validator()


def schema_problems(doc: dict[str, Any]) -> list[str]:
    problems = []
    if doc.get("apiVersion") != "flink.apache.org/v1beta1":
        problems.append(f"apiVersion {doc.get('apiVersion')!r}")
    for err in VALIDATOR.iter_errors(doc.get("spec", {})):
        problems.append(f"spec.{'.'.join(map(str, err.absolute_path))}: {err.message}")
    return problems


# --------------------------------------------------------------------------------------------------
# FlinkDeployment: what the schema cannot say
# --------------------------------------------------------------------------------------------------
def containers(pod_template: dict[str, Any] | None) -> list[dict[str, Any]]:
    return ((pod_template or {}).get("spec") or {}).get("containers") or []


def main_container(pod_template: dict[str, Any] | None) -> dict[str, Any]:
    for c in containers(pod_template):
        if c.get("name") == "flink-main-container":
            return c
    return {}


def effective_env(doc: dict[str, Any], cms: dict[str, dict[str, str]], role: str) -> dict[str, str]:
    """PE_* values a JobManager/TaskManager container sees: envFrom in order (later wins), then env."""
    env: dict[str, str] = {}
    spec = doc["spec"]
    for template in (spec.get("podTemplate"), (spec.get(role) or {}).get("podTemplate")):
        c = main_container(template)
        for src in c.get("envFrom", []):
            if "configMapRef" in src:
                env.update(cms.get(src["configMapRef"]["name"], {}))
        for item in c.get("env", []):
            env[item["name"]] = str(item.get("value", ""))
    return env


def flink_problems(doc: dict[str, Any], cms: dict[str, dict[str, str]], known_secrets: set[str]) -> list[str]:
    p: list[str] = []
    spec = doc.get("spec", {})
    conf: dict[str, Any] = spec.get("flinkConfiguration", {})
    job = spec.get("job", {})

    def want(key: str, value: str) -> None:
        if conf.get(key) != value:
            p.append(f"flinkConfiguration {key} = {conf.get(key)!r}, want {value!r}")

    image = spec.get("image", "")
    if ":" not in image.rsplit("/", 1)[-1] and "@sha256:" not in image:
        p.append(f"image {image!r} has no tag")
    if image.endswith(":latest"):
        p.append("image uses :latest")
    if spec.get("flinkVersion") != FLINK_ENUM:
        p.append(f"flinkVersion {spec.get('flinkVersion')} != {FLINK_ENUM} (apache-flink=={FLINK_VERSION})")

    # application mode through the PythonDriver, running the job module of this repository
    if job.get("entryClass") != "org.apache.flink.client.python.PythonDriver":
        p.append(f"job.entryClass {job.get('entryClass')!r}")
    if job.get("jarURI") != f"local:///opt/flink/lib/flink-python-{FLINK_VERSION}.jar":
        p.append(f"job.jarURI {job.get('jarURI')!r} is not flink-python {FLINK_VERSION} in lib/")
    args = job.get("args", [])
    if args[:2] != ["-py", f"{IMAGE_ROOT}/{JOB_MODULE}"]:
        p.append(f"job.args {args} do not run {IMAGE_ROOT}/{JOB_MODULE}")
    if any(SECRET_WORDS.search(a) for a in args):
        p.append("job.args carry something that looks like a credential")
    if job.get("upgradeMode") != "savepoint":
        p.append(f"job.upgradeMode {job.get('upgradeMode')!r}, want savepoint")

    # state, HA, checkpoints and savepoints on a shared file system
    want("state.backend.type", "rocksdb")
    want("execution.checkpointing.incremental", "true")
    want("high-availability.type", "kubernetes")
    for key in ("high-availability.storageDir", "execution.checkpointing.dir", "execution.checkpointing.savepoint-dir"):
        if not str(conf.get(key, "")).startswith(SHARED_FS):
            p.append(f"{key} = {conf.get(key)!r} is not on a shared file system")
    want("python.execution-mode", "thread")
    want("classloader.parent-first-patterns.additional", "pemja.")
    for key in ("python.executable", "python.client.executable"):
        if not str(conf.get(key, "")).endswith("python3.11"):
            p.append(f"{key} = {conf.get(key)!r} is not the image's Python 3.11")
    for key, value in conf.items():
        if SECRET_WORDS.search(key) or SECRET_WORDS.search(str(value)):
            p.append(f"flinkConfiguration {key} looks like a credential: use the Secret")

    # config from the ConfigMap, credentials from the Secret, for both roles
    for role in ("jobManager", "taskManager"):
        refs = [
            src
            for t in (spec.get("podTemplate"), (spec.get(role) or {}).get("podTemplate"))
            for src in main_container(t).get("envFrom", [])
        ]
        cm_refs = [r["configMapRef"]["name"] for r in refs if "configMapRef" in r]
        secret_refs = [r["secretRef"]["name"] for r in refs if "secretRef" in r]
        if not cm_refs:
            p.append(f"{role}: no envFrom configMapRef")
        if not secret_refs:
            p.append(f"{role}: no envFrom secretRef")
        p += [f"{role}: ConfigMap {n} not in deploy/k8s" for n in cm_refs if n not in cms]
        p += [f"{role}: Secret {n} not in deploy/k8s" for n in secret_refs if n not in known_secrets]
    jm_env = effective_env(doc, cms, "jobManager")  # the job is built (and its Config read) here
    parallelism = job.get("parallelism")
    if jm_env.get("PE_PARALLELISM") != str(parallelism):
        p.append(f"PE_PARALLELISM {jm_env.get('PE_PARALLELISM')!r} != job.parallelism {parallelism}")
    if jm_env.get("PE_MAX_PARALLELISM", str(Config.max_parallelism)) != conf.get("pipeline.max-parallelism"):
        p.append(f"PE_MAX_PARALLELISM {jm_env.get('PE_MAX_PARALLELISM')!r} != pipeline.max-parallelism "
                 f"{conf.get('pipeline.max-parallelism')!r}: the job sets its own key groups from it")
    if jm_env.get("PE_EXECUTION_MODE", "thread") != conf.get("python.execution-mode"):
        p.append("PE_EXECUTION_MODE differs from python.execution-mode")
    max_par = int(conf.get("pipeline.max-parallelism", "0"))
    if not isinstance(parallelism, int) or not 0 < parallelism <= max_par:
        p.append(f"job.parallelism {parallelism} not in 1..pipeline.max-parallelism ({max_par})")
    slots = int(conf.get("taskmanager.numberOfTaskSlots", "1"))
    cpu = (spec.get("taskManager") or {}).get("resource", {}).get("cpu", 0)
    if cpu < slots:
        p.append(f"taskManager cpu {cpu} < {slots} slots: each Python operator needs its core")
    if conf.get("python.execution-mode") == "thread" and slots != 1:
        p.append(f"{slots} slots per TaskManager: thread-mode Python operators of one process share one GIL, "
                 "so a second slot adds no Python throughput (docs/OPERATIONS.md); use 1 slot, more TaskManagers")

    # GPU variant: GPUs on the TaskManagers and the CUDA provider where the job is built
    tm = main_container((spec.get("taskManager") or {}).get("podTemplate"))
    gpus = int(((tm.get("resources") or {}).get("limits") or {}).get("nvidia.com/gpu", 0))
    provider = jm_env.get("PE_ONNX_PROVIDER", "auto")
    if gpus and provider != "cuda":
        p.append(f"GPU TaskManagers but PE_ONNX_PROVIDER={provider!r}: would score on the CPU unnoticed")
    if provider == "cuda" and not gpus:
        p.append("PE_ONNX_PROVIDER=cuda without nvidia.com/gpu on the TaskManagers")
    if gpus and not image.endswith("-gpu"):
        p.append(f"GPU TaskManagers with the CPU image {image}")
    return p


def test_crd_excerpt_is_the_flinkdeployment_schema() -> None:
    crd = yaml.safe_load(CRD.read_text(encoding="utf-8"))
    spec = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]["properties"]
    assert {"job", "jobManager", "taskManager", "flinkConfiguration", "flinkVersion", "image"} <= set(spec)
    assert spec["job"]["properties"]["upgradeMode"]["enum"] == ["last-state", "savepoint", "stateless"]
    assert FLINK_ENUM in spec["flinkVersion"]["enum"]
    assert "Apache License 2.0" in CRD.read_text(encoding="utf-8")


@pytest.mark.parametrize("path", sorted({p.name for p, _ in flink_deployments()}))
def test_flink_deployment(path: str) -> None:
    doc = next(d for p, d in flink_deployments() if p.name == path)
    assert schema_problems(doc) == []
    assert flink_problems(doc, configmaps(), secrets()) == []


def test_cpu_and_gpu_variants_exist() -> None:
    gpu = [
        d for _, d in flink_deployments()
        if main_container(d["spec"].get("taskManager", {}).get("podTemplate"))
        .get("resources", {}).get("limits", {}).get("nvidia.com/gpu")
    ]
    assert len(gpu) == 1 and len(flink_deployments()) == 2


BROKEN: list[tuple[str, Any]] = [
    ("upgradeMode savepoints", lambda d: d["spec"]["job"].update(upgradeMode="savepoints")),
    ("misspelt field", lambda d: d["spec"]["job"].update(upgradeMod="savepoint")),
    ("unknown top-level field", lambda d: d["spec"].update(taskManagers={"replicas": 2})),
    ("config value not a string", lambda d: d["spec"]["flinkConfiguration"].update({"parallelism.default": 4})),
    ("parallelism not an integer", lambda d: d["spec"]["job"].update(parallelism="4")),
    ("unknown flinkVersion", lambda d: d["spec"].update(flinkVersion="v3_0")),
]


@pytest.mark.parametrize("name,breaks", BROKEN, ids=[b[0] for b in BROKEN])
def test_schema_rejects_broken_copy(name: str, breaks: Any) -> None:
    doc = copy.deepcopy(flink_deployments()[0][1])
    breaks(doc)
    assert schema_problems(doc), name


SEMANTIC_BREAKS: list[tuple[str, Any]] = [
    ("last-state upgrades", lambda d, c: d["spec"]["job"].update(upgradeMode="last-state")),
    ("local checkpoints", lambda d, c: d["spec"]["flinkConfiguration"].update(
        {"execution.checkpointing.dir": "file:///tmp/checkpoints"})),
    ("no HA", lambda d, c: d["spec"]["flinkConfiguration"].pop("high-availability.type")),
    ("process mode", lambda d, c: d["spec"]["flinkConfiguration"].update({"python.execution-mode": "process"})),
    ("parallelism disagrees with PE_PARALLELISM", lambda d, c: d["spec"]["job"].update(parallelism=3)),
    ("key groups disagree with pipeline.max-parallelism",
     lambda d, c: [cm.update(PE_MAX_PARALLELISM="128") for cm in c.values()]),
    ("secret in args", lambda d, c: d["spec"]["job"]["args"].extend(["--cassandra-password", "x"])),
    ("secret in flink config", lambda d, c: d["spec"]["flinkConfiguration"].update({"s3.secret-key": "x"})),
    ("latest image", lambda d, c: d["spec"].update(image="profile-engine:latest")),
    ("wrong job module", lambda d, c: d["spec"]["job"].update(args=["-py", "/opt/job.py"])),
    ("missing ConfigMap", lambda d, c: c.clear()),
]


@pytest.mark.parametrize("name,breaks", SEMANTIC_BREAKS, ids=[b[0] for b in SEMANTIC_BREAKS])
def test_checks_reject_broken_copy(name: str, breaks: Any) -> None:
    doc = copy.deepcopy(flink_deployments()[0][1])
    cms = copy.deepcopy(configmaps())
    breaks(doc, cms)
    assert flink_problems(doc, cms, secrets()), name


def test_gpu_variant_without_cuda_provider_is_rejected() -> None:
    doc = next(d for p, d in flink_deployments() if "gpu" in p.name)
    cms = copy.deepcopy(configmaps())
    for data in cms.values():
        data.pop("PE_ONNX_PROVIDER", None)
    assert any("PE_ONNX_PROVIDER" in m for m in flink_problems(doc, cms, secrets()))


# --------------------------------------------------------------------------------------------------
# ConfigMaps, Secrets, the other manifests
# --------------------------------------------------------------------------------------------------
def test_every_manifest_is_well_formed() -> None:
    seen: set[tuple[str, str, str]] = set()
    for path, doc in manifests():
        assert {"apiVersion", "kind", "metadata"} <= set(doc), path
        meta = doc["metadata"]
        assert meta.get("name"), path
        if doc["kind"] != "Namespace":
            assert meta.get("namespace"), f"{path}: {doc['kind']} {meta['name']} has no namespace"
        key = (doc["kind"], meta.get("namespace", ""), meta["name"])
        if doc["kind"] != "FlinkDeployment":  # the CPU and GPU variants are alternatives
            assert key not in seen, f"{path}: {key} defined twice"
        seen.add(key)


def test_configmaps_hold_only_real_config_fields_and_no_secrets() -> None:
    fields = {Config.env_var(n) for n in Config.__dataclass_fields__}
    for name, data in configmaps().items():
        for key, value in data.items():
            assert key in fields, f"ConfigMap {name}: {key} is not a field of flink_jobs/config.py"
            assert isinstance(value, str), f"ConfigMap {name}: {key} must be a quoted string"
            assert not SECRET_WORDS.search(key), f"ConfigMap {name}: {key} belongs in a Secret"
        if data:  # every value parses as the field's type
            Config.from_env({k: v for k, v in data.items()})


def test_secret_example_holds_no_values() -> None:
    for _, doc in of_kind("Secret"):
        values = {**doc.get("stringData", {}), **doc.get("data", {})}
        assert values and all(v in ("", None) for v in values.values()), "commit no credentials"


# --------------------------------------------------------------------------------------------------
# Kafka and Cassandra
# --------------------------------------------------------------------------------------------------
def base_config() -> dict[str, str]:
    return configmaps()["profile-engine-config"]


def test_kafka_cluster_replicates() -> None:
    (_, kafka), = of_kind("Kafka")
    conf = kafka["spec"]["kafka"]["config"]
    assert conf["default.replication.factor"] >= 3 and conf["min.insync.replicas"] == 2
    assert conf["offsets.topic.replication.factor"] >= 3
    assert conf["transaction.state.log.replication.factor"] >= 3 and conf["transaction.state.log.min.isr"] >= 2
    assert conf["unclean.leader.election.enable"] is False
    brokers = sum(p["spec"]["replicas"] for _, p in of_kind("KafkaNodePool") if "broker" in p["spec"]["roles"])
    assert brokers >= 3
    assert kafka["spec"]["kafka"]["version"] == pom_property(ROOT / "deploy/maven/kafka/pom.xml", "kafka.version")


def test_kafka_topics_cover_the_config() -> None:
    cfg = base_config()
    topics = {d["metadata"]["name"]: d["spec"] for _, d in of_kind("KafkaTopic")}
    wanted = {cfg[k] for k in ("PE_TOPIC_EVENTS", "PE_TOPIC_PREDICTIONS", "PE_TOPIC_DLQ", "PE_TOPIC_LATE",
                               "PE_TOPIC_MODELS", "PE_TOPIC_SHADOW_SCORES")}
    assert wanted == set(topics)
    models = topics[cfg["PE_TOPIC_MODELS"]]
    assert models["partitions"] == 1 and models["config"]["cleanup.policy"] == "compact"
    assert models["config"]["retention.ms"] == -1
    for name, spec in topics.items():
        assert spec["replicas"] >= 3, name
        assert 2 <= spec["config"]["min.insync.replicas"] < spec["replicas"], name
    max_parallelism = max(d["spec"]["job"]["parallelism"] for _, d in flink_deployments())
    assert topics[cfg["PE_TOPIC_EVENTS"]]["partitions"] >= max_parallelism, "idle source subtasks"
    assert topics[cfg["PE_TOPIC_EVENTS"]]["partitions"] == int(cfg["PE_TOPIC_PARTITIONS"])


def test_cassandra_keyspace_and_consistency() -> None:
    cfg = base_config()
    (_, dc), = of_kind("CassandraDatacenter")
    assert dc["spec"]["size"] >= 3
    assert dc["spec"]["serverVersion"] == pom_property(ROOT / "deploy/maven/cassandra/pom.xml", "cassandra.version")
    rf = int(cfg["PE_CASSANDRA_REPLICATION"])
    assert rf == 3 and cfg["PE_CASSANDRA_CONSISTENCY"] == "LOCAL_QUORUM"
    cql = (K8S / "cassandra" / "keyspace.cql").read_text(encoding="utf-8")
    m = re.search(r"CREATE KEYSPACE IF NOT EXISTS (\w+)\s+WITH replication = \{([^}]*)\}", cql)
    assert m, "no CREATE KEYSPACE in keyspace.cql"
    assert m.group(1) == cfg["PE_CASSANDRA_KEYSPACE"]
    assert "'NetworkTopologyStrategy'" in m.group(2) and f"'{dc['metadata']['name']}': {rf}" in m.group(2)
    (_, job), = [(p, d) for p, d in of_kind("Job") if d["metadata"]["name"] == "profile-engine-cassandra-schema"]
    script = job["spec"]["template"]["spec"]["containers"][0]["command"][-1]
    assert "NetworkTopologyStrategy" in script and f"'{dc['metadata']['name']}'" in script


# --------------------------------------------------------------------------------------------------
# Dockerfile
# --------------------------------------------------------------------------------------------------
# git-ignored inputs of the image and the make target that produces each
GENERATED = {
    ".run/lib/flink/": "jars",
    "artifacts/propensity.onnx": "model",
    "artifacts/segments.onnx": "model",
}


def instructions(text: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with line continuations joined and comments dropped."""
    out, buf = [], ""
    for line in text.splitlines():
        if not buf and (not line.strip() or line.lstrip().startswith("#")):
            continue
        if line.rstrip().endswith("\\"):
            buf += line.rstrip()[:-1] + " "
            continue
        buf += line
        word, _, rest = buf.strip().partition(" ")
        out.append((word.upper(), rest.strip()))
        buf = ""
    return out


def dockerfile_problems(text: str) -> list[str]:
    p: list[str] = []
    ins = instructions(text)
    args = dict(re.findall(r"^(\w+)=(\S+)$", "\n".join(a for i, a in ins if i == "ARG"), re.M))
    stages = set()
    for i, a in ins:
        if i != "FROM":
            continue
        image, _, alias = a.partition(" AS ")
        image = re.sub(r"\$\{(\w+)\}", lambda m: args.get(m.group(1), m.group(0)), image.strip())
        stages.add(alias.strip())
        if image in stages:
            continue
        if ":" not in image.rsplit("/", 1)[-1] and "@sha256:" not in image:
            p.append(f"FROM {image}: no tag")
        if image.endswith(":latest") or "$" in image:
            p.append(f"FROM {image}: floating or unresolved")
    if any(":latest" in a for _, a in ins):
        p.append(":latest used")
    flink = args.get("FLINK_IMAGE", "")
    if not flink.startswith(f"flink:{FLINK_VERSION}-") or "java17" not in flink:
        p.append(f"FLINK_IMAGE {flink!r} is not Flink {FLINK_VERSION} on Java 17")
    if args.get("FLINK_VERSION") != FLINK_VERSION:
        p.append(f"ARG FLINK_VERSION {args.get('FLINK_VERSION')} != apache-flink {FLINK_VERSION}")
    if not re.fullmatch(r"python:3\.11\.\d+-\S+", args.get("PYTHON_IMAGE", "")):
        p.append(f"PYTHON_IMAGE {args.get('PYTHON_IMAGE')!r} is not a pinned Python 3.11")
    gpu = args.get("ONNXRUNTIME_GPU_VERSION", "")
    if not re.fullmatch(r"\d+\.\d+\.\d+", gpu):
        p.append("onnxruntime-gpu version is not pinned")

    makefile = (ROOT / "Makefile").read_text(encoding="utf-8")
    dockerignore = (DOCKERFILE.parent / "Dockerfile.dockerignore").read_text(encoding="utf-8")
    for i, a in ins:
        if i not in ("COPY", "ADD"):
            continue
        if i == "ADD":
            p.append("ADD: use COPY")
        parts = [w for w in a.split() if not w.startswith("--")]
        if any(w.startswith("--from") for w in a.split()):
            continue
        for src in parts[:-1]:
            if src in GENERATED:
                if not re.search(rf"^{GENERATED[src]}:", makefile, re.M):
                    p.append(f"COPY {src}: make target {GENERATED[src]} is gone")
            elif not (ROOT / src).exists():
                p.append(f"COPY {src}: not in the repository and made by no known make target")
            if f"!{src.rstrip('/')}" not in dockerignore and f"!{src}" not in dockerignore and not (
                src.startswith(".run/") and "!.run/lib/flink/*.jar" in dockerignore
            ):
                p.append(f"COPY {src}: excluded by Dockerfile.dockerignore")

    # the jars of `make jars`, by the names the pom gives them
    pom = ROOT / "jvm" / "pom.xml"
    glue = f"{pom_value(pom, 'artifactId')}-{pom_value(pom, 'version')}.jar"
    connector = f"flink-connector-kafka-{pom_property(pom, 'flink.kafka.connector.version')}.jar"
    for jar in (glue, connector):
        if f"run/lib/flink/{jar}" not in text:
            p.append(f"the image does not check for {jar} (jvm/pom.xml)")
    if "flink-python-${FLINK_VERSION}.jar lib/" not in text:
        p.append("flink-python is not copied into Flink's lib/ (pemja parent-first)")
    if "pemja." not in (ROOT / "deploy/conf/flink/config.yaml.template").read_text(encoding="utf-8"):
        p.append("local Flink config lost its pemja parent-first pattern")
    if "requirements.lock" not in text or "-c /tmp/requirements.lock" not in text:
        p.append("Python packages are not installed with the lock file")
    pythonpath = re.search(r"PYTHONPATH=(\S+)", text)
    if not pythonpath or f"{IMAGE_ROOT}/deploy/taskmanager_python" not in pythonpath.group(1).split(":"):
        p.append("sitecustomize preload is not on PYTHONPATH")
    run_dir = re.search(r"PE_RUN_DIR=(\S+)", text)
    if not run_dir or f"COPY .run/lib/flink/ {run_dir.group(1)}/lib/flink/" not in text:
        p.append("job jars are not under $PE_RUN_DIR/lib/flink, where flink_jobs/connectors.py looks")
    return p


def test_dockerfile() -> None:
    assert dockerfile_problems(DOCKERFILE.read_text(encoding="utf-8")) == []
    assert Config().run_dir == ".run", "GENERATED assumes make jars writes into .run/lib/flink"
    assert re.search(r"^onnxruntime==", (ROOT / "requirements.txt").read_text(), re.M)
    assert re.search(r"^onnxruntime==", (ROOT / "requirements.lock").read_text(), re.M)


def test_kafka_clients_jar_matches_the_connector() -> None:
    """kafka-clients comes with the connector: the image checks the version `make jars` copies."""
    text = DOCKERFILE.read_text(encoding="utf-8")
    named = re.search(r"kafka-clients-([\d.]+)\.jar", text)
    assert named
    built = sorted((ROOT / ".run" / "lib" / "flink").glob("kafka-clients-*.jar"))
    if not built:
        pytest.skip("no `make jars` output to compare with")
    assert built[-1].name == f"kafka-clients-{named.group(1)}.jar"


DOCKER_BREAKS = [
    ("latest base", lambda t: t.replace("ARG FLINK_IMAGE=flink:2.2.1", "ARG FLINK_IMAGE=flink:latest #")),
    ("unpinned python", lambda t: t.replace("python:3.11.14-slim-bookworm", "python:3-slim")),
    ("missing source", lambda t: t.replace("COPY udfs/ udfs/", "COPY udfz/ udfs/")),
    ("untracked source", lambda t: t.replace("COPY udfs/ udfs/", "COPY .run/data/ data/")),
    ("no lock", lambda t: t.replace("-c /tmp/requirements.lock", "")),
    ("wrong flink", lambda t: t.replace("ARG FLINK_VERSION=2.2.1", "ARG FLINK_VERSION=2.3.0")),
    ("glue renamed", lambda t: t.replace("profile-engine-glue-0.1.0.jar", "glue.jar")),
    ("no preload", lambda t: t.replace("PYTHONPATH=/opt/profile-engine/deploy/taskmanager_python:", "PYTHONPATH=")),
    ("jars elsewhere", lambda t: t.replace(".run/lib/flink/ /opt/profile-engine/run", ".run/lib/flink/ /opt/x")),
    ("flink-python not in lib", lambda t: t.replace("cp opt/flink-python-${FLINK_VERSION}.jar lib/", "true")),
]


@pytest.mark.parametrize("name,breaks", DOCKER_BREAKS, ids=[b[0] for b in DOCKER_BREAKS])
def test_dockerfile_checks_reject_broken_copy(name: str, breaks: Any) -> None:
    text = DOCKERFILE.read_text(encoding="utf-8")
    broken = breaks(text)
    assert broken != text, f"{name}: the replacement no longer applies"
    assert dockerfile_problems(broken), name


# --------------------------------------------------------------------------------------------------
# Monitoring
# --------------------------------------------------------------------------------------------------
# Every metric the alerts may use, with where it comes from. Flink names are the Prometheus reporter's
# rendering of Flink's built-in metrics (scope + name, '.' -> '_'): docs "Metrics", system metrics.
FLINK_METRICS = {
    "flink_jobmanager_job_numRestarts": "job: restarts since the job was submitted",
    "flink_jobmanager_job_numberOfFailedCheckpoints": "job: failed checkpoints",
    "flink_jobmanager_job_numberOfCompletedCheckpoints": "job: completed checkpoints",
    "flink_taskmanager_job_task_operator_numRecordsIn": "operator: records in",
    "flink_taskmanager_job_task_operator_numRecordsOut": "operator: records out",
    "flink_taskmanager_job_task_operator_pendingRecords": "source (FLIP-33, KafkaSource): records not yet read",
}
JOB_COUNTER_PREFIX = "flink_taskmanager_job_task_operator_profile_engine_"  # group profile_engine
EXPORTER_METRICS = {"kafka_consumergroup_lag": "Strimzi Kafka Exporter: lag per group/topic/partition"}
PROMQL_WORDS = {
    "sum", "rate", "increase", "clamp_min", "max", "min", "avg", "count", "by", "without", "and", "or",
    "unless", "on", "ignoring", "group_left", "group_right", "bool", "offset", "humanizePercentage",
}


def metric_names(expr: str) -> set[str]:
    expr = re.sub(r'"[^"]*"', "", expr)  # label values
    expr = re.sub(r"\{[^}]*\}", "", expr)  # label matchers
    expr = re.sub(r"\[[^\]]*\]", "", expr)  # ranges
    expr = re.sub(r"\b(by|without|on|ignoring)\s*\([^)]*\)", "", expr)  # grouping labels
    names = set(re.findall(r"\b[a-zA-Z_:][a-zA-Z0-9_:]*\b", expr))
    return {n for n in names if n not in PROMQL_WORDS}


def job_counters() -> set[str]:
    # Python operators and the JVM glue (batcher, Cassandra sink) register counters the same way
    files = [*(ROOT / "flink_jobs").glob("*.py"), *(ROOT / "jvm" / "src" / "main").rglob("*.java")]
    src = "\n".join(f.read_text(encoding="utf-8") for f in files)
    return set(re.findall(r"""\.counter\(\s*["'](\w+)["']""", src))


def alert_problems(doc: dict[str, Any]) -> list[str]:
    p: list[str] = []
    counters = job_counters()
    operations = (ROOT / "docs" / "OPERATIONS.md").read_text(encoding="utf-8")
    anchors = {
        re.sub(r"[^a-z0-9 -]", "", h.strip().lower()).replace(" ", "-")
        for h in re.findall(r"^#+ (.+)$", operations, re.M)
    }
    groups = doc.get("groups") if isinstance(doc, dict) else None
    if not groups:
        return ["no groups"]
    names = set()
    for g in groups:
        for r in g.get("rules", []):
            name = r.get("alert")
            if not name or not r.get("expr"):
                p.append(f"rule without alert/expr: {r}")
                continue
            if name in names:
                p.append(f"{name} twice")
            names.add(name)
            if r.get("labels", {}).get("severity") not in ("info", "warning", "critical"):
                p.append(f"{name}: severity")
            if not r.get("annotations", {}).get("summary"):
                p.append(f"{name}: no summary")
            runbook = r.get("annotations", {}).get("runbook", "")
            if not runbook.startswith("docs/OPERATIONS.md#") or runbook.split("#", 1)[1] not in anchors:
                p.append(f"{name}: runbook link {runbook!r} has no heading in docs/OPERATIONS.md")
            for metric in metric_names(r["expr"]):
                if metric in FLINK_METRICS or metric in EXPORTER_METRICS:
                    continue
                if metric.startswith(JOB_COUNTER_PREFIX) and metric[len(JOB_COUNTER_PREFIX):] in counters:
                    continue
                p.append(f"{name}: metric {metric} is exported by nothing we know")
    return p


def load_alerts() -> dict[str, Any]:
    return yaml.safe_load((MONITORING / "alerts.yml").read_text(encoding="utf-8"))


def test_alert_rules() -> None:
    doc = load_alerts()
    assert alert_problems(doc) == []
    exprs = " ".join(r["expr"] for g in doc["groups"] for r in g["rules"])
    for needed in ("numRestarts", "numberOfFailedCheckpoints", "pendingRecords", "dlq", "cassandra_writes"):
        assert needed in exprs, f"no alert on {needed}"


def test_alert_checks_reject_broken_copy() -> None:
    doc = load_alerts()
    rule = doc["groups"][0]["rules"][0]
    rule["expr"] = rule["expr"].replace("numRestarts", "numRestart")  # a metric that does not exist
    rule["annotations"]["runbook"] = "docs/OPERATIONS.md#nowhere"
    problems = alert_problems(doc)
    assert any("numRestart " in m for m in problems) and any("nowhere" in m for m in problems)
    assert alert_problems({"groups": [{"name": "x", "rules": [{"alert": "A"}]}]})


# promtool, the live scrape of every name and selector, and the dashboard: tests/integration/test_monitoring.py
# (a real Prometheus from Debian's package, installed by deploy/prometheus.sh when missing).


def test_prometheus_reporter_config() -> None:
    snippet = yaml.safe_load((MONITORING / "flink-prometheus.yaml").read_text(encoding="utf-8"))
    factory = snippet["metrics.reporter.prom.factory.class"]
    assert factory == "org.apache.flink.metrics.prometheus.PrometheusReporterFactory"
    for _, d in flink_deployments():
        conf = d["spec"]["flinkConfiguration"]
        assert conf["metrics.reporter.prom.factory.class"] == factory
        port = conf["metrics.reporter.prom.port"]
        annotations = d["spec"]["podTemplate"]["metadata"]["annotations"]
        assert annotations["prometheus.io/port"] == port and annotations["prometheus.io/scrape"] == "true"
    scrape = yaml.safe_load((MONITORING / "prometheus.yml").read_text(encoding="utf-8"))
    assert scrape["rule_files"] == ["alerts.yml"]
    assert {"flink-local", "flink-k8s"} <= {s["job_name"] for s in scrape["scrape_configs"]}


def test_flink_wheel_ships_the_prometheus_reporter() -> None:
    """The local stack runs Flink from the apache-flink wheel: the reporter must be in its plugins/."""
    spec = find_spec("pyflink")
    if spec is None or not spec.submodule_search_locations:
        pytest.skip("apache-flink not installed")
    home = Path(list(spec.submodule_search_locations)[0])
    jar = home / "plugins" / "metrics-prometheus" / f"flink-metrics-prometheus-{FLINK_VERSION}.jar"
    assert jar.exists(), jar
    with zipfile.ZipFile(jar) as z:
        services = z.read("META-INF/services/org.apache.flink.metrics.reporter.MetricReporterFactory").decode()
    assert "org.apache.flink.metrics.prometheus.PrometheusReporterFactory" in services
