"""Code shared by every mlreg Lambda function: routes, table, storage, domain logic."""
