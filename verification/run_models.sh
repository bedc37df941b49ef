#!/usr/bin/env bash
# Model-check every configuration of verification/*.pml (issue 21); `make verify` runs this after
# check_mapping.py. A "prove" run must finish its full search with no error; an "expect" run must
# produce the named counterexample (the model's teeth, and the gaps the README documents), whose
# trail is kept in verification/.build/<name>/ (gitignored). Exit 1 on any surprise.
set -euo pipefail
cd "$(dirname "$0")"
command -v spin >/dev/null || { echo "spin is not installed: run scripts/system_deps.sh" >&2; exit 1; }
BUILD=.build
mkdir -p "$BUILD"
failed=0
total_start=$(date +%s.%N)

# name | model | expectation ("prove" or "expect:<text in pan's error line>") | spin -D flags
CONFIGS=(
  "lease-server-3|lease.pml|prove|-DNR=3 -DHOST_CLOCK=0 -DSPREAD=0"
  "lease-host-d1-3|lease.pml|prove|-DNR=3 -DHOST_CLOCK=1 -DSPREAD=1"
  "lease-host-d6-live|lease.pml|prove|-DHOST_CLOCK=1 -DSPREAD=6 -DPROVE_L1=0"
  "lease-host-d7-live|lease.pml|expect:late[(owner-1)]|-DHOST_CLOCK=1 -DSPREAD=7 -DPROVE_L1=0"
  "lease-host-d2-frozen|lease.pml|expect:dl_left[(owner-1)]==0|-DHOST_CLOCK=1 -DSPREAD=2 -DPROVE_L3=0"
  "lease-deadline-100|lease.pml|expect:dl_left[(owner-1)]==0|-DHOST_CLOCK=0 -DLOCAL=11 -DPROVE_L3=0"
  "non-tx|protocol.pml|prove|-DSTRAT=0 -DSTATUS=0"
  "tx-shared|protocol.pml|prove|-DSTRAT=1 -DSTATUS=0"
  "tx-separate|protocol.pml|prove|-DSTRAT=2 -DSTATUS=0"
  "non-tx-redis-lease|protocol.pml|prove|-DSTRAT=0 -DSTATUS=0 -DFENCED=0 -DFAILS=0"
  "status|protocol.pml|prove|-DSTRAT=0 -DSTATUS=1 -DOPERATOR=0 -DFAILS=0"
  "non-tx-3-runners|protocol.pml|prove|-DNR=3 -DSTRAT=0 -DMAXCRASH=0 -DOPERATOR=0 -DFAILS=0 -DSTATUS=0"
  "tx-separate-3-runners|protocol.pml|prove|-DNR=3 -DSTRAT=2 -DMAXCRASH=0 -DOPERATOR=0 -DFAILS=0 -DSTATUS=0"
  "old-rule|protocol.pml|expect:assertion violated (effect==0)|-DSTRAT=0 -DOLD_RULE=1 -DSTATUS=0 -DOPERATOR=0 -DFAILS=0"
  "status-lease-first|protocol.pml|expect:dec==4|-DSTRAT=0 -DSTATUS=1 -DSTATUS_LEASE_FIRST=1 -DOPERATOR=0 -DFAILS=0"
  "gap-tx-separate|protocol.pml|expect:assertion violated|-DSTRAT=2 -DGAP=1 -DSTATUS=0 -DFAILS=0 -DOPERATOR=0"
)
if [ "${1:-}" != "" ]; then  # run only the named configurations
  keep=()
  for c in "${CONFIGS[@]}"; do for n in "$@"; do [ "${c%%|*}" = "$n" ] && keep+=("$c"); done; done
  CONFIGS=("${keep[@]}")
fi

printf '%-23s %-8s %12s %8s  %s\n' configuration result states seconds detail
run_one() {  # one configuration; writes its result line to $BUILD/<name>/result, returns 1 on a surprise
  local name=$1 model=$2 expect=$3 flags=$4 dir="$BUILD/$1" start secs states errors line truncated result detail
  rm -rf "$dir" && mkdir -p "$dir" && cp "$model" "$dir/" && echo "$flags" >"$dir/flags"
  start=$(date +%s.%N)
  # shellcheck disable=SC2086
  if ! (cd "$dir" && spin -a $flags "$model" >spin.log 2>&1 && gcc -O1 -DSAFETY -w -o pan pan.c 2>>spin.log); then
    printf '%-23s %-8s %s\n' "$name" FAILED "spin/gcc failed: $(tr '\n' ' ' <"$dir/spin.log")" >"$dir/result"
    return 1
  fi
  (cd "$dir" && ./pan -m10000000 -n >pan.out 2>&1) || true
  secs=$(echo "$(date +%s.%N) - $start" | bc)
  states=$(grep -Eo '^ *[0-9]+ states, stored' "$dir/pan.out" | grep -Eo '[0-9]+' || echo "?")
  errors=$(grep -Eo 'errors: [0-9]+' "$dir/pan.out" | grep -Eo '[0-9]+' || echo "?")
  line=$(grep -E '^pan:[0-9]+: ' "$dir/pan.out" | head -1 || true)
  truncated=$(grep -c 'max search depth too small' "$dir/pan.out" || true)
  local rc=0
  if [ "$expect" = prove ]; then
    if [ "$errors" = 0 ] && [ "$truncated" = 0 ]; then result=proved; detail="no violation in the full search"
    else result=FAILED; detail="${line:-search incomplete}"; rc=1; fi
  else
    local want=${expect#expect:}
    if [ "$errors" != 0 ] && [[ "$line" == *"$want"* ]]; then
      result=found; detail="counterexample as expected: python3 verification/show_trail.py $name"
    else result=FAILED; detail="expected a counterexample containing '$want', got: ${line:-none}"; rc=1; fi
  fi
  printf '%-23s %-8s %12s %8.1f  %s\n' "$name" "$result" "$states" "$secs" "$detail" >"$dir/result"
  return $rc
}

# Two at a time (the machine has 2 cores); results print in the table's order.
JOBS=${VERIFY_JOBS:-2}
for c in "${CONFIGS[@]}"; do
  IFS='|' read -r name model expect flags <<<"$c"
  while [ "$(jobs -rp | wc -l)" -ge "$JOBS" ]; do wait -n || true; done
  run_one "$name" "$model" "$expect" "$flags" &
done
wait
for c in "${CONFIGS[@]}"; do
  result="$BUILD/${c%%|*}/result"
  if [ -f "$result" ]; then cat "$result"; else echo "${c%%|*}: no result"; failed=1; fi
  if [ -f "$result" ] && grep -q ' FAILED ' "$result"; then failed=1; fi
done
printf 'total %.1f s\n' "$(echo "$(date +%s.%N) - $total_start" | bc)"
exit $failed
