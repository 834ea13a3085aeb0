"""HTTP to the X API v2 (or a compatible server): the filtered stream, its rules, the usage.

`open_stream` opens ``GET /2/tweets/search/stream`` with the fields and expansions the browser's
card needs and yields the raw body chunks; framing them is `messages.py`'s job. `RulesClient`
lists, validates (``dry_run``), adds and deletes rules; `get_usage` reads the project's usage
(``GET /2/usage/tweets``). All send the app-only Bearer token.

Error handling: a non-2xx answer raises `XHTTPError`, with the reason X gave and, for 429, when
the rate-limit window resets (``x-rate-limit-reset``); a transport failure raises
`XNetworkError`. No message of these exceptions contains the token.

X's error bodies are RFC 7807 problems, as the ``Problem`` schemas of X's OpenAPI spec define
them (https://github.com/xdevplatform/docs, ``openapi.json``): ``type`` (a URI naming the kind,
``https://api.twitter.com/2/problems/...``, or ``api.x.com`` in newer documents, so only its
last segment is compared: `problems.kind_of`), ``title`` and ``detail``; a
``ConnectionExceptionProblem`` adds ``connection_issue`` (``TooManyConnections``; with a 409, the
app has no rules), a ``DuplicateRuleProblem`` ``id`` and ``value``; a 429 past a rate limit is a
``GenericProblem`` (``about:blank``). `XHTTPError` carries the kind and the issue, so that callers
tell problems apart by kind, never by title. A rules change that fails
in part answers 200 with one problem per refused rule in ``errors``, each with its ``value``
(and, for an invalid rule, X's ``details``).
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Iterable, Sequence
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from typing import Any

import httpx
import orjson
import trio

from pats_trio import __version__
from pats_trio.credentials import BearerToken
from pats_trio.upstream.http_stream import RawChunks, describe_transport_error
from pats_trio.upstream.x.problems import kind_of
from pats_trio.upstream.x.rules import Rule

LOGGER = logging.getLogger(__name__)

USER_AGENT = f"pats-trio/{__version__}"
STREAM_PATH = "/2/tweets/search/stream"
RULES_PATH = STREAM_PATH + "/rules"
USAGE_PATH = "/2/usage/tweets"
STREAM_PARAMS: tuple[tuple[str, str], ...] = (
    ("tweet.fields", "created_at,entities,author_id,referenced_tweets,lang,note_tweet"),
    ("expansions", "author_id,referenced_tweets.id,referenced_tweets.id.author_id"),
    ("user.fields", "name,username,profile_image_url,verified"),
)
"""What the card shows: the text and its entities (a long post's whole text is its
``note_tweet``), the author, and the retweeted or quoted post with its author."""
RULES_PAGE_SIZE = 1000
MAX_RULE_PAGES = 50
"""Enough for Enterprise's 25,000 rules and more, yet bounded against a server that pages on."""
STREAM_TIMEOUT = httpx.Timeout(connect=10.0, read=None, write=10.0, pool=10.0)
"""No read timeout: the lifecycle's stall watch decides when a quiet stream is dead."""
REQUEST_TIMEOUT = httpx.Timeout(10.0)
MAX_REASON_BYTES = 4096
MAX_REASON_CHARS = 300
REASON_READ_SECONDS = 5.0


class XError(Exception):
    """The X API could not be reached or refused a request."""


class XHTTPError(XError):
    """A non-2xx answer: its status, the reason X gave, and for 429 when to try again."""

    def __init__(
        self,
        status_code: int,
        reason: str,
        *,
        reset_at: float | None = None,
        kind: str = "",
        issue: str = "",
    ) -> None:
        super().__init__(f"HTTP {status_code}: {reason}")
        self.status_code = status_code
        self.reason = reason
        self.reset_at = reset_at
        """``x-rate-limit-reset``: seconds since the epoch when the window resets, if given."""
        self.kind = kind
        """The problem's kind (`problems.kind_of`: ``usage-capped``, ``streaming-connection``,
        ...), or empty."""
        self.issue = issue
        """A ``ConnectionExceptionProblem``'s ``connection_issue`` (``TooManyConnections``)."""


class XNetworkError(XError):
    """Connecting, sending or reading failed below HTTP."""


@dataclass(frozen=True, slots=True)
class RuleRejection:
    """A rule value X would not add, and why."""

    value: str
    title: str
    detail: str
    type: str = ""
    """The problem's ``type`` URI (``.../problems/duplicate-rules``, ``.../invalid-rules``,
    ``.../rule-cap``)."""

    def kind(self) -> str:
        """``duplicate-rules``, ``invalid-rules``, ``rule-cap``: by `type`, else `title`
        (`problems.kind_of`)."""
        return kind_of({"type": self.type, "title": self.title})


