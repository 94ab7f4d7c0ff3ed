"""The one settings object: every tunable and its default lives here.

Sources, highest priority first:
  1. keyword arguments (tests, the CLI's own flags),
  2. environment variables prefixed ``WEBHOUSE_``; nested sections use ``__``
     (``WEBHOUSE_KAFKA__BOOTSTRAP_SERVERS=127.0.0.1:9092``),
  3. a TOML file named by ``WEBHOUSE_CONFIG`` (sections as tables: ``[kafka]``),
  4. the defaults below.

Only this module reads the environment; everything else receives a ``Settings``
(or one of its sections) explicitly. A bad value fails at start with the
offending key named (``SettingsError``).
"""

from __future__ import annotations

import os
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from pipeline.errors import SettingsError

# The directory holding the top-level packages: the repository, or site-packages of an installed
# wheel, where schemas/ and triggers/rules/ come along as package data (pyproject.toml).
REPO_ROOT = Path(__file__).resolve().parent.parent
ENV_PREFIX = "WEBHOUSE_"
CONFIG_FILE_ENV = "WEBHOUSE_CONFIG"


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class KafkaSettings(_Section):
    """Where the broker is, and how `webhouse kafka up` runs a local one."""

    bootstrap_servers: str = Field("127.0.0.1:9092", description="Kafka bootstrap servers, comma separated.")
    topic_prefix: str = Field(
        "webhouse", description="Prefix of every project topic (see pipeline/topics.py)."
    )
    default_partitions: int = Field(4, ge=1, description="Partitions of keyed event topics.")
    replication_factor: int = Field(
        1,
        ge=1,
        description="Least replication factor of project topics; topics get 3 (min.insync.replicas 2) "
        "anyway on a cluster of 3 or more brokers.",
    )
    schema_registry_url: str | None = Field(
        None,
        description="Confluent Schema Registry URL; when set, Avro uses the Confluent wire format "
        "instead of single-object encoding.",
    )
    # Local broker (`webhouse kafka up`).
    local_version: str = Field("4.4.0", description="Apache Kafka version the local broker runs.")
    local_data_dir: Path = Field(
        Path(".webhouse/kafka"), description="Log dirs, config and pid file of the local broker."
    )
    local_jar_cache: Path = Field(
        Path.home() / ".cache" / "webhouse" / "kafka",
        description="Where the broker jars resolved from Maven Central are cached.",
    )
    local_controller_port: int = Field(9093, ge=1, le=65535)
    local_heap: str = Field("512m", description="JVM heap of the local broker (-Xmx/-Xms).")
    local_start_timeout_s: float = Field(60.0, gt=0)
    start_wait_s: float = Field(
        60.0,
        ge=0,
        description="A service starting while Kafka does not answer waits this long for it, then exits "
        "with an error naming the servers (a supervisor starts it again).",
    )
    create_topics: bool | None = Field(
        None,
        description="Services create missing project topics at start; none: only on a loopback broker.",
    )


class CollectorEmailSettings(_Section):
    """E-mail tracking on the collector: signed open/click links and the ESP webhook."""

    public_base_url: str = Field(
        "http://127.0.0.1:8088",
        description="The collector's address as mail clients reach it; tracking links start with it.",
    )
    link_secrets: list[str] = Field(
        default_factory=lambda: ["change-me-email-link-secret"],
        description="HMAC-SHA256 keys of tracking links: the first signs, any verifies (key rotation).",
    )
    mailgun_signing_key: str = Field(
        "", description="Mailgun webhook signing key; empty: the Mailgun webhook answers 503."
    )
    mailgun_max_age_s: int = Field(
        900, gt=0, description="Refuse Mailgun webhooks signed longer ago than this (replays)."
    )


