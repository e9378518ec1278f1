"""MLflow webhook deliveries: MLflow's body, headers and signature, sent only to public addresses
(unless private ones are allowed), through a queue that retries with backoff and then dead-letters.

The body is `{"entity", "action", "timestamp", "data"}` serialised as MLflow does (json.dumps), with
`X-MLflow-Delivery-Id`, `X-MLflow-Timestamp` (unix seconds) and
`X-MLflow-Signature: v1,<base64 HMAC-SHA256(secret, "<delivery_id>.<timestamp>.<body>")>`, so a
receiver written for MLflow's webhooks verifies ours unchanged. The delivery id stays the same over
retries (receivers can drop duplicates); the timestamp and signature are fresh on every attempt."""

from __future__ import annotations

import base64
import hashlib
import hmac
import ipaddress
import json
import os
import socket
import time
import uuid
from dataclasses import dataclass
from functools import cache
from urllib.parse import urlsplit

import urllib3

from shared.errors import invalid

# The MLflow events the registry produces (prompts and budgets are not served).
EVENTS = ("registered_model.created", "model_version.created", "model_version_tag.set",
          "model_version_tag.deleted", "model_version_alias.created", "model_version_alias.deleted")
DEFAULT_RETRY_DELAYS = (10, 60, 300, 1800, 7200)  # seconds before attempts 2..6 (SQS allows up to 12 h)
TIMEOUT_SECONDS = 10.0
MAX_RESPONSE_BODY = 1000  # characters of a receiver's answer kept in test results and dead letters
_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")


class UnsafeDestination(Exception):
    """The URL may not be called from here (scheme, or an address that is not public)."""


# ---- where a delivery may go ------------------------------------------------------------------------
# Create and update check the URL's form only: resolving its host there would fail wherever DNS is
# unavailable (CI, air-gapped VPCs) and proves nothing, since the name may point elsewhere by the time
# of delivery. The address check happens at delivery, on the address actually connected to.

def deployed() -> bool:
    return os.environ.get("MLREG_ENV", "local") != "local"


def allow_private_ips() -> bool:
    """MLflow's MLFLOW_WEBHOOK_ALLOW_PRIVATE_IPS: off unless turned on (`mlreg serve
    --webhook-allow-private-ips`, or `webhook_allow_private_ips` of a CDK environment; never in production)."""
    return os.environ.get("MLREG_WEBHOOK_ALLOW_PRIVATE_IPS", "").lower() in ("1", "true", "yes")


def _public(address: str) -> bool:
    """Global unicast only; IPv4 wrapped in IPv6 (mapped, 6to4, NAT64) is judged as the IPv4 inside."""
    ip = ipaddress.ip_address(address.split("%")[0])
    if isinstance(ip, ipaddress.IPv6Address):
        inner = ip.ipv4_mapped or ip.sixtofour or (ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF) if ip in _NAT64 else None)
        ip = inner or ip
    return ip.is_global


def _ip_literal(host: str) -> bool:
    """Hosts an HTTP client dials without a DNS lookup (MLflow's `_is_ip_literal_like`)."""
    return ":" in host or host.replace(".", "").isdigit()


def check_url(url: str) -> tuple[str, int, str]:
    """The URL's form, without DNS: allowed scheme, a host name, a canonical IP literal if numeric, and
    a public one unless private addresses are allowed. Returns (scheme, port, host)."""
    try:
        parts = urlsplit(url)
        host, port = parts.hostname, parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError as err:  # `http://[invalid`, a port out of range
        raise UnsafeDestination(f"Invalid webhook URL {url!r}: {err!r}") from None
    allowed = ("https",) if deployed() else ("https", "http")
    if parts.scheme not in allowed:
        raise UnsafeDestination(f"Invalid webhook URL scheme: {parts.scheme!r}. Allowed schemes are: {', '.join(allowed)}.")
    if not host:
        raise UnsafeDestination(f"Webhook URL must include a hostname: {url!r}")
    if _ip_literal(host):
        try:
            ipaddress.ip_address(host)  # `127.1` and `0177.0.0.1` are loopback to some parsers, not to others
        except ValueError:
            raise UnsafeDestination(f"Webhook URL host {host!r} is not a canonical IP address literal.") from None
        _check_address(host, host)
    return parts.scheme, port, host


def _check_address(host: str, address: str) -> None:
    if not allow_private_ips() and not _public(address):
        raise UnsafeDestination(f"Webhook URL must not resolve to a non-public IP address. "
                                f"{host!r} resolves to {address}.")


def resolve(url: str) -> str:
    """At delivery: the address to connect to. Every address the name resolves to must be public (one
    private answer taints the name: a rebinding attacker controls the order), unless allowed."""
    scheme, port, host = check_url(url)
    try:
        answers = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as err:
        raise UnsafeDestination(f"Cannot resolve webhook URL hostname {host!r}: {err}") from None
    addresses = [a[4][0] for a in answers]
    for address in addresses:
        _check_address(host, address)
    return addresses[0]


def validate_url(url) -> str:
    """For create/update: MLflow's checks of the URL's form, as INVALID_PARAMETER_VALUE (no DNS)."""
    if not isinstance(url, str) or not url.strip():
        raise invalid(f"Webhook URL cannot be empty or just whitespace: {url!r}")
    try:
        check_url(url)
    except UnsafeDestination as err:
        raise invalid(str(err)) from None
    return url


