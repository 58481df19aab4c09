"""The Qt-free core: sources, specs, parameter trees, mappings, strategies, transforms, apply."""
