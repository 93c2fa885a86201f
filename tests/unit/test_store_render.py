"""Rendered text (pithos.yaml, .s3cfg, scripts), `make render`, and strict Kubernetes schema validation."""

from __future__ import annotations

import base64
import configparser
import json
import os
import re
import subprocess
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from components.store.cassandra import render_drain_script
from components.store.pithos import (
    DOCKER_CONTEXT,
    MEBIBYTE,
    PITHOS_JAR,
    PITHOS_VERSION,
    AccessKey,
    PithosSettings,
    block_partition_bytes,
    boto3_settings,
    pithos_bytes,
    render_pithos_config,
    render_s3cfg,
    render_schema_script,
)
from components.store.schema import INDEXES, PITHOS_COMMIT, TABLES, expected_columns, schema_statements
from policy.rules import EXAMPLE_CREDENTIALS
from tests.harness.program import ROOT, stack_names
from tests.harness.validators import shellcheck_findings
from tests.unit.store_support import STORE_STACK, evaluated, kinds, kubernetes_objects, run_with
from tests.unit.test_store_cqlsh import fake_cql, install_fake_cqlsh
from tools import render

# The oldest and newest Kubernetes versions the README's object store section declares supported.
KUBERNETES_VERSIONS = ("1.29.0", "1.34.0")
SETTINGS = PithosSettings(service_uri="s3.example.test", region="home", keyspace="storage",
                          cassandra_host="cassandra.object-store.svc", datacenter="dc1", replication_factor=3)
KEYS = (AccessKey("operator", "AKMASTER000000000001", "m" * 40, master=True),
        AccessKey("o'brien: \"quoted\"", "AKTENANT000000000002", "t/+=" * 10))


def test_pithos_config_parses_and_holds_exactly_the_given_keys() -> None:
    config = yaml.safe_load(render_pithos_config(SETTINGS, KEYS))
    assert config["keystore"]["keys"] == {
        "AKMASTER000000000001": {"tenant": "operator", "secret": "m" * 40, "master": True},
        "AKTENANT000000000002": {"tenant": "o'brien: \"quoted\"", "secret": "t/+=" * 10, "master": False},
    }
    assert config["service"] == {"host": "0.0.0.0", "port": 8080}
    assert config["options"]["default-region"] == "home" and config["options"]["service-uri"] == "s3.example.test"
    stores = [config["bucketstore"], config["regions"]["home"]["metastore"],
              config["regions"]["home"]["storage-classes"]["standard"]]
    for store in stores:
        assert store["cluster"] == "cassandra.object-store.svc" and store["keyspace"] == "storage"
        assert store["hints"] == {"replication": {"class": "NetworkTopologyStrategy", "dc1": 3}}


def test_pithos_config_needs_a_master_key() -> None:
    with pytest.raises(ValueError, match="master"):
        render_pithos_config(SETTINGS, KEYS[1:])


def shipped_pithos_config(mocks: Any) -> dict[str, Any]:
    text = mocks.named("pithos-config").inputs["stringData"]["pithos.yaml"]
    parsed: dict[str, Any] = yaml.safe_load(text)
    return parsed


def test_shipped_config_has_only_generated_keys_and_the_configured_replication() -> None:
    mocks, exports = evaluated(STORE_STACK)
    config = shipped_pithos_config(mocks)
    generated = exports["store"]["tenant_keys"]
    assert {key: entry["tenant"] for key, entry in config["keystore"]["keys"].items()} == {
        keys["access_key"]: tenant for tenant, keys in generated.items()}
    assert {entry["secret"] for entry in config["keystore"]["keys"].values()} == {
        keys["secret_key"] for keys in generated.values()}
    assert [entry["tenant"] for entry in config["keystore"]["keys"].values() if entry["master"]] == ["operator"]
    text = yaml.safe_dump(config)
    assert not [credential for credential in EXAMPLE_CREDENTIALS if credential in text]
    stack_file = yaml.safe_load(Path("stacks/Pulumi.s3-store.yaml").read_text())["config"]["cluster-cookbook:store"]
    replication = stack_file["cassandra"]["replication_factor"]
    assert config["bucketstore"]["hints"]["replication"] == {"class": "NetworkTopologyStrategy", "dc1": replication}
    prepare = kinds(mocks)["Job/pithos-schema"]["spec"]["template"]["spec"]["initContainers"][0]["command"][2]
    assert f"REPLICATION_FACTOR={replication}\n" in prepare
    standard = config["regions"]["home"]["storage-classes"]["standard"]
    assert (standard["max-chunk"], standard["max-block-chunks"]) == ("512k", 32)


