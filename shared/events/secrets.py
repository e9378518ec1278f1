"""Webhook secrets at rest. MLflow signs deliveries with HMAC-SHA256(secret, ...), so the secret
itself must be recoverable: hashing is impossible, it is encrypted instead.

- Deployed (MLREG_WEBHOOK_KEY_ARN): AWS KMS Encrypt/Decrypt with a customer-managed key of the stack.
  The encryption context binds each ciphertext to its project and webhook id, so a blob copied to
  another webhook's item does not decrypt; only the registry function may encrypt and only the
  publisher may decrypt (key policy grants in infra/constructs/events.py).
- Local (`mlreg serve`): AES-256-GCM (the `cryptography` package that moto brings) under a key
  derived from the data directory's MLREG_PAGE_TOKEN_KEY, with the same context as associated data.
Without either, storing a secret is refused rather than kept in clear text."""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
from functools import cache

from shared.errors import MlflowError

KMS_PREFIX, LOCAL_PREFIX = "kms:", "aesgcm:"


def _context(project: str, webhook_id: str) -> dict[str, str]:
    return {"mlreg:project": project, "mlreg:webhook": webhook_id}


@cache
def _kms():
    import boto3

    return boto3.client("kms")


def _local_key() -> bytes:
    material = os.environ.get("MLREG_PAGE_TOKEN_KEY")
    if not material:
        raise MlflowError("Webhook secrets cannot be stored: no encryption key is configured "
                          "(MLREG_WEBHOOK_KEY_ARN in a deployment)", "INTERNAL_ERROR")
    return hmac.new(material.encode(), b"mlreg webhook secrets v1", hashlib.sha256).digest()


def _aad(project: str, webhook_id: str) -> bytes:
    return f"{project}\x00{webhook_id}".encode()


def encrypt(secret: str, project: str, webhook_id: str) -> str:
    key_arn = os.environ.get("MLREG_WEBHOOK_KEY_ARN")
    if key_arn:
        blob = _kms().encrypt(KeyId=key_arn, Plaintext=secret.encode(),
                              EncryptionContext=_context(project, webhook_id))["CiphertextBlob"]
        return KMS_PREFIX + base64.b64encode(blob).decode()
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    nonce = os.urandom(12)
    sealed = AESGCM(_local_key()).encrypt(nonce, secret.encode(), _aad(project, webhook_id))
    return LOCAL_PREFIX + base64.b64encode(nonce + sealed).decode()


def decrypt(stored: str, project: str, webhook_id: str) -> str:
    if stored.startswith(KMS_PREFIX):
        blob = base64.b64decode(stored[len(KMS_PREFIX):])
        return _kms().decrypt(CiphertextBlob=blob, EncryptionContext=_context(project, webhook_id))["Plaintext"].decode()
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    raw = base64.b64decode(stored[len(LOCAL_PREFIX):])
    return AESGCM(_local_key()).decrypt(raw[:12], raw[12:], _aad(project, webhook_id)).decode()
