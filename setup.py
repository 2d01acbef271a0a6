"""Installs cil_genreg with pip into an environment that already has CIL.

CIL is not on PyPI (it is a conda package: ``conda install -c ccpi -c conda-forge cil``),
so it is not listed in ``install_requires``; importing :mod:`cil_genreg` without it raises an
ImportError that says how to get it. The conda recipe in ``recipe/`` lists it as a run
requirement. ``tests/test_packaging.py`` keeps the two lists in agreement.
"""
from setuptools import find_packages, setup

# Run requirements other than CIL (conda-only). Keep in step with recipe/meta.yaml.
INSTALL_REQUIRES = [
    "numpy",
    "torch>=2.0",
    "tqdm",
    "matplotlib",
    "safetensors",
    "h5py",
    "pillow",
    "tifffile",
]
EXTRAS_REQUIRE = {
    "astra": ["astra-toolbox"],
    # datasets.ct_slices / ct_patches read the chest CT (a NIfTI file) with nibabel, the
    # pyradiomics chests (lung1, lung2: NRRD) with pynrrd
    "ct": ["nibabel", "pynrrd"],
    "test": ["pytest", "pyyaml"],
}

setup(
    name="cil-genreg",
    version="0.1.0",
    description="Generative regularisers (VAE, AE, GAN priors) for tomographic reconstruction "
                "with the Core Imaging Library (CIL)",
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    license="Apache-2.0",
    python_requires=">=3.10",
    packages=find_packages(include=["cil_genreg", "cil_genreg.*"]),
    package_data={"cil_genreg.models": ["weights/*.safetensors", "weights/*.md"],
                  "cil_genreg.datasets": ["data/*.npz"]},
    include_package_data=True,
    install_requires=INSTALL_REQUIRES,
    extras_require=EXTRAS_REQUIRE,
    entry_points={"console_scripts": ["cil-genreg=cil_genreg.cli:main"]},
    classifiers=[
        "Programming Language :: Python :: 3",
        "License :: OSI Approved :: Apache Software License",
        "Topic :: Scientific/Engineering :: Image Processing",
    ],
)
