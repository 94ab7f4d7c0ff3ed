"""`webhouse simulate`: believable customer traffic with its own ground truth.

Reading guide, in the order a run meets the modules:

- ``config``     what a run is (seed, period, size) and the behaviour model's calibration (``Mix``)
- ``catalog``    the shop's products; categories linked for cross-sell
- ``people``     customers: traits, devices (``agents``: user agents, app contexts, crawlers)
- ``timeline``   one customer's period: visits and campaigns in time order
- ``journey``    one visit's shape (browse, cart, checkout) over ``visits`` (page/screen/track calls)
- ``campaigns``  e-mail campaigns and each recipient's reactions, and the UTM-tagged visits they cause
- ``bots``, ``malformed``   crawlers and deliberately broken events
- ``messages``   Segment HTTP API JSON; ``facts`` what happened, recorded as it is generated
- ``derive``     facts -> ``truth.GroundTruth`` (orders, VIPs, consents, campaigns, counts), with
                 ``situations``: the trigger pack's rules judged on the facts (abandoned carts, ...)
- ``generate``   all of the above, pure: config in, ``Simulation`` (events + truth) out
- ``sender``     the only I/O: Segment batches to the collector over HTTP, paced, retried
- ``cli``        the ``webhouse simulate`` command

Use from Python (the demo does)::

    sim = generate(SimulationConfig(seed=42, now=datetime.now(UTC), customers=800))
    sim.truth.write(Path("ground-truth.json"))
    report = await send_events(sim.events, SendPolicy(url, "dev-write-key", rate=600), progress)
"""

from tools.simulate.config import Mix, SimulationConfig
from tools.simulate.generate import Simulation, generate
from tools.simulate.sender import SendPolicy, SendReport, send_events
from tools.simulate.truth import GroundTruth

__all__ = [
    "GroundTruth",
    "Mix",
    "SendPolicy",
    "SendReport",
    "Simulation",
    "SimulationConfig",
    "generate",
    "send_events",
]
