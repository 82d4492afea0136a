# shellcheck shell=bash disable=SC2034
# (the variables set here are used by the scripts that source this file)
# Settings and helpers shared by deploy.sh, destroy.sh and smoke_test.sh.
# The environment variables and their defaults are the seed's.

SCRIPTS_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO_ROOT=$(cd "$SCRIPTS_DIR/.." && pwd)
MODULE_DIR="$REPO_ROOT/infrastructure-manager/modules/behavioral-analytics"
HELPERS="$SCRIPTS_DIR/deploy_helpers.py"

REGION=${REGION:-us-central1}
# Accepted for the seed recipe's compatibility (it exports ZONE) and unused: every resource
# these scripts create is regional.
ZONE=${ZONE:-us-central1-a}
WORKER_POOL_NAME=${WORKER_POOL_NAME:-behavioral-processor}
FIRESTORE_DATABASE=${FIRESTORE_DATABASE:-behavioral-analytics}
PUBSUB_TOPIC=${PUBSUB_TOPIC:-user-events}
PUBSUB_SUBSCRIPTION=${PUBSUB_SUBSCRIPTION:-analytics-processor}
PUBSUB_DEAD_LETTER_TOPIC=${PUBSUB_DEAD_LETTER_TOPIC:-$PUBSUB_TOPIC-dead-letter}
PUBSUB_DEAD_LETTER_SUBSCRIPTION=${PUBSUB_DEAD_LETTER_SUBSCRIPTION:-$PUBSUB_SUBSCRIPTION-dead-letter}
API_SERVICE_NAME=${API_SERVICE_NAME:-behavioral-analytics-api}
DEPLOY_API=${DEPLOY_API:-true}
ENABLE_MONITORING=${ENABLE_MONITORING:-true}
API_WRITE_KEYS_SECRET=${API_WRITE_KEYS_SECRET:-behavioral-analytics-write-keys}
API_READ_KEYS_SECRET=${API_READ_KEYS_SECRET:-behavioral-analytics-read-keys}
HASH_SALT_SECRET=${HASH_SALT_SECRET:-behavioral-analytics-hash-salt}

AR_REPOSITORY=behavioral-analytics
WORKER_SA_NAME=analytics-processor
API_SA_NAME=analytics-api

DRY_RUN=${DRY_RUN:-0}

# Commands are echoed on fd 3 (the original stdout), so that echoing a query inside
# $(...) does not mix the echo into the captured output.
exec 3>&1

note() { printf '==> %s\n' "$*" >&2; }
# Print the comment block at the top of a script (its usage), without the shebang.
usage() { awk 'NR == 1 { next } /^#/ { sub(/^# ?/, ""); print; next } { exit }' "$1"; }
skip() { printf '    exists, skipped: %s\n' "$*" >&2; }
die() {
  printf 'error: %s\n' "$*" >&2
  exit 2
}

# Echo a command as a shell line (single-quoting only the words that need it).
show() {
  local out='+' word suffix=${SHOW_SUFFIX:-}
  for word in "$@"; do
    if [[ $word =~ ^[A-Za-z0-9_@%+=:,./-]+$ ]]; then
      out+=" $word"
    else
      out+=" '${word//\'/\'\\\'\'}'"
    fi
  done
  printf '%s%s\n' "$out" "$suffix" >&3
}

# Print a command, then run it (not under --dry-run).
run() {
  show "$@"
  [ "$DRY_RUN" = 1 ] && return 0
  "$@"
}

# Run a read-only check quietly; under --dry-run print it and report "absent".
probe() {
  if [ "$DRY_RUN" = 1 ]; then
    SHOW_SUFFIX='   # check' show "$@"
    return 1
  fi
  "$@" >/dev/null 2>&1
}

# Print a read-only query, run it and show its output (empty under --dry-run).
query() {
  if [ "$DRY_RUN" = 1 ]; then
    SHOW_SUFFIX='   # query' show "$@"
    return 0
  fi
  "$@" 2>/dev/null
}

check_prerequisites() {
  [ -n "${PROJECT_ID:-}" ] || die "PROJECT_ID is not set: export PROJECT_ID=your-project-id (REGION, WORKER_POOL_NAME, FIRESTORE_DATABASE and PUBSUB_TOPIC are optional; ZONE is accepted and unused)"
  command -v python3 >/dev/null 2>&1 || die "python3 is required (it reads firestore.indexes.json and the monitoring templates)"
  [ "$DRY_RUN" = 1 ] && return 0
  command -v gcloud >/dev/null 2>&1 || die "gcloud is not installed: see https://cloud.google.com/sdk/docs/install"
  local account
  account=$(gcloud auth list --filter=status:ACTIVE --format='value(account)' 2>/dev/null || true)
  [ -n "$account" ] || die "gcloud is not authenticated: run 'gcloud auth login' (and 'gcloud auth application-default login' for Terraform)"
  note "project $PROJECT_ID, region $REGION, as $account"
}

worker_sa_email() { printf '%s@%s.iam.gserviceaccount.com' "$WORKER_SA_NAME" "$PROJECT_ID"; }
api_sa_email() { printf '%s@%s.iam.gserviceaccount.com' "$API_SA_NAME" "$PROJECT_ID"; }
image_uri() { printf '%s-docker.pkg.dev/%s/%s/processor:latest' "$REGION" "$PROJECT_ID" "$AR_REPOSITORY"; }

# Values of the ${...} placeholders of the monitoring templates.
monitoring_vars() {
  printf '%s\n' \
    "project_id=$PROJECT_ID" \
    "region=$REGION" \
    "worker_pool_name=$WORKER_POOL_NAME" \
    "subscription_name=$PUBSUB_SUBSCRIPTION" \
    "dead_letter_subscription_name=$PUBSUB_DEAD_LETTER_SUBSCRIPTION" \
    "dead_letter_topic_name=$PUBSUB_DEAD_LETTER_TOPIC" \
    "worker_errors_metric=behavioral_analytics_worker_errors_$WORKER_POOL_NAME" \
    "dashboard_display_name=behavioral-analytics ($WORKER_POOL_NAME)" \
    "backlog_threshold=${BACKLOG_ALERT_THRESHOLD:-10000}" \
    "oldest_unacked_threshold=${OLDEST_UNACKED_ALERT_SECONDS:-600}"
}
