"""The deployment files agree with the code: docker-compose.yml, deploy/Dockerfile and deploy/k8s/
name Apps that load, probe the paths and port ``corps run`` serves, give a drain more time than
the App's drain_timeout, provision before the services start, and use the App's namespace."""

from __future__ import annotations

import argparse
import re
from pathlib import Path
from typing import Any

import yaml

from corps.cli._main import build_parser
from corps.cli._run import HEALTHZ, READYZ
from corps.examples.shop import app as shop
from corps.system._app import App
from corps.tools._loader import load_app

REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "deploy"
SHOP_APPS = {name for name, obj in vars(shop).items() if isinstance(obj, App) and name != "app"}


def build_args(args: list[str]) -> argparse.Namespace:
    """``args`` as the ``corps`` command parses them."""
    return build_parser().parse_args(args)


def _run_args(args: list[str]) -> tuple[App, int]:
    """The App and the probe port of a container's ``corps run`` arguments (parsed by corps's parser)."""
    ns = build_args(args)
    assert ns.command == "run", args
    assert ns.namespace in (None, shop.NAMESPACE), "the manifests must not move the App to another namespace"
    return load_app(ns.target), ns.http_port


def test_the_kubernetes_deployments_probe_what_corps_run_serves_and_outlast_its_drain() -> None:
    docs = list(yaml.safe_load_all((DEPLOY / "k8s" / "shop.yaml").read_text()))
    deployments = {d["metadata"]["name"]: d for d in docs if d["kind"] == "Deployment"}
    assert set(deployments) == SHOP_APPS  # every App of the shop is deployed, and nothing else
    for name, d in deployments.items():
        pod = d["spec"]["template"]["spec"]
        [container] = pod["containers"]
        app, port = _run_args(container["args"])
        assert app is getattr(shop, name)
        assert pod["terminationGracePeriodSeconds"] > app.drain_timeout, name
        assert container["livenessProbe"]["httpGet"] == {"path": HEALTHZ, "port": port}, name
        assert container["readinessProbe"]["httpGet"] == {"path": READYZ, "port": port}, name
        assert {"name": "probes", "containerPort": port} in container["ports"]
        if app.actors:  # an entity lives in one process: no second pod during a rollout
            assert (d["spec"]["replicas"], d["spec"]["strategy"]["type"]) == (1, "Recreate"), name
    [job] = [d for d in docs if d["kind"] == "Job"]
    args = job["spec"]["template"]["spec"]["containers"][0]["args"]
    assert build_args(args).command == "provision"
    assert load_app(build_args(args).target) is shop.app  # provisions what every App uses
    [config] = [d for d in docs if d["kind"] == "ConfigMap"]
    assert config["data"]["SHOP_REPLICAS"] == "3"
    values = yaml.safe_load((DEPLOY / "k8s" / "nats-values.yaml").read_text())
    assert values["config"]["cluster"]["replicas"] >= int(config["data"]["SHOP_REPLICAS"])
    assert values["config"]["jetstream"]["enabled"] is True
    assert config["data"]["NATS_URL"] == f"nats://nats:{values['config']['nats']['port']}"


def test_compose_runs_the_cluster_provisions_once_then_every_shop_app() -> None:
    compose = yaml.safe_load((REPO / "docker-compose.yml").read_text())
    services: dict[str, Any] = compose["services"]
    for node in ("n1", "n2", "n3"):
        conf = services[node]["command"][1].removeprefix("/etc/nats/")
        assert (DEPLOY / conf).exists()
    apps = {}
    for name, s in services.items():
        if s.get("command", [""])[0] == "run":
            app, port = _run_args(s["command"])
            assert app is getattr(shop, name)
            apps[name] = app
            assert port == 8080  # the port the image's HEALTHCHECK polls
            assert _seconds(s["stop_grace_period"]) > app.drain_timeout
            assert s["depends_on"] == {"provision": {"condition": "service_completed_successfully"}}
            assert s["environment"]["SHOP_REPLICAS"] == "3"
    assert set(apps) == SHOP_APPS
    provision = services["provision"]
    assert load_app(build_args(provision["command"]).target) is shop.app
    assert set(provision["depends_on"]) == {"n1", "n2", "n3"}


def test_the_dockerfile_healthcheck_polls_readyz_on_the_port_its_command_serves() -> None:
    text = (DEPLOY / "Dockerfile").read_text()
    healthcheck = next(line for line in text.splitlines() if "urlopen" in line)
    assert f"http://127.0.0.1:8080{READYZ}" in healthcheck
    assert "EXPOSE 8080" in text
    cmd = re.search(r'^CMD (\[.*\])$', text, re.M)
    assert cmd is not None
    app, port = _run_args(yaml.safe_load(cmd.group(1)))
    assert (app, port) == (shop.app, 8080)


def _seconds(duration: str) -> float:
    match = re.fullmatch(r"(\d+)s", duration)
    assert match is not None, duration
    return float(match.group(1))
