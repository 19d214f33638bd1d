#!/usr/bin/env bash
# Run each cargo-fuzz target for FUZZ_SECONDS (default 60) from its committed seeds
# (fuzz/seeds/TARGET) plus what earlier runs found (fuzz/corpus/TARGET, not committed).
# `make fuzz` calls this; docs/fuzzing.md explains the targets.
#
#   FUZZ_SECONDS=300 FUZZ_TARGETS="admission range" fuzz/run.sh
#
# cargo-fuzz builds with nightly-only flags (-Zsanitizer=address, coverage instrumentation).
# With a nightly default toolchain they just work; with stable, RUSTC_BOOTSTRAP=1 lets stable
# rustc accept them (the sanitizer runtimes ship with stable's rust-std too).
set -euo pipefail

cd "$(dirname "$0")"
SECONDS_EACH=${FUZZ_SECONDS:-60}
TARGETS=${FUZZ_TARGETS:-admission environ static_path range config}

if ! cargo fuzz --version >/dev/null 2>&1; then
    echo "installing cargo-fuzz (cargo install cargo-fuzz --locked)"
    cargo install cargo-fuzz --locked
fi
if ! rustc --version | grep -q nightly; then
    export RUSTC_BOOTSTRAP=1
fi
# pyo3 embeds the interpreter in the environ target: use the Python the project builds with.
export PYO3_PYTHON=${PYO3_PYTHON:-$(command -v python3)}
# The interpreter keeps objects alive until exit by design; its allocations are not leaks the
# targets can act on. One process, one core: libFuzzer's default (no -jobs/-workers).
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=0}

failed=()
for target in $TARGETS; do
    mkdir -p "corpus/$target"
    dict=()
    case $target in
        admission | environ) dict=(-dict=dicts/http.dict) ;;
    esac
    echo "=== $target: ${SECONDS_EACH}s"
    if ! cargo fuzz run "$target" "corpus/$target" "seeds/$target" -- \
        -max_total_time="$SECONDS_EACH" -print_final_stats=1 "${dict[@]}" 2>&1 |
        tee "corpus/$target.log" | grep -E "^(#[0-9]+ +(INITED|DONE)|Done|stat::|==|SUMMARY|thread|panicked|Test unit written|artifact_prefix)" ; then
        :
    fi
    if grep -qE "Test unit written|ERROR: libFuzzer|deadly signal|panicked" "corpus/$target.log"; then
        failed+=("$target")
    fi
    echo "    corpus: $(find "corpus/$target" -type f | wc -l) inputs (full log: fuzz/corpus/$target.log)"
done

if ((${#failed[@]})); then
    echo "crashes in: ${failed[*]} (inputs in fuzz/artifacts/)"
    exit 1
fi
echo "no crashes in: $TARGETS"
