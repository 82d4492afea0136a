#!/usr/bin/env bash
# Deploy behavioral-analytics to Google Cloud with gcloud only.
#
#   export PROJECT_ID=your-project-id      # required
#   export REGION=us-central1              # optional; also WORKER_POOL_NAME,
#                                          # FIRESTORE_DATABASE, PUBSUB_TOPIC
#   (ZONE, which the seed recipe exports, is accepted for its compatibility and unused:
#   every resource here is regional.)
#   ./scripts/deploy.sh [--dry-run] [--update]
#
# Idempotent: every resource is described first and created only when missing, so a
# re-run skips what exists. IAM bindings are (re)applied on every run; adding a binding
# that exists changes nothing.
#   --dry-run   print every command without running any (assumes nothing exists; values
#               only known to a real run, such as PROJECT_NUMBER, are shown by name)
#   --update    rebuild the image and redeploy the worker pool and the API
# Other settings: PUBSUB_SUBSCRIPTION, MIN_INSTANCES (1), CPU_LIMIT (1), MEMORY_LIMIT (1Gi),
# MAX_DELIVERY_ATTEMPTS (5), RAW_RETENTION_DAYS (30), FLUSH_INTERVAL (1), BA_TIMEZONE (UTC),
# FIRESTORE_COUNTER_SHARDS (0: single bucket documents; past one worker per second of
# FLUSH_INTERVAL, at least workers / FLUSH_INTERVAL: docs/gcp.md, "Hot documents"),
# MESSAGE_ORDERING (false), FIRESTORE_PITR (false), FIRESTORE_BACKUP_RETENTION (7d: how long
# each daily backup is kept, a duration with its unit as gcloud's --retention takes it, such
# as 7d, 168h or P7D; a bare number such as 7, which gcloud would read as seconds, is refused;
# 0 = no daily backups), DEPLOY_API (true), CORS_ORIGINS (comma-separated origins of the web pages
# that send events from the browser, or '*'; empty: none can), ENABLE_MONITORING (true), NOTIFICATION_CHANNELS
# (comma-separated ids), BUILD_SOURCE (repository root), BUILD_SERVICE_ACCOUNT (email of the
# account Cloud Build runs as; default: the project's default build account),
# INDEX_WAIT_SECONDS (1800: how long to wait for new composite indexes), HASHED_FIELDS
# (comma-separated property paths the worker replaces with their HMAC-SHA256, BA_HASHED_FIELDS;
# its key is made once, at random, in the Secret Manager secret HASH_SALT_SECRET,
# behavioral-analytics-hash-salt).
# Backlog-driven autoscaling (CREMA) is deployed by the Terraform configurations only.

set -euo pipefail

# shellcheck source-path=SCRIPTDIR source=common.sh
. "$(dirname "${BASH_SOURCE[0]}")/common.sh"

UPDATE=0
for arg in "$@"; do
  case "$arg" in
    --dry-run) DRY_RUN=1 ;;
    --update) UPDATE=1 ;;
    -h | --help)
      usage "$0"
      exit 0
      ;;
    *) die "unknown argument: $arg (try --help)" ;;
  esac
done

MIN_INSTANCES=${MIN_INSTANCES:-1}
CPU_LIMIT=${CPU_LIMIT:-1}
MEMORY_LIMIT=${MEMORY_LIMIT:-1Gi}
MAX_DELIVERY_ATTEMPTS=${MAX_DELIVERY_ATTEMPTS:-5}
RAW_RETENTION_DAYS=${RAW_RETENTION_DAYS:-30}
FLUSH_INTERVAL=${FLUSH_INTERVAL:-1}
FIRESTORE_COUNTER_SHARDS=${FIRESTORE_COUNTER_SHARDS:-0}
BA_TIMEZONE=${BA_TIMEZONE:-UTC}
MESSAGE_ORDERING=${MESSAGE_ORDERING:-false}
CORS_ORIGINS=${CORS_ORIGINS:-}
FIRESTORE_PITR=${FIRESTORE_PITR:-false}
NOTIFICATION_CHANNELS=${NOTIFICATION_CHANNELS:-}
FIRESTORE_BACKUP_RETENTION=${FIRESTORE_BACKUP_RETENTION:-7d}
BUILD_SOURCE=${BUILD_SOURCE:-$REPO_ROOT}
BUILD_SERVICE_ACCOUNT=${BUILD_SERVICE_ACCOUNT:-}
INDEX_WAIT_SECONDS=${INDEX_WAIT_SECONDS:-1800}
HASHED_FIELDS=${HASHED_FIELDS:-}
INDEXES_FILE="$REPO_ROOT/firestore.indexes.json"