@pytest.mark.parametrize("replicas", [1, 2, 5])
def test_replication_follows_a_changed_ring_size(replicas: int) -> None:
    mocks, _ = run_with(store={"cassandra": {"replicas": replicas, "anti_affinity": replicas > 1}})
    hints = shipped_pithos_config(mocks)["regions"]["cookbook"]["metastore"]["hints"]
    assert hints["replication"]["dc1"] == min(3, replicas)
    assert kinds(mocks)["StatefulSet/cassandra"]["spec"]["replicas"] == replicas


def test_s3cfg_and_boto3_settings_are_path_style_signature_v2() -> None:
    text = render_s3cfg("https://s3.example.test:8443", "home", KEYS[0])
    parser = configparser.ConfigParser(interpolation=None)
    parser.read_string(text)
    section = parser["default"]
    assert section["host_base"] == section["host_bucket"] == "s3.example.test:8443"
    assert (section["use_https"], section["signature_v2"]) == ("True", "True")
    assert (section["access_key"], section["secret_key"]) == (KEYS[0].access_key, KEYS[0].secret_key)
    settings = boto3_settings("http://h:8080", "home", KEYS[0])
    assert settings["config"] == {"signature_version": "s3", "s3": {"addressing_style": "path"}}


SCRIPTS = {
    "drain": render_drain_script(240),
    **{f"schema-{step}": render_schema_script(step, SETTINGS, 900) for step in ("prepare", "tables", "verify")},
}


@pytest.mark.parametrize("name", sorted(SCRIPTS))
def test_rendered_scripts_pass_shellcheck(name: str) -> None:
    assert shellcheck_findings(SCRIPTS[name]) == ""


# --- Pithos's blocks: one partition of the `block` table each.

def test_pithos_sizes_parse_like_pithos() -> None:  # io.pithos.util/to-bytes
    assert [pithos_bytes(text) for text in ("512k", "512kb", "128K", "1m", "2G", "100")] == [
        524288, 524288, 131072, 1048576, 2 * 2**30, 100]
    with pytest.raises(ValueError):
        pithos_bytes("1.5m")


def test_a_block_partition_stays_between_16_and_32_mib() -> None:
    """Defect: Pithos's defaults (max-chunk 512k, max-block-chunks 2048) make 1 GiB partitions that a read
    loads whole into the heap. The key names are the ones blob.clj reads (the sample pithos.yaml of 0.7.5
    says `max-block-chunk`, which Pithos ignores)."""
    assert block_partition_bytes("512k", 2048) > 1024 * MEBIBYTE  # what Pithos did by default
    largest = block_partition_bytes()
    assert 16 * MEBIBYTE <= largest <= 32 * MEBIBYTE, largest / MEBIBYTE
    assert largest == 16 * MEBIBYTE + 512 * 1024 - 1
    config = yaml.safe_load(render_pithos_config(SETTINGS, KEYS))
    standard = config["regions"]["home"]["storage-classes"]["standard"]
    assert block_partition_bytes(standard["max-chunk"], standard["max-block-chunks"]) == largest
    assert "max-block-chunk" not in standard


# --- The schema job: Pithos 0.7.5's tables and indexes, re-runnable at any point.

