#!/usr/bin/env bash
# Runs an example program and passes only when it exits 0 and its output (stdout and stderr,
# lines joined by spaces) matches an extended regular expression.
# Usage: expect_output.sh REGEX PROGRAM [ARGS...]
set -uo pipefail
pattern=$1
shift
output=$("$@" 2>&1)
status=$?
printf '%s\n' "$output"
if [ "$status" -ne 0 ]; then
  echo "FAIL: $1 exited with status $status" >&2
  exit 1
fi
if ! tr '\n' ' ' <<<"$output" | grep -Eq -- "$pattern"; then
  echo "FAIL: $1 printed nothing matching: $pattern" >&2
  exit 1
fi
