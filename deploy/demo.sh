#!/usr/bin/env bash
# `make demo`: from a fresh clone, set everything up, start the stack, train the model if missing,
# submit the job, replay real Taobao events into Kafka, and show what came out.
#   DEMO_DATASET (taobao-head) DEMO_LIMIT (all) DEMO_RATE (unlimited, events/s)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
t0=$SECONDS
make -s venv jars
bash deploy/stack.sh up
.venv/bin/python -m model_export.train --if-missing
job_id="$(.venv/bin/python -m flink_jobs.submit start --replace | sed -n 's/^job id: *//p')"
[[ -n "$job_id" ]] || { echo "demo: the job did not start" >&2; exit 1; }
replay_args=(--dataset "${DEMO_DATASET:-taobao-head}")
[[ -n "${DEMO_LIMIT:-}" ]] && replay_args+=(--limit "$DEMO_LIMIT")
[[ -n "${DEMO_RATE:-}" ]] && replay_args+=(--rate "$DEMO_RATE")
.venv/bin/python -m tools.demo_report --job-id "$job_id" -- "${replay_args[@]}"
eval "$(python3 -m flink_jobs.config --shell)"
cat <<MSG

Demo finished in $((SECONDS - t0)) s. The job keeps running; replay more with
  .venv/bin/python -m tools.replay --dataset taobao-slice --rate 2000
Web UI:          $PE_FLINK_REST_URL  (job $job_id)
Predictions:     .venv/bin/python -m tools.tail_predictions --max 10
A profile:       .venv/bin/python -m tools.show_profile USER_ID
Recommendations: .venv/bin/python -m tools.recommend USER_ID
Stop everything: make down
MSG
