"""Reliability harness shared by tests/integration/test_reliability_*.py and scripts/reliability.py.

* `generate` produces a deterministic workload (trade CDC envelopes with creates, updates, deletes,
  re-creates, exact replays and late older changes; `trade.executed` events with amendments,
  replays and CDC changes that supersede them; quotes; a few poison records) and builds the
  source of truth by applying the documented semantics (greatest source position wins, a
  versioned tombstone blocks older changes) in offset order, key by key.
* `Loader` runs `python -m orion_etl.cli.app stream` as a real subprocess (output to files).
* `Stack` restarts / hard-kills a service of the local stack through scripts/stack.sh.
* `verify` compares the warehouse with the source of truth row by row and per tenant.
"""

from __future__ import annotations

import heapq
import json
import os
import random
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

import psycopg
from confluent_kafka import TopicPartition

from orion_etl.adapters.kafka import ensure_topics, make_consumer, make_producer
from orion_etl.adapters.postgres import connect
from orion_etl.config.models import OrionSettings

REPO = Path(__file__).resolve().parents[1]
TENANTS = [str(uuid.UUID(int=0xA000 + i)) for i in range(5)]
CLIENTS = [str(uuid.UUID(int=0xC000 + i)) for i in range(20)]
INSTRUMENTS = [str(uuid.UUID(int=0x1000 + i)) for i in range(8)]
LPS = [str(uuid.UUID(int=0x2000 + i)) for i in range(4)]
POISON = b'{"schema": null, "payload": {"op": "c", "after": {"id": "trunc'  # truncated JSON

Position = tuple[int, int, int, int, int]
Message = tuple[str, bytes | None, bytes | None]


# --- settings ---------------------------------------------------------------------------------


def reliability_settings(
    base: OrionSettings, prefix: str, *, trade_partitions: int = 4, event_partitions: int = 2, **stream: Any
) -> OrionSettings:
    """Settings with fresh topics named `<prefix>.*` (created) and group `<prefix>.group`."""
    topics = {
        "trades_cdc": f"{prefix}.cdc.public.trades",
        "orders_cdc": f"{prefix}.cdc.public.orders",
        "trade_events": f"{prefix}.trade.executed",
        "quote_events": f"{prefix}.quote.received",
        "positions_cdc": f"{prefix}.cdc.public.positions",
        "risk_events": f"{prefix}.risk.snapshot",
    }
    ensure_topics(base.kafka, [topics["trades_cdc"]], partitions=trade_partitions)
    ensure_topics(base.kafka, [topics["trade_events"]], partitions=event_partitions)
    ensure_topics(
        base.kafka,
        [topics["orders_cdc"], topics["quote_events"], topics["positions_cdc"], topics["risk_events"]],
    )
    values = {
        "group_id": f"{prefix}.group",
        "batch_max_messages": 2000,
        "batch_max_ms": 200,
        "assignment_timeout_s": 30,
        "quote_sample_every": 1,
        "retry_max_backoff_s": 2,
        **stream,
    }
    new_stream = base.stream.model_copy(
        update={"topics": base.stream.topics.model_copy(update=topics), **values}
    )
    return base.model_copy(update={"stream": new_stream})


# --- workload and source of truth ---------------------------------------------------------------


@dataclass
class Row:
    pos: Position
    tenant: str
    quantity: Decimal
    price: Decimal
    deleted: bool = False