class CollectorBrowserSettings(_Section):
    """What browser SDKs need from the collector: CORS, and the optional first-party id cookie."""

    cors_allowed_origins: list[str] = Field(
        default_factory=list,
        description="Origins allowed to post from a browser: exact ('https://shop.example'), "
        "'https://*.shop.example' for subdomains, or '*'. Empty: no CORS headers.",
    )
    cors_max_age_s: int = Field(600, ge=0, description="How long browsers may cache a preflight answer.")
    id_cookie_enabled: bool = Field(
        False, description="Serve GET /v1/id: an HTTP-only first-party cookie holding the anonymous id."
    )
    id_cookie_name: str = Field("webhouse_aid", description="Name of the anonymous-id cookie.")
    id_cookie_max_age_days: int = Field(
        395, gt=0, le=395, description="Lifetime, refreshed on each visit; 13 months is the CNIL limit."
    )
    id_cookie_domain: str | None = Field(
        None, description="Cookie Domain attribute, e.g. 'shop.example' to share it with subdomains."
    )
    id_cookie_secure: bool = Field(True, description="Send the cookie over HTTPS only.")
    id_cookie_samesite: Literal["Lax", "Strict", "None"] = "Lax"


class CollectorPiiSettings(_Section):
    """E-mail, phone and IP keyed-hashed before events reach Kafka (pipeline/collector/pseudonymise.py).

    Keys are compared in snake case at any depth; e-mail addresses are also found by pattern in
    every string. The key is webhouse.pii_hmac_secret, the one the sinks use.
    """

    enabled: bool = Field(True, description="Hash e-mail, phone and IP values in every event.")
    email_keys: list[str] = Field(
        default_factory=lambda: ["email", "e_mail", "email_address", "user_email", "customer_email",
                                 "contact_email", "recipient"],
        description="Keys whose values are e-mail addresses (addresses elsewhere are found by pattern).",
    )  # fmt: skip
    phone_keys: list[str] = Field(
        default_factory=lambda: ["phone", "phone_number", "telephone", "tel", "mobile", "mobile_number",
                                 "mobile_phone", "cell", "cell_phone", "fax", "msisdn", "whatsapp"],
        description="Keys whose values are phone numbers.",
    )  # fmt: skip
    ip_keys: list[str] = Field(
        default_factory=lambda: ["ip", "ip_address", "client_ip", "remote_addr", "x_forwarded_for"],
        description="Keys whose values are IP addresses.",
    )
    ip_network_for_geo: bool = Field(
        True,
        description="Keep the IP's network (IPv4 /24, IPv6 /48) as $ip_network for the worker's geo "
        "lookup; only when worker.geoip_database is set.",
    )


class CollectorSettings(_Section):
    """The Segment-compatible HTTP collector."""

    host: str = "127.0.0.1"
    port: int = Field(8088, ge=0, le=65535)
    processes: int = Field(
        1,
        ge=1,
        le=256,
        description="Collector processes serving the port together (one core each at most; "
        "pipeline.collector.processes).",
    )
    write_keys: dict[str, str] = Field(
        default_factory=lambda: {"dev-write-key": "dev"},
        description="Accepted write keys mapped to a source name (Basic auth user name).",
    )
    max_body_bytes: int = Field(512 * 1024, gt=0, description="Segment's own limit is 500 KB.")
    max_event_bytes: int = Field(32 * 1024, gt=0, description="Segment's own limit is 32 KB.")
    max_event_depth: int = Field(32, ge=2, description="Deepest nesting of objects/arrays in one event.")
    max_event_keys: int = Field(1000, ge=10, description="Object keys in one event, at all depths.")
    min_event_time: datetime = Field(
        datetime(2000, 1, 1, tzinfo=UTC), description="Events said to happen earlier are refused."
    )
    max_event_future_s: int = Field(
        86400, ge=0, description="Events said to happen this far after their arrival are refused."
    )
    produce_timeout_s: float = Field(
        10.0, gt=0, description="How long a request waits for broker acks before answering 503."
    )
    retry_after_s: int = Field(5, ge=1, description="Retry-After sent with a 503.")
    compression: Literal["none", "gzip", "snappy", "lz4", "zstd"] = "zstd"
    linger_ms: int = Field(5, ge=0)
    trust_forwarded_for: bool = Field(
        False,
        description="Take the client IP from X-Forwarded-For (behind your own proxy); else the peer.",
    )
    health_timeout_s: float = Field(
        2.0, gt=0, description="How long /health/ready waits for the broker's metadata answer."
    )
    shutdown_timeout_s: float = Field(
        15.0, gt=0, description="At shutdown: time to finish open requests, then to flush the producer."
    )
    email: CollectorEmailSettings = CollectorEmailSettings()
    browser: CollectorBrowserSettings = CollectorBrowserSettings()
    pii: CollectorPiiSettings = CollectorPiiSettings()

    @field_validator("min_event_time")
    @classmethod
    def _aware(cls, value: datetime) -> datetime:
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value


