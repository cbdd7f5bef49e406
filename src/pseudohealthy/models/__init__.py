"""Networks (MONAI) and their construction from the config."""
