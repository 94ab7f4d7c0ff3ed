"""``webhouse email links``: a campaign's HTML -> per-recipient HTML with signed tracking links.

One recipient: ``--customer-id`` and ``--send-id``, HTML from a file or stdin to stdout.
Many: ``--recipients list.csv`` (columns ``customer_id,send_id``) and ``--out-dir``, one
``<customer_id>.html`` each. Links are signed with the first of
``collector.email.link_secrets`` and point at ``collector.email.public_base_url``
(or ``--base-url``), so the collector that serves them must share both settings.
"""

from __future__ import annotations

import argparse
import csv
import re
import sys
from pathlib import Path

from pipeline.collector.email_links import EmailLink, rewrite_html
from pipeline.errors import SettingsError, ValidationError
from pipeline.settings import Settings

_SAFE_NAME = re.compile(r"[^A-Za-z0-9._-]")


def _links(args: argparse.Namespace, settings: Settings) -> int:
    email = settings.collector.email
    secret = email.link_secrets[0] if email.link_secrets else ""
    if not secret:
        raise SettingsError("collector.email.link_secrets is empty: nothing to sign links with")
    base_url = args.base_url or email.public_base_url
    html = Path(args.input).read_text() if args.input != "-" else sys.stdin.read()
    try:
        if args.recipients is None:
            if not (args.customer_id and args.send_id):
                raise ValidationError("usage", "give --customer-id and --send-id, or --recipients")
            out = rewrite_html(
                html, base_url, EmailLink(args.campaign, args.send_id, args.customer_id), secret
            )
            if args.output == "-":
                sys.stdout.write(out)
            else:
                Path(args.output).write_text(out)
            return 0
        if args.out_dir is None:
            raise ValidationError("usage", "--recipients needs --out-dir")
        out_dir = Path(args.out_dir)
        out_dir.mkdir(parents=True, exist_ok=True)
        written = 0
        with open(args.recipients, newline="") as handle:
            for row in csv.DictReader(handle):
                link = EmailLink(args.campaign, row["send_id"], row["customer_id"])
                name = _SAFE_NAME.sub("_", row["customer_id"]) + ".html"
                (out_dir / name).write_text(rewrite_html(html, base_url, link, secret))
                written += 1
        print(f"wrote {written} personalised copies to {out_dir}", file=sys.stderr)
        return 0
    except (ValidationError, KeyError) as exc:
        print(f"webhouse email links: {exc}", file=sys.stderr)
        return 2


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    email = sub.add_parser("email", help="e-mail tracking helpers")
    email_sub = email.add_subparsers(dest="email_command", required=True, metavar="COMMAND")
    links = email_sub.add_parser(
        "links", help="rewrite a campaign's HTML: signed click-tracking links and the open pixel"
    )
    links.add_argument("--campaign", required=True, help="campaign id (lands in email.campaign_id)")
    links.add_argument("--customer-id", help="the recipient's customer id (the events' user id)")
    links.add_argument("--send-id", help="id of this send to this recipient")
    links.add_argument("--recipients", help="CSV with customer_id,send_id columns: one copy each")
    links.add_argument("--out-dir", help="where --recipients copies go, <customer_id>.html")
    links.add_argument("--input", default="-", help="campaign HTML file (default: stdin)")
    links.add_argument("--output", default="-", help="output HTML file (default: stdout)")
    links.add_argument(
        "--base-url", help="collector URL as readers reach it (collector.email.public_base_url)"
    )
    links.set_defaults(func=_links)
