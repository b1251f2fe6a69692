"""The sink reads a plain binary-mode event from its headers, without the CloudEvents SDK (issue
16): it must read exactly what the SDK reads, and leave every other event to the SDK, which words
the refusal."""

from __future__ import annotations

import json
from typing import Any

import pytest

from mlwatchdog.daemon.sink import _binary_event, _sdk_event, is_sink_path, parse_event
from mlwatchdog.sources.kserve import InvalidEvent

BODY = json.dumps({"instances": [[0.5, 1, "web", None, True]]}).encode()


def kserve_headers(**change: str | None) -> list[tuple[bytes, bytes]]:
    """Headers as KServe's payload logger sends them (pkg/logger/worker.go), as ASGI gives them."""
    sent: dict[str, str | None] = {
        "host": "mlwatchdog:8080",
        "content-length": str(len(BODY)),
        "ce-specversion": "1.0",
        "ce-id": "5d3ae4e1-7bd5-4f7b-9a2c-1f0c8f5e2b11",
        "ce-type": "org.kubeflow.serving.inference.request",
        "ce-source": "http://localhost:9081/",
        "ce-time": "2026-12-06T06:00:00.123456789Z",
        "ce-inferenceservicename": "credit",
        "ce-namespace": "models",
        "ce-component": "predictor",
        "ce-endpoint": "default",
        "content-type": "application/json",
    }
    sent.update(change)
    return [(k.encode(), v.encode("latin-1")) for k, v in sent.items() if v is not None]


def sdk(headers: list[tuple[bytes, bytes]], body: bytes) -> tuple[dict[str, Any], Any]:
    """As the SDK reads it, the data parsed as event_record parses it: the SDK leaves the text
    of a non-JSON Content-Type, which the sink tries as JSON all the same."""
    event = _sdk_event(headers, body)
    data = event.get_data()
    return event.get_attributes(), json.loads(data) if isinstance(data, str | bytes) else data


@pytest.mark.parametrize(
    "change",
    [
        {},
        {"ce-time": "2026-12-06T06:00:00Z"},
        {"ce-time": "2026-12-06T08:00:00.5+02:00"},
        {"ce-time": None},
        {"content-type": None},
        {"content-type": "application/x-www-form-urlencoded"},  # curl's, copied by KServe
        {"ce-subject": "s", "ce-dataschema": "http://schema", "ce-traceparent": "00-ab-cd-01"},
    ],
    ids=["kserve", "no fraction", "offset", "no time", "no content-type", "form", "more"],
)
def test_a_plain_binary_event_is_read_as_the_sdk_reads_it(change: dict[str, str | None]) -> None:
    headers = kserve_headers(**change)
    fast = _binary_event(headers, BODY)
    assert fast is not None
    attributes, data = sdk(headers, BODY)
    if "time" not in fast[0]:  # the SDK makes up the time; the sink uses its own clock instead
        del attributes["time"]
    assert fast == (attributes, data)


@pytest.mark.parametrize(
    ("change", "body"),
    [
        ({"ce-id": "a%20b"}, BODY),  # percent-encoded: the SDK decodes it
        ({"ce-specversion": "0.3"}, BODY),
        ({"ce-id": None}, BODY),
        ({"ce-source": ""}, BODY),
        ({"ce-Bad_Name": "x"}, BODY),
        ({"ce-data": "x"}, BODY),
        ({"ce-subject": ""}, BODY),
        ({"ce-time": "2026-12-06 06:00:00Z"}, BODY),
        ({"ce-time": "2026-13-06T06:00:00Z"}, BODY),
        ({"ce-time": "2026-12-06T06:00:00"}, BODY),  # naive: the SDK refuses it
        ({}, b""),
        ({}, b"\xef\xbb\xbf" + BODY),  # a byte-order mark
        ({}, b"[[1, 2]]"),
        ({}, b"{not json"),
        ({}, b"instances=1"),
    ],
)
def test_anything_else_is_left_to_the_sdk(change: dict[str, str | None], body: bytes) -> None:
    assert _binary_event(kserve_headers(**change), body) is None


def test_refusals_are_worded_by_the_sdk() -> None:
    with pytest.raises(InvalidEvent, match=r"no id \(ce-id in binary mode\)"):
        parse_event(kserve_headers(**{"ce-id": None}), BODY)
    with pytest.raises(InvalidEvent, match=r"not a valid CloudEvent.*timezone aware") as caught:
        parse_event(kserve_headers(**{"ce-time": "2026-12-06T06:00:00"}), BODY)
    assert caught.value.status == 400


def test_a_percent_encoded_attribute_is_decoded() -> None:
    attributes, _ = parse_event(kserve_headers(**{"ce-endpoint": "blue%20green"}), BODY)
    assert attributes["endpoint"] == "blue green"


@pytest.mark.parametrize(
    ("path", "sink"),
    [
        ("/sink/kserve", True),
        ("/sink/kserve/s3cr3t", True),
        ("/sink/kserve/", False),
        ("/sink/kserve/a/b", False),
        ("/sink/kservex", False),
        ("/api/v1/targets", False),
    ],
)
def test_the_paths_taken_ahead_of_the_routes_are_the_routes_paths(path: str, sink: bool) -> None:
    assert is_sink_path(path) is sink
