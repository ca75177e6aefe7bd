"""Dense (per-pixel) task kinds and their decoder heads.

``kinds`` holds segmentation, depth, surface normals and edges (targets, losses, the metrics
of the AdaShare and MTAN papers); ``heads`` the ASPP and pyramid-pooling decoders that bring
a backbone's features back to the input's size. Imports only ``mtlsearch.tasks.kinds`` and
the base modules.
"""
