#!/usr/bin/env python3
"""Counts what `make test` ran, from its logs, and prints one line per kind and a total.

Every test counts once, however many checks it makes:
- a cargo test is one test; a test binary (or doc-test run) that printed no `test result:` line
  (it crashed, or was killed) counts as one failed test, named;
- a C/C++ suite prints `SUITE: N passed, N failed (N checks)` counting its test functions
  (cpp-examples/tests/check.h); a suite that printed no summary, or exited with a failure after
  printing one, counts as one failed test more, named;
- an example program (a ctest entry that is not a suite) is one test, passed when ctest passed
  it (it must exit 0 and print its result: cpp-examples/tests/expect_output.sh);
- a memcheck run (`SUITE_memcheck`) is one test: the suite again under valgrind, passed when
  valgrind found no error and no definite leak;
- programs run outside ctest print `example NAME: ok` or `example NAME: FAILED`;
- a Python test (pytest, the Python package's) is one test, each parametrized case one; a pytest
  run that printed no final count (it crashed) counts as one failed test more;
- a WebAssembly test (`node --test`, the WebAssembly package's) is one test; a skipped one
  (ResNet-18 not exported) is listed as skipped, and a run that printed no final count (it
  crashed, or the package did not build) counts as one failed test more.

A stage that did not run (the build failed, cargo failed to compile a test, CMake failed) is
reported as such and fails the total. Exits 0 only when everything ran and passed.

usage: summary.py --build-status N --cargo-log FILE --cargo-status N --c-log FILE --c-status N
                  --python-log FILE --python-status N --wasm-log FILE --wasm-status N
"""

import argparse
import re
import sys
from dataclasses import dataclass, field

CARGO_BLOCK = re.compile(r"^\s+(?:Running (\S+(?: \S+)*?) \((\S+)\)|Doc-tests (\S+))\s*$")
CARGO_RESULT = re.compile(r"^test result: \w+\. (\d+) passed; (\d+) failed;")
CTEST_STATUS = re.compile(r"^\s*\d+/\d+ Test\s+#(\d+): (\S+) \.*\s*(\S.*?)\s+[\d.]+ sec\s*$")
SUITE_SUMMARY = re.compile(r"^(?:\d+: )?([A-Za-z_][\w]*): (\d+) passed, (\d+) failed\b")
EXAMPLE_LINE = re.compile(r"^example (\S+): (ok|FAILED)\s*$")
CTEST_TOTAL = re.compile(r"tests passed, (\d+) tests failed out of (\d+)")
PYTEST_TOTAL = re.compile(r"^=*\s*(?=.*\bin [\d.]+s\b)((?:\d+ \w+,? ?)+) in [\d.]+s")
PYTEST_FAILED = re.compile(r"^(?:FAILED|ERROR) (\S+)")
NODE_COUNT = re.compile(r"^# (tests|pass|fail|skipped|cancelled) (\d+)$")
NODE_FAILED = re.compile(r"^not ok \d+ - (.+)$")


@dataclass
class Kind:
    """Tests of one kind: counts and the names of the failures."""

    name: str
    passed: int = 0
    failed: int = 0
    failures: list = field(default_factory=list)

    def fail(self, what: str) -> None:
        self.failed += 1
        self.failures.append(what)


def read(path: str) -> list:
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            return f.read().splitlines()
    except FileNotFoundError:
        return []


def count_cargo(lines: list, kind: Kind) -> int:
    """Adds cargo's tests to `kind`; returns how many binaries and doc-test runs there were."""
    blocks = 0
    current = None  # the block waiting for its result line
    for line in lines:
        m = CARGO_BLOCK.match(line)
        if m:
            if current is not None:
                kind.fail(f"{current} (crashed: no test result)")
            current = m.group(1) or f"doc-tests {m.group(3)}"
            if m.group(2):
                current = f"{m.group(1)} ({m.group(2).rsplit('/', 1)[-1]})"
            blocks += 1
            continue
        m = CARGO_RESULT.match(line)
        if m and current is not None:
            kind.passed += int(m.group(1))
            kind.failed += int(m.group(2))
            current = None
    if current is not None:
        kind.fail(f"{current} (crashed: no test result)")
    # The names of failed tests: cargo prints each one's output under "---- NAME stdout ----".
    for line in lines:
        m = re.match(r"^---- (\S+) stdout ----$", line)
        if m:
            kind.failures.append(m.group(1))
    return blocks


def count_c(lines: list, suites: Kind, examples: Kind, memcheck: Kind) -> tuple:
    """Adds the C/C++ suites, examples and memcheck runs; returns (ctest entries seen, ctest's total)."""
    summaries = {}
    for line in lines:
        m = SUITE_SUMMARY.match(line)
        if m:
            summaries[m.group(1)] = (int(m.group(2)), int(m.group(3)))
    seen = 0
    for line in lines:
        m = CTEST_STATUS.match(line)
        if m:
            seen += 1
            name, status = m.group(2), m.group(3)
            ok = status == "Passed"
            if name.endswith("_memcheck"):
                if ok:
                    memcheck.passed += 1
                else:
                    memcheck.fail(f"{name} ({status.lstrip('*')})")
            elif name in summaries:
                passed, failed = summaries[name]
                suites.passed += passed
                suites.failed += failed
                if failed:
                    suites.failures.append(f"{name}: {failed} test(s), see FAILED lines in the log")
                if not ok and failed == 0:
                    suites.fail(f"{name} ({status.lstrip('*')} after its summary)")
            elif ok:
                examples.passed += 1
            else:
                examples.fail(f"{name} ({status.lstrip('*')}; a suite that printed no summary counts here)")
            continue
        m = EXAMPLE_LINE.match(line)
        if m:
            if m.group(2) == "ok":
                examples.passed += 1
            else:
                examples.fail(m.group(1))
    total = None
    for line in lines:
        m = CTEST_TOTAL.search(line)
        if m:
            total = int(m.group(2))
    return seen, total


