"""Stops reading its socket, then floods the launcher with 400,000 requestData events.

The runtime's reader thread is made to wait forever at the first answer it reads; the model then
writes the events straight to the runtime's socket until the write blocks.
"""

import gc
import threading

from runtime import messages


def create(options):
    worker = next(o for o in gc.get_objects() if type(o).__name__ == "_Worker")
    worker._channel.claim = lambda request_id: threading.Event().wait()
    dataset = options.params["x"]._dataset
    for i in range(400_000):
        worker._conn.send([messages.RequestData(i, dataset, 0, 1).encode()])


model = {"createModelState": create}