# ---- body, headers, signature -----------------------------------------------------------------------

def signature(secret: str, delivery_id: str, timestamp: str, body: str) -> str:
    mac = hmac.new(secret.encode(), f"{delivery_id}.{timestamp}.{body}".encode(), hashlib.sha256).digest()
    return "v1," + base64.b64encode(mac).decode()


def body(event: str, payload: dict, event_time: str) -> str:
    entity, action = event.split(".")
    return json.dumps({"entity": entity, "action": action, "timestamp": event_time, "data": payload})


def headers(secret: str | None, delivery_id: str, text: str) -> dict[str, str]:
    timestamp = str(int(time.time()))
    out = {"Content-Type": "application/json", "X-MLflow-Delivery-Id": delivery_id, "X-MLflow-Timestamp": timestamp}
    if secret:
        out["X-MLflow-Signature"] = signature(secret, delivery_id, timestamp, text)
    return out


# ---- one attempt --------------------------------------------------------------------------------------

@dataclass
class Outcome:
    status: int | None = None
    response_body: str | None = None
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.status is not None and self.status < 400

    @property
    def retryable(self) -> bool:
        """429, 5xx and network failures are worth another try; other answers and refusals are not."""
        if self.status is None:
            return not (self.error or "").startswith("refused:")
        return self.status == 429 or self.status >= 500


def post(url: str, text: str, head: dict[str, str]) -> Outcome:
    """POST to the checked address itself (no second DNS lookup that could rebind), TLS verified
    against the URL's host name, no redirects followed, no proxies."""
    try:
        address = resolve(url)
    except UnsafeDestination as err:
        return Outcome(error=f"refused: {err}")
    parts = urlsplit(url)
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    timeout = urllib3.Timeout(connect=TIMEOUT_SECONDS, read=TIMEOUT_SECONDS)
    if parts.scheme == "https":
        pool = urllib3.HTTPSConnectionPool(address, parts.port or 443, server_hostname=parts.hostname,
                                           assert_hostname=parts.hostname, cert_reqs="CERT_REQUIRED", timeout=timeout)
    else:
        pool = urllib3.HTTPConnectionPool(address, parts.port or 80, timeout=timeout)
    try:
        resp = pool.urlopen("POST", path, body=text.encode(), headers={**head, "Host": parts.netloc.rsplit("@", 1)[-1]},
                            redirect=False, retries=False, preload_content=True)
        return Outcome(status=resp.status, response_body=resp.data.decode(errors="replace")[:MAX_RESPONSE_BODY])
    except urllib3.exceptions.HTTPError as err:
        return Outcome(error=f"{type(err).__name__}: {err}")
    finally:
        pool.close()


def deliver(url: str, secret: str | None, event: str, payload: dict, delivery_id: str, event_time: str) -> Outcome:
    text = body(event, payload, event_time)
    return post(url, text, headers(secret, delivery_id, text))


# ---- the delivery queue --------------------------------------------------------------------------------

def retry_delays() -> tuple[int, ...]:
    """Seconds to wait before each retry (MLREG_WEBHOOK_RETRY_DELAYS="10,60,..."); attempts = retries + 1."""
    text = os.environ.get("MLREG_WEBHOOK_RETRY_DELAYS")
    return tuple(int(float(d)) for d in text.split(",") if d.strip()) if text else DEFAULT_RETRY_DELAYS


@cache
def sqs():
    import boto3

    return boto3.client("sqs", endpoint_url=os.environ.get("MLREG_SQS_ENDPOINT") or None)


def delivery_id(event_id: str, webhook_id: str) -> str:
    """The same change to the same webhook always has the same delivery id, also when re-published."""
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"mlreg:{event_id}/{webhook_id}"))


def enqueue(messages: list[dict]) -> None:
    """SendMessageBatch, 10 at a time; raises if any message was not accepted."""
    queue = os.environ["MLREG_WEBHOOK_QUEUE_URL"]
    for start in range(0, len(messages), 10):
        chunk = messages[start:start + 10]
        resp = sqs().send_message_batch(QueueUrl=queue, Entries=[
            {"Id": str(i), "MessageBody": json.dumps(m)} for i, m in enumerate(chunk)])
        if resp.get("Failed"):
            raise RuntimeError(f"the delivery queue refused {len(resp['Failed'])} messages: {resp['Failed'][:1]}")


def postpone(receipt_handle: str, seconds: int) -> None:
    """The backoff: the message reappears after `seconds` (its visibility timeout)."""
    sqs().change_message_visibility(QueueUrl=os.environ["MLREG_WEBHOOK_QUEUE_URL"], ReceiptHandle=receipt_handle,
                                    VisibilityTimeout=max(0, min(seconds, 43200)))


def dead_letter(message: dict, outcome: Outcome, attempts: int) -> None:
    record = {**message, "attempts": attempts, "last_status": outcome.status, "last_error": outcome.error,
              "last_response": outcome.response_body}
    sqs().send_message(QueueUrl=os.environ["MLREG_WEBHOOK_DLQ_URL"], MessageBody=json.dumps(record))
