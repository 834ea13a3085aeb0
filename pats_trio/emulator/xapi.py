"""X API v2's filtered stream, its rules and its usage endpoints as an ASGI app, on loopback.

Routes, as ``api.x.com`` has them, with pay-per-use's limits:

* ``GET /2/tweets/search/stream``: one connection per app (a second gets 429 with X's
  ``ConnectionException`` / ``TooManyConnections`` problem), `connects_per_window` connects a
  15-minute window (then 429 with ``x-rate-limit-*`` headers). NDJSON posts (``data``,
  ``includes.users``, ``includes.tweets``, ``matching_rules``), a ``\\r\\n`` keep-alive every
  `keepalive_interval` seconds. Once the month's reads reach `project_cap`, a connect gets 429
  with X's ``UsageCapExceeded`` problem; while the app has no rules, 409 (`NO_RULES`). What X
  does to an open stream whose rules are all deleted is not documented: here it stays open.
* ``GET /2/tweets/search/stream/rules``: the app's rules.
* ``POST /2/tweets/search/stream/rules``: ``{"add": [...]}`` or ``{"delete": {"ids": [...]}}``,
  ``?dry_run=true`` to check only; `max_rules` rules of `max_rule_chars` characters at most;
  invalid rules (`xrules.parse_rule`, or holding a word of `reject_terms`) and duplicates answer
  X's ``errors`` entries; `rule_changes_per_window` requests a window, then 429.
* ``GET /2/usage/tweets``: the project's posts read, from the posts this emulator delivered per
  UTC day (``usage``, which a test may set with `set_usage`): ``days`` (1 to 90, 7 by default),
  ``usage.fields`` (``project_usage``, ``project_cap``, ``cap_reset_day``, ``project_id`` by
  default; ``daily_project_usage`` and ``daily_client_app_usage`` on request), counts written as
  strings of digits as X does, `usage_checks_per_window` requests a window, then 429. Tests make
  it fail with `fail_usage`; with `control` set (``pats-trio emulate --x --control``), a test
  in another process does it through `xapi_control`.

A rule change takes effect on the open stream at once, without reconnecting it: that is the
point of v2. Posts come from `corpus.TweetFactory`, written as v2 (`xposts.to_v2`): `rate` a
second from everyone, delivered when they match a rule, and `filter_rate` a second written for
one of the rules. A post matches a rule as X matches it (`xrules`, on `xposts.view_of`: the
whole text, the retweeted and quoted posts, the links' expanded and unwound URLs), whatever
the connection asked for; each connection gets the ``tweet.fields`` it asked for
(`xposts.select_fields`: a long post's ``note_tweet`` only when asked).

The error bodies follow X's OpenAPI spec (the ``Problem`` schemas in the spec X publishes,
``openapi.json`` in the xdevplatform/docs repository): RFC 7807 problems with ``type`` and
``title``; ``DuplicateRuleProblem`` adds ``id`` and ``value``; ``ConnectionExceptionProblem``
(``streaming-connection``) adds ``connection_issue``; ``OperationalDisconnectProblem`` adds
``disconnect_type``; an invalid rule is ``UnprocessableEntity`` with its ``value`` and
``details``, as X answers one.

Without a `token` any Bearer token is accepted (the demo); with one, others get 401. Tests drive
faults with `fail_next`, `inject_error`, `drop_streams` and `stall_streams`, and observe
`connections` (a `StreamRecord` per request to the stream), `rule_requests` and `rules`.
"""

from __future__ import annotations

import calendar
import logging
import random
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import Any, cast
from urllib.parse import parse_qs

import orjson
import trio
from hypercorn.trio import serve

from pats_trio.emulator.asgi import (
    BodyTooLargeError,
    Receive,
    Send,
    cancel_on_disconnect,
    hypercorn_config,
    lifespan,
    read_body,
    respond,
)
from pats_trio.emulator.control import CONTROL_PREFIX
from pats_trio.emulator.corpus import TweetFactory
from pats_trio.emulator.xposts import PostView, select_fields, to_v2, view_of
from pats_trio.emulator.xrules import Expr, RuleSyntaxError, clauses, parse_rule

