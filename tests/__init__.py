"""pats-trio tests: real servers on loopback, virtual time for timing logic."""
