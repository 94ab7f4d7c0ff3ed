"""Stream processing: raw events in; enriched events, sessions and identity links out.

Reading guide, in the order an event meets the modules:

- ``processors.worker.stage``: the worker as a stage of ``pipeline.runtime``: batches of raw
  messages in, a ``Step`` (outputs, ``devices``, ``waiting`` and ``clocks`` store writes) out, and
  the timer that moves quiet partitions' clocks;
- ``processors.worker.core``: the hot path, per event:
  decode once, then enrich (``processors.enrichment``: ``processors.enrichment.clock`` event
  time and skew, ``processors.enrichment.useragent``, ``processors.enrichment.web`` URL, UTM
  and referrer, ``processors.enrichment.geo``), then stitch (``processors.identity``), then
  sessionize in event time per device (``processors.sessions``; its docstring is its guide);
- ``processors.worker.codec``: the enriched bytes without re-encoding the whole event;
- ``processors.worker.devices``: a device's record (with a header read without decoding it)
  and the cache of decoded devices in front of the store (``worker.device_cache``);
- ``processors.worker.waiting``: events waiting for the watermark, saved one record each (written
  once, tombstoned on release) instead of inside their device's record;
- ``processors.worker.metrics``: Prometheus; ``processors.worker.runner``: the worker's stages
  plus those of ``worker.extensions`` (default ``triggers.stages``), run in-process or as a child
  process; ``processors.worker.cli``: the command and its --help (the session policy).
"""
