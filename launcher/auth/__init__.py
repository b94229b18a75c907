"""Who may call the launcher: API keys, the gRPC interceptor that checks them, rate limits
and quotas. With no key in the data root, the launcher is open (loopback by default)."""
