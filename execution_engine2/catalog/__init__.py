"""App catalog clients (KBase catalog service, local YAML) and requirement resolution."""
