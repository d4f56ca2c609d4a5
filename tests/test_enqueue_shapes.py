"""POST /api/v1/jobs takes the JSON PHP makes: `json_encode(['params' => []])` sends `[]`.

An empty array is no parameters; any other array is still refused. And a request naming a task
that does not exist is refused for its task (404), never for the shape of its parameters.
"""

from __future__ import annotations

import pytest
from conftest import Stoker

from stoker.client import ClientError

CONFIG = """
[tasks.hello]
command = ["echo", "hello"]
[tasks.greet]
command = ["echo", "hello", "{name}"]
"""


@pytest.fixture
def daemon(stoker: Stoker) -> Stoker:
    stoker.write(CONFIG)
    stoker.up()
    return stoker


def test_an_empty_array_is_no_parameters(daemon: Stoker) -> None:
    client = daemon.client
    job = client.request("POST", "/api/v1/jobs", {"task": "hello", "params": []})
    assert job["task"] == "hello" and job["params"] == {} and job["state"] == "queued"
    jobs = client.request("POST", "/api/v1/jobs/batch", {"task": "hello", "params": [[], {}, []]})
    assert [j["params"] for j in jobs] == [{}, {}, {}]
    assert client.wait(job["id"], timeout=30).state == "succeeded"


def test_an_empty_array_still_misses_a_required_parameter(daemon: Stoker) -> None:
    with pytest.raises(ClientError) as refused:
        daemon.client.request("POST", "/api/v1/jobs", {"task": "greet", "params": []})
    assert refused.value.status == 422 and refused.value.code == "invalid_params"
    assert refused.value.param == "name"
    with pytest.raises(ClientError) as refused:
        daemon.client.request("POST", "/api/v1/jobs/batch", {"task": "greet", "params": [{"name": "a"}, []]})
    assert refused.value.status == 422 and refused.value.param == "name" and refused.value.index == 1
    assert daemon.json("jobs", "--task", "greet") == []


def test_a_non_empty_array_is_refused(daemon: Stoker) -> None:
    for params in ([1], ["name"], 5, "x", None):
        with pytest.raises(ClientError) as refused:
            daemon.client.request("POST", "/api/v1/jobs", {"task": "greet", "params": params})
        assert refused.value.status == 422 and refused.value.code == "invalid", params
        assert "$.params" in str(refused.value), str(refused.value)
    assert daemon.json("jobs") == []


@pytest.mark.parametrize("params", [[], [1], 5, "x", {"name": "ann"}])
def test_an_unknown_task_is_the_error_whatever_the_params(daemon: Stoker, params: object) -> None:
    for path, body in (
        ("/api/v1/jobs", {"task": "nope", "params": params}),
        ("/api/v1/jobs/batch", {"task": "nope", "params": [params]}),
    ):
        with pytest.raises(ClientError) as refused:
            daemon.client.request("POST", path, body)
        assert refused.value.status == 404 and refused.value.code == "unknown_task", (
            path,
            str(refused.value),
        )
        assert "no task 'nope'" in str(refused.value) and "hello" in str(refused.value)


def test_a_body_without_a_task_is_refused_for_its_shape(daemon: Stoker) -> None:
    for body in ({"params": []}, {"task": 5, "params": [1]}, [1, 2]):
        with pytest.raises(ClientError) as refused:
            daemon.client.request("POST", "/api/v1/jobs", body)
        assert refused.value.status == 422 and refused.value.code == "invalid", body