@dataclass
class Truth:
    """The expected warehouse after every produced message was processed exactly once."""

    rows: dict[str, Row] = field(default_factory=dict)
    tombstones: dict[str, Position] = field(default_factory=dict)
    quotes: int = 0
    poison: int = 0
    messages: int = 0
    kinds: dict[str, int] = field(default_factory=dict)

    def count(self, kind: str) -> None:
        self.kinds[kind] = self.kinds.get(kind, 0) + 1

    def upsert(self, key: str, row: Row) -> None:
        tomb = self.tombstones.get(key)
        current = self.rows.get(key)
        if (tomb is not None and tomb >= row.pos) or (current is not None and current.pos >= row.pos):
            return
        self.rows[key] = Row(row.pos, row.tenant, row.quantity, row.price)

    def delete(self, key: str, pos: Position) -> None:
        if pos > self.tombstones.get(key, (-1, -1, -1, -1, -1)):
            self.tombstones[key] = pos
        current = self.rows.get(key)
        if current is not None and pos > current.pos:
            current.pos, current.deleted = pos, True

    def per_tenant(self) -> dict[str, tuple[int, Decimal, Decimal]]:
        out: dict[str, tuple[int, Decimal, Decimal]] = {}
        for row in self.rows.values():
            if row.deleted:
                continue
            n, q, v = out.get(row.tenant, (0, Decimal(0), Decimal(0)))
            out[row.tenant] = (n + 1, q + row.quantity, v + row.quantity * row.price)
        return out

    def merge(self, other: Truth) -> None:
        """Another workload on other topics and keys, loaded into the same warehouse."""
        assert not set(self.rows) & set(other.rows)
        self.rows.update(other.rows)
        self.tombstones.update(other.tombstones)
        self.quotes += other.quotes
        self.poison += other.poison
        self.messages += other.messages


@dataclass
class _Key:
    """A trade key with follow-up actions still to emit."""

    key: str
    tenant: str
    origin: str  # cdc | event
    history: list[tuple[bytes, Position, Row | None]] = field(default_factory=list)
    seq: int = 0
    pending: int = 0


