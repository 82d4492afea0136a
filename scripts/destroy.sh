#!/usr/bin/env bash
# Remove everything scripts/deploy.sh created, then verify that it is gone.
#
#   export PROJECT_ID=your-project-id      # required; same optional variables as deploy.sh
#   ./scripts/destroy.sh [--yes] [--keep-data] [--dry-run]
#
#   --yes        do not ask for confirmation (the Firestore database and its data are deleted)
#   --keep-data  keep the Firestore database (and its delete protection) and the hash key
#   --dry-run    print every command without running any
# Exits non-zero, listing them, if resources remain at the end.
set -euo pipefail

# shellcheck source-path=SCRIPTDIR source=common.sh
. "$(dirname "${BASH_SOURCE[0]}")/common.sh"

YES=0
KEEP_DATA=0
for arg in "$@"; do
  case "$arg" in
    --yes) YES=1 ;;
    --keep-data) KEEP_DATA=1 ;;
    --dry-run) DRY_RUN=1 ;;
    -h | --help)
      usage "$0"
      exit 0
      ;;
    *) die "unknown argument: $arg (try --help)" ;;
  esac
done

check_prerequisites
P=(--project="$PROJECT_ID")
WORKER_SA=$(worker_sa_email)
API_SA=$(api_sa_email)

if [ "$YES" = 0 ] && [ "$DRY_RUN" = 0 ]; then
  what="the worker pool, API, topics, subscriptions, secrets, monitoring, service accounts and images"
  [ "$KEEP_DATA" = 0 ] && what+=" AND the Firestore database $FIRESTORE_DATABASE with all its data"
  printf 'This deletes %s in project %s.\nType the project id to confirm: ' "$what" "$PROJECT_ID" >&2
  read -r answer
  [ "$answer" = "$PROJECT_ID" ] || die "not confirmed; nothing deleted"
fi

# delete_if_present DESCRIPTION -- DESCRIBE-COMMAND... -- DELETE-COMMAND...
delete_if_present() {
  local label=$1 describe=() delete=()
  shift 2
  while [ "$1" != -- ]; do
    describe+=("$1")
    shift
  done
  shift
  delete=("$@")
  if [ "$DRY_RUN" = 1 ] || probe "${describe[@]}"; then
    run "${delete[@]}"
  else
    printf '    absent, skipped: %s\n' "$label" >&2
  fi
}

note "Cloud Run"
delete_if_present "service $API_SERVICE_NAME" -- \
  gcloud run services describe "$API_SERVICE_NAME" --region="$REGION" "${P[@]}" -- \
  gcloud run services delete "$API_SERVICE_NAME" --region="$REGION" "${P[@]}" --quiet
delete_if_present "worker pool $WORKER_POOL_NAME" -- \
  gcloud beta run worker-pools describe "$WORKER_POOL_NAME" --region="$REGION" "${P[@]}" -- \
  gcloud beta run worker-pools delete "$WORKER_POOL_NAME" --region="$REGION" "${P[@]}" --quiet

note "Pub/Sub"
for subscription in "$PUBSUB_SUBSCRIPTION" "$PUBSUB_DEAD_LETTER_SUBSCRIPTION"; do
  delete_if_present "subscription $subscription" -- \
    gcloud pubsub subscriptions describe "$subscription" "${P[@]}" -- \
    gcloud pubsub subscriptions delete "$subscription" "${P[@]}" --quiet
done
for topic in "$PUBSUB_TOPIC" "$PUBSUB_DEAD_LETTER_TOPIC"; do
  delete_if_present "topic $topic" -- \
    gcloud pubsub topics describe "$topic" "${P[@]}" -- \
    gcloud pubsub topics delete "$topic" "${P[@]}" --quiet
done

note "Monitoring"
mapfile -t MVARS < <(monitoring_vars)
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
while IFS=$'\t' read -r display _; do
  for name in $(query gcloud alpha monitoring policies list "${P[@]}" \
    --filter="displayName=\"$display\"" --format='value(name)' || true); do
    run gcloud alpha monitoring policies delete "$name" "${P[@]}" --quiet
  done
done < <(python3 "$HELPERS" alert-policies "$MODULE_DIR/monitoring/alerting.json.tftpl" "$TMP" "" "${MVARS[@]}")
dashboard_name="behavioral-analytics ($WORKER_POOL_NAME)"
for name in $(query gcloud monitoring dashboards list "${P[@]}" \
  --filter="displayName=\"$dashboard_name\"" --format='value(name)' || true); do
  run gcloud monitoring dashboards delete "$name" "${P[@]}" --quiet
done
while IFS=$'\t' read -r name _; do
  delete_if_present "log metric $name" -- \
    gcloud logging metrics describe "$name" "${P[@]}" -- \
    gcloud logging metrics delete "$name" "${P[@]}" --quiet
