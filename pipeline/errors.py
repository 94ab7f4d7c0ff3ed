"""One root exception, a subclass per stage, so callers can catch as widely as they mean.

WebhouseError
├── SettingsError          bad configuration, raised at start
│   └── MissingTopicsError project topics absent and kafka.create_topics off (has .topics)
├── LocalKafkaError        the project's own broker could not be set up or started
├── SchemaError            a schema file is missing, malformed or incompatible
├── SerdeError             bytes could not be encoded or decoded
│   └── UnknownSchemaError a payload names a schema the catalog does not hold
├── ValidationError        an incoming event breaks the event model (has .reason)
│   └── RequestError       a whole HTTP request is refused (has .status; the collector)
├── ProduceError           the broker did not acknowledge in time
├── ProcessingError        a stream processor failed on one event (has .stage)
├── RuleError              a trigger rule file is invalid (has .path, .line)
├── SignatureError         a signed webhook request does not verify (receivers' side)
├── SimulationError        the traffic simulator was misconfigured or the collector refused it
├── SinkError              the webhouse could not land a batch
└── QueryError             an analyst's SQL failed (the webhouse sql / report commands)
"""

from __future__ import annotations


class WebhouseError(Exception):
    """Root of every error webhouse raises on purpose."""


class SettingsError(WebhouseError):
    pass


class MissingTopicsError(SettingsError):
    """The broker lacks project topics a service needs, and it may not create them."""

    def __init__(self, topics: list[str]) -> None:
        super().__init__(
            f"missing Kafka topics: {', '.join(topics)}; create them (`webhouse kafka topics`) "
            "or allow services to (kafka.create_topics, env WEBHOUSE_KAFKA__CREATE_TOPICS=true)"
        )
        self.topics = topics


class LocalKafkaError(WebhouseError):
    pass


class KafkaUnavailableError(WebhouseError):
    """Kafka did not answer a starting service within ``kafka.start_wait_s``."""


class SchemaError(WebhouseError):
    pass


class SerdeError(WebhouseError):
    pass


class UnknownSchemaError(SerdeError):
    pass


class ValidationError(WebhouseError):
    """An event that breaks the model; ``reason`` is a short machine-friendly code."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


class RequestError(ValidationError):
    """A whole collector request refused before its events are looked at (bad JSON, auth, size)."""

    def __init__(self, status: int, reason: str, detail: str) -> None:
        super().__init__(reason, detail)
        self.status = status


class ProduceError(WebhouseError):
    pass


class ProcessingError(WebhouseError):
    def __init__(self, stage: str, detail: str) -> None:
        super().__init__(f"[{stage}] {detail}")
        self.stage = stage
        self.detail = detail


class RuleError(WebhouseError):
    def __init__(self, path: str, line: int | None, detail: str) -> None:
        where = f"{path}:{line}" if line is not None else path
        super().__init__(f"{where}: {detail}")
        self.path = path
        self.line = line
        self.detail = detail


class SimulationError(WebhouseError):
    """`webhouse simulate`: a bad run option, or the collector kept refusing its batches."""


class SignatureError(WebhouseError):
    """Raised by ``triggers.webhook.verify``: bad signature, or a timestamp outside the tolerance."""


class SinkError(WebhouseError):
    pass


class PartitionTaken(SinkError):
    """Another sink landed a table's partitions past where this one stands (it took them while
    this one stalled): this one's rows for them must not land. ``recorded``: app id -> the offset
    the table records now."""

    def __init__(self, table: str, recorded: dict[str, int]) -> None:
        super().__init__(f"{table}: another sink landed past this one on {sorted(recorded)}")
        self.table = table
        self.recorded = recorded


class QueryError(WebhouseError):
    pass
