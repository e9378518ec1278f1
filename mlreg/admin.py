"""`mlreg project ...` and `mlreg token ...`: manage projects and tokens straight in the table.

Where the table is:
- a deployed environment: `--table <name>` (the stack output) with your AWS credentials and region,
  or `--dynamodb-endpoint` for DynamoDB Local;
- the local service (default): `--data-dir` (default `.mlreg`). A running `mlreg serve` publishes its
  DynamoDB endpoint in `<data-dir>/endpoint.json` (the emulator's moto server, or the DynamoDB Local
  it was given), so changes reach the live service at once.
The HTTP API stays MLflow's only: there is no admin endpoint to attack."""

from __future__ import annotations

import argparse
import json
import os
import re
import socket
import sys
from datetime import datetime, timezone
from pathlib import Path
from urllib.parse import urlsplit

ENDPOINT_FILE = "endpoint.json"
_DURATION = re.compile(r"^(\d+)([smhdw])$")
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


# ---- the local service's endpoint (written by `mlreg serve`) ---------------------------------------

def publish_endpoint(data_dir: Path, endpoint: str, region: str, table: str, emulated: bool) -> None:
    path = data_dir / ENDPOINT_FILE
    path.write_text(json.dumps({"dynamodb_endpoint": endpoint, "region": region, "table": table,
                                "emulated": emulated}))


def withdraw_endpoint(data_dir: Path) -> None:
    (data_dir / ENDPOINT_FILE).unlink(missing_ok=True)


def _reachable(endpoint: str) -> bool:
    url = urlsplit(endpoint)
    try:
        with socket.create_connection((url.hostname, url.port or 80), timeout=0.5):
            return True
    except OSError:
        return False


class StoreError(Exception):
    pass


def connect(args) -> None:
    """Point shared.db at the chosen table."""
    from shared import db

    if args.table:
        os.environ["MLREG_TABLE"] = args.table
        if args.dynamodb_endpoint:
            os.environ["MLREG_DYNAMODB_ENDPOINT"] = args.dynamodb_endpoint
        if args.region:
            os.environ["AWS_DEFAULT_REGION"] = args.region
        db.client.cache_clear()
        return
    published = args.data_dir / ENDPOINT_FILE
    info = json.loads(published.read_text()) if published.exists() else None
    if not info or not _reachable(info["dynamodb_endpoint"]):
        raise StoreError(f"no running `mlreg serve` with data in {args.data_dir}: start it (tokens live in its "
                         "table), or pass --table for a deployed environment")
    if info.get("emulated"):
        # The emulator takes only its own key (in the data directory): never the user's real ones.
        # (DynamoDB Local keeps one database per access key, so there the user's own ones are needed.)
        from mlreg import signatures

        for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN"):
            os.environ.pop(name, None)
        emulator = signatures.credentials(args.data_dir)
        os.environ.update(AWS_ACCESS_KEY_ID=emulator["aws_access_key_id"],
                          AWS_SECRET_ACCESS_KEY=emulator["aws_secret_access_key"])
    os.environ.update(AWS_DEFAULT_REGION=info["region"], MLREG_TABLE=info["table"],
                      MLREG_DYNAMODB_ENDPOINT=info["dynamodb_endpoint"])
    db.client.cache_clear()


# ---- commands -----------------------------------------------------------------------------------

def parse_duration_ms(text: str) -> int:
    match = _DURATION.match(text or "")
    if not match:
        raise argparse.ArgumentTypeError(f"invalid duration {text!r}: use e.g. 90s, 30m, 12h, 30d, 4w")
    return int(match.group(1)) * _UNIT_SECONDS[match.group(2)] * 1000


def _when(ms: int | None) -> str:
    if not ms:
        return "-"
    return datetime.fromtimestamp(ms / 1000, timezone.utc).strftime("%Y-%m-%d %H:%M:%SZ")


def _print_table(rows: list[list[str]], header: list[str]) -> None:
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    for row in [header, *rows]:
        print("  ".join(str(v).ljust(w) for v, w in zip(row, widths)).rstrip())


def cmd_project_create(args) -> int:
    from shared import projects

    projects.create_project(args.project, args.description)
    print(f"created project {args.project}; its tracking URI is <api>/projects/{args.project}")
    return 0


def cmd_project_list(args) -> int:
    from shared import projects

    found = projects.list_projects(include_deleted=args.all)
    _print_table([[p["project"], p.get("state", "active"), _when(p.get("creation_time")), p.get("description", "")]
                  for p in found], ["PROJECT", "STATE", "CREATED", "DESCRIPTION"])
    return 0


def cmd_project_delete(args) -> int:
    from shared import projects

    revoked = projects.delete_project(args.project, force=args.force)
    print(f"deleted project {args.project}: {revoked} token(s) revoked; its data stays in the table and bucket, "
          "and its id cannot be reused")
    return 0


def cmd_token_create(args) -> int:
    from shared import projects
    from shared.clock import now_ms
    from shared.routes import Role

    expires = now_ms() + args.expires_in if args.expires_in else None
    token = projects.create_token(args.project, Role[args.role.upper()], args.name, expires)
    print(token)  # stdout carries only the token: TOKEN=$(mlreg token create ...)
    print(f"token {projects.token_id_of(token)} ({args.role}) for project {args.project}, expires {_when(expires)}. "
          "It is shown only this once.", file=sys.stderr)
    return 0


