"""pats-trio: realtime tweets in the browser, one upstream stream fanned out over Trio."""

__version__ = "0.1.0"
