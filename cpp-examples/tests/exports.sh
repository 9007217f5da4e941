#!/usr/bin/env bash
# What librivet.so exports (`nm -D`): the C ABI declared in rivet.h, the C++ API of the cxx
# bridge with cxx's runtime, and nothing else. Usage: exports.sh LIBRIVET_SO RIVET_H
set -euo pipefail
lib=$1 header=$2
defined=$(nm -D --defined-only "$lib" | awk '$2 != "A" { print $3 }' | sort -u)
declared=$(grep -o '\brivet_[a-z0-9_]*(' "$header" | tr -d '(' | sort -u)
# Three tests, each printing "ok NAME" or "FAILED NAME"; the summary counts them.
passed=0 failed=0 checks=0
check() { checks=$((checks + 1)); [ -z "$2" ] || { echo "FAIL: $1: $2" >&2; test_failed=1; }; }
begin() { test_failed=0; }
end() {
  if [ "$test_failed" -eq 0 ]; then echo "ok $1"; passed=$((passed + 1)); else echo "FAILED $1"; failed=$((failed + 1)); fi
}

# Every C function rivet.h declares is exported.
begin
missing=$(comm -23 <(echo "$declared") <(echo "$defined" | grep '^rivet_' || true))
check "declared in rivet.h, not exported" "$missing"
end c_abi_exported

# The C++ API: each function and each method of its Rust types.
demangled=$(echo "$defined" | c++filt)
begin
for want in 'rivet::load(' 'rivet::load_with(' 'rivet::new_load_config()' 'rivet::register_scorer_backend(' \
            'rivet::wrap_scorer(' 'rivet::backends()' 'rivet::error_code(' 'rivet::error_message(' \
            'rivet::LoadedModel::run(' 'rivet::LoadedModel::inputs()' 'rivet::ModelOutputs::f32s(' \
            'rivet::LoadConfig::set_option(' 'rivet::shadow(' 'rivet::default_shadow_config()' 'rivet::LoadedModel::shadow_stats()' 'rust::cxxbridge1::String::String(' 'typeinfo for rust::cxxbridge1::Error'; do
  grep -qF -- "$want" <<<"$demangled" && check "$want" "" || check "$want" "not exported"
done
end cxx_api_exported

# Nothing else: C symbols rivet.h does not declare, Rust's own symbols, other C++.
begin
unexpected=$(paste -d'\t' <(echo "$defined") <(echo "$demangled") | while IFS=$'\t' read -r raw name; do
  case "$raw" in
    rivet_*) grep -qx -- "$raw" <<<"$declared" || echo "$raw" ;;
    'rivet$cxxbridge1$'* | 'cxxbridge1$'*) ;;  # cxx's Rust-side shims, which rustc always exports
    *)
      case "$name" in
        rivet::load\(* | rivet::load_with\(* | rivet::new_load_config\(* | rivet::register_scorer_backend\(* | \
        rivet::wrap_scorer\(* | rivet::backends\(* | rivet::error_code\(* | rivet::error_message\(* | \
        rivet::shadow\(* | rivet::default_shadow_config\(* | \
        rivet::LoadConfig::* | rivet::LoadedModel::* | rivet::ModelOutputs::*) ;;
        *rust::cxxbridge1::*) ;;  # cxx's C++ runtime and its template instances
        *) echo "$name" ;;
      esac
      ;;
  esac
done)
check "exported but not part of the API" "${unexpected:+$'\n'$unexpected}"
end nothing_else_exported
echo "exports: $passed passed, $failed failed ($checks checks, $(echo "$defined" | wc -l) symbols)"
[ "$failed" -eq 0 ]
