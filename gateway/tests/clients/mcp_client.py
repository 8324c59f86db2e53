"""End-to-end: the official `mcp` Python SDK (2.x) as an MCP client, over Streamable HTTP.

    python mcp_client.py URL [--key KEY] [--steps all|basic] [--mode legacy|auto|2026-07-28] [--timeout S]

Connects to URL (an MCP endpoint, e.g. http://127.0.0.1:PORT/mcp on tests/clients/mcp_server.py, or
the gateway in front of it), sending `Authorization: Bearer KEY` when --key is given, initializes,
and runs the steps below in order against the tools of mcp_server.py. It prints ONE JSON object on
stdout and nothing else (the SDK logs to stderr), and exits 0 whenever it could print it: judging
the answers is the caller's job.

Steps (`--steps basic` runs only the first and `add`):

    tools_first, tools_second   sorted tool names of two tools/list calls (with descriptions_first /
                                descriptions_second: name -> description, null when the list failed)
    add, send_email, fetch_page, notes, weather, admin_reset
                                tools/call -> {"text": the text blocks concatenated, "is_error",
                                "structured": structuredContent or null}
    readme                      resources/read doc://readme -> {"text"}
    greet                       prompts/get greet -> {"text"} (the first message's text)

A step that fails is {"error": {"code", "message", "http_status", "data"}}:
- a JSON-RPC error (from the server, or from a gateway in between) keeps its code, message and data;
- an HTTP error whose body is not a JSON-RPC error has code null and message "HTTP <status>: <body>"
  (the SDK itself would report such an answer with a made-up JSON-RPC code);
- anything else (a transport failure, a result the SDK rejects) has code null and the exception;
- http_status is the status of a failed (>= 400) POST seen during the step, else null.
A failing step does not stop the later ones. When the session itself breaks (connection lost,
session terminated), the next steps run on a new session; when connecting fails, every remaining
step records that error. "sessions" counts the sessions opened, "protocol_version" is the version
the first one negotiated (null if none).

--mode: `legacy` (the default) is the initialize handshake; `auto` is the SDK's own default for
`mcp.Client` (probe `server/discover` at 2026-07-28, fall back to initialize); a version string
adopts that modern version without any handshake.
"""

import argparse
import json
import sys
from contextlib import asynccontextmanager
from typing import Any, AsyncIterator

import anyio
import httpx2
from mcp import Client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.exceptions import MCPError
from mcp_types import CONNECTION_CLOSED, INVALID_REQUEST, TextContent, TextResourceContents
from mcp_types.version import MODERN_PROTOCOL_VERSIONS

ALL_STEPS = [
    "tools_first",
    "tools_second",
    "add",
    "send_email",
    "fetch_page",
    "notes",
    "weather",
    "admin_reset",
    "readme",
    "greet",
]
BASIC_STEPS = ["tools_first", "add"]

# The tool calls: step name -> (tool name, arguments).
TOOL_CALLS: dict[str, tuple[str, dict[str, Any]]] = {
    "add": ("add", {"a": 2, "b": 3}),
    "send_email": ("send_email", {"to": "alice@example.com", "body": "key AKIAQ7LMZ2XABCDEFGHI"}),
    "fetch_page": ("fetch_page", {"url": "http://shop.example"}),
    "notes": ("notes", {"topic": "meeting"}),
    "weather": ("weather", {"city": "Paris"}),
    "admin_reset": ("admin_reset", {}),
}


class HttpErrors:
    """Remembers the failed (>= 400) POSTs of the current step, read by an httpx2 response hook.

    The SDK folds an HTTP error into a JSON-RPC error of its own making (e.g. -32603 "Server
    returned an error response" for a 403 with a non-JSON-RPC body), so the status and body are
    taken here, before the SDK sees the response. Only error bodies are read: they are short and
    not streams, and httpx2 serves a read body again to the SDK from its cache.
    """

    def __init__(self) -> None:
        self.seen: list[tuple[int, str]] = []

    async def hook(self, response: httpx2.Response) -> None:
        if response.request.method == "POST" and response.status_code >= 400:
            await response.aread()
            self.seen.append((response.status_code, response.text))


def jsonrpc_error_in(body: str) -> dict[str, Any] | None:
    """The `error` object of a JSON-RPC error response body, or None if the body is not one."""
    try:
        doc = json.loads(body)
    except ValueError:
        return None
    if isinstance(doc, dict) and doc.get("jsonrpc") == "2.0" and isinstance(doc.get("error"), dict):
        if isinstance(doc["error"].get("code"), int):
            return doc["error"]
    return None


def unwrap(exc: BaseException) -> BaseException:
    """The first leaf of a (nested) exception group: what actually went wrong in a task group."""
    while isinstance(exc, BaseExceptionGroup) and exc.exceptions:
        exc = exc.exceptions[0]
    return exc


def describe(exc: BaseException, http_errors: list[tuple[int, str]]) -> dict[str, Any]:
    """A failed step's {"error": ...} value, from the exception and the HTTP errors seen meanwhile."""
    exc = unwrap(exc)
    error: dict[str, Any] = {"code": None, "message": "", "http_status": None, "data": None}
    if isinstance(exc, MCPError):
        error.update(code=exc.code, message=exc.message, data=exc.data)
    else:
        error["message"] = f"{type(exc).__name__}: {exc}"
    if http_errors:
        status, body = http_errors[-1]
        error["http_status"] = status
        rpc = jsonrpc_error_in(body)
        if rpc is not None:
            # The SDK passes such an error on as it came; take it from the body in any case.
            error.update(code=rpc["code"], message=str(rpc.get("message", "")), data=rpc.get("data"))
        else:
            error.update(code=None, message=f"HTTP {status}: {body[:500]}", data=None)
    return {"error": error}


