"""Stream processing: raw events in; enriched events, sessions and identity links out.

Reading guide, in the order an event meets the modules:

- ``processors.worker.app``: the faust App (`webhouse worker`): one batched agent on the raw
  topic, the changelog-backed ``devices`` and ``clocks`` tables, the idle-sweep timer, and the
  hook other stages use to add agents (``register_extensions``, e.g. ``triggers.agents``);
- ``processors.worker.core``: the hot path without faust, per event:
  decode once, then enrich (``processors.enrichment``: ``processors.enrichment.clock`` event
  time and skew, ``processors.enrichment.useragent``, ``processors.enrichment.web`` URL, UTM
  and referrer, ``processors.enrichment.geo``), then stitch (``processors.identity``), then
  sessionize in event time per device (``processors.sessions``; its docstring is its guide);
- ``processors.worker.codec``: the enriched bytes without re-encoding the whole event;
- ``processors.worker.metrics``: Prometheus; ``processors.worker.runner``: run in-process or as
  a child process; ``processors.worker.cli``: the command and its --help (the session policy).
"""
