"""neurodeploy.quantize."""