LOGGER = logging.getLogger(__name__)
HYPERCORN_LOGGER = logging.getLogger(__name__ + ".hypercorn")

STREAM_PATH = "/2/tweets/search/stream"
RULES_PATH = STREAM_PATH + "/rules"
USAGE_PATH = "/2/usage/tweets"
USAGE_FIELDS = frozenset(
    {
        "cap_reset_day",
        "daily_client_app_usage",
        "daily_project_usage",
        "project_cap",
        "project_id",
        "project_usage",
    }
)
DEFAULT_USAGE_FIELDS = ("cap_reset_day", "project_cap", "project_id", "project_usage")
PROJECT_ID = "1369785403853424"
CLIENT_APP_ID = "29340871"
DAY_SECONDS = 86_400
WINDOW_SECONDS = 900.0
STREAM_BUFFER = 1000
MAX_BODY_BYTES = 256 * 1024
MAX_LAG = 1.0
SHUTDOWN_GRACE = 1.0
JSON = b"application/json"
PROBLEM_JSON = b"application/problem+json"
KEEPALIVE = b"\r\n"
UNAUTHORIZED = {
    "title": "Unauthorized",
    "type": "about:blank",
    "status": 401,
    "detail": "Unauthorized",
}
TOO_MANY_REQUESTS = {
    "title": "Too Many Requests",
    "detail": "Too Many Requests",
    "type": "about:blank",
    "status": 429,
}
TOO_MANY_CONNECTIONS = {
    "title": "ConnectionException",
    "detail": "This stream is currently at the maximum allowed connection limit.",
    "connection_issue": "TooManyConnections",
    "type": "https://api.twitter.com/2/problems/streaming-connection",
}
USAGE_CAPPED = {
    "title": "UsageCapExceeded",
    "detail": "Usage cap exceeded: Monthly product cap",
    "type": "https://api.twitter.com/2/problems/usage-capped",
    "period": "Monthly",
    "scope": "Product",
}
NO_RULES = {
    "title": "ConnectionException",
    "detail": "This stream has no rules. Add at least one rule before connecting.",
    "connection_issue": "RuleConfigurationIssue",
    "type": "https://api.twitter.com/2/problems/streaming-connection",
}
"""X's pages say a connect to a filtered stream without rules gets "409 Connection Exception"
(now "409 Conflict: Stream has no rules") and give no body; this is the spec's
``ConnectionExceptionProblem``, with the ``connection_issue`` of its enum that names the rules.
The ``detail`` is ours."""
OPERATIONAL_DISCONNECT = {
    "errors": [
        {
            "title": "operational-disconnect",
            "disconnect_type": "UpstreamOperationalDisconnect",
            "detail": "This stream has been disconnected upstream for operational reasons.",
            "type": "https://api.twitter.com/2/problems/operational-disconnect",
        }
    ]
}


@dataclass
class StreamRecord:
    """One request to the stream endpoint, kept after it closes for tests to inspect."""

    id: int
    opened_at: float
    query: str
    closed_at: float | None = None
    authorization: str | None = field(default=None, repr=False)
    status: int = 200
    sent: int = 0


@dataclass
class RuleRequest:
    """One request to the rules endpoint."""

    method: str
    dry_run: bool
    status: int
    added: int = 0
    deleted: int = 0
    invalid: int = 0


@dataclass
class StoredRule:
    id: str
    value: str
    tag: str | None
    expr: Expr

    def to_json(self) -> dict[str, Any]:
        shown: dict[str, Any] = {"id": self.id, "value": self.value}
        if self.tag is not None:
            shown["tag"] = self.tag
        return shown


