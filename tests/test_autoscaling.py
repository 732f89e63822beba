"""docs/autoscaling.md: its KEDA ScaledObject parses, and scales on metrics the API exposes."""

from __future__ import annotations

import re
from pathlib import Path

import yaml

from tests.helpers import QUEUES_DB, empty_db, make_app

PAGE = Path(__file__).resolve().parent.parent / "docs" / "autoscaling.md"


def yaml_blocks() -> list[dict]:
    return [yaml.safe_load(block) for block in re.findall(r"^```yaml\n(.*?)^```", PAGE.read_text(), re.M | re.S)]


def exposed_metric_names(redis_server) -> set[str]:
    client = make_app(empty_db(redis_server, QUEUES_DB)).test_client()
    client.post("/add", json={"x": 1, "y": 1})  # a queue with a job: every series is there
    text = client.get("/metrics").get_data(as_text=True)
    return set(re.findall(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{| )", text, re.M))


def test_the_scaled_object_parses_and_scales_the_worker_deployment_on_prometheus():
    [scaled_object] = yaml_blocks()
    assert scaled_object["kind"] == "ScaledObject" and scaled_object["apiVersion"].startswith("keda.sh/")
    spec = scaled_object["spec"]
    assert spec["scaleTargetRef"]["name"] and 1 <= spec["minReplicaCount"] <= spec["maxReplicaCount"]
    assert spec["triggers"] and {trigger["type"] for trigger in spec["triggers"]} == {"prometheus"}
    for trigger in spec["triggers"]:
        float(trigger["metadata"]["threshold"])  # KEDA takes a quoted number


def test_every_metric_the_page_names_is_one_the_api_exposes(redis_server):
    exposed = exposed_metric_names(redis_server)
    queries = [trigger["metadata"]["query"] for trigger in yaml_blocks()[0]["spec"]["triggers"]]
    in_queries = {name for query in queries for name in re.findall(r"([a-z_]+)\{", query)}
    in_table = set(re.findall(r"^\| `([a-z_]+)(?:\{queue\})?`", PAGE.read_text(), re.M))
    assert "queue_oldest_ready_age_seconds" in in_queries
    assert in_queries | in_table <= exposed, sorted((in_queries | in_table) - exposed)
