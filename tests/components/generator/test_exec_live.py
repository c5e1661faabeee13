"""Generator live progress (SSE and WebSocket) and the runner's start-up and shutdown rules."""

from __future__ import annotations

import contextlib
import json
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from fastapi.testclient import TestClient
from starlette.websockets import WebSocketDisconnect

from app.components.generator import runner as runner_module
from app.components.generator import service
from app.components.generator.runner import CREATOR, STOPPED, GenerationRunner
from app.components.generator.schemas import TaskCreate
from app.core import workers
from app.core.config import Settings
from app.core.db import DatabaseRegistry
from app.core.live import EventHub
from app.core.statuses import TaskStatus
from app.main import create_app

API = "/api/generator"
STEP_EVENTS = [
    (step, status)
    for step in ("resolve", "render", "check", "write")
    for status in ("running", "completed")
]


class Gate:
    """Holds tasks in their resolve step, and tells when a live listener is listening."""

    def __init__(self) -> None:
        self.release = threading.Event()
        self.subscribed = threading.Event()
        # Set once a listener has subscribed and then read its first snapshot: from here on,
        # every change reaches it live, exactly once.
        self.ready = threading.Event()


@pytest.fixture
def gate(monkeypatch: pytest.MonkeyPatch) -> Iterator[Gate]:
    """Hold every task at the start of its resolve step; spy on live subscriptions."""
    gate = Gate()
    resolve = runner_module.resolve_family
    subscribe = EventHub.subscribe
    snapshot = GenerationRunner.snapshot

    def held(*args: Any, **kwargs: Any) -> Any:
        assert gate.release.wait(30), "the gate was never opened"
        return resolve(*args, **kwargs)

    def spied(self: EventHub, key: str) -> Any:
        sub = subscribe(self, key)
        gate.subscribed.set()
        return sub

    def snapshot_spied(self: GenerationRunner, task_id: str) -> list[dict[str, Any]]:
        events = snapshot(self, task_id)
        if gate.subscribed.is_set():
            gate.ready.set()
        return events

    monkeypatch.setattr(runner_module, "resolve_family", held)
    monkeypatch.setattr(EventHub, "subscribe", spied)
    monkeypatch.setattr(GenerationRunner, "snapshot", snapshot_spied)
    yield gate
    gate.release.set()


def start_held_task(client: TestClient) -> str:
    """Queue a task and wait until it is running, held inside its resolve step."""
    task_id = str(client.post(f"{API}/model", json={"model_name": "gpt2"}).json()["task_id"])
    deadline = time.monotonic() + 30
    while client.get(f"{API}/status/{task_id}").json()["current_step"] != "resolve":
        assert time.monotonic() < deadline
        time.sleep(0.02)
    return task_id


def step_events(events: list[dict[str, Any]]) -> list[tuple[str, str]]:
    """Return (step, status) of the step events, in the order they came."""
    return [(e["step"], e["status"]) for e in events if e["type"] == "step"]


def parse_sse(text: str) -> list[dict[str, Any]]:
    """Return the data of every Server-Sent Event in a stream."""
    events = []
    for block in text.split("\n\n"):
        lines = dict(line.split(": ", 1) for line in block.splitlines() if ": " in line)
        if "data" in lines:
            event = json.loads(lines["data"])
            assert event["type"] == lines["event"]
            events.append(event)
    return events


def test_sse_streams_every_step_in_order_until_the_end(client: TestClient, gate: Gate) -> None:
    task_id = start_held_task(client)
    received: dict[str, Any] = {}

    def listen() -> None:
        response = client.get(f"{API}/events/{task_id}")
        received["status"] = response.status_code
        received["type"] = response.headers["content-type"]
        received["text"] = response.text

    listener = threading.Thread(target=listen)
    listener.start()
    assert gate.ready.wait(30)
    gate.release.set()
    listener.join(30)
    assert received["status"] == 200
    assert received["type"].startswith("text/event-stream")
    events = parse_sse(received["text"])
    assert step_events(events) == STEP_EVENTS
    assert events[-1]["type"] == "end" and events[-1]["status"] == "completed"
    statuses = [e["status"] for e in events if e["type"] == "status"]
    assert statuses[0] == "running" and statuses[-1] == "completed"
    progress = [e["progress"] for e in events if e["type"] == "status"]
    assert progress == sorted(progress) and progress[-1] == 1.0


def test_websocket_pushes_every_step_in_order_until_the_end(client: TestClient, gate: Gate) -> None:
    task_id = start_held_task(client)
    with client.websocket_connect(f"{API}/ws/{task_id}") as ws:
        assert gate.ready.wait(30)
        gate.release.set()
        events = []
        while not events or events[-1]["type"] != "end":
            events.append(ws.receive_json())
    assert step_events(events) == STEP_EVENTS
    assert events[-1]["status"] == "completed"
    assert events[-1]["output_file"].endswith("test_gpt2.py")
    assert events[-1]["architecture"] == "decoder-only"


def test_late_listener_gets_the_recorded_steps_then_the_end(client: TestClient) -> None:
    task_id = client.post(f"{API}/model", json={"model_name": "gpt2"}).json()["task_id"]
    deadline = time.monotonic() + 30
    while client.get(f"{API}/status/{task_id}").json()["status"] != "completed":
        assert time.monotonic() < deadline
        time.sleep(0.02)
    events = parse_sse(client.get(f"{API}/events/{task_id}").text)
    assert [(e["step"], e["status"]) for e in events if e["type"] == "step"] == [
        ("resolve", "completed"),
        ("render", "completed"),
        ("check", "completed"),
        ("write", "completed"),
    ]
    assert [e["type"] for e in events[-2:]] == ["status", "end"]


