"""A loopback TCP proxy in front of the test Postgres that a test can cut (a database outage: every open
connection dropped, new ones refused) and restore."""

import asyncio
import contextlib

from sqlalchemy.engine import make_url


class CuttableProxy:
    def __init__(self, upstream_url: str) -> None:
        url = make_url(upstream_url)
        socket_dir = url.query.get("host")
        if socket_dir:  # the embedded server listens on a unix socket only
            self.unix_path: str | None = f"{socket_dir}/.s.PGSQL.{url.port or 5432}"
            self.upstream = None
        else:
            self.unix_path, self.upstream = None, (url.host or "127.0.0.1", url.port or 5432)
        self.port: int | None = None
        self.server: asyncio.base_events.Server | None = None
        self.pipes: set[asyncio.StreamWriter] = set()

    async def start(self) -> None:
        self.server = await asyncio.start_server(self._accept, "127.0.0.1", self.port or 0)
        self.port = self.server.sockets[0].getsockname()[1]

    def url_for(self, database_url: str) -> str:
        """database_url, reached through the proxy."""
        url = make_url(database_url)
        query = {k: v for k, v in url.query.items() if k != "host"}
        return url.set(host="127.0.0.1", port=self.port, query=query).render_as_string(hide_password=False)

    async def cut(self) -> None:
        """Refuse new connections and drop every open one, as when the database server goes away."""
        if self.server is not None:
            self.server.close()
            await self.server.wait_closed()
            self.server = None
        for writer in list(self.pipes):
            writer.transport.abort()
        self.pipes.clear()

    async def restore(self) -> None:
        await self.start()

    async def _accept(self, client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter) -> None:
        if self.unix_path:
            upstream_reader, upstream_writer = await asyncio.open_unix_connection(self.unix_path)
        else:
            upstream_reader, upstream_writer = await asyncio.open_connection(*self.upstream)
        self.pipes |= {client_writer, upstream_writer}
        await asyncio.gather(self._pipe(client_reader, upstream_writer), self._pipe(upstream_reader, client_writer),
                             return_exceptions=True)

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        finally:
            self.pipes.discard(writer)
            with contextlib.suppress(Exception):
                writer.close()