class Generator:
    """Deterministic workload of about `n` messages; `truth` is filled while messages are made."""

    def __init__(self, settings: OrionSettings, n: int, seed: int) -> None:
        self.t = settings.stream.topics
        self.n = n
        self.rng = random.Random(seed)
        self.truth = Truth()
        self.lsn = 5_000_000
        self.keys = 0

    def _uuid(self) -> str:
        return str(uuid.UUID(int=self.rng.getrandbits(128)))

    def _values(self) -> tuple[Decimal, Decimal]:
        return Decimal(self.rng.randint(1, 1_000_000)) / 100, Decimal(
            self.rng.randint(5_000, 20_000)
        ) / 10_000

    def _trade_row(self, k: _Key, qty: Decimal, price: Decimal) -> dict[str, Any]:
        r = self.rng
        return {
            "id": k.key,
            "tenant_id": k.tenant,
            "trade_reference": f"R-{k.key[:8]}",
            "order_id": None,
            "client_id": r.choice(CLIENTS),
            "instrument_id": r.choice(INSTRUMENTS),
            "lp_id": r.choice(LPS),
            "trade_date": f"2024-03-{r.randint(11, 15)}T{r.randint(8, 20):02d}:{r.randint(0, 59):02d}:00.5Z",
            "settlement_date": 19799,
            "side": r.choice(("BUY", "SELL")),
            "order_type": "MARKET",
            "quantity": str(qty),
            "price": str(price),
            "fees": "0.5",
            "currency": "USD",
            "execution_venue": "LP1",
            "fill_latency_ms": r.randint(1, 50),
            "fill_count": 1,
            "is_partial_fill": False,
            "created_at": "2024-03-15T14:30:00Z",
            "updated_at": "2024-03-15T14:30:00Z",
        }

    def _cdc(self, k: _Key, op: str, qty: Decimal | None = None, price: Decimal | None = None) -> Message:
        from tests.stream_builders import cdc

        self.lsn += 8
        pos: Position = (1, self.lsn - 3, self.lsn, -1, (1_700_000_000_000 + self.lsn) * 1000)
        if op == "d":
            value = cdc(
                "trades",
                None,
                op="d",
                before={"id": k.key},
                lsn=self.lsn,
                commit_lsn=self.lsn - 3,
                ts_ms=1_700_000_000_000 + self.lsn,
                schema=False,
            )
            self.truth.delete(k.key, pos)
            k.history.append((value, pos, None))
        else:
            assert qty is not None and price is not None
            value = cdc(
                "trades",
                self._trade_row(k, qty, price),
                op=op,
                lsn=self.lsn,
                commit_lsn=self.lsn - 3,
                ts_ms=1_700_000_000_000 + self.lsn,
                schema=self.rng.random() < 0.02,
            )
            row = Row(pos, k.tenant, qty, price)
            self.truth.upsert(k.key, row)
            k.history.append((value, pos, row))
        return self.t.trades_cdc, k.key.encode(), value

    def _event(self, k: _Key, qty: Decimal, price: Decimal) -> Message:
        from tests.stream_builders import trade_event

        k.seq += 1
        occurred = f"2024-03-15T14:30:{k.seq % 60:02d}.000Z"
        occurred_us = int((1_710_513_000 + k.seq % 60) * 1_000_000)
        row = self._trade_row(k, qty, price)
        doc = trade_event(
            sequence=k.seq,
            occurred_at=occurred,
            tradeId=k.key,
            tenantId=k.tenant,
            quantity=str(qty),
            price=str(price),
            clientId=row["client_id"],
            instrumentId=row["instrument_id"],
            lpId=row["lp_id"],
            fees="0.5",
        )
        value = json.dumps(doc).encode()
        pos: Position = (0, -1, -1, k.seq, occurred_us)
        r = Row(pos, k.tenant, qty, price)
        self.truth.upsert(k.key, r)
        k.history.append((value, pos, r))
        return self.t.trade_events, k.key.encode(), value

    def _replay(self, k: _Key, older: bool) -> Message:
        """Re-send an earlier message of the key verbatim (exact duplicate or late older change)."""
        value, pos, row = k.history[self.rng.randrange(len(k.history))] if older else k.history[-1]
        if row is None:
            self.truth.delete(k.key, pos)
        else:
            self.truth.upsert(k.key, row)
        topic = self.t.trades_cdc if pos[0] == 1 else self.t.trade_events
        return topic, k.key.encode(), value

    def messages(self) -> Iterator[Message]:
        """Yield the workload; follow-ups of a key come 1..200 messages after its previous one."""
        rng, truth = self.rng, self.truth
        queue: list[tuple[int, int, str, _Key]] = []
        seq = 0
        step = 0
        while truth.messages < self.n:
            step += 1
            if queue and queue[0][0] <= step:
                _, _, action, k = heapq.heappop(queue)
                k.pending -= 1
                msg = self._follow_up(action, k)
            else:
                msg, k, actions = self._new(rng)
                for action in actions:
                    seq += 1
                    k.pending += 1
                    heapq.heappush(queue, (step + rng.randint(1, 200) * (k.pending), seq, action, k))
            truth.messages += 1
            yield msg
            if k is not None and k.pending == 0:
                k.history.clear()
        # the tail of follow-ups is dropped: the workload stays exactly n messages

    def _new(self, rng: random.Random) -> tuple[Message, Any, list[str]]:
        roll = rng.random()
        if roll < 0.0004:
            self.truth.poison += 1
            self.truth.count("poison")
            return (self.t.trades_cdc, None, POISON), None, []
        if roll < 0.08:
            from tests.stream_builders import quote_event

            self.truth.quotes += 1
            self.truth.count("quote")
            bid = Decimal(rng.randint(10_000, 12_000)) / 10_000
            doc = quote_event(
                str(bid),
                str(bid + Decimal("0.0002")),
                tenantId=rng.choice(TENANTS),
                instrumentId=rng.choice(INSTRUMENTS),
                lpId=rng.choice(LPS),
            )
            return (self.t.quote_events, None, json.dumps(doc).encode()), None, []
        k = _Key(self._uuid(), rng.choice(TENANTS), "event" if roll < 0.22 else "cdc")
        qty, price = self._values()
        actions: list[str] = []
        if k.origin == "event":
            self.truth.count("event")
            msg = self._event(k, qty, price)
            if rng.random() < 0.3:
                actions.append("amend")
            if rng.random() < 0.15:
                actions.append("dup")
            if rng.random() < 0.1:
                actions.append("cdc_over")
            return msg, k, actions
        self.truth.count("cdc_create")
        msg = self._cdc(k, "c", qty, price)
        for action, p in (("update", 0.3), ("dup", 0.1), ("stale", 0.1), ("delete", 0.06)):
            if rng.random() < p:
                actions.append(action)
        if "delete" in actions and rng.random() < 0.3:
            actions.append("recreate")
        return msg, k, actions

    def _follow_up(self, action: str, k: _Key) -> Message:
        self.truth.count(action)
        if action in ("dup", "stale") and k.history:
            return self._replay(k, older=action == "stale")
        qty, price = self._values()
        if action == "amend":
            return self._event(k, qty, price)
        if action == "delete":
            return self._cdc(k, "d")
        if action == "recreate":
            return self._cdc(k, "c", qty, price)
        return self._cdc(k, "u" if action != "cdc_over" else "c", qty, price)  # update, cdc_over


