"""Image datasets as float32 arrays (N, H, W) with intensities in [0, 1].

Nothing is downloaded. :func:`mnist` reads local MNIST files (the held-out test split ships in
the package); :func:`shapes` and :func:`ellipses` are synthetic (:func:`shape_volumes`: 3D
phantoms whose slices are shapes); :func:`fastmri_knee` reads fastMRI knee HDF5 files;
:func:`image_folder` reads PNG/TIFF files, TIFF stacks or arrays; :func:`ct_slices` and
:func:`ct_patches` read real CT volumes that install offline (chest: MIT, lung1 / lung2:
BSD-3-Clause, head: GPL-2); :func:`patient_slices` and :func:`patient_patches` give the chest
patients at one physical pixel size (0.703 mm, a 360 mm field of view at 512 x 512) in
patient-level splits (:data:`PATIENT_SPLITS`).
"""
from .mnist import mnist
from .synthetic import ellipses, shapes
from .volumes import shape_volumes
from .fastmri import fastmri_knee
from .image_folder import image_folder
from ._common import as_images, resize
from .held_out import held_out_digits, held_out_shapes
from .ct import ct_slices, ct_patches, ct_volume, VOLUMES as CT_VOLUMES, WINDOWS as CT_WINDOWS
from .patients import PATIENT_SPLITS, PATIENTS, patient_patches, patient_slices, patient_volume

__all__ = ["mnist", "shapes", "ellipses", "fastmri_knee", "image_folder", "as_images", "resize",
           "held_out_digits", "held_out_shapes", "shape_volumes", "ct_slices", "ct_patches",
           "ct_volume", "patient_slices", "patient_patches", "patient_volume", "PATIENT_SPLITS",
           "PATIENTS"]
