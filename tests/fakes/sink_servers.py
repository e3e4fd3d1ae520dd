"""Local stand-ins for where alerts go: a webhook receiver, the Telegram Bot API, a Discord
and a Slack incoming webhook. Each records what it received and answers as the real
service does (a scripted answer per request, `ok` when the script is empty):

- Telegram `POST /bot{token}/sendMessage`: `{"ok": true, "result": {...}}`; a wrong token
  401 `{"ok": false, "error_code": 401, "description": "Unauthorized"}`; an unknown chat 400
  `"Bad Request: chat not found"`; a flood limit 429 with `"parameters": {"retry_after": N}`.
- Discord `POST /api/webhooks/{id}/{token}`: 204 with no body; a rate limit 429 with
  `{"message": "You are being rate limited.", "retry_after": N, "global": false}` and
  `Retry-After`; an unknown webhook 404 `{"message": "Unknown Webhook", "code": 10015}`.
- Slack `POST /services/T/B/X`: 200 `ok` (text/plain); 429 `Retry-After` with no JSON;
  an unknown hook 404 `no_service`; 500 `rollup_error`.
- Webhook `POST /hook`: 200 `{"received": true}`, or whatever the script says.

Script entries: "ok", "429" (with `retry_after` seconds), "500", "503", "404", "hang"
(never answers: the client's timeout must end the attempt).
"""

from __future__ import annotations

import asyncio
import json
import time
from collections import deque
from typing import Any, NamedTuple

from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from tests.fakes.loopback import StarletteServer, Waiting


class Received(NamedTuple):
    path: str
    headers: dict[str, str]
    body: bytes
    at: float  # time.time() when it arrived

    def json(self) -> Any:
        return json.loads(self.body)


class FakeSink(StarletteServer, Waiting):
    name = "sink"

    def __init__(self, retry_after: float = 1.0) -> None:
        StarletteServer.__init__(self)
        Waiting.__init__(self)
        self.script: deque[str] = deque()
        self.retry_after = retry_after
        self.received: list[Received] = []
        self._hung = asyncio.Event()

    def before_stop(self) -> None:
        self._hung.set()

    async def _take(self, request: Request) -> tuple[str, Received]:
        body = await request.body()
        got = Received(request.url.path, dict(request.headers), body, time.time())
        self.received.append(got)
        self.changed()
        answer = self.script.popleft() if self.script else "ok"
        if answer == "hang":
            await self._hung.wait()  # until the server stops: then a 503, if anyone listens
            answer = "503"
        return answer, got


class FakeWebhook(FakeSink):
    name = "webhook"

    def routes(self) -> list[Route]:
        return [Route("/hook", self.hook, methods=["POST"])]

    @property
    def hook_url(self) -> str:
        return f"{self.url}/hook"

    async def hook(self, request: Request) -> Response:
        answer, _ = await self._take(request)
        if answer == "ok":
            return JSONResponse({"received": True})
        headers = {"Retry-After": f"{self.retry_after:g}"} if answer == "429" else {}
        return PlainTextResponse("no", status_code=int(answer), headers=headers)


class FakeTelegram(FakeSink):
    name = "Telegram"

    def __init__(self, token: str, chat_id: str, retry_after: float = 1.0) -> None:
        super().__init__(retry_after)
        self.token = token
        self.chat_id = chat_id
        self.sent: list[dict[str, Any]] = []

    def routes(self) -> list[Route]:
        return [Route("/bot{token}/sendMessage", self.send_message, methods=["POST"])]

    async def send_message(self, request: Request) -> Response:
        answer, got = await self._take(request)
        if request.path_params["token"] != self.token:
            return _telegram_error(401, "Unauthorized")
        if answer == "429":
            return _telegram_error(
                429,
                f"Too Many Requests: retry after {self.retry_after:g}",
                {"retry_after": self.retry_after},
            )
        if answer != "ok":
            return _telegram_error(int(answer), "Internal Server Error")
        message = got.json()
        if str(message.get("chat_id")) != self.chat_id:
            return _telegram_error(400, "Bad Request: chat not found")
        self.sent.append(message)
        result = {
            "message_id": len(self.sent),
            "chat": {"id": int(self.chat_id), "type": "private"},
            "date": int(time.time()),
            "text": message["text"],
        }
        return JSONResponse({"ok": True, "result": result})


def _telegram_error(status: int, description: str, parameters: Any = None) -> Response:
    body: dict[str, Any] = {"ok": False, "error_code": status, "description": description}
    if parameters is not None:
        body["parameters"] = parameters
    return JSONResponse(body, status_code=status)


class FakeDiscord(FakeSink):
    name = "Discord"
    path = "/api/webhooks/1234/discord-secret-token"

    def routes(self) -> list[Route]:
        return [Route("/api/webhooks/{id}/{token}", self.execute, methods=["POST"])]

    @property
    def hook_url(self) -> str:
        return f"{self.url}{self.path}"

    async def execute(self, request: Request) -> Response:
        answer, got = await self._take(request)
        if got.path != self.path or answer == "404":
            return JSONResponse({"message": "Unknown Webhook", "code": 10015}, status_code=404)
        if answer == "429":
            return JSONResponse(
                {
                    "message": "You are being rate limited.",
                    "retry_after": self.retry_after,
                    "global": False,
                },
                status_code=429,
                headers={"Retry-After": str(max(1, round(self.retry_after)))},
            )
        if answer != "ok":
            return JSONResponse({"message": "Internal Server Error"}, status_code=int(answer))
        return Response(status_code=204)


class FakeSlack(FakeSink):
    name = "Slack"
    path = "/services/T000/B000/slack-secret"

    def routes(self) -> list[Route]:
        return [Route("/services/{a}/{b}/{c}", self.post, methods=["POST"])]

    @property
    def hook_url(self) -> str:
        return f"{self.url}{self.path}"

    async def post(self, request: Request) -> Response:
        answer, got = await self._take(request)
        if got.path != self.path or answer == "404":
            return PlainTextResponse("no_service", status_code=404)
        if answer == "429":
            headers = {"Retry-After": f"{max(1, round(self.retry_after))}"}
            return PlainTextResponse("rate_limited", status_code=429, headers=headers)
        if answer != "ok":
            return PlainTextResponse("rollup_error", status_code=int(answer))
        if not got.json().get("text"):
            return PlainTextResponse("invalid_payload", status_code=400)
        return PlainTextResponse("ok")
