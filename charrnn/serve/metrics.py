"""Prometheus metrics of one server process, in their own registry (GET /metrics, text format).

    charrnn_requests_total{path, status}          requests answered
    charrnn_generated_characters_total{model}      characters sent back in choices
    charrnn_batch_rows{model}                      histogram: rows stepped together, one observation per step
    charrnn_batch_rows_peak{model}                 the largest batch so far
    charrnn_active_rows{model}, charrnn_queue_length{model}   now: rows stepping, requests waiting to join
    charrnn_request_seconds{path}                  histogram: time to the whole answer
    charrnn_first_char_seconds{model}              histogram: time to a completion's first character

With `--workers N` each worker process keeps its own (a scrape reaches one of them).
"""

from __future__ import annotations

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest

BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256)
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)


class Metrics:
    content_type = CONTENT_TYPE_LATEST

    def __init__(self):
        self.registry = r = CollectorRegistry()
        self.requests = Counter("charrnn_requests", "Requests answered", ["path", "status"], registry=r)
        self.characters = Counter("charrnn_generated_characters", "Characters generated and sent", ["model"], registry=r)
        self.batch = Histogram("charrnn_batch_rows", "Rows stepped together per step", ["model"],
                               buckets=BATCH_BUCKETS, registry=r)
        self.peak = Gauge("charrnn_batch_rows_peak", "The largest batch stepped so far", ["model"], registry=r)
        self.active = Gauge("charrnn_active_rows", "Rows stepping now", ["model"], registry=r)
        self.queue = Gauge("charrnn_queue_length", "Requests waiting to join the batch", ["model"], registry=r)
        self.latency = Histogram("charrnn_request_seconds", "Time to the whole answer", ["path"],
                                 buckets=LATENCY_BUCKETS, registry=r)
        self.first_char = Histogram("charrnn_first_char_seconds", "Time to a completion's first character",
                                    ["model"], buckets=LATENCY_BUCKETS, registry=r)

    def watch(self, name: str, batcher) -> None:
        """Gauges read from the model's batcher when scraped; `batcher.on_step` feeds the histogram."""
        self.active.labels(name).set_function(lambda: batcher.active_rows)
        self.queue.labels(name).set_function(lambda: len(batcher.waiting))
        self.peak.labels(name).set_function(lambda: batcher.peak_rows)
        batch = self.batch.labels(name)
        batcher.on_step = batch.observe

    def render(self) -> bytes:
        return generate_latest(self.registry)