def test_every_schema_statement_is_guarded_and_valid_cql() -> None:
    """Each statement is `IF NOT EXISTS` and parses with cqlsh's own CQL grammar."""
    from cqlshlib.cql3handling import CqlRuleSet

    statements = schema_statements("storage")
    assert len(statements) == len(TABLES) + len(INDEXES) == 9
    for statement in statements:
        assert statement.startswith(("CREATE TABLE IF NOT EXISTS storage.", "CREATE INDEX IF NOT EXISTS ")), statement
        tokens = CqlRuleSet.cql_massage_tokens(CqlRuleSet.lex(statement))
        assert CqlRuleSet.cql_whole_parse_tokens(tokens, srcstr=statement, startsymbol="Start"), statement
    # The grammar check is real: a typo fails it.
    typo = statements[0].replace("IF NOT EXISTS", "IF NOT EXIST")
    tokens = CqlRuleSet.cql_massage_tokens(CqlRuleSet.lex(typo))
    assert not CqlRuleSet.cql_whole_parse_tokens(tokens, srcstr=typo, startsymbol="Start")


def test_the_schema_is_pithos_0_7_5s() -> None:
    """Spot checks against the 0.7.5 source (components/store/schema.py cites the files)."""
    by_name = {t.name: t for t in TABLES}
    assert list(by_name) == ["bucket", "object", "upload", "object_uploads", "inode_blocks", "block"]
    assert schema_statements("s")[-1] == "CREATE INDEX IF NOT EXISTS upload_bucket ON s.object_uploads (bucket);"
    assert schema_statements("s")[5] == ("CREATE TABLE IF NOT EXISTS s.block (inode uuid, version timeuuid, block "
                                         "bigint, offset bigint, chunksize int, payload blob, PRIMARY KEY ((inode, "
                                         "version, block), offset));")
    assert "PRIMARY KEY (bucket, object)" in schema_statements("s")[1]
    assert "metadata map<text, text>" in schema_statements("s")[3]
    assert len(expected_columns()) == sum(len(t.columns) for t in TABLES) == 41


def run_step(step: str, tmp_path: Path, settings: PithosSettings = SETTINGS,
             **env: str) -> subprocess.CompletedProcess[str]:
    """Runs a schema step as the job's container does (`bash -c SCRIPT`), cqlsh being the fake one."""
    bin_dir = install_fake_cqlsh(tmp_path / "bin")
    environment = {"PATH": f"{bin_dir}:{os.environ['PATH']}", "HOME": str(tmp_path),
                   "FAKE_CQL_STATE": str(tmp_path / "cql.json"), **env}
    return subprocess.run(["bash", "-c", render_schema_script(step, settings, 900)], capture_output=True,
                          text=True, env=environment, timeout=120, check=False)


def schema_state(tmp_path: Path) -> dict[str, Any]:
    state: dict[str, Any] = json.loads((tmp_path / "cql.json").read_text())["keyspaces"]["storage"]
    return state


def test_the_schema_job_installs_and_verifies_then_runs_again_unchanged(tmp_path: Path) -> None:
    for step in ("prepare", "tables", "verify"):
        done = run_step(step, tmp_path)
        assert done.returncode == 0, (step, done.stdout, done.stderr)
    assert "pithos schema ready in keyspace storage: 41 columns, 3 indexes" in done.stdout
    first = schema_state(tmp_path)
    assert sorted(first["tables"]) == sorted(t.name for t in TABLES) and len(first["indexes"]) == 3
    assert first["replication"] == {"class": "org.apache.cassandra.locator.NetworkTopologyStrategy", "dc1": "3"}
    for step in ("prepare", "tables", "verify"):  # a re-run (a replaced job) changes nothing and succeeds
        done = run_step(step, tmp_path)
        assert done.returncode == 0, (step, done.stderr)
        assert "changed:" not in done.stdout
    assert schema_state(tmp_path) == first


# The first table, a middle one, the first index, the last statement.
@pytest.mark.parametrize("interrupted_at", [1, 4, 7, len(schema_statements("storage"))])
def test_an_install_interrupted_at_any_statement_completes_on_the_next_run(tmp_path: Path,
                                                                             interrupted_at: int) -> None:
    """Defect: Pithos's install-schema has no IF NOT EXISTS, so a half-finished install could never finish."""
    assert run_step("prepare", tmp_path).returncode == 0
    calls = json.loads((tmp_path / "cql.json").read_text())["calls"]
    # The tables step's first call waits for CQL; statement N is the call after it.
    failed = run_step("tables", tmp_path, FAKE_CQL_FAIL_AT=str(calls + 1 + interrupted_at))
    assert failed.returncode != 0 and "OperationTimedOut" in failed.stderr
    assert run_step("verify", tmp_path).returncode == 1  # the half-installed schema is detected
    for step in ("tables", "verify"):
        done = run_step(step, tmp_path)
        assert done.returncode == 0, (step, done.stderr)


