"""What a worker's device expiry costs in its customer index, by the number of customers known.

``WorkerCore.expire`` drops each device idle past ``worker.device_ttl_s`` from the partition's
customer -> devices index (``processors.identity.CustomerDevices.forget_device``). In a replay
that jumps ahead in event time, a whole cohort of devices expires in one scan. This bench links
``--customers`` customers to one device each, then expires ``--expire`` of those devices, and
prints the CPU seconds of the expiry and per device.

    .venv/bin/python bench/device_expiry.py --customers 40000 --expire 20000

To compare two versions, run it in each checkout, alternated.
"""

from __future__ import annotations

import argparse
import json
import time
from datetime import UTC, datetime

from processors.identity import CustomerDevices


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--customers", type=int, default=40_000)
    parser.add_argument("--expire", type=int, default=20_000)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    index = CustomerDevices()
    seen = datetime(2026, 1, 1, tzinfo=UTC)
    for n in range(args.customers):
        index.add_seen(f"customer-{n}", f"device-{n}", seen)
    started = time.process_time()
    for n in range(args.expire):
        index.forget_device(f"device-{n}")
    took = time.process_time() - started
    report = {"customers": args.customers, "expired": args.expire, "cpu_s": round(took, 3),
              "us_per_device": round(took / max(args.expire, 1) * 1e6, 2)}  # fmt: skip
    if args.json:
        print(json.dumps(report))
    else:
        print(f"{args.expire:,} devices expired among {args.customers:,} customers: "
              f"{took:.3f} CPU-s, {report['us_per_device']} us per device")  # fmt: skip


if __name__ == "__main__":
    main()
