def helper():
    raise ValueError("boom at import")


helper()
model = None
