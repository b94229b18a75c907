"""A model printing 100 MiB: its log is cut at the bound (first and last parts kept, the cut
marked), the launcher's memory and disk stay bounded, and other clients keep being served."""

from __future__ import annotations

import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

from launcher.client import LauncherClient
from tests.support.launcher_proc import running_launcher
from tests.support.memwatch import peak_rss
from tests.support.specs import TEMPORARY

LOG_BYTES = 256 * 1024


def param(name: str, value: int) -> dict[str, Any]:
    return {"name": name, "data": [np.array(value, dtype=np.int32)]}


def test_a_100_mib_print_flood_is_cut_at_the_bound_and_others_are_served() -> None:
    with tempfile.TemporaryDirectory(prefix="lt-") as root:
        with running_launcher(Path(root), ["--job-log-bytes", str(LOG_BYTES)]) as proc:
            with LauncherClient(proc.address) as client:
                hello = client.model.create_state(
                    model_id="hello", name="warm", params=[], execution_location=TEMPORARY
                )
                assert "success" in hello["result"], hello
                bystander: list[float] = []
                flood_done = threading.Event()

                def other_client() -> None:
                    with LauncherClient(proc.address) as other:
                        for _ in range(200):  # bounded in count and time
                            if flood_done.is_set():
                                return
                            start = time.monotonic()
                            res = other.model.get_models()
                            assert "result" in res, res
                            bystander.append(time.monotonic() - start)
                            time.sleep(0.02)

                probe = threading.Thread(target=other_client)
                with peak_rss(proc.pid) as rss:
                    probe.start()
                    res = client.model.create_state(
                        model_id="chatty",
                        name="flood",
                        params=[param("tag", 66), param("mode", 1)],
                        execution_location=TEMPORARY,
                    )
                    flood_done.set()
                    probe.join(60)
                state_id = res["result"]["success"]["stateId"]
                log = client.model.get_state_logs("chatty", state_id)["result"]
                assert log["truncated"] is True
                lines = log["lines"]
                cuts = [x for x in lines if x["text"].startswith("[... ")]
                assert len(cuts) == 1 and cuts[0]["stream"] == "launcher"
                assert "bytes of output cut here" in cuts[0]["text"]
                cut_at = lines.index(cuts[0])
                head, tail = lines[:cut_at], lines[cut_at + 1 :]
                # the first part: acceptance, the phases and the flood's first lines
                assert head[0]["text"].startswith(f"accepted {state_id}")
                assert any(x["text"].startswith("flood 66 ") for x in head)
                # the last part: the flood's last lines, the job's own last lines, the outcome
                stdout_tail = [x["text"] for x in tail if x["stream"] == "stdout"]
                assert stdout_tail[-1] == "out 66"
                assert stdout_tail[-2].startswith("flood 66 ")
                assert [x["text"] for x in tail if x["stream"] == "stderr"] == ["err 66"]
                assert tail[-1]["text"].startswith("outcome: success")
                kept = sum(len(x["text"]) for x in lines)
                assert kept < 2 * LOG_BYTES
                # on disk: once saved (in launcher.db, just after the answer) the bounded work
                # files go; the saved log reads the same
                work = Path(root) / "logs" / "jobs"
                deadline = time.monotonic() + 10
                while list(work.glob(f"{state_id}*")) and time.monotonic() < deadline:
                    time.sleep(0.05)
                assert list(work.glob(f"{state_id}*")) == []
                assert client.model.get_state_logs("chatty", state_id)["result"] == log
                print(
                    f"flood: rss +{rss.growth_mib:.1f} MiB,"
                    f" slowest other call {max(bystander):.3f} s"
                )
                # memory: nowhere near the 100 MiB written
                assert rss.growth_mib < 48, rss.growth_mib
                # served throughout (a generous bound: two cores shared by the whole suite)
                assert bystander, "the bystander made no call"
                assert max(bystander) < 2.0, max(bystander)
