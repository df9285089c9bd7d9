"""hashindex.encoder: brain MRI data (synthetic glioma phantoms, BraTS) and the normal/abnormal
anatomy encoder of Kobayashi et al. (2021) that turns slices into codes for hashindex.

Installed as ``hashindex.encoder`` from the repository's ``encoder/`` folder. Importing this package
or its ``data`` subpackage never imports torch; only the model modules do.
"""
