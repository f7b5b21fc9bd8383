"""Faults on the publishing machine: a black-hole broker (scenario 2) and the outbox's disk
full (scenario 4)."""

from __future__ import annotations

import asyncio
import json
import socket
import sqlite3
import threading
import time
import uuid
from pathlib import Path
from typing import Any

from provider_events import DeliveryStatus, Publisher, load_settings
from provider_events.publish._outbox import Outbox
from provider_events.publish._relay import destination_of
from tests.chaos import kit
from tests.chaos.harness import ACCEPTED, Services


# -- 2. a black-hole broker ------------------------------------------------------------------------------
def _publish_cli(env: dict[str, str], *extra: str) -> tuple[float, int, dict[str, Any]]:
    started = time.monotonic()
    proc = kit.cli(
        env,
        *("publish", "--provider", "p", "--model", "m", "--reason", "black hole"),
        *("--correlation-id", f"cli-{uuid.uuid4().hex[:8]}", "--json", *extra),
        timeout=120,
    )
    wall = time.monotonic() - started
    return wall, proc.returncode, json.loads(proc.stdout) if proc.stdout.strip() else {}


def black_hole(
    services: Services,
    *,
    bound: float = 1.0,
    threads: int = 8,
    calls_per_thread: int = 25,
    async_calls: int = 50,
    cli_calls: int = 5,
    background_calls: int = 200,
    cli_background_calls: int = 5,
) -> dict[str, Any]:
    """Publish against a listener that accepts and never answers: each synchronous call returns
    within ``bound`` (spooled), background calls return at once (queued); afterwards a relay
    to the real broker delivers every one of them."""
    topic = services.new_topic(6)
    with kit.BlackHole() as hole:
        env = services.publisher_env(
            topic,
            KAFKA_BOOTSTRAP_SERVERS=hole.address,
            PROVIDER_EVENTS_DELIVERY_TIMEOUT=str(bound),
            PROVIDER_EVENTS_RELAY_AUTOSTART="false",
        )
        settings = load_settings(environ=env, dotenv=Path("/nonexistent/.env"))
        publisher = Publisher(settings)
        latencies: list[float] = []
        statuses: dict[str, int] = {}
        accepted: list[str] = []
        lock = threading.Lock()

        def note(status: str, event_id: str | None, seconds: float | None) -> None:
            with lock:
                statuses[status] = statuses.get(status, 0) + 1
                if status in ACCEPTED and event_id:
                    accepted.append(event_id)
                if seconds is not None:
                    latencies.append(seconds)

        def sync_worker(n: int) -> None:
            for i in range(calls_per_thread):
                t0 = time.monotonic()
                r = publisher.publish_sync(
                    provider_name="p",
                    model_name="m",
                    correlation_id=f"t{n}-{i}",
                    selection_reason="black hole",
                )
                note(r.status.value, r.event_id, time.monotonic() - t0)

        began = time.monotonic()
        workers = [threading.Thread(target=sync_worker, args=(n,)) for n in range(threads)]
        for w in workers:
            w.start()
        for w in workers:
            w.join(calls_per_thread * (bound + 30))
        assert not any(w.is_alive() for w in workers), "a synchronous publish is stuck"

        async def many() -> list[tuple[Any, float]]:
            async def one(i: int) -> tuple[Any, float]:
                t0 = time.monotonic()
                r = await publisher.publish(
                    provider_name="p",
                    model_name="m",
                    correlation_id=f"a-{i}",
                    selection_reason="black hole",
                )
                return r, time.monotonic() - t0

            return await asyncio.gather(*(one(i) for i in range(async_calls)))

        for r, seconds in asyncio.run(many()):
            note(r.status.value, r.event_id, seconds)
        sync_statuses = dict(statuses)

        cli_walls = []
        for _ in range(cli_calls):
            wall, code, doc = _publish_cli(env)
            assert code == 1 and doc.get("status") == "spooled", (code, doc)
            cli_walls.append(wall)
            note("spooled", doc["event_id"], None)

        bg_latencies = []
        for i in range(background_calls):
            t0 = time.monotonic()
            r = publisher.publish_sync(
                delivery="background",
                provider_name="p",
                model_name="m",
                correlation_id=f"bg-{i}",
                selection_reason="black hole",
            )
            bg_latencies.append(time.monotonic() - t0)
            assert r.status is DeliveryStatus.QUEUED, r
            note(r.status.value, r.event_id, None)
        cli_bg_walls = []
        for _ in range(cli_background_calls):
            wall, code, doc = _publish_cli(env, "--background")
            assert code == 0 and doc.get("status") == "queued", (code, doc)
            cli_bg_walls.append(wall)
            note("queued", doc["event_id"], None)
        publisher.close()
        elapsed = time.monotonic() - began
        outbox = Outbox(settings.resolved_outbox_path)
        pending = outbox.pending()
        connections = hole.connections

    sync_total = threads * calls_per_thread + async_calls
    assert sync_statuses == {"spooled": sync_total}, sync_statuses
    assert max(latencies) <= bound + 0.25, f"slowest synchronous publish {max(latencies):.3f}s"
    # a CLI process: interpreter start-up + the bound + the bounded exit flush (min(1 s, bound))
    cli_limit = bound + min(1.0, bound) + 1.5
    assert not cli_walls or max(cli_walls) <= cli_limit, f"slowest CLI {max(cli_walls):.3f}s"
    assert max(bg_latencies) <= 0.25, f"slowest background publish {max(bg_latencies):.3f}s"
    assert pending == len(accepted) == len(set(accepted)), (pending, len(accepted))
    # the spooled events are not lost: they belong to the black hole's destination, so they
    # are moved explicitly to the real broker's (`outbox retarget`), whose relay delivers them
    real = dict(env, KAFKA_BOOTSTRAP_SERVERS=services.bootstrap)
    hole_key = destination_of(load_settings(environ=env, dotenv=Path("/nonexistent/.env"))).key
    moved = kit.cli(real, "outbox", "retarget", "--from", hole_key)
    assert moved.returncode == 0 and f"moved {len(accepted)} event(s)" in moved.stdout, (
        moved.stdout,
        moved.stderr,
    )
    t0 = time.monotonic()
    relay = kit.cli(real, "relay", timeout=300)
    relay_s = time.monotonic() - t0
    assert relay.returncode == 0, relay.stderr
    on_topic = kit.read_topic(services.bootstrap, topic)
    assert {m.event_id for m in on_topic} == set(accepted)
    assert outbox.pending() == 0
    return {
        "bound_s": bound,
        "sync_calls": sync_total,
        "sync_max_s": round(max(latencies), 3),
        "sync_p99_s": round(kit.percentile(latencies, 0.99), 3),
        "sync_median_s": round(kit.percentile(latencies, 0.5), 3),
        "cli_sync_calls": cli_calls,
        "cli_sync_max_wall_s": round(max(cli_walls), 3) if cli_walls else None,
        "background_calls": background_calls + cli_background_calls,
        "background_max_s": round(max(bg_latencies), 4),
        "cli_background_max_wall_s": round(max(cli_bg_walls), 3) if cli_bg_walls else None,
        "spooled": pending,
        "black_hole_connections": connections,
        "delivered_after_relay": len({m.event_id for m in on_topic}),
        "relay_s": round(relay_s, 2),
        "elapsed_s": round(elapsed, 1),
    }


