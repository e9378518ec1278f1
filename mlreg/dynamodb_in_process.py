"""The handlers' DynamoDB item operations answered by moto's DynamoDB handler, without the HTTP
shapes between.

moto answers an in-process call as it would an HTTP request: botocore prepares the request, moto's
stubber matches its URL against every service's patterns, rebuilds it as a werkzeug request and
sets up a handler from its headers and URL, and botocore reads the answer back through its HTTP
response. For a GetItem that is ~0.3 ms of CPU around ~0.1 ms of work, and every route makes
several such calls (a model version's creation four). Here botocore's `before-call` event hands
the request botocore built (its JSON body, its target header) to moto's DynamoDB handler as that
setup would, so the call runs the same code: the emulator's lock and journal
(`mlreg.emulator.guard_dynamodb`), moto's checks, its errors. The answer is read as botocore reads
it, a read's result taken as moto made it rather than written as JSON to be parsed back
(tests/unit/test_dynamodb_in_process.py compares the two ways). Local only (`mlreg serve`, the
bench); other operations (tables, streams) go the usual way."""

from __future__ import annotations

import json
from typing import Callable

from botocore.parsers import create_parser

from mlreg.moto_speedups import JSON_ACTIONS, answer_objects, blobs_decoded


class _Answered:
    """The HTTP response botocore's after-call handlers and error check read."""
    def __init__(self, status_code: int, headers: dict):
        self.status_code, self.headers = status_code, headers


def _parsed(model, status: int, headers: dict, body: str | bytes, result: dict | None = None) -> dict:
    """The answer as botocore parses it: a read's result as moto made it (plain values, binaries as
    bytes), other successes' JSON with binary values as bytes; an error through botocore's parser,
    with the fields its API models (a cancelled transaction's reasons)."""
    if result is not None:
        parsed = result
    elif status < 300:
        parsed = json.loads(body or "{}", object_hook=blobs_decoded)
    else:
        raw = body if isinstance(body, bytes) else body.encode()
        parser, response = create_parser("json"), {"status_code": status, "headers": headers, "body": raw}
        parsed = parser.parse(response, model.output_shape)
        error_shape = model.service_model.shape_for_error_code(parsed.get("Error", {}).get("Code"))
        if error_shape is not None:
            parsed.update(parser.parse(response, error_shape))
    parsed["ResponseMetadata"] = {"RequestId": headers.get("x-amzn-requestid", ""), "HTTPStatusCode": status,
                                  "HTTPHeaders": headers, "RetryAttempts": 0}
    return parsed


def install(events, region: str) -> Callable[[], None]:
    """Answer the item operations that clients made from `events`' session send to the region's
    DynamoDB endpoint, which moto intercepts (`mlreg serve --dynamodb-endpoint` sends them
    elsewhere). Returns the undo."""
    from moto.core import DEFAULT_ACCOUNT_ID
    from moto.dynamodb.responses import DynamoHandler

    url = f"https://dynamodb.{region}.amazonaws.com/"

    def answer(model, params: dict, **_):
        if model.name not in JSON_ACTIONS or params["url"] != url:
            return None
        handler = DynamoHandler()  # set up as moto's setup_class would for this request
        handler.method, handler.headers, handler.querystring = "POST", params["headers"], {}
        handler.region, handler.current_account = region, DEFAULT_ACCOUNT_ID
        handler.response_headers = {"server": "amazon.com"}
        handler.params = json.loads(params["body"] or b"{}", object_hook=blobs_decoded)
        answer_objects.wanted, answer_objects.result = True, None  # a read's result, not its JSON
        try:
            status, headers, body = handler.call_action()
            result = answer_objects.result
        finally:
            answer_objects.wanted, answer_objects.result = False, None
        headers = {name.lower(): value for name, value in headers.items()}  # as botocore gives them
        return _Answered(status, headers), _parsed(model, status, headers, body, result)

    class EndpointKnown:
        """A client of that endpoint resolves no endpoint rules per call (a tenth of a GetItem's
        CPU, and a JMESPath search of a transaction's items): its calls never leave the process."""
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            if self.meta.endpoint_url + "/" == url:
                self._ruleset_resolver = None

    def known_endpoint(base_classes: list, **_) -> None:
        base_classes.insert(0, EndpointKnown)

    events.register("before-call.dynamodb", answer)
    events.register("creating-client-class.dynamodb", known_endpoint)
    return lambda: (events.unregister("before-call.dynamodb", answer),
                    events.unregister("creating-client-class.dynamodb", known_endpoint))
