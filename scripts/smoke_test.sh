#!/usr/bin/env bash
# Smoke test of a deployed behavioral-analytics (a real project; not run in CI).
#
#   export PROJECT_ID=your-project-id      # same optional variables as deploy.sh
#   ./scripts/smoke_test.sh [--timeout SECONDS]
#
# Publishes a few events with `gcloud pubsub topics publish`, waits (polling, with a
# deadline) until the worker has committed them to Firestore, then checks the user's
# profile aggregate, the worker's custom metrics, and the dead-letter path (a malformed
# message must land in the dead_letters collection, and the subscription must carry its
# dead-letter policy). Firestore and Monitoring are read through their REST APIs with
# the gcloud access token: gcloud has no command to read documents or time series.
# With FIRESTORE_EMULATOR_HOST set, Firestore is read from that emulator instead (the
# Monitoring check is skipped); SMOKE_RUN_ID reuses a run id, to check an earlier run again.

set -euo pipefail

# shellcheck source-path=SCRIPTDIR source=common.sh
. "$(dirname "${BASH_SOURCE[0]}")/common.sh"

TIMEOUT=300
while [ $# -gt 0 ]; do
  case "$1" in
    --timeout)
      TIMEOUT=${2:?--timeout needs seconds}
      shift 2
      ;;
    -h | --help)
      usage "$0"
      exit 0
      ;;
    *) die "unknown argument: $1 (try --help)" ;;
  esac
done

check_prerequisites
command -v curl >/dev/null 2>&1 || die "curl is required"
P=(--project="$PROJECT_ID")
if [ -n "${FIRESTORE_EMULATOR_HOST:-}" ]; then
  FIRESTORE_API="http://$FIRESTORE_EMULATOR_HOST"
  TOKEN=owner # the emulator's administrator token
else
  FIRESTORE_API="https://firestore.googleapis.com"
  TOKEN=$(gcloud auth print-access-token)
fi
FIRESTORE="$FIRESTORE_API/v1/projects/$PROJECT_ID/databases/$FIRESTORE_DATABASE/documents"
RUN_ID=${SMOKE_RUN_ID:-smoke$(date +%s)}
USER_ID="smoke_user_$RUN_ID"
COUNT=5
failures=0
pass() { printf 'PASS  %s\n' "$*"; }
fail() {
  printf 'FAIL  %s\n' "$*"
  failures=$((failures + 1))
}

api() { curl -fsS -H "Authorization: Bearer $TOKEN" -H 'Content-Type: application/json' "$@"; }

note "publishing $COUNT events for $USER_ID and one malformed message to $PUBSUB_TOPIC"
now=$(date +%s)
for i in $(seq 1 "$COUNT"); do
  gcloud pubsub topics publish "$PUBSUB_TOPIC" "${P[@]}" --format=none --message="$(
    printf '{"event_id":"evt_%s_%d","user_id":"%s","event_type":"page_view","timestamp":%d,"session_id":"sess_%s","properties":{"page_url":"/smoke/%d"}}' \
      "$RUN_ID" "$i" "$USER_ID" "$now" "$RUN_ID" "$i"
  )"
done
gcloud pubsub topics publish "$PUBSUB_TOPIC" "${P[@]}" --format=none --message="not json $RUN_ID"

count_query() {
  # Number of documents of collection $1 whose field $2 equals string $3.
  api -X POST "$FIRESTORE:runAggregationQuery" -d "$(printf '{"structuredAggregationQuery":{"structuredQuery":{"from":[{"collectionId":"%s"}],"where":{"fieldFilter":{"field":{"fieldPath":"%s"},"op":"EQUAL","value":{"stringValue":"%s"}}}},"aggregations":[{"alias":"n","count":{}}]}}' "$1" "$2" "$3")" |
    python3 -c 'import json,sys; r=json.load(sys.stdin); print(next((int(x["result"]["aggregateFields"]["n"]["integerValue"]) for x in r if "result" in x), 0))'
}

