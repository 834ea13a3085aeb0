"""Twitter's v1.1 streams: the HTTP client, the wire protocol, and the adapter on the lifecycle."""
