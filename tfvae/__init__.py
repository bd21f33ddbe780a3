"""tfvae: attribute-aligned speech representations (LR-VAE) with TensorFlow/Keras.

Submodules are imported on demand (``tfvae.model`` pulls in TensorFlow; ``tfvae.features``
and ``tfvae.synth`` do not), so feature-extraction workers stay light.
"""

__version__ = "0.1.0"
