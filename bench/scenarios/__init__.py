"""One module per scenario; each returns the JSON section it owns, baseline included."""
