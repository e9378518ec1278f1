"""MLflow-shaped errors: `{"error_code": ..., "message": ...}` with MLflow's HTTP status."""

from __future__ import annotations

HTTP_STATUS = {
    "INVALID_PARAMETER_VALUE": 400,
    "BAD_REQUEST": 400,
    "RESOURCE_ALREADY_EXISTS": 400,
    "INVALID_STATE": 400,
    "RESOURCE_DOES_NOT_EXIST": 404,
    "ENDPOINT_NOT_FOUND": 404,
    "UNAUTHENTICATED": 401,
    "PERMISSION_DENIED": 403,
    "REQUEST_LIMIT_EXCEEDED": 429,
    "PAYLOAD_TOO_LARGE": 413,
    "NOT_IMPLEMENTED": 501,
    "INTERNAL_ERROR": 500,
    "TEMPORARILY_UNAVAILABLE": 503,
}


class MlflowError(Exception):
    """An error the client sees as MLflow's `RestException`."""

    def __init__(self, message: str, error_code: str = "INTERNAL_ERROR", status: int | None = None):
        super().__init__(message)
        self.message = message
        self.error_code = error_code
        self.status = status or HTTP_STATUS.get(error_code, 500)

    def to_json(self) -> dict:
        return {"error_code": self.error_code, "message": self.message}


def invalid(message: str) -> MlflowError:
    return MlflowError(message, "INVALID_PARAMETER_VALUE")


def not_found(message: str) -> MlflowError:
    return MlflowError(message, "RESOURCE_DOES_NOT_EXIST")


def already_exists(message: str) -> MlflowError:
    return MlflowError(message, "RESOURCE_ALREADY_EXISTS")
