"""The gRPC server's services: the three servicers, health checking and reflection."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from launcher.api import reflection
from launcher.api.entries_wire import add_entries_handler
from launcher.api.intake import create_state_handler
from launcher.v1 import (
    dataset_pb2,
    dataset_pb2_grpc,
    model_pb2,
    model_pb2_grpc,
    persistent_launcher_pb2,
    persistent_launcher_pb2_grpc,
)

SERVICES = ("launcher.v1.Model", "launcher.v1.Dataset", "launcher.v1.PersistentLauncher")


class Health:
    """The health service of the launcher's gRPC server: "" and every API service."""

    def __init__(self) -> None:
        self.servicer = health.aio.HealthServicer()

    async def set_serving(self, serving: bool) -> None:
        status = (
            health_pb2.HealthCheckResponse.SERVING
            if serving
            else health_pb2.HealthCheckResponse.NOT_SERVING
        )
        for service in ("", *SERVICES):
            await self.servicer.set(service, status)


def add_services(server: grpc.aio.Server, servicers: Mapping[str, Any]) -> Health:
    """Register the Model, Dataset and PersistentLauncher servicers, health checking and
    server reflection (v1 and v1alpha) on ``server``."""
    model_pb2_grpc.add_ModelServicer_to_server(servicers["Model"], server)
    # CreateState again, its chunk messages parsed without copying their data (see intake.py);
    # a registered method's later handler replaces the earlier one.
    server.add_registered_method_handlers(
        "launcher.v1.Model", {"CreateState": create_state_handler(servicers["Model"])}
    )
    dataset_pb2_grpc.add_DatasetServicer_to_server(servicers["Dataset"], server)
    # AddEntries again, its chunk messages parsed without copying their data (entries_wire.py).
    server.add_registered_method_handlers(
        "launcher.v1.Dataset", {"AddEntries": add_entries_handler(servicers["Dataset"])}
    )
    persistent_launcher_pb2_grpc.add_PersistentLauncherServicer_to_server(
        servicers["PersistentLauncher"], server
    )
    checks = Health()
    health_pb2_grpc.add_HealthServicer_to_server(checks.servicer, server)
    names = [
        model_pb2.DESCRIPTOR.services_by_name["Model"].full_name,
        dataset_pb2.DESCRIPTOR.services_by_name["Dataset"].full_name,
        persistent_launcher_pb2.DESCRIPTOR.services_by_name["PersistentLauncher"].full_name,
        health_pb2.DESCRIPTOR.services_by_name["Health"].full_name,
    ]
    reflection.enable(names, server)
    return checks
