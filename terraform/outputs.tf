output "bucket_name" {
  description = "The lake bucket."
  value       = aws_s3_bucket.lake.id
}

output "lake_uri" {
  description = "DX7LAKE_LAKE for this deployment."
  value       = local.lake_uri
}

output "kms_key_arn" {
  description = "The KMS key that encrypts the lake."
  value       = aws_kms_key.lake.arn
}

output "instance_id" {
  description = "The EC2 instance that runs the stack."
  value       = aws_instance.stack.id
}

output "airflow_url" {
  description = "Airflow UI (reachable from allowed_cidr only)."
  value       = "http://${aws_instance.stack.public_dns}:8080"
}

output "metabase_url" {
  description = "Metabase (reachable from allowed_cidr only)."
  value       = "http://${aws_instance.stack.public_dns}:3000"
}

output "ssm_session" {
  description = "Shell on the instance through SSM Session Manager (no SSH); the stack's .env is in /opt/dx7lake."
  value       = "aws ssm start-session --region ${var.region} --target ${aws_instance.stack.id}"
}

output "worker_ids" {
  description = "The Celery worker instances (worker_count), each reachable through SSM Session Manager."
  value       = aws_instance.worker[*].id
}
