#!/usr/bin/env python3
"""Renders every kustomization, validates it against the Kubernetes schemas and
checks the production overlay's hardening (security context, probes, resources).

Run by .ci/run; needs kubectl (kustomize) and `pip install kubernetes-validate`.
Exits non-zero on the first problem.
"""
import subprocess
import sys
import tempfile
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent
TARGETS = [ROOT / "base", ROOT / "overlays" / "production", ROOT / "overlays" / "mtls"]
# Overlays that must keep production's hardening.
HARDENED = {"production", "mtls"}


def render(target: Path) -> str:
    return subprocess.run(["kubectl", "kustomize", str(target)], check=True, capture_output=True, text=True).stdout


def validate(rendered: str, name: str) -> None:
    with tempfile.NamedTemporaryFile("w", suffix=".yaml", delete=False) as f:
        f.write(rendered)
    result = subprocess.run(["kubernetes-validate", "--strict", "--quiet", f.name], capture_output=True, text=True)
    if result.returncode != 0:
        sys.exit(f"{name}: schema validation failed:\n{result.stdout}{result.stderr}")


def check_production(docs: list) -> list:
    problems = []
    deployments = [d for d in docs if d["kind"] == "Deployment"]
    kinds = {d["kind"] for d in docs}
    for required in ["PodDisruptionBudget", "HorizontalPodAutoscaler", "NetworkPolicy", "Service", "ConfigMap"]:
        if required not in kinds:
            problems.append(f"no {required}")
    if len(deployments) != 2:
        problems.append(f"expected 2 deployments, found {len(deployments)}")
    for d in deployments:
        name = d["metadata"]["name"]
        spec = d["spec"]
        pod = spec["template"]["spec"]
        if spec.get("replicas", 1) < 2:
            problems.append(f"{name}: fewer than 2 replicas")
        if not pod.get("topologySpreadConstraints"):
            problems.append(f"{name}: no topology spread")
        if not pod.get("securityContext", {}).get("runAsNonRoot"):
            problems.append(f"{name}: pod may run as root")
        for c in pod.get("initContainers", []) + pod["containers"]:
            sc = c.get("securityContext", {})
            if sc.get("allowPrivilegeEscalation") is not False:
                problems.append(f"{name}/{c['name']}: privilege escalation allowed")
            if sc.get("readOnlyRootFilesystem") is not True:
                problems.append(f"{name}/{c['name']}: writable root filesystem")
            if "ALL" not in sc.get("capabilities", {}).get("drop", []):
                problems.append(f"{name}/{c['name']}: capabilities not dropped")
            res = c.get("resources", {})
            if not res.get("requests") or not res.get("limits"):
                problems.append(f"{name}/{c['name']}: missing resource requests/limits")
            for env in c.get("env", []):
                if "value" in env and any(s in env["name"] for s in ("DATABASE_URL", "SECRET", "PASSWORD")):
                    problems.append(f"{name}/{c['name']}: {env['name']} inlined instead of a Secret reference")
        for c in pod["containers"]:
            for probe in ["startupProbe", "readinessProbe", "livenessProbe"]:
                if probe not in c:
                    problems.append(f"{name}/{c['name']}: no {probe}")
    hpas = [d for d in docs if d["kind"] == "HorizontalPodAutoscaler"]
    for h in hpas:
        if h["spec"].get("minReplicas", 1) < 2:
            problems.append(f"hpa {h['metadata']['name']}: minReplicas < 2")
    directory_svc = [d for d in docs if d["kind"] == "Service" and d["metadata"]["name"] == "roster-directory"]
    if not directory_svc or directory_svc[0]["spec"].get("clusterIP") != "None":
        problems.append("directory service is not headless (gRPC needs client-side balancing)")
    return problems


def main() -> None:
    for target in TARGETS:
        name = str(target.relative_to(ROOT))
        rendered = render(target)
        validate(rendered, name)
        print(f"k8s/{name}: rendered and schema-valid")
        if target.name in HARDENED:
            problems = check_production([d for d in yaml.safe_load_all(rendered) if d])
            if problems:
                sys.exit(f"{name} overlay problems:\n  " + "\n  ".join(problems))
            print(f"k8s/{name}: hardening checks passed")


if __name__ == "__main__":
    main()