done < <(python3 "$HELPERS" log-metrics "$MODULE_DIR/monitoring/alerting.json.tftpl" "${MVARS[@]}")

note "Secrets"
secrets=("$API_WRITE_KEYS_SECRET" "$API_READ_KEYS_SECRET")
# The hash key stays with kept data: the values stored were hashed with it.
[ "$KEEP_DATA" = 1 ] || secrets+=("$HASH_SALT_SECRET")
for secret in "${secrets[@]}"; do
  delete_if_present "secret $secret" -- \
    gcloud secrets describe "$secret" "${P[@]}" -- \
    gcloud secrets delete "$secret" "${P[@]}" --quiet
done

note "Service accounts and their project roles"
remove_role() {
  # A binding that is already gone makes gcloud fail: that is fine here.
  run gcloud projects remove-iam-policy-binding "$PROJECT_ID" --member="serviceAccount:$1" \
    --role="$2" --condition=None --format=none --quiet || true
}
if [ "$DRY_RUN" = 1 ] || probe gcloud iam service-accounts describe "$WORKER_SA" "${P[@]}"; then
  for role in roles/datastore.user roles/monitoring.metricWriter roles/logging.logWriter; do
    remove_role "$WORKER_SA" "$role"
  done
  run gcloud iam service-accounts delete "$WORKER_SA" "${P[@]}" --quiet
fi
if [ "$DRY_RUN" = 1 ] || probe gcloud iam service-accounts describe "$API_SA" "${P[@]}"; then
  for role in roles/datastore.user roles/monitoring.metricWriter roles/logging.logWriter; do
    remove_role "$API_SA" "$role"
  done
  run gcloud iam service-accounts delete "$API_SA" "${P[@]}" --quiet
fi

if [ "$KEEP_DATA" = 0 ]; then
  note "Firestore database $FIRESTORE_DATABASE"
  if [ "$DRY_RUN" = 1 ] || probe gcloud firestore databases describe --database="$FIRESTORE_DATABASE" "${P[@]}"; then
    run gcloud firestore databases update --database="$FIRESTORE_DATABASE" --no-delete-protection "${P[@]}" --quiet
    run gcloud firestore databases delete --database="$FIRESTORE_DATABASE" "${P[@]}" --quiet
  fi
fi

note "Artifact Registry repository $AR_REPOSITORY (and its images)"
delete_if_present "repository $AR_REPOSITORY" -- \
  gcloud artifacts repositories describe "$AR_REPOSITORY" --location="$REGION" "${P[@]}" -- \
  gcloud artifacts repositories delete "$AR_REPOSITORY" --location="$REGION" "${P[@]}" --quiet

[ "$DRY_RUN" = 1 ] && exit 0

note "Verifying that everything is gone"
left=()
gone() { if "$@" >/dev/null 2>&1; then left+=("$label"); fi; }
label="service $API_SERVICE_NAME" gone gcloud run services describe "$API_SERVICE_NAME" --region="$REGION" "${P[@]}"
label="worker pool $WORKER_POOL_NAME" gone gcloud beta run worker-pools describe "$WORKER_POOL_NAME" --region="$REGION" "${P[@]}"
for subscription in "$PUBSUB_SUBSCRIPTION" "$PUBSUB_DEAD_LETTER_SUBSCRIPTION"; do
  label="subscription $subscription" gone gcloud pubsub subscriptions describe "$subscription" "${P[@]}"
done
for topic in "$PUBSUB_TOPIC" "$PUBSUB_DEAD_LETTER_TOPIC"; do
  label="topic $topic" gone gcloud pubsub topics describe "$topic" "${P[@]}"
done
for secret in "${secrets[@]}"; do
  label="secret $secret" gone gcloud secrets describe "$secret" "${P[@]}"
done
label="service account $WORKER_SA" gone gcloud iam service-accounts describe "$WORKER_SA" "${P[@]}"
label="service account $API_SA" gone gcloud iam service-accounts describe "$API_SA" "${P[@]}"
[ "$KEEP_DATA" = 1 ] || label="Firestore database $FIRESTORE_DATABASE" gone gcloud firestore databases describe --database="$FIRESTORE_DATABASE" "${P[@]}"
label="repository $AR_REPOSITORY" gone gcloud artifacts repositories describe "$AR_REPOSITORY" --location="$REGION" "${P[@]}"
if [ -n "$(gcloud monitoring dashboards list "${P[@]}" --filter="displayName=\"$dashboard_name\"" --format='value(name)' 2>/dev/null)" ]; then
  left+=("dashboard $dashboard_name")
fi

if [ ${#left[@]} -gt 0 ]; then
  printf 'error: still present after destroy:\n' >&2
  printf '  - %s\n' "${left[@]}" >&2
  exit 1
fi
note "everything is gone (the APIs stay enabled)"
