import os

from setuptools import find_packages, setup

with open(os.path.join("sb3_pmac", "version.txt")) as file_handler:
    __version__ = file_handler.read().strip()

with open("README.md", encoding="utf-8") as file_handler:
    long_description = file_handler.read()

setup(
    name="sb3-pmac",
    # sb3_pmac.hyperparams: rl-zoo3 hyperparameter files (a data folder, no Python), read with importlib.resources
    # by sb3_pmac.zoo; the top-level hyperparams/ of the repository is a link to that folder.
    packages=[package for package in find_packages() if package.startswith("sb3_pmac")] + ["sb3_pmac.hyperparams"],
    package_data={"sb3_pmac": ["py.typed", "version.txt"], "sb3_pmac.hyperparams": ["*.yml"]},
    install_requires=[
        "stable-baselines3>=2.9.0,<3.0",
        # torch is required, but install the build you want first (see README): a bare requirement would pull a CUDA build.
        # Lower bound: Stable-Baselines3 2.9's own (torch>=2.8).
        "torch>=2.8",
        "gymnasium>=1.0,<1.5",
        "numpy>=1.24",
        "tqdm",
        "rich",
    ],
    extras_require={
        # the MuJoCo tasks (Hopper, Walker2d, ... : the paper's, the demo's); gymnasium's MuJoCo envs change across
        # MuJoCo majors, hence the upper bound (tested: 4.x)
        "mujoco": [
            "gymnasium[mujoco]>=1.0,<1.5",
            "mujoco>=3.0,<5",
        ],
        "zoo": [
            "rl_zoo3>=2.9.0,<3.0",  # sb3_pmac.zoo uses rl-zoo3 2.x tables (ALGOS, HYPERPARAMS_SAMPLER/CONVERTER)
            "optuna>=3.0",
            # <3: rliable 1.2 needs arch<8, and arch 7 fails to import with pandas 3, which would break every rl-zoo3
            # command (rl_zoo3.plots imports rliable when it is installed); rl-zoo3's own [plots] extra pins the same
            "pandas>=2.2,<3",
            "matplotlib",
            "seaborn",
            "scipy",
            "tensorboard",
            "requests",
            "pyyaml",
            "rliable~=1.2",  # all_plots/plot_from_file --rliable (rl-zoo3's own [plots] extra pins rliable~=1.2.0)
            "gymnasium[classic_control]",  # pygame: rendering of classic-control envs for record_video
            "moviepy",  # video files for record_video
        ],
        # Optuna studies on PostgreSQL (--storage postgresql://...): the driver
        "postgres": [
            "psycopg2-binary",
        ],
        "tests": [
            "pytest",
            "pytest-xdist",
            "pytest-timeout",
            "scipy",
        ],
        "docs": [
            "sphinx",
            "myst-parser",
            "furo",
        ],
        "dev": [
            "ruff",
            "mypy",
        ],
    },
    description="PMAC (Policy-adaptation Model-based Actor-Critic) and MBPO for Stable-Baselines3",
    author="sb3-pmac developers",
    license="MIT",
    long_description=long_description,
    long_description_content_type="text/markdown",
    version=__version__,
    python_requires=">=3.10",
    entry_points={"console_scripts": ["sb3-pmac-zoo=sb3_pmac.zoo:main"]},
    classifiers=[
        "Development Status :: 3 - Alpha",
        "License :: OSI Approved :: MIT License",
        "Intended Audience :: Science/Research",
        "Topic :: Scientific/Engineering :: Artificial Intelligence",
        "Programming Language :: Python :: 3",
        "Programming Language :: Python :: 3.10",
        "Programming Language :: Python :: 3.11",
        "Programming Language :: Python :: 3.12",
    ],
)
