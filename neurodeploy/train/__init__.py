"""neurodeploy.train."""
