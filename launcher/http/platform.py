"""The platform's response shapes, from the services' answers.

The seed's dicts come from ``launcher.client.responses`` (one reading of the proto answers for
the Python client and for HTTP); this module adds what the platform's strict clients (the Rust
client above all) require: integer-millisecond durations, and every field of the platform's
Model, Dataset and PersistentLauncher objects. Fields that have no meaning on a self-hosted
launcher get fixed values, documented in docs/platform-http.md: one owner (``user``
``local``), access ``readwrite``, no tags, not public, language ``python``, no image.
"""

from __future__ import annotations

from typing import Any

from launcher.store.models import ModelConfig

OWNER = {"type": "user", "userId": "local", "username": "local"}
EMPTY_IMAGE = {
    key: ""
    for key in (
        "domain",
        "repository",
        "reference",
        "digest",
        "targetDomain",
        "targetRepository",
        "targetReference",
    )
}
#: The spec a createState without one would get on the platform; informative only here.
DEFAULT_SPEC = {"cpus": 1.0, "memoryMebibytes": 512}
_MIB = 1 << 20


def to_ms(value: Any) -> int:
    """A duration or timestamp as integer ms: floats are seconds (the core's unit before it
    moved to integer ms), integers are already ms."""
    if isinstance(value, float):
        return round(value * 1000)
    return int(value)


def durations(values: dict[str, Any]) -> dict[str, int]:
    return {key: to_ms(value) for key, value in values.items()}


def create_state(answer: dict[str, Any]) -> dict[str, Any]:
    """The seed's createState response with integer-ms durations."""
    if "error" in answer:
        return answer
    result = answer["result"]
    kind = "success" if "success" in result else "failed"
    outcome = dict(result[kind])
    outcome["durations"] = durations(outcome["durations"])
    return {"result": {kind: outcome}}


def _parameter_definitions(config: object) -> list[dict[str, Any]]:
    if not isinstance(config, ModelConfig):  # a broken model.toml: listed, without definitions
        return []
    return [
        {
            "name": rule.name,
            "required": rule.required,
            "rules": {
                "shape": list(rule.shape) if rule.shape is not None else None,
                "allowedTypes": list(getattr(rule, "allowed_types", None) or ()),
                "annotations": [],
            },
        }
        for rule in config.parameters
    ]


def model(item: dict[str, Any], config: object) -> dict[str, Any]:
    """A Model of ``getModels``, with every field the platform's clients require (``config``:
    what ``ModelRegistry.aload_many`` read of its folder)."""
    limits = item.get("maxDurationsSeconds", {})
    code_startup = limits.get("codeStartup", 0)
    create = limits.get("createState", 0)
    return {
        "id": item["id"],
        "name": item["name"],
        "description": "",
        "publicAccess": False,
        "createdAt": to_ms(item["createdAt"]),
        "tags": [],
        "owner": OWNER,
        "access": "readwrite",
        "beingCreated": False,
        "language": "python",
        "wasm": False,
        "image": EMPTY_IMAGE,
        "parameterDefinitions": {
            "createState": _parameter_definitions(config),
            "train": [],
            "evaluateInput": [],
            "evaluateOutput": [],
        },
        "defaultLauncherSpecs": {"createState": DEFAULT_SPEC, "evaluate": DEFAULT_SPEC},
        "maxDurationsSeconds": {
            "codeStartup": round(code_startup),
            "instantiateModel": round(code_startup),
            "createState": round(create),
            "train": 0,
            "evaluate": 0,
        },
        "filesystemSizeMebibytes": 0,
        "ongoingTrainingSessions": [],
        "trainingSessions": [],
        "states": [_state(s) for s in item["states"]],
        "activeState": item.get("activeState") or "",
        "snapshots": [_snapshot(s) for s in item.get("snapshots", [])],
    }


def _state(item: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": item["id"],
        "name": item["name"],
        "trainingOperations": [],
        "createdAt": to_ms(item["createdAt"]),
        "beingDeleted": item["beingDeleted"],
        "state": item["state"],
        "mountedModels": item["mountedModels"],
    }


def _snapshot(item: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": item["id"],
        "name": item["name"],
        "createdAt": to_ms(item["createdAt"]),
        "stateId": item.get("stateId", ""),
    }


def dataset(item: dict[str, Any]) -> dict[str, Any]:
    """A Dataset of ``getDatasets``: every field required by the platform's clients."""
    nothing = {"count": 0, "totalByteSize": 0}
    return {
        "id": item["id"],
        "name": item["name"],
        "description": item["description"],
        "publicAccess": False,
        "createdAt": to_ms(item["createdAt"]),
        "tags": [],
        "owner": OWNER,
        "access": "readwrite",
        "keys": [
            {
                "name": k["name"],
                "required": k["required"],
                "rules": {
                    "shape": k["rules"].get("shape"),
                    "allowedTypes": k["rules"].get("allowedTypes", []),
                    "annotations": [],
                },
            }
            for k in item["keys"]
        ],
        "entries": {"count": item["entries"], "totalByteSize": item["byteSize"]},
        "needsReviewEntries": nothing,
        "entriesWaitingToBeDeleted": nothing,
        "versionId": item["datasetVersionId"],
    }


#: The platform's names of running operations (its clients accept only these).
_RUNNING_TYPES = {"createState": "createModelState"}


def persistent_launcher(item: dict[str, Any]) -> dict[str, Any]:
    out = dict(item)
    out["createdAt"] = to_ms(item["createdAt"])
    out["running"] = [
        {"id": r["id"], "type": _RUNNING_TYPES.get(r["type"], r["type"])} for r in item["running"]
    ]
    return out


def sysinfo(result: dict[str, Any]) -> dict[str, Any]:
    """Samples with ``memory`` and ``disk`` in MiB (the platform types them u32)."""
    return {
        "sysinfo": [
            {
                "timestamp": to_ms(s["timestamp"]),
                "cpus": float(s["cpus"]),
                "memory": int(s["memory"]) // _MIB,
                "disk": int(s["disk"]) // _MIB,
            }
            for s in result["sysinfo"]
        ]
    }


def paged(result: dict[str, Any], key: str, convert: Any) -> dict[str, Any]:
    return {
        key: [convert(item) for item in result[key]],
        "total": result["total"],
        "offset": result["offset"],
        "limit": result["limit"],
    }
