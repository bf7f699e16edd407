"""The Dask worker plugin that ships a model to the workers (imported by the dask engine only: it needs distributed).

A module of its own, so that importing :mod:`lite_moderation.distributed` does not import Dask, and so that the
plugin's class is importable by name where a worker unpickles it.
"""

from __future__ import annotations

from typing import Any

from distributed.diagnostics.plugin import WorkerPlugin

from .distributed import SHIPPED_PREFIX, ModelPayload, _receive_payload


class ModelPlugin(WorkerPlugin):
    """Hands a model's bytes to each worker process: those running when it is registered and those that join (or
    restart) later, before they run a task. The bytes are verified where the model is rebuilt
    (:func:`lite_moderation.distributed.model_from_payload`), not here."""

    idempotent = True  # a model the cluster already holds (same checksum) is not sent to its workers again

    def __init__(self, payload: ModelPayload) -> None:
        self.payload = payload
        self.name = f"{SHIPPED_PREFIX}{payload.checksum}"

    def setup(self, worker: Any) -> None:
        _receive_payload(self.payload)