def produce_workload(settings: OrionSettings, n: int, seed: int) -> Truth:
    """Produce about `n` messages (exactly `truth.messages`) and return the source of truth."""
    gen = Generator(settings, n, seed)
    producer = make_producer(settings.kafka, **{"linger.ms": 50, "batch.num.messages": 10000})
    for i, (topic, key, value) in enumerate(gen.messages()):
        while True:
            try:
                producer.produce(topic, value=value, key=key)
                break
            except BufferError:
                producer.poll(0.05)
        if i % 2000 == 0:
            producer.poll(0)
    assert producer.flush(120) == 0
    return gen.truth


# --- processes ---------------------------------------------------------------------------------


def loader_env(settings: OrionSettings, **extra: str) -> dict[str, str]:
    """Environment that points a loader subprocess at these settings."""
    wh, st, kafka = settings.warehouse, settings.stream, settings.kafka
    env = {k: v for k, v in os.environ.items() if not k.upper().startswith("ORION_ETL_")}
    env.update(
        PYTHONPATH=str(REPO),
        ORION_ETL_WAREHOUSE__HOST=wh.host,
        ORION_ETL_WAREHOUSE__PORT=str(wh.port),
        ORION_ETL_WAREHOUSE__DBNAME=wh.dbname,
        ORION_ETL_WAREHOUSE__USER=wh.user,
        ORION_ETL_WAREHOUSE__PASSWORD=wh.password.get_secret_value(),
        ORION_ETL_KAFKA__BOOTSTRAP_SERVERS=kafka.bootstrap_servers,
        # a crashed member blocks the group's rebalance until its session times out (6 s minimum)
        ORION_ETL_KAFKA__EXTRA=json.dumps(
            {"session.timeout.ms": "6000", "heartbeat.interval.ms": "1000", **kafka.extra}
        ),
        ORION_ETL_STREAM__GROUP_ID=st.group_id,
        ORION_ETL_STREAM__BATCH_MAX_MESSAGES=str(st.batch_max_messages),
        ORION_ETL_STREAM__BATCH_MAX_MS=str(st.batch_max_ms),
        ORION_ETL_STREAM__QUOTE_SAMPLE_EVERY=str(st.quote_sample_every),
        ORION_ETL_STREAM__RETRY_MAX_BACKOFF_S=str(st.retry_max_backoff_s),
        ORION_ETL_STREAM__ASSIGNMENT_TIMEOUT_S=str(st.assignment_timeout_s),
        **{f"ORION_ETL_STREAM__TOPICS__{k.upper()}": v for k, v in vars(st.topics).items()},
    )
    if kafka.sasl_username is not None:
        env["ORION_ETL_KAFKA__SASL_USERNAME"] = kafka.sasl_username
    if kafka.sasl_password is not None:
        env["ORION_ETL_KAFKA__SASL_PASSWORD"] = kafka.sasl_password.get_secret_value()
    env.update(extra)
    return env


class Loader:
    """One `orion-etl stream` subprocess; stdout/stderr go to files under `log_dir`."""

    def __init__(
        self,
        settings: OrionSettings,
        log_dir: Path,
        name: str,
        *args: str,
        command: tuple[str, ...] = ("stream", "--format", "json"),
        **env: str,
    ) -> None:
        log_dir.mkdir(parents=True, exist_ok=True)
        self.name = name
        self.out_path, self.err_path = log_dir / f"{name}.out", log_dir / f"{name}.err"
        cmd = [sys.executable, "-m", "orion_etl.cli.app", "--log-format", "json", *command, *args]
        with self.out_path.open("wb") as out, self.err_path.open("wb") as err:
            self.proc = subprocess.Popen(
                cmd, env=loader_env(settings, **env), stdout=out, stderr=err, cwd=REPO
            )
        self.started = time.monotonic()

    def alive(self) -> bool:
        return self.proc.poll() is None

    def kill9(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(30)

    def stop(self, timeout: float = 90) -> int:
        """SIGTERM (finish the batch, leave the group) and wait; returns the exit code."""
        if self.alive():
            self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout)

    def summary(self) -> dict[str, Any]:
        text = self.out_path.read_text(errors="replace").strip()
        return json.loads(text) if text.startswith("{") else {}

    def stderr_tail(self, n: int = 3000) -> str:
        return self.err_path.read_text(errors="replace")[-n:]


