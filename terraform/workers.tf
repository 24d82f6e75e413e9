# worker_count extra instances that run only a Celery worker of the stack: they reach the main
# instance's broker (Redis), its Postgres (Airflow's metadata DB and the warehouse) and its
# execution API over the VPC, and the lake bucket through their own instance profile. Their
# security group admits nothing; the main instance admits those three ports from it alone.
# The stack's secrets reach them through one SSM SecureString the main instance writes at
# first boot (never through Terraform, so never in its state).

locals {
  # the main instance's services a worker uses, opened from the worker group only
  worker_ports = {
    postgres      = 5432
    redis         = 6379
    execution_api = 8080
  }
  stack_env_parameter = "/${var.name}/stack-env"
  stack_env_arn       = "arn:${data.aws_partition.current.partition}:ssm:${var.region}:${data.aws_caller_identity.current.account_id}:parameter${local.stack_env_parameter}"
}

resource "aws_security_group" "worker" {
  name        = "${var.name}-worker"
  description = "dx7lake Celery workers: nothing in; the main instance's broker, Postgres and execution API, HTTPS/HTTP out"
  vpc_id      = data.aws_vpc.default.id
}

resource "aws_vpc_security_group_ingress_rule" "from_workers" {
  for_each                     = var.worker_count > 0 ? local.worker_ports : {}
  security_group_id            = aws_security_group.stack.id
  description                  = "${each.key} from the Celery workers only"
  referenced_security_group_id = aws_security_group.worker.id
  ip_protocol                  = "tcp"
  from_port                    = each.value
  to_port                      = each.value
}

resource "aws_vpc_security_group_egress_rule" "to_stack" {
  for_each                     = local.worker_ports
  security_group_id            = aws_security_group.worker.id
  description                  = "${each.key} on the main instance"
  referenced_security_group_id = aws_security_group.stack.id
  ip_protocol                  = "tcp"
  from_port                    = each.value
  to_port                      = each.value
}

resource "aws_vpc_security_group_egress_rule" "worker_out" {
  for_each          = local.egress_ports
  security_group_id = aws_security_group.worker.id
  description       = "${each.key} out to the internet"
  cidr_ipv4         = "0.0.0.0/0"
  ip_protocol       = "tcp"
  from_port         = each.value
  to_port           = each.value
}

resource "aws_instance" "worker" {
  #checkov:skip=CKV_AWS_88:The public address is for egress (no NAT in the default VPC); the worker security group admits nothing
  count                       = var.worker_count
  ami                         = local.instance.ami
  instance_type               = var.worker_instance_type
  subnet_id                   = local.instance.subnet_id
  vpc_security_group_ids      = [aws_security_group.worker.id]
  iam_instance_profile        = aws_iam_instance_profile.worker.name
  associate_public_ip_address = true
  ebs_optimized               = local.instance.ebs_optimized
  monitoring                  = local.instance.monitoring
  user_data_replace_on_change = true

  user_data = templatefile("${path.module}/worker_user_data.sh.tftpl", {
    repo_url            = var.repo_url
    repo_ref            = var.repo_ref
    region              = var.region
    main_host           = aws_instance.stack.private_ip
    worker_name         = "${var.name}-worker-${count.index + 1}"
    stack_env_parameter = local.stack_env_parameter
  })

  metadata_options {
    http_endpoint               = local.instance.http_endpoint
    http_tokens                 = local.instance.http_tokens
    http_put_response_hop_limit = local.instance.http_hop_limit
  }

  root_block_device {
    volume_type           = local.instance.root_volume_type
    volume_size           = local.instance.root_volume_gb
    encrypted             = local.instance.root_encrypted
    delete_on_termination = local.instance.root_delete_on_terminate
  }

  tags = {
    Name = "${var.name}-worker-${count.index + 1}"
  }

  lifecycle {
    ignore_changes = [ami]
  }
}

# the main instance stores the stack's .env (passwords, Fernet key, JWT secret) here at first
# boot; the workers read it, and nothing else can
data "aws_iam_policy_document" "stack_env_write" {
  statement {
    sid       = "StoreTheStackSecretsForTheWorkers"
    actions   = ["ssm:PutParameter"]
    resources = [local.stack_env_arn]
  }
}

data "aws_iam_policy_document" "stack_env_read" {
  statement {
    sid       = "ReadTheStackSecrets"
    actions   = ["ssm:GetParameter"]
    resources = [local.stack_env_arn]
  }
}

resource "aws_iam_role_policy" "stack_env_write" {
  count  = var.worker_count > 0 ? 1 : 0
  name   = "${var.name}-stack-env-write"
  role   = aws_iam_role.instance.id
  policy = data.aws_iam_policy_document.stack_env_write.json
}

resource "aws_iam_role_policy" "stack_env_read" {
  name   = "${var.name}-stack-env-read"
  role   = aws_iam_role.worker.id
  policy = data.aws_iam_policy_document.stack_env_read.json
}
