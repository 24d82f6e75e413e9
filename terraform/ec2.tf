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

resource "aws_vpc_security_group_ingress_rule" "airflow" {
  security_group_id = aws_security_group.stack.id
  description       = "Airflow UI and API from the allowed CIDR"
  cidr_ipv4         = var.allowed_cidr
  ip_protocol       = "tcp"
  from_port         = 8080
  to_port           = 8080
}

resource "aws_vpc_security_group_ingress_rule" "metabase" {
  security_group_id = aws_security_group.stack.id
  description       = "Metabase from the allowed CIDR"
  cidr_ipv4         = var.allowed_cidr
  ip_protocol       = "tcp"
  from_port         = 3000
  to_port           = 3000
}

resource "aws_vpc_security_group_egress_rule" "https" {
  security_group_id = aws_security_group.stack.id
  description       = "HTTPS out: S3, SSM, container registries, PyPI"
  cidr_ipv4         = "0.0.0.0/0"
  ip_protocol       = "tcp"
  from_port         = 443
  to_port           = 443
}

resource "aws_vpc_security_group_egress_rule" "http" {
  security_group_id = aws_security_group.stack.id
  description       = "HTTP out: the Ubuntu package archive"
  cidr_ipv4         = "0.0.0.0/0"
  ip_protocol       = "tcp"
  from_port         = 80
  to_port           = 80
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