def test_verify_reports_a_table_of_another_pithos_version(tmp_path: Path) -> None:
    state: dict[str, Any] = {"keyspaces": {}}
    fake_cql("CREATE KEYSPACE storage WITH replication = {'class': 'NetworkTopologyStrategy', 'dc1': 3}", state)
    fake_cql("CREATE TABLE storage.block (inode uuid, version timeuuid, block bigint, offset bigint, "
             "chunksize int, payload text, PRIMARY KEY ((inode, version, block), offset))", state)
    (tmp_path / "cql.json").write_text(json.dumps(state))
    assert run_step("tables", tmp_path).returncode == 0  # IF NOT EXISTS keeps the existing table
    done = run_step("verify", tmp_path)
    assert done.returncode == 1
    assert "column block|payload|blob" in done.stderr and "index" not in done.stderr.split("missing")[1]


def test_prepare_converges_a_changed_replication(tmp_path: Path) -> None:
    one = PithosSettings(**{**vars(SETTINGS), "replication_factor": 1})
    assert run_step("prepare", tmp_path, settings=one).returncode == 0
    done = run_step("prepare", tmp_path)
    assert done.returncode == 0 and "changed: keyspace storage replication is now" in done.stdout
    assert "nodetool repair -full storage" in done.stdout
    assert schema_state(tmp_path)["replication"]["dc1"] == "3"


# --- The project's Pithos image.

def dockerfile_instructions() -> list[tuple[str, str]]:
    lines = (ROOT / DOCKER_CONTEXT / "Dockerfile").read_text().splitlines()
    return [(line.split(" ", 1)[0], line.split(" ", 1)[1]) for line in lines if line and not line.startswith("#")]


def test_the_dockerfile_builds_pithos_0_7_5_for_every_platform_without_emulation() -> None:
    instructions = dockerfile_instructions()
    stages = [i for i, (op, _) in enumerate(instructions) if op == "FROM"]
    assert len(stages) == 2
    build = instructions[stages[0]:stages[1]]
    runtime = instructions[stages[1]:]
    assert re.fullmatch(r"--platform=\$BUILDPLATFORM clojure:temurin-\d+-lein-[0-9.]+-\w+ AS build", build[0][1])
    assert ("ADD", "https://github.com/exoscale/pithos.git#${PITHOS_COMMIT} /src/pithos") in build
    args = dict(arg.split("=", 1) for op, arg in instructions[:stages[0]] if op == "ARG")
    assert args == {"PITHOS_COMMIT": PITHOS_COMMIT, "PITHOS_VERSION": PITHOS_VERSION, "PITHOS_JAR": PITHOS_JAR}
    assert ("RUN", 'lein uberjar && cp "target/pithos-${PITHOS_VERSION}-standalone.jar" /pithos.jar') in build
    assert runtime[0] == ("FROM", "eclipse-temurin:11-jre")
    assert not [op for op, _ in runtime if op == "RUN"]  # nothing runs under emulation for a foreign platform
    assert ("COPY", "--from=build --chmod=0444 /pithos.jar ${PITHOS_JAR}") in runtime
    assert ("USER", "10001:10001") in runtime
    ignored = (ROOT / DOCKER_CONTEXT / ".dockerignore").read_text().split()
    assert "*" in ignored and "!Dockerfile" in ignored


@pytest.mark.parametrize("stack", stack_names())
@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
def test_every_kubernetes_object_validates_strictly(stack: str, version: str) -> None:
    mocks, _ = evaluated(stack)
    for resource, document in kubernetes_objects(mocks):
        try:
            kubernetes_validate.validate(document, version, strict=True)
        except kubernetes_validate.ValidationError as error:
            pytest.fail(f"{stack} {resource.name} is invalid for Kubernetes {version}: {error.message}")


