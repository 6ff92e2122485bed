#!/usr/bin/env bash
# Verify benchmark: wall time and peak RSS of `igpt-onnx verify` (the whole golden suite over
# fixtures/, on ort-cpu and tract), RUNS times (default 3), median and min against the 10 s
# target. ONNX Runtime comes from the project venv (ci/setup.sh creates it if missing).
#
# Exit status: non-zero only when a command fails: a build, the set-up, a verify set-up error
# (exit 2, stops at once), or a verify that reports a numerical failure (exit 1; the runs are
# still timed and the table printed, then the script exits 1). A missed target prints MISS.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
RUNS=${RUNS:-3}
GNU_TIME=/usr/bin/time
if [ ! -x "$GNU_TIME" ]; then
  echo "error: GNU time ($GNU_TIME) is required" >&2
  exit 2
fi

./ci/setup.sh
echo "== cargo build --release"
. ci/lib.sh
bin=$(igpt_bin release)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

: >"$work/times.txt"
failed=0
for i in $(seq 1 "$RUNS"); do
  # --require ort-cpu,tract: a skipped runtime would make the suite look faster than it is.
  rc=0
  "$GNU_TIME" -f "%e %M" -o "$work/time.txt" \
    "$bin" verify --runtimes ort-cpu,tract --require ort-cpu --require tract \
    >"$work/run.log" 2>&1 || rc=$?
  if [ "$rc" -ne 0 ] && [ "$rc" -ne 1 ]; then
    echo "error: verify exited $rc (run $i):" >&2
    cat "$work/run.log" >&2
    exit "$rc"
  fi
  [ "$rc" -eq 1 ] && failed=1
  tail -n1 "$work/time.txt" >>"$work/times.txt"
  echo "   run $i: $(tail -n1 "$work/time.txt" | awk '{printf "%s s, peak RSS %d MB", $1, $2/1024}')  (verify exit $rc)"
done

echo
if [ "$failed" = 1 ]; then
  echo "== last run's report"
  cat "$work/run.log"
else
  echo "== last run's report (summary; every case passed)"
  grep -E '^(note|verify):' "$work/run.log" || tail -n 3 "$work/run.log"
fi

read -r med min < <(awk '{print $1}' "$work/times.txt" | sort -g | awk '{v[NR]=$1} END {
  m = (NR % 2) ? v[(NR+1)/2] : (v[NR/2] + v[NR/2+1]) / 2; print m, v[1] }')
rss=$(awk '{print $2}' "$work/times.txt" | sort -g | tail -n1)
cases=$(ls -d fixtures/*/ 2>/dev/null | while read -r d; do [ -f "$d/manifest.json" ] && echo x; done | wc -l)
verdict=$(awk -v t="$med" 'BEGIN {print (t <= 10 ? "PASS" : "MISS")}')

echo
echo "== verify benchmark ($RUNS runs; golden suite over fixtures/: $cases cases, runtimes ort-cpu + tract)"
printf '%-15s %-15s %8s  %s\n' "wall_s med/min" "target" rss_MB result
printf '%-15s %-15s %8d  %s\n' "$(printf '%.2f / %.2f' "$med" "$min")" "<= 10 s" "$((rss / 1024))" "$verdict"
if [ "$failed" = 1 ]; then
  echo "verify reported a numerical failure (exit 1): see the report above" >&2
  exit 1
fi
