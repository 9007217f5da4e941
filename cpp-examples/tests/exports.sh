#!/usr/bin/env bash
# What librivet.so exports (`nm -D`): the C ABI declared in rivet.h, the C++ API of the cxx
# bridge with cxx's runtime, and nothing else. Usage: exports.sh LIBRIVET_SO RIVET_H
set -euo pipefail
lib=$1 header=$2
defined=$(nm -D --defined-only "$lib" | awk '$2 != "A" { print $3 }' | sort -u)
declared=$(grep -o '\brivet_[a-z0-9_]*(' "$header" | tr -d '(' | sort -u)
passed=0 failed=0
fail() { echo "FAIL: $*" >&2; failed=$((failed + 1)); }

# Every C function rivet.h declares is exported.
missing=$(comm -23 <(echo "$declared") <(echo "$defined" | grep '^rivet_' || true))
if [ -n "$missing" ]; then fail "declared in rivet.h, not exported: $missing"; else passed=$((passed + 1)); fi

# The C++ API: each function and each method of its Rust types.
demangled=$(echo "$defined" | c++filt)
for want in 'rivet::load(' 'rivet::load_with(' 'rivet::new_load_config()' 'rivet::register_scorer_backend(' \
            'rivet::wrap_scorer(' 'rivet::backends()' 'rivet::error_code(' 'rivet::error_message(' \
            'rivet::LoadedModel::run(' 'rivet::LoadedModel::inputs()' 'rivet::ModelOutputs::f32s(' \
            'rivet::LoadConfig::set_option(' 'rust::cxxbridge1::String::String(' 'typeinfo for rust::cxxbridge1::Error'; do
  if grep -qF -- "$want" <<<"$demangled"; then passed=$((passed + 1)); else fail "not exported: $want"; fi
done

# Nothing else: C symbols rivet.h does not declare, Rust's own symbols, other C++.
unexpected=$(paste -d'\t' <(echo "$defined") <(echo "$demangled") | while IFS=$'\t' read -r raw name; do
  case "$raw" in
    rivet_*) grep -qx -- "$raw" <<<"$declared" || echo "$raw" ;;
    'rivet$cxxbridge1$'* | 'cxxbridge1$'*) ;;  # cxx's Rust-side shims, which rustc always exports
    *)
      case "$name" in
        rivet::load\(* | rivet::load_with\(* | rivet::new_load_config\(* | rivet::register_scorer_backend\(* | \
        rivet::wrap_scorer\(* | rivet::backends\(* | rivet::error_code\(* | rivet::error_message\(* | \
        rivet::LoadConfig::* | rivet::LoadedModel::* | rivet::ModelOutputs::*) ;;
        *rust::cxxbridge1::*) ;;  # cxx's C++ runtime and its template instances
        *) echo "$name" ;;
      esac
      ;;
  esac
done)
if [ -n "$unexpected" ]; then fail "exported but not part of the API:"$'\n'"$unexpected"; else passed=$((passed + 1)); fi
echo "exports: $passed passed, $failed failed ($(echo "$defined" | wc -l) symbols)"
[ "$failed" -eq 0 ]
