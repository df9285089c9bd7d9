"""MRI data for the encoder: synthetic glioma phantoms and real BraTS volumes, both as numpy.

Label scheme used everywhere inside the project (BraTS 2023's; BraTS 2018-2021 files store
enhancing tumour as 4 and are mapped on load):

- tumour labels: 0 none, 1 necrotic / non-enhancing core, 2 oedema, 3 enhancing tumour;
- normal-anatomy labels (phantoms only): 0 background, 1 CSF, 2 ventricles, 3 grey matter,
  4 white matter.
"""
from .brats import (
    MODALITIES,
    Case,
    CaseFiles,
    SliceSet,
    default_slice,
    find_cases,
    load_case,
    load_slices,
    slice_case,
    zscore,
)
from .labels import ANATOMY_LABELS, TUMOUR_LABELS
from .phantoms import PhantomConfig, generate_case, generate_phantoms

__all__ = [
    "ANATOMY_LABELS",
    "MODALITIES",
    "TUMOUR_LABELS",
    "Case",
    "CaseFiles",
    "PhantomConfig",
    "SliceSet",
    "default_slice",
    "find_cases",
    "generate_case",
    "generate_phantoms",
    "load_case",
    "load_slices",
    "slice_case",
    "zscore",
]
