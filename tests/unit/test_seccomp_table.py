"""The seccomp allowlist's tables: both architectures build, nothing denied is allowed."""

from __future__ import annotations

import pytest

from launcher.sandbox import seccomp, syscalls


def test_no_denied_family_is_in_the_allowlist() -> None:
    assert seccomp.ALLOWED & seccomp.DENIED == set()
    for name in ("io_uring_setup", "io_uring_enter", "io_uring_register", "bpf", "keyctl"):
        assert name in seccomp.DENIED


@pytest.mark.parametrize("machine", ["x86_64", "aarch64"])
def test_filter_builds_for_each_architecture(machine: str) -> None:
    program = seccomp.build(machine)
    assert len(program) % 8 == 0
    assert len(program) // 8 < 4096  # the kernel's BPF_MAXINSNS
    numbers = seccomp.allowed_numbers(machine)
    table = syscalls.X86_64 if machine == "x86_64" else syscalls.AARCH64
    for name in seccomp.DENIED:
        assert table.get(name, -1) not in numbers.values(), name
    assert {"read", "write", "openat", "mmap", "futex"} <= set(numbers)


def test_unknown_architecture_is_unsupported() -> None:
    assert not seccomp.supported("riscv64")
    assert seccomp.supported("x86_64") and seccomp.supported("aarch64")
