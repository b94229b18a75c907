"""Which models a request names, for per-key model permissions.

Only the Model service is scoped by model: datasets and persistent launchers are shared
by every key. A createState or uploadState request names its model and the models it
mounts (their files and states become readable to the job).
"""

from __future__ import annotations

from google.protobuf.message import Message

from launcher.auth.keys import ApiKey
from launcher.v1 import model_pb2

MODEL_SERVICE = "/launcher.v1.Model/"
GET_MODELS = MODEL_SERVICE + "GetModels"
CREATE_STATE = MODEL_SERVICE + "CreateState"
UPLOAD_STATE = MODEL_SERVICE + "UploadState"


def named_models(request: Message) -> list[str]:
    """The model ids a Model-service request names (its header's, for streamed requests)."""
    if isinstance(request, model_pb2.CreateStateRequest | model_pb2.UploadStateRequest):
        if request.WhichOneof("part") != "header":
            return []
        header = request.header
        return [header.model_id, *(m.model_id for m in header.mount_models)]
    model_id = getattr(request, "model_id", None)
    return [model_id] if isinstance(model_id, str) else []


def denied_model(key: ApiKey, request: Message) -> str | None:
    """The first named model the key may not use, or None when it may use them all."""
    return next((m for m in named_models(request) if not key.may_use(m)), None)


def restrict_get_models(
    key: ApiKey, request: model_pb2.GetModelsRequest
) -> model_pb2.GetModelsResponse | None:
    """Narrow a getModels request to the key's models, in place. Returns the (empty) answer
    when the key may see none of the asked models, since an empty ``ids`` means "all"."""
    if key.models is None:
        return None
    wanted = set(request.ids) if request.ids else set(key.models)
    visible = sorted(wanted & key.models)
    if not visible:
        return model_pb2.GetModelsResponse(
            result=model_pb2.GetModelsResponse.Result(
                total=0, offset=request.offset, limit=request.limit or 20
            )
        )
    request.ClearField("ids")
    request.ids.extend(visible)
    return None
