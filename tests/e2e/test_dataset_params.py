"""Dataset params of createState over a real launcher, through the Python client.

Entries added in several adds are read by the model in order and in batches; a shuffled
group of params keeps its rows aligned; unknown datasets and keys are refused naming them;
and a job keeps reading the version it started with while the dataset is changed or deleted.
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np

from launcher.client import LauncherClient
from tests.support.specs import TEMPORARY

MISSING = "00000000-0000-4000-8000-000000000000"


def dataset_param(name: str, dataset_id: str, key: str) -> dict[str, Any]:
    return {"name": name, "data": {"type": "dataset", "datasetId": dataset_id, "datasetKey": key}}


def scalar_param(name: str, value: int | float) -> dict[str, Any]:
    return {"name": name, "data": [np.array(value)]}


def create_x_dataset(client: LauncherClient) -> str:
    res = client.dataset.create_dataset(
        name="xs",
        description="one vector per entry",
        keys=[{"name": "x", "required": True, "rules": {"shape": [-1], "allowedTypes": ["f32"]}}],
    )
    return str(res["result"]["datasetId"])


def add_x(client: LauncherClient, dataset_id: str, rows: list[np.ndarray]) -> dict[str, Any]:
    return client.dataset.add_entries(dataset_id=dataset_id, keys=[{"key": "x", "data": rows}])


def state_keys(client: LauncherClient, model_id: str, res: dict[str, Any]) -> dict[str, bytes]:
    assert "success" in res.get("result", {}), res
    state_id = res["result"]["success"]["stateId"]
    data = client.model.get_model_state(model_id=model_id, state_id=state_id)
    return {d["key"]: d["data"] for d in data["result"]["data"]}


def read_back(client: LauncherClient, res: dict[str, Any]) -> tuple[list[Any], list[Any]]:
    """The entries' values and the batches that the dataset_reader model saw."""
    keys = state_keys(client, "dataset_reader", res)
    entries = json.loads(keys["entries"])
    return [e["values"] for e in entries], json.loads(keys["batches"])


def vectors(first: int, count: int) -> list[np.ndarray]:
    """Entry i is [i, i + 0.5, ...] of length i % 3 + 1, so lengths and values differ."""
    return [np.arange(i % 3 + 1, dtype=np.float32) * 0.5 + i for i in range(first, first + count)]


def test_model_reads_every_entry_of_several_adds_in_order_in_batches(
    client: LauncherClient,
) -> None:
    dataset_id = create_x_dataset(client)
    assert "result" in add_x(client, dataset_id, vectors(0, 3))
    assert "result" in add_x(client, dataset_id, vectors(3, 4))
    before = client.dataset.get_datasets(filter={"ids": [dataset_id]})["result"]["datasets"][0]

    refused = add_x(client, dataset_id, [np.zeros(2, np.float32), np.zeros(2, np.float64)])
    assert refused["error"]["code"] == "invalid_parameter", refused
    assert "f64" in refused["error"]["reason"]
    after = client.dataset.get_datasets(filter={"ids": [dataset_id]})["result"]["datasets"][0]
    assert after == before  # no entry of the refused add landed, not even the valid first one

    assert "result" in add_x(client, dataset_id, vectors(7, 2))
    res = client.model.create_state(
        model_id="dataset_reader",
        name="in order",
        params=[dataset_param("x", dataset_id, "x"), scalar_param("batch", 4)],
        execution_location=TEMPORARY,
    )
    values, batches = read_back(client, res)
    assert values == [v.tolist() for v in vectors(0, 9)]
    assert batches == [[0, 4], [4, 4], [8, 1]]


