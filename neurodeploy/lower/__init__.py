"""neurodeploy.lower."""
