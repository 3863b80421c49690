"""neurodeploy.export."""
