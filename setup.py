from setuptools import find_packages, setup

setup(
    name="nnunetv2-druwas",
    version="0.1.0",
    description="3D-DRUwAS and its ablation family as nnU-Net v2 trainers, with BraTS "
    "conversion, BraTS-convention evaluation and the paper's tables",
    python_requires=">=3.10",
    # trainers/ is not a package of the library: nnU-Net imports its modules through nnUNet_extTrainer.
    # An install copies them into the package as nnunetv2_druwas/_trainers/ (an editable install keeps
    # using trainers/ itself); `nnunetv2_druwas env` points nnUNet_extTrainer at whichever is there.
    packages=[*find_packages(include=["nnunetv2_druwas", "nnunetv2_druwas.*", "analysis", "analysis.*"]),
              "nnunetv2_druwas._trainers"],
    package_dir={"nnunetv2_druwas._trainers": "trainers"},
    include_package_data=True,
    install_requires=[
        "nnunetv2>=2.5",
        "torch",
        "dynamic-network-architectures",
        "nibabel",
        "numpy",
        "scipy",
        "pandas",
        "seaborn",
        "matplotlib",
        "tqdm",
    ],
    extras_require={
        "test": ["pytest", "pytest-xdist>=3.8", "filelock", "medpy", "monai", "hypothesis"],
    },
    entry_points={"console_scripts": ["nnunetv2_druwas = nnunetv2_druwas.cli:main"]},
)
