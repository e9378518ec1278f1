"""Artifact storage: MLflow's proxied artifact routes over one S3 bucket, with presigned transfers
for files too big for API Gateway and Lambda (see docs/architecture.md, "S3 layout")."""
