"""`mlreg`: run the local service, and manage projects and tokens."""

from __future__ import annotations

import argparse
import os
import secrets
import signal
import socket
import subprocess
import sys
import threading
from pathlib import Path

DEFAULT_PORT = 5005
DEFAULT_PROJECT = "default"
M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3  # glibc's mallopt parameters (malloc.h)


class StartupError(Exception):
    """A problem the user can fix; reported as one line, without a traceback."""


def _prepare_data_dir(path: Path) -> Path:
    try:
        path.mkdir(parents=True, exist_ok=True)
        probe = path / ".write-test"
        probe.write_text("ok")
        probe.unlink()
    except OSError as exc:
        raise StartupError(f"cannot use data directory {path}: {exc.strerror or exc}") from None
    return path


def _check_port(host: str, port: int) -> None:
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as the gateway binds; ignores TIME_WAIT
        try:
            s.bind((host, port))
        except OSError:
            raise StartupError(f"port {port} on {host} is already in use (choose another with --port)") from None


def _secret(data_dir: Path, name: str) -> str:
    """A per-installation secret kept in the data directory (created on first start)."""
    path = data_dir / name
    if not path.exists():
        path.write_text(secrets.token_urlsafe(32))
        path.chmod(0o600)
    return path.read_text().strip()


def _configure(args) -> None:
    os.environ.setdefault("AWS_DEFAULT_REGION", args.region)
    os.environ["MLREG_TABLE"] = args.table
    os.environ["MLREG_BUCKET"] = args.bucket
    os.environ["MLREG_ENV"] = "local"
    os.environ.setdefault("POWERTOOLS_METRICS_DISABLED", "true")  # no CloudWatch here: keep stdout for people
    os.environ["MLREG_PAGE_TOKEN_KEY"] = _secret(args.data_dir, "page-token-key")
    if args.dynamodb_endpoint:
        os.environ["MLREG_DYNAMODB_ENDPOINT"] = args.dynamodb_endpoint
    if args.s3_endpoint:
        os.environ["MLREG_S3_ENDPOINT"] = args.s3_endpoint
    if args.webhook_allow_private_ips:
        os.environ["MLREG_WEBHOOK_ALLOW_PRIVATE_IPS"] = "true"


def _ensure_aws_resources(args) -> None:
    """With real endpoints (DynamoDB Local, AWS), create the table and bucket if they are missing."""
    import boto3

    from shared import db
    from shared import table as table_def

    ddb = db.client()
    if args.table not in ddb.list_tables()["TableNames"]:
        ddb.create_table(**table_def.create_table_kwargs(args.table))
        ddb.get_waiter("table_exists").wait(TableName=args.table)
    s3 = boto3.client("s3", endpoint_url=args.s3_endpoint or None)
    if args.bucket not in [b["Name"] for b in s3.list_buckets().get("Buckets", [])]:
        s3.create_bucket(Bucket=args.bucket)


def _bootstrap(data_dir: Path) -> str:
    """First start: project `default` and an admin token (kept in the data dir for local use)."""
    from shared import projects
    from shared.routes import Role

    token_file = data_dir / "admin-token"
    if projects.get_project(DEFAULT_PROJECT) is None:
        projects.create_project(DEFAULT_PROJECT, "Created by mlreg serve")
        token_file.write_text(projects.create_token(DEFAULT_PROJECT, Role.ADMIN, name="local admin"))
        token_file.chmod(0o600)
    if not token_file.exists():
        raise StartupError(f"{token_file} is missing: create a token with `mlreg token create`")
    return token_file.read_text().strip()


def _keep_freed_buffers() -> None:
    """glibc gives a freed block of 128 KB or more straight back to the kernel, so every request's
    body and each copy of it lands on fresh pages: a page fault per 4 KB, which on a VM costs more
    than the copy (a 1 MB buffer: 1 ms, 0.05 ms from the heap, measured on the team's 2-core
    machines). Kept in the heap up to 32 MB each and reused instead. Not glibc: nothing to do."""
    import ctypes

    try:
        mallopt = ctypes.CDLL("libc.so.6").mallopt
    except (OSError, AttributeError):
        return
    mallopt(M_MMAP_THRESHOLD, 32 * 1024 * 1024)  # glibc's largest; also stops its own adjusting
    mallopt(M_TRIM_THRESHOLD, 128 * 1024 * 1024)  # free memory the heap keeps before giving back


