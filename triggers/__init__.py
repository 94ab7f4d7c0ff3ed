"""Business-logic triggers: customer profiles, rules as data, guardrails, alert delivery.

Reading guide, in the order a record meets the modules:

- ``pipeline.event_view`` enriched event (Avro dict) -> the small view rules read
- ``triggers.events``     closed session (Avro dict) -> the small view rules read
- ``triggers.core``       route: views re-keyed by customer onto the triggers topic (hand-over
                          of a device's state to its customer on stitching)
- ``triggers.hold``       evaluate holds each input until the clock has passed it, then applies
                          them in (time, kind, key, id) order: the same results in any read order
- ``triggers.engine``     per customer: close due absence windows, update the profile, run rules
- ``triggers.wake``       when a scheduled rule can next decide: the hours the sweep looks at
- ``triggers.profile``    the customer profile: RFM parts, tiers, consent, merge
- ``triggers.ruleset``    the YAML rule schema (documented there), validated with file:line errors
- ``triggers.conditions`` condition operators, past-event counts, message templates
- ``triggers.guardrails`` dedupe, consent, cooldown, daily cap
- ``triggers.state``      what is kept per customer (a state-store row, JSON)
- ``triggers.alerts``     the alert record (schemas/alert.avsc) and its deterministic id
- ``triggers.webhook``    signed webhook delivery with retries; ``verify`` for receivers
- ``triggers.stages``     route, evaluate and deliver as stages of ``pipeline.runtime``
- ``triggers.standalone`` the same stages in a process of their own (``webhouse triggers run``)
- ``triggers.cli``        ``webhouse triggers validate | list | run`` (``test``: ``tools.rules_test``, which
                          runs these stages with the worker's on the in-memory runtime)
- ``triggers.metrics``    Prometheus counters and histograms
- ``triggers/rules/``     the starter rule pack (YAML)
"""
