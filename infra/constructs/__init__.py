"""The building blocks of one mlreg environment (composed in infra/stack.py)."""