check_prerequisites
case "$MIN_INSTANCES" in '' | *[!0-9]* | 0) die "MIN_INSTANCES must be a whole number of at least 1 (gcloud's --scaling takes a positive count)" ;; esac
case "$MAX_DELIVERY_ATTEMPTS" in '' | *[!0-9]*) die "MAX_DELIVERY_ATTEMPTS must be a number between 5 and 100" ;; esac
{ [ "$MAX_DELIVERY_ATTEMPTS" -ge 5 ] && [ "$MAX_DELIVERY_ATTEMPTS" -le 100 ]; } || die "MAX_DELIVERY_ATTEMPTS must be between 5 and 100 (Pub/Sub's range)"
case "$RAW_RETENTION_DAYS" in '' | *[!0-9]*) die "RAW_RETENTION_DAYS must be a whole number of days" ;; esac
case "$MESSAGE_ORDERING" in true | false) ;; *) die "MESSAGE_ORDERING must be true or false" ;; esac
case "$FIRESTORE_COUNTER_SHARDS" in '' | *[!0-9]*) die "FIRESTORE_COUNTER_SHARDS must be a whole number from 0 to 100" ;; esac
[ "$FIRESTORE_COUNTER_SHARDS" -le 100 ] || die "FIRESTORE_COUNTER_SHARDS must be a whole number from 0 to 100"
# The memory each CPU count takes on a Cloud Run worker pool, in MiB (the Terraform module's
# instance-limits/main.tf, https://cloud.google.com/run/docs/configuring/workerpools/cpu).
case "$CPU_LIMIT" in
  1) memory_range=(512 4096) ;;
  2) memory_range=(512 8192) ;;
  4) memory_range=(2048 16384) ;;
  6) memory_range=(4096 24576) ;;
  8) memory_range=(4096 32768) ;;
  *) die "CPU_LIMIT must be 1, 2, 4, 6 or 8 (the CPU counts Cloud Run worker pools take)" ;;
esac
case "$MEMORY_LIMIT" in
  [1-9]*Mi | [1-9]*Gi) memory_number=${MEMORY_LIMIT%?i} ;;
  *) memory_number=x ;;
esac
case "$memory_number" in *[!0-9]*) die "MEMORY_LIMIT must be a whole number of Mi or Gi, such as 512Mi or 2Gi" ;; esac
memory_mib=$memory_number
[ "${MEMORY_LIMIT%Gi}" = "$MEMORY_LIMIT" ] || memory_mib=$((memory_number * 1024))
{ [ "$memory_mib" -ge "${memory_range[0]}" ] && [ "$memory_mib" -le "${memory_range[1]}" ]; } ||
  die "CPU_LIMIT=$CPU_LIMIT with MEMORY_LIMIT=$MEMORY_LIMIT: Cloud Run worker pools take 512Mi to 4Gi with 1 CPU, 512Mi to 8Gi with 2, 2Gi to 16Gi with 4, 4Gi to 24Gi with 6 and 4Gi to 32Gi with 8; raise MEMORY_LIMIT with CPU_LIMIT, or lower CPU_LIMIT"
