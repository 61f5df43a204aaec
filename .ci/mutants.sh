#!/usr/bin/env bash
# Mutation testing of the security core (issue 17), with cargo-mutants 27.x.
#
# Too slow for .ci/run (about 15 s per mutant on 2 cores, several hundred
# mutants); run it by hand or on a schedule. It must pass whenever it is run.
#
# Usage:
#   .ci/mutants.sh [--full] [FILE...]
#
#   FILE    one or more files of the table below (src/ip.rs ...); default: all.
#   --full  test each mutant against the whole suite (`cargo test
#           --all-features`) instead of the file's own test targets. Use it to
#           confirm a survivor before acting on it.
#
# Environment:
#   MUTANTS_WORK         scratch directory (default: target/mutants-work). The
#                        working tree (tracked and untracked, not ignored files)
#                        is copied to $MUTANTS_WORK/tree and mutated there in
#                        place, with a persistent target directory beside it, so
#                        your checkout is never modified and later runs are warm.
#   MUTANTS_OUT          where each file's results go (default: mutants.out/);
#                        $MUTANTS_OUT/<name>/mutants.out/{caught,missed,...}.txt
#   MUTANTS_MIN_TIMEOUT  minimum test timeout in seconds (default 120).
#   MUTANTS_NICE         niceness of the cargo-mutants process (default 19).
#   MUTANTS_ARGS         more cargo-mutants options, split on spaces; e.g.
#                        MUTANTS_ARGS='--re fill|touched' re-runs only the
#                        mutants of those functions (a confirming run of the
#                        survivors after new tests). The counts then cover
#                        only those mutants.
#
# Equivalent mutants (changing nothing observable) are excluded, one regex and
# one justification each, in .cargo/mutants.toml (`exclude_re`). Every other
# mutant must be caught: the script exits non-zero if any survives ("missed"),
# if a baseline fails, or if cargo-mutants fails otherwise. Timeouts (a mutant
# that makes a test hang, e.g. a parser that stops advancing) are reported but
# count as detected.
#
# Prints caught / missed / unviable / timeout / excluded per file.
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$(pwd)

# File → the test targets that exercise it, given to every cargo command of
# the run (cargo-mutants --cargo-arg), so each mutant builds and runs only
# those. Later passes over the issue's list only add rows or targets here.
declare -A TARGETS=(
    [src/engine.rs]="--lib --test=lifecycle --test=verify --test=signing --test=faults --test=pending --test=conformance"
    [src/signed.rs]="--lib --test=signing --test=adversarial_signatures --test=replay"
    [src/hash.rs]="--lib --test=verify --test=lifecycle --test=adversarial_tokens"
    [src/token.rs]="--lib --test=token --test=adversarial_tokens --test=verify"
    [src/secret.rs]="--lib --test=token --test=lifecycle --test=no_leaks"
    [src/base62.rs]="--lib --test=token --test=adversarial_tokens"
    [src/origin.rs]="--lib --test=adversarial_origin --test=verify"
    [src/ip.rs]="--lib --test=adversarial_ip --test=verify"
    [src/signing.rs]="--lib --test=signing --test=adversarial_signatures"
    [src/sealing.rs]="--lib --test=signing --test=adversarial_signatures"
    [src/replay.rs]="--lib --test=signing --test=adversarial_signatures --test=replay"
    [src/manager.rs]="--lib --test=lifecycle --test=verify --test=faults --test=concurrency --test=usage --test=pending --test=signing"
    [src/store/memory.rs]="--lib --test=conformance --test=lifecycle --test=concurrency --test=usage"
    [src/store/audit.rs]="--lib --test=usage --test=sql_stores"
    [src/lent.rs]="--lib --test=conformance --test=verify --test=usage --test=lifecycle"
    [src/write_behind.rs]="--lib --test=write_behind --test=usage"
    [src/stored.rs]="--lib --test=serde"
    [src/http/credential.rs]="--lib --test=exchange"
    [src/http/exchange.rs]="--lib --test=exchange"
    [src/usage.rs]="--lib --test=usage"
    [src/id_hash.rs]="--lib --test=usage --test=cache"
    [src/http/refusal.rs]="--lib --test=exchange"
    [src/http/verify.rs]="--lib --test=exchange"
    [src/http/facts.rs]="--lib --test=exchange"
    [src/http/body.rs]="--lib --test=exchange"
    [src/http/headers.rs]="--lib --test=exchange"
    [src/http/http_crate.rs]="--lib --test=exchange"
    [src/feed.rs]="--lib --test=cache"
    [src/cache.rs]="--lib --test=cache --test=usage"
    [src/request.rs]="--lib --test=verify --test=adversarial_ip --test=adversarial_origin --test=lifecycle --test=cache --test=exchange"
    [src/record.rs]="--lib --test=lifecycle --test=verify --test=conformance --test=serde --test=pending"
    [src/store/mod.rs]="--lib --test=conformance --test=usage --test=write_behind --test=lifecycle --test=faults --test=cache"
    # The SQL stores' tests need the servers: eval "$(.ci/postgres.sh start)"
    # and eval "$(.ci/mariadb.sh start)" first (with
    # API_KEYS_TEST_REQUIRE_DATABASE=1, a missing server fails the baseline
    # instead of skipping its engine).
    [src/store/sql/codec.rs]="--lib --test=sql_stores --test=sql_errors"
    [src/store/sql/mod.rs]="--lib --test=sql_stores --test=sql_errors --test=sql_feed"
    [src/store/sql/statements.rs]="--lib --test=sql_stores --test=sql_errors"
    [src/store/sql/postgres.rs]="--lib --test=sql_stores --test=sql_errors --test=sql_feed"
    [src/store/sql/mysql.rs]="--lib --test=sql_stores --test=sql_errors --test=sql_feed"
    [src/store/sql/sqlite.rs]="--lib --test=sql_stores --test=sql_errors --test=sql_feed"
)
ORDER=(
    src/engine.rs src/signed.rs src/hash.rs src/token.rs src/secret.rs
    src/base62.rs src/origin.rs src/ip.rs src/signing.rs src/sealing.rs
    src/replay.rs src/manager.rs src/store/memory.rs src/http/credential.rs
    src/http/exchange.rs src/http/refusal.rs src/http/verify.rs
    src/http/facts.rs src/http/body.rs src/http/headers.rs
    src/http/http_crate.rs src/feed.rs src/usage.rs src/id_hash.rs
    src/store/audit.rs src/lent.rs src/write_behind.rs src/stored.rs
    src/cache.rs src/record.rs src/request.rs src/store/mod.rs src/store/sql/codec.rs src/store/sql/mod.rs
    src/store/sql/statements.rs src/store/sql/postgres.rs
    src/store/sql/mysql.rs src/store/sql/sqlite.rs
)

