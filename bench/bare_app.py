"""The baseline for read benchmarks: an ASGI app whose endpoint does one asyncpg lookup and returns JSON, with no
framework, validation, authentication or ORM. Served by uvicorn exactly like the service."""

import json
import os

import asyncpg

pool: asyncpg.Pool | None = None
LOOKUP = (
    "SELECT a.tier_code, a.since::text FROM tier_assignment a JOIN customer c ON c.id = a.customer_id "
    "WHERE c.external_id = $1"
)


async def app(scope, receive, send):
    global pool
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                pool = await asyncpg.create_pool(os.environ["BARE_DSN"], min_size=2, max_size=10)
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await pool.close()
                await send({"type": "lifespan.shutdown.complete"})
                return
    external_id = scope["path"].rsplit("/", 1)[-1]
    rows = await pool.fetch(LOOKUP, external_id)
    body = json.dumps([dict(r) for r in rows]).encode()
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"application/json")]})
    await send({"type": "http.response.body", "body": body})
