# Terraform and provider versions. No lock file is committed yet: the first `terraform init`
# writes `.terraform.lock.hcl`; commit it so every operator and CI run the same builds.
terraform {
  required_version = ">= 1.5.0, < 2.0.0"

  required_providers {
    google = {
      source  = "hashicorp/google"
      version = "~> 6.20"
    }
    # 2.x: the `kubernetes { ... }` block syntax used in providers.tf (3.x changed it).
    helm = {
      source  = "hashicorp/helm"
      version = "~> 2.17"
    }
    kubernetes = {
      source  = "hashicorp/kubernetes"
      version = "~> 2.36"
    }
  }
}
