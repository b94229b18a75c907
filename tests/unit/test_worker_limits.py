"""The worker refuses what the protocol forbids: state limits, misuse of the API, bad frames."""

from __future__ import annotations

import socket
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from runtime import protocol, tensor
from tests.support.host import REPO_ROOT, Host

LIMITS = Path(__file__).parent.parent / "models" / "worker" / "limits" / "main.py"


@pytest.fixture
def host(tmp_path: Path):
    h = Host(tmp_path)
    assert h.initialize(LIMITS) == {}
    yield h
    if h.process.poll() is None:
        h.close()


def run_case(host: Host, case: str, command_id: str = "call-1"):
    return host.create_state({"case": [tensor.serialize(case)]}, command_id=command_id)


@pytest.mark.parametrize(
    ("case", "message"),
    [
        ("duplicate", "state key 'a' was provided more than once"),
        ("duplicate_in_one_call", "state key 'a' was provided more than once"),
        ("too_many", "at most 100 state keys may be provided"),
        ("over_1gib", "more than the limit of 1073741824 bytes"),
        ("over_lowered_limit", "state key 'eleven' holds 11 bytes, more than the limit of 10"),
        ("long_key_name", "a state key name has 257 characters; at most 256"),
        ("control_in_key_name", "a state key name must be printable characters"),
        ("key_not_str", 'expected "key" to be a str, not int'),
        ("data_not_bytes", "object with the buffer protocol (such as a numpy array), not str"),
        ("provide_all_not_list", "expected a list of dicts"),
        ("next_bad_amount", 'expected "amount" to be of type "int" or "float", not str'),
        ("set_position_too_far", "position 5 is not below the data size 1"),
    ],
)
def test_broken_rule_is_an_exception_in_the_model(host: Host, case: str, message: str) -> None:
    outcome = run_case(host, case)
    assert outcome.error is not None and outcome.error["code"] == "exception"
    assert message in outcome.error["details"]
    assert "big" not in outcome.state and "eleven" not in outcome.state


def test_one_hundred_keys_are_allowed(host: Host) -> None:
    outcome = run_case(host, "hundred")
    assert outcome.result == {} and len(outcome.state) == 100


def test_numpy_arrays_are_provided_as_their_raw_bytes(host: Host) -> None:
    outcome = run_case(host, "numpy")
    grid = np.arange(12, dtype=np.float32).reshape(3, 4)
    assert outcome.result == {}
    assert outcome.state["contiguous"] == grid.tobytes()
    assert outcome.state["transposed"] == np.ascontiguousarray(grid.T).tobytes()
    assert outcome.state["big_endian"] == b"\x00\x00\x00\x01\x00\x00\x00\x02"


@pytest.mark.parametrize(
    "case", ["read_after", "provide_after", "shuffle_after"], ids=["read", "provide", "shuffle"]
)
def test_use_after_completion_raises(host: Host, case: str) -> None:
    assert run_case(host, "keep", "call-1").result == {}
    outcome = run_case(host, case, "call-2")
    assert "the createModelState call has already completed" in outcome.error["details"]


def test_long_traceback_is_cut_and_written_whole_to_stderr(host: Host) -> None:
    details = run_case(host, "huge_exception").error["details"]
    assert details.startswith("Traceback") and "more characters" in details
    assert len(details) < protocol.MAX_EXCEPTION_DETAILS + 200
    assert host.close() == 0
    assert "x the end" in host.stderr()


def _worker_exit_after(tmp_path: Path, frame: bytes) -> tuple[int, str]:
    h = Host(tmp_path)
    h.sock.sendall(frame)
    code = h.process.wait(10)
    h.sock.close()
    return code, h.stderr()


@pytest.mark.parametrize(
    ("frame", "message"),
    [
        (b"\x00" + struct.pack(">Q", 5) + b"{bad}", "command is not valid JSON"),
        (b"\x00" + struct.pack(">Q", protocol.MAX_JSON_BYTES + 1), "exceeds the limit"),
        (protocol.encode_command("x", {})[:5], "in the middle of a frame"),
        (b"\x07", "unknown frame kind 0x07"),
        (b"\x00" + struct.pack(">Q", 2) + b"[]", 'not an object with a string "method"'),
        (b"".join(protocol.encode_provide_data(9, [b"x"])), "request 9, which is not pending"),
    ],
    ids=["bad-json", "oversize", "truncated", "bad-kind", "no-method", "unrequested-data"],
)
def test_malformed_frame_ends_the_worker_with_a_message(
    tmp_path: Path, frame: bytes, message: str
) -> None:
    if message == "in the middle of a frame":
        h = Host(tmp_path)
        h.sock.sendall(frame)
        h.sock.shutdown(socket.SHUT_WR)
        code, stderr = h.process.wait(10), h.stderr()
        h.sock.close()
    else:
        code, stderr = _worker_exit_after(tmp_path, frame)
    assert code == 2
    assert message in stderr


def test_worker_exits_zero_when_the_host_closes(tmp_path: Path) -> None:
    assert Host(tmp_path).close() == 0


def test_worker_serves_an_inherited_socket_from_ipc_fd(tmp_path: Path) -> None:
    ours, theirs = socket.socketpair()
    env = {"IPC_FD": str(theirs.fileno()), "PATH": "/usr/bin:/bin"}
    process = subprocess.Popen(
        [sys.executable, "-m", "runtime"], env=env, cwd=REPO_ROOT, pass_fds=[theirs.fileno()]
    )
    theirs.close()
    ours.sendall(protocol.encode_command("nope", {"id": "q"}))
    ours.settimeout(10)
    reply = ours.recv(4096)
    assert b'"id":"q"' in reply and b"unknown method" in reply
    ours.close()
    assert process.wait(10) == 0


def test_worker_without_ipc_settings_says_what_is_missing(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "runtime"],
        env={"PATH": "/usr/bin:/bin"},
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=10,
    )
    assert result.returncode != 0
    assert "set IPC_PATH" in result.stderr