def progress(settings: OrionSettings) -> int:
    """Messages committed by the group (sum of stored next offsets); -1 when the DB is down."""
    try:
        with connect(settings.warehouse, autocommit=True) as conn:
            row = conn.execute(
                "SELECT coalesce(sum(next_offset), 0) FROM etl_consumer_offsets WHERE consumer_group = %s",
                (settings.stream.group_id,),
            ).fetchone()
            return int(row[0]) if row else 0
    except Exception:
        return -1


def wait_until(check: Callable[[], bool], timeout: float, what: str, poll: float = 0.1) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(poll)


def wait_progress(settings: OrionSettings, at_least: int, timeout: float, loaders: list[Loader]) -> int:
    """Wait until the group committed `at_least` messages; fail early if every loader died."""
    deadline = time.monotonic() + timeout
    while True:
        done = progress(settings)
        if done >= at_least:
            return done
        if loaders and not any(lo.alive() for lo in loaders):
            tails = "\n".join(f"{lo.name}: rc={lo.proc.returncode} {lo.stderr_tail(800)}" for lo in loaders)
            raise AssertionError(f"every loader exited at {done}/{at_least}:\n{tails}")
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out at {done}/{at_least} committed messages")
        time.sleep(0.05)


# --- the local stack ---------------------------------------------------------------------------


class Stack:
    """Restart or hard-kill one service of the local stack (scripts/stack.sh, ORION_STACK_* env)."""

    def __init__(self) -> None:
        self.home = Path(os.environ.get("ORION_STACK_HOME", REPO / ".stack"))
        self.kafka_port = os.environ.get("ORION_STACK_KAFKA_PORT", "19092")
        pid = self.home / "run" / "kafka.pid"
        props = self.home / "conf" / "kafka.properties"
        if not pid.exists() or f":{self.kafka_port}" not in props.read_text():
            raise AssertionError(
                f"the restart scenarios need the stack that serves port {self.kafka_port} to live in "
                f"{self.home} (start it from this checkout with scripts/stack.sh up, or set ORION_STACK_HOME)"
            )

    def run(self, action: str, service: str) -> float:
        """`restart-service` or `kill-service`; returns seconds until the service was healthy again."""
        started = time.monotonic()
        proc = subprocess.run(
            [str(REPO / "scripts" / "stack.sh"), action, service],
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
        if proc.returncode != 0:
            raise AssertionError(f"stack.sh {action} {service} failed: {proc.stderr[-2000:]}")
        return time.monotonic() - started


# --- verification -------------------------------------------------------------------------------


def high_watermarks(settings: OrionSettings) -> dict[tuple[str, int], int]:
    consumer = make_consumer(settings.kafka, f"{settings.stream.group_id}.watermarks")
    try:
        out = {}
        for topic in vars(settings.stream.topics).values():
            meta = consumer.list_topics(topic, timeout=30).topics[topic]
            for p in meta.partitions:
                out[(topic, p)] = consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=30)[1]
        return out
    finally:
        consumer.close()


