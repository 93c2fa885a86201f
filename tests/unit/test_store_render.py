"""Rendered text (pithos.yaml, .s3cfg, scripts), `make render`, and strict Kubernetes schema validation."""

from __future__ import annotations

import base64
import configparser
import subprocess
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from components.shared.scripts import template
from components.store.cassandra import render_drain_script
from components.store.pithos import (
    AccessKey,
    PithosSettings,
    boto3_settings,
    render_pithos_config,
    render_s3cfg,
    render_schema_script,
)
from policy.rules import EXAMPLE_CREDENTIALS
from tests.harness.program import stack_names
from tests.harness.validators import shellcheck_findings
from tests.unit.store_support import STORE_STACK, evaluated, kinds, kubernetes_objects, run_with
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
    "schema-prepare": render_schema_script("prepare", SETTINGS, 900, "/work/stamp"),
    "schema-verify": render_schema_script("verify", SETTINGS, 900, "/work/stamp"),
}


@pytest.mark.parametrize("name", sorted(SCRIPTS))
def test_rendered_scripts_pass_shellcheck(name: str) -> None:
    assert shellcheck_findings(SCRIPTS[name]) == ""


def test_install_step_is_posix_sh() -> None:  # the pithos image is Alpine: no bash
    done = subprocess.run(["shellcheck", "--shell=sh", "--severity=style", "-"],
                          input=template("store/schema-install.sh"), capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stdout


def test_schema_steps_are_guarded() -> None:
    prepare = SCRIPTS["schema-prepare"]
    assert "CREATE KEYSPACE IF NOT EXISTS ${KEYSPACE}" in prepare
    assert "REPLICATION='{'\"'\"'class'\"'\"': '\"'\"'NetworkTopologyStrategy'\"'\"'" in prepare
    assert 'touch "${STAMP}"' in prepare
    assert 'if [ -e "${STAMP}" ]' in template("store/schema-install.sh")
    assert "exit 1" in SCRIPTS["schema-verify"]


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