# -- 4. the outbox's disk full ---------------------------------------------------------------------------
def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])  # nothing listens here once the socket is closed


def outbox_disk_full(
    services: Services,
    *,
    fs_kib: int = 1024,
    free_kib: int = 192,
    after_full_attempts: int = 50,
    after_recovery: int = 200,
) -> dict[str, Any]:
    """The outbox lives on a ``fs_kib`` filesystem with ``free_kib`` left: background publishes
    fill it, then every publish (API and CLI, background and synchronous with the broker
    unreachable) fails with a disk-full error; no accepted event is lost; once space returns,
    publishing works again and the relay delivers everything accepted."""
    work = services.workdir
    topic = services.new_topic(6)
    mount = work / "small-disk"
    with kit.small_filesystem(mount, fs_kib) as kind:
        ballast = mount / "ballast"
        with ballast.open("wb") as f:
            f.write(b"\0" * max(0, kit.free_bytes(mount) - free_kib * 1024))
        env = services.publisher_env(
            topic,
            PROVIDER_EVENTS_OUTBOX=str(mount / "outbox.sqlite3"),
            PROVIDER_EVENTS_RELAY_AUTOSTART="false",
        )
        settings = load_settings(environ=env, dotenv=Path("/nonexistent/.env"))
        publisher = Publisher(settings)
        accepted: list[str] = []
        failures: list[str] = []
        attempts = 0
        while len(failures) < after_full_attempts:
            attempts += 1
            assert attempts < 50_000, "the small filesystem never filled up"
            r = publisher.publish_sync(
                delivery="background",
                provider_name="p",
                model_name="m",
                correlation_id=f"k-{attempts % 40}",
                selection_reason="disk full " + "x" * 200,
            )
            if r.accepted:
                accepted.append(str(r.event_id))
            else:
                assert r.status is DeliveryStatus.FAILED, r
                failures.append(str(r.error))
        assert accepted, "nothing fitted on the filesystem"
        outbox_files = sum(f.stat().st_size for f in mount.glob("outbox.sqlite3*"))
        assert all("disk full" in e for e in failures), failures[:3]
        # the CLI says so in one line, background and synchronous (broker unreachable)
        publish = ("publish", "--provider", "p", "--model", "m", "--reason", "r")
        cli_bg = kit.cli(env, *publish, "--background")
        unreachable = dict(
            env,
            KAFKA_BOOTSTRAP_SERVERS=f"127.0.0.1:{_closed_port()}",
            PROVIDER_EVENTS_DELIVERY_TIMEOUT="1",
        )
        cli_sync = kit.cli(unreachable, *publish)
        sync_api = Publisher(load_settings(environ=unreachable, dotenv=Path("/nonexistent/.env")))
        sync_result = sync_api.publish_sync(
            provider_name="p", model_name="m", correlation_id="sync-1", selection_reason="r"
        )
        sync_api.close()
        for proc in (cli_bg, cli_sync):
            assert proc.returncode == 1, (proc.returncode, proc.stderr)
            assert "disk full" in proc.stderr and len(proc.stderr.strip().splitlines()) == 1, (
                proc.stderr
            )
        assert sync_result.status is DeliveryStatus.FAILED and "disk full" in str(
            sync_result.error
        ), sync_result
        status = kit.cli(env, "outbox", "status", "--json")
        assert status.returncode == 0, status.stderr
        assert json.loads(status.stdout)["pending"] == len(accepted)
        # a relay while the disk is still full: it may fail to record progress, never lose
        relay_full = kit.cli(env, "relay", timeout=300)
        # space returns
        ballast.unlink()
        freed_at = time.monotonic()
        publisher.close()
        publisher = Publisher(settings)
        for i in range(after_recovery):
            r = publisher.publish_sync(
                delivery="background",
                provider_name="p",
                model_name="m",
                correlation_id=f"k-{i % 40}",
                selection_reason="space is back",
            )
            assert r.status is DeliveryStatus.QUEUED, r
            accepted.append(str(r.event_id))
        relay = kit.cli(env, "relay", timeout=300)
        recovered_s = time.monotonic() - freed_at
        assert relay.returncode == 0, relay.stderr
        outbox = Outbox(settings.resolved_outbox_path)
        assert outbox.pending() == 0
        with sqlite3.connect(settings.resolved_outbox_path) as conn:
            integrity = conn.execute("PRAGMA integrity_check").fetchone()[0]
        assert integrity == "ok", integrity
        publisher.close()
        outbox.close()
    on_topic = kit.read_topic(services.bootstrap, topic)
    delivered = {m.event_id for m in on_topic}
    lost = set(accepted) - delivered
    assert not lost, f"{len(lost)} accepted events lost"
    assert delivered == set(accepted), "the topic holds events that were refused"
    return {
        "filesystem": f"{kind} {fs_kib} KiB",
        "accepted_before_full": len(accepted) - after_recovery,
        "refused_disk_full": len(failures),
        "outbox_files_bytes_when_full": outbox_files,
        "api_error": failures[0][:160],
        "cli_background_exit": cli_bg.returncode,
        "cli_sync_exit": cli_sync.returncode,
        "cli_error": cli_sync.stderr.strip()[:200],
        "relay_while_full_exit": relay_full.returncode,
        "relay_while_full": (relay_full.stdout + relay_full.stderr).strip()[:200],
        "accepted_after_space_returned": after_recovery,
        "delivered": len(delivered),
        "lost": len(lost),
        "redeliveries_on_topic": kit.redeliveries(on_topic),
        "outbox_integrity": integrity,
        "recover_s": round(recovered_s, 2),
    }