def test_shuffle_in_group_keeps_every_row_of_two_dataset_params_aligned(
    client: LauncherClient,
) -> None:
    res = client.dataset.create_dataset(
        name="pairs",
        description="y[i] = x[i][0] + x[i][1]",
        keys=[
            {"name": "x", "required": True, "rules": {"shape": [2], "allowedTypes": ["f32"]}},
            {"name": "y", "required": True, "rules": {"shape": [], "allowedTypes": ["i64"]}},
        ],
    )
    dataset_id = res["result"]["datasetId"]
    count = 40
    xs = [np.array([i, i * i], dtype=np.float32) for i in range(count)]
    ys = [np.array(i + i * i, dtype=np.int64) for i in range(count)]
    added = client.dataset.add_entries(
        dataset_id=dataset_id, keys=[{"key": "x", "data": xs}, {"key": "y", "data": ys}]
    )
    assert "result" in added, added

    res = client.model.create_state(
        model_id="dataset_pairs",
        name="shuffled",
        params=[dataset_param("x", dataset_id, "x"), dataset_param("y", dataset_id, "y")],
        execution_location=TEMPORARY,
    )
    order = json.loads(state_keys(client, "dataset_pairs", res)["order"])
    assert sorted(order) == list(range(count))
    assert order != list(range(count))  # shuffled (identity has probability 1/40!)


def test_unknown_dataset_is_refused_as_dataset_not_found_with_its_id(
    client: LauncherClient,
) -> None:
    res = client.model.create_state(
        model_id="dataset_reader",
        name="missing",
        params=[dataset_param("x", MISSING, "x")],
        execution_location=TEMPORARY,
    )
    assert res == {"error": {"code": "dataset_not_found", "datasetId": MISSING}}


def test_unknown_key_is_refused_as_dataset_key_not_found_with_both_ids(
    client: LauncherClient,
) -> None:
    dataset_id = create_x_dataset(client)
    res = client.model.create_state(
        model_id="dataset_reader",
        name="missing key",
        params=[dataset_param("x", dataset_id, "nope")],
        execution_location=TEMPORARY,
    )
    assert res == {
        "error": {"code": "dataset_key_not_found", "datasetId": dataset_id, "datasetKey": "nope"}
    }


def run_while(client: LauncherClient, dataset_id: str, change: Any) -> dict[str, Any]:
    """Run a slow reader of ``dataset_id`` (0.2 s after each 2 entries) and call ``change()``
    once its createState phase has started; the job's final response."""
    stream = client.model.create_state_stream(
        model_id="dataset_reader",
        name="slow",
        params=[
            dataset_param("x", dataset_id, "x"),
            scalar_param("batch", 2),
            scalar_param("sleep", 0.2),
        ],
        execution_location=TEMPORARY,
    )
    changed = False
    for item in stream:
        if item.get("event") == "phaseStarted" and item["phase"] == "createState":
            change()
            changed = True
        final = item
    assert changed, final
    return final


def test_a_job_reads_the_version_it_started_with_when_the_dataset_is_deleted(
    client: LauncherClient,
) -> None:
    dataset_id = create_x_dataset(client)
    add_x(client, dataset_id, vectors(0, 10))

    def delete() -> None:
        assert client.dataset.delete_dataset(dataset_id=dataset_id) == {"result": {}}

    res = run_while(client, dataset_id, delete)
    values, batches = read_back(client, res)
    assert values == [v.tolist() for v in vectors(0, 10)]
    assert len(batches) == 5
    again = client.model.create_state(
        model_id="dataset_reader",
        name="after delete",
        params=[dataset_param("x", dataset_id, "x")],
        execution_location=TEMPORARY,
    )
    assert again == {"error": {"code": "dataset_not_found", "datasetId": dataset_id}}


def test_a_job_reads_the_version_it_started_with_when_entries_are_removed(
    client: LauncherClient,
) -> None:
    dataset_id = create_x_dataset(client)
    add_x(client, dataset_id, vectors(0, 10))

    def remove() -> None:
        res = client.dataset.remove_entries(dataset_id=dataset_id, entries={"start": 0, "end": 8})
        assert res == {"result": {}}

    res = run_while(client, dataset_id, remove)
    values, _ = read_back(client, res)
    assert values == [v.tolist() for v in vectors(0, 10)]
    now = client.dataset.get_entries(dataset_id=dataset_id, entries={"start": 0, "end": 2})
    assert [e["data"].numpy().tolist() for e in now["result"]["keys"][0]["data"]] == [
        v.tolist() for v in vectors(8, 2)
    ]
