"""The CDK app that deploys mlreg, one stack per environment. See docs/deployment.md."""
