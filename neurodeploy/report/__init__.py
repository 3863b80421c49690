"""neurodeploy.report."""