def test_schema_validation_catches_a_wrong_field() -> None:
    mocks, _ = evaluated(STORE_STACK)
    document = kinds(mocks)["StatefulSet/cassandra"]
    document["spec"]["template"]["spec"]["containers"][0]["resource"] = {}  # typo of `resources`
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(document, KUBERNETES_VERSIONS[0], strict=True)


def test_render_writes_every_object_with_secrets_redacted(tmp_path: Path) -> None:
    outdir = tmp_path / "manifests"
    assert render.main([STORE_STACK, str(outdir)]) == 0
    files = sorted(str(path.relative_to(outdir)) for path in outdir.rglob("*.yaml"))
    assert files == [
        "_cluster/namespace-object-store.yaml", "object-store/deployment-pithos.yaml",
        "object-store/job-pithos-schema.yaml", "object-store/networkpolicy-cassandra.yaml",
        "object-store/poddisruptionbudget-cassandra.yaml", "object-store/poddisruptionbudget-pithos.yaml",
        "object-store/secret-pithos-config.yaml", "object-store/service-cassandra.yaml",
        "object-store/service-pithos.yaml", "object-store/statefulset-cassandra.yaml"]
    secret = yaml.safe_load((outdir / "object-store/secret-pithos-config.yaml").read_text())
    assert secret["stringData"] == {"pithos.yaml": render.REDACTED}
    statefulset = yaml.safe_load((outdir / "object-store/statefulset-cassandra.yaml").read_text())
    assert statefulset["spec"]["replicas"] == 3  # an int, not the wire's 3.0
    kubernetes_validate.validate(statefulset, KUBERNETES_VERSIONS[-1], strict=True)
    # A second render replaces the first; a directory that is not a render is left alone.
    assert render.main([STORE_STACK, str(outdir)]) == 0
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "notes.txt").write_text("mine")
    with pytest.raises(SystemExit, match="not empty"):
        render.main([STORE_STACK, str(tmp_path / "other")])
    assert render.main(["no-such-stack", str(tmp_path / "x")]) == 2


def test_render_redacts_secret_data_too() -> None:
    document = render.manifest("kubernetes:core/v1:Secret", {
        "apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s"},
        "data": {"k": base64.b64encode(b"hunter2").decode()}})
    assert base64.b64decode(document["data"]["k"]) == render.REDACTED.encode()


def test_render_shows_a_built_image_as_known_only_at_deploy_time() -> None:
    """With `store.pithos.build`, the image's digest exists only after the push: `make render` said nothing
    useful (it crashed on the preview's unknown value); now the manifest says so and stays valid."""
    from tools.offline import evaluate, stack_config

    store = stack_config(STORE_STACK)["cluster-cookbook:store"]
    pithos = {key: value for key, value in store["pithos"].items() if key != "image"}
    store = {**store, "pithos": {**pithos, "build": {"registry": "registry.lan:5000"}}}
    files = render.render(evaluate(STORE_STACK, secrets=render.PLACEHOLDER_SECRETS,
                                   overrides={"cluster-cookbook:store": store}))
    deployment = yaml.safe_load(files[Path("object-store/deployment-pithos.yaml")])
    assert deployment["spec"]["template"]["spec"]["containers"][0]["image"] == render.UNKNOWN_VALUE
    kubernetes_validate.validate(deployment, KUBERNETES_VERSIONS[-1], strict=True)
    assert len(files) == 10  # the image is built by Docker, not applied to the cluster


@pytest.mark.parametrize("stack", stack_names())
def test_make_render_works_for_every_shipped_stack(stack: str, tmp_path: Path,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    """`make render STACK=...` needs no credential for any stack (placeholders; nothing is contacted)."""
    assert render.main([stack, str(tmp_path / "out")]) == 0
    printed = capsys.readouterr()
    assert "Kubernetes objects of stack" in printed.out or "declares no Kubernetes objects" in printed.err