note "waiting up to ${TIMEOUT}s for the events in Firestore"
deadline=$(($(date +%s) + TIMEOUT))
stored=0
while [ "$(date +%s)" -lt "$deadline" ]; do
  stored=$(count_query user_events user_id "$USER_ID" 2>/dev/null || echo 0)
  [ "$stored" -ge "$COUNT" ] && break
  sleep 5
done
if [ "$stored" -eq "$COUNT" ]; then pass "$COUNT raw events in user_events"; else fail "user_events holds $stored of $COUNT events"; fi

profile=$(api "$FIRESTORE/analytics_aggregates/user_$USER_ID" 2>/dev/null || true)
total=$(printf '%s' "$profile" | python3 -c 'import json,sys
try: print(json.load(sys.stdin)["fields"]["total_events"]["integerValue"])
except Exception: print(-1)')
if [ "$total" = "$COUNT" ]; then pass "profile user_$USER_ID counts $COUNT events"; else fail "profile user_$USER_ID total_events=$total, expected $COUNT"; fi

today=$(date -u +%Y-%m-%d)
daily=$(api "$FIRESTORE/analytics_aggregates/daily_$today" 2>/dev/null || true)
if printf '%s' "$daily" | grep -q '"total_events"'; then pass "daily_$today aggregate exists"; else fail "daily_$today aggregate missing"; fi

dead=0
while [ "$(date +%s)" -lt "$deadline" ]; do
  # The message is stored as bytes, which REST returns base64-encoded: decode before matching.
  dead=$(api -X POST "$FIRESTORE:runQuery" -d '{"structuredQuery":{"from":[{"collectionId":"dead_letters"}],"orderBy":[{"field":{"fieldPath":"recorded_at"},"direction":"DESCENDING"}],"limit":500}}' 2>/dev/null |
    python3 "$HELPERS" documents-mentioning "$RUN_ID" || echo 0)
  [ "$dead" -ge 1 ] && break
  sleep 5
done
if [ "$dead" -ge 1 ]; then pass "malformed message recorded in dead_letters"; else fail "malformed message not found in dead_letters"; fi

policy=$(gcloud pubsub subscriptions describe "$PUBSUB_SUBSCRIPTION" "${P[@]}" --format='value(deadLetterPolicy.deadLetterTopic)' || true)
if [[ $policy == */topics/$PUBSUB_DEAD_LETTER_TOPIC ]]; then pass "subscription dead-letters to $PUBSUB_DEAD_LETTER_TOPIC"; else fail "subscription dead-letter topic is '$policy'"; fi

if [ -n "${FIRESTORE_EMULATOR_HOST:-}" ]; then
  printf 'SKIP  custom metrics (no Monitoring with the Firestore emulator)\n'
else
  # RFC 3339 times by python3: `date -d @SECONDS` is GNU-only (not on macOS).
  start=$(python3 "$HELPERS" rfc3339 "$((now - 600))")
  end=$(python3 "$HELPERS" rfc3339 "$(($(date +%s) + 60))")
  series=$(api -G "https://monitoring.googleapis.com/v3/projects/$PROJECT_ID/timeSeries" \
    --data-urlencode 'filter=metric.type="custom.googleapis.com/behavioral_analytics/events_processed"' \
    --data-urlencode "interval.startTime=$start" --data-urlencode "interval.endTime=$end" \
    --data-urlencode 'view=HEADERS' 2>/dev/null || true)
  if printf '%s' "$series" | grep -q '"timeSeries"'; then pass "custom metric events_processed is reported"; else fail "no events_processed time series (metrics can lag a few minutes)"; fi
fi

backlog=$(gcloud pubsub subscriptions describe "$PUBSUB_DEAD_LETTER_SUBSCRIPTION" "${P[@]}" --format='value(name)' || true)
if [ -n "$backlog" ]; then pass "dead-letter subscription $PUBSUB_DEAD_LETTER_SUBSCRIPTION exists"; else fail "dead-letter subscription missing"; fi

if [ "$failures" -gt 0 ]; then
  printf '%d check(s) failed\n' "$failures"
  exit 1
fi
printf 'all checks passed\n'