class SessionPolicySettings(_Section):
    """How clicks are cut into sessions (processors/sessions)."""

    inactivity_gap_s: int = Field(30 * 60, gt=0, description="A visit ends after this long without events.")
    max_duration_s: int = Field(24 * 3600, gt=0, description="No visit lasts longer (PostHog: 24 h).")
    allowed_lateness_s: int = Field(
        5 * 60, ge=0, description="Events this far behind the newest one are still placed in visits."
    )
    split_at_midnight: bool = Field(False, description="Start a new visit at local midnight.")
    midnight_timezone: str = Field("UTC", description="IANA time zone of the midnight split.")
    split_on_campaign_change: bool = Field(
        True, description="Start a new visit when utm source/medium/campaign changes (direct does not)."
    )
    dedup_memory: int = Field(
        64, ge=0, description="Event ids remembered per device so a redelivered event changes nothing."
    )
    idle_close_interval_s: float = Field(
        5.0,
        gt=0,
        description="Wall-clock quiet after which a caught-up partition's event clock moves on with the "
        "wall clock (so its visits close by inactivity, never early).",
    )

    @field_validator("midnight_timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(f"unknown IANA time zone {value!r}") from exc
        return value


# Junk ids seen merging strangers in real data (Segment suggests blocking -1, null, anonymous and
# hard-coded development values); issue 18 of the project names the rest.
BLOCKED_IDS = (
    "undefined", "null", "none", "nil", "nan", "0", "-1", "anonymous", "anon", "guest", "unknown",
    "user", "test", "testuser", "test-user", "demo", "default", "true", "false", "[object object]",
    "n/a", "na", "void", "abc123", "id", "userid", "user_id", "customer",
    "test@test.com", "test@example.com", "user@example.com", "email@example.com", "name@example.com",
    "example@example.com", "you@example.com", "your@email.com", "youremail@example.com",
    "noreply@example.com", "no-reply@example.com", "a@a.com", "abc@abc.com", "foo@bar.com",
    "null@null.com", "none@none.com", "email@email.com", "test@gmail.com",
)  # fmt: skip


class WorkerSettings(_Section):
    """The stream worker (`webhouse worker`): its stage and, in its process, the trigger stages."""

    app_id: str = "webhouse-worker"
    data_dir: Path = Field(
        Path(".webhouse/worker"), description="Local files of the stream stages: their state (state/<group>)."
    )
    state_store: Literal["disk", "memory"] = Field(
        "disk",
        description="Where the stages keep their state: disk (SQLite under data_dir, resumed from its "
        "saved changelog offsets after a restart) or memory (rebuilt from the whole changelog at each "
        "assignment).",
    )
    geoip_database: Path | None = Field(None, description="MaxMind-format .mmdb file; none: no geo.")
    user_agent_cache_size: int = Field(
        20_000, ge=0, description="Distinct user agents whose parse is kept (LRU); 0: no cache."
    )
    session: SessionPolicySettings = SessionPolicySettings()
    internal_domains: list[str] = Field(
        default_factory=list,
        description="Hosts (and subdomains) whose referrals count as internal, besides the page's own host.",
    )
    identity_events: list[str] = Field(
        default_factory=lambda: ["Signed In", "Signed Up"],
        description="Track events that link the device (anonymous id) to the event's user id.",
    )
    identity_history: int = Field(
        16, ge=1, description="Sign-ins kept per device, to tell which customer used a shared device when."
    )
    identity_blocked_values: list[str] = Field(
        default_factory=lambda: list(BLOCKED_IDS),
        description="Ids that never link (trimmed, case-insensitive): test values, placeholders.",
    )
    identity_blocked_patterns: list[str] = Field(
        default_factory=lambda: [r"[0-]*"],
        description="Regular expressions (full match) of ids that never link; default: zeroes and dashes.",
    )
    identity_device_limit: int = Field(
        5, ge=0, description="Most devices linked to one customer per window on a partition; 0: no limit."
    )
    identity_device_window_s: int = Field(
        7 * 24 * 3600, gt=0, description="The device limit's sliding window (event time): a week."
    )
    identity_customer_limit: int = Field(
        100,
        ge=0,
        description="Most customers one device links; past it a device is shared (a kiosk, a server "
        "sending one anonymous id for everyone) and links no more; 0: no limit.",
    )
    batch_max_events: int = Field(
        2000, gt=0, description="Records a stage takes per batch (one transaction per batch)."
    )
    batch_within_s: float = Field(
        0.25, gt=0, description="Longest wait for a batch to fill (events wait minutes for the watermark)."
    )
    idle_after_s: float = Field(
        30.0,
        gt=0,
        description="A raw partition caught up and quiet this long is reported idle: stages' clocks stop "
        "waiting on it (too short for a replay of history lets its next events arrive late).",
    )
    gc_threshold: int = Field(
        10_000,
        ge=0,
        description="Python's young-generation collection threshold in the stage processes (worker, "
        "triggers): at Python's default, 700, they ran ~1,000 collections per 40,000 events, about a "
        "tenth of their CPU, for garbage that reference counting frees anyway (docs/performance.md); "
        "0 keeps Python's default.",
    )
    prefetch_kib: int = Field(
        4096,
        ge=64,
        description="Most a stage's consumer reads ahead of its work, in KiB (librdkafka's "
        "queued.max.messages.kbytes, per stage; its own default, 65,536, is what a lagging stage's "
        "consumer fills: about 130 MiB more resident in a catch-up with the triggers on).",
    )
    downstream_backlog_max: int = Field(
        0,
        ge=0,
        description="In a catch-up, the worker stage stops reading the raw topic while the consumer groups "
        "of downstream_backlog_of (the route and evaluate trigger stages) have more than this many records "
        "unread, and goes on below it: alerts then keep up with the replay and the held inputs stay few. "
        "It counts those groups wherever their stages run, in the worker's process or in `webhouse "
        "triggers run`, and a group that never committed as having all its input unread: the worker "
        "waits for a trigger process that has not started. 0 (the default): no bound, the worker runs "
        "as far ahead as it can.",
    )
    downstream_backlog_of: list[str] = Field(
        default_factory=lambda: ["triggers.stages"],
        description="Modules whose backlog_groups(settings) name the consumer groups (and the topics they "
        "read) that downstream_backlog_max counts; a module that is not installed counts nothing.",
    )
    device_cache: int = Field(
        50_000,
        ge=1,
        description="Devices the worker keeps decoded in memory (least recently used go first); the others "
        "stay in the state store until an event needs them.",
    )
    device_ttl_s: float = Field(
        30 * 24 * 3600,
        ge=0,
        description="A device idle this long (event time of its partition), with no open visit, is dropped "
        "from the worker's state (0: never): state stays bounded. Seen again, it starts afresh: no stitching "
        "until it signs in again (its links stay in identity_map).",
    )
    visitless_ttl_s: float = Field(
        24 * 3600,
        ge=0,
        description="A key only ever seen in events that join no visit (a crawler's id, a CRM call's user "
        "id) is kept this long after its latest event, for its duplicate memory alone (a client's retry "
        "of the same message id is dropped); capped by device_ttl_s.",
    )
    instance_id: str | None = Field(
        None,
        description="This worker process among its group, unique per process; its Kafka transactional ids "
        "derive from it. A stable id (a StatefulSet ordinal, a systemd instance) lets a restarted process "
        "abort what its crashed predecessor left open at once; none: host name and process id, safe for "
        "any number of workers, but read-committed readers wait up to transaction_timeout_s after a crash.",
    )
    transaction_timeout_s: float = Field(
        10.0,
        gt=0,
        description="Kafka transaction timeout: how long a crashed process's open batch can "
        "hold back read_committed readers when no process of its instance id restarts.",
    )
    group_session_timeout_s: float = Field(
        30.0, ge=6, description="Kafka group session timeout: how soon a dead worker's partitions move."
    )
    extensions: list[str] = Field(
        default_factory=lambda: ["triggers.stages"],
        description="Modules whose stages(settings, metrics) run in the worker's process, if importable.",
    )


class ValueTierSettings(_Section):
    """One customer value tier: reached when EITHER threshold is met (tiers listed lowest first)."""

    name: str
    min_revenue: float = Field(float("inf"), ge=0, description="Lifetime revenue that reaches the tier.")
    min_orders: int = Field(1_000_000_000, ge=1, description="Order count that reaches the tier.")


def _default_tiers() -> list[ValueTierSettings]:
    return [
        ValueTierSettings(name="silver", min_revenue=500.0, min_orders=5),
        ValueTierSettings(name="gold", min_revenue=2_000.0, min_orders=15),
        ValueTierSettings(name="vip", min_revenue=10_000.0, min_orders=40),
    ]


class TriggerSettings(_Section):
    """Business rules and alert delivery (triggers/)."""

    rules_dir: Path = Field(
        REPO_ROOT / "triggers" / "rules", description="YAML trigger rules (reloaded when edited)."
    )
    webhook_urls: list[str] = Field(
        default_factory=list, description="Receivers of fired alerts (signed JSON POSTs)."
    )
    webhook_secret: str = Field("change-me-webhook-secret", description="HMAC-SHA256 key for webhooks.")
    daily_cap_per_customer: int = Field(
        3, ge=0, description="Fired marketing alerts per customer per UTC day; more are suppressed."
    )
    value_tiers: list[ValueTierSettings] = Field(
        default_factory=_default_tiers, description="Value tiers, lowest first (revenue OR orders)."
    )
    cross_sell: dict[str, list[str]] = Field(
        default_factory=lambda: {
            "books": ["movies", "merchandise"],
            "music": ["music", "concert_tickets"],
            "movies": ["books", "merchandise"],
            "kitchen": ["tableware"],
        },
        description="Category bought -> categories to recommend (cross-sell rule).",
    )
    consent_purposes: list[str] = Field(
        default_factory=lambda: ["analytics", "marketing_email", "marketing_sms", "marketing_push",
                                 "personalisation"],
        description="Consent purposes rules may name (`webhouse triggers validate` refuses others).",
    )  # fmt: skip
    event_names: list[str] = Field(
        default_factory=list,
        description="Your own event names rules may use, besides the Segment spec events the collector "
        "types and the call types (`webhouse triggers validate` refuses others).",
    )
    consent_default_granted: bool = Field(
        False, description="Consent of a customer who never sent a Consent event (opt-in: False)."
    )
    sweep_interval_s: float = Field(
        30.0, gt=0, description="Wall-clock period of the scheduled sweep (its 'now' is event time)."
    )
    sweep_chunk: int = Field(
        10_000,
        ge=1,
        description="States one step of the sweep decides at most: those due (the earliest first), "
        "and those a full pass (after an assignment or a rules reload) visits; the rest come in "
        "the next steps, so a step stays short and a transaction small whatever the number of "
        "states, also when a jump of the clock makes many due at once.",
    )
    held_in_memory: int = Field(
        20_000,
        ge=0,
        description="Held inputs (waiting for the clock) the evaluate stage keeps in memory; past it, "
        "they are parked in their records in its state store, and each record's come back when the "
        "clock nears them. Their number grows with the stage's lag in a catch-up.",
    )
    absence_grace_s: int = Field(
        60, ge=0, description="Lateness allowed before a sweep closes an absence window in event time."
    )
    history_max_events: int = Field(
        300, ge=10, description="Past events (and input ids, against replays) kept per customer."
    )
    dedupe_retention_days: int = Field(
        60, ge=1, description="How long emitted alert ids are remembered to drop replays."
    )
    state_ttl_days: int = Field(
        400,
        ge=0,
        description="A customer's or device's trigger state with no event for this long (event time) "
        "and no open window is dropped at the first event-time hour past it; 0: kept for ever. "
        "Longer than every rule's horizon (win-back looks 90 days back): a customer back after it "
        "starts a new state.",
    )
    webhook_timeout_s: float = Field(5.0, gt=0, description="Timeout of one webhook POST attempt.")
    webhook_max_attempts: int = Field(5, ge=1, description="Attempts before the alert is dead-lettered.")
    webhook_backoff_base_s: float = Field(0.5, gt=0, description="First retry delay; doubles each try.")
    webhook_backoff_max_s: float = Field(30.0, gt=0, description="Longest wait between two attempts.")


class WebhouseSettings(_Section):
    """The Parquet webhouse and its sinks (sinks/)."""

    root: str = Field(".webhouse/tables", description="Local path or s3://bucket/prefix.")
    batch_max_rows: int = Field(50_000, gt=0)
    batch_max_seconds: float = Field(
        3.0,
        gt=0,
        description="A batch lands when its oldest row is this old: the sink's share of freshness "
        "(docs/performance.md, Freshness; 10 s before 2 Dec 2026).",
    )
    pii_hmac_secret: str = Field(
        "change-me-pii-secret", description="Key for hashing e-mail, phone and IP before they land."
    )
    dedupe_ids: bool = Field(
        True,
        description="Drop rows whose natural id already landed; off only to test that offsets alone "
        "land each record once (`webhouse chaos --no-dedupe`).",
    )
    storage_options: dict[str, str] = Field(
        default_factory=dict,
        description="deltalake object-store options for an s3:// root (AWS_ENDPOINT_URL, AWS_REGION, ...).",
    )
    events_source: Literal["enriched", "raw"] = Field(
        "enriched",
        description="Topic the events, orders and e-mail tables land from; 'raw' only to verify the "
        "sink without the stream worker.",
    )
    consumer_group: str = Field("webhouse-sink", description="Kafka group of `webhouse sink` (lag only).")
    gc_threshold: int = Field(
        10_000,
        ge=0,
        description="Python's young-generation collection threshold in `webhouse sink`: a batch holds "
        "up to batch_max_rows decoded events, and at Python's default, 700, the collector ran ~16 "
        "times per 1,000 events, 13-15% of the sink's time from Kafka (docs/performance.md); 0 keeps "
        "Python's default.",
    )
    group_instance_id: str | None = Field(
        None, description="Static group membership: a restarted sink takes its partitions back at once."
    )
    commit_retries: int = Field(8, ge=0, description="Retries of a Delta commit that lost a race.")
    vacuum_retention_hours: int = Field(168, ge=0, description="Default age before vacuum deletes files.")
    table_retention_hours: dict[str, int] = Field(
        default_factory=dict, description="Per-table vacuum retention overriding the default."
    )
    compact_target_file_mb: int = Field(128, gt=0, description="Target file size of `webhouse compact`.")
    compact_every_seconds: float = Field(
        300.0,
        ge=0,
        description="The sink compacts its tables' small files this often, between its own commits "
        "(0: never; then run `webhouse compact --every`).",
    )
    compact_min_small_files: int = Field(
        16,
        ge=1,
        description="Compact a table once one of its partitions holds this many files under the target.",
    )
    vacuum_every_seconds: float = Field(
        3600.0,
        ge=0,
        description="The sink deletes files no snapshot within the retention needs this often (0: never).",
    )
    funnel_steps: list[str] = Field(
        default_factory=lambda: ["Product Viewed", "Product Added", "Checkout Started", "Order Completed"],
        description="Ordered event names of the funnel report.",
    )
    funnel_cache: bool = Field(
        True,
        description="Keep the funnel's per-day counts under <root>/_cache and recompute only the days whose "
        "events or identity links changed (local roots; false: compute every time).",
    )
    attribution_window_days: int = Field(7, gt=0, description="Campaign report: send/click -> order window.")
    dormant_days: int = Field(90, gt=0, description="Dormant report: days without any activity.")


class SimulateSettings(_Section):
    """The traffic simulator (`webhouse simulate`); its flags override these."""

    collector_url: str | None = Field(
        None, description="Collector base URL; none: http://<collector.host>:<collector.port>."
    )
    write_key: str = Field("dev-write-key", description="Write key, sent as the Basic auth user.")
    seed: int = Field(42, description="Same seed and --now: the same event stream and ground truth.")
    customers: int = Field(800, ge=1, description="Simulated people, anonymous visitors included.")
    days: float = Field(30.0, gt=0, description="Simulated period (event time) ending at the run's 'now'.")
    rate: float = Field(600.0, ge=0, description="Events per second sent to the collector; 0: unpaced.")
    batch_size: int = Field(100, ge=1, le=5000, description="Events per /v1/batch request.")
    concurrency: int = Field(
        1, ge=1, description="Requests in flight; above 1 only each customer's own order is kept."
    )
    bots: int = Field(12, ge=0, description="Crawler visits.")
    malformed: int = Field(25, ge=0, description="Deliberately broken events (the dead-letter path).")
    vip_revenue: float = Field(
        1000.0, gt=0, description="Lifetime revenue (EUR) that makes a customer VIP in the ground truth."
    )
    request_timeout_s: float = Field(10.0, gt=0, description="Timeout of one collector request.")
    max_retries: int = Field(8, ge=0, description="Retries of one batch (503, 5xx, network) before failing.")
    truth_path: Path = Field(
        Path(".webhouse/simulate/ground-truth.json"), description="Where the ground truth is written."
    )


class MetricsSettings(_Section):
    """The Prometheus endpoint of the worker, the triggers app and the sink (the collector serves
    /metrics on its own host and port)."""

    host: str = Field(
        "127.0.0.1", description="Bind address of the metrics endpoint; 0.0.0.0 to be scraped from outside."
    )
    port: int = Field(9108, ge=0, le=65535, description="Prometheus endpoint of workers and sinks; 0: none.")


class HealthSettings(_Section):
    """Liveness of the services (pipeline/health.py): /health and /health/ready ride on the metrics
    endpoint of the sink and of the worker (every stage), the collector serves its own."""

    stall_after_s: float = Field(
        120.0, gt=0, description="No progress this long while there is work: error, exit 3 (restart me)."
    )
    stop_within_s: float = Field(
        25.0, gt=0, description="SIGTERM/SIGINT: a stop still running after this exits 4 anyway."
    )
    commit_within_s: float = Field(
        30.0,
        gt=0,
        description="A stage's transaction commit (offsets and commit) not back after this is a stall: "
        "librdkafka can wait for ever on a group coordinator whose broker node died.",
    )


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX,
        env_nested_delimiter="__",
        extra="forbid",
        frozen=True,
    )

    kafka: KafkaSettings = KafkaSettings()
    collector: CollectorSettings = CollectorSettings()
    worker: WorkerSettings = WorkerSettings()
    triggers: TriggerSettings = TriggerSettings()
    webhouse: WebhouseSettings = WebhouseSettings()
    metrics: MetricsSettings = MetricsSettings()
    health: HealthSettings = HealthSettings()
    simulate: SimulateSettings = SimulateSettings()
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"

    @field_validator("log_level", mode="before")
    @classmethod
    def _upper(cls, value: Any) -> Any:
        return value.upper() if isinstance(value, str) else value

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings]
        config_file = os.environ.get(CONFIG_FILE_ENV)
        if config_file:
            sources.append(TomlConfigSettingsSource(settings_cls, toml_file=Path(config_file)))
        return tuple(sources)