full=0
files=()
for arg in "$@"; do
    case "$arg" in
        --full) full=1 ;;
        -h | --help)
            sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'
            exit 0
            ;;
        *)
            if [[ -z "${TARGETS[$arg]+x}" ]]; then
                echo "mutants.sh: $arg is not in the table (${ORDER[*]})" >&2
                exit 1
            fi
            files+=("$arg")
            ;;
    esac
done
[[ ${#files[@]} -gt 0 ]] || files=("${ORDER[@]}")

if ! cargo mutants --version >/dev/null 2>&1; then
    echo "mutants.sh: cargo-mutants is missing: cargo install --locked cargo-mutants" >&2
    exit 1
fi

work=${MUTANTS_WORK:-$repo/target/mutants-work}
out=${MUTANTS_OUT:-$repo/mutants.out}
min_timeout=${MUTANTS_MIN_TIMEOUT:-120}
niceness=${MUTANTS_NICE:-19}
mkdir -p "$work" "$out"
work=$(cd "$work" && pwd)
out=$(cd "$out" && pwd)

# Fresh copy of the working tree (including uncommitted changes); the target
# directory survives between runs. The copy gets fresh modification times
# (`tar -m`): with the checkout's older ones, a file edited before the last
# mutant of the previous run was built would look unchanged to cargo, and the
# baseline would reuse that mutant's build.
rm -rf "$work/tree"
mkdir -p "$work/tree"
git ls-files -z --cached --others --exclude-standard |
    while IFS= read -r -d '' f; do [[ -e "$f" ]] && printf '%s\0' "$f"; done |
    tar --null -T - -cf - | tar -mxf - -C "$work/tree"
export CARGO_TARGET_DIR="$work/target"
export CARGO_TERM_COLOR=never

count() { if [[ -f "$1" ]]; then grep -c . "$1" || true; else echo 0; fi; }

failed=0
rows=()
for file in "${files[@]}"; do
    name=${file#src/}
    name=${name%.rs}
    name=${name//\//-}
    dest="$out/$name"
    rm -rf "$dest"
    # The targets go to every cargo command (--cargo-arg), so each mutant
    # builds only them, not the whole suite and the examples.
    cargo_args=()
    what="${TARGETS[$file]}"
    if [[ $full -eq 1 ]]; then
        what="(whole suite)"
    else
        for t in ${TARGETS[$file]}; do cargo_args+=("--cargo-arg=$t"); done
    fi
    echo "=== $file: cargo test --all-features $what"
    rc=0
    (cd "$work/tree" && nice -n "$niceness" cargo mutants --in-place --all-features \
        --minimum-test-timeout "$min_timeout" -f "$file" --output "$dest" \
        ${cargo_args[@]+"${cargo_args[@]}"} ${MUTANTS_ARGS:-}) || rc=$?
    res="$dest/mutants.out"
    caught=$(count "$res/caught.txt")
    missed=$(count "$res/missed.txt")
    unviable=$(count "$res/unviable.txt")
    timeout=$(count "$res/timeout.txt")
    # Mutants excluded as equivalent: listed without the config, not with it.
    all=$(cd "$work/tree" && cargo mutants --list --no-config -f "$file" | grep -c . || true)
    kept=$(cd "$work/tree" && cargo mutants --list -f "$file" | grep -c . || true)
    excluded=$((all - kept))
    status=ok
    # 0: all caught; 3: some timeouts, none missed. Anything else fails.
    if [[ $rc -ne 0 && $rc -ne 3 ]] || [[ $missed -ne 0 ]]; then
        status=FAIL
        failed=1
        if [[ -s "$res/missed.txt" ]]; then
            echo "--- survivors in $file:"
            cat "$res/missed.txt"
        fi
    fi
    rows+=("$(printf '%-24s %7s %7s %9s %8s %9s %6s  %s' \
        "$file" "$caught" "$missed" "$unviable" "$timeout" "$excluded" "$all" "$status")")
done

echo
printf '%-24s %7s %7s %9s %8s %9s %6s  %s\n' \
    file caught missed unviable timeout excluded total status
printf '%s\n' "${rows[@]}"
echo "(results: $out/<file>/mutants.out/; exclusions: .cargo/mutants.toml)"
exit "$failed"
