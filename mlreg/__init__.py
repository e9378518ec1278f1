"""mlreg's local side: the `mlreg` command, the local gateway and the AWS emulator it runs on."""
