"""The task registry and the OpenAPI document generated from its models."""

import pytest
from pydantic import BaseModel

from backend.api.openapi import component_name


def test_tasks_lists_each_public_task_with_its_input_schema(idle_client):
    tasks = {task["name"]: task for task in idle_client.get("/tasks").get_json()["tasks"]}
    assert set(tasks) == {"long_task", "flaky", "add"}
    assert tasks["add"]["submit_url"] == "/tasks/add"
    assert tasks["add"]["input_schema"]["required"] == ["x", "y"]
    assert tasks["long_task"]["input_schema"]["properties"]["steps"]["maximum"] == 10_000


def test_test_only_tasks_are_not_public(idle_client):
    import tests.support_tasks  # noqa: F401  (registered with Celery, not with the registry)

    names = {task["name"] for task in idle_client.get("/tasks").get_json()["tasks"]}
    assert "tests.fail" not in names


def test_openapi_document_describes_every_route_from_the_models(idle_client):
    spec = idle_client.get("/openapi.json").get_json()
    assert spec["openapi"].startswith("3.")
    paths = spec["paths"]
    for path in ["/longtask", "/add", "/tasks", "/tasks/add", "/tasks/long_task", "/status/{task_id}",
                 "/status/{task_id}/cancel", "/healthz", "/readyz"]:
        assert path in paths, path
    assert set(paths["/longtask"]) >= {"get", "post"}
    schemas = spec["components"]["schemas"]
    assert "LongTaskInput" in schemas
    assert "JobStatus" in schemas


def test_docs_page_is_served(idle_client):
    response = idle_client.get("/docs", follow_redirects=True)
    assert response.status_code == 200
    assert "swagger" in response.get_data(as_text=True).lower()


def test_the_document_marks_a_body_optional_only_where_it_is(idle_client):
    paths = idle_client.get("/openapi.json").get_json()["paths"]
    assert paths["/longtask"]["post"]["requestBody"]["required"] is False  # every field has a default
    assert paths["/add"]["post"]["requestBody"]["required"] is True
    assert idle_client.post("/longtask").status_code == 202
    assert idle_client.post("/add").status_code == 422


def test_the_document_links_each_submit_to_its_status_and_cancel(idle_client):
    paths = idle_client.get("/openapi.json").get_json()["paths"]
    status_id = paths["/status/{task_id}"]["get"]["operationId"]
    cancel_id = paths["/status/{task_id}/cancel"]["post"]["operationId"]
    for path, method in [("/add", "post"), ("/longtask", "get"), ("/tasks/long_task", "post")]:
        links = paths[path][method]["responses"]["202"]["links"]
        assert links["status"] == {"operationId": status_id, "parameters": {"task_id": "$response.body#/task_id"}}
        assert links["cancel"]["operationId"] == cancel_id


def test_openapi_components_are_named_after_their_models_alone(idle_client):
    """No hash of a module path: moving a module must not rename a client's generated types."""
    schemas = idle_client.get("/openapi.json").get_json()["components"]["schemas"]
    assert {"JobStatus", "JobError", "Progress", "ErrorBody", "Submitted", "AddInput", "TaskList"} <= set(schemas)
    assert all(name.isidentifier() for name in schemas)


def test_two_models_with_one_name_are_refused_rather_than_merged():
    first = type("ClashingInput", (BaseModel,), {"__module__": "tests.first"})
    second = type("ClashingInput", (BaseModel,), {"__module__": "tests.second"})
    assert component_name(first) == "ClashingInput"
    with pytest.raises(ValueError, match="two models of the API are named ClashingInput"):
        component_name(second)
