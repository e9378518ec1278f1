"""The table and the bucket: built from shared/table.py, protected as each environment says."""

from __future__ import annotations

import pytest

from shared import table as table_definition
from tests.infra.helpers import flat, one, resources

ENVIRONMENTS = ("dev", "staging", "prod")


@pytest.mark.parametrize("env", ENVIRONMENTS)
def test_table_keys_and_indexes_equal_the_shared_definition(synthesis, env):
    _, table = one(synthesis.templates[env], "AWS::DynamoDB::Table")
    props = table["Properties"]
    expected = table_definition.create_table_kwargs("any")

    assert props["KeySchema"] == expected["KeySchema"]
    assert sorted(props["AttributeDefinitions"], key=lambda a: a["AttributeName"]) == \
        sorted(expected["AttributeDefinitions"], key=lambda a: a["AttributeName"])
    gsis = {g["IndexName"]: g for g in props["GlobalSecondaryIndexes"]}
    assert gsis == {g["IndexName"]: g for g in expected["GlobalSecondaryIndexes"]}
    assert props["BillingMode"] == "PAY_PER_REQUEST"
    assert props["StreamSpecification"] == {"StreamViewType": table_definition.STREAM_VIEW}
    assert props["TimeToLiveSpecification"] == {"AttributeName": table_definition.TTL_ATTRIBUTE, "Enabled": True}
    assert props["PointInTimeRecoverySpecification"] == {"PointInTimeRecoveryEnabled": True}
    assert props["SSESpecification"] == {"SSEEnabled": True}
    assert "LocalSecondaryIndexes" not in props  # data-model rule 11


@pytest.mark.parametrize("env", ENVIRONMENTS)
def test_data_protection_follows_the_environment(synthesis, env):
    template, config = synthesis.templates[env], synthesis.configs[env]
    deletion = "Retain" if config.retain else "Delete"
    _, table = one(template, "AWS::DynamoDB::Table")
    assert table["Properties"]["DeletionProtectionEnabled"] is config.deletion_protection
    stateful = ["AWS::DynamoDB::Table", "AWS::S3::Bucket", "AWS::SecretsManager::Secret", "AWS::Logs::LogGroup",
                "AWS::SQS::Queue"]
    for kind in stateful:
        for logical_id, resource in resources(template, kind).items():
            if logical_id.startswith("UiBucket"):  # MLflow's UI build, replaced by every deploy: never kept
                assert resource.get("DeletionPolicy") == "Delete", logical_id
                continue
            assert resource.get("DeletionPolicy") == deletion, (env, logical_id)
            assert resource.get("UpdateReplacePolicy") == deletion, (env, logical_id)
    # A destroyable bucket is emptied first, or `cdk destroy` would fail on it.
    assert bool(resources(template, "Custom::S3AutoDeleteObjects")) is (not config.retain)


def test_prod_keeps_everything_and_dev_does_not(dev, prod):
    _, prod_table = one(prod, "AWS::DynamoDB::Table")
    _, dev_table = one(dev, "AWS::DynamoDB::Table")
    assert prod_table["DeletionPolicy"] == "Retain" and prod_table["Properties"]["DeletionProtectionEnabled"] is True
    assert dev_table["DeletionPolicy"] == "Delete" and dev_table["Properties"]["DeletionProtectionEnabled"] is False


def _data_bucket(template: dict) -> tuple[str, dict]:
    buckets = {k: v for k, v in resources(template, "AWS::S3::Bucket").items() if k.startswith("DataBucket")}
    assert len(buckets) == 1
    return next(iter(buckets.items()))


@pytest.mark.parametrize("env", ENVIRONMENTS)
def test_buckets_are_private_encrypted_and_tls_only(synthesis, env):
    template = synthesis.templates[env]
    policies = {flat(p["Properties"]["Bucket"]): p["Properties"]["PolicyDocument"]["Statement"]
                for p in resources(template, "AWS::S3::BucketPolicy").values()}
    for logical_id, bucket in resources(template, "AWS::S3::Bucket").items():
        props = bucket["Properties"]
        assert props["PublicAccessBlockConfiguration"] == {
            "BlockPublicAcls": True, "BlockPublicPolicy": True, "IgnorePublicAcls": True, "RestrictPublicBuckets": True}
        assert props["OwnershipControls"]["Rules"] == [{"ObjectOwnership": "BucketOwnerEnforced"}]
        rules = props["BucketEncryption"]["ServerSideEncryptionConfiguration"]
        assert rules[0]["ServerSideEncryptionByDefault"]["SSEAlgorithm"] in ("AES256", "aws:kms")
        plain_http = {"aws:SecureTransport": "false"}
        denies_plain_http = [s for s in policies[f"<{logical_id}>"]
                             if s["Effect"] == "Deny" and s.get("Condition", {}).get("Bool") == plain_http]
        assert denies_plain_http, logical_id


@pytest.mark.parametrize("env", ENVIRONMENTS)
def test_data_bucket_is_versioned_and_aborts_stale_multipart_uploads(synthesis, env):
    _, bucket = _data_bucket(synthesis.templates[env])
    props = bucket["Properties"]
    assert props["VersioningConfiguration"] == {"Status": "Enabled"}
    rules = props["LifecycleConfiguration"]["Rules"]
    assert {"AbortIncompleteMultipartUpload": {"DaysAfterInitiation": 1}, "Id": "abort-incomplete-multipart-uploads",
            "Status": "Enabled"} in rules
    expiring = [r for r in rules if "NoncurrentVersionExpiration" in r]
    days = synthesis.configs[env].noncurrent_version_days
    assert expiring[0]["NoncurrentVersionExpiration"]["NoncurrentDays"] == days


@pytest.mark.parametrize("env", ENVIRONMENTS)
def test_server_access_logs_only_where_declared(synthesis, env):
    _, bucket = _data_bucket(synthesis.templates[env])
    assert ("LoggingConfiguration" in bucket["Properties"]) is synthesis.configs[env].s3_access_logs


@pytest.mark.parametrize("env", ENVIRONMENTS)
def test_page_token_key_is_generated_in_the_stack(synthesis, env):
    _, secret = one(synthesis.templates[env], "AWS::SecretsManager::Secret")
    assert secret["Properties"]["GenerateSecretString"]["PasswordLength"] >= 32