def count_python(lines: list, kind: Kind) -> bool:
    """Adds pytest's tests to `kind`; returns whether pytest printed its final count."""
    counts = None
    for line in lines:
        m = PYTEST_TOTAL.match(line.strip())
        if m:
            counts = dict((word, int(n)) for n, word in re.findall(r"(\d+) (\w+)", m.group(1)))
    if counts is None:
        return False
    kind.passed += counts.get("passed", 0)
    kind.failed += counts.get("failed", 0) + counts.get("errors", 0) + counts.get("error", 0)
    for line in lines:
        m = PYTEST_FAILED.match(line)
        if m:
            kind.failures.append(m.group(1))
    return True


def count_node(lines: list, kind: Kind) -> int | None:
    """Adds node --test's top-level tests to `kind`; returns how many it skipped, or None when it
    printed no final count."""
    counts = {}
    for line in lines:
        m = NODE_COUNT.match(line)
        if m:
            counts[m.group(1)] = int(m.group(2))
    if "tests" not in counts:
        return None
    kind.passed += counts.get("pass", 0)
    kind.failed += counts.get("fail", 0) + counts.get("cancelled", 0)
    for line in lines:
        m = NODE_FAILED.match(line)
        if m:
            kind.failures.append(m.group(1))
    return counts.get("skipped", 0)


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--build-status", type=int, required=True)
    ap.add_argument("--cargo-log", required=True)
    ap.add_argument("--cargo-status", type=int)
    ap.add_argument("--c-log", required=True)
    ap.add_argument("--c-status", type=int)
    ap.add_argument("--python-log", required=True)
    ap.add_argument("--python-status", type=int)
    ap.add_argument("--wasm-log", required=True)
    ap.add_argument("--wasm-status", type=int)
    args = ap.parse_args()

    problems = []
    if args.build_status != 0:
        print("build: FAILED (cargo build --workspace; see target/test.log): no test ran")
        print("total: build failed")
        return 1

    cargo = Kind("cargo tests")
    blocks = count_cargo(read(args.cargo_log), cargo)
    if args.cargo_status is None:
        problems.append("cargo test did not run")
    elif args.cargo_status != 0 and cargo.failed == 0:
        problems.append(f"cargo test exited {args.cargo_status} with no failed test: a test target did not compile")

    suites, examples, memcheck = Kind("C/C++ suite tests"), Kind("examples"), Kind("memcheck runs")
    seen, ctest_total = count_c(read(args.c_log), suites, examples, memcheck)
    if args.c_status is None:
        problems.append("the C/C++ suite did not run")
    elif ctest_total is None:
        problems.append("ctest did not run (installing librivet or building cpp-examples failed)")
    elif seen != ctest_total:
        problems.append(f"ctest ran {ctest_total} entries but {seen} reported a status")
    elif args.c_status != 0 and suites.failed + examples.failed + memcheck.failed == 0:
        problems.append(f"make test-c exited {args.c_status} with no failed test")

    python = Kind("Python tests")
    finished = count_python(read(args.python_log), python)
    if args.python_status is None:
        problems.append("the Python tests did not run")
    elif not finished:
        python.fail("pytest (crashed, or the package did not build: no final count; see target/test-python.log)")
    elif args.python_status != 0 and python.failed == 0:
        problems.append(f"make test-python exited {args.python_status} with no failed test")

    wasm = Kind("WebAssembly tests")
    skipped = count_node(read(args.wasm_log), wasm)
    if args.wasm_status is None:
        problems.append("the WebAssembly tests did not run")
    elif skipped is None:
        wasm.fail("node --test (crashed, or the package did not build: no final count; see target/test-wasm.log)")
    elif args.wasm_status != 0 and wasm.failed == 0:
        problems.append(f"make test-wasm exited {args.wasm_status} with no failed test")

    print(f"{cargo.name}: {cargo.passed} passed, {cargo.failed} failed ({blocks} test binaries and doc-test runs)")
    print(f"{suites.name}: {suites.passed} passed, {suites.failed} failed")
    print(f"{examples.name}: {examples.passed} passed, {examples.failed} failed")
    print(f"{memcheck.name}: {memcheck.passed} passed, {memcheck.failed} failed (suites again under valgrind)")
    print(f"{python.name}: {python.passed} passed, {python.failed} failed")
    print(f"{wasm.name}: {wasm.passed} passed, {wasm.failed} failed" + (f", {skipped} skipped" if skipped else ""))
    for kind in (cargo, suites, examples, memcheck, python, wasm):
        for what in kind.failures:
            print(f"FAILED ({kind.name}): {what}")
    for what in problems:
        print(f"FAILED: {what}")
    kinds = (cargo, suites, examples, memcheck, python, wasm)
    passed = sum(k.passed for k in kinds)
    failed = sum(k.failed for k in kinds) + len(problems)
    print(f"total: {passed} passed, {failed} failed")
    return 0 if failed == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
