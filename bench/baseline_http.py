"""The token read path's baseline: a bare aiohttp handler doing the same find-by-id, run as its own process.

``GET /v1/connections/{id}/token`` reads the connection document by ``_id`` from the Manager's database
with the same driver and client options, and returns the stored (still encrypted) token field as JSON:
no API key, no decryption, no middlewares, no pydantic. What is left is the floor any implementation of
this endpoint pays on this machine: HTTP parsing, one MongoDB round trip, JSON out.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from aiohttp import web
from pymongo import AsyncMongoClient

CLIENT = web.AppKey("client", AsyncMongoClient)
COLLECTION = web.AppKey("collection", object)


def build(mongodb_url: str, database: str) -> web.Application:
    app = web.Application()

    async def resources(app: web.Application) -> Any:
        client: AsyncMongoClient[Any] = AsyncMongoClient(
            mongodb_url, tz_aware=True, serverSelectionTimeoutMS=5000, connectTimeoutMS=5000, timeoutMS=5000
        )
        app[CLIENT] = client
        app[COLLECTION] = client[database]["connections"]
        yield
        await client.close()

    async def token(request: web.Request) -> web.Response:
        doc = await request.app[COLLECTION].find_one({"_id": request.match_info["id"]})  # type: ignore[attr-defined]
        if doc is None or not doc.get("token"):
            return web.json_response({"error": "not found"}, status=404)
        return web.json_response(
            {
                "access_token": doc["token"]["ciphertext"],
                "instance_url": doc["instance_url"],
                "token_type": "Bearer",
                "issued_at": doc["token"]["issued_at"].isoformat(),
            }
        )

    async def ready(request: web.Request) -> web.Response:
        await request.app[CLIENT].admin.command("ping")
        return web.Response(text="ok")

    app.cleanup_ctx.append(resources)
    app.router.add_get("/v1/connections/{id}/token", token)
    app.router.add_get("/readyz", ready)
    return app


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.baseline_http")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--mongodb-url", required=True)
    parser.add_argument("--database", default="sfconnect_manager")
    args = parser.parse_args(argv)
    web.run_app(
        build(args.mongodb_url, args.database), host="127.0.0.1", port=args.port, print=None, access_log=None
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
