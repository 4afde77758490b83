"""``/metrics`` in the Prometheus text format, right however many worker processes answer it.

Two sources, so that one scrape shows the whole service:
- counts of what is stored (messages by status, the outbox, send-back actions, flow outcomes) are
  read from the database at scrape time: every process sees the same rows;
- what happens inside a process (MO answers, webhook latency, writer batches) is counted with
  prometheus_client, in its multiprocess mode when ``serve --workers N`` set
  PROMETHEUS_MULTIPROC_DIR, so that any worker's scrape adds up every worker's files.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.registry import REGISTRY, Collector
from sqlalchemy import Connection, case, func, select

from app.db.models import FlowEvent, InboundMessage, OutboxMessage, QuarantinedRequest, SendBackAction
from app.mobitex.statuses import STATUSES
from app.outbox.requeue import refused_with

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

MO_ANSWERS = Counter("smsflows_mo_requests", "MO webhook requests by the HTTP status answered", ["status"])
MO_SECONDS = Histogram(
    "smsflows_mo_request_seconds",
    "Time to answer an MO webhook request (to the commit, for a 200)",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
WRITER_BATCH = Histogram(
    "smsflows_writer_batch_size",
    "Requests committed together by the writer",
    buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256, 512),
)
WRITER_COMMIT_SECONDS = Histogram(
    "smsflows_writer_commit_seconds",
    "Time the writer took to write and commit one batch",
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5),
)


def observe_batch(size: int, seconds: float) -> None:
    """Called by the writer after each committed batch."""
    WRITER_BATCH.observe(size)
    WRITER_COMMIT_SECONDS.observe(seconds)


def prepare_multiprocess(directory: Path) -> None:
    """Before ``--workers N`` start: an empty folder for their counts, named in the environment
    the workers inherit (prometheus_client reads it when it is first imported)."""
    shutil.rmtree(directory, ignore_errors=True)
    directory.mkdir(parents=True)
    os.environ[MULTIPROC_ENV] = str(directory)


_MO_ANSWERED: dict[int, Counter] = {}  # status -> its child of MO_ANSWERS, looked up once per status


def observe_mo(status: int, seconds: float) -> None:
    """Called by the webhook once it has answered a request."""
    answered = _MO_ANSWERED.get(status)
    if answered is None:
        answered = _MO_ANSWERED[status] = MO_ANSWERS.labels(str(status))
    answered.inc()
    MO_SECONDS.observe(seconds)


def _mobitex_codes(conn: Connection) -> dict[str, int]:
    """Failed messages by the Mobitex status that refused them (``status 202 (`` in last_error)."""
    failed = OutboxMessage.status == "failed"
    columns = [func.sum(case((refused_with(code), 1), else_=0)).label(f"s{code}") for code in STATUSES]
    row = conn.execute(select(*columns).where(failed)).one()
    return {code: int(value or 0) for code, value in zip(STATUSES, row, strict=True) if value}


def _grouped(conn: Connection, column: Any, *group: Any) -> list[tuple[Any, ...]]:
    return [tuple(r) for r in conn.execute(select(*group, func.count()).select_from(column).group_by(*group))]


def database_metrics(conn: Connection) -> list[Metric]:
    """Gauges of what the database holds now; the same whichever process reads them."""
    families = []
    for name, doc, column in (
        ("smsflows_inbound_messages", "Stored MO messages by status", InboundMessage.status),
        ("smsflows_quarantine_requests", "Quarantined requests by status", QuarantinedRequest.status),
        ("smsflows_outbox_messages", "Outbox messages by status (the depth is queued)", OutboxMessage.status),
        ("smsflows_sendback_actions", "Send-back actions by status", SendBackAction.status),
    ):
        family = GaugeMetricFamily(name, doc, labels=["status"])
        for status, count in _grouped(conn, column.class_, column):
            family.add_metric([str(status)], count)
        families.append(family)
    outcomes = GaugeMetricFamily(
        "smsflows_flow_events", "Flow decisions by flow and outcome", labels=["flow", "outcome"]
    )
    for flow, outcome, count in _grouped(conn, FlowEvent, FlowEvent.flow_id, FlowEvent.outcome):
        outcomes.add_metric([str(flow or ""), str(outcome)], count)
    refused = GaugeMetricFamily(
        "smsflows_outbox_failed_by_mobitex_status",
        "Failed outbox messages by the Mobitex status that refused them",
        labels=["mobitex_status"],
    )
    for code, count in _mobitex_codes(conn).items():
        refused.add_metric([code], count)
    return [*families, outcomes, refused]


class _Fixed(Collector):
    def __init__(self, metrics: Iterable[Metric]) -> None:
        self._metrics = list(metrics)

    def collect(self) -> Iterable[Metric]:
        return self._metrics


def exposition(stored: list[Metric]) -> bytes:
    """The text a scrape gets: this process's (or every worker's) counts, then the database's."""
    if os.environ.get(MULTIPROC_ENV):
        process = CollectorRegistry()
        MultiProcessCollector(process)  # type: ignore[no-untyped-call]
    else:
        process = REGISTRY
    from_db = CollectorRegistry()
    from_db.register(_Fixed(stored))
    return generate_latest(process) + generate_latest(from_db)
