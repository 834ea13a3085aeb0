"""X's problems (its RFC 7807 error objects) told apart by kind, and what a viewer sees of each.

A problem's kind is the last segment of its ``type`` URI: X writes ``https://api.twitter.com/2/
problems/usage-capped`` in its OpenAPI spec and ``https://api.x.com/2/problems/usage-capped`` in
newer pages, so only the segment is compared. A problem without a usable ``type`` (none, or the
generic ``about:blank``) is told by its ``title`` where X is known to use one (`TITLE_KINDS`).
The kinds are those of the response-codes page and the ``Problem`` schemas of X's OpenAPI spec
(https://github.com/xdevplatform/docs: ``x-api/fundamentals/response-codes-and-errors.mdx``,
``openapi.json``).

On the stream (`messages`), `STREAM_ENDING` kinds end the connection (its reconnect is what the
viewers see); `REFERENCE_KINDS` are partial errors about a post or user a post refers to, which
X could not send: not news for a viewer, so they are counted and logged, never shown. Any other
kind that arrives alone on an open stream is logged as a warning and counted, and not shown:
the stream goes on, and there is nothing a viewer could do about it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

USAGE_CAPPED = "usage-capped"
RATE_LIMIT_EXCEEDED = "rate-limit-exceeded"
STREAMING_CONNECTION = "streaming-connection"
"""A ``ConnectionExceptionProblem``: its ``connection_issue`` says which (`TOO_MANY_CONNECTIONS`,
or ``RuleConfigurationIssue`` with a 409 when the app has no rules)."""
OPERATIONAL_DISCONNECT = "operational-disconnect"
RULE_CAP = "rule-cap"
INVALID_RULES = "invalid-rules"
DUPLICATE_RULES = "duplicate-rules"
RESOURCE_NOT_FOUND = "resource-not-found"
TOO_MANY_CONNECTIONS = "TooManyConnections"

STREAM_ENDING = frozenset({OPERATIONAL_DISCONNECT, STREAMING_CONNECTION, USAGE_CAPPED})
"""Kinds X ends the stream with: an operational disconnect, a connection exception, and the
project's cap reached (`XUpstream` treats that one as a refused connect)."""
REFERENCE_KINDS = frozenset(
    {
        RESOURCE_NOT_FOUND,
        "resource-unavailable",
        "not-authorized-for-resource",
        "not-authorized-for-field",
        "field-unauthorized",
        "field-hydration-failure",
        "disallowed-resource",
    }
)
"""Partial errors: a referenced post, user or field X could not send with a post."""

TITLE_KINDS = {
    "UsageCapExceeded": USAGE_CAPPED,
    "ConnectionException": STREAMING_CONNECTION,
    "operational-disconnect": OPERATIONAL_DISCONNECT,
    "DuplicateRule": DUPLICATE_RULES,
    "Not Found Error": RESOURCE_NOT_FOUND,
}
"""The titles X is known to give these kinds (the examples on its pages, and the names of its
spec's schemas), for a problem whose ``type`` is missing."""


def kind_of(problem: Mapping[str, Any]) -> str:
    """The problem's kind: the last segment of its ``type``, else its title's (`TITLE_KINDS`),
    else empty.

    >>> kind_of({"type": "https://api.x.com/2/problems/usage-capped", "title": "Whatever"})
    'usage-capped'
    >>> kind_of({"type": "https://api.twitter.com/2/problems/rule-cap/"})
    'rule-cap'
    >>> kind_of({"type": "about:blank", "title": "UsageCapExceeded"})
    'usage-capped'
    >>> kind_of({"title": "Too Many Requests"})
    ''
    """
    uri = problem.get("type")
    if isinstance(uri, str) and "/problems/" in uri:
        return uri.rstrip("/").rpartition("/")[2]
    title = problem.get("title")
    return TITLE_KINDS.get(title, "") if isinstance(title, str) else ""
