"""deploy/kubernetes validates offline against the Kubernetes JSON schemas (shipped by the
kubernetes-validate package, strict: unknown fields are errors) and says what running
several workers needs: a StatefulSet with per-pod volumes, readiness from /healthz, a
PodDisruptionBudget, Services, secrets only by reference."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from streams.core.config import NAMES
from streams.core.settings import PREFIX

DIR = Path(__file__).resolve().parents[3] / "deploy" / "kubernetes"
K8S_VERSION = "1.30.0"


def documents() -> list[tuple[str, dict[str, Any]]]:
    out = []
    for path in sorted(DIR.glob("*.yaml")):
        if path.name == "kustomization.yaml":
            continue
        out.extend((path.name, doc) for doc in yaml.safe_load_all(path.read_text()) if doc)
    return out


def by_kind(kind: str) -> list[dict[str, Any]]:
    return [doc for _, doc in documents() if doc["kind"] == kind]


@pytest.mark.parametrize(
    ("name", "doc"), documents(), ids=lambda v: v if isinstance(v, str) else v["kind"]
)
def test_manifest_is_valid_against_the_kubernetes_schema(name: str, doc: dict[str, Any]) -> None:
    kubernetes_validate.validate(doc, K8S_VERSION, strict=True)


def test_an_invalid_manifest_is_refused() -> None:
    """The validation can fail: a typo'd field and a wrong type are caught."""
    (sts,) = by_kind("StatefulSet")
    bad = yaml.safe_load(yaml.safe_dump(sts))
    bad["spec"]["replica"] = 3
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(bad, K8S_VERSION, strict=True)
    bad = yaml.safe_load(yaml.safe_dump(sts))
    bad["spec"]["replicas"] = "three"
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(bad, K8S_VERSION, strict=True)


def test_kustomization_lists_every_manifest() -> None:
    listed = yaml.safe_load((DIR / "kustomization.yaml").read_text())["resources"]
    files = [p.name for p in DIR.glob("*.yaml") if p.name != "kustomization.yaml"]
    assert sorted(listed) == sorted(files)


def test_workers_are_a_statefulset_with_volumes_readiness_and_a_pdb() -> None:
    (sts,) = by_kind("StatefulSet")
    spec = sts["spec"]
    assert spec["replicas"] >= 2 and spec["volumeClaimTemplates"][0]["metadata"]["name"] == "data"
    (container,) = spec["template"]["spec"]["containers"]
    env = {e["name"]: e.get("value") for e in container["env"]}
    mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
    assert env["SHOPSTREAM_DATA_DIR"] == mounts["data"]
    assert container["readinessProbe"]["httpGet"]["path"] == "/healthz"
    services = {s["metadata"]["name"]: s for s in by_kind("Service")}
    assert services[spec["serviceName"]]["spec"]["clusterIP"] == "None"
    assert env["SHOPSTREAM_WEB_ADVERTISE_HOST"].endswith("." + spec["serviceName"])
    (pdb,) = by_kind("PodDisruptionBudget")
    labels = spec["template"]["metadata"]["labels"]
    assert pdb["spec"]["selector"]["matchLabels"].items() <= labels.items()
    assert pdb["spec"]["maxUnavailable"] == 1
    # every SHOPSTREAM_* variable is a real setting (or its _FILE form); secrets are files
    (config,) = by_kind("ConfigMap")
    valid = {PREFIX + n.upper() for n in NAMES}
    names = set(config["data"]) | {n for n in env if n.startswith(PREFIX)}
    assert names <= valid | {v + "_FILE" for v in valid}, names - valid
    secrets = ("SHOPSTREAM_REDIS_URL", "SHOPSTREAM_CHECKPOINT_KEY", "SHOPSTREAM_PUBLIC_KEY",
               "SHOPSTREAM_ADMIN_TOKEN")  # fmt: skip
    for secret in secrets:
        assert secret not in env and secret not in config["data"]
        assert env[secret + "_FILE"].startswith(mounts["secrets"])
