"""maxrl_jax: JAX/Flax reference implementation of the MaxRL didactic experiments."""

from setuptools import find_packages, setup

# Ranges that install on Python 3.11 + JAX 0.10 (CPU) and Python 3.12 + JAX 0.11 (GPU).
INSTALL_REQUIRES = [
    "jax>=0.6,<0.12",
    "flax>=0.10",
    "optax>=0.2.4",
    "chex>=0.1.88",
    "orbax-checkpoint>=0.11",
    "absl-py>=2.0",
    "ml-collections>=0.1.1",
    "numpy>=1.26",
    "scipy>=1.11",
    "matplotlib>=3.8",
    "tensorboardX>=2.6",
    "tensorflow-datasets>=4.9.6",
    # tfds 4.9.x imports it in download_and_prepare without declaring it.
    "importlib_resources>=6",
]

EXTRAS = {
    # Only the ImageNet driver's tf.data input pipeline needs TensorFlow (CPU build is enough:
    # it feeds JAX on any accelerator). scikit-learn provides the small real 'digits' dataset.
    "data": ["tensorflow-cpu>=2.16; platform_system=='Linux'", "tensorflow>=2.16; platform_system!='Linux'", "scikit-learn>=1.3"],
    "test": [
        "pytest>=8",
        "pytest-xdist>=3.5",
        "hypothesis>=6.100",
        "nbclient>=0.10",
        "nbformat>=5.10",
        "ipykernel>=6.29",
    ],
    # NVIDIA GPUs: CUDA 13 wheels (JAX's default); "gpu-cuda12" for machines on CUDA 12 drivers.
    "gpu": ["jax[cuda13]>=0.8,<0.12"],
    "gpu-cuda12": ["jax[cuda12]>=0.6,<0.12"],
    "tpu": ["jax[tpu]>=0.6,<0.12"],
}
EXTRAS["test"] = EXTRAS["test"] + EXTRAS["data"]

setup(
    name="maxrl_jax",
    version="0.1.0",
    description="Maximum Likelihood Reinforcement Learning (MaxRL): estimators and didactic experiments in JAX/Flax",
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    python_requires=">=3.11",
    packages=find_packages(include=["maxrl_jax", "maxrl_jax.*"]),
    install_requires=INSTALL_REQUIRES,
    extras_require=EXTRAS,
    classifiers=[
        "Programming Language :: Python :: 3.11",
        "Programming Language :: Python :: 3.12",
    ],
)
