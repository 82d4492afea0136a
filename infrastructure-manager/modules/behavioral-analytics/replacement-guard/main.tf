# Refuses a plan that would replace a resource whose replacement loses data (the events
# subscription: its backlog goes with it), unless `allow` is true.
#
# Terraform has no expression for "the value in the state", and lifecycle arguments cannot
# be variables, so the guard remembers the identity it was created with: a terraform_data
# whose input changes are ignored keeps the first identity as its output. The output's
# precondition compares it with the identity asked for now.
# - First apply: the output is unknown at plan time, so the check runs at apply, when it holds.
# - A later change of identity without `allow`: the plan fails, before anything is touched.
# - With `allow = true`: the plan passes and the memory is replaced by the new identity, so
#   the next plan with `allow = false` passes again.
# - `terraform destroy` (and `infra-manager deployments delete`) check no output: unaffected.
# Only Terraform's built-in provider is used (tests/deploy runs it offline).

variable "identity" {
  description = "What the guarded resource is, as a map of strings; a change means a replacement."
  type        = map(string)
}

variable "allow" {
  description = "Let the identity change (the guarded resource will be replaced)."
  type        = bool
  default     = false
}

variable "what" {
  description = "Names the guarded resource in the error message."
  type        = string
}

resource "terraform_data" "memory" {
  input            = var.identity
  triggers_replace = var.allow ? var.identity : null

  lifecycle {
    ignore_changes = [input]
  }
}

output "identity" {
  description = "The identity the guarded resource may have."
  value       = var.identity

  precondition {
    condition     = var.allow || terraform_data.memory.output == var.identity
    error_message = "This change replaces ${var.what}: ${jsonencode(terraform_data.memory.output)} -> ${jsonencode(var.identity)}. Its undelivered messages would be lost. Drain it first, then apply with allow_subscription_replacement = true (and set it back to false afterwards)."
  }
}
