# A Cloud Run worker pool instance's CPU and memory limits, checked as a pair at plan time.
#
# Cloud Run takes each CPU count with a range of memory only (worker pools, second generation,
# https://cloud.google.com/run/docs/configuring/workerpools/cpu and .../memory-limits):
#   1 CPU: 512 MiB to 4 GiB    2 CPUs: 512 MiB to 8 GiB    4 CPUs: 2 to 16 GiB
#   6 CPUs: 4 to 24 GiB        8 CPUs: 4 to 32 GiB
# A pair outside them is refused by the API when the worker pool is created or updated, after
# the plan was accepted and other resources were made. A variable's validation sees only that
# variable in Terraform 1.5 (Infrastructure Manager's), so the pair is checked by an output's
# precondition: `terraform plan` fails, before anything is touched.
# Only Terraform's language is used (tests/deploy runs it offline).

variable "cpu" {
  description = "CPUs per instance: 1, 2, 4, 6 or 8."
  type        = string
}

variable "memory" {
  description = "Memory per instance: a whole number of Mi or Gi, such as 512Mi or 2Gi."
  type        = string
}

locals {
  # The memory range each CPU count takes, in MiB.
  memory_range_mib = {
    "1" = [512, 4096]
    "2" = [512, 8192]
    "4" = [2048, 16384]
    "6" = [4096, 24576]
    "8" = [4096, 32768]
  }
  quantity   = regex("^([0-9]+)(Mi|Gi)$", var.memory)
  memory_mib = tonumber(local.quantity[0]) * (local.quantity[1] == "Gi" ? 1024 : 1)
  range_mib  = lookup(local.memory_range_mib, var.cpu, [0, -1])
}

output "limits" {
  description = "The container's resource limits: {cpu, memory}."
  value       = { cpu = var.cpu, memory = var.memory }

  precondition {
    condition     = local.memory_mib >= local.range_mib[0] && local.memory_mib <= local.range_mib[1]
    error_message = "cpu_limit = ${var.cpu} with memory_limit = ${var.memory}: Cloud Run worker pools take 512Mi to 4Gi with 1 CPU, 512Mi to 8Gi with 2, 2Gi to 16Gi with 4, 4Gi to 24Gi with 6 and 4Gi to 32Gi with 8 (https://cloud.google.com/run/docs/configuring/workerpools/cpu). Raise memory_limit with cpu_limit, or lower cpu_limit."
  }
}
