"""Upstream sources: the shared contract, lifecycle and delays; one package per source."""
