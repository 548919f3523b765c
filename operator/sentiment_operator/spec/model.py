"""Which model to serve, from where (image, PersistentVolumeClaim, download), and container resources."""

from __future__ import annotations

from typing import Literal

import sentiment_contract as C
from pydantic import (
    ConfigDict,
    Field,
    field_validator,
    model_validator,
)

from .base import (
    DEFAULT_MODEL_ID,
    DEFAULT_MODEL_PATH,
    SpecFieldError,
    _cel,
    _server_setting,
    _Spec,
    _without_default,
)
from .quantities import Quantity, parse_quantity


class ResourceRequirements(_Spec):
    """Compute resources for a container (the requests/limits part of a Kubernetes ResourceRequirements)."""

    requests: dict[str, Quantity] = Field(
        default_factory=dict, description="Minimum resources, e.g. cpu: 500m."
    )
    limits: dict[str, Quantity] = Field(
        default_factory=dict, description="Maximum resources, e.g. memory: 2Gi."
    )

    @model_validator(mode="after")
    def _requests_within_limits(self) -> ResourceRequirements:
        for resource, request in self.requests.items():
            limit = self.limits.get(resource)
            if limit is not None and parse_quantity(request) > parse_quantity(limit):
                raise SpecFieldError(
                    f"requests.{resource}", f"request {request} is larger than the limit {limit}"
                )
        return self

    def to_k8s(self) -> dict[str, dict[str, str]]:
        """The Kubernetes ResourceRequirements dict (empty sections omitted)."""
        out: dict[str, dict[str, str]] = {}
        if self.requests:
            out["requests"] = dict(self.requests)
        if self.limits:
            out["limits"] = dict(self.limits)
        return out


class ImageSource(_Spec):
    """The model is baked into the inference image at ``path``."""

    path: str = Field(
        DEFAULT_MODEL_PATH, description="Absolute path of the model directory inside the image."
    )

    @field_validator("path")
    @classmethod
    def _absolute(cls, value: str) -> str:
        if not value.startswith("/"):
            raise ValueError("must be an absolute path (start with '/')")
        return value


class PvcSource(_Spec):
    """The model lives on an existing PersistentVolumeClaim, mounted read-only by default."""

    claim_name: str = Field(
        min_length=1, description="Name of the PersistentVolumeClaim in the same namespace."
    )
    sub_path: str | None = Field(None, description="Directory inside the volume that holds the model.")
    read_only: bool = Field(True, description="Mount the claim read-only.")

    @field_validator("sub_path")
    @classmethod
    def _relative(cls, value: str | None) -> str | None:
        if value is not None and (value.startswith("/") or ".." in value.split("/")):
            raise ValueError("must be a relative path without '..'")
        return value


class DownloadSource(_Spec):
    """An init container runs ``sentiment-fetch-model`` to download the model into a shared emptyDir."""

    revision: str = Field(
        "main", min_length=1, description="Model revision (branch, tag or commit) to fetch."
    )


class ModelSource(_Spec):
    """Where the model comes from: exactly one of image, pvc or download."""

    model_config = ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                _cel(
                    "(has(self.image) ? 1 : 0) + (has(self.pvc) ? 1 : 0) + (has(self.download) ? 1 : 0) == 1",
                    "exactly one of image, pvc or download must be set",
                )
            ]
        }
    )

    image: ImageSource | None = Field(None, description="Use the model baked into the inference image.")
    pvc: PvcSource | None = Field(None, description="Mount the model from a PersistentVolumeClaim.")
    download: DownloadSource | None = Field(None, description="Download the model in an init container.")

    @model_validator(mode="after")
    def _exactly_one(self) -> ModelSource:
        chosen = [name for name in ("image", "pvc", "download") if getattr(self, name) is not None]
        if len(chosen) != 1:
            found = ", ".join(chosen) if chosen else "none"
            raise SpecFieldError(
                "image", f"exactly one of image, pvc or download must be set (found: {found})"
            )
        return self

    @property
    def kind(self) -> Literal["image", "pvc", "download"]:
        if self.pvc is not None:
            return "pvc"
        if self.download is not None:
            return "download"
        return "image"


class ModelSpec(_Spec):
    """Which model to serve and how."""

    id: str = Field(
        DEFAULT_MODEL_ID, min_length=1, description="Model id reported by the server and fetched."
    )
    source: ModelSource = Field(
        ModelSource(image=ImageSource()),
        description="Where the model comes from (default: baked into the image).",
        # No default in the CRD: a stored `image: {}` would survive a later `kubectl apply` of `pvc:`.
        json_schema_extra=_without_default,
    )
    max_sequence_length: int = _server_setting(
        C.MAX_LENGTH, ge=8, description="Tokens per text after truncation."
    )
    precision: Literal["none", "int8"] = Field(
        "none", description="none = float32; int8 = dynamic int8 quantization of the linear layers."
    )