@dataclass
class Window:
    """A fixed rate-limit window, as X counts one: `limit` requests until `reset_at`."""

    limit: int
    seconds: float = WINDOW_SECONDS
    started: float | None = None
    used: int = 0

    def take(self, now: float) -> bool:
        if self.started is None or now >= self.started + self.seconds:
            self.started, self.used = now, 0
        if self.used >= self.limit:
            return False
        self.used += 1
        return True

    def headers(self, wall_now: float, now: float) -> list[tuple[bytes, bytes]]:
        reset = wall_now + ((self.started or now) + self.seconds - now)
        return [
            (b"x-rate-limit-limit", str(self.limit).encode()),
            (b"x-rate-limit-remaining", str(max(self.limit - self.used, 0)).encode()),
            (b"x-rate-limit-reset", str(int(reset + 0.999)).encode()),
        ]


@dataclass(eq=False)
class _Stream:
    record: StreamRecord
    send_channel: trio.MemorySendChannel[bytes]
    receive_channel: trio.MemoryReceiveChannel[bytes]
    fields: frozenset[str] = frozenset()
    """The ``tweet.fields`` the connection asked for."""
    scope: trio.CancelScope = field(default_factory=trio.CancelScope)
    stalled: bool = False


class XEmulator:
    """The filtered stream's state: rules, open streams, posts, limits and injected faults.
    The instance is the ASGI app; `serve_xapi` serves it and runs `generate`."""

    def __init__(
        self,
        *,
        rate: float = 5.0,
        filter_rate: float | None = None,
        seed: int | None = None,
        keepalive_interval: float = 20.0,
        token: str | None = None,
        max_rules: int = 1000,
        max_rule_chars: int = 1024,
        rule_changes_per_window: int = 100,
        rule_lists_per_window: int = 450,
        connects_per_window: int = 50,
        max_connections: int = 1,
        usage_checks_per_window: int = 50,
        project_cap: int = 2_000_000,
    ) -> None:
        self.rate = rate
        self.filter_rate = rate if filter_rate is None else filter_rate
        self.keepalive_interval = keepalive_interval
        self.token = token
        self.max_rules = max_rules
        self.max_rule_chars = max_rule_chars
        self.max_connections = max_connections
        self.rule_changes = Window(rule_changes_per_window)
        self.rule_lists = Window(rule_lists_per_window)
        self.connects = Window(connects_per_window)
        self.usage_checks = Window(usage_checks_per_window)
        self.control = False
        """Answer the test-only control API (`xapi_control`) under ``/_control``."""
        self.project_cap = project_cap
        """The project's monthly cap of posts (pay-per-use's is two million)."""
        self.usage: dict[int, int] = {}
        """Posts delivered per UTC day (days since the epoch, on `wall`): what X bills."""
        self.usage_requests: list[int] = []
        """The status of each request to the usage endpoint."""
        self._usage_failures: deque[tuple[int, bytes]] = deque()
        self.factory = TweetFactory(seed)
        self.reject_terms: set[str] = set()
        """Words that make a rule invalid, for tests of refused rules."""
        self.drop_adds = False
        """Answer adds with 200 and create nothing, saying nothing (a fault for tests)."""
        self.rules: dict[str, StoredRule] = {}
        self.connections: list[StreamRecord] = []
        self.rule_requests: list[RuleRequest] = []
        self._streams: dict[int, _Stream] = {}
        self._failures: deque[tuple[int, bytes, list[tuple[bytes, bytes]]]] = deque()
        self._timing = random.Random(None if seed is None else f"x-timing:{seed}")
        self._next_rule_id = 1_500_000_000_000_000_000
        self._changed = trio.Event()
        self._wall_offset: float | None = None

    # ---- observing

    def open_connections(self) -> list[StreamRecord]:
        return [stream.record for stream in self._streams.values()]

    async def wait_until(self, predicate: Callable[[XEmulator], bool]) -> None:
        """Return once `predicate(self)` holds; checked after every request and post."""
        while True:
            changed = self._changed
            if predicate(self):
                return
            await changed.wait()

    def wall(self) -> float:
        """Wall-clock seconds that advance with trio's clock (a MockClock included): the
        ``x-rate-limit-reset`` a client reads is on this clock."""
        if self._wall_offset is None:
            self._wall_offset = time.time() - trio.current_time()
        return self._wall_offset + trio.current_time()

    def add_rule(self, value: str, tag: str | None = None) -> str:
        """Add a rule as another tool using the same app would (tests of foreign rules)."""
        rule = StoredRule(self._rule_id(), value, tag, parse_rule(value))
        self.rules[rule.id] = rule
        return rule.id

    # ---- injecting

    def inject(self, status: dict[str, Any], *, unavailable: Sequence[str] = ()) -> None:
        """Send a v1.1 status, written as v2, to the streams if it matches a rule. The posts it
        references whose ids are `unavailable` are matched but not sent (`xposts.to_v2`)."""
        self._deliver(to_v2(status, unavailable), view_of(status))

    def inject_raw(self, data: bytes) -> None:
        """Write `data` as it is to every open stream."""
        for stream in self._streams.values():
            self._offer(stream, data)

    def inject_error(self, problem: Mapping[str, Any], *, then_close: bool = False) -> None:
        """Write an error object line to every open stream, then end them if asked (as X ends
        a stream after an ``operational-disconnect``)."""
        for stream in list(self._streams.values()):
            self._offer(stream, orjson.dumps(problem) + b"\r\n")
            if then_close:
                stream.send_channel.close()

    def fail_next(
        self,
        status: int,
        count: int = 1,
        body: Mapping[str, Any] | None = None,
        headers: Sequence[tuple[bytes, bytes]] = (),
    ) -> None:
        """Answer the next `count` stream requests with this status, body and headers."""
        data = orjson.dumps(body if body is not None else {"title": str(status)})
        self._failures.extend([(status, data, list(headers))] * count)

    def set_usage(self, count: int, *, day: int | None = None) -> None:
        """Say that `count` posts were read on UTC `day` (today by default), as other apps of
        the project, or a run before this one, would have."""
        self.usage[self.today() if day is None else day] = count
        self._notify()

    def today(self) -> int:
        """Today's UTC day number, on `wall`."""
        return int(self.wall() // DAY_SECONDS)

    def fail_usage(self, status: int, count: int = 1, body: bytes | None = None) -> None:
        """Answer the next `count` usage requests with this status and body (a 200 with a body
        that is not a usage object tests a malformed answer)."""
        data = body if body is not None else orjson.dumps({"title": str(status)})
        self._usage_failures.extend([(status, data)] * count)

    def drop_streams(self) -> None:
        """End open streams abruptly, mid-body."""
        for stream in list(self._streams.values()):
            stream.scope.cancel()
            self._close(stream)
        self._notify()

    def stall_streams(self) -> None:
        """Open streams send nothing more, keep-alives included, but stay open."""
        for stream in self._streams.values():
            stream.stalled = True

    # ---- posts

    async def generate(self) -> None:
        """`rate` posts a second from everyone, and `filter_rate` written for the rules."""
        async with trio.open_nursery() as nursery:
            if self.rate > 0:
                nursery.start_soon(self._every, self.rate, self._from_everyone)
            if self.filter_rate > 0:
                nursery.start_soon(self._every, self.filter_rate, self._for_a_rule)

    async def _every(self, rate: float, make: Callable[[], None]) -> None:
        next_at = trio.current_time()
        while True:
            next_at = max(next_at + self._timing.expovariate(rate), trio.current_time() - MAX_LAG)
            await trio.sleep_until(next_at)
            if self._streams and self.rules:
                make()

    def _from_everyone(self) -> None:
        self.inject(self.factory.next_status(self._now_ms()))

    def _for_a_rule(self) -> None:
        groups = [group for rule in self.rules.values() for group in clauses(rule.expr)]
        if groups:
            words = self._timing.choice(groups)
            self.inject(self.factory.status_matching(words, self._now_ms()))

    def _now_ms(self) -> int:
        return int(self.wall() * 1000)

    def _deliver(self, message: dict[str, Any], post: PostView) -> None:
        matched = [rule for rule in self.rules.values() if rule.expr.matches(post)]
        if not matched:
            return
        message = {
            **message,
            "matching_rules": [{"id": r.id, "tag": r.tag or ""} for r in matched],
        }
        lines: dict[frozenset[str], bytes] = {}
        delivered = False
        for stream in self._streams.values():
            data = lines.get(stream.fields)
            if data is None:
                data = orjson.dumps(select_fields(message, stream.fields)) + b"\r\n"
                lines[stream.fields] = data
            if self._offer(stream, data):
                stream.record.sent += 1
                delivered = True
        if delivered:
            day = self.today()
            self.usage[day] = self.usage.get(day, 0) + 1
        self._notify()

    def _offer(self, stream: _Stream, data: bytes) -> bool:
        if stream.stalled:
            return False
        try:
            stream.send_channel.send_nowait(data)
        except (trio.WouldBlock, trio.BrokenResourceError, trio.ClosedResourceError):
            return False
        return True

    # ---- ASGI

    async def __call__(self, scope: Mapping[str, Any], receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await lifespan(receive, send)
            return
        if scope["type"] != "http":
            return
        path, method = scope["path"], scope["method"]
        if self.control and (path == CONTROL_PREFIX or path.startswith(CONTROL_PREFIX + "/")):
            # Imported here: the control module builds on this one.
            from pats_trio.emulator.xapi_control import serve_x_control

            await serve_x_control(self, scope, receive, send)
            return
        try:
            body: bytes | None = await read_body(receive, MAX_BODY_BYTES)
        except BodyTooLargeError:
            body = None
        authorization = next(
            (v.decode("latin-1") for k, v in scope["headers"] if k == b"authorization"), None
        )
        query = scope["query_string"].decode("latin-1")
        if path not in (STREAM_PATH, RULES_PATH, USAGE_PATH):
            await _json(send, 404, {"title": "Not Found", "type": "about:blank", "status": 404})
            return
        if not self._authorized(authorization):
            if path == STREAM_PATH:
                self._record(query, authorization, 401)
            await _json(send, 401, UNAUTHORIZED, PROBLEM_JSON)
            return
        if path == STREAM_PATH and method == "GET":
            await self._stream(query, authorization, receive, send)
        elif path == RULES_PATH and method == "GET":
            await self._list(query, send)
        elif path == RULES_PATH and method == "POST":
            await self._change(query, body, send)
        elif path == USAGE_PATH and method == "GET":
            await self._usage(query, send)
        else:
            await _json(
                send,
                405,
                {"title": "Method Not Allowed", "type": "about:blank", "status": 405},
                PROBLEM_JSON,
            )

    def _authorized(self, authorization: str | None) -> bool:
        if authorization is None or not authorization.startswith("Bearer "):
            return False
        return self.token is None or authorization == f"Bearer {self.token}"

    def _record(self, query: str, authorization: str | None, status: int) -> StreamRecord:
        record = StreamRecord(
            len(self.connections) + 1, trio.current_time(), query, authorization=authorization
        )
        record.status = status
        if status != 200:
            record.closed_at = record.opened_at
        self.connections.append(record)
        self._notify()
        return record

    async def _list(self, query: str, send: Send) -> None:
        now = trio.current_time()
        if not self.rule_lists.take(now):
            self.rule_requests.append(RuleRequest("GET", False, 429))
            headers = self.rule_lists.headers(self.wall(), now)
            await _json(send, 429, TOO_MANY_REQUESTS, PROBLEM_JSON, headers=headers)
            return
        self.rule_requests.append(RuleRequest("GET", False, 200))
        self._notify()
        params = parse_qs(query)
        try:
            size = min(max(int(params.get("max_results", ["1000"])[-1]), 1), 1000)
            start = int(params.get("pagination_token", ["0"])[-1], 16)
        except ValueError:
            await _json(send, 400, _invalid_request("max_results or pagination_token is invalid"))
            return
        every = [rule.to_json() for rule in self.rules.values()]
        rules = every[start : start + size]
        meta: dict[str, Any] = {"sent": _sent(self.wall()), "result_count": len(rules)}
        if start + size < len(every):
            meta["next_token"] = f"{start + size:016x}"
        await _json(send, 200, {"data": rules, "meta": meta} if rules else {"meta": meta})

    async def _usage(self, query: str, send: Send) -> None:
        now = trio.current_time()
        status = 200
        try:
            if self._usage_failures:
                status, data = self._usage_failures.popleft()
                await respond(send, status, data, content_type=PROBLEM_JSON)
            elif not self.usage_checks.take(now):
                status = 429
                headers = self.usage_checks.headers(self.wall(), now)
                await _json(send, 429, TOO_MANY_REQUESTS, PROBLEM_JSON, headers=headers)
            else:
                answer = self._usage_answer(parse_qs(query))
                status = 400 if "errors" in answer else 200
                await _json(send, status, answer)
        finally:
            self.usage_requests.append(status)
            self._notify()

    def _usage_answer(self, params: dict[str, list[str]]) -> dict[str, Any]:
        try:
            days = int(params.get("days", ["7"])[-1])
        except ValueError:
            days = 0
        if not 1 <= days <= 90:
            return _invalid_request("The `days` query parameter value is not between 1 and 90")
        asked = params.get("usage.fields", [""])[-1]
        fields = tuple(asked.split(",")) if asked else DEFAULT_USAGE_FIELDS
        unknown = sorted(set(fields) - USAGE_FIELDS)
        if unknown:
            return _invalid_request(
                f"The `usage.fields` query parameter value [{unknown[0]}] is not one of "
                f"[{','.join(sorted(USAGE_FIELDS))}]"
            )
        today = self.today()
        daily = [
            {"date": _sent(day * DAY_SECONDS), "usage": str(self.usage.get(day, 0))}
            for day in range(today - days + 1, today + 1)
        ]
        _, month_end = _month_bounds(self.wall())
        every: dict[str, Any] = {
            "cap_reset_day": max(month_end - today, 1),
            "project_cap": str(self.project_cap),
            "project_id": PROJECT_ID,
            "project_usage": str(self._month_usage()),
            "daily_project_usage": {"project_id": PROJECT_ID, "usage": daily},
            "daily_client_app_usage": [
                {"client_app_id": CLIENT_APP_ID, "usage": daily, "usage_result_count": days}
            ],
        }
        return {"data": {name: every[name] for name in fields}}

    def project_capped(self) -> bool:
        """Whether this month's reads reached `project_cap`: X then refuses the stream."""
        return self.project_cap > 0 and self._month_usage() >= self.project_cap

    def _month_usage(self) -> int:
        """Posts read this calendar month (the billing cycle, here)."""
        first, _ = _month_bounds(self.wall())
        return sum(count for day, count in self.usage.items() if day >= first)

    async def _change(self, query: str, body: bytes | None, send: Send) -> None:
        dry_run = parse_qs(query).get("dry_run", [""])[-1] == "true"
        now = trio.current_time()
        request = RuleRequest("POST", dry_run, 200)
        self.rule_requests.append(request)
        self._notify()
        if not self.rule_changes.take(now):
            request.status = 429
            headers = self.rule_changes.headers(self.wall(), now)
            await _json(send, 429, TOO_MANY_REQUESTS, PROBLEM_JSON, headers=headers)
            return
        try:
            payload = orjson.loads(body or b"")
        except orjson.JSONDecodeError:
            payload = None
        if not isinstance(payload, dict) or ("add" in payload) == ("delete" in payload):
            request.status = 400
            await _json(send, 400, _invalid_request("Exactly one of add or delete is required"))
            return
        if "add" in payload:
            answer = self._add(payload["add"], dry_run, request)
        else:
            answer = self._delete(payload["delete"], dry_run, request)
        if answer is None:
            request.status = 400
            await _json(send, 400, _invalid_request("The request body is not valid"))
            return
        await _json(send, 200, answer)

    def _add(self, items: Any, dry_run: bool, request: RuleRequest) -> dict[str, Any] | None:
        if not isinstance(items, list):
            return None
        created, errors = [], []
        by_value = {rule.value: rule for rule in self.rules.values()}
        room = self.max_rules - len(self.rules)
        for item in items:
            if not isinstance(item, dict) or not isinstance(item.get("value"), str):
                return None
            value, tag = item["value"], item.get("tag")
            problem = self._check(value)
            if problem is not None:
                errors.append(problem)
            elif value in by_value:
                errors.append(
                    {
                        "value": value,
                        "id": by_value[value].id,
                        "title": "DuplicateRule",
                        "type": "https://api.twitter.com/2/problems/duplicate-rules",
                    }
                )
            elif room <= 0:
                errors.append(
                    {
                        "value": value,
                        "title": "RulesCapExceeded",
                        "detail": f"Rules cap of {self.max_rules} exceeded",
                        "type": "https://api.twitter.com/2/problems/rule-cap",
                    }
                )
            else:
                room -= 1
                rule = StoredRule(
                    self._rule_id(), value, tag if isinstance(tag, str) else None, parse_rule(value)
                )
                created.append(rule)
        if not dry_run and self.drop_adds:
            created = []
        if not dry_run:
            for rule in created:
                self.rules[rule.id] = rule
            request.added = len(created)
        request.invalid = len(errors)
        summary = {
            "created": 0 if dry_run else len(created),
            "not_created": len(errors) + (len(created) if dry_run else 0),
            "valid": len(created),
            "invalid": len(errors),
        }
        answer: dict[str, Any] = {"meta": {"sent": _sent(self.wall()), "summary": summary}}
        if created:
            answer["data"] = [rule.to_json() for rule in created]
        if errors:
            answer["errors"] = errors
        self._notify()
        return answer

    def _check(self, value: str) -> dict[str, Any] | None:
        details: list[str] = []
        if len(value) > self.max_rule_chars:
            details.append(
                f"Rule length is {len(value)}, which exceeds the {self.max_rule_chars} limit"
            )
        else:
            try:
                parse_rule(value)
            except RuleSyntaxError as exc:
                details.append(str(exc))
            words = set(value.lower().replace('"', " ").replace("(", " ").replace(")", " ").split())
            refused = sorted(words & self.reject_terms)
            if refused:
                details.append(f"The term {refused[0]!r} is not allowed")
        if not details:
            return None
        return {
            "value": value,
            "details": details,
            "title": "UnprocessableEntity",
            "type": "https://api.twitter.com/2/problems/invalid-rules",
        }

    def _delete(self, spec: Any, dry_run: bool, request: RuleRequest) -> dict[str, Any] | None:
        ids = spec.get("ids") if isinstance(spec, dict) else None
        if not isinstance(ids, list):
            return None
        known = [i for i in ids if i in self.rules]
        if not dry_run:
            for rule_id in known:
                del self.rules[rule_id]
            request.deleted = len(known)
        self._notify()
        summary = {"deleted": len(known), "not_deleted": len(ids) - len(known)}
        answer: dict[str, Any] = {"meta": {"sent": _sent(self.wall()), "summary": summary}}
        missing = [i for i in ids if i not in self.rules and i not in known]
        if missing:
            answer["errors"] = [
                {
                    "value": str(i),
                    "title": "Not Found",
                    "detail": "Rule does not exist",
                    "type": "https://api.twitter.com/2/problems/resource-not-found",
                }
                for i in missing
            ]
        return answer

    def _rule_id(self) -> str:
        self._next_rule_id += 1
        return str(self._next_rule_id)

    async def _stream(
        self, query: str, authorization: str | None, receive: Receive, send: Send
    ) -> None:
        now = trio.current_time()
        if self._failures:
            status, data, headers = self._failures.popleft()
            self._record(query, authorization, status)
            await respond(send, status, data, content_type=PROBLEM_JSON, headers=headers)
            return
        if not self.connects.take(now):
            self._record(query, authorization, 429)
            headers = self.connects.headers(self.wall(), now)
            await _json(send, 429, TOO_MANY_REQUESTS, PROBLEM_JSON, headers=headers)
            return
        if self.project_capped():
            self._record(query, authorization, 429)
            await _json(send, 429, USAGE_CAPPED, PROBLEM_JSON)
            return
        if not self.rules:
            self._record(query, authorization, 409)
            await _json(send, 409, NO_RULES, PROBLEM_JSON)
            return
        if len(self._streams) >= self.max_connections:
            self._record(query, authorization, 429)
            await _json(send, 429, TOO_MANY_CONNECTIONS, PROBLEM_JSON)
            return
        record = self._record(query, authorization, 200)
        send_channel, receive_channel = trio.open_memory_channel[bytes](STREAM_BUFFER)
        asked = parse_qs(query).get("tweet.fields", [""])[-1]
        stream = _Stream(record, send_channel, receive_channel, frozenset(asked.split(",")))
        self._streams[record.id] = stream
        LOGGER.info("x emulator: stream %d opened", record.id)
        try:
            headers = [(b"content-type", JSON), *self.connects.headers(self.wall(), now)]
            await send({"type": "http.response.start", "status": 200, "headers": headers})
            with stream.scope:
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(cancel_on_disconnect, receive, nursery.cancel_scope)
                    await self._write(stream, send)
                    nursery.cancel_scope.cancel()
        finally:
            if self._close(stream):
                self._notify()
            send_channel.close()
            receive_channel.close()
            LOGGER.info("x emulator: stream %d closed after %d posts", record.id, record.sent)

    async def _write(self, stream: _Stream, send: Send) -> None:
        while True:
            data = KEEPALIVE
            with trio.move_on_after(self.keepalive_interval):
                try:
                    data = await stream.receive_channel.receive()
                except trio.EndOfChannel:
                    break
            if stream.stalled:
                await trio.sleep_forever()
            await send({"type": "http.response.body", "body": data, "more_body": True})
        await send({"type": "http.response.body", "body": b"", "more_body": False})

    def _close(self, stream: _Stream) -> bool:
        if self._streams.pop(stream.record.id, None) is None:
            return False
        stream.record.closed_at = trio.current_time()
        return True

    def _notify(self) -> None:
        self._changed.set()
        self._changed = trio.Event()


def _month_bounds(wall: float) -> tuple[int, int]:
    """The UTC day numbers of this month's first day and next month's first day."""
    now = time.gmtime(wall)
    year, month = (now.tm_year + 1, 1) if now.tm_mon == 12 else (now.tm_year, now.tm_mon + 1)
    first = calendar.timegm((now.tm_year, now.tm_mon, 1, 0, 0, 0)) // DAY_SECONDS
    following = calendar.timegm((year, month, 1, 0, 0, 0)) // DAY_SECONDS
    return first, following


def _sent(wall: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime(wall))


def _invalid_request(detail: str) -> dict[str, Any]:
    return {
        "errors": [{"message": detail}],
        "title": "Invalid Request",
        "detail": "One or more parameters to your request was invalid.",
        "type": "https://api.twitter.com/2/problems/invalid-request",
    }


async def _json(
    send: Send,
    status: int,
    payload: Mapping[str, Any],
    content_type: bytes = JSON,
    *,
    headers: Sequence[tuple[bytes, bytes]] = (),
) -> None:
    await respond(send, status, orjson.dumps(payload), content_type=content_type, headers=headers)


async def serve_xapi(
    emulator: XEmulator,
    *,
    host: str = "127.0.0.1",
    port: int = 0,
    task_status: trio.TaskStatus[str] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve `emulator` over HTTP/1.1 and run its post generator, forever; reports the API's
    base URL (``http://127.0.0.1:PORT``, for ``X_API_URL``) through `task_status`.

    Resource handling: hypercorn owns the socket and every connection; cancelling closes them.
    Error handling: a failure to bind propagates before `task_status.started`.
    """
    config = hypercorn_config(host, port, HYPERCORN_LOGGER, SHUTDOWN_GRACE)
    async with trio.open_nursery() as nursery:
        binds: list[str] = await nursery.start(
            partial(serve, cast(Any, emulator), config, mode="asgi")
        )
        nursery.start_soon(emulator.generate)
        LOGGER.info("x emulator: API v2 at %s (%.1f posts/s)", binds[0], emulator.rate)
        task_status.started(binds[0])
