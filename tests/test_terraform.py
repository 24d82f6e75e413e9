"""terraform/, checked without AWS: `terraform fmt`, checkov, and the HCL read with python-hcl2.

Providers cannot be downloaded here, so there is no `terraform validate` or plan; checkov
and the parsed HCL stand in for them (AWS itself is the one part that cannot run here).
"""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

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


@pytest.mark.parametrize(("directory", "framework"), [("terraform", "terraform"), ("docker", "dockerfile")])
def test_checkov_passes_and_every_skip_has_a_reason(directory, framework):
    assert CHECKOV.exists(), "make test builds .venv-checkov (the Makefile target $(CHECKOV_VENV)/bin/checkov)"
    cmd = [str(CHECKOV), "--directory", str(REPO / directory), "--framework", framework]
    cmd += ["--skip-download", "--output", "json"]
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
    instance = hcl["resource"]["aws_instance"]["stack"]
    assert instance["ami"] == "${data.aws_ssm_parameter.ami.value}"
    assert hcl["variable"]["ami_ssm_parameter"]["default"].startswith("/aws/service/")
    metadata = _one(instance["metadata_options"])
    assert metadata["http_tokens"] == "required"
    root = _one(instance["root_block_device"])
    assert root["volume_type"] == "gp3" and root["encrypted"] is True
    assert "aws_iam_instance_profile.instance" in instance["iam_instance_profile"]
    assert "key_name" not in instance  # no SSH key: Session Manager only
    attach = hcl["resource"]["aws_iam_role_policy_attachment"]["ssm_core"]
    assert attach["policy_arn"].endswith(":iam::aws:policy/AmazonSSMManagedInstanceCore")


def test_security_group_opens_only_the_ui_ports_to_the_cidr_variable(hcl):
    assert hcl["locals"]["ui_ports"] == {"airflow": 8080, "metabase": 3000}
    assert set(hcl["locals"]["egress_ports"].values()) == {443, 80}
    (ingress,) = hcl["resource"]["aws_vpc_security_group_ingress_rule"].values()
    assert ingress["for_each"] == "${local.ui_ports}" and ingress["cidr_ipv4"] == "${var.allowed_cidr}"
    assert ingress["from_port"] == ingress["to_port"] == "${each.value}" and ingress["ip_protocol"] == "tcp"
    (egress,) = hcl["resource"]["aws_vpc_security_group_egress_rule"].values()
    assert egress["for_each"] == "${local.egress_ports}" and egress["from_port"] == egress["to_port"] == "${each.value}"
    assert "aws_security_group_rule" not in hcl["resource"]
    sg = hcl["resource"]["aws_security_group"]["stack"]
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
    assert "aws_iam_policy_document.lake_access" in hcl["resource"]["aws_iam_role_policy"]["lake_access"]["policy"]


def test_user_data_installs_docker_and_starts_the_stack_on_the_bucket(hcl):
    instance = hcl["resource"]["aws_instance"]["stack"]
    assert "user_data.sh.tftpl" in instance["user_data"] and "local.lake_uri" in instance["user_data"]
    script = (TF / "user_data.sh.tftpl").read_text()
    assert re.search(r"apt-get install .*docker\.io .*docker-compose-v2", script)
    assert "DX7LAKE_LAKE=${lake_uri}" in script and '"COMPOSE_PROFILES="' in script
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
        "outputs.tf",
    }
    assert Path(TF / "user_data.sh.tftpl").exists()