def start_service(args):
    """Start emulator (unless real endpoints are given) and gateway. Returns (gateway, emulator, token)."""
    from mlreg.gateway import AuthorizerCache, Gateway

    _keep_freed_buffers()
    _prepare_data_dir(args.data_dir)
    _check_port(args.host, args.port)
    _configure(args)
    emulator = None
    if not args.dynamodb_endpoint:
        from mlreg.emulator import Emulator

        from mlreg.signatures import KEY_FILE

        emulator = Emulator(args.data_dir, args.table, args.bucket, args.region, _secret(args.data_dir, KEY_FILE))
        emulator.start()
        if not args.s3_endpoint:
            os.environ["MLREG_S3_ENDPOINT"] = emulator.endpoint
        # -- events (shared/events/local.py): the publisher against the emulated stream, bus and queues --
        from shared.events.local import LocalEvents

        if args.webhook_retry_delays:
            os.environ["MLREG_WEBHOOK_RETRY_DELAYS"] = args.webhook_retry_delays
        emulator.events = LocalEvents(args.table, emulator.stream)
        emulator.events.start()
        # -- end events --
        # -- registry worker (shared/registry/local.py): package copies and model purges, as deployed --
        from shared.registry.local import LocalWorker

        emulator.worker = LocalWorker(args.table, emulator.stream)
        emulator.worker.start(emulator.model_items())
    else:
        _ensure_aws_resources(args)
    token = _bootstrap(args.data_dir)
    # -- auth (mlreg/admin.py): `mlreg project|token ...` reach this service's table through this file.
    # Written before the port opens: whoever sees the service up can use the CLI at once.
    from mlreg import admin

    ddb_endpoint = emulator.endpoint if emulator else args.dynamodb_endpoint  # moto's server serves DynamoDB too
    if ddb_endpoint:
        admin.publish_endpoint(args.data_dir, ddb_endpoint, args.region, args.table, emulated=emulator is not None)
    # -- end auth --
    cache = AuthorizerCache(args.authorizer_cache_seconds, emulator and (lambda: emulator.credential_writes))
    gateway = Gateway(args.host, args.port, verbose=args.verbose, idle_timeout=args.idle_timeout,
                      authorizer_cache=cache, before_answer=emulator.files.flush if emulator else lambda: None)
    return gateway, emulator, token


def _exports(args, token: str) -> str:
    uri = f"http://{args.host}:{args.port}/projects/{DEFAULT_PROJECT}"
    return "\n".join([
        f"export MLFLOW_TRACKING_URI={uri}",
        f"export MLFLOW_TRACKING_TOKEN={token}",
        "# files of 4 MiB and more go straight to S3 in presigned parts, not through the API's 6 MB limit",
        "export MLFLOW_ENABLE_PROXY_MULTIPART_UPLOAD=true MLFLOW_MULTIPART_UPLOAD_MINIMUM_FILE_SIZE=4194304",
    ])


def cmd_serve(args) -> int:
    gateway, emulator, token = start_service(args)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    thread = threading.Thread(target=gateway.serve_forever, daemon=True)
    thread.start()
    from mlreg import admin, ui_static

    ui_static.prepare_in_background()  # the web UI: MLflow's bundle (the first time, it is extracted)
    print(f"mlreg: serving on http://{args.host}:{args.port} (data in {args.data_dir})", flush=True)
    print("Use it from your shell or code:\n" + _exports(args, token), flush=True)
    print(f"Web UI: http://{args.host}:{args.port}/projects/{DEFAULT_PROJECT}/ (sign in with the token above; "
          "docs/ui.md)", flush=True)
    if args.example:
        _run_example(args, token)
    try:
        stop.wait()
    except KeyboardInterrupt:
        pass
    gateway.shutdown()
    from mlreg import admin

    admin.withdraw_endpoint(args.data_dir)  # auth: the CLI must not reach a stopped service
    if emulator:
        emulator.events.stop()  # events
        emulator.worker.stop()  # registry worker
        emulator.stop()
    print("mlreg: stopped; data saved", flush=True)
    return 0


def _run_example(args, token: str) -> None:
    env = {**os.environ, "MLFLOW_TRACKING_URI": f"http://{args.host}:{args.port}/projects/{DEFAULT_PROJECT}",
           "MLFLOW_TRACKING_TOKEN": token}
    example = Path(__file__).resolve().parent.parent / "examples" / "train.py"
    print(f"mlreg: running {example} against the local service", flush=True)
    result = subprocess.run([sys.executable, str(example)], env=env)
    print(f"mlreg: example finished with exit code {result.returncode}; the service keeps running (Ctrl-C stops it)",
          flush=True)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="mlreg", description="MLflow-compatible tracking and registry")
    sub = parser.add_subparsers(dest="command", required=True)
    serve = sub.add_parser("serve", help="run the API locally on emulated DynamoDB and S3")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=DEFAULT_PORT)
    serve.add_argument("--data-dir", type=Path, default=Path(".mlreg"))
    serve.add_argument("--dynamodb-endpoint", help="use this DynamoDB (DynamoDB Local, or AWS) instead of the emulator")
    serve.add_argument("--s3-endpoint", help="use this S3 endpoint instead of the emulator")
    serve.add_argument("--table", default="mlreg")
    serve.add_argument("--bucket", default="mlreg-local")
    serve.add_argument("--region", default="us-east-1")
    serve.add_argument("--example", action="store_true", help="run examples/train.py against the service")
    serve.add_argument("--verbose", action="store_true", help="log every request")
    serve.add_argument("--idle-timeout", type=float, default=60, help="seconds before an idle keep-alive "
                       "connection is closed")
    serve.add_argument("--authorizer-cache-seconds", type=float, default=60,
                       help="how long an authorizer answer is kept, as API Gateway's cache (0: none); on the "
                       "emulator a token, session or project change ends every kept answer at once")
    serve.add_argument("--webhook-retry-delays", help="events: seconds before each webhook retry, e.g. 1,5,30 "
                       "(default 10,60,300,1800,7200)")
    serve.add_argument("--webhook-allow-private-ips", action="store_true",
                       help="events: let webhooks call private and loopback addresses (as MLflow's "
                       "MLFLOW_WEBHOOK_ALLOW_PRIVATE_IPS); for receivers on this machine or network")
    serve.set_defaults(func=cmd_serve)
    from mlreg import admin  # auth: `mlreg project create|list|delete`, `mlreg token create|list|revoke`

    admin.add_commands(sub)
    from mlreg import smoke  # `mlreg smoke`: check a running environment end to end

    smoke.add_command(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except StartupError as err:
        print(f"mlreg: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