def test_websocket_answers_ping_and_status_and_cancels(client: TestClient, gate: Gate) -> None:
    task_id = start_held_task(client)
    with client.websocket_connect(f"{API}/ws/{task_id}") as ws:
        assert gate.ready.wait(30)
        first = ws.receive_json()
        assert first["type"] == "step" and first["step"] == "resolve"
        assert ws.receive_json()["type"] == "status"
        ws.send_text("ping")
        assert ws.receive_json() == {"type": "pong"}
        ws.send_json({"type": "status"})
        status = ws.receive_json()
        assert status["type"] == "status" and status["status"] == "running"
        ws.send_json({"type": "cancel"})
        seen = []
        with contextlib.suppress(WebSocketDisconnect):
            while True:
                seen.append(ws.receive_json())
    ends = [m for m in seen if m["type"] == "end"]
    assert len(ends) == 1 and ends[0]["status"] == "cancelled"
    # The session closes at the end event, which can overtake the reply to the cancel message.
    replies = [m for m in seen if m["type"] == "cancel"]
    assert replies in ([], [{"type": "cancel", "task_id": task_id, "cancelled": True}])
    assert client.get(f"{API}/status/{task_id}").json()["status"] == "cancelled"


def test_websocket_for_an_unknown_task_says_so_and_closes(client: TestClient) -> None:
    with client.websocket_connect(f"{API}/ws/nope") as ws:
        message = ws.receive_json()
        assert message["type"] == "error" and message["code"] == "not_found"
        with pytest.raises(WebSocketDisconnect) as closed:
            ws.receive_json()
    assert closed.value.code == 4404


# --- start-up and shutdown ----------------------------------------------------------------------


# One process owns a DuckDB file; on PostgreSQL only aged or gone-owner rows end (test_leases).
@pytest.mark.duckdb_only
def test_restart_marks_tasks_a_crashed_server_left_unfinished_as_error(
    settings: Settings,
) -> None:
    # What a killed server leaves behind, written while no server runs.
    registry = DatabaseRegistry()
    ids: dict[str, str] = {}
    with registry.get(settings.database_url("generator")).writing() as session:
        for status in ("initializing", "queued", "running", "completed"):
            doc = TaskCreate(model_name="gpt2", status=TaskStatus(status), creator=CREATOR)
            ids[status] = service.record_task(session, doc)
        foreign = TaskCreate(model_name="gpt2", status=TaskStatus.running, creator="ci-job")
        ids["foreign"] = service.record_task(session, foreign)
    registry.dispose()
    with TestClient(create_app(settings)) as client:
        statuses = {k: client.get(f"{API}/status/{v}").json() for k, v in ids.items()}
    for key in ("initializing", "queued", "running"):
        assert statuses[key]["status"] == "error"
        assert statuses[key]["error"] == STOPPED
        assert statuses[key]["completed_at"] is not None
    assert statuses["completed"]["status"] == "completed"
    assert statuses["foreign"]["status"] == "running"


# One process owns a DuckDB file; on PostgreSQL only aged or gone-owner rows end (test_leases).
@pytest.mark.duckdb_only
def test_shutdown_ends_unfinished_tasks_as_errors(
    settings: Settings, gate: Gate, monkeypatch: pytest.MonkeyPatch
) -> None:
    class Pool(ThreadPoolExecutor):
        def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
            # The runner has told its jobs to stop by now: let the held worker see that.
            gate.release.set()
            super().shutdown(wait, cancel_futures=cancel_futures)

    monkeypatch.setattr(workers, "ThreadPoolExecutor", Pool)
    with TestClient(create_app(settings)) as client:
        held = start_held_task(client)
        queued = [
            client.post(f"{API}/model", json={"model_name": name}).json()["task_id"]
            for name in ("t5-small", "bert-base-uncased")
        ]
    with TestClient(create_app(settings)) as client:
        for task_id in [held, *queued]:
            status = client.get(f"{API}/status/{task_id}").json()
            assert status["status"] == "error", status
            assert status["error"] == STOPPED
    assert not (settings.folder("output") / "test_gpt2.py").exists()


def test_live_events_carry_the_timestamps_rest_answers(client: TestClient, gate: Gate) -> None:
    task_id = start_held_task(client)
    received: dict[str, str] = {}

    def listen() -> None:
        received["text"] = client.get(f"{API}/events/{task_id}").text

    listener = threading.Thread(target=listen)
    listener.start()
    assert gate.ready.wait(30)
    gate.release.set()
    listener.join(30)
    events = parse_sse(received["text"])
    assert step_events(events) == STEP_EVENTS  # every step was pushed live, not replayed
    status = client.get(f"{API}/status/{task_id}").json()
    detail = client.get(f"{API}/db/task/{task_id}").json()
    for event in events:
        if event["type"] in {"status", "end"}:
            assert event["started_at"] == status["started_at"] == detail["started_at"]
    end = events[-1]
    assert end["type"] == "end"
    assert end["completed_at"] == status["completed_at"] == detail["completed_at"]
    assert end["completed_at"] is not None and end["completed_at"].endswith("Z")
    # A step's last event carries exactly the step the task's REST answer lists.
    stored = {s["step_name"]: s for s in detail["steps"]}
    last = {e["step"]: e for e in events if e["type"] == "step"}
    assert sorted(last) == sorted(stored)
    for name, event in last.items():
        for key in ("status", "started_at", "completed_at", "duration", "error"):
            assert event[key] == stored[name][key], (name, key)
