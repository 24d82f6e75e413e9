# One instance that runs the docker-compose stack against the lake bucket.
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
  ami                         = data.aws_ssm_parameter.ami.value
  instance_type               = var.instance_type
  subnet_id                   = data.aws_subnets.default.ids[0]
  vpc_security_group_ids      = [aws_security_group.stack.id]
  iam_instance_profile        = aws_iam_instance_profile.instance.name
  associate_public_ip_address = true
  ebs_optimized               = true
  monitoring                  = true
  user_data_replace_on_change = true

  user_data = templatefile("${path.module}/user_data.sh.tftpl", {
    repo_url = var.repo_url
    repo_ref = var.repo_ref
    lake_uri = local.lake_uri
    region   = var.region
  })

  metadata_options {
    http_endpoint               = "enabled"
    http_tokens                 = "required"
    http_put_response_hop_limit = 2 # containers (one bridge hop) reach IMDSv2 for the role's credentials
  }

  root_block_device {
    volume_type           = "gp3"
    volume_size           = var.root_volume_gb
    encrypted             = true
    delete_on_termination = true
  }

  tags = {
    Name = "${var.name}-stack"
  }

  lifecycle {
    ignore_changes = [ami]
  }
}
