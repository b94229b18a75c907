raise RuntimeError("broken at import on purpose")
