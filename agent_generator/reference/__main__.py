"""Serve the reference Agent Generator with Daphne.

    python -m agent_generator.reference --host 127.0.0.1 --port 8001 [--job-seconds S]
        [--ttl-seconds S] [--max-wait-seconds S] [--faults SPEC] [--no-long-poll]
        [--expose-stats] [--max-fault-seconds S] [--max-body-bytes N] [--max-nodes N]
        [--max-links N] [--max-json-depth N] [--max-text-chars N] [--max-edits N]
        [--store PATH]

``--store PATH`` keeps the jobs in that SQLite file (created if missing), so a restarted
service goes on with them; without it they live in memory.

Prints ``agent-generator reference listening on http://HOST:PORT`` once the port is
bound, logs every request, and stops on SIGTERM or SIGINT.
"""

from __future__ import annotations

import argparse
import logging
import math
from collections.abc import Sequence

from .app import create_app
from .faults import FaultSpecError, parse_faults
from .settings import ReferenceSettings
from .store import StoreError

logger = logging.getLogger(__name__)


def _seconds(text: str) -> float:
    value = float(text)
    if not (math.isfinite(value) and value >= 0):
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds >= 0")
    return value


def _count(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number >= 1")
    return value


def _port(text: str) -> int:
    value = int(text)
    if not 1 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"{text!r} is not a TCP port")
    return value


def _fault_spec(text: str) -> str:
    try:
        parse_faults(text)
    except FaultSpecError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from exc
    return text


def build_parser() -> argparse.ArgumentParser:
    defaults = ReferenceSettings()
    parser = argparse.ArgumentParser(
        prog="python -m agent_generator.reference",
        description="Serve the reference Agent Generator (rule-based).",
    )
    parser.add_argument("--host", default="127.0.0.1", help="interface (default: %(default)r)")
    parser.add_argument("--port", type=_port, default=8001, help="TCP port (default: %(default)r)")
    parser.add_argument(
        "--job-seconds",
        type=_seconds,
        default=defaults.job_seconds,
        help="how long a job runs (default: %(default)r)",
    )
    parser.add_argument(
        "--ttl-seconds",
        type=_seconds,
        default=defaults.ttl_seconds,
        help="how long an ended job is kept (default: %(default)r)",
    )
    parser.add_argument(
        "--max-wait-seconds",
        type=_seconds,
        default=defaults.max_wait_seconds,
        help="cap for ?wait=N long-polls (default: %(default)r)",
    )
    parser.add_argument(
        "--faults",
        type=_fault_spec,
        default="",
        help="fault spec applied to every job, e.g. 'poll-503=1' (default: %(default)r)",
    )
    parser.add_argument(
        "--no-long-poll",
        dest="long_poll",
        action="store_false",
        help="ignore ?wait=N, like a service without the extension",
    )
    parser.add_argument("--expose-stats", action="store_true", help="add GET /__stats (for tests)")
    parser.add_argument(
        "--max-fault-seconds",
        type=_seconds,
        default=defaults.max_fault_seconds,
        help="most seconds an X-Reference-Fault header may ask for (default: %(default)r)",
    )
    limits = {
        "max_body_bytes": "bytes of a request body",
        "max_nodes": "nodes of an agent",
        "max_links": "links of an agent",
        "max_json_depth": "nesting of a request body",
        "max_text_chars": "characters of a request's text",
        "max_edits": "changes in one request",
    }
    for name, what in limits.items():
        parser.add_argument(
            f"--{name.replace('_', '-')}",
            type=_count,
            default=getattr(defaults, name),
            help=f"most {what} (default: %(default)r)",
        )
    parser.add_argument(
        "--store",
        metavar="PATH",
        default=None,
        help="keep jobs in this SQLite file, across restarts (default: in memory)",
    )
    return parser


def main(argv: Sequence[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    logging.getLogger("daphne").setLevel(logging.WARNING)
    settings = ReferenceSettings(
        job_seconds=args.job_seconds,
        ttl_seconds=args.ttl_seconds,
        max_wait_seconds=args.max_wait_seconds,
        long_poll=args.long_poll,
        faults=args.faults,
        max_fault_seconds=args.max_fault_seconds,
        max_body_bytes=args.max_body_bytes,
        max_nodes=args.max_nodes,
        max_links=args.max_links,
        max_json_depth=args.max_json_depth,
        max_text_chars=args.max_text_chars,
        max_edits=args.max_edits,
        store_path=args.store,
    )
    try:
        app = create_app(settings=settings, expose_stats=args.expose_stats)
    except StoreError as exc:
        raise SystemExit(f"error: --store: {exc}") from None

    # Imported here: daphne.server installs Twisted's asyncio reactor on import.
    from daphne.server import Server

    def ready() -> None:
        print(f"agent-generator reference listening on http://{args.host}:{args.port}", flush=True)

    server = Server(
        application=app,
        endpoints=[f"tcp:port={args.port}:interface={args.host}"],
        signal_handlers=True,
        ready_callable=ready,
    )
    logger.info("starting settings=%s", settings)
    server.run()
    logger.info("stopped")


if __name__ == "__main__":
    main()