IFS=, read -ra origins <<<"$CORS_ORIGINS"
for origin in "${origins[@]}"; do
  case "$origin" in
    '*' | http://?* | https://?*) ;;
    *) die "CORS_ORIGINS: $origin is not an origin (scheme://host[:port], or '*')" ;;
  esac
  case "$origin" in */*/*/* | *'|'* | *'?'* | *'#'*) die "CORS_ORIGINS: $origin has more than scheme://host[:port]" ;; esac
done
case "$HASHED_FIELDS" in
  *[[:space:]]* | ,* | *, | *,,* | *'|'*)
    die "HASHED_FIELDS=$HASHED_FIELDS: give comma-separated property paths, such as email,context.traits.email (no spaces, no empty path)"
    ;;
esac
# gcloud reads a duration without a unit as seconds (7 would keep each backup 7 s): require
# a unit, in gcloud's duration forms (7d, 1w, 168h, 1d12h, P7D, PT168H), or 0 for no backups.
duration_part='([0-9]+(\.[0-9]*)?|\.[0-9]+)'
case "$FIRESTORE_BACKUP_RETENTION" in
  0) ;; # no daily backups
  *[!0-9.]*)
    if ! [[ $FIRESTORE_BACKUP_RETENTION =~ ^(${duration_part}[smhdwySMHDWY])+$ ||
      $FIRESTORE_BACKUP_RETENTION =~ ^\+?[Pp](${duration_part}[YyMmWwDd])*([Tt](${duration_part}[HhMmSs])*)?$ ]] ||
      ! [[ $FIRESTORE_BACKUP_RETENTION =~ [1-9] ]]; then
      die "FIRESTORE_BACKUP_RETENTION=$FIRESTORE_BACKUP_RETENTION is not a duration longer than zero as gcloud's --retention takes it: use, for example, FIRESTORE_BACKUP_RETENTION=7d (or 168h, P7D; 0 turns daily backups off)"
    fi
    ;;
  *) die "FIRESTORE_BACKUP_RETENTION=$FIRESTORE_BACKUP_RETENTION has no unit, which gcloud reads as seconds: give one, such as FIRESTORE_BACKUP_RETENTION=7d (0 turns daily backups off)" ;;
esac
[ "$RAW_RETENTION_DAYS" -ge 14 ] || die "RAW_RETENTION_DAYS must be at least 14: 7 days of subscription retention plus a replay window"

P=(--project="$PROJECT_ID")
WORKER_SA=$(worker_sa_email)
API_SA=$(api_sa_email)
IMAGE=$(image_uri)
TMP=$(mktemp -d)
if [ "$DRY_RUN" = 1 ]; then
  # The printed commands name files in $TMP (rendered dashboard, alert policies): keep them.
  note "dry run: nothing is run; files the commands name are kept in $TMP"
else
  trap 'rm -rf "$TMP"' EXIT
fi

# ---------------------------------------------------------------------------
note "APIs"
APIS=(artifactregistry.googleapis.com cloudbuild.googleapis.com cloudresourcemanager.googleapis.com firestore.googleapis.com
  iam.googleapis.com logging.googleapis.com monitoring.googleapis.com pubsub.googleapis.com
  run.googleapis.com secretmanager.googleapis.com)
enabled=$(query gcloud services list --enabled "${P[@]}" --format='value(config.name)' || true)
missing=()
for api in "${APIS[@]}"; do
  grep -qx "$api" <<<"$enabled" || missing+=("$api")
