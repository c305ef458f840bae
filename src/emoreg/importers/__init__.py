"""Importers: segments from the files of the tools people already use."""
