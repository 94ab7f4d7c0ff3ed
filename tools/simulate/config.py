"""What one simulation run is: its size, its period, its seed and the behaviour model.

``SimulationConfig`` is everything generation depends on; the same config gives the same
event stream and ground truth, byte for byte. ``Mix`` holds the behaviour model's
calibration (shares of customer kinds, conversion and response rates): model parameters
with documented defaults, kept apart from the run's size so a test can bend one of them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta

from pipeline.errors import SimulationError
from tools.simulate.catalog import CROSS_SELL

# name, lifetime revenue (EUR), order count: a tier is reached when EITHER threshold is met;
# lowest first (the trigger pack's default tiers, settings.triggers.value_tiers).
DEFAULT_TIERS: tuple[tuple[str, float, int], ...] = (
    ("silver", 500.0, 5),
    ("gold", 2000.0, 15),
    ("vip", 10000.0, 40),
)


@dataclass(frozen=True, slots=True)
class Mix:
    """Calibration of the behaviour model (probabilities unless said otherwise)."""

    # Kinds of customers (shares sum to 1): VIPs buy often and dear; dormant ones bought months
    # before the period and some come back; anonymous ones never sign up.
    vip_share: float = 0.05
    regular_share: float = 0.25
    occasional_share: float = 0.40
    dormant_share: float = 0.06
    anonymous_share: float = 0.24
    # Mean visits per 30 days, by kind.
    visits_per_month: dict[str, float] = field(
        default_factory=lambda: {
            "vip": 9.0,
            "regular": 3.5,
            "occasional": 1.6,
            "dormant": 1.2,
            "anonymous": 1.3,
        }
    )
    # Chance a visit is meant to end in an order (identified kinds only), by kind.
    buy_rate: dict[str, float] = field(
        default_factory=lambda: {
            "vip": 0.42,
            "regular": 0.2,
            "occasional": 0.08,
            "dormant": 0.3,
            "anonymous": 0.0,
        }
    )
    cart_without_order_rate: float = 0.24  # of visits not meant to buy: items added, then left
    bounce_rate: float = 0.32  # single-page visits (not for campaign clicks)
    return_to_buy_rate: float = 0.22  # an abandoned cart bought in a visit 35-55 minutes later
    signup_per_visit: float = 0.3  # chance an identified-kind visitor signs up in a visit before buying
    app_share: float = 0.3  # customers who also use the app
    second_device_share: float = 0.45
    marketing_opt_in: dict[str, float] = field(
        default_factory=lambda: {
            "vip": 0.85,
            "regular": 0.7,
            "occasional": 0.5,
            "dormant": 0.0,
            "anonymous": 0.0,
        }
    )
    personalisation_opt_in: float = 0.6
    banner_consent: float = 0.75  # anonymous analytics consent on a browser's first visit
    withdraw_rate: float = 0.14  # of marketing opt-ins, withdrawn later in the preference centre
    consider_product_rate: float = 0.55  # chance a visit returns to a product the customer is weighing
    # E-mail.
    campaign_every_days: float = 6.0
    bounce_rate_email: float = 0.025
    open_rate: float = 0.42
    click_rate: float = 0.3  # of opens
    unsubscribe_rate: float = 0.02  # of opens
    spam_rate: float = 0.003  # of deliveries
    click_buy_rate: float = 0.28  # a click visit meant to end in an order
    # Dwell time between two steps of a visit: log-normal, median and sigma; capped well under
    # the 30-minute session gap so one simulated visit is one server-side session.
    dwell_median_s: float = 28.0
    dwell_sigma: float = 0.95
    dwell_cap_s: float = 20 * 60.0
    visit_gap_s: float = 35 * 60.0  # least quiet time between two visits of one customer

    def kinds(self) -> dict[str, float]:
        return {
            "vip": self.vip_share,
            "regular": self.regular_share,
            "occasional": self.occasional_share,
            "dormant": self.dormant_share,
            "anonymous": self.anonymous_share,
        }


@dataclass(frozen=True, slots=True)
class SimulationConfig:
    """One run. ``customers`` is the population; ``max_events`` (optional) stops adding
    customers once the stream (crawls and malformed events included) holds that many events;
    whole customers only, so the ground truth stays exact."""

    seed: int
    now: datetime  # end of the simulated period (event time), tz-aware UTC
    days: float = 30.0
    customers: int = 1000
    max_events: int | None = None
    bots: int = 12  # crawler visits
    malformed: int = 25
    vip_revenue: float = 1000.0  # lifetime revenue that makes a customer VIP in the ground truth
    value_tiers: tuple[tuple[str, float, int], ...] = DEFAULT_TIERS  # for ``tiers_reached``
    cross_sell: dict[str, tuple[str, ...]] = field(default_factory=lambda: dict(CROSS_SELL))  # for the truth
    mix: Mix = field(default_factory=Mix)

    def __post_init__(self) -> None:
        if self.now.tzinfo is None or self.now.utcoffset() != timedelta(0):
            raise SimulationError(f"now must be a tz-aware UTC time, got {self.now!r}")
        if self.days <= 0:
            raise SimulationError(f"days must be positive, got {self.days}")
        if self.customers < 1:
            raise SimulationError(f"customers must be at least 1, got {self.customers}")
        if self.max_events is not None and self.max_events < 1:
            raise SimulationError(f"max_events must be positive, got {self.max_events}")
        if self.bots < 0 or self.malformed < 0:
            raise SimulationError("bots and malformed must not be negative")
        total = sum(self.mix.kinds().values())
        if abs(total - 1.0) > 1e-9:
            raise SimulationError(f"customer kind shares must sum to 1, got {total}")

    @property
    def run_key(self) -> str:
        """Seeds every random stream: the seed and the period's end, so two runs ending at
        different times (a demo run twice, appending) never reuse message, order or customer ids."""
        return f"{self.seed}:{self.now.isoformat()}"

    @property
    def start(self) -> datetime:
        return self.now - timedelta(days=self.days)
