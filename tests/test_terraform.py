"""terraform/, checked without AWS: `terraform fmt`, checkov, and the HCL read with python-hcl2.

Providers cannot be downloaded here, so there is no `terraform validate` or plan; checkov
and the parsed HCL stand in for them (AWS itself is the one part that cannot run here).
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import tempfile

import hcl2
import pytest

from conftest import REPO, require_tool

TF = REPO / "terraform"
CHECKOV = REPO / ".venv-checkov" / "bin" / "checkov"


def _clean(value):
    """python-hcl2 keeps HCL's quotes and block markers; drop both."""
    if isinstance(value, dict):
        return {_clean(k): _clean(v) for k, v in value.items() if k != "__is_block__"}
    if isinstance(value, list):
        return [_clean(v) for v in value]
    if isinstance(value, str) and len(value) >= 2 and value[0] == value[-1] == '"':
        return value[1:-1]
    return value


@pytest.fixture(scope="module")
def hcl() -> dict[str, dict]:
    """Every top-level block of terraform/*.tf: ``{"resource": {type: {name: body}}, "variable": {...}, ...}``."""
    merged: dict[str, dict] = {}
    for path in sorted(TF.glob("*.tf")):
        with path.open() as fh:
            doc = _clean(hcl2.load(fh))
        for kind, blocks in doc.items():
            for block in blocks:
                for first, body in block.items():
                    if kind in ("resource", "data"):
                        for name, inner in body.items():
                            merged.setdefault(kind, {}).setdefault(first, {})[name] = inner
                    else:
                        merged.setdefault(kind, {})[first] = body
    return merged


def _one(items: list | dict) -> dict:
    return items[0] if isinstance(items, list) else items