@dataclass(frozen=True, slots=True)
class RulesAnswer:
    """What a rules request did: the rules created, the ones refused, and the ids deleted."""

    created: tuple[Rule, ...] = ()
    rejected: tuple[RuleRejection, ...] = ()
    deleted: int = 0


def make_http_client() -> httpx.AsyncClient:
    """An HTTP/1.1 client for one long-lived stream and the occasional rules request."""
    return httpx.AsyncClient(
        http1=True,
        http2=False,
        timeout=STREAM_TIMEOUT,
        limits=httpx.Limits(max_connections=4, max_keepalive_connections=0),
        follow_redirects=False,
        headers={"User-Agent": USER_AGENT},
    )


def _headers(token: BearerToken) -> dict[str, str]:
    return {"Authorization": f"Bearer {token.value}", "User-Agent": USER_AGENT}


def _reset_at(response: httpx.Response) -> float | None:
    raw = response.headers.get("x-rate-limit-reset")
    try:
        return float(raw) if raw is not None else None
    except ValueError:
        return None


@dataclass(frozen=True, slots=True)
class ProblemSummary:
    """What an error body says: a short reason, and the first problem's kind and issue."""

    reason: str
    kind: str = ""
    issue: str = ""


def summarize_problem(payload: Any) -> ProblemSummary:
    """The reason, kind and ``connection_issue`` of an X error body (a v2 problem, an
    ``errors`` list, or v1.1's ``{"errors":[{"message"}]}``)."""
    problems: list[Any] = []
    if isinstance(payload, dict):
        errors = payload.get("errors")
        problems = errors if isinstance(errors, list) and errors else [payload]
    texts: list[str] = []
    kind = issue = ""
    for problem in problems:
        if not isinstance(problem, dict):
            continue
        if not texts:
            kind = kind_of(problem)
            issue = str(problem.get("connection_issue") or "")
        for key in ("detail", "message", "title"):
            if isinstance(problem.get(key), str):
                texts.append(problem[key])
                break
    return ProblemSummary("; ".join(texts), kind, issue)


async def _http_error(response: httpx.Response, token: BearerToken) -> XHTTPError:
    data = bytearray()
    with trio.move_on_after(REASON_READ_SECONDS):
        try:
            async for piece in response.aiter_raw():
                data += piece
                if len(data) >= MAX_REASON_BYTES:
                    break
        except httpx.TransportError:
            pass
    text = bytes(data[:MAX_REASON_BYTES]).decode("utf-8", errors="replace")
    try:
        summary = summarize_problem(orjson.loads(text))
    except orjson.JSONDecodeError:
        summary = ProblemSummary(" ".join(text.split()))
    reason = token.redact(summary.reason or response.reason_phrase or "no reason given")
    return XHTTPError(
        response.status_code,
        reason[:MAX_REASON_CHARS],
        reset_at=_reset_at(response),
        kind=summary.kind,
        issue=summary.issue,
    )


@asynccontextmanager
async def open_stream(
    http: httpx.AsyncClient, base_url: str, token: BearerToken
) -> AsyncIterator[AsyncIterator[bytes]]:
    """Open the filtered stream and yield its raw body chunks once X answered 200.

    Resource handling: the response, and with it the connection, is closed when the block exits.
    Error handling: `XHTTPError` for a non-200 answer, `XNetworkError` for a transport failure
    at open time or from the iterator; the iterator stops cleanly when the body ends.
    """
    url = base_url.rstrip("/") + STREAM_PATH
    async with AsyncExitStack() as stack:
        try:
            response = await stack.enter_async_context(
                http.stream(
                    "GET",
                    url,
                    params=STREAM_PARAMS,
                    headers={**_headers(token), "Accept-Encoding": "identity"},
                    timeout=STREAM_TIMEOUT,
                )
            )
            if response.status_code != 200:
                raise await _http_error(response, token)
        except httpx.TransportError as exc:
            raise XNetworkError(token.redact(describe_transport_error(exc))) from exc
        yield RawChunks(response, lambda text: XNetworkError(token.redact(text)))


async def get_usage(
    http: httpx.AsyncClient, base_url: str, token: BearerToken, params: dict[str, str]
) -> Any:
    """``GET /2/usage/tweets`` with `params`: X's answer, parsed from JSON.

    Error handling: `XHTTPError` for a non-2xx answer (with the reset of a 429) or one that is
    not JSON, `XNetworkError` for a transport failure; neither message holds the token.
    """
    return await _request_json(http, "GET", base_url.rstrip("/") + USAGE_PATH, token, params=params)


