"""Write ``MIB`` MiB to /tmp/fill in 1 MiB blocks; print ``ok`` or the error's text."""

import sys

try:
    with open("/tmp/fill", "wb") as handle:
        for _ in range(int(sys.argv[1])):
            handle.write(b"\0" * (1024 * 1024))
            handle.flush()
    print("ok", flush=True)
except OSError as exc:
    print(exc.strerror, flush=True)
