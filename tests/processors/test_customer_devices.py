"""The worker's customer -> devices index (``processors.identity.CustomerDevices``) against a
plain model: any sequence of links, expiries and erasures leaves the same customers and devices.
A customer left without a device is not kept (the index stays the size of what it knows)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from hypothesis import given
from hypothesis import strategies as st

from processors.identity import CustomerDevices

T0 = datetime(2026, 12, 1, tzinfo=UTC)
CUSTOMERS = [f"c-{n}" for n in range(4)]
DEVICES = [f"d-{n}" for n in range(5)]

link = st.tuples(st.just("link"), st.sampled_from(CUSTOMERS), st.sampled_from(DEVICES), st.integers(0, 9))
expire = st.tuples(st.just("expire"), st.sampled_from(DEVICES))
erase = st.tuples(st.just("erase"), st.sets(st.sampled_from(CUSTOMERS + DEVICES), max_size=3))


def _model_apply(model: dict[str, dict[str, datetime]], op: tuple) -> None:
    if op[0] == "link":
        _, customer, device, minutes = op
        devices = model.setdefault(customer, {})
        seen = T0 + timedelta(minutes=minutes)
        devices[device] = max(seen, devices.get(device, seen))
    elif op[0] == "expire":
        for devices in model.values():
            devices.pop(op[1], None)
    else:
        for customer in op[1] & model.keys():
            del model[customer]
        for devices in model.values():
            for device in op[1] & devices.keys():
                del devices[device]
    for customer in [c for c, devices in model.items() if not devices]:
        del model[customer]


@given(st.lists(st.one_of(link, expire, erase), max_size=40))
def test_the_index_holds_what_a_plain_model_holds(ops: list[tuple]) -> None:
    index = CustomerDevices()
    model: dict[str, dict[str, datetime]] = {}
    for op in ops:
        if op[0] == "link":
            index.add_seen(op[1], op[2], T0 + timedelta(minutes=op[3]))
        elif op[0] == "expire":
            index.forget_device(op[1])
        else:
            index.drop(set(op[1]))
        _model_apply(model, op)
        assert len(index) == len(model)
        for customer in CUSTOMERS:
            assert sorted(index.devices(customer)) == sorted(model.get(customer, {}))
            since = T0 + timedelta(minutes=4)
            expected = sum(1 for d, seen in model.get(customer, {}).items() if seen > since and d != "d-0")
            assert index.recent(customer, since, exclude="d-0") == expected


def test_a_device_that_expires_leaves_its_customers_and_no_empty_one() -> None:
    index = CustomerDevices()
    index.add_seen("ada", "d-1", T0)
    index.add_seen("ada", "d-2", T0)
    index.add_seen("bob", "d-1", T0)
    index.forget_device("d-1")
    assert list(index.devices("ada")) == ["d-2"] and list(index.devices("bob")) == []
    assert len(index) == 1  # bob, left with no device, is not kept