done
if [ ${#missing[@]} -gt 0 ]; then
  run gcloud services enable "${missing[@]}" "${P[@]}"
else
  skip "APIs"
fi

# ---------------------------------------------------------------------------
note "Artifact Registry repository $AR_REPOSITORY"
if probe gcloud artifacts repositories describe "$AR_REPOSITORY" --location="$REGION" "${P[@]}"; then
  skip "repository $AR_REPOSITORY"
else
  run gcloud artifacts repositories create "$AR_REPOSITORY" --repository-format=docker \
    --location="$REGION" --description="behavioral-analytics container images" "${P[@]}"
fi

# ---------------------------------------------------------------------------
note "Service accounts"
ensure_sa() {
  local name=$1 display=$2
  if probe gcloud iam service-accounts describe "$name@$PROJECT_ID.iam.gserviceaccount.com" "${P[@]}"; then
    skip "service account $name"
  else
    run gcloud iam service-accounts create "$name" --display-name="$display" "${P[@]}"
  fi
}
ensure_sa "$WORKER_SA_NAME" "behavioral-analytics worker pool"
[ "$DEPLOY_API" = true ] && ensure_sa "$API_SA_NAME" "behavioral-analytics collector and query API"

project_role() {
  run gcloud projects add-iam-policy-binding "$PROJECT_ID" --member="serviceAccount:$1" \
    --role="$2" --condition=None --format=none --quiet
}
for role in roles/datastore.user roles/monitoring.metricWriter roles/logging.logWriter; do
  project_role "$WORKER_SA" "$role"
done
if [ "$DEPLOY_API" = true ]; then
  # datastore.user: the collector records the events it rejects in dead_letters itself. No
  # metricWriter: only the worker exports to Cloud Monitoring; the API serves /metrics.
  for role in roles/datastore.user roles/logging.logWriter; do
    project_role "$API_SA" "$role"
  done
  # Granted by earlier versions of this script.
  granted=$(query gcloud projects get-iam-policy "$PROJECT_ID" --flatten='bindings[].members' \
    --filter="bindings.role:roles/monitoring.metricWriter AND bindings.members:serviceAccount:$API_SA" \
    --format='value(bindings.role)' || true)
  if [ -n "$granted" ]; then
    run gcloud projects remove-iam-policy-binding "$PROJECT_ID" --member="serviceAccount:$API_SA" \
      --role=roles/monitoring.metricWriter --condition=None --format=none --quiet
  fi
fi

# ---------------------------------------------------------------------------
note "Firestore database $FIRESTORE_DATABASE"
if probe gcloud firestore databases describe --database="$FIRESTORE_DATABASE" "${P[@]}"; then
  skip "database $FIRESTORE_DATABASE"
else
  pitr=()
  [ "$FIRESTORE_PITR" = true ] && pitr=(--enable-pitr)
  run gcloud firestore databases create --database="$FIRESTORE_DATABASE" --location="$REGION" \
    --type=firestore-native --delete-protection "${pitr[@]}" "${P[@]}"
fi

note "Firestore composite indexes (firestore.indexes.json)"
query gcloud firestore indexes composite list --database="$FIRESTORE_DATABASE" "${P[@]}" \
  --format=json >"$TMP/indexes.json" || true
created_index=0
while IFS=$'\t' read -r -a index; do
  [ ${#index[@]} -gt 0 ] || continue
  configs=()
  for config in "${index[@]:1}"; do configs+=(--field-config="$config"); done
  run gcloud firestore indexes composite create --collection-group="${index[0]}" \
    "${configs[@]}" --query-scope=collection --database="$FIRESTORE_DATABASE" "${P[@]}" --async
  created_index=1
done < <(python3 "$HELPERS" missing-indexes "$INDEXES_FILE" "$TMP/indexes.json")
[ "$created_index" = 1 ] || skip "composite indexes"

note "Firestore daily backups (kept $FIRESTORE_BACKUP_RETENTION)"
schedules=$(query gcloud firestore backups schedules list --database="$FIRESTORE_DATABASE" \
  "${P[@]}" --format='value(name)' || true)
if [ -n "$schedules" ] || [ "$FIRESTORE_BACKUP_RETENTION" = 0 ]; then
  skip "daily backup schedule (exists, or FIRESTORE_BACKUP_RETENTION=0)"
else
  run gcloud firestore backups schedules create --database="$FIRESTORE_DATABASE" \
    --recurrence=daily --retention="$FIRESTORE_BACKUP_RETENTION" "${P[@]}"
fi

note "Firestore TTL policies and index exemptions (firestore.indexes.json fieldOverrides)"
while IFS=$'\t' read -r collection field ttl; do
  current=$(query gcloud firestore indexes fields describe "$field" --collection-group="$collection" \
    --database="$FIRESTORE_DATABASE" "${P[@]}" --format=json || true)
  actions=$(printf '%s' "$current" | python3 "$HELPERS" field-actions "$ttl")
  [ -n "$actions" ] || skip "$collection.$field"
  if grep -qx exempt <<<"$actions"; then
    run gcloud firestore indexes fields update "$field" --collection-group="$collection" \
      --disable-indexes --database="$FIRESTORE_DATABASE" "${P[@]}" --quiet
  fi
  if grep -qx ttl <<<"$actions"; then
    run gcloud firestore fields ttls update "$field" --collection-group="$collection" \
      --enable-ttl --database="$FIRESTORE_DATABASE" "${P[@]}" --async --quiet
  fi
done < <(python3 "$HELPERS" field-overrides "$INDEXES_FILE")
# Exempted by earlier versions, indexed now: the recipe's readers query the buckets' period.
current=$(query gcloud firestore indexes fields describe period \
  --collection-group=analytics_aggregates --database="$FIRESTORE_DATABASE" "${P[@]}" --format=json || true)
if [ -n "$current" ] && [ -z "$(printf '%s' "$current" | python3 "$HELPERS" field-actions 0)" ]; then
  run gcloud firestore indexes fields update period --collection-group=analytics_aggregates \
    --clear-exemption --database="$FIRESTORE_DATABASE" "${P[@]}" --quiet
fi

# ---------------------------------------------------------------------------
note "Pub/Sub"
project_number=$(query gcloud projects describe "$PROJECT_ID" --format='value(projectNumber)' || true)
if [ -z "$project_number" ]; then
  [ "$DRY_RUN" = 1 ] || die "cannot read the number of project $PROJECT_ID (is cloudresourcemanager.googleapis.com enabled?)"
  note "PROJECT_NUMBER below is the project's number, which a dry run does not look up"
fi
PUBSUB_AGENT="serviceAccount:service-${project_number:-PROJECT_NUMBER}@gcp-sa-pubsub.iam.gserviceaccount.com"

ensure_topic() {
  if probe gcloud pubsub topics describe "$1" "${P[@]}"; then
    skip "topic $1"
  else
    run gcloud pubsub topics create "$1" --labels=app=behavioral-analytics "${P[@]}"
  fi
}
ensure_topic "$PUBSUB_TOPIC"
ensure_topic "$PUBSUB_DEAD_LETTER_TOPIC"
# The Pub/Sub service agent publishes poison messages to the dead-letter topic ...
run gcloud pubsub topics add-iam-policy-binding "$PUBSUB_DEAD_LETTER_TOPIC" \
  --member="$PUBSUB_AGENT" --role=roles/pubsub.publisher "${P[@]}" --format=none

if probe gcloud pubsub subscriptions describe "$PUBSUB_DEAD_LETTER_SUBSCRIPTION" "${P[@]}"; then
  skip "subscription $PUBSUB_DEAD_LETTER_SUBSCRIPTION"
else
  run gcloud pubsub subscriptions create "$PUBSUB_DEAD_LETTER_SUBSCRIPTION" \
    --topic="$PUBSUB_DEAD_LETTER_TOPIC" --ack-deadline=60 --message-retention-duration=7d \
    --expiration-period=never --labels=app=behavioral-analytics "${P[@]}"
fi

if probe gcloud pubsub subscriptions describe "$PUBSUB_SUBSCRIPTION" "${P[@]}"; then
  skip "subscription $PUBSUB_SUBSCRIPTION"
else
  ordering=()
  [ "$MESSAGE_ORDERING" = true ] && ordering=(--enable-message-ordering)
  run gcloud pubsub subscriptions create "$PUBSUB_SUBSCRIPTION" --topic="$PUBSUB_TOPIC" \
    --ack-deadline=60 --message-retention-duration=7d --expiration-period=never \
    --min-retry-delay=10s --max-retry-delay=600s \
    --dead-letter-topic="$PUBSUB_DEAD_LETTER_TOPIC" --max-delivery-attempts="$MAX_DELIVERY_ATTEMPTS" \
    "${ordering[@]}" --labels=app=behavioral-analytics "${P[@]}"
fi
# ... and acks them on the source subscription.
run gcloud pubsub subscriptions add-iam-policy-binding "$PUBSUB_SUBSCRIPTION" \
  --member="$PUBSUB_AGENT" --role=roles/pubsub.subscriber "${P[@]}" --format=none
# The worker subscribes to its subscription and the dead-letter one, not to the project.
for subscription in "$PUBSUB_SUBSCRIPTION" "$PUBSUB_DEAD_LETTER_SUBSCRIPTION"; do
  run gcloud pubsub subscriptions add-iam-policy-binding "$subscription" \
    --member="serviceAccount:$WORKER_SA" --role=roles/pubsub.subscriber "${P[@]}" --format=none
done
if [ "$DEPLOY_API" = true ]; then
  # Publisher to send events; viewer for /readyz, which reads the topic (pubsub.topics.get).
  for role in roles/pubsub.publisher roles/pubsub.viewer; do
    run gcloud pubsub topics add-iam-policy-binding "$PUBSUB_TOPIC" \
      --member="serviceAccount:$API_SA" --role="$role" "${P[@]}" --format=none
  done
fi

# ---------------------------------------------------------------------------
note "Container image $IMAGE"
if [ "$UPDATE" = 0 ] && probe gcloud artifacts docker images describe "$IMAGE" "${P[@]}"; then
  skip "image $IMAGE (use --update to rebuild)"
else
  [ "$DRY_RUN" = 1 ] || [ -f "$BUILD_SOURCE/Dockerfile" ] || die "no Dockerfile in $BUILD_SOURCE"
  build_as=()
  [ -n "$BUILD_SERVICE_ACCOUNT" ] && build_as=(--service-account="projects/$PROJECT_ID/serviceAccounts/$BUILD_SERVICE_ACCOUNT")
  run gcloud builds submit "$BUILD_SOURCE" --config="$REPO_ROOT/cloudbuild.yaml" \
    --substitutions="_IMAGE=$IMAGE" "${build_as[@]}" "${P[@]}"
fi

# ---------------------------------------------------------------------------
# The worker's first queries need the composite indexes, which build for minutes.
note "Waiting for the Firestore composite indexes (up to ${INDEX_WAIT_SECONDS}s)"
index_deadline=$(($(date +%s) + INDEX_WAIT_SECONDS))
while :; do
  query gcloud firestore indexes composite list --database="$FIRESTORE_DATABASE" "${P[@]}" \
    --format=json >"$TMP/indexes.json" || true
  [ "$DRY_RUN" = 1 ] && break
  pending=$(python3 "$HELPERS" pending-indexes "$INDEXES_FILE" "$TMP/indexes.json")
  [ "$pending" = 0 ] && break
  [ "$(date +%s)" -lt "$index_deadline" ] || die "$pending composite index(es) still building after ${INDEX_WAIT_SECONDS}s: run the script again later"
  printf '    %s index(es) still building\n' "$pending" >&2
  sleep 20
done

# ---------------------------------------------------------------------------
env_vars="BA_BACKEND=gcp,GOOGLE_CLOUD_PROJECT=$PROJECT_ID,PUBSUB_TOPIC=$PUBSUB_TOPIC"
env_vars+=",PUBSUB_SUBSCRIPTION=$PUBSUB_SUBSCRIPTION,PUBSUB_DEAD_LETTER_TOPIC=$PUBSUB_DEAD_LETTER_TOPIC"
env_vars+=",PUBSUB_DEAD_LETTER_SUBSCRIPTION=$PUBSUB_DEAD_LETTER_SUBSCRIPTION"
env_vars+=",FIRESTORE_DATABASE=$FIRESTORE_DATABASE,BA_TIMEZONE=$BA_TIMEZONE"
env_vars+=",BA_RAW_RETENTION_DAYS=$RAW_RETENTION_DAYS,BA_METRICS_EXPORTER=cloud-monitoring"
# Both services read the shards: the API's freshness and series sum them.
env_vars+=",BA_FIRESTORE_COUNTER_SHARDS=$FIRESTORE_COUNTER_SHARDS"
# An ordered subscription orders by key: the API sends keys only with BA_ORDERING.
env_vars+=",BA_ORDERING=$MESSAGE_ORDERING"
# Labels of the custom metrics: the dashboard filters on the worker pool's name.
env_vars+=",REGION=$REGION"

worker_env="$env_vars,WORKER_POOL_NAME=$WORKER_POOL_NAME,BA_FLUSH_INTERVAL=$FLUSH_INTERVAL"
worker_env+=",BA_MAX_DELIVERY_ATTEMPTS=$MAX_DELIVERY_ATTEMPTS"
worker_secrets=()
if [ -n "$HASHED_FIELDS" ]; then
  note "Hash key in Secret Manager"
  if probe gcloud secrets describe "$HASH_SALT_SECRET" "${P[@]}"; then
    skip "secret $HASH_SALT_SECRET (kept: another key would hash the same value differently)"
  else
    python3 "$HELPERS" new-key | tr -d '\n' >"$TMP/key"
    run gcloud secrets create "$HASH_SALT_SECRET" --replication-policy=automatic \
      --data-file="$TMP/key" --labels=app=behavioral-analytics "${P[@]}"
    rm -f "$TMP/key"
  fi
  run gcloud secrets add-iam-policy-binding "$HASH_SALT_SECRET" \
    --member="serviceAccount:$WORKER_SA" --role=roles/secretmanager.secretAccessor "${P[@]}" \
    --format=none
  # gcloud splits --set-env-vars on commas: another delimiter for the list of paths.
  worker_env="^|^${worker_env//,/|}|BA_HASHED_FIELDS=$HASHED_FIELDS"
  worker_secrets=(--set-secrets="BA_HASH_SALT=$HASH_SALT_SECRET:latest")
fi

note "Worker pool $WORKER_POOL_NAME"
if [ "$UPDATE" = 0 ] && probe gcloud beta run worker-pools describe "$WORKER_POOL_NAME" --region="$REGION" "${P[@]}"; then
  skip "worker pool $WORKER_POOL_NAME (use --update to redeploy)"
else
  run gcloud beta run worker-pools deploy "$WORKER_POOL_NAME" --image="$IMAGE" --region="$REGION" \
    --service-account="$WORKER_SA" --cpu="$CPU_LIMIT" --memory="$MEMORY_LIMIT" \
    --scaling="$MIN_INSTANCES" --set-env-vars="$worker_env" "${worker_secrets[@]}" \
    --labels=app=behavioral-analytics "${P[@]}" --quiet
fi

# ---------------------------------------------------------------------------
if [ "$DEPLOY_API" = true ]; then
  note "API keys in Secret Manager"
  for secret in "$API_WRITE_KEYS_SECRET" "$API_READ_KEYS_SECRET"; do
    if probe gcloud secrets describe "$secret" "${P[@]}"; then
      skip "secret $secret"
    else
      python3 "$HELPERS" new-key | tr -d '\n' >"$TMP/key"
      run gcloud secrets create "$secret" --replication-policy=automatic --data-file="$TMP/key" \
        --labels=app=behavioral-analytics "${P[@]}"
      rm -f "$TMP/key"
    fi
    run gcloud secrets add-iam-policy-binding "$secret" --member="serviceAccount:$API_SA" \
      --role=roles/secretmanager.secretAccessor "${P[@]}" --format=none
  done

  note "API service $API_SERVICE_NAME"
  if [ "$UPDATE" = 0 ] && probe gcloud run services describe "$API_SERVICE_NAME" --region="$REGION" "${P[@]}"; then
    skip "service $API_SERVICE_NAME (use --update to redeploy)"
  else
    # Cloud Run's front end appends the caller's address to X-Forwarded-For: one hop to trust,
    # or every browser call's context.ip (and country) would be the front end's.
    api_env="$env_vars,BA_API_HOST=0.0.0.0,BA_TRUSTED_PROXY_HOPS=1"
    if [ -n "$CORS_ORIGINS" ]; then
      # gcloud splits --set-env-vars on commas: another delimiter for a list of origins
      # (gcloud topic escaping).
      api_env="^|^${api_env//,/|}|BA_CORS_ORIGINS=$CORS_ORIGINS"
    fi
    run gcloud run deploy "$API_SERVICE_NAME" --image="$IMAGE" --region="$REGION" \
      --service-account="$API_SA" --command=behavioral-analytics --args=api --port=8080 \
      --set-env-vars="$api_env" \
      --startup-probe=httpGet.path=/healthz,periodSeconds=2,timeoutSeconds=1,failureThreshold=30 \
      --liveness-probe=httpGet.path=/healthz,periodSeconds=30,timeoutSeconds=5,failureThreshold=3 \
      --set-secrets="BA_WRITE_KEYS=$API_WRITE_KEYS_SECRET:latest,BA_READ_KEYS=$API_READ_KEYS_SECRET:latest" \
      --no-invoker-iam-check --max-instances=10 --labels=app=behavioral-analytics "${P[@]}" --quiet
  fi
fi

# ---------------------------------------------------------------------------
if [ "$ENABLE_MONITORING" = true ]; then
  note "Monitoring: logs-based error metric, dashboard, alert policies"
  mapfile -t MVARS < <(monitoring_vars)
  while IFS=$'\t' read -r name description filter; do
    if probe gcloud logging metrics describe "$name" "${P[@]}"; then
      skip "log metric $name"
    else
      run gcloud logging metrics create "$name" --description="$description" \
        --log-filter="$filter" "${P[@]}"
    fi
  done < <(python3 "$HELPERS" log-metrics "$MODULE_DIR/monitoring/alerting.json.tftpl" "${MVARS[@]}")

  python3 "$HELPERS" render "$MODULE_DIR/monitoring/dashboard.json.tftpl" "${MVARS[@]}" >"$TMP/dashboard.json"
  dashboard_name="behavioral-analytics ($WORKER_POOL_NAME)"
  existing=$(query gcloud monitoring dashboards list "${P[@]}" \
    --filter="displayName=\"$dashboard_name\"" --format='value(name)' || true)
  if [ -n "$existing" ]; then
    skip "dashboard $dashboard_name"
  else
    run gcloud monitoring dashboards create --config-from-file="$TMP/dashboard.json" "${P[@]}"
  fi

  while IFS=$'\t' read -r display path; do
    existing=$(query gcloud alpha monitoring policies list "${P[@]}" \
      --filter="displayName=\"$display\"" --format='value(name)' || true)
    if [ -n "$existing" ]; then
      skip "alert policy $display"
    else
      run gcloud alpha monitoring policies create --policy-from-file="$path" "${P[@]}"
    fi
  done < <(python3 "$HELPERS" alert-policies "$MODULE_DIR/monitoring/alerting.json.tftpl" "$TMP" \
    "$NOTIFICATION_CHANNELS" "${MVARS[@]}")
fi

if [ "$DRY_RUN" = 1 ]; then
  note "dry run finished: nothing was created or changed (files named above are in $TMP)"
  exit 0
fi
note "done"
if [ "$DRY_RUN" = 0 ]; then
  cat >&2 <<MSG
Deployed. Check it with:
  gcloud beta run worker-pools describe $WORKER_POOL_NAME --region=$REGION --project=$PROJECT_ID
  gcloud pubsub subscriptions describe $PUBSUB_SUBSCRIPTION --project=$PROJECT_ID
  ./scripts/smoke_test.sh
MSG
fi
