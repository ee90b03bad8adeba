"""``python -m salesforce_sim [--host H] [--port 8090] [--config state.yaml] [--tls]``."""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

from aiohttp import web

from shared.logging import configure_logging, get_logger
from shared.settings import describe_validation_error

from .app import create_app
from .config import build_state
from .settings import SimSettings


def main(argv: list[str] | None = None) -> int:
    try:
        settings = SimSettings()  # type: ignore[call-arg]  # values come from the environment
    except Exception as exc:
        print(describe_validation_error(exc), file=sys.stderr)
        return 2
    parser = argparse.ArgumentParser(prog="salesforce_sim", description="A simulated Salesforce org.")
    parser.add_argument("--host", default=settings.sim_host)
    parser.add_argument("--port", type=int, default=settings.sim_port)
    parser.add_argument("--config", default=settings.sim_config, help="JSON/YAML state file")
    parser.add_argument("--tls", action="store_true", help="serve https with a fresh self-signed certificate")
    parser.add_argument("--tls-cert-out", help="write the self-signed certificate (PEM) here, to trust it")
    args = parser.parse_args(argv)
    configure_logging(settings.service_name, settings.log_level, json=settings.log_json)
    log = get_logger("salesforce_sim")
    try:
        state = build_state(args.config)
    except Exception as exc:
        print(f"invalid simulator state file: {exc}", file=sys.stderr)
        return 2
    ssl_context = None
    with tempfile.TemporaryDirectory(prefix="sim-tls-") as tmp:
        if args.tls:
            from .tls import server_context

            ssl_context, cert = server_context(Path(tmp), (args.host, "localhost", "127.0.0.1"))
            if args.tls_cert_out:
                Path(args.tls_cert_out).write_bytes(cert.read_bytes())
        log.info("simulator_starting", host=args.host, port=args.port, tls=args.tls, orgs=sorted(state.orgs))
        web.run_app(
            create_app(state),
            host=args.host,
            port=args.port,
            ssl_context=ssl_context,
            print=None,
            access_log=None,
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