async def _request_json(
    http: httpx.AsyncClient,
    method: str,
    url: str,
    token: BearerToken,
    *,
    params: dict[str, str] | None = None,
    body: Any = None,
) -> Any:
    """One request to X (`body`, if any, sent as JSON) and its answer, parsed from JSON.

    Error handling: `XHTTPError` for a non-2xx answer or one that is not JSON, `XNetworkError`
    for a transport failure; neither message holds the token.
    """
    headers = _headers(token)
    content = None
    if body is not None:
        headers["Content-Type"] = "application/json"
        content = orjson.dumps(body)
    try:
        async with http.stream(
            method, url, params=params, content=content, headers=headers, timeout=REQUEST_TIMEOUT
        ) as response:
            if not 200 <= response.status_code < 300:
                raise await _http_error(response, token)
            answer = await response.aread()
    except httpx.TransportError as exc:
        raise XNetworkError(token.redact(describe_transport_error(exc))) from exc
    try:
        return orjson.loads(answer)
    except orjson.JSONDecodeError as exc:
        raise XHTTPError(response.status_code, "the answer is not JSON") from exc


def _rule(item: Any) -> Rule | None:
    if isinstance(item, dict) and isinstance(item.get("id"), str):
        tag = item.get("tag")
        return Rule(item["id"], str(item.get("value", "")), tag if isinstance(tag, str) else None)
    return None


class RulesClient:
    """The rules endpoints: ``GET`` to list, ``POST`` to add or delete (``dry_run`` to check).

    `requests` counts every request sent, for the metrics and the tests of batching.
    """

    def __init__(self, http: httpx.AsyncClient, base_url: str, token: BearerToken) -> None:
        self._http = http
        self._url = base_url.rstrip("/") + RULES_PATH
        self._token = token
        self.requests = 0
        self.changes = 0
        """POSTs (adds, deletes and dry runs): what X's rule-change rate limit counts."""

    async def _send(
        self, method: str, *, body: Any = None, params: dict[str, str] | None = None
    ) -> Any:
        self.requests += 1
        if body is not None:
            self.changes += 1
        return await _request_json(
            self._http, method, self._url, self._token, params=params, body=body
        )

    async def list(self) -> list[Rule]:
        """Every rule the app has, page by page (`MAX_RULE_PAGES` at most)."""
        rules: list[Rule] = []
        params = {"max_results": str(RULES_PAGE_SIZE)}
        for _ in range(MAX_RULE_PAGES):
            payload = await self._send("GET", params=params)
            if not isinstance(payload, dict):
                break
            found = (_rule(item) for item in payload.get("data") or ())
            rules.extend(rule for rule in found if rule is not None)
            token = (payload.get("meta") or {}).get("next_token")
            if not isinstance(token, str) or not token:
                break
            params = {**params, "pagination_token": token}
        return rules

    async def add(self, rules: Sequence[tuple[str, str]], *, dry_run: bool = False) -> RulesAnswer:
        """Add `(value, tag)` pairs; with `dry_run`, only check them."""
        body = {"add": [{"value": value, "tag": tag} for value, tag in rules]}
        params = {"dry_run": "true"} if dry_run else {}
        return _answer(await self._send("POST", body=body, params=params))

    async def delete(self, ids: Iterable[str]) -> RulesAnswer:
        """Delete rules by id."""
        body = {"delete": {"ids": list(ids)}}
        return _answer(await self._send("POST", body=body))


def _answer(payload: Any) -> RulesAnswer:
    if not isinstance(payload, dict):
        return RulesAnswer()
    created = tuple(rule for rule in map(_rule, payload.get("data") or ()) if rule is not None)
    rejected = []
    for error in payload.get("errors") or ():
        if not isinstance(error, dict) or not isinstance(error.get("value"), str):
            continue
        details = error.get("details")
        detail = (
            "; ".join(str(d) for d in details)
            if isinstance(details, list)
            else str(error.get("detail") or "")
        )
        rejected.append(
            RuleRejection(
                error["value"],
                str(error.get("title") or ""),
                detail,
                str(error.get("type") or ""),
            )
        )
    summary = (payload.get("meta") or {}).get("summary") or {}
    deleted = summary.get("deleted", 0) if isinstance(summary, dict) else 0
    return RulesAnswer(created, tuple(rejected), deleted if isinstance(deleted, int) else 0)
