"""The Segment-compatible HTTP collector: the front door of every event.

Reading order, as a request meets the modules:
  server.py    binds the port, owns the producer; ``webhouse collector`` and tests start it
  app.py       aiohttp routes: /v1/* Segment endpoints, /health, /metrics
  request.py   HTTP body -> write key, JSON, the list of raw events (size, gzip, content type)
  ingest.py    per event: validate + map, encode Avro, produce; dead-letter what fails
  segment.py   one Segment event -> one customer_event record (pure; semantic.py, fields.py,
               coerce.py hold its parts)
  producer.py  confluent-kafka producer with awaitable, bounded delivery
  metrics.py   Prometheus metrics of the collector
  cli.py       the ``webhouse collector`` subcommand

Touchpoints beyond Segment's API, registered by app.py through touchpoints.py:
  browser.py         CORS for browser SDKs, the first-party id cookie (GET /v1/id)
  sdk_settings.py    the settings document SDKs fetch at start (/v1/projects/<key>/settings)
  email_tracking.py  open pixel, click redirect, Mailgun webhook -> e-mail events
  email_links.py     signed tracking tokens and per-recipient HTML (pure); mailgun.py the
                     webhook's signature check and mapping (pure); email_cli.py ``webhouse email``
"""
