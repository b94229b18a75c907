"""The launcher daemon, its client and command line."""
