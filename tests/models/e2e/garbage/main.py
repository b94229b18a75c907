"""Writes garbage into the worker's protocol socket: the job must end, not the launcher."""
import os
import stat


def create(options):
    for fd in range(3, 256):
        try:
            if stat.S_ISSOCK(os.fstat(fd).st_mode):
                os.write(fd, b"\x07garbage" * 64)
        except OSError:
            pass
    import time

    time.sleep(5)


model = {"createModelState": create}