def session_broken(exc: BaseException) -> bool:
    """Whether a step's failure means the session cannot serve the next step."""
    exc = unwrap(exc)
    if isinstance(exc, MCPError):
        # CONNECTION_CLOSED: the SDK lost the connection or the response stream; "Session
        # terminated": an HTTP 404 for our Mcp-Session-Id (expired, or the server restarted).
        return exc.code == CONNECTION_CLOSED or (exc.code == INVALID_REQUEST and exc.message == "Session terminated")
    return isinstance(exc, (httpx2.TransportError, anyio.ClosedResourceError, anyio.BrokenResourceError))


def text_of(content: list[Any]) -> str:
    """The text blocks of a content list, concatenated."""
    return "".join(block.text for block in content if isinstance(block, TextContent))


class Run:
    """The steps, the sessions they run on, and the JSON object they fill."""

    def __init__(self, url: str, key: str | None, mode: str, timeout: float) -> None:
        self.url = url
        self.key = key
        self.mode = mode
        self.timeout = timeout
        self.http_errors = HttpErrors()
        self.out: dict[str, Any] = {}

    @asynccontextmanager
    async def session(self) -> AsyncIterator[Client]:
        """A connected, initialized client on a fresh HTTP client (so a fresh MCP session)."""
        headers = {"Authorization": f"Bearer {self.key}"} if self.key else None
        http = httpx2.AsyncClient(
            headers=headers,
            # The SDK's own defaults for its HTTP client: 30 s, 300 s to read (streams stay open).
            timeout=httpx2.Timeout(30.0, read=300.0),
            event_hooks={"response": [self.http_errors.hook]},
        )
        async with http:
            transport = streamable_http_client(self.url, http_client=http)
            # cache=None: every list call must reach the wire (the rug-pull test needs the second
            # tools/list answered by the server, not by the SDK's response cache).
            async with Client(transport, mode=self.mode, cache=None, read_timeout_seconds=self.timeout) as client:
                self.out["sessions"] += 1
                if self.out["protocol_version"] is None:
                    self.out["protocol_version"] = client.protocol_version
                yield client

    async def step(self, name: str, client: Client) -> Any:
        """Run one step and return its value; raises what the SDK raised."""
        if name in ("tools_first", "tools_second"):
            listed = await client.list_tools()
            suffix = name.removeprefix("tools_")
            self.out[f"descriptions_{suffix}"] = {tool.name: tool.description for tool in listed.tools}
            return sorted(tool.name for tool in listed.tools)
        if name in TOOL_CALLS:
            tool, arguments = TOOL_CALLS[name]
            result = await client.call_tool(tool, arguments)
            return {
                "text": text_of(result.content),
                "is_error": bool(result.is_error),
                "structured": result.structured_content,
            }
        if name == "readme":
            result = await client.read_resource("doc://readme")
            return {"text": "".join(c.text for c in result.contents if isinstance(c, TextResourceContents))}
        if name == "greet":
            result = await client.get_prompt("greet", {"name": "Bob"})
            first = result.messages[0].content if result.messages else None
            return {"text": first.text if isinstance(first, TextContent) else None}
        raise ValueError(f"unknown step {name}")

    async def run(self, steps: list[str]) -> dict[str, Any]:
        # Every key up front, in step order, so the output always has the same shape.
        for name in steps:
            self.out[name] = None
            if name.startswith("tools_"):
                self.out[f"descriptions_{name.removeprefix('tools_')}"] = None
        self.out.update(sessions=0, protocol_version=None)
        pending = list(steps)
        while pending:
            left = len(pending)
            connected = False
            current: str | None = None  # the step in flight when the session's task group failed
            try:
                async with self.session() as client:
                    connected = True
                    while pending:
                        current = pending[0]
                        self.http_errors.seen.clear()
                        try:
                            self.out[current] = await self.step(current, client)
                        except Exception as exc:
                            self.out[current] = describe(exc, self.http_errors.seen)
                            pending.pop(0)
                            current = None
                            if session_broken(exc):
                                break  # leave this session; the next step gets a new one
                            continue
                        pending.pop(0)
                        current = None
            except Exception as exc:
                error = describe(exc, self.http_errors.seen)
                if current is not None:
                    # The session's task group failed under a step (e.g. the connection dropped
                    # mid-request): that step failed; the next ones get a new session.
                    self.out[current] = error
                    pending.pop(0)
                elif not connected or len(pending) == left:
                    # Connecting (or initializing) failed, or the session died before serving a
                    # single step: no point in trying again.
                    for name in pending:
                        self.out[name] = error
                    pending.clear()
                # else: closing a session that had already failed went wrong too; nothing is lost.
        return self.out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("url", help="the MCP endpoint, e.g. http://127.0.0.1:8080/mcp")
    parser.add_argument("--key", help="sent as `Authorization: Bearer KEY`")
    parser.add_argument("--steps", choices=["all", "basic"], default="all")
    parser.add_argument(
        "--mode",
        default="legacy",
        choices=["legacy", "auto", *MODERN_PROTOCOL_VERSIONS],
        help="legacy: the initialize handshake (default); auto: discover, else initialize; a version: adopt it",
    )
    parser.add_argument("--timeout", type=float, default=30.0, help="seconds to wait for each answer (default 30)")
    args = parser.parse_args()

    steps = ALL_STEPS if args.steps == "all" else BASIC_STEPS
    out = anyio.run(Run(args.url, args.key, args.mode, args.timeout).run, steps)
    print(json.dumps(out))
    sys.stdout.flush()


if __name__ == "__main__":
    main()