def load_settings(**overrides: Any) -> Settings:
    """Build the settings, turning any validation problem into one clear SettingsError."""
    config_file = os.environ.get(CONFIG_FILE_ENV)
    if config_file and not Path(config_file).is_file():
        raise SettingsError(f"{CONFIG_FILE_ENV}={config_file!r}: no such file")
    try:
        return Settings(**overrides)
    except ValidationError as exc:
        problems = []
        for err in exc.errors():
            key = ".".join(str(p) for p in err["loc"])
            env_name = ENV_PREFIX + "__".join(str(p) for p in err["loc"]).upper()
            problems.append(f"  {key} (env {env_name}): {err['msg']} (got {err.get('input')!r})")
        raise SettingsError("invalid webhouse settings:\n" + "\n".join(problems)) from exc
    except Exception as exc:  # a malformed TOML file or env JSON
        raise SettingsError(f"could not read webhouse settings: {exc}") from exc


def describe_defaults() -> list[tuple[str, str, Any, str]]:
    """(key, env var, default, description) for every setting: the documented defaults."""
    rows: list[tuple[str, str, Any, str]] = []

    def walk(model: type[BaseModel], path: list[str]) -> None:
        for name, field in model.model_fields.items():
            annotation = field.annotation
            if isinstance(annotation, type) and issubclass(annotation, BaseModel):
                walk(annotation, [*path, name])
                continue
            key = ".".join([*path, name])
            env = ENV_PREFIX + "__".join([*path, name]).upper()
            default = field.get_default(call_default_factory=True)
            rows.append((key, env, default, field.description or ""))

    walk(Settings, [])
    return rows
