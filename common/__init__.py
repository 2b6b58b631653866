"""What every layer shares and nothing else: the project's error type, config
dataclasses turned into command lines, atomic and versioned files, the one
device choice and the repository's paths.

It imports nothing of the project's own: every other package may import it
(``tests/test_layers.py`` holds the layering).
"""
