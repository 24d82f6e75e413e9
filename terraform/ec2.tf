# One instance that runs the docker-compose stack against the lake bucket (and, with
# worker_count > 0, Celery workers on instances of their own: workers.tf).
# No SSH: no key pair, no port 22; shell access is SSM Session Manager (outputs.ssm_session).

data "aws_ssm_parameter" "ami" {
  name = var.ami_ssm_parameter
}

data "aws_vpc" "default" {
  default = true
}

data "aws_subnets" "default" {
  filter {
    name   = "vpc-id"
    values = [data.aws_vpc.default.id]
  }
  filter {
    name   = "default-for-az"
    values = ["true"]
  }
}

resource "aws_security_group" "stack" {
  name        = "${var.name}-stack"
  description = "dx7lake: Airflow and Metabase from allowed_cidr only; HTTPS/HTTP out for images, packages and S3"
  vpc_id      = data.aws_vpc.default.id
}

locals {
  # the only ways in: the two UIs, from allowed_cidr
  ui_ports = {
    airflow  = 8080
    metabase = 3000
  }
  # the only ways out: S3, SSM, container registries, PyPI (443); the Ubuntu archive (80)
  egress_ports = {
    https = 443
    http  = 80
  }
  # what every instance shares, the stack's and each worker's: the AMI, IMDSv2 only, an
  # encrypted gp3 root volume, detailed monitoring, EBS optimisation, no key pair
  instance = {
    ami                      = data.aws_ssm_parameter.ami.value
    subnet_id                = data.aws_subnets.default.ids[0]
    ebs_optimized            = true
    monitoring               = true
    http_endpoint            = "enabled"
    http_tokens              = "required"
    http_hop_limit           = 2 # containers (one bridge hop) reach IMDSv2 for the role's credentials
    root_volume_type         = "gp3"
    root_volume_gb           = var.root_volume_gb
    root_encrypted           = true
    root_delete_on_terminate = true
  }
}

resource "aws_vpc_security_group_ingress_rule" "ui" {
  for_each          = local.ui_ports
  security_group_id = aws_security_group.stack.id
  description       = "${each.key} UI from the allowed CIDR"
  cidr_ipv4         = var.allowed_cidr
  ip_protocol       = "tcp"
  from_port         = each.value
  to_port           = each.value
}

resource "aws_vpc_security_group_egress_rule" "out" {
  for_each          = local.egress_ports
  security_group_id = aws_security_group.stack.id
  description       = "${each.key} out to the internet"
  cidr_ipv4         = "0.0.0.0/0"
  ip_protocol       = "tcp"
  from_port         = each.value
  to_port           = each.value
}

resource "aws_instance" "stack" {
  #checkov:skip=CKV_AWS_88:The UIs are reached on the public address, and the security group admits allowed_cidr only
  ami                         = local.instance.ami
  instance_type               = var.instance_type
  subnet_id                   = local.instance.subnet_id
  vpc_security_group_ids      = [aws_security_group.stack.id]
  iam_instance_profile        = aws_iam_instance_profile.instance.name
  associate_public_ip_address = true
  ebs_optimized               = local.instance.ebs_optimized
  monitoring                  = local.instance.monitoring
  user_data_replace_on_change = true

  user_data = templatefile("${path.module}/user_data.sh.tftpl", {
    repo_url            = var.repo_url
    repo_ref            = var.repo_ref
    lake_uri            = local.lake_uri
    region              = var.region
    worker_count        = var.worker_count
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
    Name = "${var.name}-stack"
  }

  lifecycle {
    ignore_changes = [ami]
  }
}