def cmd_token_list(args) -> int:
    from shared import projects

    tokens = sorted(projects.list_tokens(args.project), key=lambda t: t["created_at"])
    if args.json:
        print(json.dumps(tokens, indent=2))
        return 0
    _print_table([[t["token_id"], t.get("name") or "-", t["role"], _when(t["created_at"]), _when(t.get("last_used_at")),
                   _when(t.get("token_expires_at")), "yes" if t.get("revoked") else "no"] for t in tokens],
                 ["ID", "NAME", "ROLE", "CREATED", "LAST USED", "EXPIRES", "REVOKED"])
    return 0


def cmd_token_revoke(args) -> int:
    from shared import projects

    projects.revoke_token(args.project, args.token_id)
    print(f"revoked token {args.token_id} of project {args.project} (cached authorizations end within 60 s)")
    return 0


def cmd_migrate(args) -> int:
    from mlreg import migrations

    return migrations.migrate_table(dry_run=args.dry_run)


def _run(command):
    """Connect to the store, run the command, report MLflow-style errors as one line."""

    def run(args) -> int:
        from botocore.exceptions import BotoCoreError, ClientError

        from shared.errors import MlflowError

        try:
            connect(args)
        except StoreError as err:
            print(f"mlreg: {err}", file=sys.stderr)
            return 2
        try:
            return command(args)
        except MlflowError as err:
            print(f"mlreg: {err.message}", file=sys.stderr)
            return 1
        except (BotoCoreError, ClientError) as err:  # credentials, permissions, a wrong table name
            print(f"mlreg: {err}", file=sys.stderr)
            return 1

    return run


def _store_args(parser: argparse.ArgumentParser) -> None:
    where = parser.add_argument_group("where the table is (default: the local service in --data-dir)")
    where.add_argument("--data-dir", type=Path, default=Path(".mlreg"), help="the local service's data directory")
    where.add_argument("--table", help="a deployed environment's table name (uses your AWS credentials)")
    where.add_argument("--region", help="the deployed table's region (default: your AWS configuration)")
    where.add_argument("--dynamodb-endpoint", help="with --table: a DynamoDB endpoint such as DynamoDB Local")


def add_commands(sub) -> None:
    """`mlreg project ...` and `mlreg token ...` on the CLI's subparsers."""
    project = sub.add_parser("project", help="create, list and delete projects").add_subparsers(dest="action",
                                                                                                required=True)
    p = project.add_parser("create", help="create a project (with MLflow's default experiment)")
    p.add_argument("project")
    p.add_argument("--description", default="")
    p.set_defaults(func=_run(cmd_project_create))
    p = project.add_parser("list", help="list projects")
    p.add_argument("--all", action="store_true", help="include deleted projects")
    p.set_defaults(func=_run(cmd_project_list))
    p = project.add_parser("delete", help="delete a project: revokes its tokens, keeps its data")
    p.add_argument("project")
    p.add_argument("--force", action="store_true", help="delete even if it still holds experiments or runs")
    p.set_defaults(func=_run(cmd_project_delete))

    token = sub.add_parser("token", help="create, list and revoke tokens").add_subparsers(dest="action", required=True)
    t = token.add_parser("create", help="create a token and print it (once)")
    t.add_argument("--project", required=True)
    t.add_argument("--role", required=True, choices=["read", "write", "admin"])
    t.add_argument("--name", default="")
    t.add_argument("--expires-in", type=parse_duration_ms, help="e.g. 12h, 30d, 4w (default: never)")
    t.set_defaults(func=_run(cmd_token_create))
    t = token.add_parser("list", help="list a project's tokens (never their secrets)")
    t.add_argument("--project", required=True)
    t.add_argument("--json", action="store_true")
    t.set_defaults(func=_run(cmd_token_list))
    t = token.add_parser("revoke", help="revoke a token by its id")
    t.add_argument("--project", required=True)
    t.add_argument("token_id")
    t.set_defaults(func=_run(cmd_token_revoke))
    migrate = sub.add_parser("migrate", help="upgrade a table's data to this mlreg's shape (after a deploy)")
    migrate.add_argument("--dry-run", action="store_true", help="count what would change, write nothing")
    migrate.set_defaults(func=_run(cmd_migrate))
    for parser in [*project.choices.values(), *token.choices.values(), migrate]:
        _store_args(parser)


# ---- docs/auth.md: the role each route needs, generated from the route table ---------------------

ROLE_TABLE_BEGIN = "<!-- role table: generated by `python -m mlreg.admin`; do not edit by hand -->"
ROLE_TABLE_END = "<!-- end of role table -->"
AUTH_DOC = Path(__file__).resolve().parent.parent / "docs" / "auth.md"


def role_table() -> str:
    from shared.routes import ROUTES

    lines = ["| method | path below `/projects/<project>` | role | caller |", "|---|---|---|---|"]
    lines += [f"| {r.method} | `{r.path or '/'}` | {r.role.name.lower() if r.role else '-'} | {r.auth} |"
              for r in ROUTES]
    return "\n".join(lines)


def write_role_table(path: Path = AUTH_DOC) -> None:
    text = path.read_text()
    head, _, rest = text.partition(ROLE_TABLE_BEGIN)
    _, _, tail = rest.partition(ROLE_TABLE_END)
    path.write_text(f"{head}{ROLE_TABLE_BEGIN}\n{role_table()}\n{ROLE_TABLE_END}{tail}")


if __name__ == "__main__":
    write_role_table()
    print(f"updated the role table in {AUTH_DOC}")
