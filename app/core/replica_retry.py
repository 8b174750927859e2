"""A routed read whose read replica failed under it (app.core.db.get_read_session raised ReplicaUnavailable before
any of the response was sent) is run again, once, on the primary: losing a replica costs a read some latency,
never an error. Only GET and HEAD: they change nothing, so running one twice is safe."""

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.core.db import PRIMARY_ONLY, ReplicaUnavailable


class ReplicaRetry:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] not in ("GET", "HEAD") or scope["app"].state.replicas is None:
            await self.app(scope, receive, send)
            return
        started = False

        async def tracking_send(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, receive, tracking_send)
        except ReplicaUnavailable:
            if started:
                raise
            scope.setdefault("state", {})[PRIMARY_ONLY] = True
            await self.app(scope, _no_body, send)


async def _no_body() -> Message:
    return {"type": "http.request", "body": b"", "more_body": False}
