"""Upstream sources: the streaming API client, its wire protocol, backoff and runners."""