def verify(conn: psycopg.Connection, truth: Truth, groups: list[OrionSettings]) -> dict[str, Any]:
    """Compare the warehouse with the source of truth; returns the figures, raises on a mismatch."""
    problems: list[str] = []
    rows = conn.execute(
        "SELECT trade_id::text, tenant_id::text, quantity, price, notional_value, is_deleted FROM fact_trades"
    ).fetchall()
    got = {r[0]: r for r in rows}
    if len(got) != len(rows):
        problems.append(f"duplicate trade_id: {len(rows) - len(got)}")
    missing = set(truth.rows) - set(got)
    extra = set(got) - set(truth.rows)
    if missing:
        problems.append(f"{len(missing)} trades missing (gap), e.g. {sorted(missing)[:3]}")
    if extra:
        problems.append(f"{len(extra)} unexpected trades, e.g. {sorted(extra)[:3]}")
    wrong = [
        (k, got[k][1:], (r.tenant, r.quantity, r.price, r.deleted))
        for k, r in truth.rows.items()
        if k in got
        and (got[k][1], got[k][2], got[k][3], got[k][5]) != (r.tenant, r.quantity, r.price, r.deleted)
    ]
    if wrong:
        problems.append(f"{len(wrong)} trades with wrong values, e.g. {wrong[:2]}")
    sums = {
        r[0]: (r[1], r[2], r[3])
        for r in conn.execute(
            "SELECT tenant_id::text, count(*), sum(quantity), sum(notional_value) FROM fact_trades "
            "WHERE NOT is_deleted GROUP BY 1"
        ).fetchall()
    }
    expected_sums = truth.per_tenant()
    if sums != expected_sums:
        problems.append(f"per-tenant totals differ: got {sums}, expected {expected_sums}")
    quotes = conn.execute(
        "SELECT count(*), count(DISTINCT (src_topic, src_partition, src_offset)) FROM fact_quotes"
    ).fetchone()
    if quotes != (truth.quotes, truth.quotes):
        problems.append(f"quotes: got {quotes}, expected {truth.quotes}")
    issues = conn.execute(
        "SELECT count(*), count(DISTINCT origin->>'fingerprint') FROM etl_data_quality_issues "
        "WHERE severity = 'ERROR'"
    ).fetchone()
    if issues != (truth.poison, truth.poison):
        problems.append(f"dead-letter issues: got {issues}, expected {truth.poison} distinct")
    consumed = 0
    for settings in groups:
        highs = high_watermarks(settings)
        stored = {
            (t, p): o
            for t, p, o in conn.execute(
                "SELECT topic, partition, next_offset FROM etl_consumer_offsets WHERE consumer_group = %s",
                (settings.stream.group_id,),
            ).fetchall()
        }
        lagging = {tp: (stored.get(tp, 0), high) for tp, high in highs.items() if stored.get(tp, 0) != high}
        if lagging:
            problems.append(f"group {settings.stream.group_id}: positions != high watermarks {lagging}")
        consumed += sum(stored.values())
    if consumed != truth.messages:
        problems.append(f"consumed positions {consumed} != produced messages {truth.messages}")
    deleted = sum(1 for r in truth.rows.values() if r.deleted)
    figures = {
        "messages": truth.messages,
        "trades": len(truth.rows),
        "live_trades": len(truth.rows) - deleted,
        "deleted_trades": deleted,
        "quotes": truth.quotes,
        "dead_letters": truth.poison,
        "tenants": len(expected_sums),
        "checks": "row counts, per-row values, per-tenant count/sum(quantity)/sum(notional), "
        "no duplicate keys, no gap, positions = high watermarks, one DQ issue per dead letter",
        "ok": not problems,
    }
    if problems:
        raise AssertionError("warehouse != source of truth:\n  " + "\n  ".join(problems))
    return figures


def read_all(settings: OrionSettings, topic: str, timeout_s: float = 10.0) -> list[Any]:
    """Every message of a topic (all partitions) up to its current end."""
    consumer = make_consumer(settings.kafka, f"reader-{uuid.uuid4().hex[:8]}")
    try:
        meta = consumer.list_topics(topic, timeout=30).topics[topic]
        parts = [TopicPartition(topic, p, 0) for p in meta.partitions]
        ends = {p.partition: consumer.get_watermark_offsets(p, timeout=30)[1] for p in parts}
        consumer.assign(parts)
        out: list[Any] = []
        want = sum(ends.values())
        deadline = time.monotonic() + timeout_s
        while len(out) < want and time.monotonic() < deadline:
            out += [m for m in consumer.consume(1000, timeout=0.5) if m.error() is None]
        return out
    finally:
        consumer.close()