def test_terraform_fmt_is_clean():
    # HashiCorp's release binary: neither Debian nor PyPI packages a current terraform
    binary = require_tool("terraform", None)
    result = subprocess.run([binary, "fmt", "-check", "-recursive", "-diff", str(TF)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize(
    ("directory", "framework", "tfvars"),
    [
        ("terraform", "terraform", None),
        # the worker instances exist only with worker_count > 0: checkov sees them only then
        ("terraform", "terraform", 'worker_count = 2\nallowed_cidr = "203.0.113.7/32"\n'),
        ("docker", "dockerfile", None),
    ],
)
def test_checkov_passes_and_every_skip_has_a_reason(directory, framework, tfvars, tmp_path):
    assert CHECKOV.exists(), "make test builds .venv-checkov (the Makefile target $(CHECKOV_VENV)/bin/checkov)"
    cmd = [str(CHECKOV), "--directory", str(REPO / directory), "--framework", framework]
    cmd += ["--skip-download", "--output", "json"]
    if tfvars:
        (tmp_path / "workers.tfvars").write_text(tfvars)
        cmd += ["--var-file", str(tmp_path / "workers.tfvars")]
    result = subprocess.run(cmd, capture_output=True, text=True)
    report = json.loads(result.stdout)
    summary = report["summary"]
    failed = [f"{c['check_id']} {c['resource']}" for c in report["results"]["failed_checks"]]
    assert summary["failed"] == 0 and summary["parsing_errors"] == 0, failed
    assert summary["passed"] > 0
    for check in report["results"]["skipped_checks"]:
        assert len(check["check_result"].get("suppress_comment", "").split()) >= 5, (
            f"{check['check_id']} skipped without a reason"
        )


def test_bucket_is_private_versioned_encrypted_and_owner_enforced(hcl):
    res = hcl["resource"]
    assert _one(res["aws_s3_bucket_versioning"]["lake"]["versioning_configuration"])["status"] == "Enabled"
    sse = _one(_one(res["aws_s3_bucket_server_side_encryption_configuration"]["lake"]["rule"]))
    default = _one(sse["apply_server_side_encryption_by_default"])
    assert default["sse_algorithm"] == "aws:kms" and "aws_kms_key.lake" in default["kms_master_key_id"]
    assert res["aws_kms_key"]["lake"]["enable_key_rotation"] is True
    owner = _one(res["aws_s3_bucket_ownership_controls"]["lake"]["rule"])
    assert owner["object_ownership"] == "BucketOwnerEnforced"
    block = res["aws_s3_bucket_public_access_block"]["lake"]
    flags = ("block_public_acls", "block_public_policy", "ignore_public_acls", "restrict_public_buckets")
    assert all(block[flag] is True for flag in flags)
    assert "acl" not in res["aws_s3_bucket"]["lake"]


def test_bucket_policy_denies_plain_http(hcl):
    policy = hcl["data"]["aws_iam_policy_document"]["lake_bucket"]
    assert "lake_bucket" in hcl["resource"]["aws_s3_bucket_policy"]["lake"]["policy"]
    (statement,) = policy["statement"]
    condition = _one(statement["condition"])
    assert statement["effect"] == "Deny" and statement["actions"] == ["s3:*"]
    assert (condition["variable"], condition["values"]) == ("aws:SecureTransport", ["false"])
    assert any(r.endswith("/*") for r in statement["resources"]) and len(statement["resources"]) == 2


def test_lifecycle_aborts_stale_multipart_uploads(hcl):
    rules = hcl["resource"]["aws_s3_bucket_lifecycle_configuration"]["lake"]["rule"]
    aborts = [_one(r["abort_incomplete_multipart_upload"]) for r in rules if "abort_incomplete_multipart_upload" in r]
    assert aborts and all(0 < a["days_after_initiation"] <= 7 for a in aborts)
    assert all(r["status"] == "Enabled" for r in rules)


def test_instance_hardening(hcl):
    shared = hcl["locals"]["instance"]
    assert shared["ami"] == "${data.aws_ssm_parameter.ami.value}"
    assert hcl["variable"]["ami_ssm_parameter"]["default"].startswith("/aws/service/")
    assert (shared["http_endpoint"], shared["http_tokens"]) == ("enabled", "required")
    assert shared["root_volume_type"] == "gp3" and shared["root_encrypted"] is True
    assert shared["monitoring"] is True and shared["ebs_optimized"] is True
    instances = hcl["resource"]["aws_instance"]
    assert set(instances) == {"stack", "worker"}
    for name, instance in instances.items():
        # every hardening value comes from the one shared local, none is restated
        for key in ("ami", "subnet_id", "ebs_optimized", "monitoring"):
            assert instance[key] == f"${{local.instance.{key}}}", (name, key)
        metadata, root = _one(instance["metadata_options"]), _one(instance["root_block_device"])
        assert metadata["http_tokens"] == "${local.instance.http_tokens}", name
        assert root["encrypted"] == "${local.instance.root_encrypted}", name
        assert all(str(v).startswith("${local.instance.") for v in [*metadata.values(), *root.values()]), name
        assert "key_name" not in instance, name  # no SSH key: Session Manager only
    assert "aws_iam_instance_profile.instance" in instances["stack"]["iam_instance_profile"]
    assert "aws_iam_instance_profile.worker" in instances["worker"]["iam_instance_profile"]
    attach = hcl["resource"]["aws_iam_role_policy_attachment"]["ssm_core"]
    assert attach["policy_arn"].endswith(":iam::aws:policy/AmazonSSMManagedInstanceCore")
    assert attach["for_each"] == "${local.roles}"
    assert hcl["locals"]["roles"] == {"stack": "${aws_iam_role.instance.name}", "worker": "${aws_iam_role.worker.name}"}


def test_security_group_opens_only_the_ui_ports_to_the_cidr_variable(hcl):
    assert hcl["locals"]["ui_ports"] == {"airflow": 8080, "metabase": 3000}
    assert set(hcl["locals"]["egress_ports"].values()) == {443, 80}
    ingress = hcl["resource"]["aws_vpc_security_group_ingress_rule"]
    assert set(ingress) == {"ui", "from_workers"}  # from_workers: test_workers_reach_only_the_main_instance
    ui = ingress["ui"]
    assert ui["for_each"] == "${local.ui_ports}" and ui["cidr_ipv4"] == "${var.allowed_cidr}"
    assert ui["from_port"] == ui["to_port"] == "${each.value}" and ui["ip_protocol"] == "tcp"
    egress = hcl["resource"]["aws_vpc_security_group_egress_rule"]
    for name in ("out", "worker_out"):
        rule = egress[name]
        assert rule["for_each"] == "${local.egress_ports}" and rule["from_port"] == rule["to_port"] == "${each.value}"
    assert "aws_security_group_rule" not in hcl["resource"]
    for sg in hcl["resource"]["aws_security_group"].values():
        assert "ingress" not in sg and "egress" not in sg


def test_instance_policy_reaches_only_the_lake_bucket_and_key(hcl):
    policy = hcl["data"]["aws_iam_policy_document"]["lake_access"]
    for statement in policy["statement"]:
        for resource in statement["resources"]:
            assert resource in ("${aws_s3_bucket.lake.arn}", "${aws_s3_bucket.lake.arn}/*", "${aws_kms_key.lake.arn}")
        for action in statement["actions"]:
            assert "*" not in action, action
    actions = {a for s in policy["statement"] for a in s["actions"]}
    assert actions >= {"s3:ListBucket", "s3:GetObject", "s3:PutObject", "s3:DeleteObject"}
    lake_access = hcl["resource"]["aws_iam_role_policy"]["lake_access"]
    assert "aws_iam_policy_document.lake_access" in lake_access["policy"]
    assert lake_access["for_each"] == "${local.roles}" and lake_access["role"] == "${each.value}"  # workers too


def test_user_data_installs_docker_and_starts_the_stack_on_the_bucket(hcl):
    instance = hcl["resource"]["aws_instance"]["stack"]
    assert "user_data.sh.tftpl" in instance["user_data"] and "local.lake_uri" in instance["user_data"]
    script = (TF / "user_data.sh.tftpl").read_text()
    assert re.search(r"apt-get install .*docker\.io .*docker-compose-v2", script)
    assert "DX7LAKE_LAKE=${lake_uri}" in script
    assert '"COMPOSE_PROFILES=${worker_count > 0 ? "celery" : ""}"' in script
    assert "make_env.py" in script and script.rstrip().endswith("docker compose up -d --build")
    assert not re.search(r"(?i)(password|secret)[A-Z_]*=", script)


def test_variables_are_described_and_validated(hcl):
    variables = hcl["variable"]
    assert {"allowed_cidr", "repo_url", "instance_type", "root_volume_gb", "region", "bucket_name"} <= set(variables)
    for name, body in variables.items():
        assert body.get("description"), name
        if name != "tags":
            assert body.get("validation"), name
    assert "default" not in variables["allowed_cidr"]  # the operator must say who may connect


def test_outputs_are_described(hcl):
    outputs = hcl["output"]
    assert {"bucket_name", "lake_uri", "instance_id", "airflow_url", "metabase_url", "ssm_session"} <= set(outputs)
    assert all(body.get("description") for body in outputs.values())


def test_terraform_files_are_all_read():
    assert {p.name for p in TF.glob("*.tf")} == {
        "versions.tf",
        "variables.tf",
        "s3.tf",
        "iam.tf",
        "ec2.tf",
        "workers.tf",
        "outputs.tf",
    }
    assert {p.name for p in TF.glob("*.tftpl")} == {"user_data.sh.tftpl", "worker_user_data.sh.tftpl"}


def test_workers_reach_only_the_main_instance(hcl):
    """worker_count instances; their group admits nothing, the main group admits the workers'
    three ports from the worker group alone, and the workers go nowhere else but out to 443/80."""
    variable = hcl["variable"]["worker_count"]
    assert variable["default"] == 0 and variable["type"] == "number" and variable["validation"]
    worker = hcl["resource"]["aws_instance"]["worker"]
    assert worker["count"] == "${var.worker_count}"
    assert worker["vpc_security_group_ids"] == ["${aws_security_group.worker.id}"]
    assert hcl["locals"]["worker_ports"] == {"postgres": 5432, "redis": 6379, "execution_api": 8080}
    ingress = hcl["resource"]["aws_vpc_security_group_ingress_rule"]
    assert not [r for r in ingress.values() if "aws_security_group.worker" in r["security_group_id"]]
    opened = ingress["from_workers"]
    assert opened["for_each"] == "${var.worker_count > 0 ? local.worker_ports : {}}"
    assert opened["security_group_id"] == "${aws_security_group.stack.id}"
    assert opened["referenced_security_group_id"] == "${aws_security_group.worker.id}" and "cidr_ipv4" not in opened
    egress = hcl["resource"]["aws_vpc_security_group_egress_rule"]
    to_stack = egress["to_stack"]
    assert to_stack["for_each"] == "${local.worker_ports}"
    assert to_stack["security_group_id"] == "${aws_security_group.worker.id}"
    assert to_stack["referenced_security_group_id"] == "${aws_security_group.stack.id}"
    assert egress["worker_out"]["security_group_id"] == "${aws_security_group.worker.id}"
    assert set(egress) == {"out", "worker_out", "to_stack"}
    # the stack's secrets: written by the main instance's role only when there are workers, read by the workers'
    policies = hcl["resource"]["aws_iam_role_policy"]
    assert policies["stack_env_write"]["role"] == "${aws_iam_role.instance.id}"
    assert policies["stack_env_write"]["count"] == "${var.worker_count > 0 ? 1 : 0}"
    assert policies["stack_env_read"]["role"] == "${aws_iam_role.worker.id}"
    documents = hcl["data"]["aws_iam_policy_document"]
    for name, action in (("stack_env_write", "ssm:PutParameter"), ("stack_env_read", "ssm:GetParameter")):
        (statement,) = documents[name]["statement"]
        assert (statement["actions"], statement["resources"]) == ([action], ["${local.stack_env_arn}"])


def _render(template: str, variables: dict) -> str:
    """The template as Terraform renders it: ``templatefile`` in ``terraform console``, which
    needs no provider (and so no ``terraform init``)."""
    binary = require_tool("terraform", None)
    args = ", ".join(f"{k} = {json.dumps(v)}" for k, v in variables.items())
    expression = f'templatefile("{TF / template}", {{{args}}})'
    with tempfile.TemporaryDirectory() as empty:  # no configuration: nothing to initialise
        out = subprocess.run([binary, "console"], input=expression, capture_output=True, text=True, cwd=empty)
    assert out.returncode == 0, out.stderr
    text = out.stdout.strip()
    assert text.startswith("<<EOT") and text.endswith("EOT"), text[:200]
    return text[len("<<EOT") :].strip("\n")[: -len("EOT")]


def test_worker_user_data_starts_a_celery_worker_on_the_main_instances_broker(hcl, tmp_path):
    worker = hcl["resource"]["aws_instance"]["worker"]
    assert "worker_user_data.sh.tftpl" in worker["user_data"]
    assert "main_host = aws_instance.stack.private_ip" in worker["user_data"]
    main_ip, parameter = "10.0.1.5", "/dx7lake/stack-env"
    script = _render(
        "worker_user_data.sh.tftpl",
        {
            "repo_url": "https://example.org/dx7lake.git",
            "repo_ref": "main",
            "region": "eu-west-1",
            "main_host": main_ip,
            "worker_name": "dx7lake-worker-1",
            "stack_env_parameter": parameter,
        },
    )
    assert subprocess.run(["bash", "-n"], input=script, text=True).returncode == 0
    assert script.rstrip().endswith("dx7lake-airflow:local airflow celery worker")
    # the secrets part of the script, run on a real .env as the main instance writes it
    # (docker/make_env.py), with the SSM read replaced by that file
    start, end = script.index("set +x"), script.index("rm stack.env")
    secrets_part = script[start:end].replace(f'--name "{parameter}"', "")
    assert "until aws ssm get-parameter" in secrets_part
    secrets_part = secrets_part[: secrets_part.index("until")] + secrets_part[secrets_part.index("done") + 4 :]
    subprocess.run(
        [sys.executable, str(REPO / "docker" / "make_env.py"), "--file", str(tmp_path / "stack.env")], check=True
    )
    stack = dict(line.split("=", 1) for line in (tmp_path / "stack.env").read_text().splitlines() if "=" in line)
    subprocess.run(["bash", "-euo", "pipefail", "-c", secrets_part], cwd=tmp_path, check=True)
    env = dict(line.split("=", 1) for line in (tmp_path / "worker.env").read_text().splitlines())
    assert env["AIRFLOW__CELERY__BROKER_URL"] == f"redis://:{stack['REDIS_PASSWORD']}@{main_ip}:6379/0"
    airflow_db = f"airflow:{stack['AIRFLOW_DB_PASSWORD']}@{main_ip}:5432/airflow"
    assert env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"] == f"postgresql+psycopg2://{airflow_db}"
    assert env["AIRFLOW__CELERY__RESULT_BACKEND"] == f"db+postgresql://{airflow_db}"
    assert env["AIRFLOW__CORE__EXECUTION_API_SERVER_URL"] == f"http://{main_ip}:8080/execution/"
    assert env["DX7LAKE_PG_URL"] == f"postgresql://warehouse:{stack['WAREHOUSE_DB_PASSWORD']}@{main_ip}:5432/warehouse"
    assert env["AIRFLOW_CONN_AWS_DEFAULT"] == stack["AIRFLOW_CONN_AWS_DEFAULT"]  # JSON, taken literally
    for name in ("AIRFLOW_FERNET_KEY", "AIRFLOW_JWT_SECRET", "AIRFLOW_API_SECRET_KEY"):
        assert stack[name] in env.values(), name
    assert env["DX7LAKE_WORKER_NAME"] == "dx7lake-worker-1"


@pytest.mark.parametrize("workers", [0, 2])
def test_main_user_data_opens_the_stack_to_workers_only_when_there_are_some(workers):
    script = _render(
        "user_data.sh.tftpl",
        {
            "repo_url": "https://example.org/dx7lake.git",
            "repo_ref": "main",
            "lake_uri": "s3://b/lake",
            "region": "eu-west-1",
            "worker_count": workers,
            "stack_env_parameter": "/dx7lake/stack-env",
        },
    )
    assert subprocess.run(["bash", "-n"], input=script, text=True).returncode == 0
    assert f'"DX7LAKE_WORKERS={workers + 1}"' in script
    assert ('"COMPOSE_PROFILES=celery"' in script) == ('"AIRFLOW_EXECUTOR=CeleryExecutor"' in script) == (workers > 0)
    assert ("aws ssm put-parameter" in script) == ('ports: ["6379:6379"]' in script) == (workers > 0)
