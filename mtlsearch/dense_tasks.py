"""Dense prediction task kinds (segmentation, depth, surface normals, edges): in progress."""
