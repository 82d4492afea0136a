# ---------------------------------------------------------------------------
# Secrets made here, each with one random value: the API's write and read keys
# (api.tf) and, when var.hashed_fields is not empty, the worker's hash key: the worker
# replaces those property paths with their HMAC-SHA256 at ingestion (BA_HASHED_FIELDS),
# keyed by BA_HASH_SALT. Each is keyed by the environment variable that carries it and
# readable by the one service account that runs with it.
# ---------------------------------------------------------------------------
locals {
  worker_secrets = length(var.hashed_fields) > 0 ? {
    BA_HASH_SALT = var.hash_salt_secret_id
  } : {}
  generated_secrets = merge(local.api_secrets, local.worker_secrets)
  secret_readers = merge(
    { for name in keys(local.api_secrets) : name => google_service_account.api[0].member },
    { for name in keys(local.worker_secrets) : name => google_service_account.worker.member },
  )
}

resource "google_secret_manager_secret" "generated" {
  #checkov:skip=CKV_GCP_125:Google-managed encryption; keys are rotated by adding versions.
  for_each = local.generated_secrets

  project   = var.project_id
  secret_id = each.value
  labels    = local.labels

  replication {
    auto {}
  }

  depends_on = [google_project_service.apis]
}

# One random value per secret to start with. It is in the Terraform state (keep the state
# private); the services read "latest". Rotate an API key by adding a version; a new hash key
# changes every hash computed from then on, so values stored before would no longer match.
resource "random_password" "generated" {
  for_each = local.generated_secrets

  length  = 40
  special = false
}

resource "google_secret_manager_secret_version" "generated" {
  for_each = local.generated_secrets

  secret      = google_secret_manager_secret.generated[each.key].id
  secret_data = random_password.generated[each.key].result

  lifecycle {
    # Versions added later (rotation) are not Terraform's business.
    ignore_changes = [secret_data]
  }
}

resource "google_secret_manager_secret_iam_member" "generated_accessor" {
  for_each = local.generated_secrets

  project   = var.project_id
  secret_id = google_secret_manager_secret.generated[each.key].secret_id
  role      = "roles/secretmanager.secretAccessor"
  member    = local.secret_readers[each.key]
}

# The API's keys were resources of their own before the hash key joined them.
moved {
  from = google_secret_manager_secret.api_keys
  to   = google_secret_manager_secret.generated
}

moved {
  from = random_password.api_keys
  to   = random_password.generated
}

moved {
  from = google_secret_manager_secret_version.api_keys
  to   = google_secret_manager_secret_version.generated
}

moved {
  from = google_secret_manager_secret_iam_member.api_keys_accessor
  to   = google_secret_manager_secret_iam_member.generated_accessor
}
