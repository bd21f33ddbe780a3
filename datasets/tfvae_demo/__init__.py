"""The built-in synthetic demo corpus (see tfvae_demo_dataset_builder)."""
