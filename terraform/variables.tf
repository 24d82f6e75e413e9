variable "region" {
  description = "AWS region for the bucket and the instance."
  type        = string
  default     = "eu-west-1"

  validation {
    condition     = can(regex("^[a-z]{2}(-gov)?-[a-z]+-[0-9]$", var.region))
    error_message = "region must be an AWS region name such as eu-west-1."
  }
}

variable "name" {
  description = "Name prefix for every resource (lower case, digits and dashes)."
  type        = string
  default     = "dx7lake"

  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{1,30}[a-z0-9]$", var.name))
    error_message = "name must be 3-32 characters of lower-case letters, digits and dashes, starting with a letter."
  }
}

variable "bucket_name" {
  description = "Name of the lake bucket; empty for <name>-lake-<account id>-<region>."
  type        = string
  default     = ""

  validation {
    condition     = var.bucket_name == "" || can(regex("^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$", var.bucket_name))
    error_message = "bucket_name must be a valid S3 bucket name (3-63 characters: a-z, 0-9, dots and dashes)."
  }
}

variable "allowed_cidr" {
  description = "The only CIDR block allowed to reach the Airflow (8080) and Metabase (3000) ports, e.g. your office's /32."
  type        = string

  validation {
    condition     = can(cidrhost(var.allowed_cidr, 0)) && !contains(["0.0.0.0/0", "::/0"], var.allowed_cidr)
    error_message = "allowed_cidr must be a valid CIDR block narrower than the whole internet."
  }
}

variable "instance_type" {
  description = "EC2 instance type: the stack (Airflow, Postgres, Metabase, renders) wants at least 8 GiB of memory."
  type        = string
  default     = "m7i.xlarge"

  validation {
    condition     = can(regex("^[a-z][a-z0-9-]*\\.[a-z0-9]+$", var.instance_type))
    error_message = "instance_type must look like an EC2 type, e.g. m7i.xlarge."
  }
}

variable "worker_count" {
  description = "Extra instances that run only a Celery worker against the main instance (0: the main instance runs every task, LocalExecutor)."
  type        = number
  default     = 0

  validation {
    condition     = var.worker_count >= 0 && var.worker_count <= 20 && floor(var.worker_count) == var.worker_count
    error_message = "worker_count must be a whole number from 0 to 20."
  }
}

variable "worker_instance_type" {
  description = "EC2 instance type of each worker: rendering is CPU-bound, one process per core."
  type        = string
  default     = "c7i.xlarge"

  validation {
    condition     = can(regex("^[a-z][a-z0-9-]*\\.[a-z0-9]+$", var.worker_instance_type))
    error_message = "worker_instance_type must look like an EC2 type, e.g. c7i.xlarge."
  }
}

variable "root_volume_gb" {
  description = "Size of the encrypted gp3 root volume in GiB (Docker images, Postgres, Airflow logs)."
  type        = number
  default     = 60

  validation {
    condition     = var.root_volume_gb >= 30 && var.root_volume_gb <= 2000
    error_message = "root_volume_gb must be between 30 and 2000."
  }
}

variable "ami_ssm_parameter" {
  description = "SSM public parameter that names the AMI (Ubuntu 24.04 LTS by default: docker.io and docker-compose-v2 from its archive)."
  type        = string
  default     = "/aws/service/canonical/ubuntu/server/24.04/stable/current/amd64/hvm/ebs-gp3/ami-id"

  validation {
    condition     = startswith(var.ami_ssm_parameter, "/aws/service/")
    error_message = "ami_ssm_parameter must be an AWS public parameter under /aws/service/."
  }
}

variable "repo_url" {
  description = "HTTPS URL of the dx7lake git repository the instance clones and runs."
  type        = string

  validation {
    condition     = can(regex("^https://", var.repo_url))
    error_message = "repo_url must be an https:// git URL."
  }
}

variable "repo_ref" {
  description = "Branch, tag or commit of repo_url to deploy."
  type        = string
  default     = "main"

  validation {
    condition     = can(regex("^[A-Za-z0-9._/-]+$", var.repo_ref))
    error_message = "repo_ref must be a plain git ref (letters, digits, . _ / -)."
  }
}

variable "noncurrent_version_days" {
  description = "Days a replaced or deleted object version is kept before it expires."
  type        = number
  default     = 30

  validation {
    condition     = var.noncurrent_version_days >= 1
    error_message = "noncurrent_version_days must be at least 1."
  }
}

variable "tags" {
  description = "Extra tags for every resource."
  type        = map(string)
  default     = {}
}
